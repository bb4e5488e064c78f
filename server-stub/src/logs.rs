//! Device logs on disk, `DATA/logs/<device>/<type>/<file>`, under the quotas of [`Quotas`]:
//! a per-file size, a per-device and a total byte quota (accounted in memory, from a scan at
//! start), and a retention period enforced by [`LogStore::cleanup`].
//!
//! An upload is checked against the quotas before anything is written and then written in
//! one rename (`store::write_atomic`), so a refused or failed upload leaves nothing behind.
//! The accounting lock is held across the write: uploads are rare and small, and holding it
//! makes the quota exact under concurrent uploads (no two can both take the last megabyte).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::UNIX_EPOCH;

use ucupdate_protocol::LogUpload;

use crate::quota::{Quotas, MIN_LOG_FILE_COST};
use crate::store;

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The file is larger than `MaxLogFileSize` (413).
    #[error("log of {size} bytes exceeds the {limit}-byte maximum log file size")]
    TooLarge { size: u64, limit: u64 },
    /// The device's logs would exceed its quota (507).
    #[error("device {device} would exceed its log quota of {limit} bytes")]
    DeviceQuota { device: String, limit: u64 },
    /// All logs together would exceed the total quota (507).
    #[error("the server's log quota of {limit} bytes is used up")]
    TotalQuota { limit: u64 },
    /// Writing failed (500).
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// What one cleanup removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCleanup {
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Usage {
    total: u64,
    per_device: HashMap<String, u64>,
}

/// The device-log directory and its accounting.
#[derive(Debug)]
pub struct LogStore {
    dir: PathBuf,
    quotas: Quotas,
    usage: Mutex<Usage>,
}

/// What a file of `len` bytes costs against the quotas.
fn cost(len: u64) -> u64 {
    len.max(MIN_LOG_FILE_COST)
}

/// Every stored log file: `(device, path, size, modified unix secs)`. Temp files left by a
/// crash (`.name.*.tmp`) are deleted on the way.
fn scan(dir: &Path) -> io::Result<Vec<(String, PathBuf, u64, u64)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for device in entries {
        let device = device?;
        if !device.file_type()?.is_dir() {
            continue;
        }
        let name = device.file_name().to_string_lossy().into_owned();
        for kind in fs::read_dir(device.path())? {
            let kind = kind?;
            if !kind.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(kind.path())? {
                let file = file?;
                let meta = file.metadata()?;
                if !meta.is_file() {
                    continue;
                }
                let file_name = file.file_name().to_string_lossy().into_owned();
                if file_name.starts_with('.') && file_name.ends_with(".tmp") {
                    let _ = fs::remove_file(file.path());
                    continue;
                }
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                out.push((name.clone(), file.path(), meta.len(), modified));
            }
        }
    }
    Ok(out)
}

impl LogStore {
    /// Opens `DATA/logs` and counts what is stored (blocking).
    pub fn open(data_dir: &Path, quotas: Quotas) -> io::Result<Self> {
        let dir = data_dir.join("logs");
        let mut usage = Usage::default();
        for (device, _, size, _) in scan(&dir)? {
            usage.total += cost(size);
            *usage.per_device.entry(device).or_default() += cost(size);
        }
        Ok(LogStore {
            dir,
            quotas,
            usage: Mutex::new(usage),
        })
    }

    /// Bytes counted against the total quota now.
    pub fn used(&self) -> u64 {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// Stores one upload of at most `limit` bytes (`MaxLogFileSize`), replacing a file of
    /// the same name, if the quotas allow (blocking).
    pub fn store(&self, upload: &LogUpload, bytes: &[u8], limit: u64) -> Result<PathBuf, LogError> {
        let size = bytes.len() as u64;
        if size > limit {
            return Err(LogError::TooLarge { size, limit });
        }
        let device = upload.device.as_str();
        // Every component is a PathSegment / FileName: the joined path stays under DATA/logs.
        let path = self
            .dir
            .join(device)
            .join(upload.log_type.as_str())
            .join(upload.file_name.as_str());
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let old = fs::metadata(&path).map_or(0, |m| cost(m.len()));
        let new = cost(size);
        let device_used = usage.per_device.get(device).copied().unwrap_or(0);
        if device_used - old.min(device_used) + new > self.quotas.max_log_bytes_per_device {
            return Err(LogError::DeviceQuota {
                device: device.to_owned(),
                limit: self.quotas.max_log_bytes_per_device,
            });
        }
        if usage.total - old.min(usage.total) + new > self.quotas.max_log_bytes_total {
            return Err(LogError::TotalQuota {
                limit: self.quotas.max_log_bytes_total,
            });
        }
        store::write_atomic(&path, bytes).map_err(|source| LogError::Io {
            path: path.clone(),
            source,
        })?;
        usage.total = usage.total - old.min(usage.total) + new;
        let entry = usage.per_device.entry(device.to_owned()).or_default();
        *entry = *entry - old.min(*entry) + new;
        Ok(path)
    }

    /// Deletes the logs uploaded (last modified) `retention_secs` (`LogCleanUpInterval`) or
    /// more before `now_unix`, and the directories they leave empty (blocking).
    pub fn cleanup(&self, now_unix: u64, retention_secs: u64) -> io::Result<LogCleanup> {
        self.delete_before(now_unix.saturating_sub(retention_secs))
    }

    /// Deletes the logs last modified at `cutoff_unix` or before, and the directories they
    /// leave empty (blocking): the retention cleanup, and `logs clear --days-back N`.
    pub fn delete_before(&self, cutoff: u64) -> io::Result<LogCleanup> {
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let mut done = LogCleanup::default();
        for (device, path, size, modified) in scan(&self.dir)? {
            if modified > cutoff {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            done.files += 1;
            done.bytes += size;
            usage.total = usage.total.saturating_sub(cost(size));
            if let Some(used) = usage.per_device.get_mut(&device) {
                *used = used.saturating_sub(cost(size));
                if *used == 0 {
                    usage.per_device.remove(&device);
                }
            }
            // The type and device directories go when they are empty (remove_dir refuses a
            // directory that is not).
            if let Some(kind) = path.parent() {
                if fs::remove_dir(kind).is_ok() {
                    if let Some(device) = kind.parent() {
                        let _ = fs::remove_dir(device);
                    }
                }
            }
        }
        Ok(done)
    }
}
