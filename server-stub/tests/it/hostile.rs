//! Every hostile input to the server stub, in one place. Each gets the right 4xx (or the
//! cap's 503), never a 5xx or a panic, a short reason, and leaves the server serving others.
//!
//! In memory, through `App::call` (what a request does does not need a socket): malformed and
//! hostile XML (nesting, attributes, a 60 KB name, entity expansion, external and undeclared
//! entities, invalid UTF-8, UTF-16, NUL bytes, a DTD), unknown device types, wrong methods and
//! endpoints, oversized bodies (declared or streamed) and bodies that fail mid-read, traversal
//! in file URLs (encoded, double-encoded, backslashes, absolute, NUL) and in log uploads,
//! disallowed log extensions, and NTLM refusals: anonymous, wrong password, unknown user, a
//! Type 3 without a Type 1 on its connection, a replayed Type 3, and garbage tokens.
//!
//! Over loopback sockets, where the connection is what is attacked, in `hostile_sockets.rs`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use ucupdate_ntlm::{Client, Credentials};
use ucupdate_protocol::wire::{
    EXTERNAL_HANDLER_PATH, INTERNAL_HANDLER_PATH, MAX_LOG_BYTES, MAX_MESSAGE_BYTES,
};
use ucupdate_server_stub::{Control, Site};

use crate::common::*;

/// Where uploaded logs would be stored.
pub(crate) const LOGS: &str = ucupdate_server_stub::logs::CLIENT_LOG_DIR;

/// An app with 2.0.0.0 approved.
async fn approved_in(
    dir: tempfile::TempDir,
    tune: impl FnOnce(&mut ucupdate_server_stub::ServerConfig),
) -> TestApp {
    let t = app_with(dir, tune);
    t.control()
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    t.control().approve(&key()).await.unwrap();
    t
}

async fn approved() -> TestApp {
    approved_in(tempfile::tempdir().unwrap(), |_| {}).await
}

/// No 5xx was ever answered, except the connection cap's 503.
pub(crate) fn assert_no_server_errors(control: &Control) {
    let m = control.metrics();
    let bad: Vec<_> = m
        .requests
        .iter()
        .filter(|((_, status), _)| *status >= 500 && *status != 503)
        .collect();
    assert!(bad.is_empty(), "server errors: {bad:?}");
}

/// A new connection still gets the approved offer.
async fn still_serving(t: &TestApp) {
    let offer = t.conn(Site::Internal).check("1.0.0.0", MAC).await;
    assert_eq!(offered(&offer), Some(("approved", "2.0.0.0".into())));
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

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
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

// ---- In memory --------------------------------------------------------------------------

#[tokio::test]
async fn bad_checks_are_refused_and_the_server_keeps_serving() {
    let t = app();
    let mut c = t.conn(Site::Internal);
    let good = check_body("1.0.0.0", MAC);
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            "<DeviceUpdateRequest><DeviceType>UCPhone".into(),
            StatusCode::BAD_REQUEST,
            "malformed XML",
        ),
        (
            "not xml at all".into(),
            StatusCode::BAD_REQUEST,
            "malformed XML",
        ),
        (
            good.replace("DeviceUpdateRequest", "Other"),
            StatusCode::BAD_REQUEST,
            "wrong root",
        ),
        (
            good.replace(">UCPhone<", ">Toaster<"),
            StatusCode::BAD_REQUEST,
            "unknown device type",
        ),
        (
            good.replace(">Polycom<", ">..<"),
            StatusCode::BAD_REQUEST,
            "traversal in a field",
        ),
        (
            good.replace(MAC, "00-04-F2-ZZ-01-76"),
            StatusCode::BAD_REQUEST,
            "bad MAC",
        ),
        (
            good.replace("1.0.0.0", "1.0.0"),
            StatusCode::BAD_REQUEST,
            "bad version",
        ),
        (
            "<!DOCTYPE x [<!ENTITY a \"b\">]><DeviceUpdateRequest/>".into(),
            StatusCode::BAD_REQUEST,
            "DTD",
        ),
    ];
    for (body, status, why) in cases {
        let r = c.post(INTERNAL_HANDLER_PATH, body).await;
        assert_eq!(r.status, status, "{why}: {}", r.text());
        assert!(
            !r.text().trim().is_empty() && r.text().len() < 300,
            "{why}: reason should be short: {}",
            r.text()
        );
    }
    let r = c.get(INTERNAL_HANDLER_PATH, &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow").as_deref(), Some("POST"));
    assert_eq!(c.get("/nowhere", &[]).await.status, StatusCode::NOT_FOUND);
    // External handler path is not served by the internal site.
    assert_eq!(
        c.post("/RequestHandlerExt/ucdevice.upx", good.clone())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Still serving, on this connection and new ones.
    assert_eq!(offered(&c.check("1.0.0.0", MAC).await), None);
    assert_eq!(
        offered(&t.conn(Site::Internal).check("1.0.0.0", MAC).await),
        None
    );
    assert!(t.control().metrics().count("check", 400) >= 8);
}

#[tokio::test]
async fn hostile_xml_is_refused_with_short_answers_and_log_lines() {
    // The stub's log lines too: a hostile body must not be copied into them at full length.
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let t = approved().await;
    let mut c = t.conn(Site::Internal);
    let good = check_body("1.0.0.0", MAC);
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
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("8000 nested elements", nested.into_bytes()),
        (
            "4000 attributes",
            format!("<DeviceUpdateRequest{attrs}/>").into_bytes(),
        ),
        (
            "a 60 KB element name",
            format!("<{}/>", "n".repeat(60_000)).into_bytes(),
        ),
        ("billion laughs", laughs.as_bytes().to_vec()),
        ("external entity", external.as_bytes().to_vec()),
        ("undeclared entity", undeclared.into_bytes()),
        ("invalid UTF-8", bad_utf8),
        ("UTF-16", utf16),
        ("NUL bytes", vec![0u8; 1000]),
        ("64 KiB of spaces", vec![b' '; MAX_MESSAGE_BYTES]),
    ];
    for (why, body) in cases {
        let r = c.post(INTERNAL_HANDLER_PATH, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.text());
        assert!(
            r.text().len() < 300,
            "{why}: a short reason, got {} bytes",
            r.text().len()
        );
        assert!(!r.text().contains("root:"), "{why}: leaked a file");
    }
    assert_no_server_errors(&t.control());
    still_serving(&t).await;
    let logs = capture.text();
    assert!(
        logs.contains("bad check request"),
        "the refusals were logged: {logs}"
    );
    let longest = logs.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1_000, "a {longest}-byte log line");
}

#[tokio::test]
async fn traversal_in_file_urls_is_refused() {
    let t = approved().await;
    std::fs::write(t.dir.path().join("secret.txt"), "secret").unwrap();
    let mut c = t.conn(Site::Internal);
    let base = "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/2.0.0.0";
    for path in [
        format!("{base}/CPE/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt"),
        format!("{base}/%2e%2e/CPE.nbt"),
        format!("{base}/CPE/..%2f..%2fstate.json"),
        format!("{base}/CPE/..%5c..%5cstate.json"),
        format!("{base}/CPE/C%3A.nbt"),
        // Raw dot segments, which a client library may normalise away: the server must not.
        format!("{base}/CPE/../../../../../../../../secret.txt"),
    ] {
        let r = c.get(&path, &[]).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::NOT_FOUND,
            "{path}: {}",
            r.status
        );
        assert!(
            !r.text().contains("secret") && !r.text().contains("rules"),
            "{path} leaked a file"
        );
    }
    assert_eq!(
        c.get(&format!("{base}/CPE/CPE.cat"), &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn traversal_in_downloads_and_log_uploads_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let t = approved_in(dir, |c| c.data_dir = c.data_dir.join("data")).await;
    std::fs::write(t.dir.path().join("secret.txt"), "TOP-SECRET").unwrap();
    let mut c = t.conn(Site::Internal);
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
        let r = c.get(&target, &[]).await;
        assert!(
            matches!(r.status.as_u16(), 400 | 404),
            "{target}: {}",
            r.status
        );
        let text = r.text();
        assert!(
            !text.contains("TOP-SECRET") && !text.contains("root:") && !text.contains("\"rules\""),
            "{target} leaked a file"
        );
    }
    // Log uploads: the file and device names end up on disk, so they get the same scrutiny.
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
        let r = c
            .send(
                Method::POST,
                &format!("{INTERNAL_HANDLER_PATH}?{query}"),
                &[("content-type", "application/octet-stream")],
                &b"PWND"[..],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text());
    }
    // Nothing was written anywhere: no `Logs/Client/` at all, and nothing beside the data
    // directory.
    assert!(
        !data.join(LOGS).exists() || walk(&data.join(LOGS)).is_empty(),
        "{:?}",
        walk(&data.join(LOGS))
    );
    let mut beside: Vec<_> = std::fs::read_dir(t.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    beside.sort();
    assert_eq!(beside, ["data", "secret.txt"]);
    assert!(walk(&data)
        .iter()
        .all(|p| !std::fs::read(p).unwrap_or_default().starts_with(b"PWND")));
    assert_no_server_errors(&t.control());
    still_serving(&t).await;
}

#[tokio::test]
async fn bad_log_uploads_are_refused() {
    let t = app();
    let mut c = t.conn(Site::Internal);
    let octet = [("content-type", "application/octet-stream")];
    for (query, why) in [
        (
            "action=logupload&type=CELog&file=evil.exe&device=PCX-1",
            "extension",
        ),
        (
            "action=logupload&type=Crash&file=a.txt&device=PCX-1",
            "log type",
        ),
        (
            "action=logupload&type=CELog&file=..%2F..%2Fstate.json&device=PCX-1",
            "traversal in file",
        ),
        (
            "action=logupload&type=CELog&file=a.txt&device=..",
            "traversal in device",
        ),
        ("action=logupload&type=CELog&device=PCX-1", "missing file"),
    ] {
        let r = c
            .send(
                Method::POST,
                &format!("{INTERNAL_HANDLER_PATH}?{query}"),
                &octet,
                "x",
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.text());
    }
    assert_eq!(t.control().metrics().count("log_upload", 400), 5);
    assert!(!t.dir.path().join(LOGS).exists());
}

#[tokio::test]
async fn oversized_bodies_are_refused_without_reading_them() {
    let t = app();
    let mut c = t.conn(Site::Internal);
    // Declared too large: refused from the header alone (the body here is not even that long).
    let declared = (MAX_MESSAGE_BYTES + 1).to_string();
    let r = c
        .send(
            Method::POST,
            INTERNAL_HANDLER_PATH,
            &[("content-length", &declared)],
            "<DeviceUpdateRequest>",
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    let log =
        format!("{INTERNAL_HANDLER_PATH}?action=logupload&type=CELog&file=a.txt&device=PCX-1");
    let declared = (MAX_LOG_BYTES + 1).to_string();
    let r = c
        .send(Method::POST, &log, &[("content-length", &declared)], "xx")
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    // Streamed with no length (chunked): refused once the cap is passed, by one byte.
    let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
    assert_eq!(4 * chunk.len(), MAX_MESSAGE_BYTES);
    let mut frames = vec![chunk; 4];
    frames.push(Bytes::from_static(b"y"));
    let request = Request::post(INTERNAL_HANDLER_PATH)
        .body(Frames::new(frames))
        .unwrap();
    let r = c.call(request).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    // The same for a log one byte over its cap.
    let request = Request::post(&log)
        .body(Frames::new([
            Bytes::from(vec![b'x'; MAX_LOG_BYTES as usize]),
            Bytes::from_static(b"y"),
        ]))
        .unwrap();
    let r = c.call(request).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert!(!t.dir.path().join(LOGS).exists(), "nothing stored");
    assert_eq!(
        c.get("/nowhere", &[]).await.status,
        StatusCode::NOT_FOUND,
        "still serving"
    );
}

/// A client that goes away mid-body gets a 400 (for the log), and nothing half-written stays.
#[tokio::test]
async fn a_body_that_fails_mid_read_is_refused_and_nothing_is_stored() {
    let t = app();
    let mut c = t.conn(Site::Internal);
    let log =
        format!("{INTERNAL_HANDLER_PATH}?action=logupload&type=CELog&file=cut.txt&device=PCX-1");
    let request = Request::post(&log)
        .body(Frames::failing([Bytes::from_static(b"half a log")]))
        .unwrap();
    let r = c.call(request).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("cannot read body"), "{}", r.text());
    assert!(!t.dir.path().join(LOGS).exists(), "nothing stored");
    let request = Request::post(INTERNAL_HANDLER_PATH)
        .body(Frames::failing([Bytes::from(check_body("1.0.0.0", MAC))]))
        .unwrap();
    assert_eq!(c.call(request).await.status, StatusCode::BAD_REQUEST);
    // A publish cut short leaves no version and no staged file.
    let mut admin = t.admin();
    let bearer = format!("Bearer {}", t.app.admin_token().secret());
    let request = Request::put("/admin/files/UCPhone/Polycom/CX700/A/ENU/CPE/2.0.0.0/CPE.nbt")
        .header("host", "127.0.0.1:9080")
        .header("authorization", bearer)
        .header("content-type", "application/octet-stream")
        .body(Frames::failing([Bytes::from_static(b"image")]))
        .unwrap();
    assert_eq!(admin.call(request).await.status, StatusCode::BAD_REQUEST);
    assert!(t.control().rule(&key()).is_none());
    assert!(walk(&t.dir.path().join("tmp")).is_empty());
    assert_no_server_errors(&t.control());
}

#[tokio::test]
async fn ntlm_refusals_get_401_and_nothing_else() {
    let t = approved().await;
    let body = check_body("1.0.0.0", MAC);

    // Anonymous.
    let mut c = t.conn(Site::External);
    let anon = c.post(EXTERNAL_HANDLER_PATH, body.clone()).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.header("www-authenticate").as_deref(), Some("NTLM"));
    assert!(!anon.text().contains("DeviceUpdateResponse"));

    // Wrong password, then the right one on the same connection with a new handshake.
    let wrong = login(&mut c, "CONTOSO\\alice", "WRONG", &body).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!wrong.text().contains("DeviceUpdateResponse"));
    let after = c.post(EXTERNAL_HANDLER_PATH, body.clone()).await;
    assert_eq!(
        after.status,
        StatusCode::UNAUTHORIZED,
        "a failed login must not authenticate the connection"
    );
    assert_eq!(
        login(&mut c, "CONTOSO\\alice", "Secret1!", &body)
            .await
            .status,
        StatusCode::OK
    );

    // Unknown user.
    let mut c = t.conn(Site::External);
    assert_eq!(
        login(&mut c, "CONTOSO\\mallory", "Secret1!", &body)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // A Type 3 computed on one connection, sent on a fresh one.
    let mut first = t.conn(Site::External);
    let mut client = Client::new(
        Credentials::parse_user("CONTOSO\\alice", "Secret1!"),
        "PHONE1",
    );
    let type2 = negotiate(&mut first, &mut client).await;
    let type3 = ucupdate_ntlm::to_header(&client.authenticate(&type2, [3; 8], FILETIME).unwrap());
    let mut second = t.conn(Site::External);
    let stray = second
        .send(
            Method::POST,
            EXTERNAL_HANDLER_PATH,
            &[("authorization", &type3)],
            body.clone(),
        )
        .await;
    assert_eq!(stray.status, StatusCode::UNAUTHORIZED);

    // Garbage tokens.
    for token in [
        "NTLM !!!not base64!!!",
        "NTLM AAAAAAAA",
        "NTLM",
        "Basic YWxpY2U6U2VjcmV0MSE=",
        "NTLM TlRMTVNTUAAFAAAA",
    ] {
        let mut c = t.conn(Site::External);
        let r = c
            .send(
                Method::POST,
                EXTERNAL_HANDLER_PATH,
                &[("authorization", token)],
                body.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{token}");
        // The connection still works for a proper handshake.
        assert_eq!(
            login(&mut c, "bob", "hunter2", &body).await.status,
            StatusCode::OK,
            "{token}"
        );
    }
    let m = t.control().metrics();
    assert_eq!(m.ntlm_failures, 8, "anonymous legs are not failures: {m:?}");
    assert_eq!(m.count("check", 200), 6);
}

/// A check on the external handler with `authorization`.
async fn ext(c: &mut Conn, authorization: &str, body: &str) -> Reply {
    c.send(
        Method::POST,
        EXTERNAL_HANDLER_PATH,
        &[
            ("authorization", authorization),
            ("content-type", "text/xml"),
        ],
        body.to_owned(),
    )
    .await
}

#[tokio::test]
async fn replayed_and_garbage_ntlm_tokens_are_refused() {
    let t = approved().await;
    let body = check_body("1.0.0.0", MAC);
    // A real handshake that succeeds: its Type 3 is what an eavesdropper replays.
    let mut a = t.conn(Site::External);
    let mut alice = Client::new(
        Credentials::parse_user("CONTOSO\\alice", "Secret1!"),
        "PHONE1",
    );
    let type2 = negotiate(&mut a, &mut alice).await;
    let type3 = ucupdate_ntlm::to_header(&alice.authenticate(&type2, [3; 8], FILETIME).unwrap());
    assert_eq!(
        ext(&mut a, &type3, &body).await.status,
        StatusCode::OK,
        "the genuine handshake"
    );

    // Replayed after a new Type 1 (the server's new challenge does not match the proof).
    let mut b = t.conn(Site::External);
    let mut mallory = Client::new(Credentials::parse_user("CONTOSO\\alice", "guess"), "EVIL");
    let _ = negotiate(&mut b, &mut mallory).await;
    let replayed = ext(&mut b, &type3, &body).await;
    assert_eq!(
        replayed.status,
        StatusCode::UNAUTHORIZED,
        "replayed Type 3 accepted: {}",
        replayed.text()
    );
    assert_eq!(replayed.header("www-authenticate").as_deref(), Some("NTLM"));
    // Replayed with no Type 1 at all on a new connection.
    let mut c = t.conn(Site::External);
    assert_eq!(
        ext(&mut c, &type3, &body).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Random garbage on one connection, as Type 1 and as Type 3 (after a real Type 1).
    let mut d = t.conn(Site::External);
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
            let mut probe = Client::new(Credentials::parse_user("CONTOSO\\alice", "x"), "W");
            let _ = negotiate(&mut d, &mut probe).await;
        }
        let r = ext(&mut d, &ucupdate_ntlm::to_header(&token), &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "garbage token {i}");
    }
    // The same connection still completes a real handshake, and the server serves others.
    let mut bob = Client::new(Credentials::parse_user("bob", "hunter2"), "PHONE2");
    let type2 = negotiate(&mut d, &mut bob).await;
    let type3 = ucupdate_ntlm::to_header(&bob.authenticate(&type2, [9; 8], FILETIME).unwrap());
    assert_eq!(ext(&mut d, &type3, &body).await.status, StatusCode::OK);
    let m = t.control().metrics();
    assert!(m.ntlm_failures >= 200, "{m:?}");
    assert_eq!(m.ntlm_successes, 2);
    assert_no_server_errors(&t.control());
    still_serving(&t).await;
}
