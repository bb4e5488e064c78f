//! The tokio driver: one device's [`Machine`] run against the real world. It owns the machine,
//! sleeps until [`Machine::poll_timeout`] (tokio time, so tests can pause it), and performs each
//! [`Action`]: state writes go to disk in order before anything that follows them, and the long
//! I/O (DNS, the check, downloads, the install hook, log uploads) runs in spawned tasks whose
//! results come back over a channel. That is what lets a sign-in, a `check-now` or a touch of
//! the screen be handled while an image downloads.
//!
//! The network actions are performed by [`crate::perform`], shared with the simulator and the
//! fault tests, so none of them can disagree on what a request carries or what a failure
//! means; the driver adds the spawning, and aborts a task its machine has superseded.
//!
//! # Layout
//! - [`DriverConfig`], [`Driver`], [`RunOutcome`]: what runs.
//! - [`DriverHandle`], [`Command`]: how the CLI and tests talk to a running driver.
//! - [`StatusReport`]: what `ucupdate-agent status` shows, also written to `status.json`.
//! - [`config`]: [`config::AgentConfig`], the agent's TOML file.
//! - `control`: the unix-socket line protocol of the CLI.
//! - `files`: the state-dir layout, staging, verification of staged files.
//! - `work`: what the driver brings to [`crate::perform`] (its `Context`), and the install.
//!
//! State directory: `state.json` (the machine's
//! [`PersistedState`](crate::machine::PersistedState), atomic writes), `status.json` (the last
//! [`StatusReport`], for `status` when the daemon is down), `staging/<version>/<file>`
//! (downloads), `control.sock` (the control socket).

pub mod config;
mod control;
mod files;
mod status;
mod work;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use ucupdate_protocol::{DeviceIdentity, Provisioning};

use crate::bridge;
use crate::clock;
use crate::device::{Device, DeviceError, RebootJob, SignIn};
use crate::dns::{self, Discovery, DnsError, DnsSettings};
use crate::machine::{Action, Event, Instant, Machine, MachineConfig, Phase};
use crate::net::Client;
use crate::perform::{self, CatalogCheck, InFlight, Kind, Ticket, Work};
use crate::persist;

pub use config::{AgentConfig, AgentConfigError};
pub use control::{send_command, ControlError, CONTROL_SOCKET};
pub use files::{staged_path, STAGING_DIR, STATE_FILE, STATUS_FILE};
pub use status::{format_unix_ms, read_offline_status, StatusReport};

/// Where discovery asks for `ucupdates-r2.<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsSource {
    /// The nameservers of `/etc/resolv.conf`.
    System,
    /// The nameservers of another resolv.conf.
    ResolvConf(PathBuf),
    /// One nameserver at `ip:port` (tests, or a firmware with its own resolver).
    Nameserver(SocketAddr),
}

/// Everything the driver needs besides the device.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// `state.json`, `status.json`, `staging/` and `control.sock` live here.
    pub state_dir: PathBuf,
    pub machine: MachineConfig,
    /// The HTTP(S) client (TLS trust, timeouts). Discovery results are layered on top.
    pub client: Client,
    pub dns: DnsSource,
    pub dns_settings: DnsSettings,
    /// Where the DHCP domain is looked for when `machine.dhcp_domain` is not set.
    pub resolv_conf: PathBuf,
    pub lease_paths: Vec<PathBuf>,
    /// Return from [`Driver::run`] once the reboot hook has run, so a supervisor restarts the
    /// agent (the new version is then current). Otherwise the agent keeps running and the
    /// machine asks again after `install_timeout`.
    pub exit_on_reboot: bool,
    /// Serve the control socket in the state dir (the CLI's `status`, `check-now`, `sign-in`).
    pub control_socket: bool,
    /// How often the device's activity signals are read while an update waits for idle.
    pub activity_poll: Duration,
    /// The jitter seed; `None` derives one from the device identity and the time.
    pub seed: Option<u64>,
    /// `[trust] allow_plain_http_credentials`: a lab override that lets NTLM go over HTTP.
    pub allow_plain_http_credentials: bool,
    /// `[trust] catalog_roots` and its settings. [`CatalogCheck::NoAnchors`] (the default)
    /// refuses every update, and the driver says so at start.
    pub catalog_check: CatalogCheck,
    /// `[protocol] dialect`: the wire dialect of the checks; `None`: the built-in one.
    pub dialect: Option<std::sync::Arc<ucupdate_protocol::dialect::Dialect>>,
}

impl DriverConfig {
    /// Defaults for everything but the state dir, the machine config and the client.
    pub fn new(state_dir: impl Into<PathBuf>, machine: MachineConfig, client: Client) -> Self {
        DriverConfig {
            state_dir: state_dir.into(),
            machine,
            client,
            dns: DnsSource::System,
            dns_settings: DnsSettings::default(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            lease_paths: dns::default_lease_paths(),
            exit_on_reboot: false,
            control_socket: true,
            activity_poll: Duration::from_secs(5),
            seed: None,
            allow_plain_http_credentials: false,
            catalog_check: CatalogCheck::NoAnchors,
            dialect: None,
        }
    }
}

/// Why the driver stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    #[error(transparent)]
    Persist(#[from] persist::PersistError),
    /// The state file was written by a newer build: refuse rather than overwrite it.
    #[error("{path}: {error}")]
    State {
        path: PathBuf,
        error: crate::machine::PersistError,
    },
    #[error("{what} {path}: {error}")]
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// How [`Driver::run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The reboot hook ran (with `exit_on_reboot`); `version` is current at the next start.
    Rebooted {
        version: ucupdate_protocol::FirmwareVersion,
    },
    /// [`Command::Shutdown`] (SIGTERM in the daemon).
    Shutdown,
}

/// What the CLI and tests can ask of a running driver.
#[derive(Debug)]
pub enum Command {
    CheckNow,
    SignIn {
        signin: SignIn,
        provisioning: Option<Provisioning>,
    },
    SignOut,
    /// Someone touched the device.
    Activity,
    CallStarted,
    CallEnded,
    Shutdown,
}

/// A cheap handle on a running (or about to run) driver.
#[derive(Debug, Clone)]
pub struct DriverHandle {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<StatusReport>,
}

impl DriverHandle {
    /// Queues a command; `false` once the driver has stopped.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// The latest status (published after every step of the loop).
    pub fn status(&self) -> StatusReport {
        self.status.borrow().clone()
    }

    /// Waits until the status satisfies `pred` (or the driver stops: then the last status).
    pub async fn wait_for(&self, mut pred: impl FnMut(&StatusReport) -> bool) -> StatusReport {
        let mut rx = self.status.clone();
        let found = rx.wait_for(|s| pred(s)).await.map(|s| s.clone());
        found.unwrap_or_else(|_| rx.borrow().clone())
    }
}

/// The result of a spawned task (sent with the [`Ticket`] of the start it answers).
#[derive(Debug)]
enum Completion {
    Event(Event),
    Resolved {
        name: String,
        result: Result<Vec<IpAddr>, DnsError>,
    },
}

/// One device's driver. Build with [`Driver::new`], take a [`Driver::handle`], then
/// [`Driver::run`].
pub struct Driver<D: Device> {
    config: DriverConfig,
    device: Arc<D>,
    commands_tx: mpsc::UnboundedSender<Command>,
    commands: mpsc::UnboundedReceiver<Command>,
    status_tx: watch::Sender<StatusReport>,
    status_rx: watch::Receiver<StatusReport>,
}

impl<D: Device> Driver<D> {
    pub fn new(config: DriverConfig, device: D) -> Driver<D> {
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(StatusReport::starting());
        Driver {
            config,
            device: Arc::new(device),
            commands_tx,
            commands,
            status_tx,
            status_rx,
        }
    }

    pub fn handle(&self) -> DriverHandle {
        DriverHandle {
            commands: self.commands_tx.clone(),
            status: self.status_rx.clone(),
        }
    }

    /// Runs until shutdown, or until the reboot hook ran with `exit_on_reboot`.
    pub async fn run(self) -> Result<RunOutcome, DriverError> {
        let Driver {
            config,
            device,
            commands_tx,
            commands,
            status_tx,
            status_rx,
        } = self;
        if matches!(config.catalog_check, CatalogCheck::NoAnchors) {
            tracing::error!(
                "no catalog trust anchors ([trust] catalog_roots): every update will be refused; \
                 nothing is installed without a catalog that verifies"
            );
        }
        let run = Running::start(config, device, status_tx).await?;
        // Dropped (socket removed) when the loop ends.
        let _control = if run.config.control_socket {
            Some(control::serve(&run.config.state_dir, commands_tx, status_rx).await?)
        } else {
            None
        };
        run.main_loop(commands).await
    }
}

/// The driver's state while it runs.
struct Running<D: Device> {
    config: DriverConfig,
    device: Arc<D>,
    identity: DeviceIdentity,
    machine: Machine,
    /// Tokio instant of machine time zero.
    epoch: tokio::time::Instant,
    /// Wall clock at machine time zero (for the status screen's dates).
    wall_epoch: u64,
    client: Client,
    discovery: Option<Discovery>,
    sign_in: Option<SignIn>,
    tasks: JoinSet<()>,
    in_flight: InFlight,
    /// The task of each kind's current start, by [`Kind::index`].
    aborts: [Option<AbortHandle>; Kind::ALL.len()],
    results_tx: mpsc::UnboundedSender<(Ticket, Completion)>,
    results: mpsc::UnboundedReceiver<(Ticket, Completion)>,
    status_tx: watch::Sender<StatusReport>,
    /// Last activity already fed to the machine, and whether a call is up.
    seen_activity: Option<u64>,
    in_call: bool,
    last_written_status: Option<StatusReport>,
}

impl<D: Device> Running<D> {
    async fn start(
        config: DriverConfig,
        device: Arc<D>,
        status_tx: watch::Sender<StatusReport>,
    ) -> Result<Running<D>, DriverError> {
        let dir = config.state_dir.clone();
        files::create_private_dirs(&dir)
            .await
            .map_err(|(path, source)| DriverError::Io {
                what: "create",
                path,
                error: source,
            })?;
        let (mut state, fresh) = files::load_state(&dir, device.factory_version()).await?;
        if let Some(running) = device.running_version() {
            if running != state.current_version {
                tracing::warn!(
                    state = %state.current_version, firmware = %running,
                    "the firmware runs another version than the state file says; trusting the firmware"
                );
                state.current_version = running;
            }
        }
        files::raise_resume_point(&dir, &mut state).await;
        if fresh {
            persist::write_atomic_async(dir.join(STATE_FILE), state.encode().into_bytes()).await?;
        }

        let mut machine_config = config.machine.clone();
        // DNS is case-blind but the URL host (and so the certificate check and the status
        // screen) is not: one spelling, as `dns::discover` uses.
        for domain in [
            &mut machine_config.dhcp_domain,
            &mut machine_config.sip_domain,
        ] {
            if let Some(d) = domain.as_mut() {
                d.make_ascii_lowercase();
            }
        }
        if machine_config.dhcp_domain.is_none() && machine_config.server_url.is_none() {
            if let Some((domain, source)) =
                dns::dhcp_domain(None, &config.resolv_conf, &config.lease_paths)
            {
                tracing::info!(%domain, ?source, "DHCP domain for discovery");
                machine_config.dhcp_domain = Some(domain);
            }
        }
        let identity = device.identity();
        let seed = config.seed.unwrap_or_else(|| seed_from(&identity));
        let epoch = clock::monotonic();
        let wall_epoch = clock::unix_millis();
        let mut machine = Machine::new(Arc::new(machine_config), state, seed, Instant::ZERO);
        let _ = machine.handle(
            Event::WallClock {
                unix_ms: wall_epoch,
            },
            Instant::ZERO,
        );
        let sign_in = device.initial_sign_in();
        if let Some(s) = &sign_in {
            tracing::info!(user = %s.user, "signed in from the device configuration");
            let _ = machine.handle(
                Event::SignedIn {
                    user: s.user.clone(),
                    provisioning: None,
                },
                Instant::ZERO,
            );
        }
        tracing::info!(
            version = %machine.persisted().current_version,
            state_dir = %dir.display(),
            "agent started"
        );
        let (results_tx, results) = mpsc::unbounded_channel();
        let seen_activity = device.activity().last_unix_ms;
        Ok(Running {
            client: config.client.clone(),
            config,
            device,
            identity,
            machine,
            epoch,
            wall_epoch,
            discovery: None,
            sign_in,
            tasks: JoinSet::new(),
            in_flight: InFlight::new(),
            aborts: Default::default(),
            results_tx,
            results,
            status_tx,
            seen_activity,
            in_call: false,
            last_written_status: None,
        })
    }

    fn now(&self) -> Instant {
        let ms = clock::elapsed(self.epoch).as_millis();
        Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    fn to_tokio(&self, at: Instant) -> tokio::time::Instant {
        self.epoch + Duration::from_millis(at.as_millis())
    }

    async fn main_loop(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> Result<RunOutcome, DriverError> {
        let result = loop {
            if let Some(outcome) = self.perform_actions().await? {
                break outcome;
            }
            self.publish_status().await;
            while self.tasks.try_join_next().is_some() {}

            let deadline = self.machine.poll_timeout().map(|at| self.to_tokio(at));
            let watching = self.machine.phase() == Phase::WaitingIdle;
            let poll_every = self.config.activity_poll;
            tokio::select! {
                () = sleep_until_opt(deadline) => {
                    if watching {
                        self.poll_activity();
                    }
                    let now = self.now();
                    self.machine.handle_timeout(now);
                }
                () = tokio::time::sleep(poll_every), if watching => self.poll_activity(),
                Some((ticket, completion)) = self.results.recv() => {
                    self.completed(ticket, completion);
                }
                // With every sender gone the branch is just disabled: the daemon keeps going.
                Some(command) = commands.recv() => match command {
                    Command::Shutdown => break RunOutcome::Shutdown,
                    command => self.command(command),
                },
            }
        };
        self.publish_status().await;
        self.tasks.abort_all();
        Ok(result)
    }

    fn feed(&mut self, event: Event) {
        let now = self.now();
        tracing::debug!(%event, "event");
        if let Err(e) = self.machine.handle(event, now) {
            // A late answer after the machine's watchdog gave up: harmless, but worth a trace.
            tracing::debug!(error = %e, "event refused by the machine");
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::CheckNow => {
                tracing::info!("check requested");
                self.feed(Event::CheckNow);
            }
            Command::SignIn {
                signin,
                provisioning,
            } => {
                tracing::info!(user = %signin.user, "signed in");
                let user = signin.user.clone();
                self.sign_in = Some(signin);
                self.feed(Event::SignedIn { user, provisioning });
            }
            Command::SignOut => {
                tracing::info!("signed out");
                self.sign_in = None;
                self.feed(Event::SignedOut);
            }
            Command::Activity => self.feed(Event::UserActivity),
            Command::CallStarted => {
                self.in_call = true;
                self.feed(Event::CallStarted);
            }
            Command::CallEnded => {
                self.in_call = false;
                self.feed(Event::CallEnded);
            }
            Command::Shutdown => {}
        }
    }

    /// Reads the device's activity signals and feeds what changed.
    fn poll_activity(&mut self) {
        let activity = self.device.activity();
        if activity.last_unix_ms > self.seen_activity {
            self.seen_activity = activity.last_unix_ms;
            tracing::debug!("user activity: the idle wait restarts");
            self.feed(Event::UserActivity);
        }
        if activity.in_call != self.in_call {
            self.in_call = activity.in_call;
            self.feed(if activity.in_call {
                Event::CallStarted
            } else {
                Event::CallEnded
            });
        }
    }

    fn completed(&mut self, ticket: Ticket, completion: Completion) {
        if !self.in_flight.finish(ticket) {
            // Superseded: the machine already moved on (watchdog) and asked again.
            return;
        }
        self.aborts[ticket.kind().index()] = None;
        let event = match completion {
            Completion::Event(event) => event,
            Completion::Resolved { name, result } => match result {
                Ok(addrs) => {
                    self.client = self.config.client.with_override(&name, addrs.clone());
                    Event::Resolved(Ok(addrs))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "discovery failed");
                    Event::Resolved(Err(bridge::failure_class(e.class())))
                }
            },
        };
        tracing::info!(%event, "completed");
        // A device without an RTC battery boots in 1970 and learns the time from NTP later:
        // re-reading the wall clock here keeps the date of an install (and the status
        // screen's times) right.
        self.sync_wall_clock();
        self.feed(event);
    }

    fn sync_wall_clock(&mut self) {
        let unix_ms = clock::unix_millis();
        self.wall_epoch = unix_ms.saturating_sub(self.now().as_millis());
        self.feed(Event::WallClock { unix_ms });
    }

    fn spawn(
        &mut self,
        kind: Kind,
        task: impl std::future::Future<Output = Completion> + Send + 'static,
    ) {
        let ticket = self.in_flight.start(kind);
        if let Some(old) = self.aborts[kind.index()].take() {
            old.abort();
        }
        let tx = self.results_tx.clone();
        let handle = self.tasks.spawn(async move {
            let completion = task.await;
            let _ = tx.send((ticket, completion));
        });
        self.aborts[kind.index()] = Some(handle);
    }

    /// Performs every queued action in order. `Some` when the loop must end.
    async fn perform_actions(&mut self) -> Result<Option<RunOutcome>, DriverError> {
        while let Some(action) = self.machine.poll_action() {
            if !matches!(action, Action::Persist(_)) {
                tracing::info!(%action, "action");
            }
            let action = match perform::start(action, &*self) {
                Work::Request { kind, call } => {
                    self.spawn(kind, async move {
                        let done = call.await;
                        if let Some(e) = &done.error {
                            tracing::warn!(kind = kind.as_str(), error = %e, "request failed");
                        }
                        Completion::Event(done.event)
                    });
                    continue;
                }
                Work::Local(action) => action,
            };
            match action {
                Action::Persist(state) => {
                    tracing::debug!(%state, "persist");
                    let dir = self.config.state_dir.clone();
                    if let Err(e) = files::persist(dir, state).await {
                        // Nothing answers a Persist; the next write retries the whole state.
                        tracing::error!(error = %e, "cannot write the state file");
                    }
                }
                Action::Resolve { name } => self.resolve(name),
                Action::Install { version, files } => {
                    let job = self.install_job(version, &files);
                    let device = Arc::clone(&self.device);
                    self.spawn(Kind::Install, async move {
                        Completion::Event(Event::InstallDone(
                            work::install(device, job, files).await,
                        ))
                    });
                }
                Action::Reboot => {
                    let state = self.machine.persisted();
                    let job = RebootJob {
                        version: state.current_version,
                        fallback_version: state.fallback_version,
                    };
                    self.publish_status().await;
                    // Awaited in the loop: nothing else should start while the device goes
                    // down, and the hook's own timeout bounds the wait.
                    if let Err(e) = self.device.reboot(job.clone()).await {
                        tracing::error!(error = %e, "reboot hook failed; the machine asks again later");
                    } else if self.config.exit_on_reboot {
                        tracing::info!(version = %job.version, "reboot hook ran; exiting for the restart");
                        return Ok(Some(RunOutcome::Rebooted {
                            version: job.version,
                        }));
                    }
                }
                // `perform::start` took the network actions.
                Action::Check { .. } | Action::Download { .. } | Action::UploadLog { .. } => {}
            }
        }
        Ok(None)
    }

    fn resolve(&mut self, name: String) {
        if self.discovery.is_none() {
            let made = match &self.config.dns {
                DnsSource::System => Discovery::system(&self.config.dns_settings),
                DnsSource::ResolvConf(path) => {
                    Discovery::from_resolv_conf(path, &self.config.dns_settings)
                }
                DnsSource::Nameserver(addr) => {
                    Discovery::with_nameserver(*addr, &self.config.dns_settings)
                }
            };
            match made {
                Ok(d) => self.discovery = Some(d),
                Err(e) => {
                    self.spawn(Kind::Resolve, async move {
                        Completion::Resolved {
                            name,
                            result: Err(e),
                        }
                    });
                    return;
                }
            }
        }
        let Some(discovery) = self.discovery.clone() else {
            return;
        };
        self.spawn(Kind::Resolve, async move {
            let result = discovery.lookup(&name).await;
            Completion::Resolved { name, result }
        });
    }

    /// Publishes the status to handles and the control socket; writes `status.json` when
    /// something a person would look at changed.
    async fn publish_status(&mut self) {
        let report = StatusReport::from_machine(
            &self.machine,
            self.wall_epoch,
            self.sign_in.as_ref().map(|s| s.user.clone()),
        );
        self.status_tx.send_if_modified(|old| {
            if *old == report {
                false
            } else {
                *old = report.clone();
                true
            }
        });
        let durable = report.durable();
        if self.last_written_status.as_ref() != Some(&durable) {
            let path = self.config.state_dir.join(STATUS_FILE);
            let text = serde_json::to_vec_pretty(&durable).unwrap_or_default();
            if let Err(e) = persist::write_atomic_async(path, text).await {
                tracing::warn!(error = %e, "cannot write status.json");
            }
            self.last_written_status = Some(durable);
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A per-device seed: identity plus the boot time, so a fleet powered on together spreads out.
fn seed_from(identity: &DeviceIdentity) -> u64 {
    let text = format!(
        "{:?}{:?}{}",
        identity.mac,
        identity.serial.as_ref().map(|s| s.as_str()),
        clock::unix_millis()
    );
    // FNV-1a: tiny, and the seed only has to differ between devices.
    crate::hash::fnv1a(text.as_bytes())
}
