//! How a rule is named besides its key: the Lync cmdlets print a rule's identity as
//! `service:WebServer:<pool fqdn>/<guid>` ([`rule_identity`]). The stub keeps no id per rule:
//! the GUID is made from the key ([`rule_id`]), so it is the same in the CLI, the admin API and
//! after a restart, and a rule removed and imported again gets its id back.
//!
//! [`RuleRef`] is what the CLI and the admin API accept wherever a rule is named: the key
//! (`UCPhone/Polycom/CX700/A/ENU/CPE`), the identity, or the bare GUID.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use ucupdate_protocol::UpdateKey;

/// The GUID of the rule for `key`: the first 16 bytes of SHA-256 of the key's text, written
/// as a GUID (lower case) with the RFC 9562 version 8 and variant bits set.
pub fn rule_id(key: &UpdateKey) -> String {
    let digest = Sha256::digest(key.to_string().as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `service:WebServer:<pool>/<guid>`.
pub fn rule_identity(pool: &str, key: &UpdateKey) -> String {
    format!("service:WebServer:{pool}/{}", rule_id(key))
}

/// A rule named by key, identity or GUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleRef {
    Key(UpdateKey),
    /// A GUID, with the pool of the identity it came in (`None`: a bare GUID).
    Id {
        pool: Option<String>,
        id: String,
    },
}

/// A rule reference that is none of the three forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad rule {0:?}: expected DeviceType/Brand/Model/Revision/Locale/UpdateType, service:WebServer:<pool>/<id> or <id>")]
pub struct BadRuleRef(pub String);

fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl FromStr for RuleRef {
    type Err = BadRuleRef;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadRuleRef(text.to_owned());
        if is_guid(text) {
            return Ok(RuleRef::Id {
                pool: None,
                id: text.to_ascii_lowercase(),
            });
        }
        let prefix = "service:webserver:";
        if text.len() > prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix) {
            let (pool, id) = text[prefix.len()..].split_once('/').ok_or_else(bad)?;
            if pool.is_empty() || !is_guid(id) {
                return Err(bad());
            }
            return Ok(RuleRef::Id {
                pool: Some(pool.to_owned()),
                id: id.to_ascii_lowercase(),
            });
        }
        text.parse().map(RuleRef::Key).map_err(|_| bad())
    }
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleRef::Key(key) => write!(f, "{key}"),
            RuleRef::Id { pool: Some(p), id } => write!(f, "service:WebServer:{p}/{id}"),
            RuleRef::Id { pool: None, id } => f.write_str(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_guids_and_every_form_parses() {
        let key: UpdateKey = "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap();
        let id = rule_id(&key);
        assert!(is_guid(&id), "{id}");
        assert_eq!(&id[14..15], "8", "version 8");
        assert_eq!(id, rule_id(&key.clone()));
        let other: UpdateKey = "UCPhone/Polycom/CX700/A/ENU/CPE2".parse().unwrap();
        assert_ne!(id, rule_id(&other));
        let identity = rule_identity("pool01.contoso.com", &key);
        assert_eq!(
            identity,
            format!("service:WebServer:pool01.contoso.com/{id}")
        );
        assert_eq!(
            identity.parse::<RuleRef>().unwrap(),
            RuleRef::Id {
                pool: Some("pool01.contoso.com".into()),
                id: id.clone()
            }
        );
        // The cmdlets print `Service:`; case does not matter.
        assert!(format!("Service:WebServer:P/{}", id.to_uppercase())
            .parse::<RuleRef>()
            .is_ok());
        assert_eq!(
            id.to_uppercase().parse::<RuleRef>().unwrap(),
            RuleRef::Id {
                pool: None,
                id: id.clone()
            }
        );
        assert_eq!(
            "UCPhone/Polycom/CX700/A/ENU/CPE"
                .parse::<RuleRef>()
                .unwrap(),
            RuleRef::Key(key)
        );
        for bad in [
            "",
            "x",
            "service:WebServer:pool",
            "service:WebServer:/abc",
            "a/b",
        ] {
            assert!(bad.parse::<RuleRef>().is_err(), "{bad}");
        }
    }
}
