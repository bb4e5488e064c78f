//! Test support for the `net_*` integration tests: a real hyper HTTP/1.1 server on 127.0.0.1
//! (plain or TLS with an rcgen certificate), per-connection state for NTLM, and bodies that
//! can be cut or stalled mid-way. Handlers are plain closures so each test states its server's
//! behaviour next to its assertions.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use ucupdate_agent::net::{Client, ClientSettings, TlsOptions};
use ucupdate_ntlm::{AcceptStep, Acceptor, UserDb};
use ucupdate_protocol::HttpUrl;

/// The name the test certificate is for; clients resolve it to 127.0.0.1 by override.
pub const HOST: &str = "ucupdates-r2.corp.example";

/// A request as the handler sees it (body already read).
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Which accepted connection it came on (0, 1, ...).
    pub conn: usize,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a handler may keep per connection (an NTLM acceptor, who authenticated).
#[derive(Default)]
pub struct ConnState {
    pub requests: usize,
    pub ntlm: Option<ucupdate_ntlm::Acceptor>,
    pub user: Option<String>,
}

/// A response body that is whole, cut (the connection dies after the bytes), or stalled
/// (the bytes, then nothing ever again).
pub enum TestBody {
    Full(Option<Bytes>),
    Cut(Option<Bytes>),
    /// Internal: the cut's bytes are out; one more poll lets hyper flush them before the error.
    Cutting,
    Stall(Option<Bytes>),
}

impl TestBody {
    pub fn cut(bytes: Bytes) -> TestBody {
        TestBody::Cut(Some(bytes))
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match this {
            TestBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            TestBody::Cut(b) => match b.take() {
                Some(b) => {
                    *this = TestBody::Cutting;
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                None => Poll::Ready(Some(Err(io::Error::other("cut on purpose")))),
            },
            TestBody::Cutting => {
                // Pending once so hyper writes out what it holds; then the error kills the
                // connection with those bytes delivered.
                *this = TestBody::Cut(None);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            TestBody::Stall(b) => match b.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Poll::Pending,
            },
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            TestBody::Full(Some(b)) => hyper::body::SizeHint::with_exact(b.len() as u64),
            TestBody::Full(None) => hyper::body::SizeHint::with_exact(0),
            _ => hyper::body::SizeHint::default(),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, TestBody::Full(None))
    }
}

pub type Handler = Arc<dyn Fn(&Req, &mut ConnState) -> Response<TestBody> + Send + Sync>;

pub fn handler(
    f: impl Fn(&Req, &mut ConnState) -> Response<TestBody> + Send + Sync + 'static,
) -> Handler {
    Arc::new(f)
}

pub fn respond(status: u16, body: impl Into<Bytes>) -> Response<TestBody> {
    let mut r = Response::new(TestBody::Full(Some(body.into())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// A cert for [`HOST`] and the matching rustls server config.
pub struct Pki {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

impl Pki {
    pub fn new() -> Pki {
        let ck = rcgen::generate_simple_self_signed(vec![HOST.to_owned()]).unwrap();
        let cert: CertificateDer<'static> = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Pki {
            ca_pem: ck.cert.pem(),
            server: Arc::new(server),
        }
    }

    /// A client that trusts only this PKI and resolves [`HOST`] to 127.0.0.1.
    pub fn client(&self) -> Client {
        self.client_with(|_| {})
    }

    pub fn client_with(&self, tweak: impl FnOnce(&mut ClientSettings)) -> Client {
        let tls = TlsOptions::with_ca_pem(self.ca_pem.as_bytes().to_vec())
            .build()
            .unwrap();
        let mut settings = ClientSettings {
            tls: Some(tls),
            resolve_overrides: HashMap::from([(
                HOST.to_owned(),
                vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            )]),
            ..ClientSettings::default()
        };
        tweak(&mut settings);
        Client::with_settings(settings)
    }
}

/// A running server; it stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub https: bool,
    /// Every request, in arrival order.
    pub seen: Arc<Mutex<Vec<Req>>>,
    pub connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn plain(handler: Handler) -> TestServer {
        Self::start(None, handler).await
    }

    pub async fn tls(pki: &Pki, handler: Handler) -> TestServer {
        Self::start(Some(pki.server.clone()), handler).await
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> TestServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let https = tls.is_some();
        let (seen2, conns2) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let conn_id = conns2.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                let seen = seen2.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let state = Arc::new(Mutex::new(ConnState::default()));
                    let service =
                        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let handler = handler.clone();
                            let seen = seen.clone();
                            let state = state.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let req = Req {
                                    method: parts.method,
                                    path: parts.uri.to_string(),
                                    headers: parts.headers,
                                    body,
                                    conn: conn_id,
                                };
                                seen.lock().unwrap().push(req.clone());
                                let mut st = state.lock().unwrap();
                                st.requests += 1;
                                Ok::<_, Infallible>(handler(&req, &mut st))
                            }
                        });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                        Some(cfg) => {
                            let Ok(stream) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await
                            else {
                                return;
                            };
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        TestServer {
            addr,
            https,
            seen,
            connections,
            task,
        }
    }

    pub fn url(&self, path: &str) -> HttpUrl {
        let scheme = if self.https { "https" } else { "http" };
        let host = if self.https {
            HOST.to_owned()
        } else {
            self.addr.ip().to_string()
        };
        format!("{scheme}://{host}:{}{path}", self.addr.port())
            .parse()
            .unwrap()
    }

    pub fn seen(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves `data` the way IIS serves a static file: whole, or from `Range: bytes=N-`
/// (206 + Content-Range), or 416 when N is at or past the end.
pub fn serve_file(req: &Req, data: &Bytes) -> Response<TestBody> {
    let len = data.len() as u64;
    let from = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok());
    match from {
        None => respond(200, data.clone()),
        Some(n) if n >= len => {
            let mut r = respond(416, Bytes::new());
            r.headers_mut()
                .insert("content-range", format!("bytes */{len}").parse().unwrap());
            r
        }
        Some(n) => {
            let mut r = respond(206, data.slice(n as usize..));
            r.headers_mut().insert(
                "content-range",
                format!("bytes {n}-{}/{len}", len - 1).parse().unwrap(),
            );
            r
        }
    }
}

/// Deterministic test bytes.
pub fn file_bytes(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 31 % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

pub fn sha256(data: &[u8]) -> ucupdate_protocol::Sha256Digest {
    use sha2::Digest;
    ucupdate_protocol::Sha256Digest(sha2::Sha256::digest(data).into())
}

pub fn challenge(token: Option<&[u8]>, close: bool) -> http::Response<TestBody> {
    let mut r = respond(401, "anonymous access is not supported");
    let value = match token {
        Some(t) => ucupdate_ntlm::to_header(t),
        None => "NTLM".to_owned(),
    };
    r.headers_mut()
        .append("www-authenticate", value.parse().unwrap());
    r.headers_mut()
        .append("www-authenticate", "Negotiate".parse().unwrap());
    if close {
        r.headers_mut()
            .insert("connection", "close".parse().unwrap());
    }
    r
}

/// The external listener (user `CORP\alice`, password `correct horse`): anonymous requests
/// get 401; NTLM state lives with the connection.
/// `close_anonymous` makes the first 401 close the connection (some proxies do).
pub fn ntlm_handler(close_anonymous: bool, ok: fn(&Req) -> http::Response<TestBody>) -> Handler {
    let mut users = UserDb::default();
    users.insert(Some("CORP"), "alice", "correct horse");
    let users = Arc::new(users);
    handler(move |req, st| {
        if st.user.is_some() {
            return ok(req);
        }
        let Some(token) = req
            .header("authorization")
            .and_then(|h| ucupdate_ntlm::from_header(h).ok())
        else {
            return challenge(None, close_anonymous);
        };
        let acceptor = st.ntlm.get_or_insert_with(|| {
            Acceptor::new(
                users.clone(),
                [0x5A; 8],
                ucupdate_ntlm::filetime_from_unix_millis(1_780_000_000_000),
                "CORP",
            )
        });
        match acceptor.step(&token) {
            AcceptStep::Challenge(type2) => challenge(Some(&type2), false),
            AcceptStep::Accepted { user, .. } => {
                st.user = Some(user);
                ok(req)
            }
            AcceptStep::Rejected(_) => {
                st.ntlm = None;
                challenge(None, false)
            }
        }
    })
}
