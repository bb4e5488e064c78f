//! Hostile input to the server stub over real sockets (issue 8), beyond what
//! `server-stub/tests/it/` already covers (malformed XML, a plain DTD, declared and chunked
//! oversized bodies, encoded traversal in file URLs, garbage NTLM tokens, a Type 3 on a fresh
//! connection, the connection cap): deeply nested and attribute-bloated XML, entity expansion
//! and external entities, invalid UTF-8, raw backslashes / absolute paths / double encoding in
//! downloads and log uploads, disallowed log extensions, a *replayed* NTLM Type 3, two thousand
//! idle and slow-loris connections, a burst of 10,000 simulated devices at once, a SIGKILLed
//! server keeping every acknowledged change, and passwords absent from the logs of both ends.
//! Each is answered with the right 4xx (or 503), never a 5xx or a panic, and the server keeps
//! serving others.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use ucupdate_agent::net::{self, Client, ClientSettings, Credentials, ErrorClass, TlsOptions};
use ucupdate_ntlm::Client as NtlmClient;
use ucupdate_protocol::wire::{EXTERNAL_HANDLER_PATH, INTERNAL_HANDLER_PATH};
use ucupdate_protocol::{
    CheckRequest, CheckResponse, DeviceIdentity, FileName, FirmwareVersion, HttpUrl,
    InstalledModule, UpdateKey,
};
use ucupdate_server_stub::{RunningServer, ServerConfig, UserDb};

const USER: &str = "CONTOSO\\alice";
const PASSWORD: &str = "Pa55-w0rd-NEVER-LOGGED";
const MAC: &str = "00-04-F2-00-01-76";

fn key() -> UpdateKey {
    "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap()
}

fn v(text: &str) -> FirmwareVersion {
    text.parse().unwrap()
}

async fn bare_stub(dir: &Path, tune: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut config = ServerConfig::loopback(dir);
    config.users = UserDb::parse(&format!("{USER}:{PASSWORD}\n")).unwrap();
    tune(&mut config);
    ucupdate_server_stub::start(config).await.unwrap()
}

/// A stub with 2.0.0.0 approved.
async fn stub(dir: &Path, tune: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let server = bare_stub(dir, tune).await;
    let files = vec![
        (FileName::new("CPE.nbt").unwrap(), b"image 2.0".repeat(100)),
        (FileName::new("CPE.cat").unwrap(), b"catalog".to_vec()),
    ];
    server
        .control()
        .publish(&key(), v("2.0.0.0"), files)
        .await
        .unwrap();
    server.control().approve(&key()).await.unwrap();
    server
}

fn addr_of(url: &HttpUrl) -> SocketAddr {
    format!("{}:{}", url.host, url.port).parse().unwrap()
}

fn check_body(running: &str) -> String {
    CheckRequest {
        identity: identity(),
        modules: vec![InstalledModule {
            update_type: "CPE".parse().unwrap(),
            file_name: FileName::new("CPE.nbt").unwrap(),
            version: v(running),
            timestamp: None,
        }],
        user: None,
    }
    .encode()
}

fn identity() -> DeviceIdentity {
    DeviceIdentity {
        device_type: "UCPhone".parse().unwrap(),
        brand: "Polycom".parse().unwrap(),
        model: "CX700".parse().unwrap(),
        revision: "A".parse().unwrap(),
        locale: "ENU".parse().unwrap(),
        mac: Some(MAC.parse().unwrap()),
        serial: None,
    }
}

/// One HTTP/1.1 exchange on an open stream: the status, lower-cased headers and the body.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &[u8],
) -> (u16, HashMap<String, String>, Vec<u8>) {
    s.write_all(request).await.unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {line:?}"));
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).await.unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, val)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), val.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.unwrap();
    (status, headers, body)
}

/// A request with `Connection: close` on a new connection; the status and the body as text.
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (status, _, body) = exchange(&mut s, request).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
}

/// No 5xx was ever answered, except the connection cap's 503.
fn assert_no_server_errors(server: &RunningServer) {
    let m = server.control().metrics();
    let bad: Vec<_> = m
        .requests
        .iter()
        .filter(|((_, status), _)| *status >= 500 && *status != 503)
        .collect();
    assert!(bad.is_empty(), "server errors: {bad:?}");
}

/// The server still answers a good check with the approved offer.
async fn still_serving(server: &RunningServer) {
    let addr = addr_of(&server.internal_url().unwrap());
    let (status, body) = raw(
        addr,
        &post(INTERNAL_HANDLER_PATH, check_body("1.0.0.0").as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let CheckResponse::Update(offer) = CheckResponse::decode(body.as_bytes()).unwrap() else {
        panic!("no offer: {body}");
    };
    assert_eq!(offer.version, v("2.0.0.0"));
}

#[tokio::test]
async fn hostile_xml_is_refused_and_the_server_keeps_serving() {
    // The stub's log lines too: a hostile body must not be copied into them at full length.
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let addr = addr_of(&server.internal_url().unwrap());
    let good = check_body("1.0.0.0");
    let nested = format!(
        "<DeviceUpdateRequest>{}{}</DeviceUpdateRequest>",
        "<a>".repeat(8_000),
        "</a>".repeat(8_000)
    );
    let attrs: String = (0..4_000).map(|i| format!(" a{i}=\"x\"")).collect();
    let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
        <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\
        <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\
        <!ENTITY lol9 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">]>\
        <DeviceUpdateRequest><DeviceType>&lol9;</DeviceType></DeviceUpdateRequest>";
    let external =
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\
        <DeviceUpdateRequest><Brand>&x;</Brand></DeviceUpdateRequest>";
    let undeclared = good.replace(">Polycom<", ">&xxe;<");
    let mut bad_utf8 = good.clone().into_bytes();
    let at = good.find("Polycom").unwrap();
    bad_utf8[at] = 0xff;
    bad_utf8[at + 1] = 0xfe;
    let mut utf16 = vec![0xff, 0xfe];
    utf16.extend(good.encode_utf16().flat_map(|u| u.to_le_bytes()));
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("8000 nested elements", nested.into_bytes(), &[400]),
        (
            "4000 attributes",
            format!("<DeviceUpdateRequest{attrs}/>").into_bytes(),
            &[400],
        ),
        (
            "a 60 KB element name",
            format!("<{}/>", "n".repeat(60_000)).into_bytes(),
            &[400],
        ),
        ("billion laughs", laughs.as_bytes().to_vec(), &[400]),
        ("external entity", external.as_bytes().to_vec(), &[400]),
        ("undeclared entity", undeclared.into_bytes(), &[400]),
        ("invalid UTF-8", bad_utf8, &[400]),
        ("UTF-16", utf16, &[400]),
        ("NUL bytes", vec![0u8; 1000], &[400]),
        (
            "64 KiB of spaces",
            vec![b' '; ucupdate_protocol::wire::MAX_MESSAGE_BYTES],
            &[400],
        ),
    ];
    for (why, body, allowed) in cases {
        let (status, text) = raw(addr, &post(INTERNAL_HANDLER_PATH, &body)).await;
        assert!(allowed.contains(&status), "{why}: {status} {text}");
        assert!(
            text.len() < 300,
            "{why}: a short reason, got {} bytes",
            text.len()
        );
        assert!(!text.contains("root:"), "{why}: leaked a file");
    }
    assert_no_server_errors(&server);
    still_serving(&server).await;
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("bad check request"),
        "the refusals were logged: {logs}"
    );
    let longest = logs.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1_000, "a {longest}-byte log line");
}

#[tokio::test]
async fn traversal_in_downloads_and_log_uploads_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = stub(&data, |_| {}).await;
    std::fs::write(dir.path().join("secret.txt"), "TOP-SECRET").unwrap();
    let addr = addr_of(&server.internal_url().unwrap());
    let base = "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/2.0.0.0/CPE";
    for target in [
        "/DeviceUpdateFiles_Int/../state.json".to_owned(),
        format!("{base}/..\\..\\..\\..\\..\\..\\..\\..\\..\\secret.txt"),
        format!("{base}/%2e%2e%2f%2e%2e%2f%2e%2e%2fstate.json"),
        format!("{base}/%252e%252e%252fstate.json"),
        format!("{base}/%2fetc%2fpasswd"),
        format!("{base}/%00CPE.nbt"),
        format!("{base}/C:%5cWindows%5cwin.ini"),
        format!("{base}/CPE.nbt%00.txt"),
        "//etc/passwd".to_owned(),
        "/etc/passwd".to_owned(),
        "/DeviceUpdateFiles_Int//etc/passwd".to_owned(),
        format!("http://127.0.0.1{base}/..%2f..%2f..%2f..%2f..%2f..%2f..%2fstate.json"),
        format!("{base}/....//....//state.json"),
        "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/2.0.0.0/CPE/".to_owned(),
        "*".to_owned(),
    ] {
        let (status, text) = raw(addr, &get(&target)).await;
        assert!(matches!(status, 400 | 404), "{target}: {status}");
        assert!(
            !text.contains("TOP-SECRET") && !text.contains("root:") && !text.contains("\"rules\""),
            "{target} leaked a file"
        );
    }
    // Log uploads: the file and device names end up on disk, so they get the same scrutiny.
    let upload = |query: &str| {
        let mut r = format!(
            "POST {INTERNAL_HANDLER_PATH}?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nConnection: close\r\nContent-Length: 4\r\n\r\n"
        )
        .into_bytes();
        r.extend_from_slice(b"PWND");
        r
    };
    for query in [
        "action=logupload&type=CELog&file=%2fetc%2fcron.d%2fx.txt&device=PCX-1",
        "action=logupload&type=CELog&file=..%5c..%5c..%5cx.txt&device=PCX-1",
        "action=logupload&type=CELog&file=..\\..\\x.txt&device=PCX-1",
        "action=logupload&type=CELog&file=C:%5cx.txt&device=PCX-1",
        "action=logupload&type=CELog&file=x.txt&device=%2e%2e",
        "action=logupload&type=CELog&file=x.txt&device=..%2f..%2f..",
        "action=logupload&type=CELog&file=x.txt&device=%2ftmp",
        "action=logupload&type=..%2fCELog&file=x.txt&device=PCX-1",
        "action=logupload&type=CELog&file=%2e%2e&device=PCX-1",
        "action=logupload&type=CELog&file=x.txt%00.exe&device=PCX-1",
        // Disallowed extensions.
        "action=logupload&type=CELog&file=payload.exe&device=PCX-1",
        "action=logupload&type=CELog&file=run.sh&device=PCX-1",
        "action=logupload&type=CELog&file=index.php&device=PCX-1",
        "action=logupload&type=CELog&file=noextension&device=PCX-1",
        "action=logupload&type=CELog&file=log.txt.exe&device=PCX-1",
    ] {
        let (status, text) = raw(addr, &upload(query)).await;
        assert_eq!(status, 400, "{query}: {text}");
    }
    // Nothing was written anywhere: no `logs/` at all, and nothing beside the data directory.
    assert!(
        !data.join("logs").exists() || walk(&data.join("logs")).is_empty(),
        "{:?}",
        walk(&data.join("logs"))
    );
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut beside = beside;
    beside.sort();
    assert_eq!(beside, ["data", "secret.txt"]);
    assert!(walk(&data)
        .iter()
        .all(|p| !std::fs::read(p).unwrap_or_default().starts_with(b"PWND")));
    assert_no_server_errors(&server);
    still_serving(&server).await;
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

async fn tls(addr: SocketAddr, ca_pem: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = TlsOptions::with_ca_pem(ca_pem.as_bytes().to_vec())
        .build()
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

fn ext_post(authorization: Option<&str>, body: &str) -> Vec<u8> {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {EXTERNAL_HANDLER_PATH} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Type 1 on `conn`, the server's Type 2 back.
async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut S,
    client: &mut NtlmClient,
) -> Vec<u8> {
    let type1 = ucupdate_ntlm::to_header(&client.negotiate());
    let (status, headers, body) = exchange(conn, &ext_post(Some(&type1), "")).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    ucupdate_ntlm::from_header(&headers["www-authenticate"]).unwrap()
}

#[tokio::test]
async fn replayed_and_garbage_ntlm_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let ext = addr_of(&server.external_url().unwrap());
    let ca = server.ca_pem().to_owned();
    let body = check_body("1.0.0.0");
    const FILETIME: u64 = 133_000_000_000_000_000;

    // A real handshake that succeeds: its Type 3 is what an eavesdropper replays.
    let mut a = tls(ext, &ca).await;
    let mut alice = NtlmClient::new(Credentials::parse_user(USER, PASSWORD), "PHONE1");
    let type2 = negotiate(&mut a, &mut alice).await;
    let type3 = ucupdate_ntlm::to_header(&alice.authenticate(&type2, [3; 8], FILETIME).unwrap());
    let (status, _, _) = exchange(&mut a, &ext_post(Some(&type3), &body)).await;
    assert_eq!(status, 200, "the genuine handshake");

    // Replayed after a new Type 1 (the server's new challenge does not match the proof).
    let mut b = tls(ext, &ca).await;
    let mut mallory = NtlmClient::new(Credentials::parse_user(USER, "guess"), "EVIL");
    let _ = negotiate(&mut b, &mut mallory).await;
    let (status, headers, reply) = exchange(&mut b, &ext_post(Some(&type3), &body)).await;
    assert_eq!(
        status,
        401,
        "replayed Type 3 accepted: {}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(headers["www-authenticate"], "NTLM");
    // Replayed with no Type 1 at all on a new connection.
    let mut c = tls(ext, &ca).await;
    let (status, _, _) = exchange(&mut c, &ext_post(Some(&type3), &body)).await;
    assert_eq!(status, 401);
    // Random garbage on one connection, as Type 1 and as Type 3 (after a real Type 1).
    let mut d = tls(ext, &ca).await;
    let mut x: u64 = 0x1234_5678;
    for i in 0..200 {
        let len = 1 + (x % 300) as usize;
        let token: Vec<u8> = (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (x >> 33) as u8
            })
            .collect();
        // Every other one looks like an NTLM message of some type.
        let token = if i % 2 == 0 {
            [b"NTLMSSP\0".as_slice(), &[(i % 4) as u8, 0, 0, 0], &token].concat()
        } else {
            token
        };
        if i % 3 == 0 {
            let mut probe = NtlmClient::new(Credentials::parse_user(USER, "x"), "W");
            let _ = negotiate(&mut d, &mut probe).await;
        }
        let (status, _, _) = exchange(
            &mut d,
            &ext_post(Some(&ucupdate_ntlm::to_header(&token)), &body),
        )
        .await;
        assert_eq!(status, 401, "garbage token {i}");
    }
    // The same connection still completes a real handshake, and the server serves others.
    let mut bob = NtlmClient::new(Credentials::parse_user(USER, PASSWORD), "PHONE2");
    let type2 = negotiate(&mut d, &mut bob).await;
    let type3 = ucupdate_ntlm::to_header(&bob.authenticate(&type2, [9; 8], FILETIME).unwrap());
    let (status, _, _) = exchange(&mut d, &ext_post(Some(&type3), &body)).await;
    assert_eq!(status, 200);
    assert!(server.control().metrics().ntlm_failures >= 200);
    assert_eq!(server.control().metrics().ntlm_successes, 2);
    assert_no_server_errors(&server);
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Both ends of an NTLM exchange (the stub's acceptor and the agent's client), with every
/// `tracing` event down to TRACE captured: the password never appears (nor does a wrong one).
#[tokio::test]
async fn credentials_never_appear_in_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Current-thread runtime: the stub's tasks and the client run on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let tls = TlsOptions::with_ca_pem(server.ca_pem().as_bytes().to_vec())
        .build()
        .unwrap();
    let client = Client::with_settings(ClientSettings {
        tls: Some(tls),
        ..ClientSettings::default()
    });
    let url = server.external_url().unwrap();
    let request = CheckRequest::decode(check_body("1.0.0.0").as_bytes()).unwrap();
    let good = Credentials::parse_user(USER, PASSWORD);
    let response = net::check(&client, &url, &request, Some(&good))
        .await
        .unwrap();
    assert!(matches!(response, CheckResponse::Update(_)));
    const WRONG: &str = "Wr0ng-Guess-ALSO-SECRET";
    let bad = Credentials::parse_user(USER, WRONG);
    let err = net::check(&client, &url, &request, Some(&bad))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unauthorized);
    // Debug output of the credentials themselves is redacted too.
    let _ = writeln!(capture.clone(), "{good:?} {bad:?}");
    server.shutdown().await.unwrap();
    let text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        text.lines().count() > 5,
        "the capture saw the exchange: {text}"
    );
    assert!(
        text.contains("alice"),
        "the user name is logged, so logging ran: {text}"
    );
    for secret in [PASSWORD, WRONG] {
        assert!(!text.contains(secret), "{secret} in the logs");
    }
}

/// Two thousand connections that never send a byte, or send half a head: the header timeout
/// frees every one of them, and a real device is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_are_freed_by_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |c| {
        c.limits.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = addr_of(&server.internal_url().unwrap());
    let mut idle = Vec::new();
    for i in 0..2_000 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"POST /RequestHandler/ucdevice.upx HTTP/1.1\r\nHost: x\r\nConte")
                .await
                .unwrap();
        }
        idle.push(s);
    }
    // Served while they are all open.
    still_serving(&server).await;
    // Each idle connection ends (EOF or reset) within the timeout plus slack.
    let mut closed = 0;
    let waits = idle.into_iter().map(|mut s| async move {
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                // A 408 or similar before the close is fine.
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    });
    for ok in futures_join_all(waits).await {
        closed += usize::from(ok);
    }
    assert_eq!(
        closed, 2_000,
        "every idle connection was closed by the server"
    );
    still_serving(&server).await;
    assert_no_server_errors(&server);
}

/// `join_all` without the futures crate: spawn each and await in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<bool>
where
    F: std::future::Future<Output = bool> + Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Ten thousand simulated devices power on at the same instant against a stub whose
/// connection cap is far below the burst: the overflow gets 503 + Retry-After, nothing else
/// fails, every device ends with a correct verdict, and the server serves a real check after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ten_thousand_devices_is_answered_with_503_or_served() {
    use ucupdate_simulator::fleet::{FleetSpec, Shard};
    use ucupdate_simulator::profile::Mix;
    use ucupdate_simulator::runner::{self, RunSpec, Server};
    use ucupdate_simulator::scenario::Scenario;
    let dir = tempfile::tempdir().unwrap();
    // No update published: every device must stay on its version ("initial").
    let server = bare_stub(dir.path(), |c| c.limits.max_connections = 256).await;
    let scenario = Scenario::parse(
        "burst",
        r#"name = "burst"
description = "10,000 devices power on at the same instant."
duration = "24h"
[fleet]
devices = 10000
signed_in_share = 0.0
[agent]
power_on_jitter = "0s"
[[phase]]
at = "0s"
action = "power-on"
window = "0s"
[expect]
final = "initial"
min_checks = 1
"#,
    )
    .unwrap();
    let fleet = FleetSpec {
        devices: 10_000,
        mix: Mix::default_fleet(),
        external_share: 0.0,
        signed_in_share: 0.0,
        test_devices: 0,
        seed: 8,
    };
    let mut spec = RunSpec::embedded(scenario, fleet);
    spec.shard = Shard::WHOLE;
    spec.max_in_flight = 2_048;
    spec.server = Server::Remote {
        internal: server.internal_url().unwrap(),
        external: None,
        admin: None,
        ca_pem: Some(server.ca_pem().as_bytes().to_vec()),
    };
    let outcome = tokio::time::timeout(Duration::from_secs(600), runner::run(spec))
        .await
        .expect("bounded")
        .unwrap();
    let report = outcome.report;
    assert!(
        report.passed(),
        "{}",
        ucupdate_simulator::report::text::render(&report)
    );
    assert_eq!(report.verdicts.passed, 10_000);
    let m = server.control().metrics();
    assert!(
        m.connections_rejected > 0,
        "the burst exceeded the cap: {m:?}"
    );
    // Every device got its answer in the end (the 503s were retried after back-off).
    assert!(m.count("check", 200) >= 10_000, "{m:?}");
    // Every request was answered 200 or with the cap's 503: none was lost as a transport error
    // (the stub used to answer before reading the request, and hyper's client reported that
    // unsolicited 503 as a broken connection for ~4% of the burst).
    for (endpoint, outcomes) in &report.requests {
        let other: Vec<_> = outcomes
            .keys()
            .filter(|k| !matches!(k.as_str(), "200" | "503"))
            .collect();
        assert!(other.is_empty(), "{endpoint}: {outcomes:?}");
    }
    assert_no_server_errors(&server);
    let addr = addr_of(&server.internal_url().unwrap());
    let (status, body) = raw(
        addr,
        &post(INTERNAL_HANDLER_PATH, check_body("1.0.0.0").as_bytes()),
    )
    .await;
    assert_eq!(
        (status, CheckResponse::decode(body.as_bytes()).unwrap()),
        (200, CheckResponse::NoUpdate)
    );
}

fn server_binary() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "-p",
            "ucupdate-server-stub",
            "--bin",
            "ucupdate-server",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success());
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .unwrap()
        .join("ucupdate-server")
}

async fn serve(bin: &Path, data: &Path) -> (tokio::process::Child, SocketAddr) {
    let mut child = tokio::process::Command::new(bin)
        .args(["serve", "--data"])
        .arg(data)
        .args([
            "--internal",
            "127.0.0.1:0",
            "--internal-tls",
            "off",
            "--external",
            "off",
        ])
        .args(["--admin", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let admin = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the server prints its listeners")
            .unwrap()
            .expect("a line");
        if let Some(url) = line.strip_prefix("admin ") {
            let url: HttpUrl = url.trim().parse().unwrap();
            break addr_of(&url);
        }
    };
    (child, admin)
}

/// Every change the admin API acknowledged is in the state file before the answer: a SIGKILL
/// right after the answers loses none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_a_sigkill() {
    let bin = tokio::task::spawn_blocking(server_binary).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, admin) = serve(&bin, dir.path()).await;
    let rule = "UCPhone/Polycom/CX700/A/ENU/CPE";
    let put = |path: String, body: &[u8]| {
        let mut r = format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    for version in ["3.0.0.1", "3.0.0.2"] {
        let (status, text) = raw(
            admin,
            &put(
                format!("/admin/files/{rule}/{version}/CPE.nbt"),
                version.as_bytes(),
            ),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let (status, text) = raw(admin, &post(&format!("/admin/rules/{rule}/approve"), b"")).await;
        assert_eq!(status, 200, "{text}");
    }
    let (status, text) = raw(admin, &put(format!("/admin/test-devices/{MAC}"), b"")).await;
    assert_eq!(status, 200, "{text}");
    // Power cut right after the last acknowledgement.
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let (mut child, admin) = serve(&bin, dir.path()).await;
    let (status, rules) = raw(admin, &get("/admin/rules")).await;
    assert_eq!(status, 200);
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    assert_eq!(rules[0]["key"], rule);
    assert_eq!(rules[0]["approved"], "3.0.0.2", "{rules}");
    assert_eq!(rules[0]["restore"], "3.0.0.1", "{rules}");
    let (_, devices) = raw(admin, &get("/admin/test-devices")).await;
    assert!(devices.contains(MAC), "{devices}");
    let (_, versions) = raw(admin, &get("/admin/versions")).await;
    assert!(
        versions.contains("3.0.0.1") && versions.contains("3.0.0.2"),
        "{versions}"
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
