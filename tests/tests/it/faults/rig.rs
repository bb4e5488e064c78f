//! The faults tests' rig: a stub behind the fault proxy, and a device made of the agent's
//! `Machine` and performer that the tests drive on machine time (see `faults.rs`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use ucupdate_agent::bridge;
use ucupdate_agent::dns::Discovery;
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
pub(super) const MAX_REQUESTS_PER_HOUR: usize = 6;
pub(super) const HOUR: u64 = 3_600_000;
pub(super) const OLD: &str = "1.0.522.101";
pub(super) const NEW: &str = "1.0.522.200";

/// The published files of [`NEW`]: an image big enough to be cut mid-way, and its catalog
/// (signed by the fixtures' CA, which the device trusts). Made once: a signature is not the
/// same twice, and the install compares the staged bytes with these.
pub(super) fn published() -> Vec<(FileName, Vec<u8>)> {
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
pub(super) enum Route {
    /// Checks go through the proxy; downloads go straight to the stub.
    Check,
    /// Checks go straight to the stub; the offered `BaseURL` points at the proxy.
    Download,
}

/// A stub with [`NEW`] approved, and optionally one fault proxy in front of it.
pub(super) struct Rig {
    pub(super) stub: RunningServer,
    pub(super) _dir: tempfile::TempDir,
    pub(super) proxies: Option<FaultProxies>,
    pub(super) check_url: HttpUrl,
    /// The files' origin when a proxy stands in front of only one of check and files (the
    /// other goes direct): the device must list it in `allowed_file_origins`.
    pub(super) file_origins: Vec<Origin>,
}

impl Rig {
    pub(super) async fn plain() -> Rig {
        Self::start(None, Route::Check, |_| {}).await
    }

    pub(super) async fn start(
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

    pub(super) fn injected(&self, kind: FaultKind) -> u64 {
        self.proxies.as_ref().map_or(0, |p| p.injected(kind))
    }

    pub(super) fn clear(&self) {
        if let Some(p) = &self.proxies {
            p.set_active(false);
        }
    }
}

/// One device: the real machine, the real net client, a staging directory, and a record of
/// what it did on machine time.
pub(super) struct Device {
    pub(super) machine: Machine,
    pub(super) now: Instant,
    pub(super) current: FirmwareVersion,
    pub(super) client: Client,
    pub(super) creds: Option<Credentials>,
    pub(super) discovery: Option<Discovery>,
    pub(super) staging: tempfile::TempDir,
    /// Machine instants of every request sent (lookups, checks, downloads).
    pub(super) requests: Vec<Instant>,
    pub(super) net_errors: Vec<ErrorClass>,
    pub(super) machine_errors: Vec<FailureClass>,
    pub(super) installed: Vec<FirmwareVersion>,
    /// Installs of bytes that were not exactly the published ones: must stay empty.
    pub(super) violations: Vec<String>,
    /// `Range` downloads (resume_from > 0).
    pub(super) resumes: u32,
    /// Awaited inline, so nothing is ever superseded; tracked to hold the harness to that.
    pub(super) work: InFlight,
}

pub(super) fn identity() -> DeviceIdentity {
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

pub(super) fn client(ca_pem: &str, timeouts: Option<net::Timeouts>) -> Client {
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
pub(super) fn allowing(origins: &[Origin]) -> OfferPolicy {
    OfferPolicy {
        allowed_file_origins: origins.to_vec(),
        ..OfferPolicy::default()
    }
}

/// Timeouts short enough that a stall costs a fraction of a second of real time.
pub(super) fn short_timeouts() -> net::Timeouts {
    net::Timeouts {
        connect: Duration::from_millis(500),
        tls_handshake: Duration::from_millis(500),
        response_head: Duration::from_millis(400),
        body_idle: Duration::from_millis(400),
    }
}

impl Device {
    pub(super) fn new(config: MachineConfig, client: Client) -> Device {
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
    pub(super) fn external_signed_in(url: &HttpUrl, files: &[Origin], client: Client) -> Device {
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

    pub(super) fn internal(url: &HttpUrl, files: &[Origin], client: Client) -> Device {
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
    pub(super) async fn run_until(&mut self, until: Instant) -> bool {
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

    pub(super) fn fail(&mut self, e: &net::NetError) {
        self.net_errors.push(e.class());
        self.machine_errors.push(bridge::failure_class(e.class()));
    }

    pub(super) async fn perform(&mut self, action: Action) -> bool {
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
    pub(super) fn max_per_hour(&self) -> usize {
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
    pub(super) async fn assert_fault_phase(
        &mut self,
        hours: u64,
        net: &[ErrorClass],
        machine: FailureClass,
    ) {
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
    pub(super) async fn assert_converges(&mut self) {
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
pub(super) async fn proxied(
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
