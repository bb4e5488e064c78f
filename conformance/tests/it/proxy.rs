//! A tiny hyper reverse proxy that breaks one thing on purpose ([`Fault`]), so a test can show
//! that the suite names the right check when a server is misconfigured the way real
//! deployments were (IIS without a `.nbt` MIME mapping, a store that ignores `Range`, an
//! external site that forgot NTLM, a file changed after its hash was taken).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `.nbt` responses carry this Content-Type; `None` strips the header (IIS without a
    /// MIME mapping for `.nbt`).
    NbtContentType(Option<&'static str>),
    /// `/RequestHandlerExt/...` is forwarded to the anonymous internal handler: an external
    /// site that forgot to require NTLM.
    AnonymousExternal,
    /// `Range` headers are dropped before forwarding, so partial requests get the whole file.
    IgnoreRange,
    /// The first byte of every whole (200) `.nbt` body is flipped: a store whose file changed
    /// after the offer's hash was taken.
    CorruptNbt,
}

/// A running proxy; dropping it stops accepting.
pub struct Proxy {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `listener`, forwarding every request to the plain-HTTP `upstream` with `fault`
/// applied. One upstream connection per request: simple, and nothing here needs NTLM upstream.
pub fn spawn_proxy(listener: TcpListener, upstream: SocketAddr, fault: Fault) -> Proxy {
    let addr = listener.local_addr().expect("listener address");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |req| forward(req, upstream, fault));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Proxy { addr, task }
}

async fn forward(
    req: Request<Incoming>,
    upstream: SocketAddr,
    fault: Fault,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match forward_inner(req, upstream, fault).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = Response::new(Full::new(Bytes::from(format!("proxy: {e}\n"))));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r
        }
    })
}

const HOP_BY_HOP: [header::HeaderName; 3] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::HeaderName::from_static("keep-alive"),
];

async fn forward_inner(
    req: Request<Incoming>,
    upstream: SocketAddr,
    fault: Fault,
) -> Result<Response<Full<Bytes>>, String> {
    let (mut parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let mut path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    match fault {
        Fault::AnonymousExternal => {
            let ext = "/requesthandlerext/";
            if path.to_ascii_lowercase().starts_with(ext) {
                path = format!("/RequestHandler/{}", &path[ext.len()..]);
            }
        }
        Fault::IgnoreRange => {
            parts.headers.remove(header::RANGE);
        }
        Fault::NbtContentType(_) | Fault::CorruptNbt => {}
    }
    for h in &HOP_BY_HOP {
        parts.headers.remove(h);
    }
    let host = HeaderValue::from_str(&upstream.to_string()).map_err(|e| e.to_string())?;
    parts.headers.insert(header::HOST, host);
    let stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| format!("connect {upstream}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut request = Request::builder()
        .method(parts.method)
        .uri(&path)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    *request.headers_mut() = parts.headers;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let (mut parts, body) = response.into_parts();
    let mut body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    for h in &HOP_BY_HOP {
        parts.headers.remove(h);
    }
    let is_nbt = path.to_ascii_lowercase().ends_with(".nbt");
    if fault == Fault::CorruptNbt && is_nbt && parts.status == StatusCode::OK && !body.is_empty() {
        let mut bytes = body.to_vec();
        bytes[0] ^= 0xff;
        body = Bytes::from(bytes);
    }
    if let Fault::NbtContentType(value) = fault {
        if is_nbt {
            match value {
                Some(v) => {
                    parts
                        .headers
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
                }
                None => {
                    parts.headers.remove(header::CONTENT_TYPE);
                }
            }
        }
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}
