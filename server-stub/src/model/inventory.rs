//! The device inventory: what the server last saw of each device, the age index that evicts
//! the device seen longest ago at the cap, and recording a check into it. A device checking
//! again (nearly every check a server answers) has its entry brought up to date in place: the
//! entry rebuilt per check was about fifteen strings allocated and as many freed, 4 % of the
//! stub's CPU per check (docs/BENCHMARKS.md §4).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use ucupdate_protocol::{CheckRequest, DeviceIdentity, InstalledModule};

use super::Model;

/// What the server last saw of one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// The MAC address (canonical form), else `serial:<SN>`.
    pub device: String,
    pub device_type: String,
    pub brand: String,
    pub model: String,
    pub revision: String,
    pub locale: String,
    /// Update type -> the version the device reported running.
    pub versions: BTreeMap<String, String>,
    pub last_user: Option<String>,
    pub last_check_unix: u64,
    pub last_client: String,
    /// `none`, or `<status> <UpdateType> <version>` of the last offer.
    pub last_offer: String,
}

/// The inventory key of a device, or `None` when it sent neither MAC nor serial number.
pub fn device_id(identity: &DeviceIdentity) -> Option<String> {
    match (&identity.mac, &identity.serial) {
        (Some(mac), _) => Some(mac.to_string()),
        (None, Some(serial)) => Some(format!("serial:{serial}")),
        (None, None) => None,
    }
}

/// The longest `last_user` the inventory keeps, in bytes: the request's user is free text up
/// to the message cap, and the inventory of an anonymous site must stay small per device.
pub const MAX_INVENTORY_USER_BYTES: usize = 256;

/// Modules up to which a check's update types are compared pairwise for repeats before its
/// versions are written in place (a device lists a handful; a longer list is rebuilt).
const IN_PLACE_MODULES: usize = 16;

impl InventoryEntry {
    /// The entry a first check of `device` makes.
    fn new(device: String, request: &CheckRequest, client: &str, outcome: &str, now: u64) -> Self {
        let id = &request.identity;
        InventoryEntry {
            device,
            device_type: id.device_type.as_str().to_owned(),
            brand: id.brand.to_string(),
            model: id.model.to_string(),
            revision: id.revision.to_string(),
            locale: id.locale.to_string(),
            versions: versions(&request.modules),
            last_user: request.user.as_deref().map(|u| clip_user(u).to_owned()),
            last_check_unix: now,
            last_client: client.to_owned(),
            last_offer: outcome.to_owned(),
        }
    }

    /// Brings the entry up to what `request` says, as [`InventoryEntry::new`] would build it
    /// (a check without a user keeps the last one known: the device's screen does too),
    /// reusing every string's buffer.
    fn refresh(&mut self, request: &CheckRequest, client: &str, outcome: &str, now: u64) {
        let id = &request.identity;
        set(&mut self.device_type, id.device_type.as_str());
        set(&mut self.brand, id.brand.as_str());
        set(&mut self.model, id.model.as_str());
        set(&mut self.revision, id.revision.as_str());
        set(&mut self.locale, id.locale.as_str());
        if same_update_types(&self.versions, &request.modules) {
            for m in &request.modules {
                if let Some(version) = self.versions.get_mut(m.update_type.as_str()) {
                    version.clear();
                    // Writing into a String cannot fail.
                    let _ = write!(version, "{}", m.version);
                }
            }
        } else {
            self.versions = versions(&request.modules);
        }
        if let Some(user) = request.user.as_deref() {
            match &mut self.last_user {
                Some(last) => set(last, clip_user(user)),
                None => self.last_user = Some(clip_user(user).to_owned()),
            }
        }
        self.last_check_unix = now;
        set(&mut self.last_client, client);
        set(&mut self.last_offer, outcome);
    }
}

fn versions(modules: &[InstalledModule]) -> BTreeMap<String, String> {
    modules
        .iter()
        .map(|m| (m.update_type.to_string(), m.version.to_string()))
        .collect()
}

/// The check lists exactly the entry's update types, each once: its versions can be written
/// over the old ones.
fn same_update_types(versions: &BTreeMap<String, String>, modules: &[InstalledModule]) -> bool {
    modules.len() == versions.len()
        && modules.len() <= IN_PLACE_MODULES
        && modules.iter().enumerate().all(|(i, m)| {
            versions.contains_key(m.update_type.as_str())
                && modules[..i].iter().all(|p| p.update_type != m.update_type)
        })
}

/// `field = value`, in the field's own buffer (no allocation when it fits, none at all when
/// the value is unchanged).
fn set(field: &mut String, value: &str) {
    if field != value {
        field.clear();
        field.push_str(value);
    }
}

/// The first [`MAX_INVENTORY_USER_BYTES`] of a user name, cut at a character boundary.
fn clip_user(user: &str) -> &str {
    let mut end = user.len().min(MAX_INVENTORY_USER_BYTES);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    &user[..end]
}

impl Model {
    /// Adds or replaces one inventory entry (loading, migration, [`Model::record_check`]).
    pub fn remember(&mut self, entry: InventoryEntry) {
        let age = (entry.last_check_unix, entry.device.clone());
        if let Some(old) = self.inventory.insert(entry.device.clone(), entry) {
            self.seen.remove(&(old.last_check_unix, old.device));
        }
        self.seen.insert(age);
    }

    /// Forgets every inventory entry of one model (device type, brand, model, revision,
    /// locale); returns their ids.
    pub fn forget_model(&mut self, model: [&str; 5]) -> Vec<String> {
        let gone: Vec<String> = self
            .inventory
            .values()
            .filter(|e| {
                [&e.device_type, &e.brand, &e.model, &e.revision, &e.locale].map(String::as_str)
                    == model
            })
            .map(|e| e.device.clone())
            .collect();
        for device in &gone {
            if let Some(e) = self.inventory.remove(device) {
                self.seen.remove(&(e.last_check_unix, e.device));
            }
        }
        gone
    }

    /// Forgets the devices seen longest ago until at most `cap` are left; returns their ids.
    pub fn evict_to(&mut self, cap: usize) -> Vec<String> {
        let mut gone = Vec::new();
        while self.inventory.len() > cap {
            let Some((_, device)) = self.seen.pop_first() else {
                break;
            };
            self.inventory.remove(&device);
            gone.push(device);
        }
        gone
    }

    /// Records a check in the inventory (devices with neither MAC nor serial are not tracked).
    /// At most `cap` devices are remembered: a new device beyond it makes the one seen longest
    /// ago forgotten (anonymous checks can name any number of made-up devices). Returns the
    /// devices forgotten. The server goes through [`Model::record_check_of`] (its state makes
    /// the id once per check); this form is the tests'.
    #[cfg(test)]
    pub fn record_check(
        &mut self,
        request: &CheckRequest,
        client: &str,
        outcome: &str,
        now_unix: u64,
        cap: usize,
    ) -> Vec<String> {
        match device_id(&request.identity) {
            Some(device) => self.record_check_of(device, request, client, outcome, now_unix, cap),
            None => Vec::new(),
        }
    }

    /// [`Model::record_check`] for a device whose id ([`device_id`]) the caller already made.
    pub fn record_check_of(
        &mut self,
        device: String,
        request: &CheckRequest,
        client: &str,
        outcome: &str,
        now_unix: u64,
        cap: usize,
    ) -> Vec<String> {
        match self.inventory.get_mut(&device) {
            Some(entry) => {
                let before = entry.last_check_unix;
                entry.refresh(request, client, outcome, now_unix);
                if before != now_unix {
                    // The age index moves the same key string: nothing is allocated.
                    let mut age = (before, device);
                    self.seen.remove(&age);
                    age.0 = now_unix;
                    self.seen.insert(age);
                }
            }
            None => {
                let entry = InventoryEntry::new(device, request, client, outcome, now_unix);
                self.remember(entry);
            }
        }
        self.evict_to(cap.max(1))
    }
}
