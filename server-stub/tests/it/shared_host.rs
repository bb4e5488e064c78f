//! The HTTP and process side of what makes the stub safe to leave running on a shared host. The admin API's token, Host, Origin and Content-Type rules (in memory, plus the
//! listener's own address over loopback); slow request bodies and the per-client connection
//! cap (loopback, small timeouts, the assertion is the server closing the socket); the NTLM
//! identity in the inventory (in memory); the data directory's lock and `--init` (in process
//! and through the CLI). The browser-origin test is `.ci/stages/admin-browser.sh`.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use ucupdate_protocol::wire::INTERNAL_HANDLER_PATH;
use ucupdate_protocol::CheckRequest;
use ucupdate_server_stub::{App, LockError, ServerConfig, ServerError, Site};

use crate::common::*;

const APPROVE: &str = "/admin/rules/UCPhone/Polycom/CX700/A/ENU/CPE/approve";

async fn pending() -> TestApp {
    let t = app();
    t.control()
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    t
}

fn approved_version(t: &TestApp) -> Option<String> {
    t.control()
        .rule(&key())
        .and_then(|r| r.approved)
        .map(|v| v.to_string())
}

fn json_error(r: &Reply) -> String {
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json"),
        "{}",
        r.text()
    );
    let value: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    value["error"].as_str().expect("an error field").to_owned()
}

/// The reproduction: a `text/plain` POST with a rebinding `Origin` and a foreign `Host`
/// approved a rule (200). Each of the four rules refuses it on its own.
#[tokio::test]
async fn a_cross_site_post_to_the_admin_api_changes_nothing() {
    let t = pending().await;
    let token = format!("Bearer {}", t.app.admin_token().secret());
    let mut c = t.conn(Site::Admin);
    // As the issue sent it: no token, text/plain, foreign Origin and Host.
    let mut plain = t.conn(Site::Admin);
    let r = c
        .send(
            Method::POST,
            APPROVE,
            &[
                ("content-type", "text/plain"),
                ("origin", "http://rebind.evil.example"),
            ],
            "x",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    json_error(&r);
    // No token at all.
    let r = plain
        .send(
            Method::POST,
            APPROVE,
            &[("content-type", "application/json")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    json_error(&r);
    // A wrong token.
    let r = plain
        .send(
            Method::POST,
            APPROVE,
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer 0000"),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    // The token, but a CSRF-style text/plain body (what a form or no-cors fetch can send).
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = plain
            .send(
                Method::POST,
                APPROVE,
                &[("content-type", content_type), ("authorization", &token)],
                "{}",
            )
            .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text());
        json_error(&r);
    }
    // The token and JSON, but a foreign Host (DNS rebinding reaches us under its own name).
    let request = http::Request::post(APPROVE)
        .header("host", "rebind.evil.example:9080")
        .header("authorization", &token)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = plain.call(request).await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{}", r.text());
    json_error(&r);
    assert_eq!(approved_version(&t), None, "nothing was approved");

    // The same change, done right, works.
    let mut admin = t.admin();
    let r = admin.send(Method::POST, APPROVE, &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(approved_version(&t).as_deref(), Some("2.0.0.0"));
}

#[tokio::test]
async fn admin_errors_are_json_and_metrics_need_no_token() {
    let t = app();
    let mut admin = t.admin();
    let r = admin.get("/admin/nothing-here", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    json_error(&r);
    let r = admin.get("/elsewhere", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    json_error(&r);
    let r = admin
        .send(
            Method::POST,
            "/admin/rules/UCPhone/Polycom/CX700/A/ENU/CPE/approve%zz",
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    json_error(&r);
    let r = admin.send(Method::POST, "/admin/import", &[], "[1]").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    json_error(&r);
    // A publish takes octet-stream, not JSON.
    let r = admin
        .send(
            Method::PUT,
            "/admin/files/UCPhone/Polycom/CX700/A/ENU/CPE/2.0.0.0/CPE.nbt",
            &[("content-type", "text/plain")],
            "image",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // /metrics: no token needed (aggregate counters only), but the Host and Origin rules hold.
    let mut anonymous = t.conn(Site::Admin);
    let r = anonymous.get("/metrics", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("ucupdate_requests_total"));
    let r = anonymous
        .get("/metrics", &[("origin", "http://evil.example")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = anonymous.get("/admin/rules", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// Over loopback the listener's own address and `localhost:PORT` are accepted with a
/// same-origin `Origin`; any other name is 421, any other origin 403.
#[tokio::test]
async fn the_admin_listener_answers_to_its_own_address_only() {
    let t = start().await;
    let addr = t.server.admin_addr().unwrap();
    let token = t.server.admin_token().secret().to_owned();
    let exchange = |host: String, origin: Option<String>| {
        let token = token.clone();
        async move {
            let origin = origin
                .map(|o| format!("Origin: {o}\r\n"))
                .unwrap_or_default();
            let request = format!(
                "GET /admin/rules HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n{origin}Connection: close\r\n\r\n"
            );
            raw_exchange(addr, request.as_bytes()).await
        }
    };
    let own = addr.to_string();
    let localhost = format!("localhost:{}", addr.port());
    for (host, origin, status) in [
        (own.clone(), None, "200"),
        (own.clone(), Some(format!("http://{own}")), "200"),
        (
            localhost.clone(),
            Some(format!("http://{localhost}")),
            "200",
        ),
        (format!("rebind.evil.example:{}", addr.port()), None, "421"),
        (format!("127.0.0.1:{}", addr.port() ^ 1), None, "421"),
        (
            own.clone(),
            Some("http://rebind.evil.example".into()),
            "403",
        ),
        (own.clone(), Some(format!("http://{localhost}")), "403"),
        (own.clone(), Some("null".into()), "403"),
    ] {
        let reply = exchange(host.clone(), origin.clone()).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "Host {host} Origin {origin:?}: {reply}"
        );
    }
    // --admin-host adds a name.
    let t = start_with(tempfile::tempdir().unwrap(), |c| {
        c.admin_hosts = vec!["updates-admin.lab".into()]
    })
    .await;
    let addr = t.server.admin_addr().unwrap();
    let request = format!(
        "GET /admin/rules HTTP/1.1\r\nHost: updates-admin.lab:{}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        addr.port(),
        t.server.admin_token().secret()
    );
    let reply = raw_exchange(addr, request.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// An authenticated alice claims `LastSignedInUser=CORP\ceo`: the inventory records alice.
#[tokio::test]
async fn the_inventory_records_the_ntlm_user_not_the_claimed_one() {
    let t = pending().await;
    let mut request = CheckRequest::decode(check_body("1.0.0.0", MAC).as_bytes()).unwrap();
    request.user = Some("CORP\\ceo".to_owned());
    let mut c = t.conn(Site::External);
    let r = login(&mut c, "CONTOSO\\alice", "Secret1!", &request.encode()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let inventory = t.control().inventory();
    assert_eq!(inventory.len(), 1);
    assert_eq!(inventory[0].last_user.as_deref(), Some("CONTOSO\\alice"));
    // The internal site has no authenticated user: the claim is all there is.
    let mut c = t.conn(Site::Internal);
    let mut internal = CheckRequest::decode(check_body("1.0.0.0", OTHER_MAC).as_bytes()).unwrap();
    internal.user = Some("CORP\\bob".to_owned());
    let r = c.post(INTERNAL_HANDLER_PATH, internal.encode()).await;
    assert_eq!(r.status, StatusCode::OK);
    let users: Vec<_> = t
        .control()
        .inventory()
        .into_iter()
        .map(|e| e.last_user)
        .collect();
    assert!(users.contains(&Some("CORP\\bob".to_owned())), "{users:?}");
}

/// Reads from `tcp` until the server closes it (the test's only clock is a generous guard).
async fn until_closed(tcp: &mut tokio::net::tcp::OwnedReadHalf) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server kept the slow connection open");
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends a check head announcing 1000 body bytes, then one byte every 20 ms.
async fn trickle(
    addr: SocketAddr,
) -> (tokio::net::tcp::OwnedReadHalf, tokio::task::JoinHandle<()>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = tcp.into_split();
    let head = format!(
        "POST {INTERNAL_HANDLER_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let feeder = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if write.write_all(b"<").await.is_err() {
                return;
            }
        }
    });
    (read, feeder)
}

/// One byte every 20 ms keeps the idle timer (200 ms) from ever firing; the body deadline
/// (400 ms) closes the connection anyway, with a 408.
#[tokio::test]
async fn a_trickled_body_meets_the_total_deadline() {
    let t = start_with(tempfile::tempdir().unwrap(), |c| {
        c.limits.idle_timeout = Duration::from_millis(200);
        c.limits.body_deadline = Duration::from_millis(400);
        c.limits.body_min_rate = 0;
    })
    .await;
    let (mut read, feeder) = trickle(t.server.internal_addr().unwrap()).await;
    let reply = until_closed(&mut read).await;
    feeder.abort();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("connection: close"), "{reply}");
    assert_eq!(t.server.control().metrics().hits("check"), 1);
}

/// 50 bytes/s is below a 1000 bytes/s minimum: closed once the grace period is over, long
/// before the total deadline.
#[tokio::test]
async fn a_body_below_the_minimum_rate_is_cut_after_the_grace_period() {
    let t = start_with(tempfile::tempdir().unwrap(), |c| {
        c.limits.body_deadline = Duration::from_secs(60);
        c.limits.body_min_rate = 1000;
        c.limits.body_rate_grace = Duration::from_millis(300);
    })
    .await;
    let (mut read, feeder) = trickle(t.server.internal_addr().unwrap()).await;
    let reply = until_closed(&mut read).await;
    feeder.abort();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    // A normal check on a new connection is served at once.
    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
    assert_eq!(offered(&c.check("1.0.0.0", MAC).await), None);
}

/// A connection to `addr` from the source address `from` (any 127/8 address on loopback).
async fn conn_from(from: &str, addr: SocketAddr) -> Conn {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    Conn::Socket {
        sender,
        host: addr.to_string(),
        token: None,
    }
}

/// One address holding its share of the slots gets 503s; another address is still served.
#[tokio::test]
async fn one_client_address_cannot_take_every_slot() {
    let t = start_with(tempfile::tempdir().unwrap(), |c| {
        c.limits.max_connections = 4;
        c.limits.max_connections_per_client = Some(2);
    })
    .await;
    let addr = t.server.internal_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = conn_from("127.0.0.1", addr).await;
        assert_eq!(offered(&c.check("1.0.0.0", MAC).await), None);
        held.push(c);
    }
    let busy = raw_exchange(addr, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(busy.contains("per-client"), "{busy}");
    let mut other = conn_from("127.0.0.2", addr).await;
    assert_eq!(offered(&other.check("1.0.0.0", OTHER_MAC).await), None);
    drop(held);
}

/// A second server (or app) on a data directory in use is refused before it touches anything;
/// the first one's `ca.pem` is not rewritten.
#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let t = start().await;
    let ca = std::fs::read(t.dir.path().join("ca.pem")).unwrap();
    let config = ServerConfig::loopback(t.dir.path());
    let err = ucupdate_server_stub::start(config.clone())
        .await
        .err()
        .expect("a second server must not start");
    assert!(
        matches!(err, ServerError::Lock(LockError::Held { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert_eq!(std::fs::read(t.dir.path().join("ca.pem")).unwrap(), ca);
    assert!(App::open(&config).is_err());
    // Free again after a shutdown.
    let TestServer { server, dir } = t;
    server.shutdown().await.unwrap();
    let again = App::open(&ServerConfig::loopback(dir.path())).unwrap();
    drop(again);
}

/// Through the CLI: a second `serve` names the first's pid; an offline change while it runs is
/// refused with the admin API as the hint (and not printed as `added`); a missing or empty data
/// directory is refused without `--init`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_respects_the_data_directory_lock_and_init() {
    let bin = env!("CARGO_BIN_EXE_ucupdate-server");
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _admin) = crate::persistence::serve(dir.path()).await;
    let pid = child.id();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let d = dir.path().to_str().unwrap();
    let (ok, out, err) = run(&["test-devices", "add", "--data", d, MAC]);
    assert!(!ok && !out.contains("added"), "{out}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains("admin API"), "{err}");
    // The running server has no TLS listener: a ca.pem would be the second server's.
    let (ok, _, err) = run(&[
        "serve",
        "--data",
        d,
        "--internal",
        "127.0.0.1:0",
        "--internal-tls",
        "127.0.0.1:0",
        "--external",
        "off",
        "--admin",
        "off",
    ]);
    assert!(!ok && err.contains(&format!("pid {pid}")), "{err}");
    assert!(!dir.path().join("ca.pem").exists());
    child.kill().unwrap();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    // The holder is gone (SIGKILL): the lock went with it.
    let (ok, out, err) = run(&["test-devices", "add", "--data", d, MAC]);
    assert!(ok && out.contains("added"), "{out}{err}");

    let fresh = tempfile::tempdir().unwrap();
    let missing = fresh.path().join("typo");
    for target in [fresh.path(), missing.as_path()] {
        let (ok, _, err) = run(&[
            "serve",
            "--data",
            target.to_str().unwrap(),
            "--internal",
            "127.0.0.1:0",
            "--internal-tls",
            "off",
            "--external",
            "off",
            "--admin",
            "off",
        ]);
        assert!(!ok && err.contains("--init"), "{err}");
    }
    assert!(!missing.exists(), "a refused serve creates nothing");
}
