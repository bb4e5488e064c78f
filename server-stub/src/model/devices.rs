//! Test devices as the Lync cmdlets keep them (`New/Get/Set/Remove-CsTestDevice`): named
//! objects at global or site scope, identity `global/<Name>` or `site:<Site>/<Name>`, each
//! naming one device by MAC address or serial number ([`TestDevice`]).
//!
//! The stub serves one site, so a site-scoped test device counts for every device, like a
//! global one: the scope is kept so that names and identities match the cmdlets'. Identities
//! compare without regard to ASCII case (the cmdlets' do). Test devices stored before they had
//! names get one made from what they name ([`generated_name`]: `mac-00-04-F2-00-01-76`,
//! `serial-PCX-1`), at global scope.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::TestDevice;

/// Why a test-device name, identity or change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// Not `global/<Name>` or `site:<Site>/<Name>`, or a bad name or site.
    #[error("bad test device identity {0:?}: expected global/NAME or site:SITE/NAME (names: 1-64 letters, digits, space, '-', '_', '.')")]
    BadIdentity(String),
    /// No test device has this identity.
    #[error("no test device {0}")]
    Unknown(String),
    /// A test device with this identity exists already (New-CsTestDevice refuses too).
    #[error("test device {0} exists already")]
    Exists(String),
}

/// Where a test device is defined.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Global,
    Site(String),
}

/// A test device's identity: its scope and its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TestDeviceId {
    pub scope: Scope,
    pub name: String,
}

const MAX_NAME: usize = 64;

fn valid(text: &str, space: bool) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME
        && text.trim() == text
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') || (space && b == b' ')
        })
}

impl TestDeviceId {
    /// `name` at `site`, or at global scope without one.
    pub fn new(site: Option<&str>, name: &str) -> Result<Self, DeviceError> {
        let shown = match site {
            Some(site) => format!("site:{site}/{name}"),
            None => format!("global/{name}"),
        };
        let bad = || DeviceError::BadIdentity(shown.clone());
        if !valid(name, true) {
            return Err(bad());
        }
        let scope = match site {
            Some(site) if valid(site, false) => Scope::Site(site.to_owned()),
            Some(_) => return Err(bad()),
            None => Scope::Global,
        };
        Ok(TestDeviceId {
            scope,
            name: name.to_owned(),
        })
    }

    /// The identity split at its `/` (URL paths): `global` or `site:SITE`, and the name.
    pub fn from_str_parts(scope: &str, name: &str) -> Result<Self, DeviceError> {
        format!("{scope}/{name}").parse()
    }

    /// The key identities are compared by: the identity in lower case.
    pub fn folded(&self) -> String {
        self.to_string().to_ascii_lowercase()
    }

    /// `global` or `site:<Site>`.
    pub fn scope_text(&self) -> String {
        match &self.scope {
            Scope::Global => "global".to_owned(),
            Scope::Site(site) => format!("site:{site}"),
        }
    }
}

impl FromStr for TestDeviceId {
    type Err = DeviceError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || DeviceError::BadIdentity(text.to_owned());
        let (scope, name) = text.split_once('/').ok_or_else(bad)?;
        if scope.eq_ignore_ascii_case("global") {
            return TestDeviceId::new(None, name).map_err(|_| bad());
        }
        match scope.get(..5) {
            Some(prefix) if prefix.eq_ignore_ascii_case("site:") => {
                TestDeviceId::new(Some(&scope[5..]), name).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for TestDeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.scope_text(), self.name)
    }
}

/// One named test device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTestDevice {
    pub id: TestDeviceId,
    pub device: TestDevice,
}

/// How the CLI and the admin API show a test device (the cmdlets' fields, and `device`, the
/// spelling the unnamed API used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestDeviceView {
    pub identity: String,
    pub scope: String,
    pub name: String,
    /// `MACAddress` or `SerialNumber` (`-IdentifierType`).
    pub identifier_type: &'static str,
    pub identifier: String,
    pub device: String,
}

impl NamedTestDevice {
    pub fn view(&self) -> TestDeviceView {
        let (identifier_type, identifier) = match &self.device {
            TestDevice::Mac(mac) => ("MACAddress", mac.to_string()),
            TestDevice::Serial(serial) => ("SerialNumber", serial.to_string()),
        };
        TestDeviceView {
            identity: self.id.to_string(),
            scope: self.id.scope_text(),
            name: self.id.name.clone(),
            identifier_type,
            identifier,
            device: self.device.to_string(),
        }
    }
}

/// The name an unnamed test device gets (the migration, and the unnamed CLI and API forms):
/// `mac-<MAC>` or `serial-<SN>`, at global scope.
pub fn generated_name(device: &TestDevice) -> TestDeviceId {
    let name = match device {
        TestDevice::Mac(mac) => format!("mac-{mac}"),
        TestDevice::Serial(serial) => format!("serial-{serial}"),
    };
    // A MAC is 17 characters and a serial number at most 64: cut at the name limit.
    let name: String = name.chars().take(MAX_NAME).collect();
    TestDeviceId {
        scope: Scope::Global,
        name,
    }
}

/// Reads a `--mac` / `MACAddress` identifier: exactly six hex pairs, run together or split by
/// `-` or `:`. Anything else is refused (never read as a serial number).
pub fn parse_mac(text: &str) -> Result<TestDevice, ucupdate_protocol::ProtocolError> {
    text.parse().map(TestDevice::Mac)
}

/// Reads a `--serial` / `SerialNumber` identifier (letters, digits, `-`, `_`).
pub fn parse_serial(text: &str) -> Result<TestDevice, ucupdate_protocol::ProtocolError> {
    text.parse().map(TestDevice::Serial)
}
