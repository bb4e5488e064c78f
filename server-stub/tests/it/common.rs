//! Shared helpers: the socket-free core ([`TestApp`]) or a whole server ([`TestServer`]) on a
//! temp data dir, one client connection type for both ([`Conn`]: in memory through
//! `App::call`, or a pinned HTTP/1.1 connection, plain or TLS, so NTLM legs share one TCP
//! connection), and check-request builders.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use ucupdate_protocol::{CheckRequest, CheckResponse, FileName, InstalledModule, PathSegment};
use ucupdate_server_stub::{App, ConnState, Control, RunningServer, ServerConfig, Site, UserDb};

// The update key, versions, published files and device MAC every crate's tests share.
use ucupdate_server_stub::testing::{self, PASSWORD, USER};
pub use ucupdate_server_stub::testing::{files, key, v, MAC};

pub const OTHER_MAC: &str = "00-04-F2-00-01-77";

pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
}

/// The shared NTLM user ([`USER`]) and a second one without a domain (`bob`).
pub fn users() -> UserDb {
    UserDb::parse(&format!("{USER}:{PASSWORD}\nbob:hunter2\n")).unwrap()
}

pub async fn start_with(
    dir: tempfile::TempDir,
    tune: impl FnOnce(&mut ServerConfig),
) -> TestServer {
    let server = testing::start(dir.path(), |config| {
        config.users = users();
        tune(config);
    })
    .await;
    TestServer { server, dir }
}

pub async fn start() -> TestServer {
    start_with(tempfile::tempdir().unwrap(), |_| {}).await
}

/// The `BaseURL` and `ExternalBaseURL` roots an in-memory [`TestApp`] names in its offers.
pub const INTERNAL_BASE: &str = "http://stub.test:8080/";
pub const EXTERNAL_BASE: &str = "https://stub.test:4443/";

/// The peer an in-memory connection claims to be.
pub const PEER: &str = "192.0.2.7:50000";

/// The request handlers without listeners: what every non-connection test talks to.
pub struct TestApp {
    pub app: App,
    pub dir: tempfile::TempDir,
}

impl TestApp {
    pub fn control(&self) -> Control {
        self.app.control()
    }

    /// A new connection to `site` (a new `ConnState`: anonymous, no NTLM handshake).
    pub fn conn(&self, site: Site) -> Conn {
        Conn::Mem {
            app: self.app.clone(),
            state: ConnState::new(site, PEER.parse().unwrap()),
            token: None,
        }
    }

    /// An admin connection that sends the token and the Content-Type the admin API wants.
    pub fn admin(&self) -> Conn {
        self.conn(Site::Admin)
            .with_token(self.app.admin_token().secret())
    }
}

impl TestServer {
    /// A loopback admin connection that sends the token and the right Content-Type.
    pub async fn admin(&self) -> Conn {
        Conn::plain(self.server.admin_addr().unwrap())
            .await
            .with_token(self.server.admin_token().secret())
    }
}

pub fn app_with(dir: tempfile::TempDir, tune: impl FnOnce(&mut ServerConfig)) -> TestApp {
    let mut config = testing::loopback_config(dir.path());
    config.users = users();
    config.public_internal_url = Some(INTERNAL_BASE.parse().unwrap());
    config.public_external_url = Some(EXTERNAL_BASE.parse().unwrap());
    // The name in-memory requests carry in their Host header.
    config.admin_hosts = vec!["stub.test".to_owned()];
    tune(&mut config);
    let app = App::open(&config).unwrap();
    TestApp { app, dir }
}

pub fn app() -> TestApp {
    app_with(tempfile::tempdir().unwrap(), |_| {})
}

pub fn check_body(running: &str, mac: &str) -> String {
    CheckRequest {
        identity: testing::identity(mac),
        modules: vec![InstalledModule {
            update_type: PathSegment::new("CPE").unwrap(),
            file_name: FileName::new("CPE.nbt").unwrap(),
            version: v(running),
            timestamp: None,
        }],
        user: None,
    }
    .encode()
}

/// One client connection; every request on it travels on the same connection: one
/// `ConnState` through `App::call`, or one TCP (and TLS) session. With a `token` (admin
/// connections), requests that set no `authorization` carry `Bearer <token>` and state-changing
/// ones that set no `content-type` carry the one the admin API wants.
pub enum Conn {
    Mem {
        app: App,
        state: ConnState,
        token: Option<String>,
    },
    Socket {
        sender: SendRequest<Full<Bytes>>,
        host: String,
        token: Option<String>,
    },
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    async fn of<B>(response: Response<B>) -> Reply
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::fmt::Debug,
    {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn check(&self) -> CheckResponse {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text());
        CheckResponse::decode(&self.body).unwrap()
    }
}

impl Conn {
    /// This connection, sending the admin `token` (see [`Conn`]).
    pub fn with_token(mut self, secret: &str) -> Conn {
        match &mut self {
            Conn::Mem { token, .. } | Conn::Socket { token, .. } => {
                *token = Some(secret.to_owned())
            }
        }
        self
    }

    pub async fn plain(addr: SocketAddr) -> Conn {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn::Socket {
            sender,
            host: addr.to_string(),
            token: None,
        }
    }

    pub async fn tls(addr: SocketAddr, ca_pem: &str) -> Conn {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn::Socket {
            sender,
            host: addr.to_string(),
            token: None,
        }
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let (host, token) = match self {
            Conn::Mem { token, .. } => ("stub.test", token.as_deref()),
            Conn::Socket { host, token, .. } => (host.as_str(), token.as_deref()),
        };
        let given = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", host);
        if let Some(token) = token {
            if !given("authorization") {
                builder = builder.header("authorization", format!("Bearer {token}"));
            }
            if method != Method::GET && method != Method::HEAD && !given("content-type") {
                let wanted = if method == Method::PUT && path.starts_with("/admin/files/") {
                    "application/octet-stream"
                } else {
                    "application/json"
                };
                builder = builder.header("content-type", wanted);
            }
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body.into())).unwrap();
        match self {
            Conn::Mem { app, state, .. } => Reply::of(app.call(request, state).await).await,
            Conn::Socket { sender, .. } => {
                sender.ready().await.unwrap();
                Reply::of(sender.send_request(request).await.unwrap()).await
            }
        }
    }

    /// Any request, with any body (in memory only: streamed or failing bodies).
    pub async fn call<B>(&mut self, request: Request<B>) -> Reply
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Conn::Mem { app, state, .. } = self else {
            panic!("Conn::call is for in-memory connections");
        };
        Reply::of(app.call(request, state).await).await
    }

    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, path, headers, Bytes::new()).await
    }

    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.send(
            Method::POST,
            path,
            &[("content-type", "text/xml; charset=utf-8")],
            body,
        )
        .await
    }

    /// An internal check by a device with `mac` running `running`.
    pub async fn check(&mut self, running: &str, mac: &str) -> CheckResponse {
        self.post(
            ucupdate_protocol::wire::INTERNAL_HANDLER_PATH,
            check_body(running, mac),
        )
        .await
        .check()
    }

    /// Whether the server closed the connection (the next request fails).
    pub async fn is_closed(&mut self) -> bool {
        match self {
            Conn::Mem { .. } => panic!("an in-memory connection has no socket to close"),
            Conn::Socket { sender, .. } => sender.ready().await.is_err() || sender.is_closed(),
        }
    }
}

/// The NTLM timestamp the client side of every test handshake uses.
pub const FILETIME: u64 = 134_000_000_000_000_000;

/// Sends `client`'s Type 1 on `c` and returns the server's Type 2 (checking the 401 around it).
pub async fn negotiate(c: &mut Conn, client: &mut ucupdate_ntlm::Client) -> Vec<u8> {
    let type1 = ucupdate_ntlm::to_header(&client.negotiate());
    let challenge = c
        .send(
            Method::POST,
            ucupdate_protocol::wire::EXTERNAL_HANDLER_PATH,
            &[("authorization", &type1)],
            "",
        )
        .await;
    assert_eq!(
        challenge.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        challenge.text()
    );
    let www = challenge.header("www-authenticate").unwrap();
    let type2 = ucupdate_ntlm::from_header(&www).unwrap();
    assert_eq!(ucupdate_ntlm::message_type(&type2), Some(2));
    type2
}

/// Runs Type 1 / Type 2 / Type 3 on `c` with `password`; returns the reply to the Type 3.
pub async fn login(c: &mut Conn, user: &str, password: &str, body: &str) -> Reply {
    let mut client = ucupdate_ntlm::Client::new(
        ucupdate_ntlm::Credentials::parse_user(user, password),
        "PHONE1",
    );
    let type2 = negotiate(c, &mut client).await;
    let type3 = client.authenticate(&type2, [9; 8], FILETIME).unwrap();
    let type3 = ucupdate_ntlm::to_header(&type3);
    c.send(
        Method::POST,
        ucupdate_protocol::wire::EXTERNAL_HANDLER_PATH,
        &[("authorization", &type3)],
        body.to_owned(),
    )
    .await
}

/// `(status, version)` of an offer, or `None`.
pub fn offered(response: &CheckResponse) -> Option<(&'static str, String)> {
    match response {
        CheckResponse::NoUpdate => None,
        CheckResponse::Update(o) => Some((o.status.as_str(), o.version.to_string())),
    }
}

/// The path part of a URL string.
pub fn path_of(url: &str) -> String {
    url.parse::<ucupdate_protocol::HttpUrl>().unwrap().path
}

/// Writes raw bytes on a fresh connection and reads until the server closes it (requests
/// that hyper's client would not send, or whose body the server refuses to read).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A request body of separate frames with no declared length (like a chunked upload), which
/// can end in an error (like a client that goes away mid-body).
pub struct Frames {
    frames: VecDeque<Bytes>,
    fail_at_end: bool,
}

impl Frames {
    pub fn new(frames: impl IntoIterator<Item = Bytes>) -> Self {
        Frames {
            frames: frames.into_iter().collect(),
            fail_at_end: false,
        }
    }

    /// The same frames, then a read error instead of the end of the body.
    pub fn failing(frames: impl IntoIterator<Item = Bytes>) -> Self {
        Frames {
            fail_at_end: true,
            ..Frames::new(frames)
        }
    }
}

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        match self.frames.pop_front() {
            Some(data) => Poll::Ready(Some(Ok(hyper::body::Frame::data(data)))),
            None if self.fail_at_end => {
                self.fail_at_end = false;
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "client went away",
                ))))
            }
            None => Poll::Ready(None),
        }
    }
}

/// The device ids of the inventory rows stored in `data`'s database (read-only, beside a
/// running server: the database is in WAL mode).
pub fn stored_inventory(data: &std::path::Path) -> Vec<String> {
    let db = rusqlite::Connection::open_with_flags(
        data.join(ucupdate_server_stub::state::DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut rows = db
        .prepare("SELECT device FROM inventory ORDER BY device")
        .unwrap();
    rows.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}
