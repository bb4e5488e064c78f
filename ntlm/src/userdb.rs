//! [`UserDb`]: the acceptor's users, read from a file of `DOMAIN\user:password` or
//! `user:password` lines. Lookup is by user name (case-insensitive, as Windows does); which
//! domains a client may name for an account is decided here too ([`UserDb::resolve`]), so the
//! acceptor only checks proofs.

use std::collections::HashMap;
use std::fmt;

use crate::NtlmError;

/// One user the acceptor knows.
#[derive(Clone)]
#[cfg_attr(not(feature = "acceptor"), allow(dead_code))]
pub(crate) struct UserEntry {
    /// Domain from the file, if any.
    pub(crate) domain: Option<String>,
    /// User name as written in the file.
    pub(crate) user: String,
    /// Password (never logged).
    pub(crate) password: String,
}

/// Users for the acceptor, keyed by upper-cased user name.
#[derive(Clone, Default)]
pub struct UserDb {
    users: HashMap<String, UserEntry>,
}

impl UserDb {
    /// Lines `DOMAIN\user:password` or `user:password`; `#` comments and blank lines skipped.
    pub fn parse(text: &str) -> Result<UserDb, NtlmError> {
        let mut db = UserDb::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let err = |reason| NtlmError::UserFile {
                line: i + 1,
                reason,
            };
            let (spec, password) = line.split_once(':').ok_or(err("expected user:password"))?;
            let spec = spec.trim();
            let (domain, user) = match spec.split_once('\\') {
                Some((d, u)) => (Some(d), u),
                None => (None, spec),
            };
            if user.is_empty() {
                return Err(err("empty user name"));
            }
            if domain.is_some_and(str::is_empty) {
                return Err(err("empty domain before '\\'"));
            }
            db.insert(domain, user, password);
        }
        Ok(db)
    }

    /// Add or replace a user. Names are matched case-insensitively.
    pub fn insert(&mut self, domain: Option<&str>, user: &str, password: &str) {
        self.users.insert(
            user.to_uppercase(),
            UserEntry {
                domain: domain.map(str::to_string),
                user: user.to_string(),
                password: password.to_string(),
            },
        );
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    #[cfg_attr(not(feature = "acceptor"), allow(dead_code))]
    pub(crate) fn get(&self, user: &str) -> Option<&UserEntry> {
        self.users.get(&user.to_uppercase())
    }

    /// The account a Type 3's `domain` and `user` name. A UPN user name (`alice@corp.example`)
    /// that is not itself an account names its local part, and its suffix counts as a domain
    /// the client named. `server_domain` (the acceptor's target name) is the domain of
    /// accounts listed without one.
    #[cfg_attr(not(feature = "acceptor"), allow(dead_code))]
    pub(crate) fn resolve(&self, domain: &str, user: &str, server_domain: &str) -> Lookup<'_> {
        let (entry, upn_domain) = match self.get(user) {
            Some(entry) => (entry, ""),
            None => match user
                .rsplit_once('@')
                .and_then(|(local, suffix)| Some((self.get(local)?, suffix)))
            {
                Some(found) => found,
                None => return Lookup::Unknown,
            },
        };
        let owner = entry.domain.as_deref().unwrap_or(server_domain);
        Lookup::Found {
            entry,
            domain_ok: names_domain(owner, domain) && names_domain(owner, upn_domain),
        }
    }
}

/// What [`UserDb::resolve`] found.
#[cfg_attr(not(feature = "acceptor"), allow(dead_code))]
pub(crate) enum Lookup<'a> {
    /// No account by that name.
    Unknown,
    /// The account, and whether the domains the client named belong to it.
    Found {
        entry: &'a UserEntry,
        domain_ok: bool,
    },
}

/// Whether a domain a client sent (`sent`) names the account domain `owner`: empty (clients
/// that send none), the same name (NetBIOS names are case-insensitive), or a DNS name whose
/// first label is the NetBIOS name (`corp.example` for `CORP`, the form a UPN carries: a
/// domain's default NetBIOS name is its first DNS label). Without a forest to ask, the stub
/// cannot tell `corp.example` from `corp.elsewhere.example`; both name `CORP`, and the
/// identity reported is the file's either way.
#[cfg_attr(not(feature = "acceptor"), allow(dead_code))]
fn names_domain(owner: &str, sent: &str) -> bool {
    let netbios = |d: &str| d.split('.').next().unwrap_or_default().to_uppercase();
    sent.is_empty()
        || sent.to_uppercase() == owner.to_uppercase()
        || (!owner.is_empty() && netbios(sent) == netbios(owner))
}

impl fmt::Debug for UserDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.users.values().map(|e| e.user.as_str()).collect();
        names.sort_unstable();
        f.debug_struct("UserDb").field("users", &names).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_users_with_and_without_domain_skipping_comments() {
        let db = UserDb::parse("# users\r\n\r\nCORP\\alice:s3:cret\r\n  # indented\nbob:\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(db.len(), 2);
        let alice = db
            .get("ALICE")
            .map(|e| (e.domain.clone(), e.password.clone()));
        assert_eq!(alice, Some((Some("CORP".into()), "s3:cret".into())));
        let bob = db
            .get("bob")
            .map(|e| (e.domain.clone(), e.password.clone()));
        assert_eq!(bob, Some((None, String::new())));
    }

    #[test]
    fn bad_lines_name_their_line_number() {
        assert_eq!(
            UserDb::parse("ok:1\nno-colon\n").map(|d| d.len()),
            Err(NtlmError::UserFile {
                line: 2,
                reason: "expected user:password"
            })
        );
        assert!(matches!(
            UserDb::parse(":pw"),
            Err(NtlmError::UserFile { line: 1, .. })
        ));
        assert!(matches!(
            UserDb::parse("\\bob:pw"),
            Err(NtlmError::UserFile { line: 1, .. })
        ));
    }

    fn resolved(db: &UserDb, domain: &str, user: &str) -> Option<(String, bool)> {
        match db.resolve(domain, user, "STUB") {
            Lookup::Unknown => None,
            Lookup::Found { entry, domain_ok } => Some((entry.user.clone(), domain_ok)),
        }
    }

    #[test]
    fn only_the_accounts_own_domain_or_none_is_accepted() {
        let db = UserDb::parse("CORP\\alice:pw\nbob:pw\n").unwrap_or_else(|e| panic!("{e}"));
        let ok = |d: &str, u: &str| resolved(&db, d, u);
        let alice = |domain_ok| Some(("alice".to_owned(), domain_ok));
        assert_eq!(ok("CORP", "ALICE"), alice(true));
        assert_eq!(ok("corp", "alice"), alice(true));
        assert_eq!(ok("", "alice"), alice(true));
        assert_eq!(ok("corp.example", "alice"), alice(true));
        assert_eq!(ok("", "alice@corp.example"), alice(true));
        assert_eq!(ok("", "alice@CORP"), alice(true));
        assert_eq!(ok("EVILDOM", "ALICE"), alice(false));
        assert_eq!(ok("", "alice@attacker.example"), alice(false));
        assert_eq!(ok("attacker.example", "alice"), alice(false));
        assert_eq!(ok("EVILDOM", "alice@corp.example"), alice(false));
        assert_eq!(ok("CORP", "mallory"), None);
        assert_eq!(ok("", "mallory@corp.example"), None);
        // An account without a domain: none, or the server's own.
        let bob = |domain_ok| Some(("bob".to_owned(), domain_ok));
        assert_eq!(ok("", "bob"), bob(true));
        assert_eq!(ok("stub", "bob"), bob(true));
        assert_eq!(ok("CORP", "bob"), bob(false));
        assert_eq!(ok("", "bob@evil.example"), bob(false));
    }

    #[test]
    fn insert_replaces_case_insensitively_and_debug_hides_passwords() {
        let mut db = UserDb::default();
        assert!(db.is_empty());
        db.insert(None, "Bob", "one");
        db.insert(Some("CORP"), "BOB", "two");
        assert_eq!(db.len(), 1);
        assert_eq!(db.get("bob").map(|e| e.password.as_str()), Some("two"));
        assert!(!format!("{db:?}").contains("two"));
    }
}
