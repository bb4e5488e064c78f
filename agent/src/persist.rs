//! Atomic state writes: a power cut at any instant leaves either the old bytes or the new bytes
//! at a path, never a mix. The recipe is the classic one: write a temp file in the same
//! directory, fsync it, rename it over the target, fsync the directory (so the rename itself
//! survives). Readers treat any leftover temp file as garbage from an interrupted write.
//!
//! The functions are blocking (`std::fs`): state files are small and written rarely. Async
//! callers use the `*_async` twins or [`blocking`], which run the same code on tokio's blocking
//! pool. This is the agent's only atomic-write mechanism.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What went wrong, with the path it went wrong on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The path has no file name or no parent directory to hold the temp file.
    #[error("{0}: not a file path")]
    BadPath(PathBuf),
    /// A file-system call failed.
    #[error("{op} {path}: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PersistError {
    let path = path.to_owned();
    move |source| PersistError::Io {
        op,
        path,
        error: source,
    }
}

/// Marks temp files: `.<name>.tmp-<pid>-<n>`. The leading dot keeps them out of casual listings;
/// pid and counter keep two writers of the same path in one process from sharing a temp file.
const TEMP_MARK: &str = ".tmp-";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temp file written and fsynced but not yet renamed over its target: the state between the
/// two halves of [`write_atomic`]. Dropping it without [`Staged::commit`] leaves the temp file
/// behind exactly as a crash would (and [`read_state`] cleans it up).
#[derive(Debug)]
#[must_use = "a staged write does nothing until committed"]
pub struct Staged {
    temp: PathBuf,
    target: PathBuf,
}

impl Staged {
    /// Where the temp file is.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Renames the temp file over the target and fsyncs the directory.
    pub fn commit(self) -> Result<(), PersistError> {
        fs::rename(&self.temp, &self.target).map_err(io_err("rename", &self.target))?;
        sync_dir(parent_of(&self.target)?)
    }
}

/// Writes `bytes` to `path` atomically (temp, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    stage(path, bytes)?.commit()
}

/// The first half of [`write_atomic`]: the new bytes are durable in a temp file next to `path`,
/// and `path` still holds the old bytes.
pub fn stage(path: &Path, bytes: &[u8]) -> Result<Staged, PersistError> {
    let dir = parent_of(path)?;
    let name = path
        .file_name()
        .ok_or_else(|| PersistError::BadPath(path.to_owned()))?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(
        ".{}{TEMP_MARK}{}-{n}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        // 0600: the state names the server, the user and what is installed; nobody else's.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io_err("create", &temp))?;
        file.write_all(bytes).map_err(io_err("write", &temp))?;
        file.sync_all().map_err(io_err("fsync", &temp))
    })();
    if let Err(e) = result {
        // A failed write (disk full) must not leave its half file for the next reader to trip on.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(Staged {
        temp,
        target: path.to_owned(),
    })
}

/// Reads the state at `path`: `Ok(None)` when there is none. Leftover temp files of `path`
/// (from a write cut before its rename) are removed first: they are never the state.
pub fn read_state(path: &Path) -> Result<Option<Vec<u8>>, PersistError> {
    remove_leftovers(path)?;
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Removes `path` (if present) durably.
pub fn remove(path: &Path) -> Result<(), PersistError> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent_of(path)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Deletes the temp files an interrupted [`write_atomic`] of `path` may have left. Returns how
/// many it removed.
pub fn remove_leftovers(path: &Path) -> Result<usize, PersistError> {
    let dir = parent_of(path)?;
    let Some(name) = path.file_name() else {
        return Err(PersistError::BadPath(path.to_owned()));
    };
    let prefix = format!(".{}{TEMP_MARK}", name.to_string_lossy());
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let leftover = entry.path();
            tracing::debug!(path = %leftover.display(), "removing temp file of an interrupted write");
            match fs::remove_file(&leftover) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &leftover)(e)),
            }
        }
    }
    Ok(removed)
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync dir", dir))
}

fn parent_of(path: &Path) -> Result<&Path, PersistError> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Ok(Path::new(".")),
        Some(p) => Ok(p),
        None => Err(PersistError::BadPath(path.to_owned())),
    }
}

/// [`write_atomic`] on tokio's blocking pool.
pub async fn write_atomic_async(path: PathBuf, bytes: Vec<u8>) -> Result<(), PersistError> {
    blocking(path, move |path| write_atomic(path, &bytes)).await
}

/// [`read_state`] on tokio's blocking pool.
pub async fn read_state_async(path: PathBuf) -> Result<Option<Vec<u8>>, PersistError> {
    blocking(path, read_state).await
}

/// Runs file work on `path` (a write with what goes with it, such as the driver's staging
/// clean-up) on tokio's blocking pool: the one place async code crosses into these functions.
/// A task that panicked or was cancelled is an I/O error on `path`.
pub async fn blocking<T, F>(path: PathBuf, work: F) -> Result<T, PersistError>
where
    T: Send + 'static,
    F: FnOnce(&Path) -> Result<T, PersistError> + Send + 'static,
{
    let p = path.clone();
    tokio::task::spawn_blocking(move || work(&p))
        .await
        .unwrap_or_else(|join| {
            Err(PersistError::Io {
                op: "blocking task",
                path,
                error: io::Error::other(join),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temps_in(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(TEMP_MARK))
            .collect()
    }

    #[test]
    fn a_written_state_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn write_then_read_round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(read_state(&path).unwrap(), None);
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(read_state(&path).unwrap().as_deref(), Some(&b"two"[..]));
        assert!(temps_in(dir.path()).is_empty());
    }

    #[test]
    fn crash_after_temp_written_keeps_old_state_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old").unwrap();
        // Power cut between fsync of the temp file and the rename.
        let staged = stage(&path, b"new").unwrap();
        assert!(staged.temp_path().exists());
        drop(staged);
        assert_eq!(temps_in(dir.path()).len(), 1);
        assert_eq!(read_state(&path).unwrap().as_deref(), Some(&b"old"[..]));
        assert!(
            temps_in(dir.path()).is_empty(),
            "reader removes the garbage"
        );
    }

    #[test]
    fn crash_mid_temp_write_leaves_truncated_garbage_not_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"{\"version\":\"1.0.0.1\"}").unwrap();
        // What a cut in the middle of write_all leaves: a short temp file with our naming.
        let temp = dir.path().join(format!(".state.json{TEMP_MARK}999-0"));
        fs::write(&temp, b"{\"vers").unwrap();
        assert_eq!(
            read_state(&path).unwrap().as_deref(),
            Some(&b"{\"version\":\"1.0.0.1\"}"[..])
        );
        assert!(!temp.exists());
    }

    #[test]
    fn crash_before_first_state_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let _ = stage(&path, b"first").unwrap();
        assert_eq!(read_state(&path).unwrap(), None);
        assert!(temps_in(dir.path()).is_empty());
    }

    #[test]
    fn leftovers_of_other_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let _ = stage(&dir.path().join("b"), b"b").unwrap();
        assert_eq!(remove_leftovers(&a).unwrap(), 0);
        assert_eq!(temps_in(dir.path()).len(), 1);
    }

    #[test]
    fn commit_after_stage_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write_atomic(&path, b"old").unwrap();
        let staged = stage(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"old");
        staged.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        remove(&path).unwrap();
        assert_eq!(read_state(&path).unwrap(), None);
        remove(&path).unwrap();
    }

    #[tokio::test]
    async fn async_twins_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write_atomic_async(path.clone(), b"x".to_vec())
            .await
            .unwrap();
        assert_eq!(read_state_async(path).await.unwrap(), Some(b"x".to_vec()));
    }
}
