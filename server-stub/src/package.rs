//! Vendor-style update packages: a directory or a `.cab` holding `updateInfo.xml` and the
//! update files. Importing one stores every file (hashed once) and makes each listed version
//! pending. [`write_dir`] and [`write_cab`] build packages for tests and the simulator.
//!
//! `updateInfo.xml` (our layout; the vendor's version attribute is where documented):
//! ```xml
//! <Updates>
//!   <Updates>
//!     <Update version="1.0.522.101" DeviceType="UCPhone" Brand="Polycom" Model="CX700"
//!             Revision="A" Locale="ENU" UpdateType="CPE">
//!       <File name="CPE.nbt" source="UCPhone/Polycom/CX700/A/ENU/CPE/1.0.522.101/CPE.nbt"/>
//!       <File name="CPE.cat"/>
//!     </Update>
//!   </Updates>
//! </Updates>
//! ```
//! One `Update` per rule key; `name` is the file's name in the store; `source` (optional,
//! default `name`) is its path inside the package, `/` or `\` separated, every component a
//! safe path segment. Names match without regard to case inside a cabinet.
//!
//! A package is untrusted input (docs/SERVER.md, "Importing packages"): from a directory only
//! regular files reached without a link are read ([`crate::disk`]); a cabinet's table is
//! checked before anything is decompressed (`cabinet`); every file is streamed into
//! `DATA/tmp/` under [`ImportLimits`], and only when all of them are staged are they moved into
//! the store, so a refused package leaves nothing behind. A source listed twice is refused:
//! one member is never written twice.

mod cabinet;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ucupdate_protocol::xml::{self, Element, Limits, Writer};
use ucupdate_protocol::{
    FileKind, FileName, FirmwareVersion, PathSegment, ProtocolError, UpdateKey,
};

use crate::catalog::{self, CatalogSigner};
use crate::disk;
use crate::model::Rule;
use crate::state::{State, StateError};
use crate::store::{self, StagedFile};

/// The index file every package carries.
pub const UPDATE_INFO: &str = "updateInfo.xml";

const INFO_LIMITS: Limits = Limits {
    max_bytes: 4 << 20,
    max_depth: 8,
    max_elements: 100_000,
};

/// Caps on what one import may unpack and store. The defaults are several times the largest
/// vendor package we know of (tens of MB) and far below what a bomb needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Largest single file, uncompressed, in bytes.
    pub max_file_bytes: u64,
    /// Largest sum of a package's files, uncompressed, in bytes.
    pub max_package_bytes: u64,
    /// Most cabinet members, and most `File` elements in `updateInfo.xml`.
    pub max_entries: usize,
}

impl ImportLimits {
    /// 128 MiB per file, 512 MiB per package, 1000 entries.
    pub const DEFAULT: ImportLimits = ImportLimits {
        max_file_bytes: 128 << 20,
        max_package_bytes: 512 << 20,
        max_entries: 1000,
    };
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits::DEFAULT
    }
}

/// Why a package could not be read or imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// Reading the package failed. (`error`, not `source`: the reason is in the message
    /// already, and a source would print it twice in a `{:#}` chain.)
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    /// `updateInfo.xml` is missing or wrong.
    #[error("updateInfo.xml: {0}")]
    Info(String),
    /// A file listed in `updateInfo.xml` is not in the package.
    #[error("file {0:?} listed in updateInfo.xml is not in the package")]
    MissingFile(String),
    /// The cabinet's table breaks a rule or a cap (checked before decompressing).
    #[error("cabinet: {0}")]
    Cabinet(String),
    /// `updateInfo.xml` lists one source, or one stored file, twice.
    #[error("updateInfo.xml lists {0} twice")]
    Duplicate(String),
    /// A file is larger than [`ImportLimits::max_file_bytes`].
    #[error("file {file:?} is larger than the cap of {limit} bytes (--max-file-bytes)")]
    FileTooLarge { file: String, limit: u64 },
    /// The files add up to more than [`ImportLimits::max_package_bytes`].
    #[error(
        "the package's files add up to more than the cap of {limit} bytes (--max-package-bytes)"
    )]
    PackageTooLarge { limit: u64 },
    /// More entries than [`ImportLimits::max_entries`].
    #[error("updateInfo.xml lists {count} files, more than the cap of {limit} (--max-entries)")]
    TooManyEntries { count: usize, limit: usize },
    /// Signing the catalog of an update that carries none failed.
    #[error("signing the catalog: {0}")]
    Sign(String),
    /// Storing the files or the rules failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// One version of one rule key in a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageEntry {
    pub key: UpdateKey,
    pub version: FirmwareVersion,
    pub files: Vec<(FileName, Vec<u8>)>,
}

/// What an import did to one rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    pub key: UpdateKey,
    pub version: FirmwareVersion,
    pub files: usize,
    pub rule: Rule,
}

struct InfoEntry {
    key: UpdateKey,
    version: FirmwareVersion,
    /// (store name, source path components)
    files: Vec<(FileName, Vec<PathSegment>)>,
}

fn source_of(entry: &PackageEntry, name: &FileName) -> String {
    let k = &entry.key;
    format!(
        "{}/{}/{}/{}/{}/{}/{}/{}",
        k.device_type, k.brand, k.model, k.revision, k.locale, k.update_type, entry.version, name
    )
}

/// The `updateInfo.xml` text for `entries`.
pub fn update_info(entries: &[PackageEntry]) -> String {
    let mut w = Writer::new();
    w.open("Updates", &[]);
    w.open("Updates", &[]);
    for e in entries {
        let version = e.version.to_string();
        let k = &e.key;
        w.open(
            "Update",
            &[
                ("version", version.as_str()),
                ("DeviceType", k.device_type.as_str()),
                ("Brand", k.brand.as_str()),
                ("Model", k.model.as_str()),
                ("Revision", k.revision.as_str()),
                ("Locale", k.locale.as_str()),
                ("UpdateType", k.update_type.as_str()),
            ],
        );
        for (name, _) in &e.files {
            let source = source_of(e, name);
            w.empty(
                "File",
                &[("name", name.as_str()), ("source", source.as_str())],
            );
        }
        w.close();
    }
    w.close();
    w.finish()
}

/// Writes a package directory: `updateInfo.xml` plus each file at its `source` path.
pub fn write_dir(dir: &Path, entries: &[PackageEntry]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(UPDATE_INFO), update_info(entries))?;
    for e in entries {
        for (name, bytes) in &e.files {
            let path = dir.join(source_of(e, name));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, bytes)?;
        }
    }
    Ok(())
}

/// Writes a package cabinet (MSZIP), with `\` separated member names as vendors ship them.
pub fn write_cab(path: &Path, entries: &[PackageEntry]) -> io::Result<()> {
    let info = update_info(entries);
    let mut members: Vec<(String, &[u8])> = vec![(UPDATE_INFO.to_owned(), info.as_bytes())];
    for e in entries {
        for (name, bytes) in &e.files {
            members.push((source_of(e, name).replace('/', "\\"), bytes));
        }
    }
    let mut builder = cab::CabinetBuilder::new();
    let folder = builder.add_folder(cab::CompressionType::MsZip);
    for (name, _) in &members {
        folder.add_file(name.clone());
    }
    let mut writer = builder.build(File::create(path)?)?;
    let mut index = 0;
    while let Some(mut file) = writer.next_file()? {
        let data = members.get(index).map(|(_, d)| *d).unwrap_or_default();
        file.write_all(data)?;
        index += 1;
    }
    writer.finish()?.sync_all()
}

fn parse_info(bytes: &[u8]) -> Result<Vec<InfoEntry>, PackageError> {
    let bad = |e: ProtocolError| PackageError::Info(e.to_string());
    let root = xml::parse(bytes, INFO_LIMITS).map_err(bad)?;
    if !root.is("Updates") {
        return Err(PackageError::Info(format!(
            "root is <{}>, expected <Updates>",
            root.name
        )));
    }
    let list = root
        .child("Updates")
        .ok_or_else(|| PackageError::Info("no Updates/Updates element".into()))?;
    let mut out = Vec::new();
    for update in list.children_named("Update") {
        out.push(parse_update(update).map_err(bad)?);
    }
    if out.is_empty() {
        return Err(PackageError::Info("no Update element".into()));
    }
    Ok(out)
}

fn parse_update(el: &Element) -> Result<InfoEntry, ProtocolError> {
    let field = |name: &'static str| el.field(name).ok_or(ProtocolError::MissingField(name));
    let key = format!(
        "{}/{}/{}/{}/{}/{}",
        field("DeviceType")?,
        field("Brand")?,
        field("Model")?,
        field("Revision")?,
        field("Locale")?,
        field("UpdateType")?
    )
    .parse()?;
    let version = field("version")?.parse()?;
    let mut files = Vec::new();
    for file in el.children_named("File") {
        let name = FileName::new(
            file.field("name")
                .ok_or(ProtocolError::MissingField("name"))?,
        )?;
        let source = match file.field("source") {
            Some(s) => s
                .split(['/', '\\'])
                .map(PathSegment::new)
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![PathSegment::new(name.as_str())?],
        };
        files.push((name, source));
    }
    if files.is_empty() {
        return Err(ProtocolError::MissingField("File"));
    }
    Ok(InfoEntry {
        key,
        version,
        files,
    })
}

/// Imports a package (a directory, or a file read as a cabinet) into `state` under the
/// default [`ImportLimits`].
pub fn import_path(state: &State, path: &Path) -> Result<Vec<Imported>, PackageError> {
    import_path_with(state, path, &ImportLimits::default())
}

/// Imports a package under `limits`. `path` itself may be a link (the caller named it); what
/// it leads to must be a directory or a regular file.
pub fn import_path_with(
    state: &State,
    path: &Path,
    limits: &ImportLimits,
) -> Result<Vec<Imported>, PackageError> {
    import_path_signed(state, path, limits, None)
}

/// Imports a package under `limits`; with a `signer`, every update of the package that carries
/// no `.cat` gets `<image stem>.cat` listing all its files (SHA-256), signed before anything is
/// stored. An update that carries a catalog keeps it (the vendor's: what a real device
/// verifies), signer or not.
pub fn import_path_signed(
    state: &State,
    path: &Path,
    limits: &ImportLimits,
    signer: Option<&CatalogSigner>,
) -> Result<Vec<Imported>, PackageError> {
    let io_err = |e| PackageError::Io {
        path: path.to_owned(),
        error: e,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        let mut source = DirSource {
            root: path.to_owned(),
        };
        return import_from(state, &mut source, limits, signer);
    }
    let file = File::open(path).map_err(io_err)?;
    let opened = file.metadata().map_err(io_err)?;
    if !opened.is_file() {
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither a directory nor a regular file",
        )));
    }
    let mut source = cabinet::CabSource::open(path, file, limits)?;
    import_from(state, &mut source, limits, signer)
}

/// Where a package's bytes come from.
trait Source {
    /// `updateInfo.xml`.
    fn info(&mut self) -> Result<Box<dyn Read + '_>, PackageError>;
    /// The file at `source` inside the package.
    fn open(&mut self, source: &[PathSegment]) -> Result<Box<dyn Read + '_>, PackageError>;
    /// A path naming `source`, for errors.
    fn path_of(&self, source: &[PathSegment]) -> PathBuf;
}

/// A package directory: regular files only, reached without a link.
struct DirSource {
    root: PathBuf,
}

impl DirSource {
    fn open_at(&self, parts: &[&str]) -> Result<File, io::Error> {
        disk::open_regular_under(&self.root, parts)
    }
}

impl Source for DirSource {
    fn info(&mut self) -> Result<Box<dyn Read + '_>, PackageError> {
        let file = self.open_at(&[UPDATE_INFO]).map_err(|e| PackageError::Io {
            path: self.root.join(UPDATE_INFO),
            error: e,
        })?;
        Ok(Box::new(file))
    }

    fn open(&mut self, source: &[PathSegment]) -> Result<Box<dyn Read + '_>, PackageError> {
        let parts: Vec<&str> = source.iter().map(PathSegment::as_str).collect();
        match self.open_at(&parts) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(PackageError::MissingFile(display(source)))
            }
            Err(e) => Err(PackageError::Io {
                path: self.path_of(source),
                error: e,
            }),
        }
    }

    fn path_of(&self, source: &[PathSegment]) -> PathBuf {
        source
            .iter()
            .fold(self.root.clone(), |p, s| p.join(s.as_str()))
    }
}

fn display(source: &[PathSegment]) -> String {
    source
        .iter()
        .map(PathSegment::as_str)
        .collect::<Vec<_>>()
        .join("/")
}

/// How names compare inside a package: `/` for `\\`, ASCII case folded.
fn normalised(name: &str) -> String {
    name.replace('\\', "/").to_ascii_lowercase()
}

fn read_info(source: &mut dyn Source) -> Result<Vec<u8>, PackageError> {
    let mut info = Vec::new();
    let max = INFO_LIMITS.max_bytes as u64;
    source
        .info()?
        .take(max + 1)
        .read_to_end(&mut info)
        .map_err(|e| PackageError::Info(e.to_string()))?;
    if info.len() as u64 > max {
        return Err(PackageError::Info(format!("larger than {max} bytes")));
    }
    Ok(info)
}

/// The listing rules: at most `max_entries` files, no source and no stored file twice.
fn check_listing(entries: &[InfoEntry], limits: &ImportLimits) -> Result<(), PackageError> {
    let count = entries.iter().map(|e| e.files.len()).sum();
    if count > limits.max_entries {
        return Err(PackageError::TooManyEntries {
            count,
            limit: limits.max_entries,
        });
    }
    let mut sources = HashSet::new();
    let mut targets = HashSet::new();
    for e in entries {
        for (name, source) in &e.files {
            let source = display(source);
            if !sources.insert(normalised(&source)) {
                return Err(PackageError::Duplicate(format!("source {source:?}")));
            }
            if !targets.insert((&e.key, e.version, name.as_str().to_ascii_lowercase())) {
                return Err(PackageError::Duplicate(format!(
                    "file {name} of {} {}",
                    e.key, e.version
                )));
            }
        }
    }
    Ok(())
}

/// Streams one file into `DATA/tmp/` with at most `cap` bytes.
fn stage(
    state: &State,
    source: &mut dyn Source,
    path: &[PathSegment],
    cap: u64,
) -> Result<StagedFile, PackageError> {
    let tmp = state.data_dir().join("tmp");
    let mut staged = StagedFile::new(state.data_dir()).map_err(|e| StateError::io(&tmp, e))?;
    let path_of = source.path_of(path);
    let reader = source.open(path)?;
    staged
        .copy_from(&mut reader.take(cap.saturating_add(1)))
        .map_err(|e| PackageError::Io {
            path: path_of,
            error: e,
        })?;
    Ok(staged)
}

/// Adds a signed catalog to an update's staged files unless the package carries one.
fn sign_staged(
    state: &State,
    signer: &CatalogSigner,
    entry: &InfoEntry,
    files: &mut Vec<(FileName, StagedFile)>,
) -> Result<(), PackageError> {
    if files
        .iter()
        .any(|(n, _)| FileKind::of(n) == FileKind::Catalog)
    {
        tracing::info!(key = %entry.key, version = %entry.version, "kept the package's own catalog");
        return Ok(());
    }
    let digests: Vec<_> = files.iter().map(|(n, f)| (n.clone(), f.sha256())).collect();
    let signed = catalog::version_catalog(signer, &digests, crate::clock::unix_secs())
        .map_err(|e| PackageError::Sign(e.to_string()))?;
    if let Some((name, bytes)) = signed {
        let tmp = state.data_dir().join("tmp");
        let mut staged = StagedFile::new(state.data_dir()).map_err(|e| StateError::io(&tmp, e))?;
        staged.write(&bytes).map_err(|e| StateError::io(&tmp, e))?;
        tracing::info!(key = %entry.key, version = %entry.version, catalog = %name, "signed the catalog");
        files.push((name, staged));
    }
    Ok(())
}

fn import_from(
    state: &State,
    source: &mut dyn Source,
    limits: &ImportLimits,
    signer: Option<&CatalogSigner>,
) -> Result<Vec<Imported>, PackageError> {
    let entries = parse_info(&read_info(source)?)?;
    check_listing(&entries, limits)?;
    // Every file is staged before any is stored and any rule changes, so a refused package
    // changes nothing: dropping a StagedFile removes it.
    let mut total = 0u64;
    let mut staged = Vec::new();
    for entry in entries {
        let mut files = Vec::new();
        for (name, path) in &entry.files {
            let left = limits.max_package_bytes.saturating_sub(total);
            let cap = limits.max_file_bytes.min(left);
            let file = stage(state, source, path, cap)?;
            if file.size() > limits.max_file_bytes {
                return Err(PackageError::FileTooLarge {
                    file: display(path),
                    limit: limits.max_file_bytes,
                });
            }
            if file.size() > cap {
                return Err(PackageError::PackageTooLarge {
                    limit: limits.max_package_bytes,
                });
            }
            total += file.size();
            files.push((name.clone(), file));
        }
        if let Some(signer) = signer {
            sign_staged(state, signer, &entry, &mut files)?;
        }
        staged.push((entry.key, entry.version, files));
    }
    let mut stored = Vec::new();
    for (key, version, files) in staged {
        let dir = store::version_dir(state.data_dir(), &key, version);
        let mut metas = Vec::new();
        for (name, file) in files {
            let meta = file
                .commit(&dir.join(name.as_str()), name)
                .map_err(|e| StateError::io(&dir, e))?;
            metas.push(meta);
        }
        stored.push((key, version, metas));
    }
    let mut out = Vec::new();
    for (key, version, metas) in stored {
        let files = metas.len();
        let rule = state.import_version(key.clone(), version, metas)?;
        tracing::info!(%key, %version, files, "imported");
        out.push(Imported {
            key,
            version,
            files,
            rule,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateOptions;

    fn entries() -> Vec<PackageEntry> {
        vec![
            PackageEntry {
                key: "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap(),
                version: "1.0.522.101".parse().unwrap(),
                files: vec![
                    (FileName::new("CPE.nbt").unwrap(), b"image bytes".to_vec()),
                    (FileName::new("CPE.cat").unwrap(), b"catalog".to_vec()),
                ],
            },
            PackageEntry {
                key: "RoundTable/Microsoft/RoundTable/A/ENU/RoundTable"
                    .parse()
                    .unwrap(),
                version: "1.0.0.7".parse().unwrap(),
                files: vec![(
                    FileName::new("RTConfig.xml").unwrap(),
                    b"<RTConfig/>".to_vec(),
                )],
            },
        ]
    }

    fn check_imported(state: &State, imported: &[Imported]) {
        assert_eq!(imported.len(), 2);
        assert_eq!(
            imported[0].rule.pending,
            Some("1.0.522.101".parse().unwrap())
        );
        assert_eq!(imported[0].files, 2);
        let on_disk = state
            .data_dir()
            .join("store/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE/CPE.nbt");
        assert_eq!(std::fs::read(on_disk).unwrap(), b"image bytes");
        state.read(|m| {
            let files = &m.catalog[&(imported[0].key.clone(), imported[0].version)];
            assert!(files
                .iter()
                .any(|f| f.name.as_str() == "CPE.cat" && f.size == 7));
        });
    }

    #[test]
    fn directory_package_round_trips() {
        let pkg = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        write_dir(pkg.path(), &entries()).unwrap();
        let state = State::open(data.path(), StateOptions::default()).unwrap();
        check_imported(&state, &import_path(&state, pkg.path()).unwrap());
    }

    #[test]
    fn cabinet_package_round_trips() {
        let pkg = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let cab = pkg.path().join("UCUpdates.cab");
        write_cab(&cab, &entries()).unwrap();
        let state = State::open(data.path(), StateOptions::default()).unwrap();
        check_imported(&state, &import_path(&state, &cab).unwrap());
    }

    #[test]
    fn bad_packages_change_nothing() {
        let data = tempfile::tempdir().unwrap();
        let state = State::open(data.path(), StateOptions::default()).unwrap();
        let pkg = tempfile::tempdir().unwrap();
        // A listed file that is missing.
        write_dir(pkg.path(), &entries()).unwrap();
        std::fs::remove_file(
            pkg.path()
                .join("RoundTable/Microsoft/RoundTable/A/ENU/RoundTable/1.0.0.7/RTConfig.xml"),
        )
        .unwrap();
        assert!(matches!(
            import_path(&state, pkg.path()),
            Err(PackageError::MissingFile(_))
        ));
        assert!(state.rules().is_empty(), "a failed import changed rules");
        // A traversal in a source path.
        let info = update_info(&entries()).replace("source=\"UCPhone/", "source=\"../UCPhone/");
        std::fs::write(pkg.path().join(UPDATE_INFO), info).unwrap();
        assert!(matches!(
            import_path(&state, pkg.path()),
            Err(PackageError::Info(_))
        ));
        // Not a cabinet at all.
        let junk = pkg.path().join("junk.cab");
        std::fs::write(&junk, b"MSCF but not really").unwrap();
        assert!(import_path(&state, &junk).is_err());
        assert!(state.rules().is_empty());
    }

    /// A cabinet with exactly these members, one MSZIP folder, in this order.
    fn cab_with(path: &Path, members: &[(&str, &[u8])]) {
        let mut builder = cab::CabinetBuilder::new();
        let folder = builder.add_folder(cab::CompressionType::MsZip);
        for (name, _) in members {
            folder.add_file(*name);
        }
        let mut writer = builder.build(File::create(path).unwrap()).unwrap();
        let mut index = 0;
        while let Some(mut file) = writer.next_file().unwrap() {
            file.write_all(members[index].1).unwrap();
            index += 1;
        }
        writer.finish().unwrap();
    }

    fn one_file_info(source: &str) -> String {
        update_info(&entries()[..1])
            .replace(
                "source=\"UCPhone/Polycom/CX700/A/ENU/CPE/1.0.522.101/CPE.nbt\"",
                &format!("source=\"{source}\""),
            )
            .replace("<File name=\"CPE.cat\" source=\"UCPhone/Polycom/CX700/A/ENU/CPE/1.0.522.101/CPE.cat\"/>", "")
    }

    /// Nothing of a refused import is left: no rule, no store file, no staged file.
    fn assert_untouched(state: &State) {
        assert!(state.rules().is_empty(), "a refused import changed rules");
        let count = |dir: &str| {
            std::fs::read_dir(state.data_dir().join(dir))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        assert_eq!(count("store"), 0, "a refused import stored files");
        assert_eq!(count("tmp"), 0, "a refused import left staged files");
    }

    fn fresh_state() -> (tempfile::TempDir, State) {
        let data = tempfile::tempdir().unwrap();
        let state = State::open(data.path(), StateOptions::default()).unwrap();
        (data, state)
    }

    #[cfg(unix)]
    #[test]
    fn a_package_file_that_is_a_link_fifo_or_under_a_linked_directory_is_refused() {
        use std::os::unix::fs::symlink;
        let (_data, state) = fresh_state();
        let outside = tempfile::tempdir().unwrap();
        let users = outside.path().join("users.txt");
        std::fs::write(&users, "CORP\\alice:secret\n").unwrap();
        let image = "UCPhone/Polycom/CX700/A/ENU/CPE/1.0.522.101/CPE.nbt";

        // CPE.nbt -> users.txt published the users file.
        let pkg = tempfile::tempdir().unwrap();
        write_dir(pkg.path(), &entries()).unwrap();
        std::fs::remove_file(pkg.path().join(image)).unwrap();
        symlink(&users, pkg.path().join(image)).unwrap();
        let err = import_path(&state, pkg.path()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_untouched(&state);

        // A FIFO would block the import forever; /dev/zero would never end.
        std::fs::remove_file(pkg.path().join(image)).unwrap();
        let fifo = pkg.path().join(image);
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let err = import_path(&state, pkg.path()).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        std::fs::remove_file(&fifo).unwrap();
        symlink("/dev/zero", &fifo).unwrap();
        assert!(import_path(&state, pkg.path()).is_err());
        assert_untouched(&state);

        // A directory on the way that is a link out of the package.
        let pkg = tempfile::tempdir().unwrap();
        write_dir(pkg.path(), &entries()).unwrap();
        let real = pkg
            .path()
            .join("UCPhone/Polycom/CX700/A/ENU/CPE/1.0.522.101");
        let moved = outside.path().join("moved");
        std::fs::rename(&real, &moved).unwrap();
        symlink(&moved, &real).unwrap();
        let err = import_path(&state, pkg.path()).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");

        // updateInfo.xml itself.
        let pkg = tempfile::tempdir().unwrap();
        write_dir(&outside.path().join("other"), &entries()).unwrap();
        symlink(
            outside.path().join("other").join(UPDATE_INFO),
            pkg.path().join(UPDATE_INFO),
        )
        .unwrap();
        assert!(import_path(&state, pkg.path()).is_err());
        assert_untouched(&state);
    }

    #[test]
    fn sources_that_escape_the_package_are_refused() {
        let (_data, state) = fresh_state();
        let pkg = tempfile::tempdir().unwrap();
        write_dir(pkg.path(), &entries()).unwrap();
        for evil in [
            "/etc/passwd",
            "\\etc\\passwd",
            "C:\\Windows\\x",
            "UCPhone/../../../etc/passwd",
            "\\\\server\\share\\x",
            "%2e%2e/x",
        ] {
            std::fs::write(pkg.path().join(UPDATE_INFO), one_file_info(evil)).unwrap();
            let err = import_path(&state, pkg.path()).unwrap_err();
            assert!(matches!(err, PackageError::Info(_)), "{evil}: {err}");
        }
        assert_untouched(&state);
        // The same listing with a source inside the package imports.
        let good = one_file_info("UCPhone/Polycom/CX700/A/ENU/CPE/1.0.522.101/CPE.nbt");
        std::fs::write(pkg.path().join(UPDATE_INFO), good).unwrap();
        assert_eq!(import_path(&state, pkg.path()).unwrap()[0].files, 1);
    }

    #[test]
    fn cabinet_member_names_that_escape_or_repeat_are_refused() {
        let (_data, state) = fresh_state();
        let pkg = tempfile::tempdir().unwrap();
        let cab = pkg.path().join("bad.cab");
        let info = one_file_info("CPE.nbt");
        for (evil, why) in [
            ("..\\..\\etc\\cron.d\\x", "escapes the package"),
            ("\\abs", "escapes the package"),
            ("C:\\x", "escapes the package"),
            ("updateinfo.XML", "listed twice"),
        ] {
            cab_with(
                &cab,
                &[
                    (UPDATE_INFO, info.as_bytes()),
                    ("CPE.nbt", b"image"),
                    (evil, b"x"),
                ],
            );
            let err = import_path(&state, &cab).unwrap_err();
            assert!(matches!(err, PackageError::Cabinet(_)), "{err}");
            assert!(err.to_string().contains(why), "{evil}: {err}");
        }
        assert_untouched(&state);
    }

    #[test]
    fn one_source_listed_twice_is_refused_not_written_twice() {
        let (_data, state) = fresh_state();
        let pkg = tempfile::tempdir().unwrap();
        write_dir(pkg.path(), &entries()).unwrap();
        let info = std::fs::read_to_string(pkg.path().join(UPDATE_INFO)).unwrap();
        // CPE.cat's entry now names CPE.nbt's bytes (in another case) under its own name.
        let twice = info.replace(
            "source=\"UCPhone/Polycom/CX700/A/ENU/CPE/1.0.522.101/CPE.cat\"",
            "source=\"ucphone\\Polycom/CX700/A/ENU/CPE/1.0.522.101/CPE.nbt\"",
        );
        assert_ne!(twice, info);
        std::fs::write(pkg.path().join(UPDATE_INFO), &twice).unwrap();
        let err = import_path(&state, pkg.path()).unwrap_err();
        assert!(matches!(err, PackageError::Duplicate(_)), "{err}");
        // And one store name listed twice.
        let same_name = info.replace("name=\"CPE.cat\"", "name=\"cpe.NBT\"");
        std::fs::write(pkg.path().join(UPDATE_INFO), same_name).unwrap();
        let err = import_path(&state, pkg.path()).unwrap_err();
        assert!(matches!(err, PackageError::Duplicate(_)), "{err}");
        assert_untouched(&state);
    }

    #[test]
    fn cabinet_members_sharing_bytes_are_refused() {
        let (_data, state) = fresh_state();
        let pkg = tempfile::tempdir().unwrap();
        let cab = pkg.path().join("UCUpdates.cab");
        write_cab(&cab, &entries()).unwrap();
        // Point the last member at the first one's bytes: one member under two names.
        let mut bytes = std::fs::read(&cab).unwrap();
        let table = cabinet::read_table(&mut io::Cursor::new(&bytes)).unwrap();
        assert_eq!(table.len(), 4);
        let first_file = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
        let mut at = first_file;
        for m in &table[..3] {
            at += 16 + m.name.len() + 1;
        }
        bytes[at..at + 4].copy_from_slice(&table[0].size.to_le_bytes());
        bytes[at + 4..at + 8].copy_from_slice(&0u32.to_le_bytes());
        std::fs::write(&cab, &bytes).unwrap();
        let err = import_path(&state, &cab).unwrap_err();
        assert!(err.to_string().contains("overlap"), "{err}");
        assert_untouched(&state);
    }

    #[test]
    fn each_cap_refuses_a_cabinet_before_decompressing_and_a_directory_while_copying() {
        let (_data, state) = fresh_state();
        let pkg = tempfile::tempdir().unwrap();
        let cab = pkg.path().join("UCUpdates.cab");
        let dir = pkg.path().join("dir");
        // 100 KB of zeros compresses to almost nothing: a small bomb.
        let big = vec![0u8; 100_000];
        let mut package = entries();
        package[0].files[0].1 = big.clone();
        write_cab(&cab, &package).unwrap();
        write_dir(&dir, &package).unwrap();
        assert!(std::fs::metadata(&cab).unwrap().len() < 2_000);
        let ok = ImportLimits {
            max_file_bytes: 100_000,
            max_package_bytes: 100_000 + 7 + 11 + 4096,
            max_entries: 4,
        };
        let cases = [
            (
                ImportLimits {
                    max_file_bytes: 99_999,
                    ..ok
                },
                "--max-file-bytes",
            ),
            (
                ImportLimits {
                    max_package_bytes: 100_010,
                    ..ok
                },
                "--max-package-bytes",
            ),
            (
                ImportLimits {
                    max_entries: 2,
                    ..ok
                },
                "--max-entries",
            ),
        ];
        for (limits, flag) in cases {
            for path in [&cab, &dir] {
                let err = import_path_with(&state, path, &limits).unwrap_err();
                assert!(err.to_string().contains(flag), "{}: {err}", path.display());
                assert_untouched(&state);
            }
        }
        for path in [&cab, &dir] {
            let imported = import_path_with(&state, path, &ok).unwrap();
            assert_eq!(imported.len(), 2);
        }
    }
}
