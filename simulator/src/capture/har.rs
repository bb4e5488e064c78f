//! HAR 1.2 (`log.entries[]`): the check is the first POST whose request body is XML; its
//! reply is the same entry's response. Bodies may be plain or base64 (`content.encoding`).

use base64::Engine as _;
use serde_json::Value;

use super::{path_of, Capture, CaptureError};
use ucupdate_protocol::dialect::learn::Exchange;

pub fn read(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let har: Value = serde_json::from_slice(bytes).map_err(|e| {
        CaptureError::Format(format!(
            "not a HAR file ({e}); a capture is a HAR 1.2 export, a pcap, or a folder of bodies"
        ))
    })?;
    let entries = har
        .pointer("/log/entries")
        .and_then(Value::as_array)
        .ok_or_else(|| CaptureError::Format("not a HAR file: no log.entries".into()))?;
    let mut notes = Vec::new();
    let mut https_only = !entries.is_empty();
    let mut check = None;
    for entry in entries {
        let method = entry
            .pointer("/request/method")
            .and_then(Value::as_str)
            .unwrap_or("");
        let url = entry
            .pointer("/request/url")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !url.starts_with("https://") {
            https_only = false;
        }
        if method.eq_ignore_ascii_case("GET") && url.contains("DeviceUpdateFiles") {
            notes.push(format!("download seen: GET {url}"));
        }
        let body = entry
            .pointer("/request/postData/text")
            .and_then(Value::as_str)
            .unwrap_or("");
        if check.is_none()
            && method.eq_ignore_ascii_case("POST")
            && body.trim_start().starts_with('<')
        {
            check = Some(entry);
        }
    }
    let Some(entry) = check else {
        let hint = if https_only {
            ": every request in it is HTTPS and a HAR without bodies cannot be read; capture the phone's plain-HTTP check on port 80 instead".to_owned()
        } else {
            String::new()
        };
        return Err(CaptureError::NoCheck { hint });
    };
    let method = entry
        .pointer("/request/method")
        .and_then(Value::as_str)
        .unwrap_or("POST");
    let url = entry
        .pointer("/request/url")
        .and_then(Value::as_str)
        .unwrap_or("/");
    let headers = entry
        .pointer("/request/headers")
        .and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .filter_map(|h| {
                    let k = h.get("name")?.as_str()?;
                    let v = h.get("value")?.as_str()?;
                    // HTTP/2 pseudo-headers (`:authority`) are not headers a phone sends.
                    (!k.starts_with(':')).then(|| (k.to_owned(), v.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    let request = entry
        .pointer("/request/postData/text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .as_bytes()
        .to_vec();
    let content = entry.pointer("/response/content");
    let text = content.and_then(|c| c.get("text")).and_then(Value::as_str);
    let status = entry
        .pointer("/response/status")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let reply = match (
        text,
        content
            .and_then(|c| c.get("encoding"))
            .and_then(Value::as_str),
    ) {
        (None, _) | (Some(""), _) => return Err(CaptureError::NoReply),
        (Some(t), Some("base64")) => base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|e| CaptureError::Format(format!("response body: bad base64: {e}")))?,
        (Some(t), _) => t.as_bytes().to_vec(),
    };
    if status != 200 {
        notes.push(format!(
            "the captured check was answered with HTTP {status}"
        ));
    }
    Ok(Capture {
        exchange: Exchange {
            method: method.to_owned(),
            path: path_of(url),
            headers,
            request,
            reply,
        },
        notes,
    })
}
