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
//!
//! Wall time enters only through [`Event::WallClock`]; it dates the last update and nothing
//! else. The full rules (timing, back-off caps, persistence points) are in
//! `docs/AGENT-MACHINE.md`.

pub mod action;
pub mod config;
pub mod event;
pub mod persisted;
mod rng;
pub mod status;
pub mod time;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use ucupdate_protocol::wire::{discovery_name, INTERNAL_HANDLER_PATH};
use ucupdate_protocol::{
    CheckResponse, FileKind, FirmwareVersion, HttpUrl, Offer, OfferedFile, Provisioning,
};

pub use action::Action;
pub use config::{ConfigError, LogPolicy, MachineConfig};
pub use event::{CheckFailure, DownloadFailure, DownloadedFile, Event, FailureClass};
pub use persisted::{
    InstallMarker, PartialDownload, PersistError, PersistedState, ProvisionedUrls, PERSIST_FORMAT,
};
pub use status::{CheckOutcome, MachineError, Phase, Status};
pub use time::Instant;

use rng::Rng;

/// What started a check; each has its own jitter window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    SignIn,
    CheckNow,
}

/// What a back-off retries when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The check, from discovery if the route needs it.
    Check,
    /// The current file of the update, resuming.
    Download,
}

/// The phase with the data that only exists in it (the deadline of what is awaited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    },
    Backoff {
        at: Instant,
        step: Step,
    },
    WaitingIdle {
        since: Instant,
    },
    Installing {
        deadline: Instant,
    },
    /// `at`: re-emit `Reboot` if the device is still running then.
    Rebooting {
        at: Instant,
    },
}

/// An accepted offer being downloaded. Boxed: an idle machine pays one pointer for it.
#[derive(Debug)]
struct Update {
    version: FirmwareVersion,
    /// The base URL the files are fetched from, internal or external to match the check.
    base: HttpUrl,
    external: bool,
    /// Image first, then the rest in the offer's order.
    files: Vec<OfferedFile>,
    /// Index of the file being (or to be) downloaded.
    next: usize,
    resume_from: u64,
    /// Failed attempts at this update since the last file completed.
    attempts: u32,
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
    NoServer,
    /// A configured or provisioned URL that does not parse.
    BadUrl,
}

/// One device's update lifecycle. See the module docs for the diagram.
#[derive(Debug)]
pub struct Machine {
    config: Arc<MachineConfig>,
    persisted: PersistedState,
    state: State,
    update: Option<Box<Update>>,
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
            update: None,
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
        if m.persisted.install.is_some() {
            m.state = State::WaitingIdle { since: now };
        } else {
            let jitter = m.rng.jitter(m.config.power_on_jitter);
            m.state = State::Idle { at: now + jitter };
        }
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
            Event::DownloadDone(result) => {
                if !matches!(self.state, State::Downloading { .. }) || self.update.is_none() {
                    return Err(unexpected(&Event::DownloadDone(result)));
                }
                self.download_done(now, result)?;
            }
            Event::InstallDone(result) => {
                if !matches!(self.state, State::Installing { .. }) {
                    return Err(unexpected(&Event::InstallDone(result)));
                }
                self.install_done(now, result);
            }
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
        match self.state {
            State::Idle { at } if at <= now => self.begin_cycle(now),
            State::Backoff { at, step } if at <= now => match step {
                Step::Check => self.proceed_check(now),
                Step::Download => self.download_next(now),
            },
            // The watchdogs: an answer the driver never gave is a timeout, so no lost
            // completion can stop the machine from polling again.
            State::Discovering { deadline } if deadline <= now => {
                self.resolved(now, Err(FailureClass::Timeout))
            }
            State::Checking { external, deadline } if deadline <= now => {
                self.check_done(now, external, Err(FailureClass::Timeout))
            }
            State::Downloading { deadline } if deadline <= now => {
                let kept = self.update.as_ref().map_or(0, |u| u.resume_from);
                self.download_failed(now, FailureClass::Timeout, kept)
            }
            State::Installing { deadline } if deadline <= now => {
                self.install_done(now, Err(FailureClass::Timeout))
            }
            State::WaitingIdle { since }
                if !self.in_call && since + self.config.idle_before_restart <= now =>
            {
                self.install(now)
            }
            // A reboot hook that did not reboot: ask again rather than sit forever.
            State::Rebooting { at } if at <= now => {
                self.outbox.push_back(Action::Reboot);
                self.state = State::Rebooting {
                    at: now + self.config.install_timeout,
                };
            }
            _ => {}
        }
    }

    /// The next instant at which [`Machine::handle_timeout`] has work, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle { at } | State::Backoff { at, .. } => Some(at),
            State::Discovering { deadline }
            | State::Checking { deadline, .. }
            | State::Downloading { deadline }
            | State::Installing { deadline } => Some(deadline),
            State::WaitingIdle { .. } if self.in_call => None,
            State::WaitingIdle { since } => Some(since + self.config.idle_before_restart),
            State::Rebooting { at } => Some(at),
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
            Route::NoServer | Route::BadUrl => None,
        };
        let target_version = self
            .update
            .as_ref()
            .map(|u| u.version)
            .or_else(|| self.persisted.install.as_ref().map(|i| i.version));
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
            State::Rebooting { .. } => {}
            // Never a second request in flight: the check runs once the current work is done.
            _ => self.due = Some(trigger),
        }
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

    fn fail(&mut self, now: Instant, class: FailureClass, step: Step) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(class);
        if step == Step::Check {
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
            step,
        };
    }

    fn persist(&mut self) {
        self.outbox
            .push_back(Action::Persist(self.persisted.clone()));
    }

    fn activity(&mut self, now: Instant) {
        if let State::WaitingIdle { since } = &mut self.state {
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

    // ------------------------------------------------------------------------------------------
    // Check
    // ------------------------------------------------------------------------------------------

    fn begin_cycle(&mut self, now: Instant) {
        // Each regular cycle re-learns where the device is and re-resolves the name, so a
        // device carried back inside the firewall returns to the internal URL.
        self.outside = false;
        self.discovered = false;
        self.proceed_check(now);
    }

    fn proceed_check(&mut self, now: Instant) {
        match self.route() {
            Route::Check { url, external } => {
                self.due = None;
                self.outbox.push_back(Action::Check {
                    url,
                    external,
                    user: self.user.as_deref().map(str::to_owned),
                    current_version: self.persisted.current_version,
                });
                let deadline = now + self.config.request_timeout;
                self.state = State::Checking { external, deadline };
            }
            Route::Resolve { name } => {
                self.outbox.push_back(Action::Resolve { name });
                self.state = State::Discovering {
                    deadline: now + self.config.request_timeout,
                };
            }
            Route::NoServer => {
                self.last_outcome = Some(CheckOutcome::NoServer);
                self.go_idle(now);
            }
            Route::BadUrl => self.fail(now, FailureClass::Protocol, Step::Check),
        }
    }

    fn wants_external(&self) -> bool {
        match self.config.outside_firewall {
            Some(outside) => outside,
            None => self.outside || self.internal_source().is_none(),
        }
    }

    /// The internal check URL, by precedence: configured, provisioned, discovered.
    /// `Err(name)` means it must be discovered under `name`.
    ///
    /// Discovery is for a device that was never provisioned: nobody ever signed in, or the
    /// sign-ins carried no update-service properties. In the second case the documentation is
    /// silent; going on with discovery beats never checking again.
    fn internal_source(&self) -> Option<Result<&str, String>> {
        let cfg = &self.config;
        if let Some(url) = &cfg.server_url {
            return Some(Ok(url));
        }
        match self.persisted.provisioning.as_deref() {
            Some(p) => p.internal_url.as_deref().filter(|_| p.enabled).map(Ok),
            None => cfg.discovery_domain().and_then(discovery_name).map(Err),
        }
    }

    fn external_source(&self) -> Option<&str> {
        if let Some(url) = &self.config.external_server_url {
            return Some(url);
        }
        let p = self.persisted.provisioning.as_deref()?;
        p.external_url.as_deref().filter(|_| p.enabled)
    }

    fn route(&self) -> Route {
        let parse = |text: &str, external| match text.parse::<HttpUrl>() {
            Ok(url) => Route::Check { url, external },
            Err(_) => Route::BadUrl,
        };
        if self.wants_external() {
            return match self.external_source() {
                Some(url) => parse(url, true),
                None => Route::NoServer,
            };
        }
        match self.internal_source() {
            None => Route::NoServer,
            Some(Ok(url)) => parse(url, false),
            Some(Err(name)) if self.discovered => {
                let scheme = if self.config.discovery_https {
                    "https"
                } else {
                    "http"
                };
                let port = self.config.discovery_port;
                parse(
                    &format!("{scheme}://{name}:{port}{INTERNAL_HANDLER_PATH}"),
                    false,
                )
            }
            Some(Err(name)) => Route::Resolve { name },
        }
    }

    /// A failure of the internal path (discovery or check): outside the firewall when it looks
    /// like one and an external URL exists, which is then tried at once; otherwise back off.
    fn internal_failed(&mut self, now: Instant, class: FailureClass) {
        let can_switch = self.config.outside_firewall.is_none()
            && class.suggests_outside()
            && !self.outside
            && self.external_source().is_some();
        if can_switch {
            self.outside = true;
            self.proceed_check(now);
        } else {
            self.fail(now, class, Step::Check);
        }
    }

    fn resolved(&mut self, now: Instant, result: Result<Vec<IpAddr>, FailureClass>) {
        match result {
            Ok(addresses) if !addresses.is_empty() => {
                self.discovered = true;
                self.proceed_check(now);
            }
            Ok(_) => self.internal_failed(now, FailureClass::Dns),
            Err(class) => self.internal_failed(now, class),
        }
    }

    fn check_done(
        &mut self,
        now: Instant,
        external: bool,
        result: Result<CheckResponse, CheckFailure>,
    ) {
        self.last_check = Some(now);
        match result {
            Err(class) if !external => self.internal_failed(now, class),
            Err(FailureClass::Unauthorized) if self.user.is_none() => {
                // The documented answer to an external device with nobody signed in: give up
                // until the next regular check instead of prompting or retrying.
                self.last_outcome = Some(CheckOutcome::DeniedNoUser);
                self.last_error = Some(FailureClass::Unauthorized);
                self.go_idle(now);
            }
            Err(class) => self.fail(now, class, Step::Check),
            Ok(response) => {
                self.failures = 0;
                self.last_error = None;
                self.maybe_upload_log(now);
                match response {
                    CheckResponse::Update(offer)
                        if offer.version != self.persisted.current_version =>
                    {
                        self.last_outcome = Some(CheckOutcome::Offered(offer.version));
                        self.start_update(now, offer, external);
                    }
                    CheckResponse::Update(_) | CheckResponse::NoUpdate => {
                        self.last_outcome = Some(CheckOutcome::NoUpdate);
                        if self.persisted.download.take().is_some() {
                            // The server withdrew what was half downloaded; let the driver
                            // delete it.
                            self.persist();
                        }
                        self.go_idle(now);
                    }
                }
            }
        }
    }

    fn maybe_upload_log(&mut self, now: Instant) {
        let in_flight = self
            .log_started
            .is_some_and(|t| now < t + self.config.request_timeout);
        let due = match self.config.log_upload {
            LogPolicy::Never => false,
            LogPolicy::AfterCheck => true,
            LogPolicy::Daily => self.last_log.is_none_or(|t| {
                now - t
                    >= self
                        .config
                        .poll_interval()
                        .saturating_sub(self.config.poll_jitter())
            }),
        };
        if in_flight || !due {
            return;
        }
        if let Route::Check { url, external } = self.route() {
            self.outbox.push_back(Action::UploadLog { url, external });
            self.log_started = Some(now);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Download
    // ------------------------------------------------------------------------------------------

    fn start_update(&mut self, now: Instant, offer: Offer, external: bool) {
        let Offer {
            base_url,
            external_base_url,
            version,
            mut files,
            ..
        } = offer;
        // Download from the side the check went through; a blank base on that side (the
        // server's settings not populated) falls back to the other.
        let (preferred, other) = if external {
            (
                (external_base_url.as_str(), true),
                (base_url.as_str(), false),
            )
        } else {
            (
                (base_url.as_str(), false),
                (external_base_url.as_str(), true),
            )
        };
        let chosen = [preferred, other]
            .into_iter()
            .find(|(text, _)| !text.trim().is_empty());
        let parsed =
            chosen.and_then(|(text, ext)| text.trim().parse::<HttpUrl>().ok().map(|u| (u, ext)));
        let Some((base, external)) = parsed.filter(|_| !files.is_empty()) else {
            self.fail(now, FailureClass::Protocol, Step::Check);
            return;
        };
        files.sort_by_key(|f| f.kind != FileKind::Image);
        // Resume only where the record and the offer agree on the file at that position;
        // anything else starts over (and `Install` re-verifies every file regardless).
        let (next, resume_from) = match self.persisted.download.as_deref() {
            Some(p) if p.version == version => {
                let index = usize::try_from(p.completed).unwrap_or(usize::MAX);
                match files.get(index) {
                    Some(f) if f.file_name == p.file => (index, p.bytes),
                    _ => (0, 0),
                }
            }
            _ => (0, 0),
        };
        self.update = Some(Box::new(Update {
            version,
            base,
            external,
            files,
            next,
            resume_from,
            attempts: 0,
        }));
        self.download_next(now);
    }

    fn download_next(&mut self, now: Instant) {
        let Some(u) = self.update.as_deref() else {
            self.proceed_check(now);
            return;
        };
        let Some(file) = u.files.get(u.next).cloned() else {
            self.staged(now);
            return;
        };
        let url = u.base.join(file.file_name.as_str());
        let record = PartialDownload {
            version: u.version,
            url: url.to_string(),
            file: file.file_name.clone(),
            completed: u32::try_from(u.next).unwrap_or(u32::MAX),
            bytes: u.resume_from,
        };
        let action = Action::Download {
            url,
            version: u.version,
            file,
            resume_from: u.resume_from,
            external: u.external,
        };
        if self.persisted.download.as_deref() != Some(&record) {
            self.persisted.download = Some(Box::new(record));
            self.persist();
        }
        self.outbox.push_back(action);
        self.state = State::Downloading {
            deadline: now + self.config.download_timeout,
        };
    }

    fn download_done(
        &mut self,
        now: Instant,
        result: Result<DownloadedFile, DownloadFailure>,
    ) -> Result<(), MachineError> {
        let Some(u) = self.update.as_deref_mut() else {
            return Err(MachineError::Unexpected {
                event: "download-done",
                phase: self.phase(),
            });
        };
        match result {
            Ok(done) => {
                let Some(expected) = u.files.get(u.next) else {
                    return Err(MachineError::Unexpected {
                        event: "download-done",
                        phase: Phase::Downloading,
                    });
                };
                if done.file_name != expected.file_name {
                    return Err(MachineError::WrongFile {
                        expected: expected.file_name.clone(),
                        got: done.file_name,
                    });
                }
                if expected.size.is_some_and(|size| size != done.size) {
                    self.download_failed(now, FailureClass::HashMismatch, 0);
                    return Ok(());
                }
                u.next += 1;
                u.resume_from = 0;
                u.attempts = 0;
                self.failures = 0;
                self.last_error = None;
                self.download_next(now);
            }
            Err(failure) => self.download_failed(now, failure.class, failure.bytes_kept),
        }
        Ok(())
    }

    fn download_failed(&mut self, now: Instant, class: FailureClass, bytes_kept: u64) {
        let Some(u) = self.update.as_deref_mut() else {
            self.fail(now, class, Step::Check);
            return;
        };
        u.attempts = u.attempts.saturating_add(1);
        // Bytes that failed verification are worthless; anything else is resumed.
        u.resume_from = if class == FailureClass::HashMismatch {
            0
        } else {
            bytes_kept
        };
        let (attempts, external, resume_from) = (u.attempts, u.external, u.resume_from);
        if let Some(p) = self.persisted.download.as_deref_mut() {
            if p.bytes != resume_from {
                p.bytes = resume_from;
                self.persist();
            }
        }
        if class == FailureClass::Unauthorized && external && self.user.is_none() {
            self.update = None;
            self.last_outcome = Some(CheckOutcome::DeniedNoUser);
            self.last_error = Some(class);
            self.go_idle(now);
        } else if attempts >= self.config.max_download_attempts.max(1) {
            // Give this offer up until the next regular check (which may resume it): a broken
            // file on the server must not be fetched every hour forever.
            self.update = None;
            self.last_error = Some(class);
            self.go_idle(now);
        } else {
            self.fail(now, class, Step::Download);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Install
    // ------------------------------------------------------------------------------------------

    /// Every file is verified: the marker goes to disk before anything may install it.
    fn staged(&mut self, now: Instant) {
        let Some(u) = self.update.take() else {
            return self.go_idle(now);
        };
        let Update { version, files, .. } = *u;
        self.persisted.download = None;
        self.persisted.install = Some(Box::new(InstallMarker { version, files }));
        self.persist();
        self.state = State::WaitingIdle { since: now };
    }

    fn install(&mut self, now: Instant) {
        let Some(marker) = self.persisted.install.as_deref() else {
            return self.go_idle(now);
        };
        self.outbox.push_back(Action::Install {
            version: marker.version,
            files: marker.files.clone(),
        });
        self.state = State::Installing {
            deadline: now + self.config.install_timeout,
        };
    }

    fn install_done(&mut self, now: Instant, result: Result<(), FailureClass>) {
        let marker = self.persisted.install.take();
        match (result, marker) {
            (Ok(()), Some(marker)) => {
                // Only now, with the install confirmed, does the new version become current.
                let previous = self.persisted.current_version;
                self.persisted.current_version = marker.version;
                self.persisted.fallback_version = Some(previous);
                self.persisted.last_update_unix_ms = self.wall(now);
                self.persisted.download = None;
                self.persist();
                self.outbox.push_back(Action::Reboot);
                self.state = State::Rebooting {
                    at: now + self.config.install_timeout,
                };
            }
            (Ok(()), None) => self.go_idle(now),
            (Err(class), _) => {
                // A local failure (hook, flash, staged bytes that no longer verify). Retrying
                // within minutes would re-download the image each time; the next regular check
                // starts the whole update again from verified bytes.
                self.persist();
                self.last_error = Some(class);
                self.go_idle(now);
            }
        }
    }

    fn wall(&self, now: Instant) -> Option<u64> {
        let mono = i64::try_from(now.as_millis()).ok()?;
        u64::try_from(mono.checked_add(self.wall_offset?)?).ok()
    }
}
