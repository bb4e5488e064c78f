//! Each kind of bad input gets a 4xx with a short reason and leaves the server serving:
//! malformed XML, oversized bodies (declared or streamed), path traversal, unknown device
//! types, wrong methods and unknown endpoints.

use http::{Method, StatusCode};
use ucupdate_protocol::wire::{INTERNAL_HANDLER_PATH, MAX_LOG_BYTES, MAX_MESSAGE_BYTES};

use crate::common::*;

#[tokio::test]
async fn bad_checks_are_refused_and_the_server_keeps_serving() {
    let t = start().await;
    let addr = t.server.internal_addr().unwrap();
    let mut c = Conn::plain(addr).await;
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
    assert_eq!(c.get("/nowhere", &[]).await.status, StatusCode::NOT_FOUND);
    // External handler path is not served by the internal listener.
    assert_eq!(
        c.post("/RequestHandlerExt/ucdevice.upx", good.clone())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Still serving, on this connection and new ones.
    assert_eq!(offered(&c.check("1.0.0.0", MAC).await), None);
    assert_eq!(
        offered(&Conn::plain(addr).await.check("1.0.0.0", MAC).await),
        None
    );
    assert!(t.server.control().metrics().count("check", 400) >= 8);
}

#[tokio::test]
async fn traversal_in_file_urls_is_refused() {
    let t = start().await;
    t.server
        .control()
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    std::fs::write(t.dir.path().join("secret.txt"), "secret").unwrap();
    let addr = t.server.internal_addr().unwrap();
    let base = "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/2.0.0.0";
    for path in [
        format!("{base}/CPE/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt"),
        format!("{base}/%2e%2e/CPE.nbt"),
        format!("{base}/CPE/..%2f..%2fstate.json"),
        format!("{base}/CPE/..%5c..%5cstate.json"),
        format!("{base}/CPE/C%3A.nbt"),
    ] {
        let mut c = Conn::plain(addr).await;
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
    // Raw dot segments, which a client library would normalise away.
    let raw = raw_exchange(addr, format!("GET {base}/CPE/../../../../../../../../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await;
    assert!(
        raw.starts_with("HTTP/1.1 400") || raw.starts_with("HTTP/1.1 404"),
        "{raw}"
    );
    assert!(!raw.contains("\r\n\r\nsecret"));
    let mut c = Conn::plain(addr).await;
    assert_eq!(
        c.get(&format!("{base}/CPE/CPE.cat"), &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_without_reading_them() {
    let t = start().await;
    let addr = t.server.internal_addr().unwrap();
    // Declared too large: refused from the header alone.
    let head = format!(
        "POST {INTERNAL_HANDLER_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n<DeviceUpdateRequest>",
        MAX_MESSAGE_BYTES + 1
    );
    let r = raw_exchange(addr, head.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let log = format!(
        "POST {INTERNAL_HANDLER_PATH}?action=logupload&type=CELog&file=a.txt&device=PCX-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\nxx",
        MAX_LOG_BYTES + 1
    );
    let r = raw_exchange(addr, log.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    // Chunked, no length: refused once the cap is passed.
    let chunk = "x".repeat(16 * 1024);
    let mut body = String::new();
    for _ in 0..4 {
        body.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    // One byte past the cap, so the server has read everything the client sent.
    assert_eq!(4 * chunk.len(), MAX_MESSAGE_BYTES);
    body.push_str("1\r\ny\r\n");
    let chunked = format!("POST {INTERNAL_HANDLER_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{body}0\r\n\r\n");
    let r = raw_exchange(addr, chunked.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(!t.dir.path().join("logs/PCX-1/CELog/a.txt").exists());
    let mut c = Conn::plain(addr).await;
    assert_eq!(
        c.send(Method::GET, "/nowhere", &[], "").await.status,
        StatusCode::NOT_FOUND,
        "still serving"
    );
}
