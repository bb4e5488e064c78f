//! Listeners and connections: the accept loop, the TLS handshake (bounded by the header
//! timeout), the idle timeout, the connection caps (global and per client address, 503
//! beyond either) and graceful shutdown. What
//! a request does is the socket-free [`App`]'s business; this module gives each connection
//! its [`ConnState`] (so NTLM lives and dies with the TCP connection) and hands it every
//! request of that connection.
//!
//! One task per connection, serving it with `hyper::server::conn::http1`; the shutdown signal
//! is a `watch` channel passed in, as in mini-redis's `server::run(listener, shutdown)`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

use crate::app::{App, ConnState, Site};
use crate::clock;

/// Resolves once the shutdown signal is set (also when it was set before the call).
pub(crate) async fn shutdown_signalled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Accepts connections until shutdown, then waits for open connections to finish their
/// in-flight request (idle keep-alive connections close at once). `worker`: the index of the
/// per-core worker this loop runs on (`crate::workers`), counted in the metrics per accept.
pub(crate) async fn run(
    listener: TcpListener,
    site: Site,
    tls: Option<TlsAcceptor>,
    app: App,
    mut shutdown: watch::Receiver<bool>,
    worker: Option<usize>,
) {
    let mut conns = JoinSet::new();
    let local = listener.local_addr().ok();
    loop {
        tokio::select! {
            () = shutdown_signalled(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Some(worker) = worker {
                        app.ctx().metrics.worker_connection(worker);
                    }
                    let mut state = ConnState::new(site, peer);
                    if let Some(local) = local {
                        state = state.with_local(local);
                    }
                    conns.spawn(connection(stream, state, tls.clone(), app.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Counts an open device connection (globally and for its client address); dropping it
/// uncounts.
struct Slot {
    app: App,
    /// The client address, for device connections (the admin listener is not counted).
    counted: Option<IpAddr>,
}

impl Slot {
    /// Counts a connection from `peer`; says whether it is over either cap.
    fn open(app: &App, site: Site, peer: SocketAddr) -> (Slot, Option<&'static str>) {
        let ctx = app.ctx();
        ctx.metrics.connection_opened(site == Site::Admin);
        if site == Site::Admin {
            let slot = Slot {
                app: app.clone(),
                counted: None,
            };
            return (slot, None);
        }
        let ip = peer.ip();
        let global = ctx.open_device_connections.fetch_add(1, Ordering::AcqRel);
        let mine = {
            let mut per_client = ctx.per_client.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_client.entry(ip).or_insert(0);
            *n += 1;
            *n - 1
        };
        let over = if global >= ctx.limits.max_connections {
            Some("connection cap reached")
        } else if mine >= ctx.limits.per_client_cap() {
            Some("per-client connection cap reached")
        } else {
            None
        };
        let slot = Slot {
            app: app.clone(),
            counted: Some(ip),
        };
        (slot, over)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let ctx = self.app.ctx();
        if let Some(ip) = self.counted {
            ctx.open_device_connections.fetch_sub(1, Ordering::AcqRel);
            let mut per_client = ctx.per_client.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per_client.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_client.remove(&ip);
                }
            }
        }
        ctx.metrics.connection_closed();
    }
}

async fn connection(
    stream: TcpStream,
    state: ConnState,
    tls: Option<TlsAcceptor>,
    app: App,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    accepted(stream, state, tls, app, shutdown).await;
}

/// One accepted connection over any byte stream (a socket, or `crate::memory`'s pipe): counted
/// against the caps, TLS when the listener has it, then served.
pub(crate) async fn accepted<IO>(
    stream: IO,
    state: ConnState,
    tls: Option<TlsAcceptor>,
    app: App,
    shutdown: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ctx = app.ctx().clone();
    let peer = state.peer();
    let (_slot, over_cap) = Slot::open(&app, state.site(), peer);
    match tls {
        Some(acceptor) => {
            // Boxed, as `serve` is below: rustls's connection state is kilobytes.
            let accept = Box::pin(acceptor.accept(stream));
            let handshake = tokio::time::timeout(ctx.limits.header_read_timeout, accept).await;
            match handshake {
                Ok(Ok(tls_stream)) => {
                    Box::pin(serve(tls_stream, state, app, over_cap, shutdown)).await;
                }
                Ok(Err(e)) => {
                    ctx.metrics.tls_handshake_failed();
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    ctx.metrics.tls_handshake_failed();
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        }
        // Boxed: `serve`'s future holds hyper's connection inline (~10 KiB), and left inline it
        // made this future as large, copied whole at each move on the way into its task.
        None => Box::pin(serve(stream, state, app, over_cap, shutdown)).await,
    }
}

async fn serve<IO>(
    mut io: IO,
    state: ConnState,
    app: App,
    over_cap: Option<&'static str>,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ctx = app.ctx().clone();
    let peer = state.peer();
    if let Some(which) = over_cap {
        ctx.metrics.connection_rejected();
        ctx.metrics.request("other", 503);
        tracing::warn!(
            %peer,
            cap = ctx.limits.max_connections,
            per_client = ctx.limits.per_client_cap(),
            "{which}: 503"
        );
        let body = format!("server busy: {which}\n");
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(ctx.limits.header_read_timeout, async {
            // Answer only once the request head is in: an answer that arrives before the client
            // has sent its request is an unsolicited response to hyper's client, which reports
            // a broken connection instead of the 503 (~4% of a 10,000-device burst did).
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 16 * 1024 {
                match io.read(&mut buf).await {
                    Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let _ = io.write_all(head.as_bytes()).await;
            let _ = io.shutdown().await;
            // Closing with request bytes unread would send a reset, which can destroy the 503
            // before the client reads it: drain until the client closes.
            while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
        return;
    }
    let io = IdleIo::new(io, ctx.limits.idle_timeout);
    // Per-connection state (NTLM): created here, dropped when this connection ends. hyper
    // serves one request of a connection at a time, so the lock is never contended.
    let state = Arc::new(Mutex::new(state));
    let service = service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        let state = state.clone();
        async move {
            let mut state = state.lock().await;
            Ok::<_, Infallible>(app.call(req, &mut state).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = shutdown_signalled(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// An I/O stream that fails with `TimedOut` when no byte has moved either way for `timeout`
/// while the server waits on it: the idle timeout of keep-alive connections and of clients
/// that stop reading.
struct IdleIo<IO> {
    inner: IO,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<IO> IdleIo<IO> {
    fn new(inner: IO, timeout: Duration) -> Self {
        IdleIo {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn progressed(&mut self) {
        let next = clock::tokio_now() + self.timeout;
        self.deadline.as_mut().reset(next);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "idle connection timeout")
}

impl<IO: AsyncRead + Unpin> AsyncRead for IdleIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for IdleIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
