//! Discovery of the update service for a device that was never provisioned: the A/AAAA record
//! `ucupdates-r2.<domain>`, where the domain comes from DHCP. This file owns both halves:
//! finding the domain on Linux ([`dhcp_domain`]: a configured value, else `/etc/resolv.conf`,
//! else a dhclient or systemd-networkd lease) and resolving the name ([`Discovery`]: A and
//! AAAA queries over UDP, TCP when a reply is truncated, to the nameservers of a resolv.conf or
//! one explicit `ip:port`).
//!
//! The resolver is this crate's own ([`message`] holds the two messages it speaks): a full
//! resolver library (hickory) cost the ARM agent about a third of its size for one query.
//!
//! File paths are parameters so tests (and firmware with odd layouts) can point elsewhere.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use ucupdate_protocol::wire::discovery_name;

pub mod message;

use message::{encode_query, parse_reply, TYPE_A, TYPE_AAAA};

/// Why discovery found no server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// No domain to look under (nothing configured, no resolv.conf domain, no lease).
    #[error("no DHCP or configured domain to discover the update service in")]
    NoDomain,
    /// The name does not exist, or has no A/AAAA record.
    #[error("{name}: no such name or no address record")]
    NotFound { name: String },
    /// No nameserver answered in time.
    #[error("{name}: DNS timed out")]
    Timeout { name: String },
    /// Any other resolver failure (refused, server failure, no usable nameserver).
    #[error("{name}: {reason}")]
    Failed { name: String, reason: String },
    /// A resolv.conf with no usable `nameserver` line, or a bad name.
    #[error("DNS configuration: {0}")]
    Config(String),
}

impl DnsError {
    /// The `net` error class this counts as (the retry policy treats all of them alike).
    pub fn class(&self) -> crate::net::ErrorClass {
        match self {
            DnsError::Timeout { .. } => crate::net::ErrorClass::Timeout,
            DnsError::Config(_) | DnsError::NoDomain => crate::net::ErrorClass::Config,
            _ => crate::net::ErrorClass::Dns,
        }
    }
}

/// What discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// `ucupdates-r2.<domain>` (no trailing dot): the host name to put in the URL and to
    /// check the server certificate against.
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

/// Resolver settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Per-query timeout.
    pub timeout: Duration,
    /// Retries after a failed or timed-out query (each retry asks every nameserver again): a
    /// silent network with one nameserver costs `timeout * (1 + retries)`.
    pub retries: usize,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            timeout: Duration::from_secs(5),
            retries: 1,
        }
    }
}

/// A resolver for discovery. Cheap to clone.
#[derive(Clone)]
pub struct Discovery {
    servers: Arc<[SocketAddr]>,
    settings: DnsSettings,
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

/// How one query (one type, every nameserver, every retry) ended without addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum QueryFailure {
    /// NXDOMAIN, or NOERROR with no record of the type.
    NotFound,
    Timeout,
    Failed(String),
}

impl Discovery {
    /// Asks exactly one nameserver (`ip:port`, UDP with TCP fallback on truncation).
    pub fn with_nameserver(
        addr: SocketAddr,
        settings: &DnsSettings,
    ) -> Result<Discovery, DnsError> {
        Self::with_nameservers(&[addr], settings)
    }

    /// Asks the `nameserver` entries of a resolv.conf (port 53), as the system would.
    pub fn from_resolv_conf(path: &Path, settings: &DnsSettings) -> Result<Discovery, DnsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DnsError::Config(format!("{}: {e}", path.display())))?;
        let servers: Vec<SocketAddr> = ResolvConf::parse(&text)
            .nameservers
            .into_iter()
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        if servers.is_empty() {
            return Err(DnsError::Config(format!(
                "{}: no nameserver line",
                path.display()
            )));
        }
        Self::with_nameservers(&servers, settings)
    }

    /// The system configuration (`/etc/resolv.conf`).
    pub fn system(settings: &DnsSettings) -> Result<Discovery, DnsError> {
        Self::from_resolv_conf(Path::new("/etc/resolv.conf"), settings)
    }

    fn with_nameservers(
        addrs: &[SocketAddr],
        settings: &DnsSettings,
    ) -> Result<Discovery, DnsError> {
        if addrs.is_empty() {
            return Err(DnsError::Config("no nameserver".into()));
        }
        Ok(Discovery {
            servers: addrs.into(),
            settings: settings.clone(),
        })
    }

    /// A and AAAA records of `name` (an absolute name; no search list, no hosts file, no
    /// cache: discovery must see what the network says now).
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let display = name.trim_end_matches('.').to_owned();
        if encode_query(0, &display, TYPE_A).is_err() {
            return Err(DnsError::Config(format!("{display:?} is not a DNS name")));
        }
        let (v4, v6) = tokio::join!(
            self.query(&display, TYPE_A),
            self.query(&display, TYPE_AAAA)
        );
        let mut addrs = Vec::new();
        let mut failures = Vec::new();
        for result in [v4, v6] {
            match result {
                Ok(found) => addrs.extend(found),
                Err(f) => failures.push(f),
            }
        }
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        if failures.contains(&QueryFailure::NotFound) {
            return Err(DnsError::NotFound { name: display });
        }
        if failures.iter().all(|f| *f == QueryFailure::Timeout) {
            return Err(DnsError::Timeout { name: display });
        }
        let reason = failures
            .into_iter()
            .find_map(|f| match f {
                QueryFailure::Failed(r) => Some(r),
                _ => None,
            })
            .unwrap_or_else(|| "no answer".into());
        Err(DnsError::Failed {
            name: display,
            reason,
        })
    }

    /// One record type: every nameserver in order, `1 + retries` rounds.
    async fn query(&self, name: &str, qtype: u16) -> Result<Vec<IpAddr>, QueryFailure> {
        let mut last = QueryFailure::Timeout;
        for _ in 0..=self.settings.retries {
            for &server in self.servers.iter() {
                match self.ask(server, name, qtype).await {
                    Ok(reply) if reply.rcode == 0 && !reply.addrs.is_empty() => {
                        return Ok(reply.addrs)
                    }
                    // An authoritative "no": asking again will not change it.
                    Ok(reply) if reply.rcode == 0 || reply.rcode == 3 => {
                        return Err(QueryFailure::NotFound)
                    }
                    Ok(reply) => {
                        last =
                            QueryFailure::Failed(format!("{server} answered rcode {}", reply.rcode))
                    }
                    Err(failure) => last = failure,
                }
            }
        }
        Err(last)
    }

    /// One query to one server within the timeout: UDP, then TCP if the reply is truncated.
    async fn ask(
        &self,
        server: SocketAddr,
        name: &str,
        qtype: u16,
    ) -> Result<message::Reply, QueryFailure> {
        let id = query_id();
        let query =
            encode_query(id, name, qtype).map_err(|e| QueryFailure::Failed(e.to_string()))?;
        let exchange = async {
            let reply = ask_udp(server, &query, id, name, qtype).await?;
            if reply.truncated {
                return ask_tcp(server, &query, id, name, qtype).await;
            }
            Ok(reply)
        };
        match tokio::time::timeout(self.settings.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(QueryFailure::Timeout),
        }
    }

    /// Resolves `ucupdates-r2.<domain>`.
    pub async fn discover(&self, domain: &str) -> Result<Discovered, DnsError> {
        // DNS is case-blind but the certificate check and the logs are not: one spelling.
        let name = discovery_name(&domain.to_ascii_lowercase()).ok_or(DnsError::NoDomain)?;
        let addrs = self.lookup(&name).await?;
        tracing::info!(%name, ?addrs, "discovered the update service");
        Ok(Discovered { name, addrs })
    }
}

fn io_failure(what: &str, e: std::io::Error) -> QueryFailure {
    QueryFailure::Failed(format!("{what}: {e}"))
}

async fn ask_udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
    qtype: u16,
) -> Result<message::Reply, QueryFailure> {
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| io_failure("bind", e))?;
    socket
        .connect(server)
        .await
        .map_err(|e| io_failure("connect", e))?;
    socket
        .send(query)
        .await
        .map_err(|e| io_failure("send", e))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| io_failure("receive", e))?;
        // A stray or spoofed datagram is skipped; the timeout bounds the wait for ours.
        if let Ok(reply) = parse_reply(&buf[..n], id, name, qtype) {
            return Ok(reply);
        }
    }
}

async fn ask_tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
    qtype: u16,
) -> Result<message::Reply, QueryFailure> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| io_failure("connect", e))?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| io_failure("send", e))?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| io_failure("receive", e))?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| io_failure("receive", e))?;
    parse_reply(&buf, id, name, qtype).map_err(|e| QueryFailure::Failed(e.to_string()))
}

/// An unpredictable query id, so an off-path host cannot forge the answer to discovery.
fn query_id() -> u16 {
    use ring::rand::SecureRandom;
    let mut id = [0u8; 2];
    // The system RNG does not fail on Linux; were it to, id 0 still gets a matched reply.
    let _ = ring::rand::SystemRandom::new().fill(&mut id);
    u16::from_be_bytes(id)
}

/// Where the discovery domain came from (the status screen and the logs say which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainSource {
    Configured,
    ResolvConfDomain,
    ResolvConfSearch,
    Lease(PathBuf),
}

/// Finds the DHCP domain: `configured` if non-empty; else the `domain` line, or the first
/// `search` entry, of `resolv_conf`; else the newest domain in the first readable lease file
/// among `leases` (dhclient `option domain-name "...";` or systemd-networkd `DOMAINNAME=`).
pub fn dhcp_domain(
    configured: Option<&str>,
    resolv_conf: &Path,
    leases: &[PathBuf],
) -> Option<(String, DomainSource)> {
    if let Some(domain) = configured.and_then(clean_domain) {
        return Some((domain, DomainSource::Configured));
    }
    if let Ok(text) = std::fs::read_to_string(resolv_conf) {
        let conf = ResolvConf::parse(&text);
        if let Some(d) = conf.domain {
            return Some((d, DomainSource::ResolvConfDomain));
        }
        if let Some(d) = conf.search.into_iter().next() {
            return Some((d, DomainSource::ResolvConfSearch));
        }
    }
    for path in leases {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        if let Some(d) = lease_domain(&text) {
            return Some((d, DomainSource::Lease(path.clone())));
        }
    }
    None
}

/// The lease files a Linux device may have: dhclient's and systemd-networkd's.
pub fn default_lease_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [
        "/var/lib/dhcp",
        "/var/lib/dhclient",
        "/run/systemd/netif/leases",
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        out.extend(files);
    }
    out
}

/// What discovery needs from a resolv.conf.
#[derive(Debug, Default, PartialEq, Eq)]
struct ResolvConf {
    nameservers: Vec<IpAddr>,
    domain: Option<String>,
    search: Vec<String>,
}

impl ResolvConf {
    fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // `fe80::1%eth0`: the zone is dropped (a socket address here carries none).
                    if let Some(ip) = words.next().and_then(|w| w.split('%').next()?.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("domain") => conf.domain = words.next().and_then(clean_domain),
                // As in glibc, the last `search` line wins.
                Some("search") => conf.search = words.filter_map(clean_domain).collect(),
                _ => {}
            }
        }
        conf
    }
}

/// The domain of the newest lease in a dhclient or systemd-networkd lease file.
fn lease_domain(text: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("option domain-name ") {
            // dhclient appends leases: the last one is the current one.
            found = clean_domain(rest.trim_end_matches(';').trim().trim_matches('"')).or(found);
        } else if let Some(rest) = line.strip_prefix("DOMAINNAME=") {
            found = clean_domain(rest).or(found);
        }
    }
    found
}

/// A usable domain: trimmed, no trailing dot, not the root, only DNS name characters.
fn clean_domain(text: &str) -> Option<String> {
    let d = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_fields() {
        let conf = ResolvConf::parse(
            "# generated\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch a.example b.example\nsearch corp.example lab\noptions ndots:2\n",
        );
        assert_eq!(
            conf.nameservers,
            vec![
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        assert_eq!(conf.search, vec!["corp.example", "lab"]);
        assert_eq!(conf.domain, None);
    }

    #[test]
    fn domain_order_configured_resolv_conf_then_lease() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        let lease = dir.path().join("dhclient.eth0.leases");
        std::fs::write(
            &lease,
            "lease {\n  option domain-name \"old.example\";\n}\nlease {\n  option domain-name \"corp.example\";\n}\n",
        )
        .unwrap();
        let leases = vec![dir.path().join("missing"), lease.clone()];

        // Nothing in resolv.conf (missing file): the newest lease.
        assert_eq!(
            dhcp_domain(None, &resolv, &leases),
            Some(("corp.example".into(), DomainSource::Lease(lease.clone())))
        );
        std::fs::write(
            &resolv,
            "nameserver 10.0.0.2\nsearch Search.Example. other\n",
        )
        .unwrap();
        assert_eq!(
            dhcp_domain(None, &resolv, &leases),
            Some(("search.example".into(), DomainSource::ResolvConfSearch))
        );
        std::fs::write(&resolv, "domain dom.example\nsearch search.example\n").unwrap();
        assert_eq!(
            dhcp_domain(Some("  "), &resolv, &leases),
            Some(("dom.example".into(), DomainSource::ResolvConfDomain))
        );
        assert_eq!(
            dhcp_domain(Some("Configured.Example"), &resolv, &leases),
            Some(("configured.example".into(), DomainSource::Configured))
        );
        assert_eq!(dhcp_domain(None, &dir.path().join("none"), &[]), None);
    }

    #[test]
    fn networkd_lease_and_junk() {
        assert_eq!(
            lease_domain("ADDRESS=10.0.0.5\nDOMAINNAME=corp.example\n").as_deref(),
            Some("corp.example")
        );
        assert_eq!(lease_domain("option domain-name \"bad name!\";\n"), None);
        assert_eq!(clean_domain("."), None);
        assert_eq!(clean_domain("a..b"), None);
    }
}
