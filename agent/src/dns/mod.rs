//! Discovery of the update service for a device that was never provisioned: the A/AAAA record
//! `ucupdates-r2.<domain>`, where the domain comes from DHCP. This file owns both halves:
//! finding the domain on Linux ([`dhcp_domain`]: a configured value, else `/etc/resolv.conf`,
//! else a dhclient or systemd-networkd lease) and resolving the name ([`Discovery`], hickory
//! against the nameservers of a resolv.conf or one explicit `ip:port`).
//!
//! File paths are parameters so tests (and firmware with odd layouts) can point elsewhere.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use ucupdate_protocol::wire::discovery_name;

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
    /// Retries after a failed or timed-out query (hickory's `attempts`): a silent network
    /// costs `timeout * (1 + retries)`.
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

/// A resolver for discovery. Cheap to clone (hickory shares its state).
#[derive(Clone)]
pub struct Discovery {
    resolver: TokioResolver,
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
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
        let servers = addrs
            .iter()
            .map(|addr| {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for conn in &mut ns.connections {
                    conn.port = addr.port();
                }
                ns
            })
            .collect();
        let mut builder = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        );
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = settings.timeout;
        opts.attempts = settings.retries;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        // Discovery must see what the network says, not a hosts file or a stale answer.
        opts.use_hosts_file = ResolveHosts::Never;
        opts.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Config(e.to_string()))?;
        Ok(Discovery { resolver })
    }

    /// A and AAAA records of `name` (an absolute name; no search list is applied).
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let display = name.trim_end_matches('.').to_owned();
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(found) => {
                let addrs: Vec<IpAddr> = found.iter().collect();
                if addrs.is_empty() {
                    return Err(DnsError::NotFound { name: display });
                }
                Ok(addrs)
            }
            Err(e) if e.is_no_records_found() => Err(DnsError::NotFound { name: display }),
            Err(hickory_resolver::net::NetError::Timeout) => {
                Err(DnsError::Timeout { name: display })
            }
            Err(e) => Err(DnsError::Failed {
                name: display,
                reason: e.to_string(),
            }),
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
                    // `fe80::1%eth0`: the zone is dropped; hickory cannot carry it.
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
