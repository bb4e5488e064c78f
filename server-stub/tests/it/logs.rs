//! Device log upload on the check handler: stored per device and type, size cap, allowed
//! extensions, and no way out of the log folder.

use http::{Method, StatusCode};
use ucupdate_protocol::wire::{INTERNAL_HANDLER_PATH, MAX_LOG_BYTES};

use crate::common::*;

fn upload(query: &str) -> String {
    format!("{INTERNAL_HANDLER_PATH}?{query}")
}

#[tokio::test]
async fn logs_are_stored_per_device_and_checked() {
    let t = start().await;
    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
    let octet = [("content-type", "application/octet-stream")];

    let name = "UCPhone_0004f2000176-20261125-CELOG101500_1.clg";
    let ok = c
        .send(
            Method::POST,
            &upload(&format!(
                "action=logupload&type=CELog&file={name}&device=0004f2000176"
            )),
            &octet,
            "log line\n",
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let stored = t.dir.path().join("logs").join(MAC).join("CELog").join(name);
    assert_eq!(std::fs::read(stored).unwrap(), b"log line\n");

    let watson = c
        .send(
            Method::POST,
            &upload("action=logupload&type=Watson&file=crash.dmp&device=PCX-1"),
            &octet,
            "dump",
        )
        .await;
    assert_eq!(watson.status, StatusCode::OK);
    assert!(t.dir.path().join("logs/PCX-1/Watson/crash.dmp").exists());

    for (query, why) in [
        (
            "action=logupload&type=CELog&file=evil.exe&device=PCX-1",
            "extension",
        ),
        (
            "action=logupload&type=Config&file=a.txt&device=PCX-1",
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
        let r = c.send(Method::POST, &upload(query), &octet, "x").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.text());
    }

    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
    let max = vec![b'y'; MAX_LOG_BYTES as usize];
    let r = c
        .send(
            Method::POST,
            &upload("action=logupload&type=CELog&file=max.txt&device=PCX-1"),
            &octet,
            max,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a log of exactly the cap is accepted"
    );
    assert_eq!(t.server.control().metrics().count("log_upload", 400), 5);
}

/// The refused body is read to its end, not left in the socket: the same kept-alive
/// connection then serves the next request. Without the drain hyper must close it (unread
/// bytes), and the follow-up check fails.
#[tokio::test]
async fn a_refused_upload_is_drained_so_the_connection_stays_usable() {
    let t = start().await;
    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
    let path = upload("action=logupload&type=CELog&file=big.clg&device=PCX-1");
    let body = vec![b'x'; 2 * MAX_LOG_BYTES as usize];
    let refused = c
        .send(
            Method::POST,
            &path,
            &[("content-type", "application/octet-stream")],
            body,
        )
        .await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        !c.is_closed().await,
        "the connection was dropped after the 413"
    );
    assert_eq!(
        c.check("1.0.0.0", MAC).await,
        ucupdate_protocol::CheckResponse::NoUpdate
    );
}

/// A device that sends an oversized log in full before reading the answer (the common client
/// shape), with a declared length or chunked, reads the 413. On loopback the kernel's buffers
/// can absorb a few MB and hide a missing drain; the test above is the one that fails without it.
#[tokio::test]
async fn an_oversized_upload_sent_in_full_still_reads_its_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start().await;
    let addr = t.server.internal_addr().unwrap();
    let path = upload("action=logupload&type=CELog&file=big.clg&device=PCX-1");
    // Whole 64 KiB chunks, three times the cap: the declared length is exactly what is sent.
    let size = 3 * (MAX_LOG_BYTES as usize).div_ceil(64 * 1024) * 64 * 1024;
    for chunked in [false, true] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_owned()
        } else {
            format!("Content-Length: {size}")
        };
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/octet-stream\r\n{framing}\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if chunked {
                s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await
                    .unwrap();
                s.write_all(&chunk).await.unwrap();
                s.write_all(b"\r\n").await.unwrap();
            } else {
                s.write_all(&chunk)
                    .await
                    .expect("the server reads what it refuses");
            }
        }
        if chunked {
            s.write_all(b"0\r\n\r\n").await.unwrap();
        }
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.starts_with("HTTP/1.1 413"),
            "chunked={chunked}: {reply}"
        );
    }
    assert!(!t.dir.path().join("logs/PCX-1/CELog/big.clg").exists());
}
