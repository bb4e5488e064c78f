//! Discovery against a REAL DNS server: an in-process hickory-server with an in-memory zone on
//! 127.0.0.1 (a random non-53 port). Positive A+AAAA, NXDOMAIN, a name with no address, a
//! nameserver that never answers (timeout on paused time), and a resolv.conf pointing at it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use hickory_server::Server;
use tokio::net::UdpSocket;
use ucupdate_agent::clock;
use ucupdate_agent::dns::{Discovery, DnsError, DnsSettings};

const ZONE: &str = "corp.example.";

/// Serves `corp.example` with `ucupdates-r2` (A and AAAA) and `txtonly` (no address).
async fn dns_server() -> (SocketAddr, Server<Catalog>) {
    let origin = Name::from_str(ZONE).unwrap();
    let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let soa = SOA::new(
        Name::from_str("ns.corp.example.").unwrap(),
        Name::from_str("admin.corp.example.").unwrap(),
        1,
        3600,
        600,
        86400,
        60,
    );
    assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)), 1));
    let host = Name::from_str("ucupdates-r2.corp.example.").unwrap();
    assert!(zone.upsert_mut(
        Record::from_rdata(host.clone(), 60, RData::A(A(Ipv4Addr::new(10, 1, 2, 3)))),
        1
    ));
    assert!(zone.upsert_mut(
        Record::from_rdata(
            host,
            60,
            RData::AAAA(AAAA(Ipv6Addr::from_str("fd00::7").unwrap()))
        ),
        1
    ));
    let txt = Name::from_str("txtonly.corp.example.").unwrap();
    assert!(zone.upsert_mut(
        Record::from_rdata(txt, 60, RData::TXT(TXT::new(vec!["x".into()]))),
        1
    ));

    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut server = Server::new(catalog);
    server.register_socket(socket);
    (addr, server)
}

fn settings() -> DnsSettings {
    DnsSettings {
        timeout: Duration::from_secs(3),
        retries: 1,
    }
}

#[tokio::test]
async fn discovers_a_and_aaaa_records() {
    let (addr, _server) = dns_server().await;
    let discovery = Discovery::with_nameserver(addr, &settings()).unwrap();
    let found = discovery.discover("Corp.Example.").await.unwrap();
    assert_eq!(found.name, "ucupdates-r2.corp.example");
    let mut addrs = found.addrs.clone();
    addrs.sort();
    assert_eq!(
        addrs,
        vec![
            IpAddr::from([10, 1, 2, 3]),
            IpAddr::from_str("fd00::7").unwrap()
        ]
    );
}

#[tokio::test]
async fn nxdomain_and_no_address_are_not_found() {
    let (addr, _server) = dns_server().await;
    let discovery = Discovery::with_nameserver(addr, &settings()).unwrap();
    let err = discovery.discover("other.corp.example").await.unwrap_err();
    assert!(
        matches!(err, DnsError::NotFound { ref name } if name == "ucupdates-r2.other.corp.example"),
        "{err}"
    );
    assert_eq!(err.class(), ucupdate_agent::net::ErrorClass::Dns);
    let err = discovery.lookup("txtonly.corp.example").await.unwrap_err();
    assert!(matches!(err, DnsError::NotFound { .. }), "{err}");
    assert!(matches!(
        discovery.discover(" . ").await,
        Err(DnsError::NoDomain)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_silent_nameserver_times_out() {
    // Bound, never read: queries vanish.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let discovery = Discovery::with_nameserver(silent.local_addr().unwrap(), &settings()).unwrap();
    let start = clock::monotonic();
    let err = discovery.discover("corp.example").await.unwrap_err();
    assert!(matches!(err, DnsError::Timeout { .. }), "{err}");
    assert_eq!(err.class(), ucupdate_agent::net::ErrorClass::Timeout);
    // The first try and one retry, three seconds each (A and AAAA run side by side).
    assert_eq!(clock::elapsed(start), Duration::from_secs(6));
}

#[tokio::test]
async fn resolv_conf_nameservers_are_used_on_port_53_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    std::fs::write(&path, "search corp.example\n").unwrap();
    assert!(matches!(
        Discovery::from_resolv_conf(&path, &settings()),
        Err(DnsError::Config(_))
    ));
    std::fs::write(&path, "nameserver 127.0.0.1\n").unwrap();
    assert!(Discovery::from_resolv_conf(&path, &settings()).is_ok());
}
