//! The two small-message calls: the update check (POST XML, decode the reply) and the device
//! log upload (POST the raw file to the check handler with the log-upload query).

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::Method;
use hyper::body::Incoming;
use ucupdate_ntlm::Credentials;
use ucupdate_protocol::dialect::Dialect;
use ucupdate_protocol::wire::{CONTENT_TYPE_XML, MAX_MESSAGE_BYTES};
use ucupdate_protocol::{CheckRequest, CheckResponse, HttpUrl, LogUpload};

use super::client::Client;
use super::conn::next_data;
use super::error::NetError;
use super::exchange::{exchange, RequestSpec};
use super::shaping::Pacer;
use super::RequestStats;
use crate::clock;

/// POSTs `request` to the check handler at `url` and decodes the reply. With `auth`, a 401
/// offering NTLM is answered on the same connection; without, it is [`NetError::Unauthorized`].
pub async fn check(
    client: &Client,
    url: &HttpUrl,
    request: &CheckRequest,
    auth: Option<&Credentials>,
) -> Result<CheckResponse, NetError> {
    check_with_stats(client, url, request, auth).await.0
}

/// [`check_with_stats`] in a wire dialect other than the built-in one (`None`: the built-in):
/// the dialect's method, path (on `url`'s host), headers and body, and its reading of the reply.
pub async fn check_in_dialect_with_stats(
    client: &Client,
    url: &HttpUrl,
    request: &CheckRequest,
    dialect: Option<&Dialect>,
    auth: Option<&Credentials>,
) -> (Result<CheckResponse, NetError>, RequestStats) {
    let Some(dialect) = dialect else {
        return check_with_stats(client, url, request, auth).await;
    };
    let started = clock::monotonic();
    let mut stats = RequestStats::default();
    let url = url.with_path(&dialect.request.path);
    let result = check_inner(
        client,
        &url,
        request,
        Some(dialect),
        auth,
        started,
        &mut stats,
    )
    .await;
    stats.total = clock::elapsed(started);
    if let Err(e) = &result {
        tracing::debug!(%url, class = %e.class(), error = %e, "check failed");
    }
    (result, stats)
}

/// [`check`] plus the call's timing and volume (also on failure).
pub async fn check_with_stats(
    client: &Client,
    url: &HttpUrl,
    request: &CheckRequest,
    auth: Option<&Credentials>,
) -> (Result<CheckResponse, NetError>, RequestStats) {
    let started = clock::monotonic();
    let mut stats = RequestStats::default();
    let result = check_inner(client, url, request, None, auth, started, &mut stats).await;
    stats.total = clock::elapsed(started);
    if let Err(e) = &result {
        tracing::debug!(%url, class = %e.class(), error = %e, "check failed");
    }
    (result, stats)
}

async fn check_inner(
    client: &Client,
    url: &HttpUrl,
    request: &CheckRequest,
    dialect: Option<&Dialect>,
    auth: Option<&Credentials>,
    started: tokio::time::Instant,
    stats: &mut RequestStats,
) -> Result<CheckResponse, NetError> {
    let spec = match dialect {
        None => RequestSpec {
            method: Method::POST,
            url,
            headers: vec![(
                header::CONTENT_TYPE,
                HeaderValue::from_static(CONTENT_TYPE_XML),
            )],
            body: Bytes::from(request.encode()),
        },
        Some(d) => RequestSpec {
            // A dialect file is checked when read: a method and header it names are valid.
            method: Method::from_bytes(d.request.method.as_bytes()).unwrap_or(Method::POST),
            url,
            headers: d
                .request
                .headers
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        header::HeaderName::from_bytes(k.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
            body: Bytes::from(d.encode_request(request)),
        },
    };
    let mut done = exchange(client, &spec, auth, started, stats).await?;
    let status = done.response.status();
    if !status.is_success() {
        return Err(NetError::Status {
            status: status.as_u16(),
        });
    }
    let body = read_body(
        client,
        done.response.body_mut(),
        MAX_MESSAGE_BYTES as u64,
        stats,
    )
    .await?;
    Ok(match dialect {
        None => CheckResponse::decode(&body)?,
        Some(d) => d.decode_reply(&body)?,
    })
}

/// Uploads one device log file (at most [`ucupdate_protocol::wire::MAX_LOG_BYTES`]) to the check
/// handler at `handler_url`, with the query of `upload`. Any 2xx is success.
pub async fn upload_log(
    client: &Client,
    handler_url: &HttpUrl,
    upload: &LogUpload,
    contents: Bytes,
    auth: Option<&Credentials>,
) -> Result<(), NetError> {
    upload_log_with_stats(client, handler_url, upload, contents, auth)
        .await
        .0
        .map(|_| ())
}

/// [`upload_log`] plus the server's status and the call's timing and volume.
pub async fn upload_log_with_stats(
    client: &Client,
    handler_url: &HttpUrl,
    upload: &LogUpload,
    contents: Bytes,
    auth: Option<&Credentials>,
) -> (Result<u16, NetError>, RequestStats) {
    let started = clock::monotonic();
    let mut stats = RequestStats::default();
    let result = async {
        LogUpload::check_size(contents.len() as u64)?;
        let path = handler_url.path.split('?').next().unwrap_or("/");
        let url = handler_url.with_path(&format!("{path}?{}", upload.to_query()));
        let spec = RequestSpec {
            method: Method::POST,
            url: &url,
            headers: vec![(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            body: contents,
        };
        let mut done = exchange(client, &spec, auth, started, &mut stats).await?;
        let status = done.response.status();
        // Read the (small) answer so the server sees a clean exchange, but ignore its content.
        let _ = read_body(client, done.response.body_mut(), 64 * 1024, &mut stats).await;
        if !status.is_success() {
            return Err(NetError::Status {
                status: status.as_u16(),
            });
        }
        Ok(status.as_u16())
    }
    .await;
    stats.total = clock::elapsed(started);
    (result, stats)
}

/// Reads a whole body of at most `cap` bytes, with the idle timeout between pieces.
pub(crate) async fn read_body(
    client: &Client,
    body: &mut Incoming,
    cap: u64,
    stats: &mut RequestStats,
) -> Result<Bytes, NetError> {
    let mut out = BytesMut::new();
    let mut pacer = Pacer::new(client.shaping);
    while let Some(data) = next_data(client, body).await? {
        stats.bytes_received += data.len() as u64;
        if (out.len() + data.len()) as u64 > cap {
            return Err(NetError::TooLarge { cap });
        }
        out.extend_from_slice(&data);
        pacer.pace(data.len() as u64).await;
    }
    Ok(out.freeze())
}
