//! [`PersistedState`]: everything the machine needs after a power cut, and its versioned JSON
//! encoding. The driver writes it atomically whenever the machine emits `Action::Persist`;
//! a power cut is `Machine::new` with the last state written.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use ucupdate_protocol::{FileName, FirmwareVersion, OfferedFile, Provisioning};

/// The `format` this build writes and reads.
pub const PERSIST_FORMAT: u32 = 1;

/// What survives a restart. Wall times are Unix milliseconds (the machine's own `Instant`
/// restarts at every boot and means nothing on disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Always [`PERSIST_FORMAT`] when written by this build; checked by [`PersistedState::decode`].
    pub format: u32,
    /// The version the device runs (the System Information screen's "current version").
    pub current_version: FirmwareVersion,
    /// The version before the last update, kept as the fallback image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_version: Option<FirmwareVersion>,
    /// When the last update was confirmed installed (the screen's "date of the last update").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_unix_ms: Option<u64>,
    /// A user has signed in at least once: discovery by DNS is no longer used.
    #[serde(default)]
    pub ever_signed_in: bool,
    /// The update-service URLs from in-band provisioning at the last sign-in that carried them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<Box<ProvisionedUrls>>,
    /// A download in progress, so that it resumes (with `Range`) after a cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<Box<PartialDownload>>,
    /// Every file of `version` is downloaded and verified; it is to be installed. Written
    /// before `Action::Install`, cleared in the same write that makes `version` current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<Box<InstallMarker>>,
}

/// The provisioned update-service URLs (`updatesServer*` of in-band provisioning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionedUrls {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
}

impl From<Provisioning> for ProvisionedUrls {
    fn from(p: Provisioning) -> Self {
        ProvisionedUrls {
            enabled: p.enabled,
            internal_url: p.internal_url,
            external_url: p.external_url,
        }
    }
}

/// How far a download got: files `0..completed` of the offer (image first) are complete and
/// verified; `file` at `url` has `bytes` kept on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialDownload {
    pub version: FirmwareVersion,
    pub url: String,
    pub file: FileName,
    pub completed: u32,
    pub bytes: u64,
}

/// The pending-install marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallMarker {
    pub version: FirmwareVersion,
    /// With their digests, so the install re-verifies what a power cut may have touched.
    pub files: Vec<OfferedFile>,
}

/// Why a persisted state could not be read back.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PersistError {
    /// Not JSON, or a field has the wrong type or an invalid value (a bad version, file name).
    #[error("persisted state is malformed: {0}")]
    Malformed(serde_json::Error),
    /// Written by a newer (or unknown) build.
    #[error("persisted state has format {found}; this build reads format {PERSIST_FORMAT}")]
    UnsupportedFormat { found: u32 },
}

impl PersistedState {
    /// A device's first state: it runs `current_version` and knows nothing else.
    pub fn new(current_version: FirmwareVersion) -> Self {
        PersistedState {
            format: PERSIST_FORMAT,
            current_version,
            fallback_version: None,
            last_update_unix_ms: None,
            ever_signed_in: false,
            provisioning: None,
            download: None,
            install: None,
        }
    }

    /// Pretty JSON (a human reads it when a device misbehaves).
    pub fn encode(&self) -> String {
        // Every field is a plain string, number, bool, list or object: this cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<Self, PersistError> {
        // Read `format` first so a newer layout gives `UnsupportedFormat`, not a field error.
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let probe: Probe = serde_json::from_str(text)?;
        if probe.format != PERSIST_FORMAT {
            return Err(PersistError::UnsupportedFormat {
                found: probe.format,
            });
        }
        Ok(serde_json::from_str(text)?)
    }
}

impl fmt::Display for PersistedState {
    /// `v1.0.0.1 fallback=- download=v2.0.0.0#0@4096 install=-` for a trace line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.current_version)?;
        match &self.fallback_version {
            Some(v) => write!(f, " fallback={v}")?,
            None => write!(f, " fallback=-")?,
        }
        match &self.download {
            Some(d) => write!(f, " download=v{}#{}@{}", d.version, d.completed, d.bytes)?,
            None => write!(f, " download=-")?,
        }
        match &self.install {
            Some(i) => write!(f, " install=v{}", i.version),
            None => write!(f, " install=-"),
        }
    }
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<serde_json::Error> for PersistError {
    fn from(error: serde_json::Error) -> Self {
        PersistError::Malformed(error)
    }
}

#[cfg(test)]
mod tests {
    use ucupdate_protocol::{FileKind, Sha256Digest};

    use super::*;

    fn full() -> PersistedState {
        let v = |s: &str| s.parse::<FirmwareVersion>().unwrap();
        PersistedState {
            fallback_version: Some(v("1.0.0.1")),
            last_update_unix_ms: Some(1_700_000_000_000),
            ever_signed_in: true,
            provisioning: Some(Box::new(ProvisionedUrls {
                enabled: true,
                internal_url: Some("https://pool.contoso.com/RequestHandler/ucdevice.upx".into()),
                external_url: None,
            })),
            download: Some(Box::new(PartialDownload {
                version: v("3.0.0.0"),
                url: "http://h/DeviceUpdateFiles_Int/x/CPE.nbt".into(),
                file: FileName::new("CPE.nbt").unwrap(),
                completed: 0,
                bytes: 4096,
            })),
            install: Some(Box::new(InstallMarker {
                version: v("3.0.0.0"),
                files: vec![OfferedFile {
                    kind: FileKind::Image,
                    file_name: FileName::new("CPE.nbt").unwrap(),
                    size: Some(10),
                    sha256: Some(Sha256Digest([7; 32])),
                }],
            })),
            ..PersistedState::new(v("2.0.0.0"))
        }
    }

    #[test]
    fn round_trips_every_field() {
        for state in [PersistedState::new("1.2.3.4".parse().unwrap()), full()] {
            let text = state.encode();
            assert_eq!(PersistedState::decode(&text).unwrap(), state, "{text}");
        }
        assert!(full().encode().contains("\"current_version\": \"2.0.0.0\""));
    }

    #[test]
    fn decode_errors_are_typed() {
        assert!(matches!(
            PersistedState::decode("{\"format\": 2, \"whatever\": 1}"),
            Err(PersistError::UnsupportedFormat { found: 2 })
        ));
        for bad in [
            "",
            "{}",
            "{\"format\": 1}",
            "{\"format\": 1, \"current_version\": \"1.2.3\"}",
            "{\"format\": 1, \"current_version\": \"1.2.3.4\", \"download\": {\"version\": \"1.0.0.0\", \
             \"url\": \"u\", \"file\": \"../x\", \"completed\": 0, \"bytes\": 0}}",
        ] {
            assert!(matches!(PersistedState::decode(bad), Err(PersistError::Malformed(_))), "{bad}");
        }
    }

    /// State files written by an earlier build (every field set; a fresh device) read back and
    /// re-encode to the same bytes: the on-disk format does not move when the serde plumbing
    /// does.
    #[test]
    fn old_state_files_re_encode_to_the_same_bytes() {
        for old in [
            include_str!("../../tests/fixtures/state-v1.json"),
            include_str!("../../tests/fixtures/state-v1-fresh.json"),
        ] {
            let state = PersistedState::decode(old).unwrap();
            assert_eq!(state.encode(), old);
        }
        let full =
            PersistedState::decode(include_str!("../../tests/fixtures/state-v1.json")).unwrap();
        let install = full.install.unwrap();
        assert_eq!(install.files.len(), 2);
        assert_eq!(install.files[1].kind, FileKind::Catalog);
        assert_eq!(
            (install.files[1].size, install.files[1].sha256),
            (None, None)
        );
    }
}
