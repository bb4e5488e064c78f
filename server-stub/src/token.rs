//! The admin API's bearer token: 32 random bytes in hex, created once (create-new, mode 0600)
//! in `DATA/admin.token` or the file `--admin-token-file` names, and read back at every later
//! start. The server prints the file's path, never the token: whoever can read the file may
//! administer the server, which on a shared host is the data directory's owner.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The default token file's name inside the data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// Why the token file could not be read or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("admin token file {}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    /// The file exists but holds no token (an empty file would make every token match).
    #[error("admin token file {} is empty or not one line of text", path.display())]
    Empty { path: PathBuf },
}

/// A loaded admin token (the secret never appears in `Debug` output).
#[derive(Clone)]
pub struct AdminToken {
    secret: String,
    path: PathBuf,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AdminToken {
    /// Reads the token in `path`, or creates the file with a fresh token if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<AdminToken, TokenError> {
        let io_err = |source| TokenError::Io {
            path: path.to_owned(),
            error: source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return AdminToken::parse(path, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(format!("{secret}\n").as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io_err)?;
                Ok(AdminToken {
                    secret,
                    path: path.to_owned(),
                })
            }
            // Someone created it between our read and our create: theirs wins.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(io_err)?;
                AdminToken::parse(path, &text)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<AdminToken, TokenError> {
        let secret = text.trim();
        if secret.is_empty() || secret.contains(char::is_whitespace) {
            return Err(TokenError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(AdminToken {
            secret: secret.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The file the token lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The secret, for clients (tests, the embedded simulator) that hold the server in-process.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether `offered` is the token, in time independent of where they first differ.
    pub fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.secret.as_bytes(), offered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Reads the token a client should send: `file`, or `DATA/admin.token`.
pub fn read_for_client(file: &Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(file).map_err(|source| TokenError::Io {
        path: file.to_owned(),
        error: source,
    })?;
    Ok(AdminToken::parse(file, &text)?.secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        let first = AdminToken::load_or_create(&path).unwrap();
        assert_eq!(first.secret().len(), 64);
        let again = AdminToken::load_or_create(&path).unwrap();
        assert_eq!(first.secret(), again.secret());
        assert!(again.matches(first.secret()));
        assert!(!again.matches(""));
        assert!(!again.matches(&first.secret()[1..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{again:?}").contains(first.secret()));
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            AdminToken::load_or_create(&path),
            Err(TokenError::Empty { .. })
        ));
    }
}
