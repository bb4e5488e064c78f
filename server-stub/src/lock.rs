//! The data directory's owner: one process at a time holds an exclusive `flock`-style lock on
//! `DATA/server.lock` (which names its pid) for as long as it may write there. A second
//! `serve` on the same directory would otherwise start beside the first, rewrite `ca.pem` and
//! lose the first one's writes; an offline CLI change while a server runs would be silently
//! overwritten at the server's next flush. Both now fail with the holder's pid instead.
//!
//! The kernel releases the lock when the holder exits, however it exits (SIGKILL included), so
//! a stale `server.lock` left on disk never blocks anyone: only a live holder does.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "server.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another live process holds the lock.
    #[error("data directory {} is in use by another ucupdate-server process ({holder}; lock file {})", dir.display(), dir.join(LOCK_FILE).display())]
    Held {
        dir: PathBuf,
        /// `pid N`, or `unknown pid` when the holder has not written it yet.
        holder: String,
    },
    /// Creating the directory or the lock file failed.
    #[error("lock {}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
}

/// An exclusive lock on a data directory, released when dropped (or when the process exits).
#[derive(Debug)]
pub struct DataLock {
    // Held for its lock; never read after acquiring.
    _file: File,
    path: PathBuf,
}

impl DataLock {
    /// Creates `dir` if needed, then takes its lock without waiting, and writes this
    /// process's pid into the lock file.
    pub fn acquire(dir: &Path) -> Result<DataLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            error: source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "unknown pid".to_owned(),
                };
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.sync_data())
            .map_err(io_err)?;
        Ok(DataLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataLock::acquire(dir.path()).unwrap();
        let err = DataLock::acquire(dir.path()).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("pid {}", std::process::id())),
            "{shown}"
        );
        drop(first);
        DataLock::acquire(dir.path()).expect("free again once the holder is gone");
    }
}
