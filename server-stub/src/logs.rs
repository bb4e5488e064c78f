//! Device logs on disk, `DATA/Logs/Client/<type>/<name>` (the service's place) under the
//! documented names ([`names`]), under the quotas of [`Quotas`]: a per-file size, a
//! per-device and a total byte quota (accounted in memory, from a scan at start that reads the
//! device from each name), and a retention period enforced by [`LogStore::cleanup`]. Logs of
//! earlier versions, in `DATA/logs/<device>/<type>/<file>`, are counted and cleaned up there,
//! never written.
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

use ucupdate_protocol::{LogType, LogUpload};

mod names;
pub use names::{name_id, DeviceInfo};

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
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
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
    legacy_dir: PathBuf,
    quotas: Quotas,
    usage: Mutex<Usage>,
}

/// Where uploads are stored, under the data directory: `<type>/<file>` below it.
pub const CLIENT_LOG_DIR: &str = "Logs/Client";
/// Where they were stored before (`<device>/<type>/<file>`): counted and cleaned up only.
const LEGACY_LOG_DIR: &str = "logs";

/// What a file of `len` bytes costs against the quotas.
fn cost(len: u64) -> u64 {
    len.max(MIN_LOG_FILE_COST)
}

/// Every stored log file: `(device id, path, size, modified unix secs)`, in the current
/// layout (`<type>/<file>`, the device id read from the documented name; "" if it is not one)
/// or, with `legacy`, the earlier one (`<device>/<type>/<file>`). Temp files left by a crash
/// (`.name.*.tmp`) are deleted on the way.
fn scan(dir: &Path, legacy: bool) -> io::Result<Vec<(String, PathBuf, u64, u64)>> {
    let mut out = Vec::new();
    let mut kinds = Vec::new();
    for entry in subdirs(dir)? {
        if legacy {
            let device = names::name_id(&entry.file_name().to_string_lossy());
            kinds.extend(subdirs(&entry.path())?.map(|k| (Some(device.clone()), k)));
        } else {
            kinds.push((None, entry));
        }
    }
    for (device, kind) in kinds {
        let log_type = kind.file_name().to_string_lossy().parse::<LogType>().ok();
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
            let device = device.clone().unwrap_or_else(|| {
                log_type
                    .and_then(|t| names::id_of(t, &file_name))
                    .map(names::name_id)
                    .unwrap_or_default()
            });
            out.push((device, file.path(), meta.len(), modified));
        }
    }
    Ok(out)
}

/// The directories directly under `dir` (none when it does not exist).
fn subdirs(dir: &Path) -> io::Result<impl Iterator<Item = fs::DirEntry>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => Some(e),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries.into_iter().flatten() {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry);
        }
    }
    Ok(out.into_iter())
}

impl LogStore {
    /// Opens `DATA/Logs/Client` and counts what is stored there and in the earlier
    /// `DATA/logs` (blocking).
    pub fn open(data_dir: &Path, quotas: Quotas) -> io::Result<Self> {
        let dir = data_dir.join(CLIENT_LOG_DIR);
        let mut legacy_dir = data_dir.join(LEGACY_LOG_DIR);
        // On a case-insensitive file system `logs` is `Logs`, the parent of the current
        // layout: there is no earlier layout to read then (it would count every file twice).
        let same = |a: &Path, b: &Path| matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(a), Ok(b)) if a == b);
        if same(&legacy_dir, &data_dir.join("Logs")) {
            legacy_dir = data_dir.join(".no-legacy-logs");
        }
        let mut usage = Usage::default();
        for (device, _, size, _) in scan(&dir, false)?
            .into_iter()
            .chain(scan(&legacy_dir, true)?)
        {
            usage.total += cost(size);
            *usage.per_device.entry(device).or_default() += cost(size);
        }
        Ok(LogStore {
            dir,
            legacy_dir,
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

    /// Stores one upload of at most `limit` bytes (`MaxLogFileSize`) received at `now_unix`
    /// as `Logs/Client/<type>/<name>`, under its documented name ([`names::stored_name`]),
    /// replacing a file of that name, if the quotas allow (blocking). Returns the path.
    pub fn store(
        &self,
        upload: &LogUpload,
        bytes: &[u8],
        limit: u64,
        info: &DeviceInfo,
        now_unix: u64,
    ) -> Result<PathBuf, LogError> {
        let size = bytes.len() as u64;
        if size > limit {
            return Err(LogError::TooLarge { size, limit });
        }
        let device = names::name_id(upload.device.as_str());
        let device = device.as_str();
        let kind = self.dir.join(upload.log_type.as_str());
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        // Under the lock: two uploads at once cannot both pick the same free `_n`.
        let name = names::stored_name(
            upload.log_type,
            upload.file_name.as_str(),
            upload.device.as_str(),
            info,
            now_unix,
            |n| kind.join(n).exists(),
        );
        // The name is the upload's FileName or made of a PathSegment, digits and fixed
        // text; checked again so the joined path cannot leave the log directory.
        let name = ucupdate_protocol::FileName::new(&name).map_err(|e| LogError::Io {
            path: kind.clone(),
            error: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
        })?;
        let path = kind.join(name.as_str());
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
            error: source,
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
        let all = scan(&self.dir, false)?
            .into_iter()
            .chain(scan(&self.legacy_dir, true)?);
        for (device, path, size, modified) in all {
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
            // The type directory goes when it is empty (remove_dir refuses one that is not),
            // and in the earlier layout the device directory above it.
            if let Some(kind) = path.parent() {
                if fs::remove_dir(kind).is_ok() && path.starts_with(&self.legacy_dir) {
                    if let Some(device) = kind.parent() {
                        let _ = fs::remove_dir(device);
                    }
                }
            }
        }
        Ok(done)
    }
}
