//! What the machine shows the outside: [`Phase`] (for traces and per-phase metrics), [`Status`]
//! (what `ucupdate-agent status` and the System Information screen show) and [`MachineError`].

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
    NoServer,
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
            CheckOutcome::Failed(_) | CheckOutcome::NoServer => None,
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
            CheckOutcome::NoServer => f.write_str("no update server known"),
            CheckOutcome::Refused(r) => write!(f, "offer refused: {r}"),
            CheckOutcome::Untrusted(r) => write!(f, "update refused (0x{:x}): {r}", r.code()),
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
