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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_spellings_split_into_domain_and_user() {
        let c = Credentials::parse_user("CORP\\alice", "pw");
        assert_eq!((c.domain.as_str(), c.user.as_str()), ("CORP", "alice"));
        let c = Credentials::parse_user("alice@corp.example", "pw");
        assert_eq!(
            (c.domain.as_str(), c.user.as_str()),
            ("corp.example", "alice")
        );
        let c = Credentials::parse_user("alice", "pw");
        assert_eq!((c.domain.as_str(), c.user.as_str()), ("", "alice"));
        assert_eq!(c.password, "pw");
    }

    #[test]
    fn debug_redacts_the_password() {
        let text = format!("{:?}", Credentials::parse_user("CORP\\alice", "hunter2"));
        assert!(text.contains("CORP") && text.contains("alice"));
        assert!(!text.contains("hunter2"));
    }
}
