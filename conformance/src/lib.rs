//! The conformance suite: a catalogue of named checks that ask "does this Device Update server
//! behave the way devices expect?" of any server, by URL, through its public endpoints only
//! (plus, optionally, the admin API of a `ucupdate-server` for the rule transitions). The same
//! checks run against a Lync/SfB pool, the stub, or anything else (as hickory-dns's
//! conformance suite picks its server under test). It speaks through the agent's own HTTP, TLS
//! and NTLM client and depends on nothing of the simulator, so a CI image can ship the
//! `ucupdate-conformance` binary alone.
//!
//! # Layout
//! - this file: [`Options`], [`ProbeDevice`], [`CheckResult`], [`Outcome`], [`catalogue`],
//!   [`run`].
//! - [`cli`]: the command line ([`cli::Args`], [`cli::run`]) shared by the `ucupdate-conformance`
//!   binary and `ucupdate-sim conformance`, so both take the same flags and print the same.
//! - `checks`: the catalogue itself and one function per check; the shared context that runs
//!   the admin setup and caches the offer and the downloads between checks.
//! - `raw`: HTTP/1.1 on one pinned connection, for status codes, headers and NTLM legs.
//! - `report`: [`render_table`] and [`junit_xml`].
//!
//! Time is read through `ucupdate_agent::clock` (tokio's pausable clock), the one clock module
//! this crate uses.
//!
//! Names are stable kebab-case (CI pipelines `--skip` them); every skip says why in `detail`.
//! See `docs/CONFORMANCE.md` for what each check asserts and the field failure behind it.

mod checks;
pub mod cli;
mod raw;
mod report;
#[cfg(test)]
mod tests;

use std::time::Duration;

use ucupdate_protocol::{
    DeviceIdentity, DeviceType, FileName, FirmwareVersion, HttpUrl, MacAddress, PathSegment,
    SerialNumber,
};

pub use report::{junit_xml, render_table};

/// What to test and how. `Debug` never shows the password.
#[derive(Clone)]
pub struct Options {
    /// The internal check URL (`http(s)://pool/RequestHandler/ucdevice.upx`).
    pub target: HttpUrl,
    /// The external check URL (`https://edge/RequestHandlerExt/ucdevice.upx`), NTLM-protected.
    pub external_target: Option<HttpUrl>,
    /// `DOMAIN\user` (or `user@domain`) for the external checks.
    pub user: Option<String>,
    /// The user's password (never logged or reported).
    pub password: Option<String>,
    /// The admin API of a `ucupdate-server` (`http://127.0.0.1:port/`): enables the checks
    /// that publish, approve, restore and reset a probe update.
    pub admin: Option<HttpUrl>,
    /// The admin API's bearer token (the content of the server's `DATA/admin.token`; never
    /// logged or reported).
    pub admin_token: Option<String>,
    /// PEM CA bundle to trust for `https` (default: the Mozilla roots).
    pub ca_pem: Option<Vec<u8>>,
    /// The catalog trust anchors (`--trust`): enables the signed-catalog checks, which verify
    /// the offered `.cat` with the agent's own verifier.
    pub trust: Option<ucupdate_agent::trust::TrustAnchors>,
    /// Run only these checks (empty: all).
    pub only: Vec<String>,
    /// Never run these checks.
    pub skip: Vec<String>,
    /// The identity and version the probes claim.
    pub device: ProbeDevice,
    /// The wire dialect of the probes' checks (`--dialect`); `None`: the built-in one.
    pub dialect: Option<std::sync::Arc<ucupdate_protocol::dialect::Dialect>>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("target", &self.target)
            .field("external_target", &self.external_target)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("admin", &self.admin)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| pem.len()))
            .field("trust", &self.trust.as_ref().map(|t| t.len()))
            .field("only", &self.only)
            .field("skip", &self.skip)
            .field("device", &self.device)
            .field("dialect", &self.dialect.as_ref().map(|d| d.name.as_str()))
            .finish()
    }
}

impl Options {
    /// Defaults for everything but the target: no external site, no admin, the default probe.
    pub fn new(target: HttpUrl) -> Options {
        Options {
            target,
            external_target: None,
            user: None,
            password: None,
            admin: None,
            admin_token: None,
            ca_pem: None,
            trust: None,
            only: Vec::new(),
            skip: Vec::new(),
            device: ProbeDevice::default(),
            dialect: None,
        }
    }
}

/// The device the probes pretend to be. With `--admin` the suite publishes its probe update
/// under this identity's rule key, so keep the default (a model no real rule names) there.
/// Against a pool without admin access, name a real model whose update is approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeDevice {
    /// Device type, brand, model, revision, locale, MAC and serial of the probe. It must not
    /// be a test device on the server (the suite derives a separate test-device MAC).
    pub identity: DeviceIdentity,
    /// The module's update type (`CPE`).
    pub update_type: PathSegment,
    /// The module's image file name (`CPE.nbt`).
    pub image: FileName,
    /// The firmware version the probe claims to run (with `--admin`, the first probe version
    /// the suite publishes).
    pub version: FirmwareVersion,
}

impl Default for ProbeDevice {
    fn default() -> Self {
        // Literals, valid by inspection (and built by a unit test).
        let seg = |s: &str| PathSegment::new(s).expect("valid path segment literal");
        ProbeDevice {
            identity: DeviceIdentity {
                device_type: DeviceType::UcPhone,
                brand: seg("ucupdate"),
                model: seg("ConformanceProbe"),
                revision: seg("A"),
                locale: seg("ENU"),
                // Locally administered (bit 1 of the first octet): never a real NIC's address.
                mac: Some(MacAddress::new([0x02, 0x55, 0x43, 0x00, 0x00, 0x01])),
                serial: "UCCONF-PROBE-1".parse::<SerialNumber>().ok(),
            },
            update_type: seg("CPE"),
            image: FileName::new("CPE.nbt").expect("valid file name literal"),
            version: FirmwareVersion::new(1, 0, 100, 1),
        }
    }
}

impl std::str::FromStr for ProbeDevice {
    type Err = String;

    /// `DeviceType/Brand/Model/Revision/Locale/UpdateType@Version[,mac=M][,serial=S][,image=F]`,
    /// e.g. `UCPhone/Polycom/CX700/A/ENU/CPE@1.0.522.101,mac=00-04-F2-00-01-76`. MAC and
    /// serial default to the default probe's; the image defaults to `<UpdateType>.nbt`.
    fn from_str(spec: &str) -> Result<Self, String> {
        let mut parts = spec.split(',');
        let head = parts.next().unwrap_or_default();
        let (key, version) = head.split_once('@').ok_or_else(|| {
            format!(
                "{spec:?}: expected KEY@VERSION, e.g. UCPhone/Polycom/CX700/A/ENU/CPE@1.0.522.101"
            )
        })?;
        let key: ucupdate_protocol::UpdateKey =
            key.parse().map_err(|e| format!("{spec:?}: {e}"))?;
        let version: FirmwareVersion = version.parse().map_err(|e| format!("{spec:?}: {e}"))?;
        let default = ProbeDevice::default();
        let mut probe = ProbeDevice {
            identity: DeviceIdentity {
                device_type: key.device_type,
                brand: key.brand,
                model: key.model,
                revision: key.revision,
                locale: key.locale,
                mac: default.identity.mac,
                serial: default.identity.serial,
            },
            image: FileName::new(&format!("{}.nbt", key.update_type))
                .map_err(|e| format!("{spec:?}: {e}"))?,
            update_type: key.update_type,
            version,
        };
        for option in parts {
            let bad = |e: ucupdate_protocol::ProtocolError| format!("{spec:?}: {option}: {e}");
            match option.split_once('=') {
                Some(("mac", m)) => probe.identity.mac = Some(m.parse().map_err(bad)?),
                Some(("serial", s)) => probe.identity.serial = Some(s.parse().map_err(bad)?),
                Some(("image", f)) => probe.image = FileName::new(f).map_err(bad)?,
                _ => {
                    return Err(format!(
                        "{spec:?}: unknown option {option:?} (mac=, serial=, image=)"
                    ))
                }
            }
        }
        Ok(probe)
    }
}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Pass,
    Fail,
    /// Not applicable here (no external target, no admin, nothing offered...); `detail`
    /// always says why.
    Skip,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub name: &'static str,
    pub description: &'static str,
    pub outcome: Outcome,
    /// What was seen (pass), what was wrong (fail) or why it did not run (skip).
    pub detail: String,
    pub duration: Duration,
}

/// Every check, in the order [`run`] runs them: `(name, one-line description)`.
pub fn catalogue() -> Vec<(&'static str, &'static str)> {
    checks::CHECKS
        .iter()
        .map(|c| (c.name, c.description))
        .collect()
}

/// Names in `only` or `skip` that are not in the catalogue (a typo in CI should be loud).
pub fn unknown_names(options: &Options) -> Vec<String> {
    options
        .only
        .iter()
        .chain(&options.skip)
        .filter(|n| !checks::CHECKS.iter().any(|c| c.name == n.as_str()))
        .cloned()
        .collect()
}

/// Runs the selected checks one after another and returns their results in catalogue order.
/// Checks deselected by `only` / `skip` are left out of the results.
pub async fn run(options: &Options) -> Vec<CheckResult> {
    checks::run(options).await
}
