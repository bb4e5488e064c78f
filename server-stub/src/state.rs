//! The shared, persistent service state: the [`Model`] in memory behind an `RwLock`, stored
//! in an SQLite database (`DATA/state.sqlite`, see [`crate::db`]). A JSON state file of
//! earlier versions (`DATA/state.json`) is migrated into the database on the first start and
//! then renamed `state.json.migrated`.
//!
//! Two write paths, for two promises:
//! - [`State::commit`] (admin changes, imports): applied and written to the database (one
//!   fsynced transaction) before it returns, so whatever was acknowledged survives a crash.
//! - [`State::record_check`] (inventory updates from checks): applied in memory and the device
//!   marked dirty; the server flushes dirty devices on a timer and at shutdown, one row each in
//!   one transaction, so a check never waits for fsync and a flush costs what changed.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use ucupdate_protocol::{DeviceType, FileName, FirmwareVersion, UpdateKey};

use ucupdate_protocol::CheckRequest;

use crate::db::{self, Db, DbError, InventoryChange};
use crate::model::devices::{DeviceError, NamedTestDevice, TestDeviceId};
use crate::model::rule_ref::{rule_id, rule_identity, RuleRef};
use crate::model::{FileMeta, InventoryEntry, Model, Rule, RuleError, TestDevice};
use crate::store;

/// File name of the JSON state file of earlier versions, migrated on the first start.
pub const STATE_FILE: &str = "state.json";
/// What a migrated [`STATE_FILE`] is renamed to (kept as a backup, never read again).
pub const MIGRATED_STATE_FILE: &str = "state.json.migrated";
pub use crate::db::DB_FILE;
const FORMAT: u32 = 1;
/// The settings row of the device-update configuration.
const DEVICE_UPDATE_SETTING: &str = "DeviceUpdateConfiguration";

/// Why the state could not be loaded, changed or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing a file failed.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    /// The state file or database is not what this version writes.
    #[error("{path}: corrupt state: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The database refused a read or a write.
    #[error("{path}: {error}")]
    Db {
        path: PathBuf,
        error: rusqlite::Error,
    },
    /// The requested rule change is not possible.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The requested test-device change is not possible.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A request named something invalid (key, version, file name, test device).
    #[error("{0}")]
    Invalid(String),
}

impl StateError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        StateError::Io {
            path: path.to_owned(),
            error: source,
        }
    }

    fn db(path: &Path, e: DbError) -> Self {
        match e {
            DbError::Sqlite(source) => StateError::Db {
                path: path.to_owned(),
                error: source,
            },
            DbError::Corrupt(reason) => StateError::Corrupt {
                path: path.to_owned(),
                reason,
            },
            DbError::Io { path, error } => StateError::io(&path, error),
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

/// A rule as listed by the CLI and the admin API (and the JSON state file of earlier versions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRecord {
    pub key: UpdateKey,
    #[serde(flatten)]
    pub rule: Rule,
}

/// A rule as the CLI and the admin API show it: the cmdlets' identity
/// (`service:WebServer:<pool>/<id>`) and id besides the key and the three versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleView {
    pub identity: String,
    pub id: String,
    pub key: UpdateKey,
    #[serde(flatten)]
    pub rule: Rule,
}

impl RuleRecord {
    /// This rule as shown on the pool `pool`.
    pub fn view(&self, pool: &str) -> RuleView {
        RuleView {
            identity: rule_identity(pool, &self.key),
            id: rule_id(&self.key),
            key: self.key.clone(),
            rule: self.rule.clone(),
        }
    }
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
    /// The database; its lock also serialises writes, so a later snapshot is never
    /// overwritten by an older one.
    db: Mutex<Db>,
    /// Devices whose inventory entry changed (or went) since the last flush.
    dirty_devices: Mutex<BTreeSet<String>>,
    /// Set by [`State::record`] (any change, unknown which): the next flush writes it all.
    dirty_all: AtomicBool,
    options: StateOptions,
}

impl State {
    /// Opens (creating if needed) the data directory and its database; migrates a JSON state
    /// file of an earlier version into a new database.
    pub fn open(data_dir: &Path, options: StateOptions) -> Result<Self, StateError> {
        crate::disk::create_private_dir(data_dir).map_err(|e| StateError::io(data_dir, e))?;
        let legacy = data_dir.join(STATE_FILE);
        let db_path = data_dir.join(DB_FILE);
        let mut migrated = false;
        let (db, created) = Db::open(data_dir, || match std::fs::read(&legacy) {
            Ok(bytes) => {
                migrated = true;
                decode(&bytes).map_err(DbError::Corrupt)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Model::default()),
            Err(e) => Err(DbError::Corrupt(format!("{}: {e}", legacy.display()))),
        })
        .map_err(|e| match e {
            // A bad JSON file is reported as the JSON file, not the database.
            DbError::Corrupt(reason) if migrated => StateError::Corrupt {
                path: legacy.clone(),
                reason,
            },
            e => StateError::db(&db_path, e),
        })?;
        if legacy.exists() {
            // Migrated now, or a crash came between the migration's commit and this rename:
            // either way the database holds the state and the JSON file is only a backup.
            if !created {
                tracing::warn!(path = %legacy.display(), "ignoring a JSON state file: the database is the state");
            }
            let aside = data_dir.join(MIGRATED_STATE_FILE);
            std::fs::rename(&legacy, &aside).map_err(|e| StateError::io(&legacy, e))?;
            store::sync_dir(data_dir).map_err(|e| StateError::io(data_dir, e))?;
            if created {
                tracing::info!(from = %legacy.display(), to = %db_path.display(), "state migrated");
            }
        }
        let model = db.load().map_err(|e| StateError::db(&db_path, e))?;
        Ok(State {
            data_dir: data_dir.to_owned(),
            model: RwLock::new(model),
            db: Mutex::new(db),
            dirty_devices: Mutex::new(BTreeSet::new()),
            dirty_all: AtomicBool::new(false),
            options,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Database rows written by this `State` so far (what flushes cost; tests, benchmarks).
    pub fn rows_written(&self) -> u64 {
        self.db
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total_changes()
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

    /// Changes the model without waiting for the disk; flushed later, all of it (prefer
    /// [`State::record_check`], whose flush writes only the device it changed).
    pub fn record<R>(&self, f: impl FnOnce(&mut Model) -> R) -> R {
        let out = f(&mut self.model.write().unwrap_or_else(PoisonError::into_inner));
        self.dirty_all.store(true, Ordering::Release);
        out
    }

    /// Records a check in the inventory (at most `cap` devices, see
    /// [`Model::record_check`]) without waiting for the disk; the flush writes this device's
    /// row and deletes those of the devices it made the inventory forget.
    pub fn record_check(
        &self,
        request: &CheckRequest,
        client: &str,
        outcome: &str,
        now_unix: u64,
        cap: usize,
    ) {
        let Some(device) = crate::model::device_id(&request.identity) else {
            return;
        };
        // Model first, then the dirty set: the order every path takes both locks in.
        let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
        let mut dirty = self
            .dirty_devices
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A device already waiting for the next flush (most, between flushes) costs no copy.
        if !dirty.contains(&device) {
            dirty.insert(device.clone());
        }
        let gone = model.record_check_of(device, request, client, outcome, now_unix, cap);
        dirty.extend(gone);
    }

    /// Changes the model and writes the admin tables before returning (blocking I/O).
    pub fn commit<R, E: Into<StateError>>(
        &self,
        f: impl FnOnce(&mut Model) -> Result<R, E>,
    ) -> Result<R, StateError> {
        let out = f(&mut self.model.write().unwrap_or_else(PoisonError::into_inner))
            .map_err(Into::into)?;
        let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        let result = {
            let model = self.model.read().unwrap_or_else(PoisonError::into_inner);
            db.write_admin(&model)
        };
        result.map_err(|e| StateError::db(db.path(), e))?;
        Ok(out)
    }

    /// Writes everything not yet on disk now (blocking I/O): the admin tables and the
    /// inventory changes (shutdown).
    pub fn persist(&self) -> Result<(), StateError> {
        let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        let result = self.read(|m| db.write_admin(m));
        result.map_err(|e| StateError::db(db.path(), e))?;
        self.flush_locked(&mut db, true)
    }

    /// Writes the inventory changes since the last write, if any (the flush timer).
    pub fn flush(&self) -> Result<(), StateError> {
        // Under the database lock, so that a write already in progress has finished when
        // this returns, even if it is that write which took the dirty devices.
        let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        self.flush_locked(&mut db, false)
    }

    /// The flush itself; the caller holds the database lock. Holds the model's read lock only
    /// while it copies the changed entries, never during the write.
    fn flush_locked(&self, db: &mut Db, admin_written: bool) -> Result<(), StateError> {
        let all = self.dirty_all.swap(false, Ordering::AcqRel);
        let devices = std::mem::take(
            &mut *self
                .dirty_devices
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if !all && devices.is_empty() {
            return Ok(());
        }
        let changes: Vec<InventoryChange> = self.read(|m| {
            let row = |e: &InventoryEntry| Some((e.last_check_unix, db::entry_json(e)));
            if all {
                m.inventory
                    .values()
                    .map(|e| (e.device.clone(), row(e)))
                    .collect()
            } else {
                devices
                    .iter()
                    .map(|d| (d.clone(), m.inventory.get(d).and_then(row)))
                    .collect()
            }
        });
        let mut result = db.write_inventory(&changes, all);
        if all && !admin_written && result.is_ok() {
            result = self.read(|m| db.write_admin(m));
        }
        result.map_err(|e| {
            // Not written: the next flush tries again.
            if all {
                self.dirty_all.store(true, Ordering::Release);
            }
            self.dirty_devices
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(devices);
            StateError::db(db.path(), e)
        })
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

    /// The stored device-update settings (`PUT /admin/configuration`), else the defaults.
    pub fn device_update_configuration(
        &self,
    ) -> Result<crate::settings::DeviceUpdateConfiguration, StateError> {
        let db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        let stored = db
            .setting(DEVICE_UPDATE_SETTING)
            .map_err(|e| StateError::db(db.path(), e))?;
        match stored {
            None => Ok(Default::default()),
            Some(json) => serde_json::from_str(&json).map_err(|e| StateError::Corrupt {
                path: db.path().to_owned(),
                reason: format!("stored {DEVICE_UPDATE_SETTING}: {e}"),
            }),
        }
    }

    /// Stores the device-update settings (before the change is answered).
    pub fn set_device_update_configuration(
        &self,
        settings: &crate::settings::DeviceUpdateConfiguration,
    ) -> Result<(), StateError> {
        let json = serde_json::to_string(settings).unwrap_or_default();
        let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        let result = db.put_setting(DEVICE_UPDATE_SETTING, &json);
        result.map_err(|e| StateError::db(db.path(), e))
    }

    /// The key of the rule `r` names on the pool `pool`.
    pub fn resolve(&self, r: &RuleRef, pool: &str) -> Result<UpdateKey, StateError> {
        Ok(self.read(|m| m.resolve(r, pool))?)
    }

    /// One rule (`rules show`, `GET /admin/rules/<rule>`).
    pub fn rule_view(&self, r: &RuleRef, pool: &str) -> Result<RuleView, StateError> {
        let key = self.resolve(r, pool)?;
        self.read(|m| m.rules.get(&key).cloned())
            .map(|rule| {
                RuleRecord {
                    key: key.clone(),
                    rule,
                }
                .view(pool)
            })
            .ok_or_else(|| RuleError::UnknownRule(Box::new(key)).into())
    }

    /// Remove-CsDeviceUpdateRule: the rule goes, its files stay until [`State::clear_files`].
    pub fn remove_rule(&self, key: &UpdateKey) -> Result<Rule, StateError> {
        self.commit(|m| m.remove_rule(key))
    }

    /// Clear-CsDeviceUpdateFile: deletes the stored versions no rule names (pending, approved
    /// or restore), from the catalog first (so nothing offers them) and then from the disk.
    /// Returns what went.
    pub fn clear_files(&self) -> Result<Vec<(UpdateKey, FirmwareVersion)>, StateError> {
        self.clear_files_of(None)
    }

    /// [`State::clear_files`] limited to the versions of `key` when given (what a client that
    /// published under its own keys removes without touching anyone else's leftovers).
    pub fn clear_files_of(
        &self,
        key: Option<&UpdateKey>,
    ) -> Result<Vec<(UpdateKey, FirmwareVersion)>, StateError> {
        let gone = self.commit(|m| {
            let mut gone = m.unreferenced_versions();
            gone.retain(|(k, _)| key.is_none_or(|key| k == key));
            for v in &gone {
                m.catalog.remove(v);
            }
            Ok::<_, StateError>(gone)
        })?;
        let root = self.data_dir.join(store::STORE_DIR);
        for (key, version) in &gone {
            let dir = store::version_dir(&self.data_dir, key, *version);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StateError::io(&dir, e)),
            }
            // Empty parents go too, up to the store itself (remove_dir refuses a full one).
            let mut parent = dir.parent();
            while let Some(p) = parent.filter(|p| *p != root && p.starts_with(&root)) {
                if std::fs::remove_dir(p).is_err() {
                    break;
                }
                parent = p.parent();
            }
        }
        Ok(gone)
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

    /// Adds a test device under a generated name unless one names it already; `true` if
    /// added (the unnamed form).
    pub fn add_test_device(&self, device: TestDevice) -> Result<bool, StateError> {
        self.commit(|m| Ok::<_, StateError>(m.add_test_device(device)))
    }

    /// Removes every test device that names `device`; `true` if one did (the unnamed form).
    pub fn remove_test_device(&self, device: &TestDevice) -> Result<bool, StateError> {
        self.commit(|m| Ok::<_, StateError>(m.remove_test_device(device)))
    }

    /// The devices the test devices name, each once.
    pub fn test_devices(&self) -> Vec<TestDevice> {
        self.read(Model::test_device_list)
    }

    /// Every named test device, by identity.
    pub fn named_test_devices(&self) -> Vec<NamedTestDevice> {
        self.read(|m| m.test_devices.values().cloned().collect())
    }

    /// One named test device.
    pub fn named_test_device(&self, id: &TestDeviceId) -> Result<NamedTestDevice, StateError> {
        self.read(|m| m.test_device(id).cloned())
            .ok_or_else(|| DeviceError::Unknown(id.to_string()).into())
    }

    /// New-CsTestDevice.
    pub fn add_named_test_device(
        &self,
        id: TestDeviceId,
        device: TestDevice,
    ) -> Result<(), StateError> {
        self.commit(|m| m.add_named(id, device))
    }

    /// Set-CsTestDevice.
    pub fn set_named_test_device(
        &self,
        id: &TestDeviceId,
        device: TestDevice,
    ) -> Result<(), StateError> {
        self.commit(|m| m.set_named(id, device))
    }

    /// Remove-CsTestDevice.
    pub fn remove_named_test_device(
        &self,
        id: &TestDeviceId,
    ) -> Result<NamedTestDevice, StateError> {
        self.commit(|m| m.remove_named(id))
    }

    pub fn inventory(&self) -> Vec<InventoryEntry> {
        self.read(|m| m.inventory.values().cloned().collect())
    }

    /// Forgets the inventory entries of every device of one model (device type, brand, model,
    /// revision, locale) and writes that before returning (blocking I/O). Returns how many
    /// went.
    pub fn forget_model(&self, model: [&str; 5]) -> Result<usize, StateError> {
        let gone = self
            .model
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .forget_model(model);
        let count = gone.len();
        self.dirty_devices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(gone);
        self.flush()?;
        Ok(count)
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
            Ok::<_, StateError>(m.rules[&key].clone())
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
            Ok::<_, StateError>(m.rules[key].clone())
        })
    }
}

/// The JSON state file of earlier versions (tests write one to check the migration).
#[cfg(test)]
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
        test_devices: model
            .test_device_list()
            .iter()
            .map(ToString::to_string)
            .collect(),
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

/// Reads the JSON state file of earlier versions (the migration's input).
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
        // The JSON file's test devices had no names: they get generated ones.
        model.add_test_device(t.parse::<TestDevice>().map_err(|e| e.to_string())?);
    }
    for v in file.versions {
        model.catalog.insert((v.key, v.version), v.files);
    }
    for e in file.inventory {
        model.remember(e);
    }
    Ok(model)
}

#[cfg(test)]
mod tests;
