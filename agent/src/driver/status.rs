//! [`StatusReport`]: what `ucupdate-agent status` prints, the device's System Information screen
//! (current version and the date of the last update) plus the server, the last check, its
//! outcome and the last error. The running driver publishes it on a watch channel (the control
//! socket answers `status` from it) and writes it to `status.json`; with the daemon down the
//! CLI reads that file and the state file instead.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{STATE_FILE, STATUS_FILE};
use crate::machine::{Machine, PersistedState};

/// A snapshot of the agent for people. Times are Unix milliseconds (UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// From the running daemon (`false`: read from the state dir).
    pub running: bool,
    pub current_version: String,
    pub fallback_version: Option<String>,
    /// When the last update was installed (the screen's "date of the last update").
    pub last_update_unix_ms: Option<u64>,
    /// `idle`, `downloading`, `waiting-idle`... (`stopped` when the daemon is down).
    pub phase: String,
    /// The version being downloaded or waiting for the install.
    pub target_version: Option<String>,
    /// The check URL (or the discovery name still to resolve).
    pub server: Option<String>,
    /// `internal` or `external`.
    pub path: String,
    /// The signed-in user (never a password).
    pub user: Option<String>,
    pub last_check_unix_ms: Option<u64>,
    /// `no update`, `update X offered`, `denied: no user signed in`, `failed: tls`,
    /// `update refused (0x2): catalog signer is not trusted`...
    pub last_outcome: Option<String>,
    /// The System Information screen's "Last Update Status": `0x<code>/<http status>`.
    #[serde(default)]
    pub last_update_status: Option<String>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub next_check_unix_ms: Option<u64>,
}

impl StatusReport {
    pub(super) fn starting() -> StatusReport {
        StatusReport {
            phase: "starting".into(),
            ..StatusReport::default()
        }
    }

    pub(super) fn from_machine(
        machine: &Machine,
        wall_epoch: u64,
        user: Option<String>,
    ) -> StatusReport {
        let s = machine.status();
        let wall = |at: crate::machine::Instant| wall_epoch.saturating_add(at.as_millis());
        StatusReport {
            running: true,
            current_version: s.current_version.to_string(),
            fallback_version: s.fallback_version.map(|v| v.to_string()),
            last_update_unix_ms: s.last_update_unix_ms,
            phase: s.phase.to_string(),
            target_version: s.target_version.map(|v| v.to_string()),
            server: s.server,
            path: if s.external { "external" } else { "internal" }.into(),
            user,
            last_check_unix_ms: s.last_check.map(wall),
            last_outcome: s.last_outcome.map(|o| o.to_string()),
            last_update_status: s.last_outcome.map(|o| o.update_status()),
            last_error: s.last_error.map(|e| e.to_string()),
            consecutive_failures: s.consecutive_failures,
            next_check_unix_ms: s.next_deadline.map(wall),
        }
    }

    /// What goes to `status.json`.
    pub(super) fn durable(&self) -> StatusReport {
        StatusReport {
            running: false,
            ..self.clone()
        }
    }

    /// Applies the state file's fields, which win over a possibly older `status.json`.
    fn with_state(mut self, state: &PersistedState) -> StatusReport {
        self.current_version = state.current_version.to_string();
        self.fallback_version = state.fallback_version.map(|v| v.to_string());
        self.last_update_unix_ms = state.last_update_unix_ms;
        self
    }
}

/// `2026-11-25 08:00:00 UTC`.
pub fn format_unix_ms(ms: u64) -> String {
    format!("{} UTC", ucupdate_protocol::audit::format_time(ms / 1000))
}

/// The status from the state dir alone (daemon not running): `status.json` for the last check,
/// `state.json` for the versions and the update date. `None` if neither exists.
pub fn read_offline_status(state_dir: &Path) -> Result<Option<StatusReport>, String> {
    let status: Option<StatusReport> = match std::fs::read(state_dir.join(STATUS_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).ok(),
        Err(_) => None,
    };
    let state = match crate::persist::read_state(&state_dir.join(STATE_FILE)) {
        Ok(Some(bytes)) => Some(
            PersistedState::decode(&String::from_utf8_lossy(&bytes))
                .map_err(|e| format!("{}: {e}", state_dir.join(STATE_FILE).display()))?,
        ),
        Ok(None) => None,
        Err(e) => return Err(e.to_string()),
    };
    let report = match (status, state) {
        (None, None) => return Ok(None),
        (Some(s), None) => s,
        (s, Some(state)) => s.unwrap_or_default().with_state(&state),
    };
    Ok(Some(StatusReport {
        running: false,
        phase: "stopped".into(),
        next_check_unix_ms: None,
        ..report
    }))
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let time = |t: Option<u64>| t.map_or_else(|| "never".into(), format_unix_ms);
        // The four lines of the phone's System Information screen, named as it names them
        // (Last Update Request: the last check sent to the update server), then the rest.
        writeln!(f, "Version:             {}", self.current_version)?;
        writeln!(f, "Last Update:         {}", time(self.last_update_unix_ms))?;
        writeln!(f, "Last Update Request: {}", time(self.last_check_unix_ms))?;
        writeln!(f, "Last Update Status:  {}", opt(&self.last_update_status))?;
        writeln!(f, "Fallback version:    {}", opt(&self.fallback_version))?;
        writeln!(
            f,
            "Update server:       {} ({})",
            opt(&self.server),
            self.path
        )?;
        writeln!(f, "Last outcome:        {}", opt(&self.last_outcome))?;
        writeln!(
            f,
            "Last error:          {}{}",
            opt(&self.last_error),
            if self.consecutive_failures > 0 {
                format!(" ({} in a row)", self.consecutive_failures)
            } else {
                String::new()
            }
        )?;
        writeln!(f, "Signed-in user:      {}", opt(&self.user))?;
        if let Some(target) = &self.target_version {
            writeln!(f, "Pending update:      {target}")?;
        }
        if self.running {
            writeln!(f, "Agent:               running, {}", self.phase)?;
            write!(f, "Next check:          {}", time(self.next_check_unix_ms))
        } else {
            write!(
                f,
                "Agent:               not running (from the state directory)"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_status_prefers_the_state_file_for_versions() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_offline_status(dir.path()).unwrap(), None);
        let old = StatusReport {
            current_version: "1.0.0.0".into(),
            last_check_unix_ms: Some(1_700_000_000_000),
            last_outcome: Some("no update".into()),
            ..StatusReport::default()
        };
        std::fs::write(
            dir.path().join(STATUS_FILE),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        let mut state = PersistedState::new("2.0.0.0".parse().unwrap());
        state.last_update_unix_ms = Some(1_764_057_600_000);
        std::fs::write(dir.path().join(STATE_FILE), state.encode()).unwrap();
        let report = read_offline_status(dir.path()).unwrap().unwrap();
        assert_eq!(report.current_version, "2.0.0.0");
        assert_eq!(report.last_outcome.as_deref(), Some("no update"));
        let text = report.to_string();
        // The System Information screen's four lines first, named as the phone names them.
        let first: Vec<&str> = text.lines().take(4).collect();
        assert_eq!(
            first,
            [
                "Version:             2.0.0.0",
                "Last Update:         2025-11-25 08:00:00 UTC",
                "Last Update Request: 2023-11-14 22:13:20 UTC",
                "Last Update Status:  -",
            ],
            "{text}"
        );
        assert!(text.contains("not running"), "{text}");
    }
}
