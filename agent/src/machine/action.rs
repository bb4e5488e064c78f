//! What comes out of the machine: [`Action`]s for the driver (or the simulator) to perform.
//! Each I/O action is answered by exactly one completion event; `Persist`, `Reboot` and
//! `UploadLog`'s failure never hold anything up.

use std::fmt;

use ucupdate_protocol::{FileName, FirmwareVersion, HttpUrl, OfferedFile};

use super::persisted::PersistedState;

/// Work for the driver, in the order it must be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this state atomically (write-temp, fsync, rename) before performing any action
    /// that follows it. Answered by nothing: a failed write is the driver's to report.
    Persist(PersistedState),
    /// Look up the A/AAAA records of `name` (`ucupdates-r2.<domain>`). Answer: `Resolved`.
    Resolve { name: String },
    /// POST an update check to `url`. The driver builds the `CheckRequest` from the identity it
    /// owns plus `current_version` and `user`; `external` means NTLM over HTTPS with the signed-in
    /// user's credentials once the server asks. Answer: `CheckDone`.
    Check {
        url: HttpUrl,
        external: bool,
        user: Option<String>,
        current_version: FirmwareVersion,
    },
    /// GET one file of `version`, starting at byte `resume_from` (a `Range` request when > 0;
    /// the driver keeps exactly that many bytes of its partial file and discards the rest).
    /// The driver verifies SHA-256 and size against `file` (and the SHA-1 in `expect_sha1`,
    /// for an image a legacy catalog lists by SHA-1 only) before answering `DownloadDone(Ok)`.
    /// `catalog_for`: this file is the offer's catalog; the driver verifies it and answers with
    /// the digest it lists for that image (`DownloadedFile::catalog`).
    Download {
        url: HttpUrl,
        version: FirmwareVersion,
        file: OfferedFile,
        resume_from: u64,
        external: bool,
        catalog_for: Option<FileName>,
        expect_sha1: Option<[u8; 20]>,
    },
    /// Install the staged files of `version`. The driver re-verifies each against its digest
    /// (the staging may predate a power cut) and answers `InstallDone(Err(HashMismatch))`
    /// rather than install bytes that do not match.
    Install {
        version: FirmwareVersion,
        files: Vec<OfferedFile>,
    },
    /// Restart the device. Nothing answers: the next event is a new `Machine::new`.
    Reboot,
    /// Upload the device logs to the check handler at `url` (`?action=logupload...`). Runs
    /// beside everything else; answer: `LogUploaded`.
    UploadLog { url: HttpUrl, external: bool },
}

impl Action {
    pub const fn name(&self) -> &'static str {
        match self {
            Action::Persist(_) => "persist",
            Action::Resolve { .. } => "resolve",
            Action::Check { .. } => "check",
            Action::Download { .. } => "download",
            Action::Install { .. } => "install",
            Action::Reboot => "reboot",
            Action::UploadLog { .. } => "upload-log",
        }
    }
}

fn side(external: bool) -> &'static str {
    if external {
        "external"
    } else {
        "internal"
    }
}

impl fmt::Display for Action {
    /// One line for a device timeline; never shows a password (the machine never has one).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            Action::Persist(s) => write!(f, " {s}"),
            Action::Resolve { name } => write!(f, " {name}"),
            Action::Check {
                url,
                external,
                user,
                current_version,
            } => {
                write!(f, " {} {url} v{current_version}", side(*external))?;
                match user {
                    Some(u) => write!(f, " user={u}"),
                    None => write!(f, " user=-"),
                }
            }
            Action::Download {
                url,
                version,
                resume_from,
                external,
                ..
            } => {
                write!(
                    f,
                    " {} {url} v{version} from {resume_from}",
                    side(*external)
                )
            }
            Action::Install { version, files } => write!(f, " v{version} ({} files)", files.len()),
            Action::Reboot => Ok(()),
            Action::UploadLog { url, external } => write!(f, " {} {url}", side(*external)),
        }
    }
}
