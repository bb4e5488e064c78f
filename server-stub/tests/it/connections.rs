//! Connection limits over loopback: the cap answers 503 and recovers, the idle timeout closes
//! a quiet keep-alive connection (paused time: exact, no real waiting), shutdown is graceful,
//! and many devices at once are all served. Hostile connections (slow loris, thousands of idle
//! ones, oversized uploads sent in full) are in `hostile.rs`.

use std::time::Duration;

use http::StatusCode;

use crate::common::*;

#[tokio::test]
async fn connection_cap_answers_503_then_recovers() {
    let t = start_with(tempfile::tempdir().unwrap(), |c| {
        c.limits.max_connections = 1
    })
    .await;
    let addr = t.server.internal_addr().unwrap();
    let mut first = Conn::plain(addr).await;
    assert_eq!(
        first.get("/nowhere", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let busy = raw_exchange(addr, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert_eq!(t.server.control().metrics().connections_rejected, 1);
    // The admin listener is not subject to the device cap.
    let mut admin = t.admin().await;
    assert_eq!(admin.get("/metrics", &[]).await.status, StatusCode::OK);
    drop(first);
    // Once the first connection is gone a new one is served. Its close is observed by the
    // server asynchronously, so retry the connect (each attempt is a real exchange).
    let mut served = false;
    for _ in 0..200 {
        let reply = raw_exchange(
            addr,
            b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if reply.starts_with("HTTP/1.1 404") {
            served = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(served, "the cap never freed up");
}

#[tokio::test(start_paused = true)]
async fn idle_keep_alive_connections_are_closed() {
    let t = start_with(tempfile::tempdir().unwrap(), |c| {
        c.limits.idle_timeout = Duration::from_secs(5);
        c.limits.header_read_timeout = Duration::from_secs(3600);
    })
    .await;
    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
    assert_eq!(c.get("/nowhere", &[]).await.status, StatusCode::NOT_FOUND);
    let before = test_clock::now();
    // The server closes the quiet connection: the client sees it closed.
    let mut closed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if c.is_closed().await {
            closed = true;
            break;
        }
    }
    assert!(closed, "idle connection was not closed");
    let waited = test_clock::now() - before;
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(60),
        "{waited:?}"
    );
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let t = start().await;
    let addr = t.server.internal_addr().unwrap();
    let TestServer { server, dir: _dir } = t;
    server.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

/// Paused tokio time, read through one place as the workspace's clippy rules ask.
mod test_clock {
    #[allow(clippy::disallowed_methods)]
    pub fn now() -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

/// Many devices at once on many connections (a small load test): every check is answered,
/// and the inventory holds one entry per device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_devices_check_concurrently() {
    let t = start().await;
    let control = t.server.control();
    control
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    control.approve(&key()).await.unwrap();
    let addr = t.server.internal_addr().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for device in 0..200u32 {
        tasks.spawn(async move {
            let mac = format!("02-00-00-00-{:02X}-{:02X}", device >> 8, device & 0xff);
            let mut c = Conn::plain(addr).await;
            let mut offers = 0;
            for _ in 0..5 {
                if offered(&c.check("1.0.0.0", &mac).await).is_some() {
                    offers += 1;
                }
            }
            offers
        });
    }
    let mut total = 0;
    while let Some(offers) = tasks.join_next().await {
        total += offers.unwrap();
    }
    assert_eq!(total, 1000);
    assert_eq!(control.inventory().len(), 200);
    assert_eq!(control.metrics().count("check", 200), 1000);
}

/// Per-core workers (`ServerConfig::workers`): each has its own `SO_REUSEPORT` listener on the
/// one reported port, the kernel spreads connections over them, and the device connection cap
/// counts the connections of every worker together.
#[tokio::test]
async fn workers_share_the_port_and_the_connection_cap() {
    // 32 held connections: the chance the kernel puts them all on one of two workers is 2^-31.
    const CAP: usize = 32;
    let t = start_with(tempfile::tempdir().unwrap(), |c| {
        c.workers = 2;
        c.limits.max_connections = CAP;
        c.limits.max_connections_per_client = Some(CAP);
    })
    .await;
    let addr = t.server.internal_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut c = Conn::plain(addr).await;
        assert_eq!(c.get("/nowhere", &[]).await.status, StatusCode::NOT_FOUND);
        held.push(c);
    }
    let per_worker = t.server.control().metrics().worker_connections;
    assert_eq!(per_worker.len(), 2, "{per_worker:?}");
    assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");
    assert_eq!(per_worker.iter().sum::<u64>(), CAP as u64);
    // Whichever worker takes the next connection, on either device port, it is over the cap.
    for port in [addr, t.server.internal_tls_addr().unwrap()] {
        let busy = if port == addr {
            raw_exchange(port, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n").await
        } else {
            // TLS: the 503 comes after the handshake; the raw TCP answer is empty or TLS bytes.
            let mut c = Conn::tls(port, t.server.ca_pem()).await;
            let reply = c.get("/nowhere", &[]).await;
            format!("HTTP/1.1 {}", reply.status.as_u16())
        };
        assert!(busy.starts_with("HTTP/1.1 503"), "{port}: {busy}");
    }
    assert_eq!(t.server.control().metrics().connections_rejected, 2);
    // The admin listener, on the caller's runtime, is not subject to the cap.
    let mut admin = t.admin().await;
    let metrics = admin.get("/metrics", &[]).await;
    assert!(
        metrics
            .text()
            .contains("ucupdate_worker_connections_total{worker=\"1\"}"),
        "{}",
        metrics.text()
    );
    drop(held);
}

/// Shutdown with workers stops every worker's listener and still finishes the request that is
/// in flight on a worker: its body's second half is sent only once no listener accepts.
#[tokio::test]
async fn workers_drain_in_flight_requests_on_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start_with(tempfile::tempdir().unwrap(), |c| c.workers = 2).await;
    let addr = t.server.internal_addr().unwrap();
    let body = check_body("1.0.0.0", MAC);
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // `Expect: 100-continue`: the 100 comes once a worker has parsed the head and the handler
    // reads the body, so the request is surely in flight before shutdown starts.
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        ucupdate_protocol::wire::INTERNAL_HANDLER_PATH,
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the 100");
        seen.extend_from_slice(&buf[..n]);
    }
    let interim = String::from_utf8_lossy(&seen);
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    tcp.write_all(first).await.unwrap();
    let TestServer { server, dir: _dir } = t;
    let stopping = tokio::spawn(server.shutdown());
    // Every worker has seen the signal once no listener accepts a connection any more.
    let mut refused = false;
    for _ in 0..20_000 {
        match tokio::net::TcpStream::connect(addr).await {
            Err(_) => {
                refused = true;
                break;
            }
            Ok(probe) => drop(probe),
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "a worker still accepts after shutdown");
    assert!(
        !stopping.is_finished(),
        "shutdown did not wait for the request"
    );
    tcp.write_all(rest).await.unwrap();
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("DeviceUpdateResponse"), "{reply}");
    stopping.await.unwrap().unwrap();
}
