//! The HTTP side: one context shared by all listeners, the response and body helpers, and the
//! route modules that [`crate::app::App`] dispatches to.
//! - [`conn`]: listeners, TLS handshakes, per-connection timeouts, the connection cap.
//! - [`device`]: the device endpoints (check, log upload) of the internal and external sites;
//!   [`dialect`]: the wire dialect their checks and replies are in.
//! - [`files`]: `GET`/`HEAD` of update files with single `Range`s, streamed from disk.
//! - [`auth`]: NTLM on the external listener, state per connection.
//! - [`admin`]: the loopback admin API and `/metrics`; [`admin_guard`]: its Host, Origin,
//!   token and Content-Type rules.
//! - [`cmdlets`]: the admin API's rules, test devices and clean-ups (the Lync cmdlet model).
//! - [`body_guard`]: the total deadline and minimum rate of device request bodies.

pub(crate) mod admin;
pub(crate) mod admin_guard;
pub(crate) mod auth;
pub(crate) mod body_guard;
pub(crate) mod cmdlets;
pub(crate) mod conn;
pub(crate) mod device;
mod dialect;
pub(crate) mod files;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use ucupdate_ntlm::UserDb;

use crate::audit::AuditLog;
use crate::logs::LogStore;
use crate::metrics::Metrics;
use crate::model::BaseUrls;
use crate::state::State;

/// Every response body: small ones from memory, files streamed from disk.
pub type Body = BoxBody<Bytes, io::Error>;

/// Per-connection and per-request limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time a client has to send a request's header (and to finish a TLS handshake). hyper
    /// also runs this clock while a keep-alive connection waits for its next request.
    pub header_read_timeout: Duration,
    /// A connection with no bytes moving either way for this long is closed (stalled
    /// uploads and downloads; quiet keep-alive waits end at the shorter of the two).
    pub idle_timeout: Duration,
    /// Device connections (all device listeners together) beyond this get a 503.
    pub max_connections: usize,
    /// Device connections from one client IP address beyond this get a 503, so one address
    /// cannot take every slot. `None`: half of `max_connections` (at least 1).
    pub max_connections_per_client: Option<usize>,
    /// A device request's whole body must arrive within this time after its head (408 and
    /// close otherwise), however steadily its bytes trickle in.
    pub body_deadline: Duration,
    /// After [`Limits::body_rate_grace`], a device request body must have averaged at least
    /// this many bytes per second since its head (0: no minimum).
    pub body_min_rate: u64,
    /// How long a body may start slowly before [`Limits::body_min_rate`] applies.
    pub body_rate_grace: Duration,
    /// Largest file body the admin publish endpoint accepts.
    pub max_publish_bytes: u64,
}

impl Limits {
    /// The effective per-client connection cap.
    pub fn per_client_cap(&self) -> usize {
        self.max_connections_per_client
            .unwrap_or(self.max_connections / 2)
            .max(1)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_client: None,
            body_deadline: Duration::from_secs(60),
            body_min_rate: 256,
            body_rate_grace: Duration::from_secs(5),
            max_publish_bytes: 1 << 30,
        }
    }
}

/// What every request handler can reach.
pub(crate) struct Ctx {
    pub state: Arc<State>,
    pub metrics: Arc<Metrics>,
    pub audit: Arc<AuditLog>,
    pub logs: LogStore,
    pub quotas: crate::quota::Quotas,
    /// The device-update settings (`Get/Set-CsDeviceUpdateConfiguration`), changed by
    /// `PUT /admin/configuration`.
    pub settings: std::sync::RwLock<crate::settings::DeviceUpdateConfiguration>,
    pub bases: BaseUrls,
    pub limits: Limits,
    pub users: Arc<UserDb>,
    /// NTLM target name (the `DOMAIN` the Type 2 names) and audit-log server name.
    pub server_name: String,
    /// The pool in rule identities (`service:WebServer:<pool>/<id>`).
    pub pool_fqdn: String,
    pub accept_unknown_device_types: bool,
    /// The wire dialect of checks and replies (`serve --dialect`); `None`: the built-in one.
    pub dialect: Option<Arc<ucupdate_protocol::dialect::Dialect>>,
    pub open_device_connections: AtomicUsize,
    /// Open device connections per client address (entries removed at zero).
    pub per_client: Mutex<HashMap<IpAddr, usize>>,
    pub admin_token: crate::token::AdminToken,
    /// Signs catalogs for admin publishes and imports (`ServerConfig::catalog_signer`).
    pub catalog_signer: Option<Arc<crate::catalog::CatalogSigner>>,
    /// Extra names the admin listener answers to (`--admin-host`).
    pub admin_hosts: Vec<String>,
    /// Held as long as anything may still write the data directory.
    pub _lock: Arc<crate::lock::DataLock>,
}

impl Ctx {
    /// The settings now (a copy: a change through the admin API applies to later requests).
    pub fn settings(&self) -> crate::settings::DeviceUpdateConfiguration {
        self.settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Reasons quote the client's input (element names, values): a hostile request must not get
/// itself echoed back at full length (a 60 KB element name made a 60 KB answer).
const MAX_REASON: usize = 200;

/// `message` cut to [`MAX_REASON`] bytes (on a character boundary), for answers and log lines.
pub(crate) fn clipped(mut message: String) -> String {
    if message.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

/// A short plain-text answer: errors say why in one line.
pub(crate) fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut message = clipped(message.into());
    message.push('\n');
    let mut response = Response::new(full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// More than the cap arrived (the rest was not read).
    #[error("body exceeds its cap")]
    TooLarge,
    /// The body failed mid-read (client gone, bad chunked framing).
    #[error("{0}")]
    Io(String),
    /// The consumer of the frames failed (a disk write).
    #[error("{0}")]
    Sink(io::Error),
}

/// How much of a refused body the server still reads (and drops) before it answers: a client
/// that is mid-send when the 413 comes must be able to finish and read it, instead of meeting a
/// connection reset. Past this, or after [`LINGER_TIME`], the connection is simply closed.
pub(crate) const LINGER_BYTES: u64 = 8 * 1024 * 1024;
pub(crate) const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// The one loop over a request body's frames: hands each data chunk to `sink` and stops with
/// [`BodyError::TooLarge`] as soon as the next chunk would pass `cap`, so a client cannot
/// make the server take more than `cap` bytes (nor buffer more than one frame beyond them).
/// Returns the number of bytes taken.
pub(crate) async fn read_frames<B>(
    body: &mut B,
    cap: u64,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<u64, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut taken = 0u64;
    loop {
        match body.frame().await {
            None => return Ok(taken),
            Some(Err(e)) => return Err(BodyError::Io(e.into().to_string())),
            Some(Ok(frame)) => {
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                let len = data.len() as u64;
                if taken + len > cap {
                    return Err(BodyError::TooLarge);
                }
                sink(data).map_err(BodyError::Sink)?;
                taken += len;
            }
        }
    }
}

/// Reads at most `cap` bytes of a body into memory. The rest of a refused body is drained
/// (not kept) up to [`LINGER_BYTES`] so the client can read the refusal.
pub(crate) async fn read_capped<B>(mut body: B, cap: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut kept = bytes::BytesMut::new();
    let read = read_frames(&mut body, cap as u64, |data| {
        kept.extend_from_slice(data);
        Ok(())
    })
    .await;
    match read {
        Ok(_) => Ok(kept.freeze()),
        Err(BodyError::TooLarge) => {
            drain(body, LINGER_BYTES).await;
            Err(BodyError::TooLarge)
        }
        Err(e) => Err(e),
    }
}

/// Reads and drops up to about `limit` bytes of `body`, for at most [`LINGER_TIME`].
pub(crate) async fn drain<B>(mut body: B, limit: u64)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = tokio::time::timeout(LINGER_TIME, read_frames(&mut body, limit, |_| Ok(()))).await;
}

/// The declared `Content-Length`, if any and readable.
pub(crate) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Refuses a body that declares more than `cap` bytes before reading any of it.
pub(crate) fn refuse_declared(headers: &http::HeaderMap, cap: u64) -> Option<Response<Body>> {
    match content_length(headers) {
        Some(len) if len > cap => Some(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body of {len} bytes exceeds the {cap}-byte cap"),
        )),
        _ => None,
    }
}
