//! The engine: one task that owns every virtual device and a virtual clock, plus one short task
//! per request in flight (never one per device).
//!
//! Each device is the agent's own [`Machine`] plus a few words of simulator state. The engine
//! keeps two queues ordered by virtual time: device wake-ups (each device's
//! `Machine::poll_timeout`, its next scripted event, its next user activity) and completions
//! of work the devices asked for. It always serves the earliest item, at that item's own virtual
//! instant, so what a device sees depends only on the seed and the server's answers:
//!
//! - a request's reply is stamped `issued + modelled latency` (the profile's link), not with the
//!   wall clock, and wall time is measured only for the latency histograms;
//! - a scenario phase that changes the server (publish, approve...) waits until every request
//!   issued before it has been answered: a barrier, so no request races an approval.
//!
//! `--time-scale X` paces virtual time against the wall clock (an item at virtual `t` is served
//! no earlier than `t / X` after the start); `max` serves items as fast as the server answers.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use ucupdate_agent::bridge;
use ucupdate_agent::machine::{
    Action, Event, FailureClass, Instant, Machine, MachineConfig, PersistedState, Phase,
    ProvisionedUrls,
};
use ucupdate_agent::net::{self, Credentials, DownloadSink, RequestShaping, RequestStats};
use ucupdate_protocol::{
    CheckRequest, FileName, FirmwareVersion, HttpUrl, InstalledModule, LogType, LogUpload,
    PathSegment, Provisioning,
};

use crate::admin::{synthetic_file, Admin, AdminOp};
use crate::clock;
use crate::faults::{FaultPlan, FaultProxies};
use crate::fleet::{splitmix64, unit, DeviceSpec, FleetSpec, Shard};
use crate::profile::{self, Profile};
use crate::report::{DeviceVerdict, Hist, Report, Verdicts, MAX_LISTED_FAILURES, REPORT_FORMAT};
use crate::scenario::{FinalVersion, Link, PhaseAction, Scenario};

/// How virtual time relates to wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeScale {
    /// Serve every item as soon as the previous one is done.
    Max,
    /// Virtual seconds per wall second.
    Factor(f64),
}

impl std::str::FromStr for TimeScale {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("max") {
            return Ok(TimeScale::Max);
        }
        match text.parse::<f64>() {
            Ok(f) if f > 0.0 && f.is_finite() => Ok(TimeScale::Factor(f)),
            _ => Err(format!("{text:?}: expected `max` or a positive number")),
        }
    }
}

impl std::fmt::Display for TimeScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeScale::Max => f.write_str("max"),
            TimeScale::Factor(x) => write!(f, "{x}"),
        }
    }
}

/// The server under test, as the devices reach it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The internal check handler (`.../RequestHandler/ucdevice.upx`).
    pub internal: HttpUrl,
    /// The external check handler, if the server has one.
    pub external: Option<HttpUrl>,
    /// What `ucupdates-r2.<domain>` resolves to for devices inside the firewall.
    pub addrs: Vec<IpAddr>,
    /// For reports: `embedded` or the URL.
    pub label: String,
}

/// Everything a run needs.
pub struct RunConfig {
    pub scenario: Scenario,
    pub fleet: FleetSpec,
    pub shard: Shard,
    pub time_scale: TimeScale,
    pub max_in_flight: usize,
    pub target: Target,
    /// Shared by every device (TLS config, timeouts, the discovery-name override).
    pub client: net::Client,
    pub admin: Option<Arc<dyn Admin>>,
    /// Global index of the device whose timeline to record.
    pub trace_device: Option<u64>,
    /// `DOMAIN` of the simulated users' accounts.
    pub user_domain: String,
    /// The secret simulated passwords derive from ([`DeviceSpec::password`]).
    pub password_secret: String,
    /// The DHCP domain the devices discover `ucupdates-r2.<domain>` in.
    pub dhcp_domain: String,
    /// Unix ms at virtual time zero (dates the "last update" on each device).
    pub start_unix_ms: u64,
    /// Keep a digest of each device's event sequence (for the reproducibility test).
    pub collect_digests: bool,
    /// Called about every 200 ms of wall time with a progress snapshot.
    pub progress: Option<ProgressSink>,
    /// Fault-injecting proxies in front of the server, when the scenario has `[faults]`.
    pub faults: Option<FaultRouting>,
}

/// Where faulted requests go: per upstream port, the proxies in front of that listener.
pub struct FaultRouting {
    pub plan: FaultPlan,
    /// Virtual ms after which no request is faulted.
    pub until_ms: u64,
    pub proxies: HashMap<u16, Arc<FaultProxies>>,
}

/// Receives progress snapshots (the CLI's live line).
pub type ProgressSink = Box<dyn FnMut(&Progress) + Send>;

/// A snapshot for the live progress line.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub virtual_ms: u64,
    pub duration_ms: u64,
    pub requests: u64,
    pub errors: u64,
    pub in_flight: usize,
    /// Devices per lifecycle phase, plus powered off.
    pub by_phase: Vec<(&'static str, u64)>,
}

/// What a run produced.
pub struct RunOutcome {
    pub report: Report,
    /// The traced device's timeline, one line per event or action.
    pub trace: Vec<String>,
    /// (global index, digest of the device's event sequence) when `collect_digests`.
    pub digests: Vec<(u64, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("scenario {scenario} changes the server's rules ({phase}) but no admin interface is available: run against the embedded server or give --admin URL")]
    NoAdmin {
        scenario: String,
        phase: &'static str,
    },
    #[error("server admin {op} failed: {reason}")]
    Admin { op: &'static str, reason: String },
}

const CHECK_LATENCY: Duration = Duration::from_millis(20);
const RESOLVE_LATENCY: Duration = Duration::from_millis(5);
const INSTALL_TIME: Duration = Duration::from_secs(30);
const REBOOT_TIME: Duration = Duration::from_secs(60);
const CURVE_BUCKETS: u64 = 240;
const NEVER: u64 = u64::MAX;

/// The phase index used for a device that is powered off (rebooting or not yet on).
const OFF: usize = Phase::ALL.len();

fn phase_index(p: Phase) -> usize {
    Phase::ALL.iter().position(|&q| q == p).unwrap_or(0)
}

fn phase_name(i: usize) -> &'static str {
    match Phase::ALL.get(i) {
        Some(Phase::Idle) => "idle",
        Some(Phase::Discovering) => "discovering",
        Some(Phase::Checking) => "checking",
        Some(Phase::Downloading) => "downloading",
        Some(Phase::Backoff) => "backoff",
        Some(Phase::WaitingIdle) => "waiting-idle",
        Some(Phase::Installing) => "installing",
        Some(Phase::Rebooting) => "rebooting",
        None => "off",
    }
}

/// Scripted device events (from scenario phases and reboots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    None,
    PowerOn,
    SignIn,
}

/// One virtual device: the agent's machine plus simulator bookkeeping.
struct Device {
    machine: Option<Machine>,
    /// The state a powered-off device comes back with.
    saved: Option<Box<PersistedState>>,
    /// The instant this device is queued for (`NEVER`: not queued).
    wake: u64,
    script_at: u64,
    script: Script,
    activity_at: u64,
    phase_since: u64,
    digest: u64,
    rng: u64,
    version: FirmwareVersion,
    /// Last time the device changed to its expected final version (`NEVER`: not on it).
    final_at: u64,
    /// Checks the server answered (an offer, "no update", or a 401 denial): a check that
    /// failed on the way is not a check the scenario can count on.
    checks: u32,
    denied: u32,
    boots: u16,
    phase: u8,
    in_flight: bool,
    user_on: bool,
    visited_target: bool,
    ever_on: bool,
    /// The device's version is counted in the rollout curve.
    counted: bool,
}

/// A finished piece of device work, waiting for its virtual instant.
struct Pending {
    slot: u32,
    boot: u16,
    event: Event,
}

/// What a request task sends back.
struct Completion {
    slot: u32,
    boot: u16,
    stamp: u64,
    endpoint: &'static str,
    outcome: String,
    error: Option<&'static str>,
    event: Event,
    stats: RequestStats,
    intended: tokio::time::Instant,
    sent: tokio::time::Instant,
    done: tokio::time::Instant,
}

struct Metrics {
    requests: BTreeMap<String, BTreeMap<String, u64>>,
    errors: BTreeMap<String, u64>,
    latency: BTreeMap<String, Hist>,
    latency_intended: BTreeMap<String, Hist>,
    tls: Hist,
    bytes: u64,
    phase_ms: [u64; OFF + 1],
    phase_count: [u64; OFF + 1],
    arrivals: Vec<u64>,
    curve_target: Vec<i64>,
    curve_initial: Vec<i64>,
    total_requests: u64,
    total_errors: u64,
    faults: BTreeMap<String, u64>,
}

pub struct Engine {
    cfg: RunConfig,
    profiles: Vec<Profile>,
    /// Each profile's link, by profile index.
    links: Vec<Link>,
    configs: [Arc<MachineConfig>; 2],
    devices: Vec<Device>,
    wakes: BinaryHeap<Reverse<(u64, u32)>>,
    pending: BinaryHeap<Reverse<(u64, u64)>>,
    pending_items: HashMap<u64, Pending>,
    seq: u64,
    in_flight: usize,
    tx: mpsc::UnboundedSender<Completion>,
    rx: mpsc::UnboundedReceiver<Completion>,
    metrics: Metrics,
    trace: Vec<String>,
    wall_start: tokio::time::Instant,
    duration_ms: u64,
    curve_bucket_ms: u64,
    sign_in_phase: bool,
    provisioning: Provisioning,
}

impl Engine {
    pub fn new(cfg: RunConfig) -> Engine {
        let profiles = profile::all();
        let duration_ms = cfg.scenario.duration.as_millis() as u64;
        let mut base = cfg.scenario.agent.clone();
        base.dhcp_domain = Some(cfg.dhcp_domain.clone());
        base.discovery_https = cfg.target.internal.https;
        base.discovery_port = cfg.target.internal.port;
        let mut external = base.clone();
        external.outside_firewall = Some(true);
        base.outside_firewall = Some(false);
        let slots = cfg.shard.len(cfg.fleet.devices) as usize;
        let (tx, rx) = mpsc::unbounded_channel();
        let provisioning = Provisioning {
            enabled: true,
            internal_url: Some(cfg.target.internal.to_string()),
            external_url: cfg.target.external.as_ref().map(|u| u.to_string()),
        };
        let sign_in_phase = cfg
            .scenario
            .phases
            .iter()
            .any(|p| matches!(p.action, PhaseAction::SignIn { .. }));
        let mut devices = Vec::with_capacity(slots);
        for slot in 0..slots {
            let spec =
                DeviceSpec::derive(cfg.shard.index + slot as u64 * cfg.shard.count, &cfg.fleet);
            devices.push(Device {
                machine: None,
                saved: None,
                wake: NEVER,
                script_at: NEVER,
                script: Script::None,
                activity_at: NEVER,
                phase_since: 0,
                digest: 0xcbf2_9ce4_8422_2325,
                rng: splitmix64(spec.seed ^ 0xac71),
                version: profiles[spec.profile as usize].initial,
                final_at: NEVER,
                checks: 0,
                denied: 0,
                boots: 0,
                phase: OFF as u8,
                in_flight: false,
                user_on: false,
                visited_target: false,
                ever_on: false,
                counted: false,
            });
        }
        let curve_bucket_ms = (duration_ms / CURVE_BUCKETS).max(1);
        let metrics = Metrics {
            requests: BTreeMap::new(),
            errors: BTreeMap::new(),
            latency: BTreeMap::new(),
            latency_intended: BTreeMap::new(),
            tls: Hist::new(),
            bytes: 0,
            phase_ms: [0; OFF + 1],
            phase_count: [0; OFF + 1],
            arrivals: vec![0; (duration_ms / 60_000 + 1) as usize],
            curve_target: vec![0; (duration_ms / curve_bucket_ms + 1) as usize],
            curve_initial: vec![0; (duration_ms / curve_bucket_ms + 1) as usize],
            total_requests: 0,
            total_errors: 0,
            faults: BTreeMap::new(),
        };
        let mut metrics = metrics;
        metrics.phase_count[OFF] = slots as u64;
        let links = profiles
            .iter()
            .map(|p| cfg.scenario.link_for(p.name))
            .collect();
        Engine {
            profiles,
            links,
            configs: [Arc::new(base), Arc::new(external)],
            devices,
            wakes: BinaryHeap::new(),
            pending: BinaryHeap::new(),
            pending_items: HashMap::new(),
            seq: 0,
            in_flight: 0,
            tx,
            rx,
            metrics,
            trace: Vec::new(),
            wall_start: clock::now(),
            duration_ms,
            curve_bucket_ms,
            sign_in_phase,
            provisioning,
            cfg,
        }
    }

    fn spec(&self, slot: u32) -> DeviceSpec {
        DeviceSpec::derive(
            self.cfg.shard.index + u64::from(slot) * self.cfg.shard.count,
            &self.cfg.fleet,
        )
    }

    fn profile_keys(&self) -> Vec<usize> {
        let mut used: Vec<usize> = self
            .cfg
            .fleet
            .mix
            .0
            .iter()
            .map(|&(p, _)| p as usize)
            .collect();
        used.sort_unstable();
        used.dedup();
        used
    }

    async fn admin(&self, op: AdminOp) -> Result<(), EngineError> {
        let name = op.name();
        let Some(admin) = &self.cfg.admin else {
            return Err(EngineError::NoAdmin {
                scenario: self.cfg.scenario.name.clone(),
                phase: name,
            });
        };
        admin
            .apply(op)
            .await
            .map_err(|reason| EngineError::Admin { op: name, reason })
    }

    fn files_for(
        &self,
        profile: &Profile,
        version: FirmwareVersion,
    ) -> Vec<(FileName, bytes::Bytes)> {
        let image_size = self.cfg.scenario.fleet.image_size;
        let catalog =
            FileName::new(&format!("{}.cat", profile.image.stem())).expect("catalog name");
        vec![
            (
                profile.image.clone(),
                synthetic_file(profile.name, version, image_size),
            ),
            (
                catalog,
                synthetic_file(&format!("{}.cat", profile.name), version, 512),
            ),
        ]
    }

    /// Puts every profile's initial version on the server as approved, and the test devices.
    async fn setup(&mut self) -> Result<(), EngineError> {
        let needs_admin = self.cfg.scenario.phases.iter().any(|p| p.action.is_admin());
        if self.cfg.admin.is_none() && !needs_admin {
            return Ok(());
        }
        for p in self.profile_keys() {
            let profile = self.profiles[p].clone();
            let files = self.files_for(&profile, profile.initial);
            self.admin(AdminOp::Publish {
                key: profile.key.clone(),
                version: profile.initial,
                files,
            })
            .await?;
            self.admin(AdminOp::Approve(profile.key.clone())).await?;
        }
        for slot in 0..self.devices.len() as u32 {
            let spec = self.spec(slot);
            if spec.test_device {
                self.admin(AdminOp::AddTestDevice(spec.mac())).await?;
            }
        }
        Ok(())
    }

    pub async fn run(mut self) -> Result<RunOutcome, EngineError> {
        self.setup().await?;
        self.wall_start = clock::now();
        let phases = self.cfg.scenario.phases.clone();
        let mut next_phase = 0usize;
        let mut last_progress = clock::now();
        loop {
            while let Ok(c) = self.rx.try_recv() {
                self.complete(c);
            }
            if self.cfg.progress.is_some()
                && clock::now().duration_since(last_progress) >= Duration::from_millis(200)
            {
                last_progress = clock::now();
                self.report_progress();
            }
            let next_item = self.next_item_time();
            let phase_at = phases.get(next_phase).map(|p| p.at.as_millis() as u64);
            if let Some(at) = phase_at.filter(|&at| next_item.is_none_or(|t| at <= t)) {
                if self.in_flight > 0 {
                    self.wait_completion(None).await;
                    continue;
                }
                if !self.pace_to(at).await {
                    continue;
                }
                let action = phases[next_phase].action.clone();
                self.run_phase(&action, at).await?;
                next_phase += 1;
                continue;
            }
            let Some(t) = next_item.filter(|&t| t <= self.duration_ms) else {
                if self.in_flight > 0 {
                    self.wait_completion(None).await;
                    continue;
                }
                break;
            };
            if self.in_flight >= self.cfg.max_in_flight.max(1) {
                self.wait_completion(None).await;
                continue;
            }
            if !self.pace_to(t).await {
                continue;
            }
            self.serve_next();
        }
        Ok(self.finish())
    }

    fn next_item_time(&mut self) -> Option<u64> {
        // Drop stale wake entries (the device was re-queued for another instant).
        while let Some(&Reverse((t, slot))) = self.wakes.peek() {
            if self.devices[slot as usize].wake == t {
                break;
            }
            self.wakes.pop();
        }
        let wake = self.wakes.peek().map(|Reverse((t, _))| *t);
        let pending = self.pending.peek().map(|Reverse((t, _))| *t);
        match (wake, pending) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Waits until virtual time `t` is due on the wall clock. Returns false when a completion
    /// arrived first (the caller re-evaluates what is next).
    async fn pace_to(&mut self, t: u64) -> bool {
        let TimeScale::Factor(scale) = self.cfg.time_scale else {
            return true;
        };
        let due = self.wall_start + Duration::from_secs_f64(t as f64 / 1000.0 / scale);
        if clock::now() >= due {
            return true;
        }
        self.wait_completion(Some(due)).await;
        clock::now() >= due
    }

    async fn wait_completion(&mut self, until: Option<tokio::time::Instant>) {
        let received = match until {
            Some(due) => tokio::select! {
                c = self.rx.recv() => c,
                _ = tokio::time::sleep_until(due) => None,
            },
            None => tokio::time::timeout(Duration::from_millis(200), self.rx.recv())
                .await
                .ok()
                .flatten(),
        };
        if let Some(c) = received {
            self.complete(c);
        }
    }

    fn intended_wall(&self, t: u64) -> tokio::time::Instant {
        match self.cfg.time_scale {
            TimeScale::Factor(scale) => {
                self.wall_start + Duration::from_secs_f64(t as f64 / 1000.0 / scale)
            }
            TimeScale::Max => clock::now(),
        }
    }

    fn serve_next(&mut self) {
        let pending_first = matches!((self.pending.peek(), self.wakes.peek()), (Some(Reverse((p, _))), w) if w.is_none_or(|Reverse((wt, _))| *p <= *wt));
        if pending_first {
            let Some(Reverse((t, seq))) = self.pending.pop() else {
                return;
            };
            let Some(item) = self.pending_items.remove(&seq) else {
                return;
            };
            let dev = &self.devices[item.slot as usize];
            if dev.boots != item.boot || dev.machine.is_none() {
                self.trace_line(
                    item.slot,
                    t,
                    format_args!("dropped after power loss: {}", item.event),
                );
                return;
            }
            self.feed(item.slot, item.event, t);
            self.after(item.slot, t);
        } else {
            let Some(Reverse((t, slot))) = self.wakes.pop() else {
                return;
            };
            self.devices[slot as usize].wake = NEVER;
            self.wake_device(slot, t);
            self.after(slot, t);
        }
    }

    fn defer(&mut self, slot: u32, at: u64, event: Event) {
        let boot = self.devices[slot as usize].boots;
        self.seq += 1;
        self.pending.push(Reverse((at, self.seq)));
        self.pending_items
            .insert(self.seq, Pending { slot, boot, event });
    }

    fn wake_device(&mut self, slot: u32, t: u64) {
        let dev = &mut self.devices[slot as usize];
        if dev.script_at <= t {
            let script = dev.script;
            dev.script = Script::None;
            dev.script_at = NEVER;
            self.run_script(slot, script, t);
        }
        let dev = &mut self.devices[slot as usize];
        if dev.activity_at <= t {
            dev.activity_at = NEVER;
            if dev.machine.is_some() {
                self.feed(slot, Event::UserActivity, t);
            }
        }
        let dev = &mut self.devices[slot as usize];
        if let Some(m) = dev.machine.as_mut() {
            if m.poll_timeout().is_some_and(|d| d.as_millis() <= t) && !dev.in_flight {
                m.handle_timeout(Instant::from_millis(t));
            }
        }
        self.drain(slot, t);
    }

    fn run_script(&mut self, slot: u32, script: Script, t: u64) {
        match script {
            Script::None => {}
            Script::PowerOn => self.power_on(slot, t),
            Script::SignIn => {
                let spec = self.spec(slot);
                let user = spec.user(&self.cfg.user_domain);
                let dev = &mut self.devices[slot as usize];
                dev.user_on = true;
                if dev.machine.is_some() {
                    let provisioning = Some(self.provisioning.clone());
                    self.feed(slot, Event::SignedIn { user, provisioning }, t);
                }
            }
        }
    }

    /// Schedules a scripted event; an earlier one still pending is carried out first.
    fn script(&mut self, slot: u32, script: Script, at: u64, now: u64) {
        let dev = &self.devices[slot as usize];
        if dev.script != Script::None {
            let old = dev.script;
            self.devices[slot as usize].script = Script::None;
            self.devices[slot as usize].script_at = NEVER;
            self.run_script(slot, old, now);
            self.drain(slot, now);
        }
        let dev = &mut self.devices[slot as usize];
        dev.script = script;
        dev.script_at = at;
        self.requeue(slot);
    }

    fn power_on(&mut self, slot: u32, t: u64) {
        let spec = self.spec(slot);
        let profile = &self.profiles[spec.profile as usize];
        let initial = profile.initial;
        let dev = &mut self.devices[slot as usize];
        let state = match dev.saved.take() {
            Some(s) => *s,
            None => {
                let mut s = PersistedState::new(initial);
                if spec.external {
                    // Outside the firewall the internal name does not resolve: these devices
                    // were provisioned at an earlier sign-in inside.
                    s.ever_signed_in = true;
                    s.provisioning =
                        Some(Box::new(ProvisionedUrls::from(self.provisioning.clone())));
                }
                s
            }
        };
        let config = Arc::clone(&self.configs[usize::from(spec.external)]);
        let seed = splitmix64(spec.seed ^ u64::from(dev.boots).wrapping_mul(0x51_7cc1_b727_220a));
        dev.machine = Some(Machine::new(config, state, seed, Instant::from_millis(t)));
        dev.ever_on = true;
        let boots = self.devices[slot as usize].boots;
        self.trace_line(slot, t, format_args!("power-on (boot {boots})"));
        self.feed(
            slot,
            Event::WallClock {
                unix_ms: self.cfg.start_unix_ms + t,
            },
            t,
        );
        let signs_in_now =
            self.devices[slot as usize].user_on || (spec.signed_in && !self.sign_in_phase);
        if signs_in_now {
            self.devices[slot as usize].user_on = true;
            let user = spec.user(&self.cfg.user_domain);
            let provisioning = Some(self.provisioning.clone());
            self.feed(slot, Event::SignedIn { user, provisioning }, t);
        }
        self.track_version(slot, t);
    }

    fn power_off(&mut self, slot: u32, t: u64) {
        let dev = &mut self.devices[slot as usize];
        if let Some(m) = dev.machine.take() {
            dev.saved = Some(Box::new(m.persisted().clone()));
        }
        dev.boots = dev.boots.wrapping_add(1);
        dev.activity_at = NEVER;
        self.set_phase(slot, OFF, t);
    }

    fn feed(&mut self, slot: u32, event: Event, t: u64) {
        self.trace_line(slot, t, format_args!("event  {event}"));
        match &event {
            Event::CheckDone(Ok(_)) => self.devices[slot as usize].checks += 1,
            Event::CheckDone(Err(FailureClass::Unauthorized)) => {
                let dev = &mut self.devices[slot as usize];
                dev.denied += 1;
                dev.checks += 1;
            }
            _ => {}
        }
        let dev = &mut self.devices[slot as usize];
        if matches!(
            event,
            Event::CheckDone(_) | Event::DownloadDone(_) | Event::LogUploaded(_)
        ) {
            dev.in_flight = false;
        }
        let Some(m) = dev.machine.as_mut() else {
            return;
        };
        if let Err(e) = m.handle(event, Instant::from_millis(t)) {
            *self
                .metrics
                .errors
                .entry("machine-unexpected-event".into())
                .or_default() += 1;
            self.trace_line(slot, t, format_args!("machine refused: {e}"));
        }
        self.drain(slot, t);
    }

    /// Performs everything the machine asked for.
    fn drain(&mut self, slot: u32, t: u64) {
        loop {
            let Some(m) = self.devices[slot as usize].machine.as_mut() else {
                return;
            };
            let Some(action) = m.poll_action() else { break };
            self.trace_line(slot, t, format_args!("action {action}"));
            self.perform(slot, action, t);
        }
    }

    fn perform(&mut self, slot: u32, action: Action, t: u64) {
        let spec = self.spec(slot);
        match action {
            // The machine keeps what it persisted; a power cut restores `persisted()`.
            Action::Persist(_) => {}
            Action::Resolve { .. } => {
                let answer = if spec.external {
                    Err(FailureClass::Dns)
                } else {
                    Ok(self.cfg.target.addrs.clone())
                };
                self.defer(
                    slot,
                    t + RESOLVE_LATENCY.as_millis() as u64,
                    Event::Resolved(answer),
                );
            }
            Action::Check {
                url,
                external,
                user,
                current_version,
            } => {
                let url = self.route(slot, url, t);
                let minute = (t / 60_000) as usize;
                if let Some(n) = self.metrics.arrivals.get_mut(minute) {
                    *n += 1;
                }
                let profile = &self.profiles[spec.profile as usize];
                let request = CheckRequest {
                    identity: spec.identity(profile),
                    modules: vec![InstalledModule {
                        update_type: profile.key.update_type.clone(),
                        file_name: profile.image.clone(),
                        version: current_version,
                        timestamp: None,
                    }],
                    user: user.clone(),
                };
                let creds = self.credentials(&spec, external, user.as_deref());
                let stamp = t
                    + (CHECK_LATENCY + self.links[spec.profile as usize].latency).as_millis()
                        as u64;
                let endpoint = if external {
                    "check-external"
                } else {
                    "check-internal"
                };
                let client = self.client(spec.profile);
                self.spawn(slot, t, stamp, endpoint, async move {
                    let (result, stats) =
                        net::check_with_stats(&client, &url, &request, creds.as_ref()).await;
                    let (outcome, error) = outcome_of(&result, &stats);
                    (bridge::check_event(result), stats, outcome, error)
                });
            }
            Action::Download {
                url,
                file,
                resume_from,
                external,
                ..
            } => {
                let url = self.route(slot, url, t);
                let size = file.size.unwrap_or(self.cfg.scenario.fleet.image_size);
                let link = self.links[spec.profile as usize];
                let bandwidth = link.bandwidth;
                let transfer = (size.saturating_sub(resume_from) * 1000)
                    .checked_div(bandwidth)
                    .unwrap_or(10);
                let stamp = t + link.latency.as_millis() as u64 + transfer.max(1);
                let user = self.devices[slot as usize]
                    .machine
                    .as_ref()
                    .and_then(|m| m.user().map(str::to_owned));
                let creds = self.credentials(&spec, external, user.as_deref());
                let client = self.client(spec.profile);
                self.spawn(slot, t, stamp, "download", async move {
                    let (result, stats) = net::download_to(
                        &client,
                        &url,
                        &file,
                        DownloadSink::Discard,
                        resume_from,
                        creds.as_ref(),
                    )
                    .await;
                    let (outcome, error) = outcome_of(&result, &stats);
                    (
                        bridge::download_event(&file.file_name, result),
                        stats,
                        outcome,
                        error,
                    )
                });
            }
            Action::Install { .. } => {
                self.defer(
                    slot,
                    t + INSTALL_TIME.as_millis() as u64,
                    Event::InstallDone(Ok(())),
                );
            }
            Action::Reboot => {
                self.power_off(slot, t);
                self.script(slot, Script::PowerOn, t + REBOOT_TIME.as_millis() as u64, t);
            }
            Action::UploadLog { url, external } => {
                let user = self.devices[slot as usize]
                    .machine
                    .as_ref()
                    .and_then(|m| m.user().map(str::to_owned));
                let creds = self.credentials(&spec, external, user.as_deref());
                let stamp = t
                    + (CHECK_LATENCY + self.links[spec.profile as usize].latency).as_millis()
                        as u64;
                let client = self.client(spec.profile);
                let device =
                    PathSegment::new(&spec.mac().to_string()).expect("MAC is a safe segment");
                let name = format!(
                    "UCPhone_{}-CELOG_1.clg",
                    spec.mac().to_string().replace('-', "")
                );
                let upload = FileName::new(&name)
                    .map_err(|e| e.to_string())
                    .and_then(|f| {
                        LogUpload::new(LogType::CeLog, f, device).map_err(|e| e.to_string())
                    });
                let Ok(upload) = upload else { return };
                let body = synthetic_file("celog", FirmwareVersion::new(0, 0, 0, 0), 2048);
                self.spawn(slot, t, stamp, "log-upload", async move {
                    let (result, stats) = net::check::upload_log_with_stats(
                        &client,
                        &url,
                        &upload,
                        body,
                        creds.as_ref(),
                    )
                    .await;
                    let result = result.map(|_status| ());
                    let (outcome, error) = outcome_of(&result, &stats);
                    (bridge::log_event(result), stats, outcome, error)
                });
            }
        }
    }

    /// Routes a request through a fault proxy when the device's dice say so (seeded, so the
    /// same devices meet the same faults in every run).
    fn route(&mut self, slot: u32, mut url: HttpUrl, t: u64) -> HttpUrl {
        let Some(faults) = &self.cfg.faults else {
            return url;
        };
        if t >= faults.until_ms {
            return url;
        }
        let dev = &mut self.devices[slot as usize];
        dev.rng = splitmix64(dev.rng ^ 0xfa17);
        let Some(kind) = faults.plan.pick(unit(dev.rng)) else {
            return url;
        };
        let Some(proxies) = faults.proxies.get(&url.port) else {
            return url;
        };
        url.port = proxies.addr(kind).port();
        *self
            .metrics
            .faults
            .entry(kind.as_str().to_owned())
            .or_default() += 1;
        self.trace_line(slot, t, format_args!("fault  {kind} on the next request"));
        url
    }

    fn credentials(
        &self,
        spec: &DeviceSpec,
        external: bool,
        user: Option<&str>,
    ) -> Option<Credentials> {
        let user = user.filter(|_| external)?;
        Some(Credentials::parse_user(
            user,
            &spec.password(&self.cfg.password_secret),
        ))
    }

    fn client(&self, profile: u8) -> net::Client {
        let link = self.links[profile as usize];
        if link.bandwidth == 0 && link.latency.is_zero() {
            return self.cfg.client.clone();
        }
        // The link is shaped in wall time: a virtual second lasts 1/scale wall seconds. At
        // `max` there is no wall time to shape; the modelled latency still stamps the reply.
        let scale = match self.cfg.time_scale {
            TimeScale::Factor(f) => f,
            TimeScale::Max => return self.cfg.client.clone(),
        };
        let rate = (link.bandwidth as f64 * scale) as u64;
        self.cfg.client.shaped(RequestShaping {
            bytes_per_sec: NonZeroU64::new(rate),
            added_latency: Duration::from_secs_f64(link.latency.as_secs_f64() / scale),
        })
    }

    fn spawn<F>(&mut self, slot: u32, t: u64, stamp: u64, endpoint: &'static str, work: F)
    where
        F: std::future::Future<Output = (Event, RequestStats, String, Option<&'static str>)>
            + Send
            + 'static,
    {
        let dev = &mut self.devices[slot as usize];
        dev.in_flight = true;
        let boot = dev.boots;
        self.in_flight += 1;
        let intended = self.intended_wall(t);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let sent = clock::now();
            let (event, stats, outcome, error) = work.await;
            let done = clock::now();
            // The engine outlives every request it started; a closed channel means it is gone.
            let _ = tx.send(Completion {
                slot,
                boot,
                stamp,
                endpoint,
                outcome,
                error,
                event,
                stats,
                intended,
                sent,
                done,
            });
        });
    }

    fn complete(&mut self, c: Completion) {
        self.in_flight -= 1;
        let m = &mut self.metrics;
        m.total_requests += 1;
        *m.requests
            .entry(c.endpoint.into())
            .or_default()
            .entry(c.outcome)
            .or_default() += 1;
        if let Some(class) = c.error {
            m.total_errors += 1;
            *m.errors.entry(class.into()).or_default() += 1;
        }
        let us = |d: Duration| d.as_micros().min(u128::from(u64::MAX)) as u64;
        m.latency
            .entry(c.endpoint.into())
            .or_default()
            .record(us(c.done.duration_since(c.sent)));
        m.latency_intended
            .entry(c.endpoint.into())
            .or_default()
            .record(us(c.done.saturating_duration_since(c.intended)));
        if let Some(tls) = c.stats.tls_handshake {
            m.tls.record(us(tls));
        }
        if c.endpoint == "download" {
            m.bytes += c.stats.bytes_received;
        }
        let dev = &mut self.devices[c.slot as usize];
        if dev.boots != c.boot {
            // The device lost power while the request was out; the reply reaches nobody.
            return;
        }
        self.seq += 1;
        self.pending.push(Reverse((c.stamp, self.seq)));
        self.pending_items.insert(
            self.seq,
            Pending {
                slot: c.slot,
                boot: c.boot,
                event: c.event,
            },
        );
    }

    /// Book-keeping after a device was served: phase time, version, activity, its next wake.
    fn after(&mut self, slot: u32, t: u64) {
        let phase = match &self.devices[slot as usize].machine {
            Some(m) => phase_index(m.phase()),
            None => OFF,
        };
        self.set_phase(slot, phase, t);
        self.track_version(slot, t);
        let mean = self.cfg.scenario.activity.mean_interval.as_millis() as f64;
        let busy_share = self.cfg.scenario.activity.busy_share;
        let dev = &mut self.devices[slot as usize];
        let waiting = phase == phase_index(Phase::WaitingIdle);
        if waiting && dev.activity_at == NEVER && mean > 0.0 {
            dev.rng = splitmix64(dev.rng);
            // Only busy devices have someone to touch them.
            if unit(splitmix64(dev.rng ^ 0xb05e)) < busy_share {
                let u = unit(dev.rng).max(1e-12);
                dev.activity_at = t + (-u.ln() * mean) as u64;
            }
        } else if !waiting {
            dev.activity_at = NEVER;
        }
        self.requeue(slot);
    }

    fn requeue(&mut self, slot: u32) {
        let dev = &mut self.devices[slot as usize];
        let machine_wake = match &dev.machine {
            Some(m) if !dev.in_flight => m.poll_timeout().map(|i| i.as_millis()).unwrap_or(NEVER),
            _ => NEVER,
        };
        let wake = machine_wake.min(dev.script_at).min(dev.activity_at);
        if wake != dev.wake {
            dev.wake = wake;
            if wake != NEVER {
                self.wakes.push(Reverse((wake, slot)));
            }
        }
    }

    fn set_phase(&mut self, slot: u32, phase: usize, t: u64) {
        let dev = &mut self.devices[slot as usize];
        let old = dev.phase as usize;
        if old == phase {
            return;
        }
        if dev.ever_on {
            self.metrics.phase_ms[old] += t.saturating_sub(dev.phase_since);
        }
        self.metrics.phase_count[old] -= 1;
        self.metrics.phase_count[phase] += 1;
        dev.phase = phase as u8;
        dev.phase_since = t;
    }

    fn expected_final(&self, spec: &DeviceSpec) -> FirmwareVersion {
        let profile = &self.profiles[spec.profile as usize];
        let publishes = self.cfg.scenario.publishes();
        match self.cfg.scenario.expect.final_version {
            FinalVersion::Target if publishes => profile.target(),
            FinalVersion::TargetIfUser if publishes && spec.signed_in => profile.target(),
            _ => profile.initial,
        }
    }

    fn track_version(&mut self, slot: u32, t: u64) {
        let Some(current) = self.devices[slot as usize]
            .machine
            .as_ref()
            .map(|m| m.persisted().current_version)
        else {
            return;
        };
        let spec = self.spec(slot);
        let profile = &self.profiles[spec.profile as usize];
        let (initial, target) = (profile.initial, profile.target());
        let expected = self.expected_final(&spec);
        let bucket = ((t / self.curve_bucket_ms) as usize).min(self.metrics.curve_target.len() - 1);
        let dev = &mut self.devices[slot as usize];
        if dev.counted && dev.version == current {
            return;
        }
        if dev.counted {
            self.metrics.curve_target[bucket] -= i64::from(dev.version == target);
            self.metrics.curve_initial[bucket] -= i64::from(dev.version == initial);
        }
        self.metrics.curve_target[bucket] += i64::from(current == target);
        self.metrics.curve_initial[bucket] += i64::from(current == initial);
        dev.counted = true;
        dev.version = current;
        dev.visited_target |= current == target;
        dev.final_at = if current == expected { t } else { NEVER };
    }

    async fn run_phase(&mut self, action: &PhaseAction, at: u64) -> Result<(), EngineError> {
        tracing::info!(phase = action.name(), at_ms = at, "scenario phase");
        if let Some(index) = self.cfg.trace_device {
            if (index % self.cfg.shard.count) == self.cfg.shard.index {
                let line = format!(
                    "{:>14}  {:<12} scenario phase {}",
                    vtime(at),
                    "-",
                    action.name()
                );
                self.trace.push(line);
            }
        }
        match action {
            PhaseAction::PowerOn { window } | PhaseAction::PowerCycle { window } => {
                let cycle = matches!(action, PhaseAction::PowerCycle { .. });
                let window = window.as_millis() as u64;
                for slot in 0..self.devices.len() as u32 {
                    let dev = &mut self.devices[slot as usize];
                    if cycle && dev.machine.is_none() {
                        continue;
                    }
                    dev.rng = splitmix64(dev.rng);
                    let offset = (unit(dev.rng) * window as f64) as u64;
                    if cycle {
                        self.power_off(slot, at);
                    }
                    self.script(slot, Script::PowerOn, at + offset, at);
                }
            }
            PhaseAction::SignIn { window } => {
                let window = window.as_millis() as u64;
                for slot in 0..self.devices.len() as u32 {
                    if !self.spec(slot).signed_in {
                        continue;
                    }
                    let dev = &mut self.devices[slot as usize];
                    dev.rng = splitmix64(dev.rng);
                    let offset = (unit(dev.rng) * window as f64) as u64;
                    self.script(slot, Script::SignIn, at + offset, at);
                }
            }
            PhaseAction::SignOut => {
                for slot in 0..self.devices.len() as u32 {
                    let dev = &mut self.devices[slot as usize];
                    if dev.user_on {
                        dev.user_on = false;
                        if dev.machine.is_some() {
                            self.feed(slot, Event::SignedOut, at);
                            self.after(slot, at);
                        }
                    }
                }
            }
            PhaseAction::Publish => {
                for p in self.profile_keys() {
                    let profile = self.profiles[p].clone();
                    let files = self.files_for(&profile, profile.target());
                    self.admin(AdminOp::Publish {
                        key: profile.key.clone(),
                        version: profile.target(),
                        files,
                    })
                    .await?;
                }
            }
            PhaseAction::Approve | PhaseAction::Restore | PhaseAction::Reset => {
                for p in self.profile_keys() {
                    let key = self.profiles[p].key.clone();
                    let op = match action {
                        PhaseAction::Approve => AdminOp::Approve(key),
                        PhaseAction::Restore => AdminOp::Restore(key),
                        _ => AdminOp::Reset(key),
                    };
                    self.admin(op).await?;
                }
            }
        }
        Ok(())
    }

    fn trace_line(&mut self, slot: u32, t: u64, text: std::fmt::Arguments<'_>) {
        let index = self.cfg.shard.index + u64::from(slot) * self.cfg.shard.count;
        let traced = self.cfg.trace_device == Some(index);
        if !traced && !self.cfg.collect_digests {
            return;
        }
        let phase = phase_name(self.devices[slot as usize].phase as usize);
        let line = format!("{:>14}  {phase:<12} {text}", vtime(t));
        if self.cfg.collect_digests {
            // The server's ports differ between runs; the sequence is what must not.
            let mut scrubbed =
                line.replace(&format!(":{}/", self.cfg.target.internal.port), ":<port>/");
            if let Some(external) = &self.cfg.target.external {
                scrubbed = scrubbed.replace(&format!(":{}/", external.port), ":<port-ext>/");
            }
            let dev = &mut self.devices[slot as usize];
            for b in scrubbed.bytes() {
                dev.digest = (dev.digest ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        if traced {
            self.trace.push(line);
        }
    }

    fn report_progress(&mut self) {
        let snapshot = Progress {
            virtual_ms: self
                .next_item_time()
                .unwrap_or(self.duration_ms)
                .min(self.duration_ms),
            duration_ms: self.duration_ms,
            requests: self.metrics.total_requests,
            errors: self.metrics.total_errors,
            in_flight: self.in_flight,
            by_phase: (0..=OFF)
                .map(|i| (phase_name(i), self.metrics.phase_count[i]))
                .collect(),
        };
        if let Some(progress) = self.cfg.progress.as_mut() {
            progress(&snapshot);
        }
    }

    fn finish(mut self) -> RunOutcome {
        let end = self.duration_ms;
        for slot in 0..self.devices.len() as u32 {
            let dev = &self.devices[slot as usize];
            let phase = dev.phase as usize;
            if dev.ever_on {
                self.metrics.phase_ms[phase] += end.saturating_sub(dev.phase_since);
            }
        }
        let reference = self
            .cfg
            .scenario
            .last_offer_change()
            .map(|d| d.as_millis() as u64);
        let expect = self.cfg.scenario.expect.clone();
        let mut verdicts = Verdicts::default();
        let mut convergence = Hist::new();
        let mut digests = Vec::new();
        for slot in 0..self.devices.len() as u32 {
            let spec = self.spec(slot);
            let profile = &self.profiles[spec.profile as usize];
            let expected = self.expected_final(&spec);
            let dev = &self.devices[slot as usize];
            let reached = dev
                .machine
                .as_ref()
                .map(|m| m.persisted().current_version)
                .or(dev.saved.as_ref().map(|s| s.current_version))
                .unwrap_or(dev.version);
            if self.cfg.collect_digests {
                digests.push((spec.index, dev.digest));
            }
            if let (Some(r), true) = (reference, dev.final_at != NEVER && reached == expected) {
                if dev.final_at > r {
                    convergence.record(dev.final_at - r);
                }
            }
            let reason = if !dev.ever_on {
                Some("never-powered-on".to_owned())
            } else if reached != expected {
                Some("wrong-version".to_owned())
            } else if dev.checks < expect.min_checks {
                Some(format!(
                    "too-few-answered-checks ({} < {})",
                    dev.checks, expect.min_checks
                ))
            } else if expect.visited_target && !dev.visited_target {
                Some("never-ran-target".to_owned())
            } else if expect.denied_without_user
                && spec.external
                && !spec.signed_in
                && dev.denied == 0
            {
                Some("not-denied".to_owned())
            } else if let (Some(within), Some(r)) = (expect.converge_within, reference) {
                let late = dev.final_at != NEVER
                    && dev.final_at > r
                    && dev.final_at - r > within.as_millis() as u64;
                late.then(|| "slow-convergence".to_owned())
            } else {
                None
            };
            match reason {
                None => verdicts.passed += 1,
                Some(reason) => {
                    verdicts.failed += 1;
                    let key = reason.split(' ').next().unwrap_or(&reason).to_owned();
                    *verdicts.by_reason.entry(key).or_default() += 1;
                    if verdicts.failures.len() < MAX_LISTED_FAILURES {
                        verdicts.failures.push(DeviceVerdict {
                            device: spec.index,
                            profile: profile.name.to_owned(),
                            expected: expected.to_string(),
                            reached: reached.to_string(),
                            reason,
                        });
                    }
                }
            }
        }
        let m = self.metrics;
        let phase_ms = (0..=OFF)
            .filter(|&i| m.phase_ms[i] > 0)
            .map(|i| (phase_name(i).to_owned(), m.phase_ms[i]))
            .collect();
        let scenario = &self.cfg.scenario;
        let report = Report {
            format: REPORT_FORMAT,
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            seed: self.cfg.fleet.seed,
            fleet_devices: self.cfg.fleet.devices,
            devices: self.devices.len() as u64,
            shards: vec![format!("{}/{}", self.cfg.shard.index, self.cfg.shard.count)],
            time_scale: self.cfg.time_scale.to_string(),
            server: self.cfg.target.label.clone(),
            virtual_duration_ms: self.duration_ms,
            wall_ms: clock::now().duration_since(self.wall_start).as_millis() as u64,
            requests: m.requests,
            errors: m.errors,
            latency_us: m.latency,
            latency_intended_us: m.latency_intended,
            tls_handshake_us: m.tls,
            bytes_downloaded: m.bytes,
            faults_injected: m.faults,
            phase_ms,
            convergence_ms: convergence,
            arrivals_per_minute: m.arrivals,
            curve_bucket_ms: self.curve_bucket_ms,
            curve_target_delta: m.curve_target,
            curve_initial_delta: m.curve_initial,
            verdicts,
            phases: scenario
                .phases
                .iter()
                .map(|p| (p.at.as_millis() as u64, p.action.name().to_owned()))
                .collect(),
        };
        RunOutcome {
            report,
            trace: self.trace,
            digests,
        }
    }
}

fn outcome_of<T>(
    result: &Result<T, net::NetError>,
    stats: &RequestStats,
) -> (String, Option<&'static str>) {
    match result {
        Ok(_) => (
            stats
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "ok".into()),
            None,
        ),
        Err(e) => {
            let class = e.class().as_str();
            let outcome = match e.status() {
                Some(status) => status.to_string(),
                None => format!("error:{class}"),
            };
            (outcome, Some(class))
        }
    }
}

fn vtime(ms: u64) -> String {
    let (d, rest) = (ms / 86_400_000, ms % 86_400_000);
    format!(
        "{d}d{:02}:{:02}:{:02}.{:03}",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_device_stays_small() {
        // The fleet-size target is 1 KiB of RSS per device; the inline part is what every
        // device pays even when its machine holds nothing on the heap.
        let device = std::mem::size_of::<Device>();
        let machine = std::mem::size_of::<Machine>();
        println!("Device {device} bytes (Machine {machine} bytes inline)");
        assert!(device <= 512, "Device is {device} bytes");
    }
}
