//! How the devices' connections reach the server (`--transport`): over TCP, or, to the embedded
//! server, through in-memory pipes ([`MemoryTransport`], the agent's `Connector` hook and the
//! stub's `InMemory`). Both ends run their own connection code unchanged (rustls, hyper, NTLM
//! per connection, the stub's caps and timeouts); only the kernel's loopback TCP between two
//! halves of one process is gone, which was half of a run's CPU (docs/BENCHMARKS.md §3b).
//! Fault proxies keep TCP: their addresses are not the stub's, so the hook passes them on.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::DuplexStream;
use ucupdate_agent::net::{Connector, ConnectorHook};
use ucupdate_server_stub::memory::InMemory;

/// `--transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// In-memory pipes to the embedded server (its default; not possible with `--server`).
    Memory,
    /// Loopback or network TCP (the default with `--server`).
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Memory => "memory",
            Transport::Tcp => "tcp",
        }
    }
}

/// The first of the client ports in-memory connections claim to come from: the kernel's
/// default ephemeral range, so the stub logs a device peer as it would over loopback.
const FIRST_PORT: u16 = 32768;
const PORTS: u32 = 28232;

/// The agent's connector onto the embedded server's listeners: every connection a device
/// opens to one of them is a pipe, from `127.0.0.1` (as over loopback: the per-client
/// connection cap sees one client either way).
pub struct MemoryTransport {
    server: InMemory,
    next_port: AtomicU32,
    opened: AtomicU64,
}

impl MemoryTransport {
    pub fn new(server: InMemory) -> Arc<MemoryTransport> {
        Arc::new(MemoryTransport {
            server,
            next_port: AtomicU32::new(0),
            opened: AtomicU64::new(0),
        })
    }

    /// The hook for the fleet's `ClientSettings::connector`.
    pub fn hook(self: &Arc<Self>) -> ConnectorHook {
        ConnectorHook(self.clone())
    }

    /// Connections opened in memory so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

impl Connector for MemoryTransport {
    fn connect(&self, addr: SocketAddr) -> Option<DuplexStream> {
        let n = self.next_port.fetch_add(1, Ordering::Relaxed) % PORTS;
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), FIRST_PORT + n as u16);
        let pipe = self.server.connect(addr, peer)?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Some(pipe)
    }
}

#[cfg(test)]
mod tests {
    use ucupdate_agent::net::{self, ClientSettings, Credentials, TlsOptions};
    use ucupdate_protocol::{CheckRequest, CheckResponse};
    use ucupdate_server_stub::testing;

    use super::*;

    fn request() -> CheckRequest {
        CheckRequest::decode(
            br#"<DeviceUpdateRequest><DeviceType>UCPhone</DeviceType><Brand>Polycom</Brand>
            <Model>CX700</Model><Revision>A</Revision><Locale>ENU</Locale>
            <MacAddress>00-04-F2-00-01-76</MacAddress>
            <Modules><Module FileName="CPE.nbt" Version="1.0.522.101"/></Modules>
            </DeviceUpdateRequest>"#,
        )
        .unwrap()
    }

    /// Through the hook the agent's own client reaches the stub's three device listeners in
    /// memory: plain, TLS (a handshake over the pipe, verified against the stub's CA) and
    /// NTLM over TLS; the stub counts the connections and records the check in its
    /// inventory, and no socket of its listeners is ever accepted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_agent_checks_over_pipes_plain_tls_and_ntlm() {
        let dir = tempfile::tempdir().unwrap();
        let server = testing::start(dir.path(), |_| {}).await;
        let memory = MemoryTransport::new(server.in_memory());
        let tls = TlsOptions::with_ca_pem(server.ca_pem().as_bytes().to_vec())
            .build()
            .unwrap();
        let client = net::Client::with_settings(ClientSettings {
            tls: Some(tls),
            connector: Some(memory.hook()),
            ..ClientSettings::default()
        });
        let plain = server.internal_url().unwrap();
        let (result, stats) = net::check_with_stats(&client, &plain, &request(), None).await;
        assert!(matches!(result.unwrap(), CheckResponse::NoUpdate));
        assert_eq!((stats.connections, stats.tls_handshake), (1, None));

        let secure = server.internal_tls_url().unwrap();
        let (result, stats) = net::check_with_stats(&client, &secure, &request(), None).await;
        assert!(matches!(result.unwrap(), CheckResponse::NoUpdate));
        assert!(stats.tls_handshake.is_some(), "TLS over the pipe");

        let external = server.external_url().unwrap();
        let creds = Credentials::parse_user(testing::USER, testing::PASSWORD);
        let (result, stats) =
            net::check_with_stats(&client, &external, &request(), Some(&creds)).await;
        assert!(matches!(result.unwrap(), CheckResponse::NoUpdate));
        assert_eq!(
            (stats.connections, stats.requests),
            (1, 3),
            "NTLM on one pipe"
        );
        let wrong = Credentials::parse_user(testing::USER, "wrong");
        let (result, _) = net::check_with_stats(&client, &external, &request(), Some(&wrong)).await;
        assert_eq!(result.unwrap_err().status(), Some(401));

        assert_eq!(memory.opened(), 4);
        let control = server.control();
        let metrics = control.metrics();
        assert_eq!(metrics.connections_total, 4);
        assert_eq!(metrics.ntlm_successes, 1);
        assert_eq!(metrics.count("check", 200), 3, "{metrics:?}");
        assert_eq!(
            control.inventory().len(),
            1,
            "the device is in the inventory"
        );
        server.shutdown().await.unwrap();
    }

    /// An address that is none of the stub's listeners (a fault proxy's) goes over TCP: a
    /// listener of the test's own sees the connection.
    #[tokio::test]
    async fn other_addresses_go_over_tcp() {
        let dir = tempfile::tempdir().unwrap();
        let server = testing::start(dir.path(), |_| {}).await;
        let memory = MemoryTransport::new(server.in_memory());
        let client = net::Client::with_settings(ClientSettings {
            connector: Some(memory.hook()),
            ..ClientSettings::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/RequestHandler/ucdevice.upx",
            listener.local_addr().unwrap()
        )
        .parse()
        .unwrap();
        let accepted = tokio::spawn(async move { listener.accept().await.map(drop) });
        let checked =
            tokio::spawn(async move { net::check(&client, &url, &request(), None).await });
        accepted.await.unwrap().unwrap();
        checked.abort();
        assert_eq!(memory.opened(), 0);
        server.shutdown().await.unwrap();
    }
}
