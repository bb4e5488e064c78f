//! [`Credentials`]: who the client authenticates as, and the three spellings of a user name
//! (`DOMAIN\user`, `user@domain`, `user`) that a device's sign-in screen accepts.

use std::fmt;

/// A user's NTLM credentials. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// NetBIOS or DNS domain; may be empty.
    pub domain: String,
    /// User name as typed (case is kept; NTOWFv2 upper-cases it).
    pub user: String,
    /// The password (never logged).
    pub password: String,
}

impl Credentials {
    /// Split `DOMAIN\user`, `user@domain` or `user` (empty domain).
    pub fn parse_user(spec: &str, password: &str) -> Credentials {
        let (domain, user) = if let Some((d, u)) = spec.split_once('\\') {
            (d, u)
        } else if let Some((u, d)) = spec.rsplit_once('@') {
            (d, u)
        } else {
            ("", spec)
        };
        Credentials {
            domain: domain.to_string(),
            user: user.to_string(),
            password: password.to_string(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("domain", &self.domain)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}
