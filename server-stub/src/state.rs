//! The shared, persistent service state: the [`Model`] in memory behind an `RwLock`, saved as
//! one JSON file (`DATA/state.json`) written atomically.
//!
//! Two write paths, for two promises:
//! - [`State::commit`] (admin changes, imports): applied and written to disk before it returns,
//!   so whatever was acknowledged survives a crash.
//! - [`State::record`] (inventory updates from checks): applied in memory and marked dirty; the
//!   server flushes dirty state on a timer and at shutdown, so a check never waits for fsync.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use ucupdate_protocol::{DeviceType, FileName, FirmwareVersion, UpdateKey};

use crate::model::{FileMeta, InventoryEntry, Model, Rule, RuleError, TestDevice};
use crate::store;

/// File name of the state file under the data directory.
pub const STATE_FILE: &str = "state.json";
const FORMAT: u32 = 1;

/// Why the state could not be loaded, changed or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The state file is not what this version writes.
    #[error("{path}: corrupt state file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The requested rule change is not possible.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A request named something invalid (key, version, file name, test device).
    #[error("{0}")]
    Invalid(String),
}

impl StateError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        StateError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Behaviour switches that affect rule changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateOptions {
    /// R2's RoundTable rule: RoundTable updates are deployed (approved) on import.
    pub deploy_roundtable_on_import: bool,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    format: u32,
    rules: Vec<RuleRecord>,
    test_devices: Vec<String>,
    versions: Vec<VersionRecord>,
    inventory: Vec<InventoryEntry>,
}

/// A rule as listed by the CLI, the admin API and the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRecord {
    pub key: UpdateKey,
    #[serde(flatten)]
    pub rule: Rule,
}

#[derive(Serialize, Deserialize)]
struct VersionRecord {
    key: UpdateKey,
    version: FirmwareVersion,
    files: Vec<FileMeta>,
}

/// The state of one data directory.
#[derive(Debug)]
pub struct State {
    data_dir: PathBuf,
    model: RwLock<Model>,
    /// Serialises state-file writes so that a later snapshot is never overwritten by an older.
    write_lock: Mutex<()>,
    dirty: AtomicBool,
    options: StateOptions,
}

impl State {
    /// Opens (creating if needed) the data directory and loads its state file, if any.
    pub fn open(data_dir: &Path, options: StateOptions) -> Result<Self, StateError> {
        crate::disk::create_private_dir(data_dir).map_err(|e| StateError::io(data_dir, e))?;
        let path = data_dir.join(STATE_FILE);
        let model = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|reason| StateError::Corrupt {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Model::default(),
            Err(e) => return Err(StateError::io(&path, e)),
        };
        Ok(State {
            data_dir: data_dir.to_owned(),
            model: RwLock::new(model),
            write_lock: Mutex::new(()),
            dirty: AtomicBool::new(false),
            options,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn options(&self) -> StateOptions {
        self.options
    }

    /// Whether a new version for `key` is approved on import (R2's RoundTable rule).
    pub fn deploys_on_import(&self, key: &UpdateKey) -> bool {
        self.options.deploy_roundtable_on_import && key.device_type == DeviceType::RoundTable
    }

    /// Reads the model.
    pub fn read<R>(&self, f: impl FnOnce(&Model) -> R) -> R {
        f(&self.model.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Changes the model without waiting for the disk (inventory); flushed later.
    pub fn record<R>(&self, f: impl FnOnce(&mut Model) -> R) -> R {
        let out = f(&mut self.model.write().unwrap_or_else(PoisonError::into_inner));
        self.dirty.store(true, Ordering::Release);
        out
    }

    /// Changes the model and writes the state file before returning (blocking I/O).
    pub fn commit<R>(
        &self,
        f: impl FnOnce(&mut Model) -> Result<R, RuleError>,
    ) -> Result<R, StateError> {
        let out = f(&mut self.model.write().unwrap_or_else(PoisonError::into_inner))?;
        self.dirty.store(true, Ordering::Release);
        self.persist()?;
        Ok(out)
    }

    /// Writes the state file now (blocking I/O).
    pub fn persist(&self) -> Result<(), StateError> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.persist_locked()
    }

    /// The write itself; the caller holds `write_lock`.
    fn persist_locked(&self) -> Result<(), StateError> {
        self.dirty.store(false, Ordering::Release);
        let bytes = self.read(encode);
        let path = self.data_dir.join(STATE_FILE);
        store::write_atomic(&path, &bytes).map_err(|e| {
            self.dirty.store(true, Ordering::Release);
            StateError::io(&path, e)
        })
    }

    /// Writes the state file if something changed since the last write.
    pub fn flush(&self) -> Result<(), StateError> {
        // Under the lock, so that a write already in progress has finished (renamed) when
        // this returns, even if it is that write which cleared the dirty flag.
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.dirty.load(Ordering::Acquire) {
            self.persist_locked()?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------------------
    // Acknowledged operations shared by the CLI, the admin API and `Control`.
    // ------------------------------------------------------------------------------------------

    pub fn rules(&self) -> Vec<RuleRecord> {
        self.read(|m| {
            m.rules
                .iter()
                .map(|(key, rule)| RuleRecord {
                    key: key.clone(),
                    rule: rule.clone(),
                })
                .collect()
        })
    }

    pub fn approve(&self, key: &UpdateKey) -> Result<Rule, StateError> {
        self.commit(|m| m.approve(key))
    }

    pub fn restore(&self, key: &UpdateKey) -> Result<Rule, StateError> {
        self.commit(|m| m.restore(key))
    }

    pub fn reset(&self, key: &UpdateKey) -> Result<Rule, StateError> {
        self.commit(|m| m.reset(key))
    }

    /// Adds a test device; `true` if it was not there yet.
    pub fn add_test_device(&self, device: TestDevice) -> Result<bool, StateError> {
        self.commit(|m| Ok(m.test_devices.insert(device)))
    }

    /// Removes a test device; `true` if it was there.
    pub fn remove_test_device(&self, device: &TestDevice) -> Result<bool, StateError> {
        self.commit(|m| Ok(m.test_devices.remove(device)))
    }

    pub fn test_devices(&self) -> Vec<TestDevice> {
        self.read(|m| m.test_devices.iter().cloned().collect())
    }

    pub fn inventory(&self) -> Vec<InventoryEntry> {
        self.read(|m| m.inventory.values().cloned().collect())
    }

    /// Stores the files of a version (they are already on disk, see [`store`]) and makes it
    /// pending (or approved, for a RoundTable deployed on import). Returns the rule.
    pub fn import_version(
        &self,
        key: UpdateKey,
        version: FirmwareVersion,
        files: Vec<FileMeta>,
    ) -> Result<Rule, StateError> {
        let deploy = self.deploys_on_import(&key);
        self.commit(|m| {
            m.import(key.clone(), version, files, deploy);
            Ok(m.rules[&key].clone())
        })
    }

    /// Stores one file's bytes into a version and makes that version pending.
    pub fn publish_bytes(
        &self,
        key: &UpdateKey,
        version: FirmwareVersion,
        name: FileName,
        bytes: &[u8],
    ) -> Result<FileMeta, StateError> {
        let dir = store::version_dir(&self.data_dir, key, version);
        let meta = store::store_file(&self.data_dir, key, version, name, &mut &bytes[..])
            .map_err(|e| StateError::io(&dir, e))?;
        self.publish_meta(key, version, meta.clone())?;
        Ok(meta)
    }

    /// Registers a file already committed to the store and makes its version pending.
    pub fn publish_meta(
        &self,
        key: &UpdateKey,
        version: FirmwareVersion,
        meta: FileMeta,
    ) -> Result<Rule, StateError> {
        let deploy = self.deploys_on_import(key);
        self.commit(|m| {
            m.publish_file(key.clone(), version, meta, deploy);
            Ok(m.rules[key].clone())
        })
    }
}

fn encode(model: &Model) -> Vec<u8> {
    let file = StateFile {
        format: FORMAT,
        rules: model
            .rules
            .iter()
            .map(|(key, rule)| RuleRecord {
                key: key.clone(),
                rule: rule.clone(),
            })
            .collect(),
        test_devices: model.test_devices.iter().map(ToString::to_string).collect(),
        versions: model
            .catalog
            .iter()
            .map(|((key, version), files)| VersionRecord {
                key: key.clone(),
                version: *version,
                files: files.clone(),
            })
            .collect(),
        inventory: model.inventory.values().cloned().collect(),
    };
    // Serialising plain data with string keys cannot fail.
    serde_json::to_vec_pretty(&file).unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Result<Model, String> {
    let file: StateFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.format != FORMAT {
        return Err(format!(
            "format {} (this server writes {FORMAT})",
            file.format
        ));
    }
    let mut model = Model::default();
    for r in file.rules {
        model.rules.insert(r.key, r.rule);
    }
    for t in file.test_devices {
        model
            .test_devices
            .insert(t.parse::<TestDevice>().map_err(|e| e.to_string())?);
    }
    for v in file.versions {
        model.catalog.insert((v.key, v.version), v.files);
    }
    for e in file.inventory {
        model.inventory.insert(e.device.clone(), e);
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> UpdateKey {
        "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap()
    }

    #[test]
    fn committed_changes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path(), StateOptions::default()).unwrap();
        let name = FileName::new("CPE.nbt").unwrap();
        state
            .publish_bytes(&key(), "2.0.0.0".parse().unwrap(), name, b"image")
            .unwrap();
        state.approve(&key()).unwrap();
        state
            .add_test_device("serial:PCX-9".parse().unwrap())
            .unwrap();
        drop(state);
        let again = State::open(dir.path(), StateOptions::default()).unwrap();
        let rules = again.rules();
        assert_eq!(rules[0].rule.approved, Some("2.0.0.0".parse().unwrap()));
        assert_eq!(again.test_devices(), vec!["serial:PCX-9".parse().unwrap()]);
        again.read(|m| assert_eq!(m.catalog.values().next().unwrap()[0].size, 5));
    }

    #[test]
    fn recorded_changes_wait_for_flush() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path(), StateOptions::default()).unwrap();
        state.record(|m| {
            m.test_devices.insert("serial:A1".parse().unwrap());
        });
        assert!(
            !dir.path().join(STATE_FILE).exists(),
            "record must not write"
        );
        state.flush().unwrap();
        assert_eq!(
            State::open(dir.path(), StateOptions::default())
                .unwrap()
                .test_devices()
                .len(),
            1
        );
    }

    #[test]
    fn corrupt_state_is_refused_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{ half").unwrap();
        assert!(matches!(
            State::open(dir.path(), StateOptions::default()),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn roundtable_deploys_on_import_when_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(
            dir.path(),
            StateOptions {
                deploy_roundtable_on_import: true,
            },
        )
        .unwrap();
        let rt: UpdateKey = "RoundTable/Microsoft/RoundTable/A/ENU/RoundTable"
            .parse()
            .unwrap();
        let rule = state
            .import_version(rt, "1.0.0.1".parse().unwrap(), Vec::new())
            .unwrap();
        assert_eq!(
            (rule.pending, rule.approved),
            (None, Some("1.0.0.1".parse().unwrap()))
        );
        let rule = state
            .import_version(key(), "1.0.0.1".parse().unwrap(), Vec::new())
            .unwrap();
        assert_eq!(rule.approved, None, "only RoundTable deploys on import");
    }

    /// A state file written by an earlier build reads back and re-encodes to the same bytes:
    /// the on-disk format does not move when the serde plumbing does.
    #[test]
    fn an_old_state_file_re_encodes_to_the_same_bytes() {
        let old = include_bytes!("../tests/fixtures/state-v1.json");
        let model = decode(old).unwrap();
        assert_eq!(model.rules.len(), 2);
        assert_eq!(model.catalog.len(), 2);
        assert_eq!(model.test_devices.len(), 2);
        assert_eq!(model.inventory.len(), 1);
        assert_eq!(
            String::from_utf8(encode(&model)).unwrap(),
            std::str::from_utf8(old).unwrap()
        );
    }
}
