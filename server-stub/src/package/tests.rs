//! Unit tests of `package` (kept apart so the module itself reads in one sitting).

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
