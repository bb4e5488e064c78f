//! The engine: one task that owns every virtual device and a virtual clock, plus one short task
//! per request in flight (never one per device).
//!
//! Each device is the agent's own [`Machine`](ucupdate_agent::machine::Machine) plus a few
//! words of simulator state, among them its work in flight per kind
//! ([`ucupdate_agent::perform::InFlight`]): while a request is out the machine's timers wait
//! for its answer, and an answer to a superseded start is dropped. The engine
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
//!
//! # Layout
//! - this file: the run's configuration and outcome, and the run loop (what to serve next,
//!   pacing, the barrier before a phase).
//! - `queue`: the virtual clock ([`TimeScale`]) and its two queues.
//! - `completions`: the way back from the request tasks, and when it wakes the engine.
//! - `device`: the virtual device (power, scripts, activity) and how it is fed and drained.
//! - `perform`: the glue to the agent's performer, [`ucupdate_agent::perform`]: fault route,
//!   link shaping, the virtual stamp of each answer, the virtual DNS and install.
//! - `metrics`: metrics as events to one aggregator.
//! - `phases`: scenario phases and the admin set-up of the server.
//! - `finish`: per-device verdicts and the report.

mod completions;
mod device;
mod finish;
mod metrics;
mod perform;
mod phases;
mod queue;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ucupdate_agent::machine::MachineConfig;
use ucupdate_agent::net;
use ucupdate_agent::perform::CatalogCheck;
use ucupdate_agent::trust::Origin;
use ucupdate_protocol::{HttpUrl, Provisioning};

use crate::admin::Admin;
use crate::clock;
use crate::faults::{FaultPlan, FaultProxies};
use crate::fleet::{DeviceSpec, FleetSpec, Shard};
use crate::profile::{self, Profile};
use crate::report::Report;
use crate::scenario::{Link, PhaseAction, Scenario};

use completions::{CompletionSender, Completions};
use device::Device;
use metrics::{Metric, Metrics};
pub use queue::TimeScale;
use queue::{Next, Queues};

/// At the in-flight cap the engine waits for this share of the requests out to come back
/// (at most [`CAP_BATCH_MAX`]) before it serves on: 256 in flight, 16 a batch.
const CAP_BATCH_SHARE: usize = 16;
const CAP_BATCH_MAX: usize = 64;

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
    /// How every device verifies the catalogs it downloads.
    pub catalog: CatalogCheck,
    /// The wire dialect every device checks in; `None`: the built-in one.
    pub dialect: Option<Arc<ucupdate_protocol::dialect::Dialect>>,
    pub scenario: Scenario,
    pub fleet: FleetSpec,
    pub shard: Shard,
    pub time_scale: TimeScale,
    pub max_in_flight: usize,
    pub target: Target,
    /// Shared by every device (TLS config, timeouts, the discovery-name override).
    pub client: net::Client,
    pub admin: Option<Arc<dyn Admin>>,
    /// The devices are the profiles' probe models ([`profile::probes`]): a run that
    /// administers a shared server changes no real model's rule.
    pub probe_models: bool,
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
    /// Pace against `start_unix_ms` itself (`--start-at`: the shards' common clock) rather than
    /// from this engine's own start: an engine that starts early waits, one that starts late
    /// serves what is already past at once, counted as late.
    pub common_clock: bool,
    /// This engine administers the server (the coordinator shard, or any run against its own
    /// embedded server); the others run their devices and only mark the admin phases.
    pub coordinator: bool,
    /// Keep a digest of each device's event sequence (for the reproducibility test).
    pub collect_digests: bool,
    /// Called about every 200 ms of wall time with a progress snapshot.
    pub progress: Option<ProgressSink>,
    /// Fault-injecting proxies in front of the server, when the scenario has `[faults]`.
    pub faults: Option<FaultRouting>,
    /// Set to the signal's name (`SIGINT`) to stop the fleet: the run ends early, drains the
    /// requests in flight and reports what it has, marked interrupted.
    pub stop: Option<StopSignal>,
    /// Thresholds that stop the run as soon as they fail on the data so far, once the first
    /// phase is over (`--abort-on-fail`).
    pub abort_on: Vec<crate::thresholds::Threshold>,
}

/// The CLI's signal handler says here which signal asked the run to stop.
pub type StopSignal = tokio::sync::watch::Receiver<Option<&'static str>>;

/// Where faulted requests go: per upstream port, the proxies in front of that listener.
pub struct FaultRouting {
    pub plan: FaultPlan,
    /// Virtual ms after which no request is faulted.
    pub until_ms: u64,
    pub proxies: HashMap<u16, Arc<FaultProxies>>,
}

/// Which snapshot a [`Progress`] is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stage {
    /// The fleet starts (virtual time zero, the server set up).
    #[default]
    Start,
    Running,
    /// The run is over (or stopped); the report follows.
    End,
}

/// Receives progress snapshots (the CLI's live line).
pub type ProgressSink = Box<dyn FnMut(&Progress) + Send>;

/// A snapshot for the live progress line. The first is taken when the fleet starts (virtual
/// time zero, after the server's set-up), the last when it ends.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub stage: Stage,
    pub virtual_ms: u64,
    pub duration_ms: u64,
    pub requests: u64,
    pub errors: u64,
    pub in_flight: usize,
    /// Devices per lifecycle phase, plus powered off.
    pub by_phase: Vec<(&'static str, u64)>,
    /// The scenario phase last run (`power-on`, `approve`...).
    pub phase: &'static str,
    /// p99 so far of the checks' service time (the slower of the internal and external), µs.
    pub check_p99_us: u64,
    /// p99 and max so far of how far behind its schedule the engine served, wall µs.
    pub lag_p99_us: u64,
    pub lag_max_us: u64,
    pub time_scale: TimeScale,
    /// Requests by endpoint and outcome so far.
    pub outcomes: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
    /// Per endpoint, service time so far as cumulative counts at [`DURATION_BOUNDS_US`], plus
    /// the count and the sum in µs (a Prometheus histogram).
    pub durations: Vec<(String, Vec<u64>, u64, f64)>,
    /// Devices that have run the target version since, and still do.
    pub on_target: i64,
}

/// The bucket bounds of the live request-duration histogram, µs.
pub const DURATION_BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

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
    #[error("--start-at is {late_ms} ms past: at time scale {scale} the whole scenario is over (start the shard before the run's end, or pick a later instant)")]
    StartPast { late_ms: i64, scale: f64 },
    #[error("server admin {op} failed: {reason}")]
    Admin { op: &'static str, reason: String },
    /// A setup error, not a fleet result: every verdict would fail for one reason the run
    /// cannot fix, so the run stops at the end of its first phase instead of running on.
    #[error("the server refused every check before the first phase ended ({done} checks: {outcomes}): is {server} the Device Update check URL?")]
    ChecksRefused {
        done: u64,
        outcomes: String,
        server: String,
    },
}

pub struct Engine {
    cfg: RunConfig,
    profiles: Vec<Profile>,
    /// Each profile's link, by profile index.
    links: Vec<Link>,
    /// The machine config of devices inside and outside the firewall.
    configs: [Arc<MachineConfig>; 2],
    devices: Vec<Device>,
    /// Per device, the digest of its event sequence; empty unless `collect_digests` (every
    /// device of a 10M fleet would pay 8 bytes for a test's feature).
    digests: Vec<u64>,
    queues: Queues,
    /// Requests in flight, over all devices.
    in_flight: usize,
    tx: CompletionSender,
    rx: Completions,
    metrics: Metrics,
    trace: Vec<String>,
    /// What the traced device was last said to wait for (its timeline's last `wait` line).
    traced_wait: String,
    /// The wall instant of virtual zero (in the future while an early shard waits).
    wall_start: tokio::time::Instant,
    /// When this engine began serving (its wall time is measured from here).
    joined: tokio::time::Instant,
    /// Where this engine started against the common clock (`--start-at`).
    anchor: Option<crate::start::Anchor>,
    /// Virtual ms already past when this engine joined the common clock.
    joined_virtual_ms: u64,
    /// Items (wake-ups, answers, phases) due before this engine joined, served at once.
    late_events: u64,
    /// One bit per device: it had an item served late.
    late_devices: Vec<u64>,
    duration_ms: u64,
    sign_in_phase: bool,
    provisioning: Provisioning,
    /// The virtual instant last served (where an interrupted run ends).
    served_ms: u64,
    /// The scenario phase last run.
    phase_name: &'static str,
    /// The signal that stopped the run, if one did.
    interrupted: Option<&'static str>,
    /// The threshold that stopped the run, if one did.
    aborted: Option<crate::thresholds::ThresholdResult>,
}

impl Engine {
    pub fn new(cfg: RunConfig) -> Engine {
        let profiles = if cfg.probe_models {
            profile::probes()
        } else {
            profile::all()
        };
        let duration_ms = cfg.scenario.duration.as_millis() as u64;
        let mut base = cfg.scenario.agent.clone();
        base.dhcp_domain = Some(cfg.dhcp_domain.clone());
        base.discovery_https = cfg.target.internal.https;
        base.discovery_port = cfg.target.internal.port;
        // The discovery name stands for the target, whose offers name it by its own address:
        // its origins are the check's own for the download rules (`trust::check_offer`).
        base.offer_policy.allowed_file_origins =
            [Some(&cfg.target.internal), cfg.target.external.as_ref()]
                .into_iter()
                .flatten()
                .map(Origin::of)
                .collect();
        base.offer_policy.require_catalog = !matches!(cfg.catalog, CatalogCheck::Skip);
        let mut external = base.clone();
        external.outside_firewall = Some(true);
        base.outside_firewall = Some(false);
        let slots = cfg.shard.len(cfg.fleet.devices) as usize;
        let (tx, rx) = Completions::new();
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
        let devices = (0..slots)
            .map(|slot| {
                let index = cfg.shard.index + slot as u64 * cfg.shard.count;
                let spec = DeviceSpec::derive(index, &cfg.fleet);
                Device::new(&spec)
            })
            .collect();
        let links = profiles
            .iter()
            .map(|p| cfg.scenario.link_for(p.name))
            .collect();
        Engine {
            profiles,
            links,
            configs: [Arc::new(base), Arc::new(external)],
            devices,
            digests: if cfg.collect_digests {
                vec![ucupdate_agent::hash::FNV_OFFSET; slots]
            } else {
                Vec::new()
            },
            queues: Queues::default(),
            in_flight: 0,
            tx,
            rx,
            metrics: Metrics::new(duration_ms, slots as u64),
            trace: Vec::new(),
            traced_wait: String::new(),
            wall_start: clock::now(),
            joined: clock::now(),
            anchor: None,
            joined_virtual_ms: 0,
            late_events: 0,
            late_devices: vec![0; slots.div_ceil(64)],
            duration_ms,
            sign_in_phase,
            provisioning,
            served_ms: 0,
            phase_name: "-",
            interrupted: None,
            aborted: None,
            cfg,
        }
    }

    pub async fn run(mut self) -> Result<RunOutcome, EngineError> {
        self.setup().await?;
        self.start_clock()?;
        let phases = self.cfg.scenario.phases.clone();
        let mut next_phase = 0usize;
        let mut last_progress = clock::now();
        let mut last_abort_check = clock::now();
        let first_phase_end = phases.first().map_or(0, |p| match p.action {
            PhaseAction::PowerOn { window } | PhaseAction::PowerCycle { window } => {
                (p.at + window).as_millis() as u64
            }
            _ => p.at.as_millis() as u64,
        });
        // Until the server has answered one check: when the first phase is over. Not with
        // injected faults, whose whole point may be a server that refuses everything for a
        // while (the pre-flight's connection still finds a server that is not there).
        let mut refusal_watch =
            phases
                .first()
                .filter(|_| self.cfg.faults.is_none())
                .map(|p| match p.action {
                    PhaseAction::PowerOn { window } | PhaseAction::PowerCycle { window } => {
                        (p.at + window).as_millis() as u64
                    }
                    _ => p.at.as_millis() as u64,
                });
        self.report_progress(Stage::Start);
        loop {
            while let Some(c) = self.rx.try_next() {
                self.complete(c);
            }
            if let Some(signal) = self.cfg.stop.as_ref().and_then(|s| *s.borrow()) {
                // Stop the fleet: serve nothing more, let what is out come back (each request
                // is bounded by its timeouts), report what there is.
                self.interrupted = Some(signal);
                return Ok(self.drain_and_finish().await);
            }
            if self.served_ms > first_phase_end
                && clock::now().duration_since(last_abort_check) >= Duration::from_millis(200)
            {
                last_abort_check = clock::now();
                if self.threshold_failed() {
                    return Ok(self.drain_and_finish().await);
                }
            }
            if self.cfg.progress.is_some()
                && clock::now().duration_since(last_progress) >= Duration::from_millis(200)
            {
                last_progress = clock::now();
                self.report_progress(Stage::Running);
            }
            let next_item = self.next_item_time();
            let phase_at = phases.get(next_phase).map(|p| p.at.as_millis() as u64);
            // The virtual clock is about to pass the end of the first phase (the run's end is
            // checked after the loop).
            let horizon = match (next_item, phase_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if refusal_watch.is_some_and(|end| horizon.is_some_and(|t| t > end)) {
                if self.metrics.checks_answered > 0 {
                    refusal_watch = None;
                } else if self.metrics.checks_done > 0 && self.in_flight == 0 {
                    // At `max` virtual time runs ahead of the answers: decide only when no
                    // request that could still be answered is out.
                    return Err(self.checks_refused());
                }
            }
            if let Some(at) = phase_at.filter(|&at| next_item.is_none_or(|t| at <= t)) {
                // A barrier: no request issued before a phase races the change it makes.
                if self.in_flight > 0 {
                    self.wait_completion(None, self.in_flight).await;
                    continue;
                }
                if !self.pace_to(at).await {
                    continue;
                }
                // Every request before the phase is in: a sure point to check the thresholds.
                if at > first_phase_end && self.threshold_failed() {
                    return Ok(self.drain_and_finish().await);
                }
                let action = phases[next_phase].action.clone();
                self.served_ms = self.served_ms.max(at);
                self.phase_name = action.name();
                self.run_phase(&action, at).await?;
                next_phase += 1;
                continue;
            }
            let Some(t) = next_item.filter(|&t| t <= self.duration_ms) else {
                if self.in_flight > 0 {
                    self.wait_completion(None, self.in_flight).await;
                    continue;
                }
                break;
            };
            if self.in_flight >= self.cfg.max_in_flight.max(1) {
                // A batch, not one: the engine then sleeps through most completions.
                let batch = (self.in_flight / CAP_BATCH_SHARE).clamp(1, CAP_BATCH_MAX);
                self.wait_completion(None, batch).await;
                continue;
            }
            if !self.pace_to(t).await {
                continue;
            }
            self.served_ms = self.served_ms.max(t);
            self.serve_next();
        }
        self.served_ms = self.duration_ms;
        if refusal_watch.is_some()
            && self.metrics.checks_answered == 0
            && self.metrics.checks_done > 0
        {
            return Err(self.checks_refused());
        }
        Ok(self.finish())
    }

    /// Maps virtual zero to the wall clock: this engine's own start, or with the common clock
    /// `start_unix_ms`, measured against this machine's clock.
    fn start_clock(&mut self) -> Result<(), EngineError> {
        self.joined = clock::now();
        self.wall_start = self.joined;
        if !self.cfg.common_clock {
            return Ok(());
        }
        let anchor = crate::start::Anchor::measure(self.cfg.start_unix_ms, clock::unix_millis());
        self.anchor = Some(anchor);
        if let TimeScale::Factor(scale) = self.cfg.time_scale {
            self.joined_virtual_ms = anchor.joined_virtual_ms(scale);
            if self.joined_virtual_ms >= self.duration_ms {
                return Err(EngineError::StartPast {
                    late_ms: anchor.offset_ms,
                    scale,
                });
            }
            self.wall_start = anchor.origin(self.joined).ok_or(EngineError::StartPast {
                late_ms: anchor.offset_ms,
                scale,
            })?;
        }
        Ok(())
    }

    /// Whether a `--abort-on-fail` threshold fails on the data so far (it is kept as the
    /// reason).
    fn threshold_failed(&mut self) -> bool {
        let metrics = &self.metrics;
        self.aborted = self
            .cfg
            .abort_on
            .iter()
            .find_map(|t| t.failing_now(metrics));
        self.aborted.is_some()
    }

    /// The end of a run stopped early: what is in flight comes back (each request bounded by
    /// its timeouts), then the report of what there is.
    async fn drain_and_finish(mut self) -> RunOutcome {
        while self.in_flight > 0 {
            self.wait_completion(None, self.in_flight).await;
        }
        self.finish()
    }

    /// The pre-flight's verdict on a server that took no check: what the checks got instead.
    fn checks_refused(&self) -> EngineError {
        let outcomes: Vec<String> = self
            .metrics
            .requests
            .iter()
            .filter(|(endpoint, _)| endpoint.starts_with("check"))
            .flat_map(|(endpoint, by)| by.iter().map(move |(o, n)| format!("{endpoint} {o}={n}")))
            .collect();
        EngineError::ChecksRefused {
            done: self.metrics.checks_done,
            outcomes: outcomes.join(", "),
            server: self.cfg.target.label.clone(),
        }
    }

    fn next_item_time(&mut self) -> Option<u64> {
        let devices = &self.devices;
        self.queues.next_time(|slot| devices[slot as usize].wake)
    }

    /// Waits until virtual time `t` is due on the wall clock. Returns false when a completion
    /// arrived first (the caller re-evaluates what is next).
    /// An item served late is lag: how far the engine ran behind its schedule (an engine that
    /// cannot keep up stretches the scenario and, in the intended latency, makes the server
    /// look slow).
    async fn pace_to(&mut self, t: u64) -> bool {
        if t < self.joined_virtual_ms {
            // Already past when this shard joined the common clock: served at once, and
            // counted as late rather than as lag (the engine did not fall behind).
            self.late_events += 1;
            return true;
        }
        let Some(due) = self.cfg.time_scale.due(self.wall_start, t) else {
            return true;
        };
        if clock::now() < due {
            self.wait_completion(Some(due), 1).await;
        }
        let now = clock::now();
        if now < due {
            return false;
        }
        self.metrics.record(Metric::Lag {
            behind: now.duration_since(due),
        });
        true
    }

    /// Waits until `want` completions (at most the requests in flight) have arrived, at most
    /// until `until` (or 200 ms), or until a stop arrives; then takes what has arrived.
    async fn wait_completion(&mut self, until: Option<tokio::time::Instant>, want: usize) {
        let due = until.unwrap_or_else(|| clock::now() + Duration::from_millis(200));
        let stop = async {
            match self.cfg.stop.as_mut() {
                Some(s) if s.borrow().is_none() => {
                    let _ = s.changed().await;
                }
                // Stopping already, or nobody can stop the run: only a completion or the
                // deadline ends the wait.
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = self.rx.arrived(want) => {}
            _ = tokio::time::sleep_until(due) => {}
            _ = stop => {}
        }
        while let Some(c) = self.rx.try_next() {
            self.complete(c);
        }
    }

    /// Serves the earliest item: finished work is fed to its device, a wake-up runs the
    /// device's scripts, activity and timers.
    fn serve_next(&mut self) {
        match self.queues.pop() {
            None => {}
            Some(Next::Pending(t, item)) => {
                let dev = &mut self.devices[item.slot as usize];
                if dev.boots != item.boot || dev.machine().is_none() {
                    self.trace_line(
                        item.slot,
                        t,
                        format_args!("dropped after power loss: {}", item.event),
                    );
                    return;
                }
                if let Some(ticket) = item.ticket {
                    if !dev.work.finish(ticket) {
                        self.trace_line(
                            item.slot,
                            t,
                            format_args!("dropped, superseded: {}", item.event),
                        );
                        return;
                    }
                }
                self.feed(item.slot, item.event, t);
                self.after(item.slot, t);
            }
            Some(Next::Wake(t, slot)) => {
                if t < self.joined_virtual_ms {
                    self.late_devices[slot as usize / 64] |= 1 << (slot % 64);
                }
                self.devices[slot as usize].wake = queue::NEVER;
                self.wake_device(slot, t);
                self.after(slot, t);
            }
        }
    }
}
