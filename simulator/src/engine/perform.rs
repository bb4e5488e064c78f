//! The glue to the agent's performer ([`ucupdate_agent::perform`]): a virtual device's network
//! actions become the same calls a real device makes. The simulator adds only what is its own:
//! the fault route and the link shaping of a request, the virtual instant its answer is
//! stamped with, its metrics, and virtual answers for what needs no server (DNS, the install
//! hook, the reboot).

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

use ucupdate_agent::machine::{Action, Event, FailureClass};
use ucupdate_agent::net::{self, Credentials, NetError, RequestShaping};
use ucupdate_agent::perform::{self, Call, Context, Kind, Log, LogContents, Ticket, Work};
use ucupdate_protocol::{
    DeviceIdentity, FileName, FirmwareVersion, HttpUrl, InstalledModule, LogType,
};

use super::device::Script;
use super::metrics::Metric;
use super::queue::Pending;
use super::{Engine, TimeScale};
use crate::admin::synthetic_file;
use crate::clock;
use crate::fleet::{splitmix64, unit, DeviceSpec};

/// Server time of a check or log upload, on top of the link's latency.
const CHECK_LATENCY: Duration = Duration::from_millis(20);
const RESOLVE_LATENCY: Duration = Duration::from_millis(5);
const INSTALL_TIME: Duration = Duration::from_secs(30);
const REBOOT_TIME: Duration = Duration::from_secs(60);

/// What a request task sends back to the engine.
pub(super) struct Completion {
    slot: u32,
    boot: u16,
    ticket: Ticket,
    /// The virtual instant the answer reaches the device.
    stamp: u64,
    endpoint: &'static str,
    done: perform::Done,
    intended: tokio::time::Instant,
    sent: tokio::time::Instant,
    finished: tokio::time::Instant,
}

#[cfg(test)]
impl Completion {
    /// A completion of `kind` work for `slot`, stamped now.
    pub(super) fn for_test(slot: u32, kind: Kind, done: perform::Done) -> Completion {
        let now = clock::now();
        Completion {
            slot,
            boot: 0,
            ticket: perform::InFlight::default().start(kind),
            stamp: 0,
            endpoint: "test",
            done,
            intended: now,
            sent: now,
            finished: now,
        }
    }

    pub(super) fn slot(&self) -> u32 {
        self.slot
    }
}

/// A virtual device as the performer sees it.
struct SimDevice<'a> {
    engine: &'a Engine,
    spec: &'a DeviceSpec,
    user: Option<String>,
}

impl Context for SimDevice<'_> {
    fn client(&self) -> net::Client {
        self.engine.client(self.spec.profile)
    }

    fn identity(&self) -> DeviceIdentity {
        self.spec
            .identity(&self.engine.profiles[self.spec.profile as usize])
    }

    fn module(&self, version: FirmwareVersion) -> InstalledModule {
        let profile = &self.engine.profiles[self.spec.profile as usize];
        InstalledModule {
            update_type: profile.key.update_type.clone(),
            file_name: profile.image.clone(),
            version,
            timestamp: None,
        }
    }

    fn credentials(&self) -> Option<Credentials> {
        let password = self.spec.password(&self.engine.cfg.password_secret);
        self.user
            .as_deref()
            .map(|user| Credentials::parse_user(user, &password))
    }

    fn catalog_check(&self) -> perform::CatalogCheck {
        self.engine.cfg.catalog.clone()
    }

    fn dialect(&self) -> Option<std::sync::Arc<ucupdate_protocol::dialect::Dialect>> {
        self.engine.cfg.dialect.clone()
    }

    /// A virtual device has no disk: downloads are counted and hashed only (a catalog is
    /// kept in memory for its verification).
    fn staging(&self, _: FirmwareVersion, _: &FileName) -> Option<PathBuf> {
        None
    }

    /// One CELog, named as a Phone Edition names it.
    fn logs(&self) -> Vec<Log> {
        let mac = self.spec.mac().to_string().replace('-', "");
        let Ok(name) = FileName::new(&format!("UCPhone_{mac}-CELOG_1.clg")) else {
            return Vec::new();
        };
        let body = synthetic_file("celog", FirmwareVersion::new(0, 0, 0, 0), 2048);
        vec![Log {
            log_type: LogType::CeLog,
            name,
            contents: LogContents::Bytes(body),
        }]
    }
}

impl Engine {
    pub(super) fn perform(&mut self, slot: u32, mut action: Action, t: u64) {
        let spec = self.spec(slot);
        let link = self.links[spec.profile as usize];
        // Where and when the answer lands, decided before the request leaves.
        let (endpoint, stamp) = match &mut action {
            Action::Check { url, external, .. } => {
                *url = self.route(slot, url.clone(), t);
                self.metrics.record(Metric::CheckIssued { t });
                let endpoint = if *external {
                    "check-external"
                } else {
                    "check-internal"
                };
                (
                    endpoint,
                    t + (CHECK_LATENCY + link.latency).as_millis() as u64,
                )
            }
            Action::Download {
                url,
                file,
                resume_from,
                ..
            } => {
                *url = self.route(slot, url.clone(), t);
                let size = file.size.unwrap_or(self.cfg.scenario.fleet.image_size);
                let transfer = (size.saturating_sub(*resume_from) * 1000)
                    .checked_div(link.bandwidth)
                    .unwrap_or(10);
                (
                    "download",
                    t + link.latency.as_millis() as u64 + transfer.max(1),
                )
            }
            Action::UploadLog { .. } => (
                "log-upload",
                t + (CHECK_LATENCY + link.latency).as_millis() as u64,
            ),
            _ => ("", t),
        };
        let user = self.devices[slot as usize]
            .machine()
            .and_then(|m| m.user().map(str::to_owned));
        let device = SimDevice {
            engine: self,
            spec: &spec,
            user,
        };
        let action = match perform::start(action, &device) {
            Work::Request { kind, call } => {
                return self.spawn(slot, t, stamp, endpoint, kind, call)
            }
            Work::Local(action) => action,
        };
        match action {
            // The machine keeps what it persisted; a power cut restores `persisted()`.
            Action::Persist(_) => {}
            Action::Resolve { .. } => {
                // DNS is answered virtually: inside the firewall the name resolves to the
                // server, outside it does not.
                let answer = if spec.external {
                    Err(FailureClass::Dns)
                } else {
                    Ok(self.cfg.target.addrs.clone())
                };
                let at = t + RESOLVE_LATENCY.as_millis() as u64;
                self.defer_work(slot, Kind::Resolve, at, Event::Resolved(answer));
            }
            Action::Install { .. } => {
                let at = t + INSTALL_TIME.as_millis() as u64;
                self.defer_work(slot, Kind::Install, at, Event::InstallDone(Ok(())));
            }
            Action::Reboot => {
                self.power_off(slot, t);
                self.script(slot, Script::PowerOn, t + REBOOT_TIME.as_millis() as u64, t);
            }
            // `perform::start` took the network actions.
            Action::Check { .. } | Action::Download { .. } | Action::UploadLog { .. } => {}
        }
    }

    /// Answers work of `kind` with `event` at virtual `at`, tracked like a request.
    fn defer_work(&mut self, slot: u32, kind: Kind, at: u64, event: Event) {
        let dev = &mut self.devices[slot as usize];
        let ticket = dev.work.start(kind);
        let item = Pending {
            slot,
            boot: dev.boots,
            ticket: Some(ticket),
            event,
        };
        self.queues.defer(at, item);
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
        self.metrics.record(Metric::Fault {
            kind: kind.as_str(),
        });
        self.trace_line(slot, t, format_args!("fault  {kind} on the next request"));
        url
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

    /// Runs a request in its own short task (one per request in flight, never per device).
    fn spawn(
        &mut self,
        slot: u32,
        t: u64,
        stamp: u64,
        endpoint: &'static str,
        kind: Kind,
        call: Call,
    ) {
        let dev = &mut self.devices[slot as usize];
        let ticket = dev.work.start(kind);
        let boot = dev.boots;
        self.in_flight += 1;
        // A request already past when the shard joined the common clock was meant to leave
        // when the shard started, not before it existed.
        let intended = self
            .cfg
            .time_scale
            .intended_wall(self.wall_start, t)
            .max(self.joined);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let sent = clock::now();
            let done = call.await;
            let finished = clock::now();
            tx.send(Completion {
                slot,
                boot,
                ticket,
                stamp,
                endpoint,
                done,
                intended,
                sent,
                finished,
            });
        });
    }

    /// A request task finished: count it, and queue its answer for its virtual instant.
    pub(super) fn complete(&mut self, c: Completion) {
        self.in_flight -= 1;
        let (outcome, error) = outcome_of(c.done.error.as_ref(), c.done.stats.status);
        if let (Some(class), Some(e)) = (error, c.done.error.as_ref()) {
            self.metrics.first_error(class, || e.to_string());
        }
        self.metrics.record(Metric::Request {
            t: c.stamp,
            endpoint: c.endpoint,
            outcome,
            error,
            latency: c.finished.duration_since(c.sent),
            latency_intended: c.finished.saturating_duration_since(c.intended),
            tls_handshake: c.done.stats.tls_handshake,
            bytes_received: c.done.stats.bytes_received,
        });
        if self.devices[c.slot as usize].boots != c.boot {
            // The device lost power while the request was out; the reply reaches nobody.
            return;
        }
        let item = Pending {
            slot: c.slot,
            boot: c.boot,
            ticket: Some(c.ticket),
            event: c.done.event,
        };
        self.queues.defer(c.stamp, item);
    }
}

/// The report's outcome of a request (its status, or `error:<class>`) and its error class.
fn outcome_of(error: Option<&NetError>, status: Option<u16>) -> (String, Option<&'static str>) {
    match error {
        None => (
            status.map(|s| s.to_string()).unwrap_or_else(|| "ok".into()),
            None,
        ),
        Some(e) => {
            let class = e.class().as_str();
            let outcome = match e.status() {
                Some(status) => status.to_string(),
                None => format!("error:{class}"),
            };
            (outcome, Some(class))
        }
    }
}
