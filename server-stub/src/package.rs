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

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use ucupdate_protocol::xml::{self, Element, Limits, Writer};
use ucupdate_protocol::{FileName, FirmwareVersion, PathSegment, ProtocolError, UpdateKey};

use crate::model::Rule;
use crate::state::{State, StateError};
use crate::store;

/// The index file every package carries.
pub const UPDATE_INFO: &str = "updateInfo.xml";

const INFO_LIMITS: Limits = Limits {
    max_bytes: 4 << 20,
    max_depth: 8,
    max_elements: 100_000,
};

/// Why a package could not be read or imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// Reading the package failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// `updateInfo.xml` is missing or wrong.
    #[error("updateInfo.xml: {0}")]
    Info(String),
    /// A file listed in `updateInfo.xml` is not in the package.
    #[error("file {0:?} listed in updateInfo.xml is not in the package")]
    MissingFile(String),
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

/// Imports a package (a directory, or a file read as a cabinet) into `state`.
pub fn import_path(state: &State, path: &Path) -> Result<Vec<Imported>, PackageError> {
    let io_err = |e| PackageError::Io {
        path: path.to_owned(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        import_dir(state, path)
    } else {
        import_cab(state, File::open(path).map_err(io_err)?, path)
    }
}

fn import_dir(state: &State, dir: &Path) -> Result<Vec<Imported>, PackageError> {
    let info_path = dir.join(UPDATE_INFO);
    let info = std::fs::read(&info_path).map_err(|e| PackageError::Io {
        path: info_path,
        source: e,
    })?;
    let entries = parse_info(&info)?;
    import_entries(state, entries, |source| {
        let path = source
            .iter()
            .fold(dir.to_owned(), |p, s| p.join(s.as_str()));
        match File::open(&path) {
            Ok(f) => Ok(Box::new(f) as Box<dyn Read>),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(PackageError::MissingFile(display(source)))
            }
            Err(e) => Err(PackageError::Io { path, source: e }),
        }
    })
}

fn import_cab<R: Read + Seek>(
    state: &State,
    reader: R,
    path: &Path,
) -> Result<Vec<Imported>, PackageError> {
    let io_err = |e| PackageError::Io {
        path: path.to_owned(),
        source: e,
    };
    let mut cabinet = cab::Cabinet::new(reader).map_err(io_err)?;
    // Member names as written, looked up by a normalised form (`/`, lower case).
    let mut names = HashMap::new();
    for folder in cabinet.folder_entries() {
        for file in folder.file_entries() {
            names.insert(
                file.name().replace('\\', "/").to_ascii_lowercase(),
                file.name().to_owned(),
            );
        }
    }
    let info_name = names
        .get(&UPDATE_INFO.to_ascii_lowercase())
        .cloned()
        .ok_or_else(|| PackageError::Info("not in the cabinet".into()))?;
    let mut info = Vec::new();
    cabinet
        .read_file(&info_name)
        .and_then(|mut r| r.read_to_end(&mut info))
        .map_err(io_err)?;
    let entries = parse_info(&info)?;
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for entry in &entries {
        for (_, source) in &entry.files {
            let wanted = display(source).to_ascii_lowercase();
            let member = names
                .get(&wanted)
                .ok_or_else(|| PackageError::MissingFile(display(source)))?;
            let mut bytes = Vec::new();
            cabinet
                .read_file(member)
                .and_then(|mut r| r.read_to_end(&mut bytes))
                .map_err(io_err)?;
            files.insert(wanted, bytes);
        }
    }
    import_entries(state, entries, |source| {
        let bytes = files
            .get(&display(source).to_ascii_lowercase())
            .cloned()
            .unwrap_or_default();
        Ok(Box::new(io::Cursor::new(bytes)) as Box<dyn Read>)
    })
}

fn display(source: &[PathSegment]) -> String {
    source
        .iter()
        .map(PathSegment::as_str)
        .collect::<Vec<_>>()
        .join("/")
}

fn import_entries(
    state: &State,
    entries: Vec<InfoEntry>,
    mut open: impl FnMut(&[PathSegment]) -> Result<Box<dyn Read>, PackageError>,
) -> Result<Vec<Imported>, PackageError> {
    // Every file is stored before any rule changes, so a bad package changes no rule.
    let mut stored = Vec::new();
    for entry in entries {
        let mut metas = Vec::new();
        for (name, source) in &entry.files {
            let mut reader = open(source)?;
            let dir = store::version_dir(state.data_dir(), &entry.key, entry.version);
            let meta = store::store_file(
                state.data_dir(),
                &entry.key,
                entry.version,
                name.clone(),
                &mut reader,
            )
            .map_err(|e| StateError::io(&dir, e))?;
            metas.push(meta);
        }
        stored.push((entry.key, entry.version, metas));
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
}
