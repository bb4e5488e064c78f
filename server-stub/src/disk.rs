//! The file-system rules of a server that shares its host: what it reads from places others
//! can write (a package) is a regular file reached without following a link
//! ([`open_regular`], [`open_regular_under`]); what it creates is its owner's only
//! ([`create_private_dir`] 0700, [`private_file`] 0600); a secret it is given (the users file)
//! must not be open to others ([`read_private`]).
//!
//! The link checks are `lstat` on every directory on the way, then an open with `O_NOFOLLOW`
//! (and `O_NONBLOCK`, so a FIFO swapped in cannot hang the open), then `fstat` of what was
//! opened: it must be a regular file and the very inode `lstat` saw. A directory swapped for a
//! link between the `lstat` and the open is the remaining window (std has no `openat`).

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

/// Mode of every file the server creates.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of every directory the server creates.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Permission bits a secret file must not have: read or write for group or others.
pub const SHARED_BITS: u32 = 0o066;
/// The largest secret file read (a users file is a few lines per user).
const MAX_SECRET_BYTES: u64 = 16 << 20;

/// Creates `dir` and any missing parents, each 0700 (existing ones are left as they are).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR_MODE);
    builder.create(dir)
}

/// Options that create a file 0600; the caller adds `write`, `create_new`, `append`...
pub fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, PRIVATE_FILE_MODE);
    options
}

/// What a non-regular directory entry is, for error messages.
fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

fn refused(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(unix)]
fn same_inode(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_inode(_: &Metadata, _: &Metadata) -> bool {
    true
}

/// Opens `path` for reading only if it is a regular file and not a link.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let seen = fs::symlink_metadata(path)?;
    if !seen.file_type().is_file() {
        return Err(refused(format!("{}, not a regular file", kind(&seen))));
    }
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    let file = options.open(path)?;
    let opened = file.metadata()?;
    if !opened.file_type().is_file() || !same_inode(&seen, &opened) {
        return Err(refused("replaced while being opened".to_owned()));
    }
    Ok(file)
}

/// Opens `root/a/b/file` (`components` = `["a", "b", "file"]`) under the rules of
/// [`open_regular`], with every directory below `root` a real directory, not a link.
pub fn open_regular_under(root: &Path, components: &[&str]) -> io::Result<File> {
    let mut path = root.to_path_buf();
    let Some((file, dirs)) = components.split_last() else {
        return Err(refused("empty path".to_owned()));
    };
    for dir in dirs {
        path.push(dir);
        let meta = fs::symlink_metadata(&path)?;
        if !meta.file_type().is_dir() {
            return Err(refused(format!(
                "{dir:?} is {}, not a directory",
                kind(&meta)
            )));
        }
    }
    path.push(file);
    open_regular(&path)
}

/// Reads a secret the server is given (the users file), refusing one that group or others
/// may read or write: on a shared host that file is every device account's password.
pub fn read_private(path: &Path) -> io::Result<String> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(refused(format!("{}, not a regular file", kind(&meta))));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & SHARED_BITS != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "group or others may read or write it (mode {mode:04o}): \
                     run `chmod 600 {}`",
                    path.display()
                ),
            ));
        }
    }
    let mut text = String::new();
    file.take(MAX_SECRET_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_BYTES {
        return Err(refused(format!("larger than {MAX_SECRET_BYTES} bytes")));
    }
    Ok(text)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn links_fifos_devices_and_linked_directories_are_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("secret"), b"passwords").unwrap();
        fs::create_dir(root.join("real")).unwrap();
        fs::write(root.join("real/file"), b"ok").unwrap();
        symlink(root.join("secret"), root.join("link")).unwrap();
        symlink(root.join("real"), root.join("linked-dir")).unwrap();
        let fifo = root.join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());

        let mut text = String::new();
        open_regular_under(root, &["real", "file"])
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "ok");
        let refused = |r: io::Result<File>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused(open_regular(&root.join("link"))).contains("symbolic link"));
        assert!(refused(open_regular(&fifo)).contains("FIFO"));
        assert!(refused(open_regular(Path::new("/dev/zero"))).contains("device"));
        assert!(refused(open_regular(&root.join("real"))).contains("directory"));
        assert!(refused(open_regular_under(root, &["linked-dir", "file"]))
            .contains("symbolic link, not a directory"));
    }

    #[test]
    fn created_files_and_directories_are_the_owners_only() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_private_dir(&nested).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        let file = nested.join("f");
        private_file()
            .write(true)
            .create_new(true)
            .open(&file)
            .unwrap();
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn a_secret_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users.txt");
        fs::write(&users, "CORP\\alice:pw\n").unwrap();
        for shared in [0o644, 0o640, 0o604, 0o620] {
            fs::set_permissions(&users, fs::Permissions::from_mode(shared)).unwrap();
            let err = read_private(&users).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        fs::set_permissions(&users, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private(&users).unwrap(), "CORP\\alice:pw\n");
        fs::set_permissions(&users, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_private(&users).is_ok());
    }
}
