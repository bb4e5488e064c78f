//! What the machine shows the outside: [`Phase`] (for traces and per-phase metrics), [`Status`]
//! (what `ucupdate-agent status` and the System Information screen show), [`Waiting`] (what a
//! quiet machine waits for, and why: the simulator's device timelines print it) and
//! [`MachineError`].

use std::fmt;

use thiserror::Error;
use ucupdate_protocol::{FileName, FirmwareVersion};

use super::event::FailureClass;
use super::time::Instant;
use crate::trust::{OfferRefusal, RefusalKind};

/// Where the machine is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Waiting for the next check.
    Idle,
    /// `Resolve` in flight.
    Discovering,
    /// `Check` in flight.
    Checking,
    /// `Download` in flight.
    Downloading,
    /// Waiting to retry after a failure.
    Backoff,
    /// An update is staged; waiting for the device to be idle long enough.
    WaitingIdle,
    /// `Install` in flight.
    Installing,
    /// `Reboot` emitted; nothing more happens until the next `Machine::new`.
    Rebooting,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Idle,
        Phase::Discovering,
        Phase::Checking,
        Phase::Downloading,
        Phase::Backoff,
        Phase::WaitingIdle,
        Phase::Installing,
        Phase::Rebooting,
    ];

    /// The position in [`Phase::ALL`]: a dense index for per-phase tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Discovering => "discovering",
            Phase::Checking => "checking",
            Phase::Downloading => "downloading",
            Phase::Backoff => "backoff",
            Phase::WaitingIdle => "waiting-idle",
            Phase::Installing => "installing",
            Phase::Rebooting => "rebooting",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the last check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    NoUpdate,
    /// The server offered this version (different from the current one).
    Offered(FirmwareVersion),
    /// External check with no signed-in user: the server's 401 ended the attempt.
    DeniedNoUser,
    Failed(FailureClass),
    /// No update server is known (never provisioned, no domain) or provisioning disabled it.
    NoServer(NoRoute),
    /// The offer broke a download rule (foreign file origin, declared size too large) and was
    /// dropped until the next regular check; nothing of it was downloaded.
    Refused(OfferRefusal),
    /// The offer's catalog did not vouch for its image (or there was none): nothing of it is
    /// installed, and it is not fetched again before the next regular check.
    Untrusted(RefusalKind),
}

impl CheckOutcome {
    /// The System-Information-style code of the last update status: `0x0` unless a catalog
    /// refused the update (see [`RefusalKind::code`]).
    pub fn code(&self) -> u32 {
        match self {
            CheckOutcome::Untrusted(kind) => kind.code(),
            _ => 0,
        }
    }

    /// The HTTP status of the check behind this outcome, where the outcome implies one (every
    /// outcome that read a reply had a 200; a denial was a 401). Failures keep only their class.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            CheckOutcome::NoUpdate
            | CheckOutcome::Offered(_)
            | CheckOutcome::Refused(_)
            | CheckOutcome::Untrusted(_) => Some(200),
            CheckOutcome::DeniedNoUser | CheckOutcome::Failed(FailureClass::Unauthorized) => {
                Some(401)
            }
            CheckOutcome::Failed(_) | CheckOutcome::NoServer(_) => None,
        }
    }

    /// `0x<code>/<http status>`, the phone's "Last Update Status" (`0x0/200`: success,
    /// `0x2/200`: certificate validation failed); `-` where the HTTP status is not known.
    pub fn update_status(&self) -> String {
        match self.http_status() {
            Some(http) => format!("0x{:x}/{http}", self.code()),
            None => format!("0x{:x}/-", self.code()),
        }
    }
}

impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckOutcome::NoUpdate => f.write_str("no update"),
            CheckOutcome::Offered(v) => write!(f, "update {v} offered"),
            CheckOutcome::DeniedNoUser => f.write_str("denied: no user signed in"),
            CheckOutcome::Failed(c) => write!(f, "failed: {c}"),
            CheckOutcome::NoServer(why) => write!(f, "no route to the update server: {why}"),
            CheckOutcome::Refused(r) => write!(f, "offer refused: {r}"),
            CheckOutcome::Untrusted(r) => write!(f, "update refused (0x{:x}): {r}", r.code()),
        }
    }
}

/// Why a check found no update server to go to. The machine tries again at the next regular
/// check: a sign-in may provision one meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoRoute {
    /// No server URL configured, never provisioned by a sign-in, and no DHCP or SIP domain to
    /// discover `ucupdates-r2.<domain>` in.
    Unconfigured,
    /// The last sign-in's provisioning turned the update service off.
    Disabled,
    /// The last sign-in provisioned the update service without an internal URL.
    NoInternalUrl,
    /// Outside the firewall, and no external URL is configured or provisioned.
    NoExternalUrl,
}

impl fmt::Display for NoRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoRoute::Unconfigured => {
                "no server URL configured, never provisioned by a sign-in, and no DHCP or SIP \
                 domain to discover ucupdates-r2.<domain> in"
            }
            NoRoute::Disabled => "the last sign-in's provisioning turned the update service off",
            NoRoute::NoInternalUrl => "the last sign-in provisioned no internal URL",
            NoRoute::NoExternalUrl => {
                "outside the firewall, and no external URL is configured or provisioned"
            }
        })
    }
}

/// What a machine waits for when it has nothing in its outbox ([`super::Machine::waiting`]):
/// the reason a device is quiet, with the instant it acts next on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// The next regular check (or a jittered one after a sign-in or check-now); `last` is how
    /// the previous check ended.
    NextCheck {
        at: Instant,
        last: Option<CheckOutcome>,
    },
    /// A retry after failures: of the check, or of the download of `download`.
    Retry {
        at: Instant,
        download: Option<FirmwareVersion>,
        failures: u32,
        error: Option<FailureClass>,
    },
    /// The answer to the work in flight (`what`); the watchdog gives up at `deadline`.
    Answer {
        what: &'static str,
        deadline: Instant,
    },
    /// The device to be idle before `version` is installed (`at`; `None`: a call is on).
    Idle {
        version: FirmwareVersion,
        at: Option<Instant>,
    },
    /// The restart after an install; a device still running at `at` missed it.
    Restart { at: Instant },
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::NextCheck {
                at,
                last: Some(last @ CheckOutcome::NoServer(_)),
            } => write!(f, "{last}; the next check at {at}"),
            Waiting::NextCheck {
                at,
                last: Some(last),
            } => {
                write!(f, "the next check at {at} (last check: {last})")
            }
            Waiting::NextCheck { at, last: None } => write!(f, "the next check at {at}"),
            Waiting::Retry {
                at,
                download,
                failures,
                error,
            } => {
                match download {
                    Some(v) => write!(f, "a retry of the download of {v} at {at}")?,
                    None => write!(f, "a retry of the check at {at}")?,
                }
                write!(f, " (failure {failures}")?;
                if let Some(e) = error {
                    write!(f, ": {e}")?;
                }
                f.write_str(")")
            }
            Waiting::Answer { what, deadline } => {
                write!(f, "the answer to the {what} (watchdog at {deadline})")
            }
            Waiting::Idle {
                version,
                at: Some(at),
            } => {
                write!(f, "the device to stay idle: install {version} at {at}")
            }
            Waiting::Idle { version, at: None } => {
                write!(
                    f,
                    "the call to end, then idle time before installing {version}"
                )
            }
            Waiting::Restart { at } => write!(
                f,
                "the restart after the install (still running at {at}: the reboot did not happen)"
            ),
        }
    }
}

impl super::Machine {
    /// What the machine waits for now. Meaningful once its actions are drained: with
    /// something in flight it is the answer to that.
    pub fn waiting(&self) -> Waiting {
        use super::{Retry, State};
        match &self.state {
            State::Idle { at } => Waiting::NextCheck {
                at: *at,
                last: self.last_outcome,
            },
            State::Backoff { at, retry } => Waiting::Retry {
                at: *at,
                download: match retry {
                    Retry::Check => None,
                    Retry::Download(update) => Some(update.version),
                },
                failures: self.failures,
                error: self.last_error,
            },
            State::Discovering { deadline } => Waiting::Answer {
                what: "DNS lookup",
                deadline: *deadline,
            },
            State::Checking { deadline, .. } => Waiting::Answer {
                what: "check",
                deadline: *deadline,
            },
            State::Downloading { deadline, .. } => Waiting::Answer {
                what: "download",
                deadline: *deadline,
            },
            State::Installing { deadline, .. } => Waiting::Answer {
                what: "install",
                deadline: *deadline,
            },
            State::WaitingIdle { staged, .. } => Waiting::Idle {
                version: staged.version,
                at: self.poll_timeout(),
            },
            State::Rebooting { at } => Waiting::Restart { at: *at },
        }
    }
}

/// A snapshot for `ucupdate-agent status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub phase: Phase,
    pub current_version: FirmwareVersion,
    pub fallback_version: Option<FirmwareVersion>,
    pub last_update_unix_ms: Option<u64>,
    /// The version being downloaded or waiting to be installed.
    pub target_version: Option<FirmwareVersion>,
    /// The check URL the next check uses (or the name it will look up first).
    pub server: Option<String>,
    pub signed_in: bool,
    /// Using the external URL (configured, or detected this cycle).
    pub external: bool,
    pub last_check: Option<Instant>,
    pub last_outcome: Option<CheckOutcome>,
    /// The most recent failure of any step (cleared by the next success of that step).
    pub last_error: Option<FailureClass>,
    pub consecutive_failures: u32,
    /// When the machine next acts on its own.
    pub next_deadline: Option<Instant>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        writeln!(f, "current version: {}", self.current_version)?;
        writeln!(
            f,
            "fallback version: {}",
            opt(self.fallback_version.map(|v| v.to_string()))
        )?;
        writeln!(
            f,
            "last update (unix ms): {}",
            opt(self.last_update_unix_ms.map(|t| t.to_string()))
        )?;
        writeln!(f, "phase: {}", self.phase)?;
        writeln!(
            f,
            "target version: {}",
            opt(self.target_version.map(|v| v.to_string()))
        )?;
        writeln!(f, "server: {}", opt(self.server.clone()))?;
        writeln!(
            f,
            "path: {}",
            if self.external {
                "external"
            } else {
                "internal"
            }
        )?;
        writeln!(f, "signed in: {}", self.signed_in)?;
        writeln!(
            f,
            "last check: {}",
            opt(self.last_check.map(|t| t.to_string()))
        )?;
        writeln!(
            f,
            "last outcome: {}",
            opt(self.last_outcome.map(|o| o.to_string()))
        )?;
        writeln!(
            f,
            "last error: {}",
            opt(self.last_error.map(|e| e.to_string()))
        )?;
        writeln!(f, "consecutive failures: {}", self.consecutive_failures)?;
        write!(
            f,
            "next deadline: {}",
            opt(self.next_deadline.map(|t| t.to_string()))
        )
    }
}

/// An event the machine cannot accept in its current phase. The machine is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MachineError {
    /// A completion for an action that is not in flight (a driver bug, or a late answer after
    /// the machine's watchdog gave up on it).
    #[error("unexpected {event} while {phase}")]
    Unexpected { event: &'static str, phase: Phase },
    /// A download completion names another file than the one requested.
    #[error("download of {got} completed, but {expected} was requested")]
    WrongFile { expected: FileName, got: FileName },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_sits_at_its_index_in_all() {
        for (i, phase) in Phase::ALL.iter().enumerate() {
            assert_eq!(phase.index(), i, "{phase}");
        }
    }
}
