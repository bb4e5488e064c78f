//! Where the [`Model`] is stored: one SQLite database, `DATA/state.sqlite` (WAL journal,
//! `synchronous=FULL`, so a committed transaction survives a power cut), and the one-time
//! migration from the JSON state file of earlier versions (`DATA/state.json`).
//!
//! The database is storage only: it is read into a [`Model`] at start and written from one;
//! the decisions stay in [`crate::model`]. Two kinds of writes, for two kinds of data:
//! - the admin tables (rules, test devices, versions) are rewritten in one transaction per
//!   acknowledged change: they only grow by what an administrator imports, so the cost is
//!   bounded by the catalog, not by traffic;
//! - the inventory (which anonymous checks grow) is written per device: one `INSERT OR
//!   REPLACE` or `DELETE` for each device that changed since the last flush, batched in one
//!   transaction, so a flush costs what changed, not what is stored.
//!
//! Schema version 2 (`PRAGMA user_version`):
//! `rules(key, pending, approved, restore, rolled_back)`, `test_devices(identity, device)`
//! (named test devices, `global/NAME` or `site:SITE/NAME`), `versions(key, version, files
//! JSON)`, `inventory(device, last_check_unix, entry JSON)`, `settings(name, value JSON)`.
//! Version 1 had `test_devices(device)` without names and no `settings`; a version-1
//! database is migrated when opened, in one transaction: each test device gets its generated
//! name ([`crate::model::devices::generated_name`]) and keeps matching the same device.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use ucupdate_protocol::{FirmwareVersion, UpdateKey};

use crate::model::devices::TestDeviceId;
use crate::model::{FileMeta, InventoryEntry, Model, Rule, TestDevice};

/// File name of the database under the data directory.
pub const DB_FILE: &str = "state.sqlite";
/// The schema this version reads and writes.
pub const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
    CREATE TABLE rules (
        key TEXT PRIMARY KEY NOT NULL,
        pending TEXT,
        approved TEXT,
        restore TEXT,
        rolled_back INTEGER NOT NULL
    );
    CREATE TABLE test_devices (identity TEXT PRIMARY KEY NOT NULL, device TEXT NOT NULL);
    CREATE TABLE settings (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
    CREATE TABLE versions (
        key TEXT NOT NULL,
        version TEXT NOT NULL,
        files TEXT NOT NULL,
        PRIMARY KEY (key, version)
    );
    CREATE TABLE inventory (
        device TEXT PRIMARY KEY NOT NULL,
        last_check_unix INTEGER NOT NULL,
        entry TEXT NOT NULL
    );
";

/// A database problem: SQLite's error, or a row this version cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Corrupt(String),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// One inventory change: the entry to store, or `None` to delete the device.
pub type InventoryChange = (String, Option<(u64, String)>);

/// The open database.
#[derive(Debug)]
pub struct Db {
    conn: Connection,
    path: PathBuf,
}

impl Db {
    /// Opens (creating if needed) `DATA/state.sqlite`. A new database is created with the
    /// schema and `initial` (the migrated JSON state, or an empty model) in one transaction:
    /// a crash in between leaves a database with no schema, and the next start does it again.
    pub fn open(
        data_dir: &Path,
        initial: impl FnOnce() -> Result<Model, DbError>,
    ) -> Result<(Db, bool), DbError> {
        let path = data_dir.join(DB_FILE);
        // SQLite gives its -wal and -shm files the database file's mode, and would create that
        // file with the process umask (often 0644): create it 0600 first.
        crate::disk::private_file()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| DbError::Io {
                path: path.clone(),
                error,
            })?;
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: a reader (the CLI's `inventory`) never blocks the server's writes; FULL: a
        // commit is fsynced before it returns, so "acknowledged" means "on disk".
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The WAL file is truncated back to this after a checkpoint, so a burst of inventory
        // writes does not leave a large file behind.
        conn.pragma_update(None, "journal_size_limit", 4 * 1024 * 1024)?;
        // IMMEDIATE: the write lock is taken before the version is read, so two processes
        // opening a new data directory at once cannot both create the schema.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let created = match version {
            0 => {
                let model = initial()?;
                tx.execute_batch(SCHEMA)?;
                write_admin(&tx, &model)?;
                for entry in model.inventory.values() {
                    upsert_inventory(
                        &tx,
                        entry.device.as_str(),
                        entry.last_check_unix,
                        &entry_json(entry),
                    )?;
                }
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                tx.commit()?;
                true
            }
            1 => {
                migrate_v1(&tx)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                tx.commit()?;
                false
            }
            SCHEMA_VERSION => {
                tx.commit()?;
                false
            }
            other => {
                return Err(DbError::Corrupt(format!(
                    "schema version {other} (this server reads {SCHEMA_VERSION})"
                )))
            }
        };
        Ok((Db { conn, path }, created))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the whole model.
    pub fn load(&self) -> Result<Model, DbError> {
        let mut model = Model::default();
        let corrupt =
            |what: &str, e: &dyn std::fmt::Display| DbError::Corrupt(format!("{what}: {e}"));
        let mut rules = self
            .conn
            .prepare("SELECT key, pending, approved, restore, rolled_back FROM rules")?;
        let rows = rules.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                [r.get::<_, Option<String>>(1)?, r.get(2)?, r.get(3)?],
                r.get::<_, bool>(4)?,
            ))
        })?;
        for row in rows {
            let (key, [pending, approved, restore], rolled_back) = row?;
            let version = |v: Option<String>| {
                v.map(|v| v.parse::<FirmwareVersion>())
                    .transpose()
                    .map_err(|e| corrupt("rule version", &e))
            };
            let rule = Rule {
                pending: version(pending)?,
                approved: version(approved)?,
                restore: version(restore)?,
                rolled_back,
            };
            let key: UpdateKey = key.parse().map_err(|e| corrupt("rule key", &e))?;
            model.rules.insert(key, rule);
        }
        let mut devices = self
            .conn
            .prepare("SELECT identity, device FROM test_devices")?;
        let rows =
            devices.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (id, device) = row?;
            let id: TestDeviceId = id
                .parse()
                .map_err(|e| corrupt("test device identity", &e))?;
            let device: TestDevice = device.parse().map_err(|e| corrupt("test device", &e))?;
            model
                .add_named(id, device)
                .map_err(|e| corrupt("test device", &e))?;
        }
        let mut versions = self
            .conn
            .prepare("SELECT key, version, files FROM versions")?;
        let rows = versions.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (key, version, files) = row?;
            let key: UpdateKey = key.parse().map_err(|e| corrupt("version key", &e))?;
            let version: FirmwareVersion = version.parse().map_err(|e| corrupt("version", &e))?;
            let files: Vec<FileMeta> =
                serde_json::from_str(&files).map_err(|e| corrupt("version files", &e))?;
            model.catalog.insert((key, version), files);
        }
        let mut inventory = self.conn.prepare("SELECT entry FROM inventory")?;
        for entry in inventory.query_map([], |r| r.get::<_, String>(0))? {
            let entry: InventoryEntry =
                serde_json::from_str(&entry?).map_err(|e| corrupt("inventory entry", &e))?;
            model.remember(entry);
        }
        Ok(model)
    }

    /// Rewrites the admin tables from `model` in one transaction.
    pub fn write_admin(&mut self, model: &Model) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        write_admin(&tx, model)?;
        tx.commit()?;
        Ok(())
    }

    /// Applies inventory changes in one transaction; with `replace_all`, the table is emptied
    /// first (the changes are then the whole inventory).
    pub fn write_inventory(
        &mut self,
        changes: &[InventoryChange],
        replace_all: bool,
    ) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        if replace_all {
            tx.execute("DELETE FROM inventory", [])?;
        }
        for (device, change) in changes {
            match change {
                Some((seen, json)) => upsert_inventory(&tx, device, *seen, json)?,
                None => {
                    tx.prepare_cached("DELETE FROM inventory WHERE device = ?1")?
                        .execute([device])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The stored value of setting `name` (JSON), if any.
    pub fn setting(&self, name: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
                r.get::<_, String>(0)
            })
            .optional()?)
    }

    /// Stores setting `name` (one transaction, fsynced).
    pub fn put_setting(&mut self, name: &str, json: &str) -> Result<(), DbError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO settings (name, value) VALUES (?1, ?2)",
            [name, json],
        )?;
        Ok(())
    }

    /// Rows inserted, changed or deleted through this connection since it was opened: what
    /// a write cost (tests and benchmarks).
    pub fn total_changes(&self) -> u64 {
        self.conn.total_changes()
    }

    /// How many inventory rows are stored (tests and benchmarks).
    pub fn inventory_rows(&self) -> Result<u64, DbError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM inventory", [], |r| r.get::<_, i64>(0))
            .optional()?
            .map_or(0, |n| n.max(0) as u64))
    }
}

/// Version 1 to 2: named test devices (the old rows get their generated names, in the
/// order they sort) and the settings table.
fn migrate_v1(tx: &Transaction<'_>) -> Result<(), DbError> {
    let mut model = Model::default();
    {
        let mut old = tx.prepare("SELECT device FROM test_devices ORDER BY device")?;
        for device in old.query_map([], |r| r.get::<_, String>(0))? {
            let device: TestDevice = device?
                .parse()
                .map_err(|e| DbError::Corrupt(format!("test device: {e}")))?;
            model.add_test_device(device);
        }
    }
    tx.execute_batch(
        "DROP TABLE test_devices;
         CREATE TABLE test_devices (identity TEXT PRIMARY KEY NOT NULL, device TEXT NOT NULL);
         CREATE TABLE settings (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);",
    )?;
    let mut insert = tx.prepare("INSERT INTO test_devices (identity, device) VALUES (?1, ?2)")?;
    for t in model.test_devices.values() {
        insert.execute([t.id.to_string(), t.device.to_string()])?;
    }
    tracing::info!(
        test_devices = model.test_devices.len(),
        "state database migrated to schema 2 (named test devices)"
    );
    Ok(())
}

/// The JSON an inventory row stores.
pub fn entry_json(entry: &InventoryEntry) -> String {
    // Plain data with string keys: serialising cannot fail.
    serde_json::to_string(entry).unwrap_or_default()
}

fn upsert_inventory(
    tx: &Transaction<'_>,
    device: &str,
    seen: u64,
    json: &str,
) -> Result<(), DbError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO inventory (device, last_check_unix, entry) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        device,
        i64::try_from(seen).unwrap_or(i64::MAX),
        json
    ])?;
    Ok(())
}

fn write_admin(tx: &Transaction<'_>, model: &Model) -> Result<(), DbError> {
    tx.execute_batch("DELETE FROM rules; DELETE FROM test_devices; DELETE FROM versions;")?;
    let show = |v: Option<FirmwareVersion>| v.map(|v| v.to_string());
    let mut rules = tx.prepare_cached(
        "INSERT INTO rules (key, pending, approved, restore, rolled_back) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (key, rule) in &model.rules {
        rules.execute(params![
            key.to_string(),
            show(rule.pending),
            show(rule.approved),
            show(rule.restore),
            rule.rolled_back
        ])?;
    }
    let mut devices =
        tx.prepare_cached("INSERT INTO test_devices (identity, device) VALUES (?1, ?2)")?;
    for t in model.test_devices.values() {
        devices.execute([t.id.to_string(), t.device.to_string()])?;
    }
    let mut versions =
        tx.prepare_cached("INSERT INTO versions (key, version, files) VALUES (?1, ?2, ?3)")?;
    for ((key, version), files) in &model.catalog {
        let files = serde_json::to_string(files).unwrap_or_default();
        versions.execute(params![key.to_string(), version.to_string(), files])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ucupdate_protocol::DeviceIdentity;

    /// The schema of version 1, as that version created it.
    const SCHEMA_V1: &str = "
        CREATE TABLE rules (key TEXT PRIMARY KEY NOT NULL, pending TEXT, approved TEXT,
            restore TEXT, rolled_back INTEGER NOT NULL);
        CREATE TABLE test_devices (device TEXT PRIMARY KEY NOT NULL);
        CREATE TABLE versions (key TEXT NOT NULL, version TEXT NOT NULL, files TEXT NOT NULL,
            PRIMARY KEY (key, version));
        CREATE TABLE inventory (device TEXT PRIMARY KEY NOT NULL,
            last_check_unix INTEGER NOT NULL, entry TEXT NOT NULL);
        INSERT INTO rules VALUES ('UCPhone/Polycom/CX700/A/ENU/CPE', '2.0.0.0', '1.0.0.0', NULL, 0);
        INSERT INTO test_devices VALUES ('00-04-F2-00-01-76');
        INSERT INTO test_devices VALUES ('serial:PCX-1');
        PRAGMA user_version = 1;
    ";

    fn identity(mac: Option<&str>, serial: Option<&str>) -> DeviceIdentity {
        let seg = |t: &str| t.parse().unwrap();
        DeviceIdentity {
            device_type: "UCPhone".parse().unwrap(),
            brand: seg("Polycom"),
            model: seg("CX700"),
            revision: seg("A"),
            locale: seg("ENU"),
            mac: mac.map(|m| m.parse().unwrap()),
            serial: serial.map(|s| s.parse().unwrap()),
        }
    }

    /// A database written by schema version 1 (unnamed test devices) opens: the test devices
    /// get generated global names, still match their devices, and the file is version 2.
    #[test]
    fn a_version_1_database_migrates_to_named_test_devices() {
        let dir = tempfile::tempdir().unwrap();
        Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .execute_batch(SCHEMA_V1)
            .unwrap();
        let (db, created) = Db::open(dir.path(), || unreachable!("not a new database")).unwrap();
        assert!(!created);
        let model = db.load().unwrap();
        let ids: Vec<String> = model
            .test_devices
            .values()
            .map(|t| t.id.to_string())
            .collect();
        assert_eq!(ids, ["global/mac-00-04-F2-00-01-76", "global/serial-PCX-1"]);
        assert!(model.is_test_device(&identity(Some("00:04:f2:00:01:76"), None)));
        assert!(model.is_test_device(&identity(None, Some("PCX-1"))));
        assert!(!model.is_test_device(&identity(Some("00-04-F2-00-01-77"), None)));
        assert_eq!(model.rules.len(), 1, "the other tables are kept");
        let version: i64 = db
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        drop(db);
        // Opening again reads version 2 as it is.
        let (db, _) = Db::open(dir.path(), || unreachable!()).unwrap();
        assert_eq!(db.load().unwrap(), model);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .execute_batch("PRAGMA user_version = 99;")
            .unwrap();
        let err = Db::open(dir.path(), || unreachable!()).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
