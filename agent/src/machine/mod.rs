//! The agent's update lifecycle as a sans-IO state machine: events and `now` go in, [`Action`]s
//! and the next deadline come out. No tokio, no sockets, no clock reads, no file I/O: the real
//! agent's driver and the fleet simulator (a million of these in one process) run this same
//! code. The shape follows quinn-proto: [`Machine::handle`], [`Machine::handle_timeout`],
//! [`Machine::poll_timeout`], [`Machine::poll_action`].
//!
//! ```text
//!   Machine::new ──► power-on: Idle(at = now + U[0, power_on_jitter])
//!                     (or WaitingIdle if the state holds an install marker)
//!
//!   ┌──────────────► Idle ◄──────────────────────────────────────────────┐
//!   │  deadline, or sign-in / check-now (+ jitter; while busy: "due")    │ NoUpdate, same
//!   │                  │                                                 │ version, denied
//!   │                  ▼                                                 │ (ext, no user),
//!   │   no server known ──► Idle(+poll)          need DNS? ──► Discovering│ no server,
//!   │                  │                                         │       │ download given
//!   │                  ▼                                         │ ok    │ up (+poll_interval
//!   │               Checking ◄───────────────────────────────────┘       │  ± poll_jitter/2)
//!   │      internal failed with dns/connect/timeout and an external URL  │
//!   │      is known: external check at once (outside the firewall)       │
//!   │                  │ Offer (version differs)                         │
//!   │                  ▼                                                 │
//!   │    Persist(partial) ► Downloading ─► next file … (image first) ────┘
//!   │                  │ every file verified
//!   │                  ▼
//!   │    Persist(install marker) ► WaitingIdle ◄── activity / call restarts the wait
//!   │                  │ idle for idle_before_restart
//!   │                  ▼
//!   │               Installing ── Ok ─► Persist(new current, fallback, date) ► Reboot ► Rebooting
//!   │                  │     still running after install_timeout, or check-now / sign-in ─► Idle(+power-on jitter)
//!   │                  └── Err / watchdog ─► Persist(marker dropped) ► Idle(+poll)
//!   │
//!   └── Backoff ◄── any failure of Discovering / Checking / Downloading (or their watchdog):
//!         │         retry after U[c/2, c], c = min(cap, base·2^(n-1))
//!         └──► retries the same step (check: from discovery if needed; download: resumes)
//! ```
//!
//! # Layout
//! - [`time`]: [`Instant`], machine time in milliseconds.
//! - [`config`]: [`MachineConfig`] (shared by `Arc`).
//! - [`event`] / [`action`]: what goes in and what comes out.
//! - [`persisted`]: [`PersistedState`] and its versioned JSON encoding.
//! - [`status`]: [`Phase`], [`Status`], [`MachineError`].
//! - `rng`: the seeded splitmix64 generator, jitter and back-off.
//! - `check`, `download`, `install`: the transitions of each stage; scheduling, back-off and
//!   the timeouts stay here, next to the states they move between.
//!
//! Wall time enters only through [`Event::WallClock`]; it dates the last update and nothing
//! else. The full rules (timing, back-off caps, persistence points) are in
//! `docs/AGENT-MACHINE.md`.

pub mod action;
mod check;
pub mod config;
mod download;
pub mod event;
mod install;
pub mod persisted;
mod rng;
pub mod status;
pub mod time;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::mem;
use std::sync::Arc;

use ucupdate_protocol::{FirmwareVersion, HttpUrl, OfferedFile, Provisioning};

pub use action::Action;
pub use config::{ConfigError, LogPolicy, MachineConfig};
pub use event::{
    CatalogVerdict, CheckFailure, DownloadFailure, DownloadedFile, Event, FailureClass,
};
pub use persisted::{
    InstallMarker, PartialDownload, PersistError, PersistedState, ProvisionedUrls, PERSIST_FORMAT,
};
pub use status::{CheckOutcome, MachineError, NoRoute, Phase, Status, Waiting};
pub use time::Instant;

use rng::Rng;

/// What started a check; each has its own jitter window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    SignIn,
    CheckNow,
}

/// What a back-off retries when it expires.
#[derive(Debug)]
enum Retry {
    /// The check, from discovery if the route needs it.
    Check,
    /// The current file of this update, resuming.
    Download(Box<Update>),
}

/// The phase with the data that only exists in it: the deadline of what is awaited and, from
/// an accepted offer to its install, the update itself. A download, its back-off, the wait for
/// idle and the install each own what they act on, so none of them can be entered without it.
#[derive(Debug)]
enum State {
    Idle {
        at: Instant,
    },
    Discovering {
        deadline: Instant,
    },
    Checking {
        external: bool,
        deadline: Instant,
    },
    Downloading {
        deadline: Instant,
        update: Box<Update>,
    },
    Backoff {
        at: Instant,
        retry: Retry,
    },
    /// `staged` is also `persisted.install` (the copy that goes to disk); this one is the
    /// copy the machine acts on, so an install cannot start without its files.
    WaitingIdle {
        since: Instant,
        staged: Box<InstallMarker>,
    },
    Installing {
        deadline: Instant,
        staged: Box<InstallMarker>,
    },
    /// `at`: if the device is still running then, the restart did not happen (see
    /// [`Machine::reboot_missed`]).
    Rebooting {
        at: Instant,
    },
}

/// An accepted offer being downloaded. Boxed inside its states: a machine that is not
/// downloading pays nothing for it.
#[derive(Debug)]
struct Update {
    version: FirmwareVersion,
    /// The base URL the files are fetched from, internal or external to match the check.
    base: HttpUrl,
    external: bool,
    /// Catalog first, then the image, then the rest in the offer's order.
    files: Vec<OfferedFile>,
    /// Index of the file being (or to be) downloaded.
    next: usize,
    resume_from: u64,
    /// Failed attempts at this update since the last file completed.
    attempts: u32,
    /// Where a resumed download continues once its catalog is verified again.
    resume_at: Option<(usize, u64)>,
    /// The image's SHA-1, when a legacy catalog lists it by SHA-1 only.
    image_sha1: Option<[u8; 20]>,
    /// The image's digest came from a verified catalog: a download that keeps failing it is an
    /// image the catalog does not vouch for, and the status says so.
    held_by_catalog: bool,
}

/// Where the next check goes.
enum Route {
    Check {
        url: HttpUrl,
        external: bool,
    },
    Resolve {
        name: String,
    },
    NoServer(NoRoute),
    /// A configured or provisioned URL that does not parse.
    BadUrl,
}

/// One device's update lifecycle. See the module docs for the diagram.
#[derive(Debug)]
pub struct Machine {
    config: Arc<MachineConfig>,
    persisted: PersistedState,
    state: State,
    /// The signed-in user (a SIP URI or `DOMAIN\user`); never a password.
    user: Option<Box<str>>,
    outbox: VecDeque<Action>,
    rng: Rng,
    /// Unix ms minus machine ms, from the last `WallClock`.
    wall_offset: Option<i64>,
    last_check: Option<Instant>,
    last_log: Option<Instant>,
    /// An `UploadLog` is in flight since then.
    log_started: Option<Instant>,
    failures: u32,
    last_outcome: Option<CheckOutcome>,
    last_error: Option<FailureClass>,
    /// A check was asked for while another operation was in flight.
    due: Option<Trigger>,
    /// The internal URL failed in a way that says "outside the firewall" this cycle.
    outside: bool,
    /// The discovery name resolved this cycle.
    discovered: bool,
    in_call: bool,
}

impl Machine {
    /// Power-on: a fresh machine from the last persisted state. With an install marker it
    /// waits for idle and installs (the marker is only written once every file is verified);
    /// otherwise the power-on check lands in `[now, now + power_on_jitter]`.
    pub fn new(
        config: Arc<MachineConfig>,
        state: PersistedState,
        seed: u64,
        now: Instant,
    ) -> Machine {
        let mut m = Machine {
            config,
            persisted: state,
            state: State::Idle { at: now },
            user: None,
            outbox: VecDeque::new(),
            rng: Rng::new(seed),
            wall_offset: None,
            last_check: None,
            last_log: None,
            log_started: None,
            failures: 0,
            last_outcome: None,
            last_error: None,
            due: None,
            outside: false,
            discovered: false,
            in_call: false,
        };
        // Records about the version already running are stale (the cut came after the
        // install was confirmed); dropping them keeps a re-install loop impossible.
        let current = m.persisted.current_version;
        let stale_install = m
            .persisted
            .install
            .as_ref()
            .is_some_and(|i| i.version == current);
        let stale_download = m
            .persisted
            .download
            .as_ref()
            .is_some_and(|d| d.version == current);
        if stale_install || stale_download {
            if stale_install {
                m.persisted.install = None;
            }
            if stale_download {
                m.persisted.download = None;
            }
            m.persist();
        }
        m.state = match m.persisted.install.clone() {
            Some(staged) => State::WaitingIdle { since: now, staged },
            None => State::Idle {
                at: now + m.rng.jitter(m.config.power_on_jitter),
            },
        };
        m
    }

    /// Feeds one event. An event the current phase cannot accept (a completion for nothing in
    /// flight) is refused with an error and changes nothing.
    pub fn handle(&mut self, event: Event, now: Instant) -> Result<(), MachineError> {
        let phase = self.phase();
        let unexpected = |event: &Event| MachineError::Unexpected {
            event: event.name(),
            phase,
        };
        match event {
            Event::WallClock { unix_ms } => {
                let unix = i64::try_from(unix_ms).unwrap_or(i64::MAX);
                let mono = i64::try_from(now.as_millis()).unwrap_or(i64::MAX);
                self.wall_offset = Some(unix.saturating_sub(mono));
            }
            Event::SignedIn { user, provisioning } => self.signed_in(now, user, provisioning),
            Event::SignedOut => self.user = None,
            Event::CheckNow => self.trigger(now, Trigger::CheckNow),
            Event::UserActivity => self.activity(now),
            Event::CallStarted => {
                self.in_call = true;
                self.activity(now);
            }
            Event::CallEnded => {
                self.in_call = false;
                self.activity(now);
            }
            Event::Resolved(result) => {
                if !matches!(self.state, State::Discovering { .. }) {
                    return Err(unexpected(&Event::Resolved(result)));
                }
                self.resolved(now, result);
            }
            Event::CheckDone(result) => {
                let State::Checking { external, .. } = self.state else {
                    return Err(unexpected(&Event::CheckDone(result)));
                };
                self.check_done(now, external, result);
            }
            Event::DownloadDone(result) => match self.take_state(now) {
                State::Downloading { deadline, update } => {
                    self.download_done(now, deadline, update, result)?
                }
                other => {
                    self.state = other;
                    return Err(unexpected(&Event::DownloadDone(result)));
                }
            },
            Event::InstallDone(result) => match self.take_state(now) {
                State::Installing { staged, .. } => self.install_done(now, staged.version, result),
                other => {
                    self.state = other;
                    return Err(unexpected(&Event::InstallDone(result)));
                }
            },
            Event::LogUploaded(result) => {
                if self.log_started.take().is_none() {
                    return Err(unexpected(&Event::LogUploaded(result)));
                }
                // A failed upload is retried at the next opportunity; it never holds up updates.
                if result.is_ok() {
                    self.last_log = Some(now);
                }
            }
        }
        Ok(())
    }

    /// Acts on every deadline at or before `now` (a due check can land at `now` itself); a
    /// no-op before the next deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Every transition either waits for an answer or moves its deadline past `now`, so
        // this ends in one or two rounds; the bound only guards against a future mistake.
        for _ in 0..8 {
            match self.poll_timeout() {
                Some(at) if at <= now => self.step_timeout(now),
                _ => return,
            }
        }
    }

    fn step_timeout(&mut self, now: Instant) {
        let idle_for = self.config.idle_before_restart;
        match self.take_state(now) {
            State::Idle { at } if at <= now => self.begin_cycle(now),
            State::Backoff { at, retry } if at <= now => match retry {
                Retry::Check => self.proceed_check(now),
                Retry::Download(update) => self.download_next(now, update),
            },
            // The watchdogs: an answer the driver never gave is a timeout, so no lost
            // completion can stop the machine from polling again.
            State::Discovering { deadline } if deadline <= now => {
                self.resolved(now, Err(FailureClass::Timeout))
            }
            State::Checking { external, deadline } if deadline <= now => {
                self.check_done(now, external, Err(FailureClass::Timeout))
            }
            State::Downloading { deadline, update } if deadline <= now => {
                let kept = update.resume_from;
                self.download_failed(now, FailureClass::Timeout, kept, update)
            }
            State::Installing { deadline, staged } if deadline <= now => {
                self.install_done(now, staged.version, Err(FailureClass::Timeout))
            }
            State::WaitingIdle { since, staged } if !self.in_call && since + idle_for <= now => {
                self.install(now, staged)
            }
            State::Rebooting { at } if at <= now => self.reboot_missed(now, None),
            not_due => self.state = not_due,
        }
    }

    /// Moves the state out for a transition that consumes it. The placeholder left behind is
    /// never observed: every caller sets the next state before it returns.
    fn take_state(&mut self, now: Instant) -> State {
        mem::replace(&mut self.state, State::Idle { at: now })
    }

    /// The next instant at which [`Machine::handle_timeout`] has work, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Idle { at } | State::Backoff { at, .. } => Some(*at),
            State::Discovering { deadline }
            | State::Checking { deadline, .. }
            | State::Downloading { deadline, .. }
            | State::Installing { deadline, .. } => Some(*deadline),
            State::WaitingIdle { .. } if self.in_call => None,
            State::WaitingIdle { since, .. } => Some(*since + self.config.idle_before_restart),
            State::Rebooting { at } => Some(*at),
        }
    }

    /// The next action to perform, in order. Call until `None` after every `handle*`.
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.outbox.pop_front();
        if action.is_none() && self.outbox.capacity() > 0 {
            // An idle fleet should not keep a few hundred bytes of queue per device.
            self.outbox = VecDeque::new();
        }
        action
    }

    pub fn phase(&self) -> Phase {
        match self.state {
            State::Idle { .. } => Phase::Idle,
            State::Discovering { .. } => Phase::Discovering,
            State::Checking { .. } => Phase::Checking,
            State::Downloading { .. } => Phase::Downloading,
            State::Backoff { .. } => Phase::Backoff,
            State::WaitingIdle { .. } => Phase::WaitingIdle,
            State::Installing { .. } => Phase::Installing,
            State::Rebooting { .. } => Phase::Rebooting,
        }
    }

    pub fn status(&self) -> Status {
        let server = match self.route() {
            Route::Check { url, .. } => Some(url.to_string()),
            Route::Resolve { name } => Some(format!("{name} (to be resolved)")),
            Route::NoServer(_) | Route::BadUrl => None,
        };
        let target_version = match &self.state {
            State::Downloading { update, .. }
            | State::Backoff {
                retry: Retry::Download(update),
                ..
            } => Some(update.version),
            State::WaitingIdle { staged, .. } | State::Installing { staged, .. } => {
                Some(staged.version)
            }
            _ => None,
        };
        Status {
            phase: self.phase(),
            current_version: self.persisted.current_version,
            fallback_version: self.persisted.fallback_version,
            last_update_unix_ms: self.persisted.last_update_unix_ms,
            target_version,
            server,
            signed_in: self.user.is_some(),
            external: self.wants_external(),
            last_check: self.last_check,
            last_outcome: self.last_outcome,
            last_error: self.last_error,
            consecutive_failures: self.failures,
            next_deadline: self.poll_timeout(),
        }
    }

    pub fn persisted(&self) -> &PersistedState {
        &self.persisted
    }

    pub fn config(&self) -> &Arc<MachineConfig> {
        &self.config
    }

    /// The signed-in user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    // ------------------------------------------------------------------------------------------
    // Scheduling
    // ------------------------------------------------------------------------------------------

    fn trigger(&mut self, now: Instant, trigger: Trigger) {
        let window = match trigger {
            Trigger::SignIn => self.config.sign_in_jitter,
            Trigger::CheckNow => self.config.check_now_jitter,
        };
        match &mut self.state {
            State::Idle { at } | State::Backoff { at, .. } => {
                let wanted = now + self.rng.jitter(window);
                *at = (*at).min(wanted);
            }
            // A request while rebooting shows the device is still up: the hook returned.
            State::Rebooting { .. } => self.reboot_missed(now, Some(trigger)),
            // Never a second request in flight: the check runs once the current work is done.
            _ => self.due = Some(trigger),
        }
    }

    /// The reboot hook returned and the device kept running: `install_timeout` passed, or a
    /// check-now or sign-in arrived meanwhile. The new version was made current before the
    /// hook ran, so the device carries on as if it had restarted: idle, with the check a
    /// power-on would make (after `power_on_jitter`, or the request's own jitter). It does not
    /// ask for the restart again: a hook that cannot restart the device would otherwise ask
    /// every `install_timeout` forever while no check ever ran.
    fn reboot_missed(&mut self, now: Instant, trigger: Option<Trigger>) {
        let window = match trigger {
            None => self.config.power_on_jitter,
            Some(Trigger::SignIn) => self.config.sign_in_jitter,
            Some(Trigger::CheckNow) => self.config.check_now_jitter,
        };
        self.due = None;
        self.state = State::Idle {
            at: now + self.rng.jitter(window),
        };
    }

    /// Back to waiting: the next regular check at `poll_interval ± poll_jitter/2`, or sooner
    /// when a sign-in or check-now arrived meanwhile.
    fn go_idle(&mut self, now: Instant) {
        self.failures = 0;
        let interval = self.config.poll_interval();
        let jitter = self.config.poll_jitter();
        let base = now + interval.saturating_sub(jitter / 2);
        let mut at = base + self.rng.jitter(jitter);
        if let Some(trigger) = self.due.take() {
            let window = match trigger {
                Trigger::SignIn => self.config.sign_in_jitter,
                Trigger::CheckNow => self.config.check_now_jitter,
            };
            at = at.min(now + self.rng.jitter(window));
        }
        self.state = State::Idle { at };
    }

    fn fail(&mut self, now: Instant, class: FailureClass, retry: Retry) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(class);
        if matches!(retry, Retry::Check) {
            self.last_outcome = Some(CheckOutcome::Failed(class));
        }
        let delay = rng::backoff(
            &mut self.rng,
            self.config.backoff_base(),
            self.config.backoff_cap,
            self.failures,
        );
        self.state = State::Backoff {
            at: now + delay,
            retry,
        };
    }

    fn persist(&mut self) {
        self.outbox
            .push_back(Action::Persist(self.persisted.clone()));
    }

    fn activity(&mut self, now: Instant) {
        if let State::WaitingIdle { since, .. } = &mut self.state {
            *since = now;
        }
    }

    fn signed_in(&mut self, now: Instant, user: String, provisioning: Option<Provisioning>) {
        self.user = Some(user.into_boxed_str());
        let mut changed = !self.persisted.ever_signed_in;
        self.persisted.ever_signed_in = true;
        if let Some(p) = provisioning {
            let urls = ProvisionedUrls::from(p);
            if self.persisted.provisioning.as_deref() != Some(&urls) {
                self.persisted.provisioning = Some(Box::new(urls));
                changed = true;
            }
        }
        if changed {
            self.persist();
        }
        self.trigger(now, Trigger::SignIn);
    }

    fn wall(&self, now: Instant) -> Option<u64> {
        let mono = i64::try_from(now.as_millis()).ok()?;
        u64::try_from(mono.checked_add(self.wall_offset?)?).ok()
    }
}
