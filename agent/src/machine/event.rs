//! What goes into the machine: [`Event`]s from the driver, and the simple failure classes the
//! net, DNS and device modules map their own errors onto. No network error type crosses this
//! line, so the simulator can fail a request without building one.

use std::fmt;
use std::net::IpAddr;

use ucupdate_protocol::{CheckResponse, FileName, Provisioning, Sha256Digest};

use crate::trust::{ListedDigest, Refusal};

/// What kind of thing went wrong, as far as scheduling cares. The driver maps its errors here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The name did not resolve (NXDOMAIN, no answer, resolver down).
    Dns,
    /// TCP connect refused or unreachable.
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// No answer in time (the driver's own timeout, or the machine's watchdog).
    Timeout,
    /// The server answered 5xx.
    Server5xx,
    /// The server answered 4xx other than 401.
    Client4xx,
    /// 401: no user to authenticate, or NTLM with the user's credentials was refused.
    Unauthorized,
    /// The reply could not be understood (bad XML, bad URL in it, empty body).
    Protocol,
    /// A downloaded file's SHA-256 or size differs from the offer; the bytes are discarded.
    HashMismatch,
    /// A local failure: disk full, a hook command that failed.
    Io,
}

impl FailureClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureClass::Dns => "dns",
            FailureClass::Connect => "connect",
            FailureClass::Tls => "tls",
            FailureClass::Timeout => "timeout",
            FailureClass::Server5xx => "server-5xx",
            FailureClass::Client4xx => "client-4xx",
            FailureClass::Unauthorized => "unauthorized",
            FailureClass::Protocol => "protocol",
            FailureClass::HashMismatch => "hash-mismatch",
            FailureClass::Io => "io",
        }
    }

    /// Failures of the internal URL that suggest the device is outside the firewall (where the
    /// internal name does not resolve or its address is unreachable or silently dropped).
    pub const fn suggests_outside(self) -> bool {
        matches!(
            self,
            FailureClass::Dns | FailureClass::Connect | FailureClass::Timeout
        )
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a check failed.
pub type CheckFailure = FailureClass;

/// A file the driver downloaded completely and verified (SHA-256 and size, when the offer has
/// them) against the [`ucupdate_protocol::OfferedFile`] of the `Download` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadedFile {
    pub file_name: FileName,
    /// Total size on disk.
    pub size: u64,
    /// The SHA-256 the driver computed (`None` only when it could not hash every byte).
    pub sha256: Option<Sha256Digest>,
    /// For the catalog of an offer: what verifying it against the device's anchors found.
    pub catalog: CatalogVerdict,
}

/// What the performer found when the downloaded file was the offer's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogVerdict {
    /// Not a catalog, or a device that does not verify (the simulator's `--trust none`).
    NotChecked,
    /// The catalog verifies and lists the image with this digest.
    Listed(ListedDigest),
    Refused(Refusal),
}

/// A download that did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadFailure {
    pub class: FailureClass,
    /// Bytes of the file the driver kept on disk (fsynced) for a ranged resume. Ignored, and
    /// treated as 0, for [`FailureClass::HashMismatch`].
    pub bytes_kept: u64,
}

/// Everything the machine reacts to, besides the passage of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The wall clock now reads `unix_ms` (send after construction and after each NTP step).
    /// Only the install date uses it; all scheduling runs on the monotonic [`super::Instant`].
    WallClock {
        unix_ms: u64,
    },
    /// A user signed in; `provisioning` is the in-band provisioning received with it, if any
    /// (`None` keeps what was provisioned before).
    SignedIn {
        user: String,
        provisioning: Option<Provisioning>,
    },
    SignedOut,
    /// `ucupdate-agent check-now`, or an administrator's request.
    CheckNow,
    /// Someone touched the device: restarts the idle wait before an install.
    UserActivity,
    /// A call started: no install until it ends and the device has then been idle long enough.
    CallStarted,
    CallEnded,
    /// Answer to `Action::Resolve`: the addresses (the driver keeps them for the connect).
    Resolved(Result<Vec<IpAddr>, FailureClass>),
    /// Answer to `Action::Check`.
    CheckDone(Result<CheckResponse, CheckFailure>),
    /// Answer to `Action::Download`.
    DownloadDone(Result<DownloadedFile, DownloadFailure>),
    /// Answer to `Action::Install`: the install hook finished (`Ok`) or failed.
    InstallDone(Result<(), FailureClass>),
    /// Answer to `Action::UploadLog`.
    LogUploaded(Result<(), FailureClass>),
}

impl Event {
    /// A short name for errors and metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            Event::WallClock { .. } => "wall-clock",
            Event::SignedIn { .. } => "signed-in",
            Event::SignedOut => "signed-out",
            Event::CheckNow => "check-now",
            Event::UserActivity => "user-activity",
            Event::CallStarted => "call-started",
            Event::CallEnded => "call-ended",
            Event::Resolved(_) => "resolved",
            Event::CheckDone(_) => "check-done",
            Event::DownloadDone(_) => "download-done",
            Event::InstallDone(_) => "install-done",
            Event::LogUploaded(_) => "log-uploaded",
        }
    }
}

fn result<T>(
    f: &mut fmt::Formatter<'_>,
    r: &Result<T, impl fmt::Display>,
    ok: impl FnOnce(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    match r {
        Ok(v) => ok(f, v),
        Err(e) => write!(f, " failed: {e}"),
    }
}

impl fmt::Display for Event {
    /// One line for a device timeline, e.g. `check-done update 1.0.522.101 (2 files)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            // A date for people reading a trace, not epoch milliseconds.
            Event::WallClock { unix_ms } => write!(
                f,
                " {}.{:03} UTC",
                ucupdate_protocol::audit::format_time(unix_ms / 1000),
                unix_ms % 1000
            ),
            Event::SignedIn { user, provisioning } => {
                write!(f, " {user}")?;
                match provisioning {
                    Some(p) if p.enabled => write!(f, " (provisioned)"),
                    Some(_) => write!(f, " (updates disabled)"),
                    None => Ok(()),
                }
            }
            Event::Resolved(r) => result(f, r, |f, a| write!(f, " {} address(es)", a.len())),
            Event::CheckDone(r) => result(f, r, |f, resp| match resp {
                CheckResponse::NoUpdate => write!(f, " no-update"),
                CheckResponse::Update(o) => {
                    write!(f, " update {} ({} files)", o.version, o.files.len())
                }
            }),
            Event::DownloadDone(Ok(d)) => write!(f, " {} {} bytes", d.file_name, d.size),
            Event::DownloadDone(Err(e)) => {
                write!(f, " failed: {} ({} bytes kept)", e.class, e.bytes_kept)
            }
            Event::InstallDone(r) | Event::LogUploaded(r) => result(f, r, |f, ()| write!(f, " ok")),
            Event::SignedOut
            | Event::CheckNow
            | Event::UserActivity
            | Event::CallStarted
            | Event::CallEnded => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_event_reads_as_a_date() {
        let e = Event::WallClock {
            unix_ms: 1_796_127_460_186,
        };
        assert_eq!(e.to_string(), "wall-clock 2026-12-01 12:17:40.186 UTC");
    }
}
