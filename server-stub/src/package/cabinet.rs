//! Reading a package cabinet without trusting it. The `cab` crate decompresses; this module
//! first reads the cabinet's own file table (CFFILE entries, which the crate does not expose
//! with their offsets) and refuses, before a byte is decompressed: more members than
//! [`ImportLimits::max_entries`], a member larger than `max_file_bytes` or members adding up to
//! more than `max_package_bytes` (a `gcab -z` of 256 MiB of zeros is 449 KB), a member name
//! that escapes the package (`..`, absolute, a drive) or appears twice, and members that do
//! not tile their folder exactly (two names for the same bytes would be stored twice; a gap
//! is decompressed for nothing). Members are then streamed, one 64 KiB read at a time.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ucupdate_protocol::PathSegment;

use super::{display, normalised, ImportLimits, PackageError, Source, UPDATE_INFO};

/// "MSCF", little-endian.
const SIGNATURE: u32 = 0x4643_534d;
/// Folder indices at and above this continue a member from or into another cabinet of a set.
const FIRST_CONTINUED_FOLDER: u16 = 0xfffd;
/// The longest member name the format allows.
const MAX_NAME: usize = 255;

/// One CFFILE entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Member {
    pub(super) name: String,
    pub(super) size: u32,
    pub(super) folder: u16,
    pub(super) offset: u32,
}

/// Reads the CFFILE table (MS-CAB 2.3): the header's `coffFiles` and `cFiles`, then each
/// entry's size, folder offset, folder index and NUL-terminated name.
pub(super) fn read_table(reader: &mut (impl Read + Seek)) -> io::Result<Vec<Member>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut header = [0u8; 36];
    reader.seek(SeekFrom::Start(0))?;
    reader.read_exact(&mut header)?;
    let u16_at = |i: usize| u16::from_le_bytes([header[i], header[i + 1]]);
    let u32_at =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if u32_at(0) != SIGNATURE {
        return Err(bad("not a cabinet (no MSCF signature)"));
    }
    let (first_file, count) = (u32_at(16), u16_at(28));
    reader.seek(SeekFrom::Start(u64::from(first_file)))?;
    let mut members = Vec::with_capacity(usize::from(count));
    let mut buffered = io::BufReader::new(reader);
    for _ in 0..count {
        let mut fixed = [0u8; 16];
        buffered.read_exact(&mut fixed)?;
        let mut name = Vec::new();
        loop {
            let mut byte = [0u8; 1];
            buffered.read_exact(&mut byte)?;
            if byte[0] == 0 {
                break;
            }
            if name.len() == MAX_NAME {
                return Err(bad("member name longer than 255 bytes"));
            }
            name.push(byte[0]);
        }
        members.push(Member {
            // The cab crate decodes names the same way, so `read_file` finds them.
            name: String::from_utf8_lossy(&name).into_owned(),
            size: u32::from_le_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]),
            offset: u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            folder: u16::from_le_bytes([fixed[8], fixed[9]]),
        });
    }
    Ok(members)
}

/// Whether a member name stays inside the package: relative, no `..`, no drive.
fn escapes(name: &str) -> bool {
    name.starts_with(['/', '\\'])
        || name.contains(':')
        || name.split(['/', '\\']).any(|part| part == "..")
}

/// Every check on the table that needs no decompression (see the module docs).
pub(super) fn check_table(members: &[Member], limits: &ImportLimits) -> Result<(), String> {
    if members.len() > limits.max_entries {
        return Err(format!(
            "{} members, more than the cap of {} (--max-entries)",
            members.len(),
            limits.max_entries
        ));
    }
    let mut seen = HashMap::new();
    let mut total = 0u64;
    for m in members {
        if escapes(&m.name) {
            return Err(format!("member name {:?} escapes the package", m.name));
        }
        if m.folder >= FIRST_CONTINUED_FOLDER {
            return Err(format!(
                "member {:?} continues into another cabinet (sets are not supported)",
                m.name
            ));
        }
        if seen.insert(normalised(&m.name), &m.name).is_some() {
            return Err(format!("member {:?} is listed twice", m.name));
        }
        if u64::from(m.size) > limits.max_file_bytes {
            return Err(format!(
                "member {:?} is {} bytes, more than the cap of {} (--max-file-bytes)",
                m.name, m.size, limits.max_file_bytes
            ));
        }
        total += u64::from(m.size);
    }
    if total > limits.max_package_bytes {
        return Err(format!(
            "members add up to {total} bytes, more than the cap of {} (--max-package-bytes)",
            limits.max_package_bytes
        ));
    }
    // Per folder, in offset order, each member starts where the previous one ended.
    let mut by_folder: HashMap<u16, Vec<&Member>> = HashMap::new();
    for m in members {
        by_folder.entry(m.folder).or_default().push(m);
    }
    for list in by_folder.values_mut() {
        list.sort_by_key(|m| (m.offset, m.size));
        let mut end = 0u64;
        for m in list.iter() {
            if u64::from(m.offset) != end {
                return Err(format!(
                    "member {:?} starts at {} in its folder where {end} was expected \
                     (members overlap or leave a gap)",
                    m.name, m.offset
                ));
            }
            end += u64::from(m.size);
        }
    }
    Ok(())
}

/// A cabinet package whose table has passed [`check_table`].
pub(super) struct CabSource {
    path: PathBuf,
    cabinet: cab::Cabinet<File>,
    /// Member names as written, by their normalised form.
    names: HashMap<String, String>,
}

impl CabSource {
    pub(super) fn open(
        path: &Path,
        mut file: File,
        limits: &ImportLimits,
    ) -> Result<CabSource, PackageError> {
        let io_err = |source| PackageError::Io {
            path: path.to_owned(),
            error: source,
        };
        let members = read_table(&mut file).map_err(io_err)?;
        check_table(&members, limits).map_err(PackageError::Cabinet)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let cabinet = cab::Cabinet::new(file).map_err(io_err)?;
        let names = members
            .into_iter()
            .map(|m| (normalised(&m.name), m.name))
            .collect();
        Ok(CabSource {
            path: path.to_owned(),
            cabinet,
            names,
        })
    }

    fn member(&mut self, wanted: &str) -> Result<Box<dyn Read + '_>, PackageError> {
        let name = self
            .names
            .get(&normalised(wanted))
            .ok_or_else(|| PackageError::MissingFile(wanted.to_owned()))?;
        let reader = self
            .cabinet
            .read_file(name)
            .map_err(|source| PackageError::Io {
                path: self.path.join(name),
                error: source,
            })?;
        Ok(Box::new(reader))
    }
}

impl Source for CabSource {
    fn info(&mut self) -> Result<Box<dyn Read + '_>, PackageError> {
        self.member(UPDATE_INFO).map_err(|e| match e {
            PackageError::MissingFile(_) => PackageError::Info("not in the cabinet".into()),
            other => other,
        })
    }

    fn open(&mut self, source: &[PathSegment]) -> Result<Box<dyn Read + '_>, PackageError> {
        self.member(&display(source))
    }

    fn path_of(&self, source: &[PathSegment]) -> PathBuf {
        self.path.join(display(source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, size: u32, folder: u16, offset: u32) -> Member {
        Member {
            name: name.to_owned(),
            size,
            folder,
            offset,
        }
    }

    fn limits() -> ImportLimits {
        ImportLimits {
            max_file_bytes: 100,
            max_package_bytes: 150,
            max_entries: 3,
        }
    }

    #[test]
    fn tables_that_escape_repeat_overlap_or_exceed_a_cap_are_refused() {
        let ok = [member("a", 100, 0, 0), member("b\\c", 50, 0, 100)];
        assert_eq!(check_table(&ok, &limits()), Ok(()));
        let refused = |members: &[Member], why: &str| {
            let err = check_table(members, &limits()).unwrap_err();
            assert!(err.contains(why), "{err} (expected {why:?})");
        };
        for name in [
            "..\\x",
            "a/../../x",
            "\\etc\\passwd",
            "/etc/passwd",
            "C:\\x",
        ] {
            refused(&[member(name, 1, 0, 0)], "escapes the package");
        }
        refused(
            &[member("A\\b", 1, 0, 0), member("a/B", 1, 0, 1)],
            "listed twice",
        );
        refused(&[member("a", 1, 0xfffd, 0)], "another cabinet");
        refused(&[member("a", 101, 0, 0)], "--max-file-bytes");
        refused(
            &[member("a", 100, 0, 0), member("b", 51, 0, 100)],
            "--max-package-bytes",
        );
        refused(
            &[
                member("a", 1, 0, 0),
                member("b", 1, 0, 1),
                member("c", 1, 0, 2),
                member("d", 1, 0, 3),
            ],
            "--max-entries",
        );
        // One member's bytes under a second name, and a gap.
        refused(
            &[member("a", 10, 0, 0), member("b", 10, 0, 0)],
            "overlap or leave a gap",
        );
        refused(
            &[member("a", 10, 0, 0), member("b", 10, 0, 20)],
            "overlap or leave a gap",
        );
        // Folders tile independently.
        assert_eq!(
            check_table(&[member("a", 10, 0, 0), member("b", 10, 1, 0)], &limits()),
            Ok(())
        );
    }
}
