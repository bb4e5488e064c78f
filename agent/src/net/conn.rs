//! One pinned HTTP/1.1 connection: our own TCP socket (TCP_NODELAY), TLS on top when the URL
//! says `https`, and hyper's connection-level client over it. (With the `connector` feature the
//! socket may be an in-memory pipe the client's hook opened: `super::connector`.) Every request
//! a call makes goes over the [`Conn`] it opened, which is what NTLM needs; the connection dies
//! with the `Conn`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use ucupdate_protocol::HttpUrl;

use super::client::Client;
use super::error::{NetError, TimeoutPhase};
use super::RequestStats;
use crate::clock;

/// The byte stream under TLS: the socket itself in device builds, zero cost.
#[cfg(not(feature = "connector"))]
type Raw = TcpStream;
#[cfg(feature = "connector")]
use super::connector::Raw;

/// Plain TCP or TLS over TCP.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Stream {
    Plain(Raw),
    Tls(Box<TlsStream<Raw>>),
}

/// `AsyncRead` and `AsyncWrite` for a two-variant enum of streams, each call passed to the
/// variant it holds ([`Stream`] here, `connector::Raw` below TLS).
macro_rules! either_io {
    ($ty:ident, $a:ident, $b:ident) => {
        // In a block of its own so the traits' methods are in scope wherever it expands.
        const _: () = {
            use tokio::io::{AsyncRead, AsyncWrite};

            impl AsyncRead for $ty {
                fn poll_read(
                    self: std::pin::Pin<&mut Self>,
                    cx: &mut std::task::Context<'_>,
                    buf: &mut tokio::io::ReadBuf<'_>,
                ) -> std::task::Poll<std::io::Result<()>> {
                    match self.get_mut() {
                        $ty::$a(s) => std::pin::Pin::new(s).poll_read(cx, buf),
                        $ty::$b(s) => std::pin::Pin::new(s).poll_read(cx, buf),
                    }
                }
            }

            impl AsyncWrite for $ty {
                fn poll_write(
                    self: std::pin::Pin<&mut Self>,
                    cx: &mut std::task::Context<'_>,
                    buf: &[u8],
                ) -> std::task::Poll<std::io::Result<usize>> {
                    match self.get_mut() {
                        $ty::$a(s) => std::pin::Pin::new(s).poll_write(cx, buf),
                        $ty::$b(s) => std::pin::Pin::new(s).poll_write(cx, buf),
                    }
                }

                fn poll_write_vectored(
                    self: std::pin::Pin<&mut Self>,
                    cx: &mut std::task::Context<'_>,
                    bufs: &[std::io::IoSlice<'_>],
                ) -> std::task::Poll<std::io::Result<usize>> {
                    match self.get_mut() {
                        $ty::$a(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
                        $ty::$b(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
                    }
                }

                fn is_write_vectored(&self) -> bool {
                    match self {
                        $ty::$a(s) => s.is_write_vectored(),
                        $ty::$b(s) => s.is_write_vectored(),
                    }
                }

                fn poll_flush(
                    self: std::pin::Pin<&mut Self>,
                    cx: &mut std::task::Context<'_>,
                ) -> std::task::Poll<std::io::Result<()>> {
                    match self.get_mut() {
                        $ty::$a(s) => std::pin::Pin::new(s).poll_flush(cx),
                        $ty::$b(s) => std::pin::Pin::new(s).poll_flush(cx),
                    }
                }

                fn poll_shutdown(
                    self: std::pin::Pin<&mut Self>,
                    cx: &mut std::task::Context<'_>,
                ) -> std::task::Poll<std::io::Result<()>> {
                    match self.get_mut() {
                        $ty::$a(s) => std::pin::Pin::new(s).poll_shutdown(cx),
                        $ty::$b(s) => std::pin::Pin::new(s).poll_shutdown(cx),
                    }
                }
            }
        };
    };
}
#[cfg(feature = "connector")]
pub(crate) use either_io;

either_io!(Stream, Plain, Tls);

/// A connection and the task that drives it. Dropping it closes the socket at once (the task
/// is aborted), so a timed-out or failed call never leaves a half-read connection behind.
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    /// Resolves, connects and (for `https`) runs the TLS handshake, each under its timeout.
    pub(crate) async fn open(
        client: &Client,
        url: &HttpUrl,
        stats: &mut RequestStats,
    ) -> Result<Conn, NetError> {
        let settings = &client.settings;
        let tls_config = if url.https {
            Some(settings.tls.clone().ok_or_else(|| {
                NetError::Config(format!("{url}: https needs a TLS configuration"))
            })?)
        } else {
            None
        };
        let server_name = if url.https {
            Some(ServerName::try_from(url.host.clone()).map_err(|e| {
                NetError::Config(format!("{}: not a valid TLS server name: {e}", url.host))
            })?)
        } else {
            None
        };
        super::shaping::delay(client.shaping).await;

        let started = clock::monotonic();
        let tcp = timeout(settings.timeouts.connect, connect_tcp(client, url))
            .await
            .map_err(|_| NetError::Timeout {
                phase: TimeoutPhase::Connect,
            })??;
        stats.connections += 1;
        stats.connect_time += clock::elapsed(started);

        let stream = match (tls_config, server_name) {
            (Some(config), Some(name)) => {
                let started = clock::monotonic();
                let connector = tokio_rustls::TlsConnector::from(config);
                let tls = timeout(
                    settings.timeouts.tls_handshake,
                    connector.connect(name, tcp),
                )
                .await
                .map_err(|_| NetError::Timeout {
                    phase: TimeoutPhase::TlsHandshake,
                })?
                .map_err(|source| NetError::Tls {
                    host: url.host.clone(),
                    error: source,
                })?;
                let took = clock::elapsed(started);
                stats.tls_handshake = Some(stats.tls_handshake.unwrap_or_default() + took);
                stats.tls_resumed =
                    tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                Stream::Tls(Box::new(tls))
            }
            _ => Stream::Plain(tcp),
        };

        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(NetError::Transport)?;
        let host = url.host.clone();
        // Boxed once here: hyper's connection state is large, and each move of it into the
        // task would copy all of it (the simulator opens a million of these in its week run).
        let connection = Box::pin(connection);
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%host, error = %e, "connection ended with an error");
            }
        });
        Ok(Conn { sender, task })
    }

    /// Whether another request can go out on this connection.
    pub(crate) fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request and waits for the response head (under the head timeout).
    pub(crate) async fn send(
        &mut self,
        client: &Client,
        request: Request<Full<Bytes>>,
        call_started: tokio::time::Instant,
        stats: &mut RequestStats,
    ) -> Result<Response<Incoming>, NetError> {
        super::shaping::delay(client.shaping).await;
        let body_len = request.body().size_hint().exact().unwrap_or(0);
        let head_timeout = client.settings.timeouts.response_head;
        // The body is in memory; pacing it before the send models a capped uplink. It stays
        // outside the head timeout, which is about the server, not our own link.
        super::shaping::Pacer::new(client.shaping)
            .pace(body_len)
            .await;
        let exchange = async {
            self.sender.ready().await.map_err(NetError::Transport)?;
            self.sender
                .send_request(request)
                .await
                .map_err(NetError::Transport)
        };
        let response = timeout(head_timeout, exchange)
            .await
            .map_err(|_| NetError::Timeout {
                phase: TimeoutPhase::ResponseHead,
            })??;
        stats.requests += 1;
        stats.bytes_sent += body_len;
        stats.time_to_head = Some(clock::elapsed(call_started));
        stats.status = Some(response.status().as_u16());
        Ok(response)
    }
}

// `Raw` is `TcpStream` itself without the `connector` feature.
#[cfg_attr(not(feature = "connector"), allow(clippy::useless_conversion))]
async fn connect_tcp(client: &Client, url: &HttpUrl) -> Result<Raw, NetError> {
    let addrs = resolve(client, url).await?;
    #[cfg(feature = "connector")]
    if let Some(raw) = addrs
        .iter()
        .find_map(|&addr| super::connector::in_memory(client.settings.connector.as_ref(), addr))
    {
        return Ok(raw);
    }
    // Discovery often yields A and AAAA; one black-holed family must not eat the whole
    // connect budget, so each address gets its share (but at least half a second).
    let total = client.settings.timeouts.connect;
    let share = u32::try_from(addrs.len()).unwrap_or(u32::MAX).max(1);
    let per_addr = (total / share).max(Duration::from_millis(500)).min(total);
    let mut last = None;
    for addr in addrs {
        match timeout(per_addr, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                // Small request heads and NTLM tokens must not wait for Nagle.
                tcp.set_nodelay(true).map_err(|source| NetError::Connect {
                    addr,
                    error: source,
                })?;
                return Ok(tcp.into());
            }
            Ok(Err(source)) => {
                tracing::debug!(%addr, error = %source, "connect failed");
                last = Some(NetError::Connect {
                    addr,
                    error: source,
                });
            }
            Err(_) => {
                tracing::debug!(%addr, ?per_addr, "connect timed out; trying the next address");
                last = Some(NetError::Timeout {
                    phase: TimeoutPhase::Connect,
                });
            }
        }
    }
    Err(last.unwrap_or_else(|| NetError::Dns {
        host: url.host.clone(),
        error: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
    }))
}

async fn resolve(client: &Client, url: &HttpUrl) -> Result<Vec<SocketAddr>, NetError> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    if let Some(ips) = client
        .settings
        .resolve_overrides
        .get(&url.host.to_ascii_lowercase())
    {
        return Ok(ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, url.port))
            .collect());
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|source| NetError::Dns {
            host: url.host.clone(),
            error: source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(NetError::Dns {
            host: url.host.clone(),
            error: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        });
    }
    Ok(addrs)
}

/// The `Host` header: the port is left out when it is the scheme's default, as browsers do
/// (some IIS bindings match on the bare host name).
pub(crate) fn host_header(url: &HttpUrl) -> String {
    let default = if url.https { 443 } else { 80 };
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    if url.port == default {
        host
    } else {
        format!("{host}:{}", url.port)
    }
}

/// The next data chunk of a response body, `None` at its end; other frames (trailers) are
/// skipped. Every reader of a body comes through here, so each waits at most `body_idle` for
/// the next frame: a server that stops sending mid-body cannot hold a request open for ever.
pub(crate) async fn next_data(
    client: &Client,
    body: &mut Incoming,
) -> Result<Option<Bytes>, NetError> {
    loop {
        let frame = timeout(client.settings.timeouts.body_idle, body.frame())
            .await
            .map_err(|_| NetError::Timeout {
                phase: TimeoutPhase::BodyIdle,
            })?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(NetError::Transport(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Reads and drops a small body (a 401 page) so the connection can carry the next request.
pub(crate) async fn drain(client: &Client, body: &mut Incoming, cap: u64) -> Result<(), NetError> {
    let mut seen = 0u64;
    while let Some(data) = next_data(client, body).await? {
        seen += data.len() as u64;
        if seen > cap {
            return Err(NetError::TooLarge { cap });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_drops_default_ports() {
        let url: HttpUrl = "https://pool.contoso.com/x".parse().unwrap();
        assert_eq!(host_header(&url), "pool.contoso.com");
        let url: HttpUrl = "http://[::1]:8080/x".parse().unwrap();
        assert_eq!(host_header(&url), "[::1]:8080");
    }
}
