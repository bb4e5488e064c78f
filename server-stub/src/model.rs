//! The service's state as plain data and the pure functions over it: update rules (pending,
//! approved, restore), test devices, the file catalog of each imported version, the device
//! inventory, and [`decide`], which turns a [`CheckRequest`] into a [`CheckResponse`].
//!
//! Nothing here does I/O or reads a clock; `now` is an argument. The rule semantics follow the
//! Lync `CsDeviceUpdateRule` model described in `docs/SERVICE-FACTS.md`:
//! - import makes a version **pending** (test devices only);
//! - approve: pending becomes approved, the previous approved becomes the restore version;
//! - restore: the restore version becomes the approved one again (offered with status
//!   `restore`); with no restore version the update is uninstalled: the approved version is
//!   cleared and devices are offered nothing for the key (Restore-CsDeviceUpdateRule);
//! - reset: works on a pending version only: it is cancelled, test devices fall back to the
//!   approved one;
//! - remove: the rule goes; its stored files stay until `files clear`.
//!
//! Test devices are named objects ([`devices`]); rules are also named by an identity made
//! from the key ([`rule_ref`]).
//! - a device is offered the approved version whenever it differs from what it runs, older
//!   included; a test device is offered the pending one when there is one.

pub mod devices;
mod inventory;
pub mod rule_ref;

pub use inventory::{device_id, InventoryEntry, MAX_INVENTORY_USER_BYTES};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use devices::{generated_name, DeviceError, NamedTestDevice, TestDeviceId};
use rule_ref::RuleRef;
use serde::{Deserialize, Serialize};
use ucupdate_protocol::{
    CheckRequest, CheckResponse, DeviceIdentity, FileKind, FileName, FirmwareVersion, HttpUrl,
    MacAddress, Offer, OfferStatus, OfferedFile, SerialNumber, Sha256Digest, StoreKind, StorePath,
    UpdateKey,
};

/// Why a rule transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// No rule exists for the key (nothing was ever imported for it).
    #[error("no rule for {0}")]
    UnknownRule(Box<UpdateKey>),
    /// Approve or reset with no pending version.
    #[error("{0}: no pending version")]
    NothingPending(Box<UpdateKey>),
    /// Restore with neither a restore nor an approved version (nothing to uninstall).
    #[error("{0}: no restore version and nothing approved")]
    NothingToRestore(Box<UpdateKey>),
    /// A rule named by an identity of another pool (rules are per Web Services instance).
    #[error("rule {id} is on pool {pool}, this server is {ours}")]
    OtherPool {
        id: String,
        pool: String,
        ours: String,
    },
    /// No rule has this id.
    #[error("no rule with id {0}")]
    UnknownId(String),
}

/// One update rule: which version each class of device should run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default)]
    pub pending: Option<FirmwareVersion>,
    #[serde(default)]
    pub approved: Option<FirmwareVersion>,
    #[serde(default)]
    pub restore: Option<FirmwareVersion>,
    /// Set by restore: the approved version is a rollback and is offered with status `restore`.
    #[serde(default)]
    pub rolled_back: bool,
}

impl Rule {
    /// A new version arrived (import or publish): it is pending. With `deploy`, it is approved
    /// at once (R2's RoundTable rule).
    pub fn import(&mut self, version: FirmwareVersion, deploy: bool) {
        self.pending = Some(version);
        if deploy {
            self.promote();
        }
    }

    pub fn approve(&mut self, key: &UpdateKey) -> Result<(), RuleError> {
        if self.pending.is_none() {
            return Err(RuleError::NothingPending(Box::new(key.clone())));
        }
        self.promote();
        Ok(())
    }

    fn promote(&mut self) {
        if let Some(pending) = self.pending.take() {
            // Approving the running approved version again must not lose the restore point.
            if self.approved != Some(pending) {
                self.restore = self.approved.or(self.restore);
            }
            self.approved = Some(pending);
            self.rolled_back = false;
        }
    }

    /// Back to the restore version; with none, the update is uninstalled (the approved
    /// version is cleared, so only a pending version, for test devices, is left).
    pub fn restore(&mut self, key: &UpdateKey) -> Result<(), RuleError> {
        match self.restore.take() {
            Some(restore) => {
                self.approved = Some(restore);
                self.rolled_back = true;
            }
            None if self.approved.is_some() => {
                self.approved = None;
                self.rolled_back = false;
            }
            None => return Err(RuleError::NothingToRestore(Box::new(key.clone()))),
        }
        Ok(())
    }

    pub fn reset(&mut self, key: &UpdateKey) -> Result<(), RuleError> {
        self.pending
            .take()
            .map(|_| ())
            .ok_or_else(|| RuleError::NothingPending(Box::new(key.clone())))
    }

    /// The version a device should run, if any, and the status it is offered with.
    pub fn target(&self, test_device: bool) -> Option<(FirmwareVersion, OfferStatus)> {
        if test_device {
            if let Some(pending) = self.pending {
                return Some((pending, OfferStatus::Pending));
            }
        }
        let status = if self.rolled_back {
            OfferStatus::Restore
        } else {
            OfferStatus::Approved
        };
        self.approved.map(|v| (v, status))
    }
}

/// A test device, named by MAC address or serial number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TestDevice {
    Mac(MacAddress),
    Serial(SerialNumber),
}

impl TestDevice {
    pub fn matches(&self, identity: &DeviceIdentity) -> bool {
        match self {
            TestDevice::Mac(mac) => identity.mac.as_ref() == Some(mac),
            TestDevice::Serial(serial) => identity.serial.as_ref() == Some(serial),
        }
    }
}

impl FromStr for TestDevice {
    type Err = ucupdate_protocol::ProtocolError;
    /// `mac:<MAC>` or `serial:<SN>`; bare, a MAC in any accepted spelling, else a serial
    /// number. A 12-hex-digit serial number reads as a MAC; write it as `serial:<SN>` to force
    /// the serial reading. A bare value that looks like a MAC attempt (a `:`, or `-`-split
    /// pairs, as in `zz-zz` or the five-pair `00-04-F2-00-01`) but is not six hex pairs is
    /// refused: serial numbers have neither shape, and storing it as one would make a test
    /// device no phone ever matches.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(serial) = text.strip_prefix("serial:") {
            return serial.parse().map(TestDevice::Serial);
        }
        if let Some(mac) = text.strip_prefix("mac:") {
            return mac.parse().map(TestDevice::Mac);
        }
        match text.parse::<MacAddress>() {
            Ok(mac) => Ok(TestDevice::Mac(mac)),
            Err(e) if looks_like_a_mac(text) => Err(e),
            Err(_) => text.parse().map(TestDevice::Serial),
        }
    }
}

/// A `:`, or two or more `-`-split groups that are all two characters long.
fn looks_like_a_mac(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    text.contains(':') || (groups.len() > 1 && groups.iter().all(|g| g.len() == 2))
}

impl fmt::Display for TestDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestDevice::Mac(mac) => write!(f, "{mac}"),
            TestDevice::Serial(serial) => write!(f, "serial:{serial}"),
        }
    }
}

/// One stored file of a version, hashed once when it was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub name: FileName,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// The whole service state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub rules: BTreeMap<UpdateKey, Rule>,
    /// Test devices by folded identity ([`devices::TestDeviceId::folded`]).
    pub test_devices: BTreeMap<String, devices::NamedTestDevice>,
    pub catalog: BTreeMap<(UpdateKey, FirmwareVersion), Vec<FileMeta>>,
    /// Read freely; change through [`Model::remember`] and [`Model::record_check`], which
    /// keep the age index that eviction at the cap uses.
    pub inventory: BTreeMap<String, InventoryEntry>,
    /// `(last_check_unix, device)` of every inventory entry: the oldest-seen device is the
    /// first, so eviction at the cap costs a log, not a scan of the inventory.
    seen: BTreeSet<(u64, String)>,
}

/// Where offered files are downloaded from: the scheme, authority and optional path prefix of
/// the internal and external listeners (or their public names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseUrls {
    pub internal: Option<HttpUrl>,
    pub external: Option<HttpUrl>,
    /// Which store URLs to name (R2's or Lync's, [`crate::layout`]).
    pub layout: crate::layout::StoreLayout,
}

impl BaseUrls {
    fn url(&self, base: Option<&HttpUrl>, path: &StorePath) -> String {
        match base {
            Some(base) => {
                let prefix = base.path.trim_end_matches('/');
                let dir = crate::layout::url_path(path, self.layout);
                base.with_path(&format!("{prefix}{dir}")).to_string()
            }
            None => String::new(),
        }
    }
}

/// The outcome of a check: the reply and the short text the audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub response: CheckResponse,
    pub outcome: String,
}

impl Model {
    /// Whether any test-device entry names this device.
    pub fn is_test_device(&self, identity: &DeviceIdentity) -> bool {
        self.test_devices
            .values()
            .any(|t| t.device.matches(identity))
    }

    /// The devices the test devices name, each once.
    pub fn test_device_list(&self) -> Vec<TestDevice> {
        let set: BTreeSet<TestDevice> = self
            .test_devices
            .values()
            .map(|t| t.device.clone())
            .collect();
        set.into_iter().collect()
    }

    /// One named test device.
    pub fn test_device(&self, id: &TestDeviceId) -> Option<&NamedTestDevice> {
        self.test_devices.get(&id.folded())
    }

    /// New-CsTestDevice: refused if the identity exists.
    pub fn add_named(&mut self, id: TestDeviceId, device: TestDevice) -> Result<(), DeviceError> {
        let folded = id.folded();
        if self.test_devices.contains_key(&folded) {
            return Err(DeviceError::Exists(id.to_string()));
        }
        self.test_devices
            .insert(folded, NamedTestDevice { id, device });
        Ok(())
    }

    /// Set-CsTestDevice: a new identifier for an existing test device.
    pub fn set_named(&mut self, id: &TestDeviceId, device: TestDevice) -> Result<(), DeviceError> {
        match self.test_devices.get_mut(&id.folded()) {
            Some(entry) => {
                entry.device = device;
                Ok(())
            }
            None => Err(DeviceError::Unknown(id.to_string())),
        }
    }

    /// Remove-CsTestDevice.
    pub fn remove_named(&mut self, id: &TestDeviceId) -> Result<NamedTestDevice, DeviceError> {
        self.test_devices
            .remove(&id.folded())
            .ok_or_else(|| DeviceError::Unknown(id.to_string()))
    }

    /// The unnamed form: adds `device` under its generated name ([`generated_name`]) unless a
    /// test device names it already; `true` if added.
    pub fn add_test_device(&mut self, device: TestDevice) -> bool {
        if self.test_devices.values().any(|t| t.device == device) {
            return false;
        }
        let base = generated_name(&device);
        let mut id = base.clone();
        let mut n = 2;
        while self.test_devices.contains_key(&id.folded()) {
            id.name = format!("{}-{n}", base.name);
            n += 1;
        }
        self.test_devices
            .insert(id.folded(), NamedTestDevice { id, device });
        true
    }

    /// The unnamed form: removes every test device that names `device`; `true` if any did.
    pub fn remove_test_device(&mut self, device: &TestDevice) -> bool {
        let before = self.test_devices.len();
        self.test_devices.retain(|_, t| t.device != *device);
        self.test_devices.len() != before
    }

    /// The key of the rule `r` names, on the pool `pool` (identities of another pool are
    /// refused: rules are per Web Services instance).
    pub fn resolve(&self, r: &RuleRef, pool: &str) -> Result<UpdateKey, RuleError> {
        match r {
            RuleRef::Key(key) => Ok(key.clone()),
            RuleRef::Id { pool: their, id } => {
                if let Some(their) = their.as_deref().filter(|p| !p.eq_ignore_ascii_case(pool)) {
                    return Err(RuleError::OtherPool {
                        id: id.clone(),
                        pool: their.to_owned(),
                        ours: pool.to_owned(),
                    });
                }
                self.rules
                    .keys()
                    .find(|k| rule_ref::rule_id(k) == *id)
                    .cloned()
                    .ok_or_else(|| RuleError::UnknownId(id.clone()))
            }
        }
    }

    /// Remove-CsDeviceUpdateRule: the rule goes; its versions' files stay stored (and listed)
    /// until [`Model::unreferenced_versions`] finds them.
    pub fn remove_rule(&mut self, key: &UpdateKey) -> Result<Rule, RuleError> {
        self.rules
            .remove(key)
            .ok_or_else(|| RuleError::UnknownRule(Box::new(key.clone())))
    }

    /// The stored versions no rule names as pending, approved or restore version (what
    /// Clear-CsDeviceUpdateFile deletes).
    pub fn unreferenced_versions(&self) -> Vec<(UpdateKey, FirmwareVersion)> {
        self.catalog
            .keys()
            .filter(|(key, version)| !self.references(key, *version))
            .cloned()
            .collect()
    }

    /// Whether the rule of `key` names `version`.
    pub fn references(&self, key: &UpdateKey, version: FirmwareVersion) -> bool {
        self.rules
            .get(key)
            .is_some_and(|r| [r.pending, r.approved, r.restore].contains(&Some(version)))
    }

    /// Records a new version (files already stored) and makes it pending.
    pub fn import(
        &mut self,
        key: UpdateKey,
        version: FirmwareVersion,
        files: Vec<FileMeta>,
        deploy: bool,
    ) {
        self.catalog.insert((key.clone(), version), files);
        self.rules.entry(key).or_default().import(version, deploy);
    }

    /// Adds or replaces one file of a version and makes that version pending.
    pub fn publish_file(
        &mut self,
        key: UpdateKey,
        version: FirmwareVersion,
        file: FileMeta,
        deploy: bool,
    ) {
        let files = self.catalog.entry((key.clone(), version)).or_default();
        files.retain(|f| f.name != file.name);
        files.push(file);
        files.sort_by(|a, b| a.name.cmp(&b.name));
        self.rules.entry(key).or_default().import(version, deploy);
    }

    fn rule_mut(&mut self, key: &UpdateKey) -> Result<&mut Rule, RuleError> {
        self.rules
            .get_mut(key)
            .ok_or_else(|| RuleError::UnknownRule(Box::new(key.clone())))
    }

    pub fn approve(&mut self, key: &UpdateKey) -> Result<Rule, RuleError> {
        let rule = self.rule_mut(key)?;
        rule.approve(key)?;
        Ok(rule.clone())
    }

    pub fn restore(&mut self, key: &UpdateKey) -> Result<Rule, RuleError> {
        let rule = self.rule_mut(key)?;
        rule.restore(key)?;
        Ok(rule.clone())
    }

    pub fn reset(&mut self, key: &UpdateKey) -> Result<Rule, RuleError> {
        let rule = self.rule_mut(key)?;
        rule.reset(key)?;
        Ok(rule.clone())
    }

    /// The pure decision: the first of the device's modules (in request order) whose rule
    /// targets a version other than the one it runs is offered; one update per check.
    pub fn decide(&self, request: &CheckRequest, bases: &BaseUrls) -> Decision {
        let test = self.is_test_device(&request.identity);
        for module in &request.modules {
            let key = UpdateKey::for_device(&request.identity, module.update_type.clone());
            let Some(rule) = self.rules.get(&key) else {
                continue;
            };
            let Some((version, status)) = rule.target(test) else {
                continue;
            };
            if version == module.version {
                continue;
            }
            let Some(files) = self
                .catalog
                .get(&(key.clone(), version))
                .filter(|f| !f.is_empty())
            else {
                tracing::warn!(%key, %version, "rule names a version with no stored files; not offered");
                continue;
            };
            let path = |kind| StorePath {
                kind,
                key: key.clone(),
                version,
            };
            let offer = Offer {
                base_url: bases.url(bases.internal.as_ref(), &path(StoreKind::Internal)),
                external_base_url: bases.url(bases.external.as_ref(), &path(StoreKind::External)),
                update_type: key.update_type.clone(),
                version,
                timestamp: None,
                status,
                files: files
                    .iter()
                    .map(|f| OfferedFile {
                        kind: FileKind::of(&f.name),
                        file_name: f.name.clone(),
                        size: Some(f.size),
                        sha256: Some(f.sha256),
                    })
                    .collect(),
            };
            let outcome = format!("{} {} {}", status.as_str(), key.update_type, version);
            return Decision {
                response: CheckResponse::Update(offer),
                outcome,
            };
        }
        Decision {
            response: CheckResponse::NoUpdate,
            outcome: "none".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
