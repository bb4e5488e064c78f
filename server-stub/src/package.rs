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
    max_attributes: 64,
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
    let doc = xml::parse(bytes, INFO_LIMITS).map_err(bad)?;
    let root = doc.root();
    if !root.is("Updates") {
        return Err(PackageError::Info(format!(
            "root is <{}>, expected <Updates>",
            root.name()
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

fn parse_update(el: Element<'_>) -> Result<InfoEntry, ProtocolError> {
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
        // Every RoundTable update carries an RTConfig.xml; staged with the rest, so a signed
        // catalog lists it too.
        if crate::roundtable::lacks_rtconfig(&entry.key, files.iter().map(|(n, _)| n)) {
            let tmp = state.data_dir().join("tmp");
            let mut generic =
                StagedFile::new(state.data_dir()).map_err(|e| StateError::io(&tmp, e))?;
            generic
                .write(crate::roundtable::GENERIC_RTCONFIG)
                .map_err(|e| StateError::io(&tmp, e))?;
            tracing::info!(key = %entry.key, version = %entry.version, "added the generic RTConfig.xml");
            files.push((crate::roundtable::name(), generic));
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
mod tests;
