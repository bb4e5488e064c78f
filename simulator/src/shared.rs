//! A run that administers a shared (remote) `ucupdate-server`: it publishes, approves and
//! restores under the profiles' probe models only ([`crate::profile::probes`]), never a real
//! model's rule; it says on stderr what it will change before it changes anything; and it
//! removes what it added when it ends: its rules, their stored files, its test devices and its
//! models' inventory entries. An earlier run's leftovers under the same probe keys are removed
//! before the run, so each run starts from no rule. The coordinator shard (`--admin-shard`)
//! does all of this; the other shards only check as the probe models.
//!
//! What the admin API cannot remove stays, and the notice says so: the audit log of the run's
//! checks (and any uploaded device logs), which `logs clear` removes only by age, with
//! everyone else's.

use std::fmt;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use ucupdate_protocol::{FirmwareVersion, MacAddress, UpdateKey};

use crate::embedded::{key_path, HttpAdmin};
use crate::fleet::{DeviceSpec, FleetSpec};
use crate::profile;

/// What the admin API cannot remove, said before the run and after it.
const LEFT_ALWAYS: &str = "the audit log of the run's checks and any device logs they uploaded \
                           (`ucupdate-server logs clear --days-back N` removes logs by age only)";

/// The MACs the server gets as test devices: the fleet's devices below `test_devices`.
pub fn test_device_macs(fleet: &FleetSpec) -> impl Iterator<Item = MacAddress> + '_ {
    (0..fleet.devices.min(fleet.test_devices))
        .map(|index| DeviceSpec::derive(index, fleet))
        .filter(|spec| spec.test_device)
        .map(|spec| spec.mac())
}

/// Everything a run adds to a shared server.
#[derive(Debug, Clone)]
pub struct Footprint {
    /// Each probe rule with the versions the run publishes (initial, target).
    pub rules: Vec<(UpdateKey, [FirmwareVersion; 2])>,
    pub test_devices: Vec<MacAddress>,
}

/// What a clean-up removed, and what it could not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleanup {
    pub rules: usize,
    pub versions: usize,
    pub test_devices: usize,
    pub inventory: usize,
    /// What stayed, with why.
    pub left: Vec<String>,
    /// The admin API refused the token or could not be reached: nothing was tried after that.
    pub refused: Option<String>,
}

impl Cleanup {
    fn removed_anything(&self) -> bool {
        self.rules + self.versions + self.test_devices + self.inventory > 0
    }
}

impl fmt::Display for Cleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "removed {} rules, {} stored versions, {} test devices, {} inventory entries",
            self.rules, self.versions, self.test_devices, self.inventory
        )?;
        if let Some(refused) = &self.refused {
            write!(f, "; then stopped: {refused}")?;
        }
        if !self.left.is_empty() {
            write!(f, "; left: {}", self.left.join("; "))?;
        }
        Ok(())
    }
}

impl Footprint {
    /// The probe rules of the profiles the fleet's mix uses, and its test devices.
    pub fn of(fleet: &FleetSpec) -> Footprint {
        let probes = profile::probes();
        let mut used: Vec<usize> = fleet.mix.0.iter().map(|&(p, _)| p as usize).collect();
        used.sort_unstable();
        used.dedup();
        Footprint {
            rules: used
                .iter()
                .map(|&p| {
                    (
                        probes[p].key.clone(),
                        [probes[p].initial, probes[p].target()],
                    )
                })
                .collect(),
            test_devices: test_device_macs(fleet).collect(),
        }
    }

    /// The notice printed before the run changes anything.
    pub fn notice(&self, scenario: &str, admin: &str) -> String {
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|(key, [a, b])| format!("{key} ({a}, {b})"))
            .collect();
        let devices = match self.test_devices.as_slice() {
            [] => "none".to_owned(),
            [one] => one.to_string(),
            [first, .., last] => format!("{first} to {last}"),
        };
        format!(
            "scenario {scenario} administers the shared server {admin} under its own probe models \
             (brand {brand}); no other rule is touched. It removes what an earlier run left under \
             them, then:\n  \
             publishes, approves/restores/resets and at the end removes {n} rules with their \
             stored files: {rules}\n  \
             adds and at the end removes {t} test devices: {devices}\n  \
             at the end removes the inventory entries of those models\n  \
             leaves {LEFT_ALWAYS}",
            brand = profile::PROBE_BRAND,
            n = self.rules.len(),
            rules = rules.join(", "),
            t = self.test_devices.len(),
        )
    }

    /// Removes everything of this footprint from the server, whatever is there of it (an
    /// unknown rule or test device is not an error). Never fails: what it could not remove is
    /// listed in the result.
    pub async fn clear(&self, admin: &HttpAdmin) -> Cleanup {
        let mut done = Cleanup::default();
        // A token the server refuses, or no server: say so once, instead of a line per item.
        let path = "/admin/rules";
        match admin.call(Method::GET, path, Bytes::new()).await {
            Ok((StatusCode::OK, _)) => {}
            Ok((status, body)) => {
                done.refused = Some(format!(
                    "GET {path}: {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                ));
                done.left.push("everything the run added".into());
                return done;
            }
            Err(e) => {
                done.refused = Some(format!("GET {path}: {e}"));
                done.left.push("everything the run added".into());
                return done;
            }
        }
        let json = |body: &Bytes| serde_json::from_slice::<serde_json::Value>(body).ok();
        for (key, _) in &self.rules {
            let path = format!("/admin/rules/{}", key_path(key));
            match admin.call(Method::DELETE, &path, Bytes::new()).await {
                Ok((StatusCode::OK, _)) => done.rules += 1,
                Ok((StatusCode::NOT_FOUND, _)) => {}
                Ok((status, body)) => done.left.push(format!(
                    "rule {key} (DELETE {path}: {status} {})",
                    String::from_utf8_lossy(&body).trim()
                )),
                Err(e) => done.left.push(format!("rule {key} ({e})")),
            }
        }
        // The inventory endpoint first: a server without it is an older stub, whose files
        // clear ignores a scope and would delete everyone's unreferenced versions.
        let mut scoped_clear = true;
        for (key, _) in &self.rules {
            let model = key_path(key);
            let model = model.rsplit_once('/').map_or(model.as_str(), |(m, _)| m);
            let path = format!("/admin/inventory/{model}");
            match admin.call(Method::DELETE, &path, Bytes::new()).await {
                Ok((StatusCode::OK, body)) => {
                    done.inventory +=
                        json(&body).and_then(|v| v["removed"].as_u64()).unwrap_or(0) as usize;
                }
                Ok((status, _)) => {
                    scoped_clear = false;
                    done.left.push(format!(
                        "the inventory entries of {model} and the stored files of {key} (the \
                         server answers {status} to DELETE {path}: an older ucupdate-server; \
                         `files clear` removes the files, with every other unreferenced version)"
                    ));
                }
                Err(e) => {
                    scoped_clear = false;
                    done.left
                        .push(format!("the inventory entries of {model} ({e})"));
                }
            }
        }
        if scoped_clear {
            for (key, _) in &self.rules {
                let body = serde_json::json!({ "key": key.to_string() }).to_string();
                match admin
                    .call(Method::POST, "/admin/files/clear", Bytes::from(body))
                    .await
                {
                    Ok((StatusCode::OK, body)) => {
                        done.versions += json(&body)
                            .and_then(|v| v["deleted"].as_array().map(Vec::len))
                            .unwrap_or(0);
                    }
                    Ok((status, _)) => done
                        .left
                        .push(format!("the stored files of {key} (files clear: {status})")),
                    Err(e) => done.left.push(format!("the stored files of {key} ({e})")),
                }
            }
        }
        let mut devices_left = 0usize;
        for mac in &self.test_devices {
            let path = format!("/admin/test-devices/{mac}");
            match admin.call(Method::DELETE, &path, Bytes::new()).await {
                Ok((StatusCode::OK, body)) => {
                    if json(&body).is_some_and(|v| v["changed"] == true) {
                        done.test_devices += 1;
                    }
                }
                Ok((StatusCode::NOT_FOUND, _)) => {}
                _ => devices_left += 1,
            }
        }
        if devices_left > 0 {
            done.left.push(format!(
                "{devices_left} test devices (DELETE /admin/test-devices/<MAC> failed)"
            ));
        }
        done
    }
}

/// Says what a clean-up did: after the run always (with what the admin API cannot remove),
/// before it only when an earlier run had left something.
pub fn cleanup_notice(done: &Cleanup, before: bool) -> Option<String> {
    if before {
        return done
            .removed_anything()
            .then(|| format!("before the run, an earlier run's leftovers: {done}"));
    }
    Some(format!("cleaned up the shared server: {}", closing(done)))
}

/// What a clean-up after the run did and left, with what the admin API cannot remove (the
/// report's `shared_server`).
pub fn closing(done: &Cleanup) -> String {
    let and = if done.left.is_empty() {
        "; left: "
    } else {
        "; and "
    };
    format!("{done}{and}{LEFT_ALWAYS}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Mix;

    #[test]
    fn the_footprint_names_probe_rules_and_the_test_devices() {
        let fleet = FleetSpec {
            devices: 300,
            mix: "CX700=50,RoundTable=50".parse::<Mix>().unwrap(),
            external_share: 0.0,
            signed_in_share: 0.0,
            test_devices: 3,
            seed: 1,
        };
        let f = Footprint::of(&fleet);
        let keys: Vec<String> = f.rules.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(
            keys,
            [
                "UCPhone/ucupdate-sim/CX700/A/ENU/CPE",
                "RoundTable/ucupdate-sim/RoundTable/A/ENU/RoundTable"
            ]
        );
        assert_eq!(f.test_devices.len(), 3);
        let notice = f.notice("rollout", "http://127.0.0.1:9080/");
        assert!(
            notice.contains("UCPhone/ucupdate-sim/CX700/A/ENU/CPE (1.0.522.101, 1.0.523.0)"),
            "{notice}"
        );
        assert!(notice.contains("3 test devices: 02-5C-00-00-00-00 to 02-5C-00-00-00-02"));
        assert!(notice.contains("audit log"), "{notice}");
    }
}
