//! Network faults between a device and the server: the agent's real `net` client and
//! real `Machine`, driven by hand on machine time, talk to a real in-process stub through the
//! fault-injecting proxy of `ucupdate_simulator::faults` (or a real DNS responder, or a TLS
//! listener with the wrong certificate). For every fault the test checks four things:
//!
//! 1. the device reports the right error class (the `net` class and the machine's class);
//! 2. it backs off: no one-hour window of machine time holds more than
//!    [`MAX_REQUESTS_PER_HOUR`] requests (docs/AGENT-MACHINE.md, "Back-off and the per-hour cap");
//! 3. it never installs an image that is not byte-for-byte the published one (the install step
//!    compares the staged files with what was published);
//! 4. once the fault clears, it converges to the approved version.
//!
//! The device performs its network actions with the agent's own performer
//! (`ucupdate_agent::perform`, awaited inline), so it sends exactly what the daemon and the
//! simulator send; only DNS and the install step are the harness's.
//!
//! Machine time moves only when the harness jumps it to the machine's next deadline, so a
//! simulated day takes as long as its few real requests. The network calls themselves run in
//! real time: paused tokio time would jump straight to the client's 30 s timeouts whenever the
//! runtime waits on a socket served by another thread. Stalls are bounded by short client and
//! server timeouts instead (hundreds of milliseconds).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use ucupdate_agent::bridge;
use ucupdate_agent::dns::{Discovery, DnsSettings};
use ucupdate_agent::machine::{
    Action, Event, FailureClass, Instant, Machine, MachineConfig, PersistedState,
};
use ucupdate_agent::net::{self, Client, ClientSettings, Credentials, ErrorClass, TlsOptions};
use ucupdate_agent::perform::{self, InFlight, Kind, Work};
use ucupdate_agent::trust::{OfferPolicy, Origin};
use ucupdate_protocol::{DeviceIdentity, FileName, FirmwareVersion, HttpUrl, InstalledModule};
use ucupdate_server_stub::testing::{self, key, v, PASSWORD, USER};
use ucupdate_server_stub::{RunningServer, ServerConfig};
use ucupdate_simulator::faults::{FaultKind, FaultProxies};

/// docs/AGENT-MACHINE.md: "a failing server sees at most 6 requests per device in any hour".
const MAX_REQUESTS_PER_HOUR: usize = 6;
const HOUR: u64 = 3_600_000;
const OLD: &str = "1.0.522.101";
const NEW: &str = "1.0.522.200";

/// The published files of [`NEW`]: an image big enough to be cut mid-way, and its catalog
/// (signed by the fixtures' CA, which the device trusts). Made once: a signature is not the
/// same twice, and the install compares the staged bytes with these.
fn published() -> Vec<(FileName, Vec<u8>)> {
    static FILES: std::sync::OnceLock<Vec<(FileName, Vec<u8>)>> = std::sync::OnceLock::new();
    FILES
        .get_or_init(|| {
            let image: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let catalog = testing::catalog_signer()
                .signer
                .sign_files(&[("CPE.nbt", &image[..])], testing::CATALOG_SIGNING_TIME)
                .unwrap();
            vec![
                (FileName::new("CPE.nbt").unwrap(), image),
                (FileName::new("CPE.cat").unwrap(), catalog),
            ]
        })
        .clone()
}

/// Where the fault sits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    /// Checks go through the proxy; downloads go straight to the stub.
    Check,
    /// Checks go straight to the stub; the offered `BaseURL` points at the proxy.
    Download,
}

/// A stub with [`NEW`] approved, and optionally one fault proxy in front of it.
struct Rig {
    stub: RunningServer,
    _dir: tempfile::TempDir,
    proxies: Option<FaultProxies>,
    check_url: HttpUrl,
    /// The files' origin when a proxy stands in front of only one of check and files (the
    /// other goes direct): the device must list it in `allowed_file_origins`.
    file_origins: Vec<Origin>,
}

impl Rig {
    async fn plain() -> Rig {
        Self::start(None, Route::Check, |_| {}).await
    }

    async fn start(
        fault: Option<FaultKind>,
        route: Route,
        tune: impl FnOnce(&mut ServerConfig),
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let mut config = testing::loopback_config(dir.path());
        tune(&mut config);
        // The proxy's port must be known before the stub starts when the stub advertises it.
        let listener = match fault {
            Some(_) => Some(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap()),
            None => None,
        };
        let proxy_addr = listener.as_ref().map(|l| l.local_addr().unwrap());
        if let (Some(addr), Route::Download) = (proxy_addr, route) {
            config.public_internal_url = Some(format!("http://{addr}/").parse().unwrap());
        }
        let stub = ucupdate_server_stub::start(config).await.unwrap();
        let control = stub.control();
        control.publish(&key(), v(NEW), published()).await.unwrap();
        control.approve(&key()).await.unwrap();
        let direct = stub.internal_url().unwrap();
        let file_origins = match (proxy_addr, route) {
            (Some(addr), Route::Download) => {
                vec![Origin::of(&format!("http://{addr}/").parse().unwrap())]
            }
            // External devices fetch from the stub's external listener.
            (Some(_), Route::Check) => [Some(direct.clone()), stub.external_url()]
                .iter()
                .flatten()
                .map(Origin::of)
                .collect(),
            (None, _) => Vec::new(),
        };
        let upstream: SocketAddr = format!("{}:{}", direct.host, direct.port).parse().unwrap();
        let proxies = match (fault, listener) {
            (Some(kind), Some(l)) => {
                Some(FaultProxies::start_on(upstream, vec![(kind, l)]).unwrap())
            }
            _ => None,
        };
        let check_url = match (proxy_addr, route) {
            (Some(addr), Route::Check) => format!("http://{addr}/RequestHandler/ucdevice.upx")
                .parse()
                .unwrap(),
            _ => direct,
        };
        Rig {
            stub,
            _dir: dir,
            proxies,
            check_url,
            file_origins,
        }
    }

    fn injected(&self, kind: FaultKind) -> u64 {
        self.proxies.as_ref().map_or(0, |p| p.injected(kind))
    }

    fn clear(&self) {
        if let Some(p) = &self.proxies {
            p.set_active(false);
        }
    }
}

/// One device: the real machine, the real net client, a staging directory, and a record of
/// what it did on machine time.
struct Device {
    machine: Machine,
    now: Instant,
    current: FirmwareVersion,
    client: Client,
    creds: Option<Credentials>,
    discovery: Option<Discovery>,
    staging: tempfile::TempDir,
    /// Machine instants of every request sent (lookups, checks, downloads).
    requests: Vec<Instant>,
    net_errors: Vec<ErrorClass>,
    machine_errors: Vec<FailureClass>,
    installed: Vec<FirmwareVersion>,
    /// Installs of bytes that were not exactly the published ones: must stay empty.
    violations: Vec<String>,
    /// `Range` downloads (resume_from > 0).
    resumes: u32,
    /// Awaited inline, so nothing is ever superseded; tracked to hold the harness to that.
    work: InFlight,
}

fn identity() -> DeviceIdentity {
    testing::identity(testing::MAC)
}

/// The fixture device as the agent's performer sees it: the same requests a real device sends.
impl perform::Context for Device {
    fn client(&self) -> Client {
        self.client.clone()
    }

    fn identity(&self) -> DeviceIdentity {
        identity()
    }

    fn module(&self, version: FirmwareVersion) -> InstalledModule {
        InstalledModule {
            update_type: "CPE".parse().unwrap(),
            file_name: FileName::new("CPE.nbt").unwrap(),
            version,
            timestamp: None,
        }
    }

    fn credentials(&self) -> Option<Credentials> {
        self.creds.clone()
    }

    /// The fault proxy speaks plain HTTP, also in front of the external check: a lab setup.
    fn plain_http_credentials(&self) -> bool {
        true
    }

    fn catalog_check(&self) -> perform::CatalogCheck {
        perform::CatalogCheck::Verify(std::sync::Arc::new(ucupdate_agent::trust::CatalogTrust {
            anchors: ucupdate_agent::trust::TrustAnchors::from_pem(
                testing::catalog_ca_pem().as_bytes(),
            )
            .unwrap(),
            policy: Default::default(),
            trusted_clock: false,
            memo: None,
        }))
    }

    fn staging(&self, version: FirmwareVersion, file: &FileName) -> Option<std::path::PathBuf> {
        Some(
            self.staging
                .path()
                .join(version.to_string())
                .join(file.as_str()),
        )
    }

    fn logs(&self) -> Vec<perform::Log> {
        Vec::new()
    }
}

fn client(ca_pem: &str, timeouts: Option<net::Timeouts>) -> Client {
    let tls = TlsOptions::with_ca_pem(ca_pem.as_bytes().to_vec())
        .build()
        .unwrap();
    Client::with_settings(ClientSettings {
        tls: Some(tls),
        timeouts: timeouts.unwrap_or_default(),
        ..ClientSettings::default()
    })
}

/// The default download rules, plus files from `origins` (a download-only fault proxy).
fn allowing(origins: &[Origin]) -> OfferPolicy {
    OfferPolicy {
        allowed_file_origins: origins.to_vec(),
        ..OfferPolicy::default()
    }
}

/// Timeouts short enough that a stall costs a fraction of a second of real time.
fn short_timeouts() -> net::Timeouts {
    net::Timeouts {
        connect: Duration::from_millis(500),
        tls_handshake: Duration::from_millis(500),
        response_head: Duration::from_millis(400),
        body_idle: Duration::from_millis(400),
    }
}

impl Device {
    fn new(config: MachineConfig, client: Client) -> Device {
        let config = MachineConfig {
            power_on_jitter: Duration::ZERO,
            idle_before_restart: Duration::from_secs(60),
            ..config
        };
        let machine = Machine::new(
            Arc::new(config),
            PersistedState::new(v(OLD)),
            11,
            Instant::ZERO,
        );
        Device {
            machine,
            now: Instant::ZERO,
            current: v(OLD),
            client,
            creds: None,
            discovery: None,
            staging: tempfile::tempdir().unwrap(),
            requests: Vec::new(),
            net_errors: Vec::new(),
            machine_errors: Vec::new(),
            installed: Vec::new(),
            violations: Vec::new(),
            resumes: 0,
            work: InFlight::new(),
        }
    }

    /// Outside the firewall with a signed-in user: the only path that sends credentials.
    fn external_signed_in(url: &HttpUrl, files: &[Origin], client: Client) -> Device {
        let mut dev = Self::new(
            MachineConfig {
                external_server_url: Some(url.to_string()),
                outside_firewall: Some(true),
                offer_policy: allowing(files),
                ..MachineConfig::default()
            },
            client,
        );
        dev.creds = Some(Credentials::parse_user(USER, PASSWORD));
        let signed_in = Event::SignedIn {
            user: USER.to_owned(),
            provisioning: None,
        };
        dev.machine.handle(signed_in, Instant::ZERO).unwrap();
        dev
    }

    fn internal(url: &HttpUrl, files: &[Origin], client: Client) -> Device {
        Self::new(
            MachineConfig {
                server_url: Some(url.to_string()),
                outside_firewall: Some(false),
                offer_policy: allowing(files),
                ..MachineConfig::default()
            },
            client,
        )
    }

    /// Runs the machine until `until` (machine time) or its reboot; `true` if it rebooted.
    async fn run_until(&mut self, until: Instant) -> bool {
        loop {
            while let Some(action) = self.machine.poll_action() {
                if self.perform(action).await {
                    return true;
                }
            }
            match self.machine.poll_timeout() {
                Some(next) if next <= until => {
                    self.now = self.now.max(next);
                    self.machine.handle_timeout(self.now);
                }
                _ => {
                    self.now = until;
                    return false;
                }
            }
        }
    }

    fn fail(&mut self, e: &net::NetError) {
        self.net_errors.push(e.class());
        self.machine_errors.push(bridge::failure_class(e.class()));
    }

    async fn perform(&mut self, action: Action) -> bool {
        let now = self.now;
        if matches!(action, Action::Download { resume_from, .. } if resume_from > 0) {
            self.resumes += 1;
        }
        let action = match perform::start(action, &*self) {
            Work::Request { kind, call } => {
                if kind != Kind::UploadLog {
                    self.requests.push(now);
                }
                let ticket = self.work.start(kind);
                let done = call.await;
                if let Some(e) = &done.error {
                    self.fail(e);
                }
                assert!(self.work.finish(ticket), "inline work is never superseded");
                self.machine.handle(done.event, now).unwrap();
                return false;
            }
            Work::Local(action) => action,
        };
        match action {
            Action::Persist(_) => {}
            Action::Resolve { name } => {
                self.requests.push(now);
                let ticket = self.work.start(Kind::Resolve);
                let discovery = self.discovery.clone().expect("discovery configured");
                let event = match discovery.lookup(&name).await {
                    Ok(addrs) => {
                        self.client = self.client.with_override(&name, addrs.clone());
                        Event::Resolved(Ok(addrs))
                    }
                    Err(e) => {
                        self.net_errors.push(e.class());
                        self.machine_errors.push(bridge::failure_class(e.class()));
                        Event::Resolved(Err(bridge::failure_class(e.class())))
                    }
                };
                assert!(self.work.finish(ticket));
                self.machine.handle(event, now).unwrap();
            }
            Action::Install { version, files } => {
                let ticket = self.work.start(Kind::Install);
                let dir = self.staging.path().join(version.to_string());
                let expected: HashMap<FileName, Vec<u8>> = published().into_iter().collect();
                for file in &files {
                    let staged =
                        std::fs::read(dir.join(file.file_name.as_str())).unwrap_or_default();
                    let ok = version == v(NEW)
                        && expected.get(&file.file_name).is_some_and(|b| *b == staged);
                    if !ok {
                        self.violations.push(format!(
                            "{version} {} not the published bytes",
                            file.file_name
                        ));
                    }
                }
                self.installed.push(version);
                assert!(self.work.finish(ticket));
                self.machine
                    .handle(Event::InstallDone(Ok(())), now)
                    .unwrap();
            }
            Action::Reboot => {
                self.current = self.machine.persisted().current_version;
                return true;
            }
            // `perform::start` took the network actions.
            Action::Check { .. } | Action::Download { .. } | Action::UploadLog { .. } => {}
        }
        false
    }

    /// The most requests in any one-hour window of machine time.
    fn max_per_hour(&self) -> usize {
        self.requests
            .iter()
            .map(|start| {
                self.requests
                    .iter()
                    .filter(|t| **t >= *start && t.as_millis() < start.as_millis() + HOUR)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Claims 1-3 for the fault phase (the first `hours` of machine time).
    async fn assert_fault_phase(&mut self, hours: u64, net: &[ErrorClass], machine: FailureClass) {
        let rebooted = self.run_until(Instant::from_millis(hours * HOUR)).await;
        assert!(!rebooted, "no update can succeed through the fault");
        assert!(
            self.installed.is_empty(),
            "installed through a fault: {:?}",
            self.installed
        );
        assert!(!self.net_errors.is_empty(), "the fault was never met");
        for class in &self.net_errors {
            assert!(
                net.contains(class),
                "net class {class:?}, expected one of {net:?}"
            );
        }
        for class in &self.machine_errors {
            assert_eq!(*class, machine, "machine class");
        }
        assert_eq!(
            self.machine.status().last_error,
            Some(machine),
            "the status names the class"
        );
        let peak = self.max_per_hour();
        assert!(
            peak <= MAX_REQUESTS_PER_HOUR,
            "{peak} requests in one hour: {:?}",
            self.requests
        );
        // The device keeps trying: at least one retry per hour at the back-off cap.
        assert!(
            self.requests.len() as u64 >= hours,
            "gave up: {:?}",
            self.requests
        );
    }

    /// Claim 4: once the fault is gone the device ends on [`NEW`] with the published bytes.
    async fn assert_converges(&mut self) {
        let deadline = Instant::from_millis(self.now.as_millis() + 3 * 24 * HOUR);
        assert!(
            self.run_until(deadline).await,
            "no update within three days of the fault clearing"
        );
        assert_eq!(self.current, v(NEW));
        assert_eq!(self.installed, vec![v(NEW)]);
        assert!(self.violations.is_empty(), "{:?}", self.violations);
    }
}

/// One fault through the proxy: fault phase (3 simulated hours), then cleared.
async fn proxied(
    kind: FaultKind,
    route: Route,
    net: &[ErrorClass],
    machine: FailureClass,
    tune: impl FnOnce(&mut ServerConfig),
    timeouts: Option<net::Timeouts>,
    creds: bool,
) -> (Rig, Device) {
    let rig = Rig::start(Some(kind), route, tune).await;
    let client = client(rig.stub.ca_pem(), timeouts);
    let mut dev = if creds {
        Device::external_signed_in(&rig.check_url, &rig.file_origins, client)
    } else {
        Device::internal(&rig.check_url, &rig.file_origins, client)
    };
    dev.assert_fault_phase(3, net, machine).await;
    assert!(rig.injected(kind) > 0, "{kind} was never injected");
    rig.clear();
    dev.assert_converges().await;
    (rig, dev)
}

#[tokio::test]
async fn connection_reset_mid_check() {
    proxied(
        FaultKind::ResetMidResponse,
        Route::Check,
        &[ErrorClass::Transport],
        FailureClass::Connect,
        |_| {},
        None,
        false,
    )
    .await;
}

#[tokio::test]
async fn connection_reset_mid_download_resumes_once_cleared() {
    let (rig, dev) = proxied(
        FaultKind::ResetMidResponse,
        Route::Download,
        &[ErrorClass::Transport],
        FailureClass::Connect,
        |_| {},
        None,
        false,
    )
    .await;
    assert!(
        dev.resumes > 0,
        "the kept half of the image was resumed with a Range"
    );
    drop(rig);
}

#[tokio::test]
async fn truncated_check_body() {
    proxied(
        FaultKind::Truncate,
        Route::Check,
        &[ErrorClass::Transport],
        FailureClass::Connect,
        |_| {},
        None,
        false,
    )
    .await;
}

#[tokio::test]
async fn truncated_download_body() {
    let (_rig, dev) = proxied(
        FaultKind::Truncate,
        Route::Download,
        &[ErrorClass::Transport],
        FailureClass::Connect,
        |_| {},
        None,
        false,
    )
    .await;
    assert!(dev.resumes > 0, "the truncated download was resumed");
}

#[tokio::test]
async fn stalled_server_response_times_out() {
    proxied(
        FaultKind::StallResponse,
        Route::Check,
        &[ErrorClass::Timeout],
        FailureClass::Timeout,
        |_| {},
        Some(short_timeouts()),
        false,
    )
    .await;
}

#[tokio::test]
async fn stalled_download_times_out() {
    proxied(
        FaultKind::StallResponse,
        Route::Download,
        &[ErrorClass::Timeout],
        FailureClass::Timeout,
        |_| {},
        Some(short_timeouts()),
        false,
    )
    .await;
}

/// Slow-loris toward the server: half a request head; the stub's header timeout closes the
/// connection and the device sees it end without an answer.
#[tokio::test]
async fn stalled_request_is_closed_by_the_server_header_timeout() {
    let timeouts = net::Timeouts {
        response_head: Duration::from_secs(5),
        ..short_timeouts()
    };
    proxied(
        FaultKind::StallRequest,
        Route::Check,
        &[ErrorClass::Transport],
        FailureClass::Connect,
        |c| c.limits.header_read_timeout = Duration::from_millis(300),
        Some(timeouts),
        false,
    )
    .await;
}

#[tokio::test]
async fn a_503_storm_is_backed_off() {
    let (rig, dev) = proxied(
        FaultKind::ServerError503,
        Route::Check,
        &[ErrorClass::Http5xx],
        FailureClass::Server5xx,
        |_| {},
        None,
        false,
    )
    .await;
    // Every failed check met a 503: the proxy answered exactly as often as the device asked
    // during the fault (the requests after it cleared reached the stub).
    assert_eq!(
        rig.injected(FaultKind::ServerError503) as usize,
        dev.net_errors.len()
    );
}

#[tokio::test]
async fn a_503_storm_on_downloads_is_backed_off() {
    proxied(
        FaultKind::ServerError503,
        Route::Download,
        &[ErrorClass::Http5xx],
        FailureClass::Server5xx,
        |_| {},
        None,
        false,
    )
    .await;
}

/// A server that answers every NTLM leg with a bare `401 NTLM`: the device with credentials
/// must not loop on it.
#[tokio::test]
async fn a_401_loop_is_backed_off() {
    let (rig, dev) = proxied(
        FaultKind::Unauthorized401,
        Route::Check,
        &[ErrorClass::Unauthorized, ErrorClass::Protocol],
        bridge::failure_class(ErrorClass::Unauthorized),
        |_| {},
        None,
        true,
    )
    .await;
    // At most three requests per check (anonymous, Type 1, Type 3), never more.
    let per_check = rig.injected(FaultKind::Unauthorized401) as usize;
    assert!(per_check <= 3 * dev.net_errors.len(), "{per_check} 401s");
}

#[tokio::test]
async fn refused_connections_are_backed_off() {
    proxied(
        FaultKind::RefuseConnect,
        Route::Check,
        &[ErrorClass::Transport, ErrorClass::Connect],
        FailureClass::Connect,
        |_| {},
        None,
        false,
    )
    .await;
}

/// A download whose body differs from the advertised SHA-256 (one byte flipped in transit).
#[tokio::test]
async fn a_corrupted_download_is_never_installed() {
    let (_rig, dev) = proxied(
        FaultKind::CorruptBody,
        Route::Download,
        &[ErrorClass::HashMismatch],
        FailureClass::HashMismatch,
        |_| {},
        None,
        false,
    )
    .await;
    // After a mismatch the kept bytes are dropped: nothing corrupt is resumed from.
    assert_eq!(dev.resumes, 0);
}

/// The server serves a different file than the one it advertised (its store was changed
/// behind its back): same size, other bytes.
#[tokio::test]
async fn a_different_file_than_advertised_is_never_installed() {
    let rig = Rig::plain().await;
    let stored =
        ucupdate_server_stub::store::version_dir(rig._dir.path(), &key(), v(NEW)).join("CPE.nbt");
    let original = std::fs::read(&stored).unwrap();
    let mut other = original.clone();
    other.reverse();
    std::fs::write(&stored, &other).unwrap();
    let mut dev = Device::internal(
        &rig.check_url,
        &rig.file_origins,
        client(rig.stub.ca_pem(), None),
    );
    dev.assert_fault_phase(3, &[ErrorClass::HashMismatch], FailureClass::HashMismatch)
        .await;
    std::fs::write(&stored, &original).unwrap();
    dev.assert_converges().await;
}

/// A UDP DNS responder: NXDOMAIN, silence, or an A record for 127.0.0.1.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dns {
    NxDomain,
    Silent,
    Answer,
}

async fn dns_server(mode: Arc<std::sync::Mutex<Dns>>) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let mode = *mode.lock().unwrap();
            if n < 12 || mode == Dns::Silent {
                continue;
            }
            let query = &buf[..n];
            // The question ends after its QNAME labels and QTYPE/QCLASS.
            let mut i = 12;
            while i < n && query[i] != 0 {
                i += usize::from(query[i]) + 1;
            }
            let qend = (i + 5).min(n);
            let qtype = u16::from_be_bytes([query[qend - 4], query[qend - 3]]);
            let mut reply = query[..qend].to_vec();
            reply[2] = 0x80 | (query[2] & 0x01) | 0x04; // QR, AA, RD
            let answer = mode == Dns::Answer && qtype == 1;
            reply[3] = if mode == Dns::NxDomain { 0x83 } else { 0x80 }; // RA + rcode
            reply[6..8].copy_from_slice(&(u16::from(answer)).to_be_bytes());
            reply[8..12].copy_from_slice(&[0, 0, 0, 0]);
            if answer {
                reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
            }
            let _ = socket.send_to(&reply, peer).await;
        }
    });
    addr
}

async fn dns_fault(mode: Dns, net: &[ErrorClass], machine: FailureClass) {
    let rig = Rig::plain().await;
    let state = Arc::new(std::sync::Mutex::new(mode));
    let nameserver = dns_server(state.clone()).await;
    let config = MachineConfig {
        dhcp_domain: Some("corp.example".into()),
        discovery_port: rig.check_url.port,
        outside_firewall: Some(false),
        // The stub names its files by address, not under the discovered domain.
        offer_policy: allowing(&[Origin::of(&rig.check_url)]),
        ..MachineConfig::default()
    };
    let mut dev = Device::new(config, client(rig.stub.ca_pem(), None));
    let settings = DnsSettings {
        timeout: Duration::from_millis(200),
        retries: 1,
    };
    dev.discovery = Some(Discovery::with_nameserver(nameserver, &settings).unwrap());
    dev.assert_fault_phase(3, net, machine).await;
    *state.lock().unwrap() = Dns::Answer;
    dev.assert_converges().await;
}

#[tokio::test]
async fn dns_nxdomain_is_backed_off() {
    dns_fault(Dns::NxDomain, &[ErrorClass::Dns], FailureClass::Dns).await;
}

#[tokio::test]
async fn dns_timeout_is_backed_off() {
    dns_fault(
        Dns::Silent,
        &[ErrorClass::Dns, ErrorClass::Timeout],
        bridge::failure_class(ErrorClass::Timeout),
    )
    .await;
}

/// The stub's HTTPS listener presents a certificate for `localhost`/`127.0.0.1`; the device
/// asks for another name (pinned to the same address), or trusts another CA.
async fn tls_fault(wrong_name: bool) {
    let rig = Rig::plain().await;
    let tls = rig.stub.internal_tls_url().unwrap();
    let other = Rig::plain().await;
    let (url, bad_client): (HttpUrl, Client) = if wrong_name {
        let url = format!("https://updates.contoso.invalid:{}{}", tls.port, tls.path)
            .parse()
            .unwrap();
        let c = client(rig.stub.ca_pem(), None).with_override(
            "updates.contoso.invalid",
            vec![IpAddr::from(Ipv4Addr::LOCALHOST)],
        );
        (url, c)
    } else {
        (tls.clone(), client(other.stub.ca_pem(), None))
    };
    // The check goes over HTTPS, the stub offers its files over its plain listener.
    let plain = [Origin::of(&rig.stub.internal_url().unwrap())];
    let mut dev = Device::internal(&url, &plain, bad_client);
    dev.assert_fault_phase(3, &[ErrorClass::Tls], FailureClass::Tls)
        .await;
    assert!(
        rig.stub.control().hits("check") == 0,
        "no check got through TLS"
    );
    // The fault clears: the right certificate (the listener's own name, the right CA).
    dev.client = client(rig.stub.ca_pem(), None).with_override(
        "updates.contoso.invalid",
        vec![IpAddr::from(Ipv4Addr::LOCALHOST)],
    );
    if wrong_name {
        // The operator fixes the certificate's name: here, the device is pointed at the name
        // the certificate carries (the machine reads its URL from the config at power-on).
        let config = MachineConfig {
            server_url: Some(tls.to_string()),
            outside_firewall: Some(false),
            power_on_jitter: Duration::ZERO,
            idle_before_restart: Duration::from_secs(60),
            offer_policy: allowing(&plain),
            ..MachineConfig::default()
        };
        let state = dev.machine.persisted().clone();
        dev.machine = Machine::new(Arc::new(config), state, 12, dev.now);
    }
    dev.assert_converges().await;
}

#[tokio::test]
async fn tls_certificate_for_another_name_is_refused() {
    tls_fault(true).await;
}

#[tokio::test]
async fn tls_certificate_from_an_untrusted_ca_is_refused() {
    tls_fault(false).await;
}
