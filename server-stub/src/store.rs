//! The update files on disk: `DATA/store/<StorePath::relative_dir>/<file>`.
//!
//! A file is first written under `DATA/tmp/`, hashed while it is written, fsynced and then
//! renamed into the store, so that a reader never sees half a file and the SHA-256 and size in
//! the catalog are exactly those of the bytes served. Paths are only ever built from
//! [`StorePath`] and [`FileName`], which cannot escape the store.
//!
//! Every durable write of the crate outside the state database (store files, device logs,
//! the CA PEM) goes through one temp-file-then-rename path, `TempFile`: [`StagedFile`] adds
//! the hash, [`write_atomic`] is the in-memory shorthand. Everything here is
//! created 0600 and its directories 0700 ([`crate::disk`]).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use ucupdate_protocol::{FileName, FirmwareVersion, Sha256Digest, StoreKind, StorePath, UpdateKey};

use crate::disk;
use crate::model::FileMeta;

/// The store's directory under the data directory.
pub const STORE_DIR: &str = "store";

/// The directory of one version (`DATA/store/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE`).
pub fn version_dir(data_dir: &Path, key: &UpdateKey, version: FirmwareVersion) -> PathBuf {
    let path = StorePath {
        kind: StoreKind::Internal,
        key: key.clone(),
        version,
    };
    data_dir.join(STORE_DIR).join(path.relative_dir())
}

/// Where a parsed store URL lives on disk (the same directory for both shares).
pub fn file_path(data_dir: &Path, path: &StorePath, file: &FileName) -> PathBuf {
    data_dir
        .join(STORE_DIR)
        .join(path.relative_dir())
        .join(file.as_str())
}

/// A temp file that becomes its target in one rename: written, fsynced, renamed over the
/// target, then the directory fsynced, so a crash leaves the old content or the new, never
/// half of one. Dropped without [`TempFile::commit`], it removes itself.
struct TempFile {
    file: File,
    /// Empty once committed.
    path: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    /// A new temp file in `dir`, which must be on the target's file system (a rename does
    /// not cross file systems). The name is unique per process, call and chance, so two
    /// writers of one target never share a temp file.
    fn create(dir: &Path, stem: &str) -> io::Result<Self> {
        disk::create_private_dir(dir)?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(
            ".{stem}.{}-{n}-{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let file = disk::private_file()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempFile { file, path })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    /// Makes the content durable and moves it to `target`, replacing what was there.
    fn commit(mut self, target: &Path) -> io::Result<()> {
        self.file.flush()?;
        self.file.sync_all()?;
        let dir = target
            .parent()
            .ok_or_else(|| io::Error::other("target has no parent"))?;
        disk::create_private_dir(dir)?;
        fs::rename(&self.path, target)?;
        self.path = PathBuf::new();
        sync_dir(dir)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // An abandoned write leaves nothing behind.
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A file being written under `DATA/tmp/`, hashed as it goes.
pub struct StagedFile {
    temp: TempFile,
    hasher: Sha256,
    size: u64,
}

impl StagedFile {
    pub fn new(data_dir: &Path) -> io::Result<Self> {
        Ok(StagedFile {
            temp: TempFile::create(&data_dir.join("tmp"), "stage")?,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The SHA-256 of what was written so far (a catalog is signed before the files move).
    pub fn sha256(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.temp.write_all(bytes)?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    pub fn copy_from(&mut self, reader: &mut dyn Read) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            self.write(&buf[..n])?;
        }
    }

    /// Makes the file durable and moves it to `target`, replacing what was there.
    pub fn commit(self, target: &Path, name: FileName) -> io::Result<FileMeta> {
        let StagedFile { temp, hasher, size } = self;
        temp.commit(target)?;
        let digest: [u8; 32] = hasher.finalize().into();
        Ok(FileMeta {
            name,
            size,
            sha256: Sha256Digest(digest),
        })
    }
}

/// Stores one file of a version from a reader.
pub fn store_file(
    data_dir: &Path,
    key: &UpdateKey,
    version: FirmwareVersion,
    name: FileName,
    reader: &mut dyn Read,
) -> io::Result<FileMeta> {
    let mut staged = StagedFile::new(data_dir)?;
    staged.copy_from(reader)?;
    staged.commit(
        &version_dir(data_dir, key, version).join(name.as_str()),
        name,
    )
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content: a
/// `TempFile` beside `path`, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent"))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let mut temp = TempFile::create(dir, name)?;
    temp.write_all(bytes)?;
    temp.commit(path)
}

/// Makes a rename durable (the directory entry itself is data on POSIX file systems).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_file_is_hashed_and_placed_in_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let key: UpdateKey = "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap();
        let version = "1.0.522.101".parse().unwrap();
        let meta = store_file(
            dir.path(),
            &key,
            version,
            FileName::new("CPE.nbt").unwrap(),
            &mut &b"abc"[..],
        )
        .unwrap();
        assert_eq!(meta.size, 3);
        assert_eq!(
            meta.sha256.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let on_disk = dir
            .path()
            .join("store/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE/CPE.nbt");
        assert_eq!(fs::read(on_disk).unwrap(), b"abc");
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "staging left a file behind"
        );
    }

    #[test]
    fn an_abandoned_write_leaves_nothing_and_writers_never_share_a_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = TempFile::create(dir.path(), "state.json").unwrap();
        let second = TempFile::create(dir.path(), "state.json").unwrap();
        assert_ne!(first.path, second.path);
        first.write_all(b"half").unwrap();
        drop(first);
        drop(second);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut staged = StagedFile::new(dir.path()).unwrap();
        staged.write(b"abandoned upload").unwrap();
        drop(staged);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
