//! Raw HTTP/1.1 on one pinned connection (our `TcpStream`, tokio-rustls when `https`, hyper's
//! connection-level client), for the checks that must see status codes and headers as the
//! server sent them, or must control which connection a request travels on (NTLM binds to a
//! connection: "Type 3 on a fresh connection" is only testable when the connection is ours).
//! `agent::net` decodes replies and hides both, which is right for a device and wrong here.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use ucupdate_protocol::HttpUrl;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest body a check reads into memory (an update image; real ones are tens of MB).
pub(crate) const MAX_BODY: usize = 256 << 20;

/// A response as the server sent it.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// First value of `name`, lossily as text.
    pub fn header(&self, name: HeaderName) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// The NTLM token of a `WWW-Authenticate: NTLM <base64>` header, if any.
    pub fn ntlm_challenge(&self) -> Option<Vec<u8>> {
        self.headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| ucupdate_ntlm::from_header(v).ok())
    }

    /// Whether some `WWW-Authenticate` header offers the NTLM scheme (bare or with a token).
    pub fn offers_ntlm(&self) -> bool {
        self.headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| {
                v.split_whitespace()
                    .next()
                    .is_some_and(|s| s.eq_ignore_ascii_case("NTLM"))
            })
    }

    /// A one-line summary for a check's detail.
    pub fn summary(&self) -> String {
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(120)]).into_owned();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            format!("{}", self.status)
        } else {
            format!("{} ({text})", self.status)
        }
    }
}

/// One open connection; every request on it goes over the same TCP (and TLS) session.
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

/// A TCP or TLS byte stream.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// TCP to `url`'s host and port, then TLS when `https` (verified with `tls`).
async fn open(
    url: &HttpUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Box<dyn Stream>, String> {
    let authority = url.authority();
    let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority))
        .await
        .map_err(|_| format!("connect {authority}: timed out"))?
        .map_err(|e| format!("connect {authority}: {e}"))?;
    // NTLM legs are small and sequential: Nagle would only add delay.
    let _ = tcp.set_nodelay(true);
    if !url.https {
        return Ok(Box::new(tcp));
    }
    let config = tls.ok_or_else(|| format!("{url}: https needs a TLS configuration"))?;
    let name = ServerName::try_from(url.host.clone())
        .map_err(|e| format!("{}: not a TLS server name: {e}", url.host))?;
    let stream = timeout(
        CONNECT_TIMEOUT,
        TlsConnector::from(config.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| format!("TLS handshake with {authority}: timed out"))?
    .map_err(|e| format!("TLS handshake with {authority}: {e}"))?;
    Ok(Box::new(stream))
}

/// Opens a connection to `url`'s host and port (TLS when `https`, verified with `tls`).
pub(crate) async fn connect(
    url: &HttpUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Conn, String> {
    let authority = url.authority();
    let stream = open(url, tls).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {authority}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender, authority })
}

impl Conn {
    /// Whether the server has closed this connection (as far as hyper knows yet).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends one request and reads the whole reply (at most [`MAX_BODY`] bytes of body).
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, String)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        timeout(REQUEST_TIMEOUT, self.sender.ready())
            .await
            .map_err(|_| "connection not ready: timed out".to_owned())?
            .map_err(|e| format!("the server closed the connection: {e}"))?;
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(
                header::USER_AGENT,
                concat!("ucupdate-conformance/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|e| format!("header {name}: bad value: {e}"))?;
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(body.into()))
            .map_err(|e| format!("{method} {path}: cannot build the request: {e}"))?;
        let response = timeout(REQUEST_TIMEOUT, self.sender.send_request(request))
            .await
            .map_err(|_| format!("{method} {path}: no response head within 30 s"))?
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = timeout(REQUEST_TIMEOUT, Limited::new(body, MAX_BODY).collect())
            .await
            .map_err(|_| format!("{method} {path}: body not complete within 30 s"))?
            .map_err(|e| format!("{method} {path}: reading the body: {e}"))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Opens a connection, sends one request, and drops the connection.
pub(crate) async fn once(
    url: &HttpUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
    method: Method,
    headers: &[(HeaderName, String)],
    body: impl Into<Bytes>,
) -> Result<Reply, String> {
    let mut conn = connect(url, tls).await?;
    conn.send(method, &url.path, headers, body).await
}

/// How long a client waits for `100 Continue` before sending the body anyway (RFC 9110 lets a
/// client go ahead when a server never answers the expectation).
const CONTINUE_WAIT: Duration = Duration::from_secs(2);

/// POSTs a large body with `Expect: 100-continue` and returns the final status.
///
/// Hyper's client cannot do this check: a server that refuses a body by its declared length
/// answers at once and closes, hyper is still writing, and it reports the write error instead of
/// the response it was sent. Here the body goes out only after `100 Continue` (or after
/// [`CONTINUE_WAIT`] of silence), and the response is read while it is written, so a refusal
/// is seen whichever way the server sends it.
pub(crate) async fn post_large(
    url: &HttpUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
    content_type: &str,
    body: Bytes,
) -> Result<StatusCode, String> {
    let stream = open(url, tls).await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority(),
        body.len()
    );
    wr.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("writing the request head: {e}"))?;
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = async move {
        let mut go = Some(go_tx);
        let mut buf = Vec::new();
        loop {
            let status = read_head(&mut rd, &mut buf).await?;
            if status != StatusCode::CONTINUE {
                return Ok(status);
            }
            if let Some(go) = go.take() {
                let _ = go.send(());
            }
        }
    };
    let writer = async move {
        let _ = timeout(CONTINUE_WAIT, go_rx).await;
        for chunk in body.chunks(64 * 1024) {
            wr.write_all(chunk).await?;
        }
        wr.flush().await
    };
    tokio::pin!(reader, writer);
    let mut write_error = None;
    let read = timeout(REQUEST_TIMEOUT, async {
        loop {
            tokio::select! {
                status = &mut reader => break status,
                written = &mut writer, if write_error.is_none() => {
                    // Keep reading: the response may already be on its way.
                    write_error = Some(written.err());
                }
            }
        }
    })
    .await
    .map_err(|_| "no response head within 30 s".to_owned())?;
    read.map_err(|e| match write_error.flatten() {
        Some(w) => format!("{e} (writing the body: {w})"),
        None => e,
    })
}

/// Reads one response head off `rd` (bytes past it stay in `buf`) and returns its status.
async fn read_head(
    rd: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> Result<StatusCode, String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            let line = String::from_utf8_lossy(&head);
            let code = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| format!("not an HTTP response: {:?}", line.lines().next()))?;
            return Ok(code);
        }
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        let mut chunk = [0u8; 4096];
        let n = rd
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection without a response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
