//! Hostile clients of the server stub over loopback sockets, where the connection is what is
//! attacked: oversized uploads sent in full (the drain that lets the client read its 413), a
//! header that never ends (slow loris), and two thousand idle or half-sent connections. The
//! hostile requests themselves, in memory, are `hostile.rs`.

use std::time::Duration;

use http::{Method, StatusCode};
use ucupdate_protocol::wire::{INTERNAL_HANDLER_PATH, MAX_LOG_BYTES, MAX_MESSAGE_BYTES};
use ucupdate_protocol::CheckResponse;

use crate::common::*;
use crate::hostile::{assert_no_server_errors, LOGS};

/// The refused body is read to its end, not left in the socket: the same kept-alive
/// connection then serves the next request. Without the drain hyper must close it (unread
/// bytes), and the follow-up check fails.
#[tokio::test]
async fn a_refused_upload_is_drained_so_the_connection_stays_usable() {
    let t = start().await;
    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
    let path =
        format!("{INTERNAL_HANDLER_PATH}?action=logupload&type=CELog&file=big.clg&device=PCX-1");
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
    assert_eq!(c.check("1.0.0.0", MAC).await, CheckResponse::NoUpdate);
}

/// A device that sends an oversized body in full before reading the answer (the common client
/// shape), with a declared length or chunked, reads the 413. On loopback the kernel's buffers
/// can absorb a few MB and hide a missing drain; the test above is the one that fails without it.
#[tokio::test]
async fn an_oversized_upload_sent_in_full_still_reads_its_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start().await;
    let addr = t.server.internal_addr().unwrap();
    let path =
        format!("{INTERNAL_HANDLER_PATH}?action=logupload&type=CELog&file=big.clg&device=PCX-1");
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
    // A declared-too-large check over the wire, answered from the header.
    let head = format!(
        "POST {INTERNAL_HANDLER_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        MAX_MESSAGE_BYTES + 1
    );
    let mut body = head.into_bytes();
    body.extend(std::iter::repeat_n(b' ', MAX_MESSAGE_BYTES + 1));
    let r = raw_exchange(addr, &body).await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(!t.dir.path().join(LOGS).exists(), "nothing stored");
}

/// Paused tokio time, read through one place as the workspace's clippy rules ask.
mod test_clock {
    #[allow(clippy::disallowed_methods)]
    pub fn now() -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

/// Slow loris: a header that never ends is cut off by the header timeout (paused time: exact,
/// no real waiting).
#[tokio::test(start_paused = true)]
async fn a_header_that_never_ends_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start_with(tempfile::tempdir().unwrap(), |c| {
        c.limits.idle_timeout = Duration::from_secs(3600);
        c.limits.header_read_timeout = Duration::from_secs(5);
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(t.server.internal_addr().unwrap())
        .await
        .unwrap();
    tcp.write_all(b"POST /RequestHandler/ucdevice.upx HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let before = test_clock::now();
    let mut buf = Vec::new();
    // The server gives up on the header and closes; the read ends (EOF or reset).
    let _ = tcp.read_to_end(&mut buf).await;
    let waited = test_clock::now() - before;
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(3600),
        "{waited:?}"
    );
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

/// Two thousand connections that never send a byte, or send half a head: the header timeout
/// frees every one of them, and a real device is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_are_freed_by_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start_with(tempfile::tempdir().unwrap(), |c| {
        c.limits.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let control = t.server.control();
    control
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    control.approve(&key()).await.unwrap();
    let addr = t.server.internal_addr().unwrap();
    let serving = || async move {
        let offer = Conn::plain(addr).await.check("1.0.0.0", MAC).await;
        assert_eq!(offered(&offer), Some(("approved", "2.0.0.0".into())));
    };
    let mut idle = Vec::new();
    for i in 0..2_000 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"POST /RequestHandler/ucdevice.upx HTTP/1.1\r\nHost: x\r\nConte")
                .await
                .unwrap();
        }
        idle.push(s);
    }
    // Served while they are all open.
    serving().await;
    // Each idle connection ends (EOF or reset) within the timeout plus slack.
    let waits: Vec<_> = idle
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                loop {
                    match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return true,
                        // A 408 or similar before the close is fine.
                        Ok(Ok(_)) => continue,
                        Err(_) => return false,
                    }
                }
            })
        })
        .collect();
    let mut closed = 0;
    for wait in waits {
        closed += usize::from(wait.await.unwrap());
    }
    assert_eq!(
        closed, 2_000,
        "every idle connection was closed by the server"
    );
    serving().await;
    assert_no_server_errors(&control);
}
