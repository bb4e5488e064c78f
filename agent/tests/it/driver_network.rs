//! The real driver over a network that misbehaves: a download cut mid-way by a TCP proxy
//! resumes with `Range` (the stub answers 206), and discovery of `ucupdates-r2.<domain>`
//! against a real DNS server (an in-process hickory-server on 127.0.0.1) leads to the check
//! and a full update; an unknown domain is a DNS failure that is backed off.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::driver_support::*;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use hickory_server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use ucupdate_agent::driver::{DnsSource, RunOutcome};
use ucupdate_agent::machine::MachineConfig;
use ucupdate_agent::trust::{OfferPolicy, Origin};
use ucupdate_protocol::HttpUrl;

/// What went through the proxy: each request head and each response status line.
#[derive(Default)]
struct Seen {
    requests: Vec<String>,
    statuses: Vec<String>,
}

/// What the proxy does to the first file download once `cut_after` response bytes went through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Close the connection.
    Cut,
    /// Hold the connection open and send nothing more (the device loses power meanwhile).
    Stall,
}

/// A TCP proxy that interrupts the first file download after `cut_after` response bytes, once.
struct CutProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    /// The fault happened.
    done: Arc<AtomicBool>,
}

impl CutProxy {
    async fn start(upstream: Arc<Mutex<Option<SocketAddr>>>, cut_after: usize) -> CutProxy {
        Self::start_with(upstream, cut_after, Fault::Cut).await
    }

    async fn start_with(
        upstream: Arc<Mutex<Option<SocketAddr>>>,
        cut_after: usize,
        fault: Fault,
    ) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let cut_done = Arc::new(AtomicBool::new(false));
        let done = cut_done.clone();
        let s = seen.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let to = upstream.lock().unwrap().expect("upstream set");
                let server = TcpStream::connect(to).await.unwrap();
                tokio::spawn(relay(
                    client,
                    server,
                    s.clone(),
                    cut_done.clone(),
                    cut_after,
                    fault,
                ));
            }
        });
        CutProxy { addr, seen, done }
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    seen: Arc<Mutex<Seen>>,
    cut_done: Arc<AtomicBool>,
    cut_after: usize,
    fault: Fault,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let is_file = Arc::new(AtomicBool::new(false));
    let flag = is_file.clone();
    let s = seen.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            if text.starts_with("get ") || text.starts_with("post ") {
                // Set before forwarding, so the answer's direction knows what it carries.
                flag.store(text.contains("/deviceupdatefiles"), Ordering::SeqCst);
                s.lock().unwrap().requests.push(text);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    let mut forwarded = 0usize;
    let mut first = true;
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if first {
            let head = String::from_utf8_lossy(&buf[..n]);
            let status = head.lines().next().unwrap_or("").to_owned();
            seen.lock().unwrap().statuses.push(status);
            first = false;
        }
        let cutting = is_file.load(Ordering::SeqCst) && !cut_done.load(Ordering::SeqCst);
        if cutting && forwarded + n >= cut_after {
            let keep = cut_after - forwarded;
            let _ = cw.write_all(&buf[..keep]).await;
            cut_done.store(true, Ordering::SeqCst);
            if fault == Fault::Stall {
                std::future::pending::<()>().await;
            }
            // Dropping both halves closes the client's connection mid-body.
            break;
        }
        forwarded += n;
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_download_resumes_with_range() {
    let upstream = Arc::new(Mutex::new(None));
    let proxy = CutProxy::start(upstream.clone(), 100_000).await;
    let proxy_root: HttpUrl = format!("http://{}/", proxy.addr).parse().unwrap();
    let stub = Stub::start_with(|c| c.public_internal_url = Some(proxy_root.clone())).await;
    *upstream.lock().unwrap() = stub.server.internal_addr();
    stub.approve("2.0.0.0").await;

    let dev = Dev::new();
    let machine = MachineConfig {
        server_url: Some(format!(
            "http://{}{}",
            proxy.addr,
            ucupdate_protocol::wire::INTERNAL_HANDLER_PATH
        )),
        outside_firewall: Some(false),
        ..quick_machine()
    };
    update_once(&stub, &dev, machine, "1.0.0.0").await;

    let seen = proxy.seen.lock().unwrap();
    let image_gets: Vec<&String> = seen
        .requests
        .iter()
        .filter(|r| r.starts_with("get ") && r.contains("cpe.nbt"))
        .collect();
    assert_eq!(image_gets.len(), 2, "{:#?}", seen.requests);
    assert!(!image_gets[0].contains("range:"), "{}", image_gets[0]);
    assert!(
        image_gets[1].contains("range: bytes="),
        "the retry must resume: {}",
        image_gets[1]
    );
    assert!(
        seen.statuses.iter().any(|s| s.starts_with("HTTP/1.1 206")),
        "{:?}",
        seen.statuses
    );
    let staged = dev.state_dir().join("staging/2.0.0.0/CPE.nbt");
    assert_eq!(read(&staged), files("2.0.0.0")[0].1);
    assert_eq!(dev.state().current_version, v("2.0.0.0"));
    assert_eq!(dev.reboots(), "2.0.0.0\n");
}

/// Serves `corp.example` with `ucupdates-r2` -> 127.0.0.1.
async fn dns_server() -> (SocketAddr, Server<Catalog>) {
    let origin = Name::from_str("corp.example.").unwrap();
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
        Record::from_rdata(host, 60, RData::A(A(Ipv4Addr::LOCALHOST))),
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

fn discovering(stub: &Stub, domain: &str) -> MachineConfig {
    MachineConfig {
        dhcp_domain: Some(domain.into()),
        discovery_port: stub.server.internal_addr().unwrap().port(),
        outside_firewall: Some(false),
        // The stub offers its files at 127.0.0.1, not under the discovered domain.
        offer_policy: OfferPolicy {
            allowed_file_origins: vec![Origin::of(&stub.server.internal_url().unwrap())],
            ..OfferPolicy::default()
        },
        ..quick_machine()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_through_a_real_dns_server_leads_to_the_update() {
    let (dns, _server) = dns_server().await;
    let stub = Stub::start().await;
    stub.approve("2.0.0.0").await;
    let dev = Dev::new();
    let mut config = driver_config(&stub, &dev, discovering(&stub, "Corp.Example"));
    config.dns = DnsSource::Nameserver(dns);
    let run = spawn(config, dev.device("1.0.0.0", true));
    let handle = run.handle.clone();
    assert_eq!(
        run.finished().await,
        RunOutcome::Rebooted {
            version: v("2.0.0.0")
        }
    );
    let port = stub.server.internal_addr().unwrap().port();
    assert_eq!(
        handle.status().server.as_deref(),
        Some(
            format!("http://ucupdates-r2.corp.example:{port}/RequestHandler/ucdevice.upx").as_str()
        )
    );
    assert_eq!(stub.hits("check"), 1);
    assert_eq!(dev.state().current_version, v("2.0.0.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_discovery_name_is_a_dns_failure_not_a_check() {
    let (dns, _server) = dns_server().await;
    let stub = Stub::start().await;
    let dev = Dev::new();
    let mut config = driver_config(&stub, &dev, discovering(&stub, "lab.corp.example"));
    config.dns = DnsSource::Nameserver(dns);
    let run = spawn(config, dev.device("1.0.0.0", true));
    let status = run
        .wait_for(|s| s.last_error.as_deref() == Some("dns"))
        .await;
    assert_eq!(status.phase, "backoff");
    assert_eq!(
        status.server.as_deref(),
        Some("ucupdates-r2.lab.corp.example (to be resolved)")
    );
    assert_eq!(stub.hits("check"), 0);
    run.shutdown().await;
}

/// A power cut mid-download: the agent is stopped while the image stalls half-way; the next
/// start resumes from the bytes already on disk with `Range` instead of starting over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_download_resumes_from_the_bytes_on_disk() {
    let upstream = Arc::new(Mutex::new(None));
    let proxy = CutProxy::start_with(upstream.clone(), 200_000, Fault::Stall).await;
    let proxy_root: HttpUrl = format!("http://{}/", proxy.addr).parse().unwrap();
    let stub = Stub::start_with(|c| c.public_internal_url = Some(proxy_root.clone())).await;
    *upstream.lock().unwrap() = stub.server.internal_addr();
    stub.approve("2.0.0.0").await;

    let dev = Dev::new();
    let machine = MachineConfig {
        server_url: Some(format!(
            "http://{}{}",
            proxy.addr,
            ucupdate_protocol::wire::INTERNAL_HANDLER_PATH
        )),
        outside_firewall: Some(false),
        ..quick_machine()
    };
    let run = spawn(
        driver_config(&stub, &dev, machine.clone()),
        dev.device("1.0.0.0", true),
    );
    let partial = dev.state_dir().join("staging/2.0.0.0/CPE.nbt");
    // The image stalls after 200 kB; the download writes through a 64 KiB buffer: wait until
    // the stall and some of the bytes on disk.
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while !proxy.done.load(Ordering::SeqCst)
            || std::fs::metadata(&partial).map_or(0, |m| m.len()) < 65_536
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the stalled download never wrote");
    assert_eq!(run.shutdown().await, RunOutcome::Shutdown);
    // A write already on the blocking pool may still land after the stop, so the exact count
    // is read back from the resumed request rather than from the disk now.
    let image_len = files("2.0.0.0")[0].1.len() as u64;

    update_once(&stub, &dev, machine, "1.0.0.0").await;
    let seen = proxy.seen.lock().unwrap();
    let image_gets: Vec<&String> = seen
        .requests
        .iter()
        .filter(|r| r.starts_with("get ") && r.contains("cpe.nbt"))
        .collect();
    assert_eq!(image_gets.len(), 2, "{:#?}", seen.requests);
    let resumed_from: u64 = image_gets[1]
        .split("range: bytes=")
        .nth(1)
        .and_then(|rest| rest.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the restart must resume: {}", image_gets[1]));
    assert!(
        (65_536..image_len).contains(&resumed_from),
        "{resumed_from}"
    );
    assert!(
        seen.statuses.iter().any(|s| s.starts_with("HTTP/1.1 206")),
        "{:?}",
        seen.statuses
    );
    assert_eq!(read(&partial), files("2.0.0.0")[0].1);
    assert_eq!(dev.state().current_version, v("2.0.0.0"));
}
