//! Reading a captured update check for `ucupdate-sim dialect`: a pcap/pcapng file (`tcpdump
//! -w`, Wireshark), a HAR 1.2 export (Fiddler, mitmproxy, a browser's developer tools) or a
//! folder holding the request and reply bodies.
//! Whatever the form, the result is one [`Exchange`]: the check (the first POST whose body is
//! XML) and its reply, with the request's method, path and headers. A capture with no check,
//! with only encrypted traffic, or cut off before the reply is refused with a message that
//! says so.

mod har;
mod pcap;

use std::path::Path;

use thiserror::Error;
use ucupdate_protocol::dialect::learn::Exchange;

/// Why a capture holds no usable check.
#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{0}")]
    Format(String),
    #[error("no update check in this capture (no POST with an XML body){hint}")]
    NoCheck { hint: String },
    #[error("the check in this capture has no reply (the capture ends before the pool answered)")]
    NoReply,
    #[error("the capture is truncated: {0}")]
    Truncated(String),
}

/// What else the capture showed (a download GET, other POSTs skipped).
#[derive(Debug, Default)]
pub struct Capture {
    pub exchange: Exchange,
    pub notes: Vec<String>,
}

/// Reads `path`: a folder, a HAR file, or a pcap/pcapng file (HTTP on TCP `port`).
pub fn read(path: &Path, port: u16) -> Result<Capture, CaptureError> {
    let io = |error| CaptureError::Io {
        path: path.display().to_string(),
        error,
    };
    if path.is_dir() {
        return folder(path);
    }
    let bytes = std::fs::read(path).map_err(io)?;
    read_bytes(&bytes, port)
}

/// Reads a capture file's bytes: pcap or pcapng by their magic number, else HAR (what the
/// `capture` fuzz target drives).
pub fn read_bytes(bytes: &[u8], port: u16) -> Result<Capture, CaptureError> {
    let magic = bytes.get(..4).unwrap_or_default();
    if [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x0a, 0x0d, 0x0d, 0x0a],
        [0x4d, 0x3c, 0xb2, 0xa1],
    ]
    .iter()
    .any(|m| m == magic)
    {
        return pcap::read(bytes, port);
    }
    har::read(bytes)
}

/// A folder: `request.xml` (or `request*`), `reply.xml` / `response.xml` (or `reply*` /
/// `response*`), and optionally `request.http` (the request line and headers as sent).
fn folder(dir: &Path) -> Result<Capture, CaptureError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |error| CaptureError::Io { path: p, error }
    };
    let mut request = None;
    let mut reply = None;
    let mut head = None;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.ends_with(".http") {
            head = Some(std::fs::read_to_string(&p).map_err(io(&p))?);
        } else if name.starts_with("request") && request.is_none() {
            request = Some(std::fs::read(&p).map_err(io(&p))?);
        } else if (name.starts_with("reply") || name.starts_with("response")) && reply.is_none() {
            reply = Some(std::fs::read(&p).map_err(io(&p))?);
        }
    }
    let request = request.ok_or_else(|| CaptureError::NoCheck {
        hint: format!(": {} holds no request.xml", dir.display()),
    })?;
    let reply = reply.ok_or(CaptureError::NoReply)?;
    let mut notes = Vec::new();
    let (method, path, headers) = match head {
        Some(text) => parse_head(&text)?,
        None => {
            notes.push(
                "no request.http in the folder: method POST, path /RequestHandler/ucdevice.upx and \
                 Content-Type text/xml; charset=utf-8 are assumed"
                    .into(),
            );
            (
                "POST".into(),
                ucupdate_protocol::wire::INTERNAL_HANDLER_PATH.into(),
                vec![(
                    "Content-Type".into(),
                    ucupdate_protocol::wire::CONTENT_TYPE_XML.into(),
                )],
            )
        }
    };
    Ok(Capture {
        exchange: Exchange {
            method,
            path,
            headers,
            request,
            reply,
        },
        notes,
    })
}

type Head = (String, String, Vec<(String, String)>);

/// `POST /path HTTP/1.1` then `Name: value` lines.
fn parse_head(text: &str) -> Result<Head, CaptureError> {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(CaptureError::Format(format!(
            "request.http: {first:?} is not a request line"
        )));
    };
    let headers = lines
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok((method.to_owned(), path_of(target), headers))
}

/// The path of a request target or absolute URL (no query).
pub(crate) fn path_of(target: &str) -> String {
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    path.split('?').next().unwrap_or("/").to_owned()
}
