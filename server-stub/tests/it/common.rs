//! Shared helpers: a server on a temp data dir, a pinned HTTP/1.1 client connection (plain
//! or TLS, so NTLM legs share one TCP connection), and check-request builders.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use ucupdate_protocol::{
    CheckRequest, CheckResponse, DeviceIdentity, FileName, FirmwareVersion, InstalledModule,
    PathSegment, UpdateKey,
};
use ucupdate_server_stub::{RunningServer, ServerConfig, UserDb};

pub const MAC: &str = "00-04-F2-00-01-76";
pub const OTHER_MAC: &str = "00-04-F2-00-01-77";

pub fn key() -> UpdateKey {
    "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap()
}

pub fn v(text: &str) -> FirmwareVersion {
    text.parse().unwrap()
}

pub fn files(tag: &str) -> Vec<(FileName, Vec<u8>)> {
    vec![
        (
            FileName::new("CPE.nbt").unwrap(),
            format!("image {tag} ").repeat(5000).into_bytes(),
        ),
        (
            FileName::new("CPE.cat").unwrap(),
            format!("catalog {tag}").into_bytes(),
        ),
        (
            FileName::new("CPE.xml").unwrap(),
            format!("<Description>{tag}</Description>").into_bytes(),
        ),
    ]
}

pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
}

pub fn users() -> UserDb {
    UserDb::parse("CONTOSO\\alice:Secret1!\nbob:hunter2\n").unwrap()
}

pub async fn start_with(
    dir: tempfile::TempDir,
    tune: impl FnOnce(&mut ServerConfig),
) -> TestServer {
    let mut config = ServerConfig::loopback(dir.path());
    config.users = users();
    tune(&mut config);
    let server = ucupdate_server_stub::start(config).await.unwrap();
    TestServer { server, dir }
}

pub async fn start() -> TestServer {
    start_with(tempfile::tempdir().unwrap(), |_| {}).await
}

pub fn check_body(running: &str, mac: &str) -> String {
    CheckRequest {
        identity: DeviceIdentity {
            device_type: "UCPhone".parse().unwrap(),
            brand: PathSegment::new("Polycom").unwrap(),
            model: PathSegment::new("CX700").unwrap(),
            revision: PathSegment::new("A").unwrap(),
            locale: PathSegment::new("ENU").unwrap(),
            mac: Some(mac.parse().unwrap()),
            serial: None,
        },
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

/// One client connection; every request on it travels on the same TCP (and TLS) session.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
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
    pub async fn plain(addr: SocketAddr) -> Conn {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn {
            sender,
            host: addr.to_string(),
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
        Conn {
            sender,
            host: addr.to_string(),
        }
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body.into())).unwrap();
        self.sender.ready().await.unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
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
        self.sender.ready().await.is_err() || self.sender.is_closed()
    }
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
