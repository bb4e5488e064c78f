//! The state directory's layout and the file work of the driver: loading the persisted state
//! (a newer format is refused, a malformed file is set aside), atomic state writes with the
//! staging clean-up that follows them, the resume point of a half-downloaded file, and the
//! SHA-256 re-verification of staged files before the install hook sees them.

use std::path::{Path, PathBuf};

use ucupdate_protocol::{FileName, FirmwareVersion, OfferedFile};

use super::DriverError;
use crate::digest;
use crate::machine::{PersistError, PersistedState};
use crate::persist;

/// The machine's persisted state.
pub const STATE_FILE: &str = "state.json";
/// The last status report, for `ucupdate-agent status` while the daemon is down.
pub const STATUS_FILE: &str = "status.json";
/// Downloads: `staging/<version>/<file>`.
pub const STAGING_DIR: &str = "staging";

pub fn staging_dir(state_dir: &Path, version: FirmwareVersion) -> PathBuf {
    state_dir.join(STAGING_DIR).join(version.to_string())
}

/// Where a file of `version` is downloaded to. `FileName` admits no separators, so this
/// never leaves the staging directory.
pub fn staged_path(state_dir: &Path, version: FirmwareVersion, file: &FileName) -> PathBuf {
    staging_dir(state_dir, version).join(file.as_str())
}

/// The state directory and its `staging/`, 0700: state, status and downloads are the agent's
/// alone (a world-writable staging dir let another user plant a symlink there). An existing
/// state directory is narrowed to 0700 too.
pub(super) async fn create_private_dirs(dir: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    let dir = dir.to_owned();
    let on_pool = dir.clone();
    tokio::task::spawn_blocking(move || private_dirs(&on_pool))
        .await
        .unwrap_or_else(|e| Err((dir, std::io::Error::other(e.to_string()))))
}

fn private_dirs(dir: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let staging = dir.join(STAGING_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&staging)
        .map_err(|e| (staging.clone(), e))?;
    for path in [dir, staging.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| (path.to_owned(), e))?;
    }
    Ok(())
}

/// The persisted state, or a first state at `factory` (`true`: nothing was on disk).
pub(super) async fn load_state(
    dir: &Path,
    factory: FirmwareVersion,
) -> Result<(PersistedState, bool), DriverError> {
    let path = dir.join(STATE_FILE);
    let Some(bytes) = persist::read_state_async(path.clone()).await? else {
        return Ok((PersistedState::new(factory), true));
    };
    let text = String::from_utf8_lossy(&bytes);
    match PersistedState::decode(&text) {
        Ok(state) => Ok((state, false)),
        // Written by a newer build: overwriting it would lose what that build knew.
        Err(source @ PersistError::UnsupportedFormat { .. }) => Err(DriverError::State {
            path,
            error: source,
        }),
        Err(e) => {
            // Atomic writes make this unlikely (a bad flash block); a device that never
            // updates again is worse than one that forgets a half-finished download.
            let aside = dir.join(format!("{STATE_FILE}.bad"));
            tracing::error!(error = %e, aside = %aside.display(), "state file unreadable; starting over");
            let _ = tokio::fs::rename(&path, &aside).await;
            Ok((PersistedState::new(factory), true))
        }
    }
}

/// A download cut by a power loss or a kill may have more bytes on disk than the last
/// persisted record says; resume from what is there (the final SHA-256 check catches a
/// garbage tail, and the download then starts over).
pub(super) async fn raise_resume_point(dir: &Path, state: &mut PersistedState) {
    let Some(download) = state.download.as_deref_mut() else {
        return;
    };
    let path = staged_path(dir, download.version, &download.file);
    if let Ok(meta) = tokio::fs::metadata(&path).await {
        if meta.len() > download.bytes {
            tracing::info!(file = %download.file, from = download.bytes, to = meta.len(), "resuming from the bytes on disk");
            download.bytes = meta.len();
        }
    }
}

/// Writes the state atomically, then removes staging directories no record refers to any more
/// (a withdrawn offer, an update installed before the last restart).
pub(super) async fn persist(dir: PathBuf, state: PersistedState) -> Result<(), DriverError> {
    persist::blocking(dir.join(STATE_FILE), move |path| {
        persist::write_atomic(path, state.encode().as_bytes())?;
        clean_staging(&dir, &state);
        Ok(())
    })
    .await?;
    Ok(())
}

fn clean_staging(dir: &Path, state: &PersistedState) {
    // The current version's files stay until the next update: the reboot hook (or a firmware
    // that flashes at boot) may still read them.
    let keep: Vec<String> = [
        state.download.as_ref().map(|d| d.version),
        state.install.as_ref().map(|i| i.version),
        Some(state.current_version),
    ]
    .into_iter()
    .flatten()
    .map(|v| v.to_string())
    .collect();
    let Ok(entries) = std::fs::read_dir(dir.join(STAGING_DIR)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            tracing::debug!(version = %name, "removing stale staging directory");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Checks a staged file against its offer: size and SHA-256 when the offer has them.
pub(super) async fn verify(path: PathBuf, expected: OfferedFile) -> Result<(), String> {
    tokio::task::spawn_blocking(move || verify_blocking(&path, &expected))
        .await
        .map_err(|e| e.to_string())?
}

fn verify_blocking(path: &Path, expected: &OfferedFile) -> Result<(), String> {
    let (size, digest) =
        digest::of_file(path, &digest::SHA256).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(want) = expected.size {
        if want != size {
            return Err(format!("size {size}, offer says {want}"));
        }
    }
    if let Some(want) = expected.sha256 {
        if digest.as_ref() != want.0 {
            return Err(format!(
                "SHA-256 {}, offer says {want}",
                hex::encode(digest.as_ref())
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ucupdate_protocol::{FileKind, Sha256Digest};

    fn offered(bytes: &[u8]) -> OfferedFile {
        OfferedFile {
            kind: FileKind::Image,
            file_name: FileName::new("CPE.nbt").unwrap(),
            size: Some(bytes.len() as u64),
            sha256: Some(Sha256Digest(crate::digest::sha256(bytes))),
        }
    }

    #[tokio::test]
    async fn the_state_dir_and_staging_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dirs(&state).await.unwrap();
        for path in [state.clone(), state.join(STAGING_DIR)] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}: {mode:o}", path.display());
        }
    }

    #[tokio::test]
    async fn verify_catches_a_changed_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("CPE.nbt");
        std::fs::write(&path, b"firmware image").unwrap();
        verify(path.clone(), offered(b"firmware image"))
            .await
            .unwrap();
        let err = verify(path, offered(b"firmware imagE")).await.unwrap_err();
        assert!(err.contains("SHA-256"), "{err}");
    }

    #[tokio::test]
    async fn persist_keeps_only_referenced_staging() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["1.0.0.0", "2.0.0.0", "3.0.0.0"] {
            std::fs::create_dir_all(dir.path().join(STAGING_DIR).join(v)).unwrap();
        }
        let state = PersistedState::new("2.0.0.0".parse().unwrap());
        persist(dir.path().to_owned(), state.clone()).await.unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path().join(STAGING_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec!["2.0.0.0"]);
        let (back, fresh) = load_state(dir.path(), "9.9.9.9".parse().unwrap())
            .await
            .unwrap();
        assert_eq!((back, fresh), (state, false));
    }

    #[tokio::test]
    async fn a_malformed_state_is_set_aside_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
        let (state, fresh) = load_state(dir.path(), "1.2.3.4".parse().unwrap())
            .await
            .unwrap();
        assert!(fresh);
        assert_eq!(state.current_version.to_string(), "1.2.3.4");
        assert!(dir.path().join("state.json.bad").exists());
        std::fs::write(dir.path().join(STATE_FILE), "{\"format\": 99}").unwrap();
        assert!(matches!(
            load_state(dir.path(), "1.2.3.4".parse().unwrap()).await,
            Err(DriverError::State { .. })
        ));
    }
}
