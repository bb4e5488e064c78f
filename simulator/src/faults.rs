//! Fault injection between a device (the agent, or the simulator's engine) and a Device Update
//! server: [`FaultProxies`] runs one loopback TCP listener per [`FaultKind`], each forwarding to
//! the same upstream and breaking every connection in its own way, and [`FaultPlan`] picks a kind
//! for a request from one uniform sample (the engine's seeded RNG).
//!
//! The proxy is transparent TCP, so TLS to the server still verifies end to end, except where a
//! fault must answer by itself:
//!
//! | kind | what the client sees |
//! |---|---|
//! | `reset-mid-response` | the response head and half the body (by `Content-Length`), then a TCP RST |
//! | `truncate` | the same, then a clean FIN: a body shorter than its `Content-Length` |
//! | `stall-response` | a connection that accepts the request and never answers |
//! | `stall-request` | slow-loris upstream: only half of the request head reaches the server, whose header timeout then closes it |
//! | `server-error503` | `503` with `Retry-After: 5` (answered by the proxy, then closed) |
//! | `unauthorized401` | `401` with `WWW-Authenticate: NTLM` to every request, keep-alive (an endless NTLM loop) |
//! | `corrupt-body` | one byte flipped in the middle of a `GET` response body (a download): a hash mismatch. Other methods (the check `POST`) pass untouched so the device gets as far as a download |
//! | `refuse-connect` | a connection reset as soon as it is accepted, before a byte moves |
//!
//! On TLS the proxy cannot see HTTP, so the byte-level kinds act on the opaque stream: reset and
//! truncate cut the server's first flight in half (a handshake failure) and `corrupt-body` flips a
//! byte in the middle of the server's first flight, which fails the record's integrity check
//! (class `tls`/`transport`, not `hash_mismatch`). The kinds that answer by themselves (503, 401)
//! speak plain HTTP only. Stalls hold a connection for at most [`MAX_HOLD`] of tokio time, so a
//! client that never gives up cannot pin the proxy forever.
//!
//! [`FaultProxies::set_active`] turns every fault off (and on again): the listeners then forward
//! untouched, which is how a test shows a device converging "once the fault clears".

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The longest a faulty connection is held open (stalls included).
pub const MAX_HOLD: Duration = Duration::from_secs(60);

/// A request head larger than this is not HTTP we want to understand: passed on opaque.
const MAX_HEAD: usize = 64 * 1024;

/// One way to break a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Half the response body, then a TCP reset.
    ResetMidResponse,
    /// Half the response body, then a clean close.
    Truncate,
    /// The request is read; no answer ever comes.
    StallResponse,
    /// Slow-loris upstream: half the request head is forwarded, the rest never.
    StallRequest,
    /// The proxy answers `503 Service Unavailable` itself.
    ServerError503,
    /// The proxy answers `401` + `WWW-Authenticate: NTLM` to every request.
    Unauthorized401,
    /// One byte of a download's body flipped (a hash mismatch).
    CorruptBody,
    /// Reset as soon as the connection is accepted.
    RefuseConnect,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::ResetMidResponse,
        FaultKind::Truncate,
        FaultKind::StallResponse,
        FaultKind::StallRequest,
        FaultKind::ServerError503,
        FaultKind::Unauthorized401,
        FaultKind::CorruptBody,
        FaultKind::RefuseConnect,
    ];

    /// The scenario spelling (`reset-mid-response`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::ResetMidResponse => "reset-mid-response",
            FaultKind::Truncate => "truncate",
            FaultKind::StallResponse => "stall-response",
            FaultKind::StallRequest => "stall-request",
            FaultKind::ServerError503 => "server-error503",
            FaultKind::Unauthorized401 => "unauthorized401",
            FaultKind::CorruptBody => "corrupt-body",
            FaultKind::RefuseConnect => "refuse-connect",
        }
    }

    fn index(self) -> usize {
        FaultKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or_default()
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How often requests meet a fault, and which kinds (a scenario's `[faults]` table).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct FaultPlan {
    /// The share of requests that meet a fault, in `[0, 1]`.
    pub rate: f64,
    pub kinds: Vec<FaultKind>,
}

impl FaultPlan {
    /// The fault for a request whose uniform sample in `[0, 1)` is `u`: `None` (no fault) when
    /// `u >= rate`, else a kind chosen by where `u` falls below `rate`, so one sample decides both
    /// and every kind gets an equal share of the faults.
    pub fn pick(&self, u: f64) -> Option<FaultKind> {
        let rate = if self.rate.is_finite() {
            self.rate.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // A NaN sample means no fault.
        if self.kinds.is_empty() || u.partial_cmp(&rate) != Some(std::cmp::Ordering::Less) {
            return None;
        }
        let share = (u / rate * self.kinds.len() as f64) as usize;
        self.kinds.get(share.min(self.kinds.len() - 1)).copied()
    }
}

struct Shared {
    upstream: SocketAddr,
    active: AtomicBool,
    /// [`MAX_HOLD`] unless a test shortens it (milliseconds).
    max_hold_ms: AtomicU64,
    injected: [AtomicU64; 8],
}

impl Shared {
    fn count(&self, kind: FaultKind) {
        self.injected[kind.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// One loopback listener per fault kind, all forwarding to one upstream.
pub struct FaultProxies {
    addrs: HashMap<FaultKind, SocketAddr>,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

impl FaultProxies {
    /// Binds one listener on 127.0.0.1 per kind and starts forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr, kinds: &[FaultKind]) -> std::io::Result<FaultProxies> {
        let mut listeners = Vec::new();
        for &kind in kinds {
            if listeners.iter().any(|(k, _)| *k == kind) {
                continue;
            }
            listeners.push((kind, TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?));
        }
        Self::start_on(upstream, listeners)
    }

    /// Like [`FaultProxies::start`] on listeners the caller bound already: a test that must put
    /// the proxy's address in the server's configuration (its `BaseURL`) binds first.
    pub fn start_on(
        upstream: SocketAddr,
        listeners: Vec<(FaultKind, TcpListener)>,
    ) -> std::io::Result<FaultProxies> {
        let shared = Arc::new(Shared {
            upstream,
            active: AtomicBool::new(true),
            max_hold_ms: AtomicU64::new(MAX_HOLD.as_millis() as u64),
            injected: Default::default(),
        });
        let mut addrs = HashMap::new();
        let mut tasks = JoinSet::new();
        for (kind, listener) in listeners {
            addrs.insert(kind, listener.local_addr()?);
            tasks.spawn(serve(listener, kind, shared.clone()));
        }
        Ok(FaultProxies {
            addrs,
            shared,
            tasks,
        })
    }

    /// The listener of `kind`. Panics if `kind` was not started (a test's own mistake).
    pub fn addr(&self, kind: FaultKind) -> SocketAddr {
        match self.addrs.get(&kind) {
            Some(addr) => *addr,
            None => panic!("no fault proxy for {kind} was started"),
        }
    }

    /// How many times `kind` was applied to a connection (or a response).
    pub fn injected(&self, kind: FaultKind) -> u64 {
        self.shared.injected[kind.index()].load(Ordering::Relaxed)
    }

    /// `false`: every listener forwards untouched from the next connection on (the fault
    /// clears); `true`: faults again.
    pub fn set_active(&self, active: bool) {
        self.shared.active.store(active, Ordering::Relaxed);
    }

    /// Holds faulty connections at most `hold` instead of [`MAX_HOLD`] (from the next
    /// connection on): lets a test without paused time see a stall end.
    pub fn set_max_hold(&self, hold: Duration) {
        let ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
        self.shared.max_hold_ms.store(ms, Ordering::Relaxed);
    }

    /// Stops every listener and drops every connection in flight.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

async fn serve(listener: TcpListener, kind: FaultKind, shared: Arc<Shared>) {
    // Connections live in this set, so stopping the listener's task drops them all.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let _ = client.set_nodelay(true);
                let shared = shared.clone();
                conns.spawn(async move {
                    if shared.active.load(Ordering::Relaxed) {
                        let hold = Duration::from_millis(shared.max_hold_ms.load(Ordering::Relaxed));
                        let _ = tokio::time::timeout(hold, fault(client, kind, &shared)).await;
                    } else {
                        let _ = forward(client, &shared, None).await;
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn fault(mut client: TcpStream, kind: FaultKind, shared: &Shared) -> std::io::Result<()> {
    match kind {
        FaultKind::RefuseConnect => {
            shared.count(kind);
            client.set_zero_linger()?;
            drop(client);
            Ok(())
        }
        FaultKind::StallResponse => {
            shared.count(kind);
            // Read and discard until the client gives up; MAX_HOLD bounds the rest.
            let mut buf = vec![0u8; 16 * 1024];
            while client.read(&mut buf).await? > 0 {}
            Ok(())
        }
        FaultKind::ServerError503 => {
            if read_request(&mut client).await?.is_some() {
                shared.count(kind);
                client
                    .write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\
                          Content-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await?;
                client.shutdown().await?;
            }
            Ok(())
        }
        FaultKind::Unauthorized401 => {
            // Every request on the connection, NTLM legs included, is refused the same way.
            while read_request(&mut client).await?.is_some() {
                shared.count(kind);
                client
                    .write_all(
                        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\n\
                          Content-Length: 0\r\n\r\n",
                    )
                    .await?;
            }
            Ok(())
        }
        FaultKind::StallRequest => stall_request(client, shared).await,
        FaultKind::ResetMidResponse | FaultKind::Truncate | FaultKind::CorruptBody => {
            forward(client, shared, Some(kind)).await
        }
    }
}

/// Reads one request head and its `Content-Length` body; `None` at a clean end of stream.
async fn read_request(client: &mut TcpStream) -> std::io::Result<Option<()>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte: never swallow the next pipelined request. Heads are small.
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
        if head.len() > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
    }
    let mut left = content_length(&head).unwrap_or(0);
    let mut buf = vec![0u8; 16 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = client.read(&mut buf[..want]).await?;
        if n == 0 {
            return Ok(None);
        }
        left -= n as u64;
    }
    Ok(Some(()))
}

fn content_length(head: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

async fn stall_request(mut client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut first = vec![0u8; 16 * 1024];
    let n = client.read(&mut first).await?;
    if n == 0 {
        return Ok(());
    }
    shared.count(FaultKind::StallRequest);
    let upstream = TcpStream::connect(shared.upstream).await?;
    let _ = upstream.set_nodelay(true);
    let (mut up_r, mut up_w) = upstream.into_split();
    let (mut cl_r, mut cl_w) = client.into_split();
    // Half the head (not half the read: a small head plus its body may come in one read), then
    // nothing: the server waits for the rest until its header timeout.
    let head = head_end(&first[..n]).unwrap_or(n);
    up_w.write_all(&first[..(head / 2).max(1)]).await?;
    let discard = async {
        let mut buf = vec![0u8; 16 * 1024];
        while cl_r.read(&mut buf).await? > 0 {}
        std::io::Result::Ok(())
    };
    // Whatever the server says (usually just a close) goes back to the client.
    let relay = tokio::io::copy(&mut up_r, &mut cl_w);
    tokio::select! {
        _ = discard => {}
        _ = relay => {}
    }
    Ok(())
}

/// Forwards both ways; with `kind`, the first response on the connection is broken on the way.
async fn forward(
    mut client: TcpStream,
    shared: &Shared,
    kind: Option<FaultKind>,
) -> std::io::Result<()> {
    let mut first = vec![0u8; 16 * 1024];
    let n = client.read(&mut first).await?;
    if n == 0 {
        return Ok(());
    }
    first.truncate(n);
    // Only a download (GET) is corrupted: a corrupted check would never reach a download.
    let kind = match kind {
        Some(FaultKind::CorruptBody) if !first.starts_with(b"GET ") && first[0] != 0x16 => None,
        other => other,
    };
    let upstream = TcpStream::connect(shared.upstream).await?;
    let _ = upstream.set_nodelay(true);
    let (up_r, mut up_w) = upstream.into_split();
    let (mut cl_r, cl_w) = client.into_split();
    up_w.write_all(&first).await?;
    let requests = async move {
        // After the client's last byte the answer may still be on its way: keep waiting for it.
        let _ = tokio::io::copy(&mut cl_r, &mut up_w).await;
        let _ = up_w.shutdown().await;
        std::future::pending::<()>().await
    };
    let responses = respond(up_r, cl_w, kind, shared);
    tokio::select! {
        () = requests => Ok(()),
        r = responses => r,
    }
}

/// Relays the server's bytes; breaks the first response as `kind` says.
async fn respond(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    kind: Option<FaultKind>,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    // Bytes of the stream seen so far, and the start of it kept until the head ends.
    let mut pos: u64 = 0;
    let mut head: Vec<u8> = Vec::new();
    // The stream offset at which the fault acts, once known.
    let mut target: Option<u64> = None;
    let mut pending = kind;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(());
        }
        let chunk = &mut buf[..n];
        if let (Some(k), None) = (pending, target) {
            if pos == 0 && !chunk.starts_with(b"HTTP/") {
                // Opaque (TLS): act in the middle of the server's first flight.
                target = Some((n / 2) as u64);
            } else if head.len() < MAX_HEAD {
                head.extend_from_slice(chunk);
                if let Some(end) = head_end(&head) {
                    let end = end as u64;
                    let len = content_length(&head[..end as usize]);
                    target = Some(match (k, len) {
                        (_, Some(len)) if len > 0 => end + len / 2,
                        // Nothing to corrupt in an empty body.
                        (FaultKind::CorruptBody, _) => {
                            pending = None;
                            u64::MAX
                        }
                        // No body: cut the head itself in half.
                        (_, _) => end / 2,
                    });
                } else if head.len() >= MAX_HEAD {
                    pending = None;
                }
            }
        }
        let end = pos + n as u64;
        match (pending, target) {
            (Some(k), Some(at)) if at < end => {
                let i = (at - pos) as usize;
                pending = None;
                shared.count(k);
                match k {
                    FaultKind::CorruptBody => {
                        chunk[i] ^= 0x5a;
                        to.write_all(chunk).await?;
                    }
                    FaultKind::ResetMidResponse => {
                        to.write_all(&chunk[..i]).await?;
                        to.as_ref().set_zero_linger()?;
                        // Dropping the half would send a FIN first; the socket's close (when the
                        // read half goes too) must be the RST alone.
                        to.forget();
                        return Ok(());
                    }
                    _ => {
                        to.write_all(&chunk[..i]).await?;
                        to.shutdown().await?;
                        return Ok(());
                    }
                }
            }
            _ => to.write_all(chunk).await?,
        }
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

    /// A tiny HTTP/1.1 upstream: answers every request with [`BODY`]; closes a connection whose
    /// request head is not complete within one second (a header timeout). Returns its address
    /// and a count of complete request heads it read.
    async fn upstream() -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(AtomicU64::new(0));
        let seen = heads.clone();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    loop {
                        let got =
                            tokio::time::timeout(Duration::from_secs(1), read_request(&mut conn))
                                .await;
                        let Ok(Ok(Some(()))) = got else { return };
                        seen.fetch_add(1, Ordering::Relaxed);
                        let head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len());
                        if conn.write_all(head.as_bytes()).await.is_err()
                            || conn.write_all(BODY).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        (addr, heads)
    }

    /// Sends one request with `Connection: close` and reads until the end or an error.
    async fn request(addr: SocketAddr, method: &str) -> (Vec<u8>, Option<std::io::ErrorKind>) {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} /x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let mut out = Vec::new();
        if let Err(e) = conn.write_all(req.as_bytes()).await {
            return (out, Some(e.kind()));
        }
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e.kind())),
            }
        }
    }

    fn full() -> Vec<u8> {
        let mut v =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len()).into_bytes();
        v.extend_from_slice(BODY);
        v
    }

    async fn proxies(kind: FaultKind) -> (FaultProxies, Arc<AtomicU64>) {
        let (up, heads) = upstream().await;
        (FaultProxies::start(up, &[kind]).await.unwrap(), heads)
    }

    #[tokio::test]
    async fn cleared_faults_forward_untouched() {
        for kind in FaultKind::ALL {
            let (p, _) = proxies(kind).await;
            p.set_active(false);
            assert_eq!(request(p.addr(kind), "GET").await, (full(), None), "{kind}");
            assert_eq!(p.injected(kind), 0);
            p.shutdown().await;
        }
    }

    #[tokio::test]
    async fn reset_mid_response_resets_after_half_the_body() {
        let (p, _) = proxies(FaultKind::ResetMidResponse).await;
        let (got, err) = request(p.addr(FaultKind::ResetMidResponse), "GET").await;
        assert_eq!(err, Some(std::io::ErrorKind::ConnectionReset));
        assert!(got.len() < full().len(), "{} bytes", got.len());
        assert_eq!(p.injected(FaultKind::ResetMidResponse), 1);
    }

    #[tokio::test]
    async fn truncate_closes_cleanly_after_half_the_body() {
        let (p, _) = proxies(FaultKind::Truncate).await;
        let (got, err) = request(p.addr(FaultKind::Truncate), "POST").await;
        assert_eq!(err, None);
        let head = full().len() - BODY.len();
        assert_eq!(got, full()[..head + BODY.len() / 2].to_vec());
        assert_eq!(p.injected(FaultKind::Truncate), 1);
    }

    #[tokio::test]
    async fn corrupt_body_flips_one_byte_of_a_download_only() {
        let (p, _) = proxies(FaultKind::CorruptBody).await;
        let (got, err) = request(p.addr(FaultKind::CorruptBody), "GET").await;
        assert_eq!(err, None);
        assert_eq!(got.len(), full().len());
        let diffs = got.iter().zip(full()).filter(|(a, b)| **a != *b).count();
        assert_eq!(diffs, 1);
        // A check (POST) passes untouched.
        assert_eq!(
            request(p.addr(FaultKind::CorruptBody), "POST").await,
            (full(), None)
        );
        assert_eq!(p.injected(FaultKind::CorruptBody), 1);
    }

    // Real time (this crate's tokio has no test-util): a short hold and wide margins.
    #[tokio::test]
    async fn stall_response_holds_the_connection_silent_until_max_hold() {
        let (p, heads) = proxies(FaultKind::StallResponse).await;
        let hold = Duration::from_secs(2);
        p.set_max_hold(hold);
        let mut conn = TcpStream::connect(p.addr(FaultKind::StallResponse))
            .await
            .unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(hold / 2, conn.read(&mut buf));
        assert!(early.await.is_err(), "no byte before the client gives up");
        let late = tokio::time::timeout(hold * 5, conn.read(&mut buf)).await;
        assert!(
            matches!(late, Ok(Ok(0)) | Ok(Err(_))),
            "closed after MAX_HOLD: {late:?}"
        );
        assert_eq!(heads.load(Ordering::Relaxed), 0, "the server never saw it");
        assert_eq!(p.injected(FaultKind::StallResponse), 1);
    }

    #[tokio::test]
    async fn stall_request_sends_half_a_head_until_the_server_gives_up() {
        let (p, heads) = proxies(FaultKind::StallRequest).await;
        let (got, _) = request(p.addr(FaultKind::StallRequest), "GET").await;
        assert!(got.is_empty(), "no answer to half a request: {got:?}");
        assert_eq!(heads.load(Ordering::Relaxed), 0, "the head never completed");
        assert_eq!(p.injected(FaultKind::StallRequest), 1);
    }

    #[tokio::test]
    async fn server_error_503_is_answered_by_the_proxy() {
        let (p, heads) = proxies(FaultKind::ServerError503).await;
        let (got, err) = request(p.addr(FaultKind::ServerError503), "POST").await;
        assert_eq!(err, None);
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        assert!(text.contains("Retry-After: 5"));
        assert_eq!(heads.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn unauthorized_401_refuses_every_request_on_the_connection() {
        let (p, _) = proxies(FaultKind::Unauthorized401).await;
        let mut conn = TcpStream::connect(p.addr(FaultKind::Unauthorized401))
            .await
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            conn.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let n = conn.read(&mut buf).await.unwrap();
            got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        for answer in &got {
            assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
            assert!(answer.contains("WWW-Authenticate: NTLM\r\n"), "{answer}");
        }
        assert_eq!(p.injected(FaultKind::Unauthorized401), 2);
    }

    #[tokio::test]
    async fn refuse_connect_resets_before_any_byte() {
        let (p, heads) = proxies(FaultKind::RefuseConnect).await;
        let (got, err) = request(p.addr(FaultKind::RefuseConnect), "GET").await;
        assert!(got.is_empty());
        assert!(
            matches!(
                err,
                Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
            ),
            "{err:?}"
        );
        assert_eq!(heads.load(Ordering::Relaxed), 0);
        assert_eq!(p.injected(FaultKind::RefuseConnect), 1);
    }

    #[test]
    fn a_plan_picks_by_one_sample() {
        let plan: FaultPlan =
            toml::from_str("rate = 0.5\nkinds = [\"truncate\", \"server-error503\"]").unwrap();
        assert_eq!(plan.pick(0.0), Some(FaultKind::Truncate));
        assert_eq!(plan.pick(0.249), Some(FaultKind::Truncate));
        assert_eq!(plan.pick(0.25), Some(FaultKind::ServerError503));
        assert_eq!(plan.pick(0.4999), Some(FaultKind::ServerError503));
        assert_eq!(plan.pick(0.5), None);
        assert_eq!(plan.pick(0.99), None);
        let none = FaultPlan {
            rate: 1.0,
            kinds: vec![],
        };
        assert_eq!(none.pick(0.1), None);
        let nan = FaultPlan {
            rate: f64::NAN,
            kinds: vec![FaultKind::Truncate],
        };
        assert_eq!(nan.pick(0.0), None);
        for kind in FaultKind::ALL {
            let parsed: FaultPlan =
                toml::from_str(&format!("rate = 1.0\nkinds = [\"{kind}\"]")).unwrap();
            assert_eq!(parsed.kinds, vec![kind]);
        }
    }
}
