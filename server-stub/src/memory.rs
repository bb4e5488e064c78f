//! In-memory connections to a running server: [`InMemory::connect`] hands back one end of a
//! pipe whose other end this server serves exactly as it serves an accepted socket of the
//! listener at that address (`http::conn::accepted`: the connection caps, TLS for the TLS
//! listeners, the idle and header timeouts, a per-connection NTLM state, the peer address the
//! caller names). The fleet simulator reaches its embedded server this way, so a run does not
//! spend half its CPU in the kernel's loopback TCP between two halves of one process.
//!
//! [`RunningServer::shutdown`](crate::RunningServer::shutdown) waits for these connections as
//! it waits for accepted ones ([`Drain`]).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::DuplexStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::app::{App, ConnState, Site};
use crate::http::conn;

/// Bytes a pipe buffers each way before the writer waits: about one TLS record. In the
/// simulator's 100,000-device week (docs/BENCHMARKS.md §3b, third round) 64 KiB peaked 10-15 %
/// higher in RSS at no less CPU, and 8 KiB cost more CPU (more wake-ups per record).
const PIPE_BUFFER: usize = 16 * 1024;

/// A listener as an in-memory connection sees it.
struct Listener {
    addr: SocketAddr,
    site: Site,
    tls: Option<TlsAcceptor>,
}

impl Listener {
    /// Whether a device connecting to `addr` reaches this listener (one bound to every address
    /// is reached on all of them).
    fn is_at(&self, addr: SocketAddr) -> bool {
        self.addr.port() == addr.port()
            && (self.addr.ip() == addr.ip() || self.addr.ip().is_unspecified())
    }
}

/// Opens in-memory connections to a running server's listeners (cheap to clone).
#[derive(Clone)]
pub struct InMemory {
    inner: Arc<Inner>,
}

struct Inner {
    app: App,
    listeners: Vec<Listener>,
    shutdown: watch::Receiver<bool>,
    /// Each connection holds an upgraded sender until it ends; none can be had once the
    /// server has begun to shut down.
    open: mpsc::WeakSender<()>,
}

/// What shutdown waits on: the end of every in-memory connection.
pub(crate) struct Drain {
    open: mpsc::Sender<()>,
    closed: mpsc::Receiver<()>,
}

impl Drain {
    /// Resolves once every in-memory connection has ended (after the shutdown signal, which
    /// they obey like accepted ones).
    pub(crate) async fn wait(self) {
        let Drain { open, mut closed } = self;
        drop(open);
        // `None` once the last connection's sender is gone; nothing is ever sent.
        while closed.recv().await.is_some() {}
    }
}

impl InMemory {
    /// `listeners`: each listener's address, site and TLS acceptor.
    pub(crate) fn new(
        app: App,
        listeners: impl IntoIterator<Item = (Option<SocketAddr>, Site, Option<TlsAcceptor>)>,
        shutdown: watch::Receiver<bool>,
    ) -> (InMemory, Drain) {
        let (open, closed) = mpsc::channel(1);
        let listeners = listeners
            .into_iter()
            .filter_map(|(addr, site, tls)| addr.map(|addr| Listener { addr, site, tls }))
            .collect();
        let inner = Inner {
            app,
            listeners,
            shutdown,
            open: open.downgrade(),
        };
        let memory = InMemory {
            inner: Arc::new(inner),
        };
        (memory, Drain { open, closed })
    }

    /// A connection to the listener at `addr` as if from `peer`, or `None` when no listener
    /// of this server is at `addr` or the server is shutting down. Needs a tokio runtime: the
    /// server's side runs in a task of its own, as an accepted connection does.
    pub fn connect(&self, addr: SocketAddr, peer: SocketAddr) -> Option<DuplexStream> {
        let inner = &*self.inner;
        let listener = inner.listeners.iter().find(|l| l.is_at(addr))?;
        if *inner.shutdown.borrow() {
            return None;
        }
        let guard = inner.open.upgrade()?;
        let (device, server) = tokio::io::duplex(PIPE_BUFFER);
        let state = ConnState::new(listener.site, peer).with_local(listener.addr);
        let served = conn::accepted(
            server,
            state,
            listener.tls.clone(),
            inner.app.clone(),
            inner.shutdown.clone(),
        );
        tokio::spawn(async move {
            served.await;
            drop(guard);
        });
        Some(device)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000)
    }

    /// One request written and read by hand (not hyper): the status line of the answer.
    async fn status_line<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO) -> String {
        io.write_all(b"GET /no/such/file HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        io.read_to_end(&mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer);
        text.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn a_pipe_is_served_like_an_accepted_socket_of_that_listener() {
        let dir = tempfile::tempdir().unwrap();
        let server = crate::testing::start(dir.path(), |_| {}).await;
        let memory = server.in_memory();
        let pipe = memory
            .connect(server.internal_addr().unwrap(), peer())
            .unwrap();
        assert_eq!(status_line(pipe).await, "HTTP/1.1 404 Not Found");
        let metrics = server.control().metrics();
        assert_eq!(metrics.connections_total, 1, "counted as a connection");
        assert_eq!(metrics.requests.values().sum::<u64>(), 1, "{metrics:?}");
        // An address no listener of this server has: the caller connects some other way.
        let elsewhere = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9);
        assert!(memory.connect(elsewhere, peer()).is_none());
        server.shutdown().await.unwrap();
    }

    /// A connection's future stays small: hyper's and rustls's state are boxed inside it, so
    /// its moves on the way into a task (a million connections in the simulator's week) copy
    /// little. It was 10,856 bytes with `serve` inline (docs/BENCHMARKS.md §3b, fifth round).
    #[tokio::test]
    async fn a_connection_future_is_small() {
        let dir = tempfile::tempdir().unwrap();
        let server = crate::testing::start(dir.path(), |_| {}).await;
        let memory = server.in_memory();
        let inner = &*memory.inner;
        for listener in &inner.listeners {
            let (_device, end) = tokio::io::duplex(PIPE_BUFFER);
            let state = ConnState::new(listener.site, peer()).with_local(listener.addr);
            let tls = listener.tls.clone();
            let served = conn::accepted(end, state, tls, inner.app.clone(), inner.shutdown.clone());
            let size = std::mem::size_of_val(&served);
            assert!(size <= 4096, "{size} bytes at {}", listener.addr);
        }
        server.shutdown().await.unwrap();
    }

    /// The TLS listener's pipe negotiates TLS: a rustls client that trusts the server's CA
    /// completes the handshake and reads the answer through it.
    #[tokio::test]
    async fn the_tls_listener_negotiates_tls_over_the_pipe() {
        let dir = tempfile::tempdir().unwrap();
        let server = crate::testing::start(dir.path(), |_| {}).await;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut server.ca_pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let pipe = server
            .in_memory()
            .connect(server.internal_tls_addr().unwrap(), peer())
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = connector.connect(name, pipe).await.unwrap();
        assert!(tls.get_ref().1.negotiated_cipher_suite().is_some());
        assert_eq!(status_line(tls).await, "HTTP/1.1 404 Not Found");
        // Plain HTTP to the TLS listener is answered with a TLS alert record (type 21).
        let pipe = server
            .in_memory()
            .connect(server.internal_tls_addr().unwrap(), peer())
            .unwrap();
        let answer = status_line(pipe).await;
        assert!(answer.starts_with("\u{15}\u{3}"), "{answer:?}");
        server.shutdown().await.unwrap();
    }

    /// Shutdown ends an idle in-memory connection (as it ends an idle keep-alive socket),
    /// waits for it, and no pipe can be had afterwards.
    #[tokio::test]
    async fn shutdown_closes_pipes_and_refuses_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let server = crate::testing::start(dir.path(), |_| {}).await;
        let memory = server.in_memory();
        let addr = server.internal_addr().unwrap();
        let mut idle = memory.connect(addr, peer()).unwrap();
        server.shutdown().await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(idle.read_to_end(&mut rest).await.unwrap(), 0, "closed");
        assert!(memory.connect(addr, peer()).is_none());
    }
}
