//! The wire dialect of the device endpoints (`serve --dialect`, docs/SERVER.md): where a check
//! arrives, how it is read and how the reply is written. Without a dialect (the default,
//! `ucupdate`) this is `wire`'s tolerant reader and canonical writer, unchanged; with one, the
//! stub stands in for a pool of that dialect and both directions go through the protocol
//! crate's dialect code (the same the agent and the simulator use), so the check handler
//! itself never knows which dialect it speaks.

use http::{HeaderValue, Method};
use ucupdate_protocol::wire::{CheckResponse, CONTENT_TYPE_XML};
use ucupdate_protocol::CheckRequest;

use super::Ctx;

impl Ctx {
    /// Is `path` (with `method`) where this stub's checks arrive, besides the site's handler?
    pub(crate) fn is_dialect_check_path(&self, path: &str) -> bool {
        self.dialect
            .as_ref()
            .is_some_and(|d| path.eq_ignore_ascii_case(&d.request.path))
    }

    /// The methods a check may use: POST, and the dialect's.
    pub(crate) fn check_method(&self, method: &Method) -> Result<(), HeaderValue> {
        let theirs = self.dialect.as_ref().map(|d| d.request.method.as_str());
        if method == Method::POST || theirs == Some(method.as_str()) {
            return Ok(());
        }
        Err(match theirs.filter(|m| *m != "POST") {
            Some(m) => HeaderValue::from_str(&format!("POST, {m}"))
                .unwrap_or(HeaderValue::from_static("POST")),
            None => HeaderValue::from_static("POST"),
        })
    }

    /// Reads a check body; the error is the one-line reason of the 400.
    pub(crate) fn decode_check(&self, body: &[u8]) -> Result<CheckRequest, String> {
        match &self.dialect {
            None => CheckRequest::decode(body).map_err(|e| e.to_string()),
            Some(d) => d.decode_request(body).map_err(|e| e.to_string()),
        }
    }

    /// The reply body and its `Content-Type` (a dialect's replies carry the type its checks
    /// are sent with).
    pub(crate) fn encode_reply(&self, response: &CheckResponse) -> (String, HeaderValue) {
        match &self.dialect {
            None => (
                response.encode(),
                HeaderValue::from_static(CONTENT_TYPE_XML),
            ),
            Some(d) => {
                let content_type = d
                    .request
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                    .and_then(|(_, v)| HeaderValue::from_str(v).ok())
                    .unwrap_or(HeaderValue::from_static(CONTENT_TYPE_XML));
                (d.encode_reply(response), content_type)
            }
        }
    }
}
