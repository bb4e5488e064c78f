//! (feature `connector`) The hook through which a [`Client`](super::Client) opens a connection
//! without a socket: the fleet simulator hands in a [`Connector`] that reaches its embedded
//! server stub over an in-memory pipe, so a run spends its CPU on the devices' and the server's
//! code instead of the kernel's loopback TCP. Everything above the byte stream (TLS, hyper,
//! NTLM, timeouts) is the same code a device runs. Device builds leave the feature out: there
//! the raw stream is a plain `TcpStream` and this module does not exist.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::DuplexStream;
use tokio::net::TcpStream;

/// Opens connections by address without the network.
pub trait Connector: Send + Sync + 'static {
    /// An in-memory connection to `addr`, or `None` for a TCP connection as usual (an address
    /// the connector does not serve, such as a fault proxy's).
    fn connect(&self, addr: SocketAddr) -> Option<DuplexStream>;
}

/// The [`Connector`] a client's settings carry (`ClientSettings::connector`).
#[derive(Clone)]
pub struct ConnectorHook(pub Arc<dyn Connector>);

impl fmt::Debug for ConnectorHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectorHook(..)")
    }
}

/// The byte stream under TLS and HTTP: a TCP socket or an in-memory pipe.
pub(crate) enum Raw {
    Tcp(TcpStream),
    Memory(DuplexStream),
}

impl From<TcpStream> for Raw {
    fn from(tcp: TcpStream) -> Raw {
        Raw::Tcp(tcp)
    }
}

/// The hook's connection to `addr`, if the client has a hook and it serves `addr`.
pub(crate) fn in_memory(hook: Option<&ConnectorHook>, addr: SocketAddr) -> Option<Raw> {
    hook.and_then(|h| h.0.connect(addr)).map(Raw::Memory)
}

super::conn::either_io!(Raw, Tcp, Memory);
