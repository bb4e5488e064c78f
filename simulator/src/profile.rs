//! Device profiles: the Phone Edition models and RoundTable as the update service keys them
//! (type, brand, model, revision, locale, update type), each with the firmware it starts on,
//! and fleet mixes given as percentages (`CX700=40,CX600=30,RoundTable=30`).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;
use ucupdate_protocol::{DeviceType, FileName, FirmwareVersion, PathSegment, UpdateKey};

/// One kind of device in a fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The name used in mixes and reports (`CX700`, `Aastra6721ip`, `RoundTable`).
    pub name: &'static str,
    pub key: UpdateKey,
    /// The image file of an update (`CPE.nbt`).
    pub image: FileName,
    /// The version a device of this profile runs when the run starts.
    pub initial: FirmwareVersion,
}

impl Profile {
    /// The version a scenario's update moves this profile to: the next build of its line
    /// (`1.0.522.101` -> `1.0.523.0`). One rule per profile keeps every verdict checkable.
    pub fn target(&self) -> FirmwareVersion {
        let [a, b, c, _] = self.initial.parts();
        FirmwareVersion::new(a, b, c.saturating_add(1), 0)
    }

    pub fn is_roundtable(&self) -> bool {
        self.key.device_type == DeviceType::RoundTable
    }
}

/// Field hardware of the R2 era (`protocol-facts.md`), in a fixed order: the index of a profile
/// in this table is what a device stores.
const TABLE: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    // name, device type, brand, model, update type, image, initial version
    (
        "CX700",
        "UCPhone",
        "Polycom",
        "CX700",
        "CPE",
        "CPE.nbt",
        "1.0.522.101",
    ),
    (
        "CX600",
        "UCPhone",
        "Polycom",
        "CX600",
        "CPE",
        "CPE.nbt",
        "4.0.7577.4066",
    ),
    (
        "CX500",
        "UCPhone",
        "Polycom",
        "CX500",
        "CPE",
        "CPE.nbt",
        "4.0.7577.4066",
    ),
    (
        "CX3000",
        "UCPhone",
        "Polycom",
        "CX3000",
        "CPE",
        "CPE.nbt",
        "4.0.7577.4066",
    ),
    (
        "Aastra6721ip",
        "UCPhone",
        "Aastra",
        "6721ip",
        "CPE",
        "CPE.nbt",
        "4.0.7577.4066",
    ),
    (
        "Aastra6725ip",
        "UCPhone",
        "Aastra",
        "6725ip",
        "CPE",
        "CPE.nbt",
        "4.0.7577.4066",
    ),
    (
        "HP4110",
        "UCPhone",
        "HP",
        "4110",
        "CPE",
        "CPE.nbt",
        "4.0.7577.4066",
    ),
    (
        "HP4120",
        "UCPhone",
        "HP",
        "4120",
        "CPE",
        "CPE.nbt",
        "4.0.7577.4066",
    ),
    (
        "RoundTable",
        "RoundTable",
        "Microsoft",
        "RoundTable",
        "RoundTable",
        "RoundTable.nbt",
        "3.5.6907.35",
    ),
];

/// Every built-in profile, in table order.
pub fn all() -> Vec<Profile> {
    TABLE
        .iter()
        .map(
            |&(name, device_type, brand, model, update_type, image, initial)| Profile {
                name,
                key: UpdateKey {
                    device_type: device_type.parse().expect("table device type"),
                    brand: PathSegment::new(brand).expect("table brand"),
                    model: PathSegment::new(model).expect("table model"),
                    revision: PathSegment::new("A").expect("revision"),
                    locale: PathSegment::new("ENU").expect("locale"),
                    update_type: PathSegment::new(update_type).expect("table update type"),
                },
                image: FileName::new(image).expect("table image"),
                initial: initial.parse().expect("table version"),
            },
        )
        .collect()
}

/// The brand of the probe models: no real device names it.
pub const PROBE_BRAND: &str = "ucupdate-sim";

/// Every built-in profile under its probe model ([`Profile::probe`]): what a run that
/// administers a shared server publishes and checks as, so that no real model's rule changes.
pub fn probes() -> Vec<Profile> {
    all().iter().map(Profile::probe).collect()
}

impl Profile {
    /// This profile as a probe model: brand [`PROBE_BRAND`], the profile's name as the model
    /// (`UCPhone/ucupdate-sim/CX700/A/ENU/CPE`). The device type, update type, image and
    /// versions stay, so the devices behave as the real model's do; only the rule key is the
    /// simulator's own (as the conformance suite's `ucupdate/ConformanceProbe`).
    pub fn probe(&self) -> Profile {
        let mut probe = self.clone();
        probe.key.brand = PathSegment::new(PROBE_BRAND).expect("probe brand");
        probe.key.model = PathSegment::new(self.name).expect("profile names are path segments");
        probe
    }
}

/// Looks a profile up by name, without regard to case.
pub fn index_of(name: &str) -> Option<u8> {
    TABLE
        .iter()
        .position(|t| t.0.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

/// A fleet mix: profile indices with integer percentages that add up to 100 (`CX700=50` alone
/// is refused rather than silently meaning 100 % CX700).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(pub Vec<(u8, u32)>);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MixError {
    #[error("unknown profile {0:?} (see `ucupdate-sim profiles`)")]
    UnknownProfile(String),
    #[error("bad weight in {0:?}: expected NAME=PERCENT")]
    BadWeight(String),
    #[error("a mix needs at least one profile with a weight above zero")]
    Empty,
    #[error("the shares add up to {0} %, not 100 % (say the rest, e.g. CX700=50,RoundTable=50)")]
    NotHundred(u32),
}

impl Mix {
    /// The default fleet: mostly Phone Edition, a tenth RoundTable.
    pub fn default_fleet() -> Mix {
        "CX700=20,CX600=20,CX500=10,CX3000=10,Aastra6721ip=10,Aastra6725ip=5,HP4110=10,HP4120=5,RoundTable=10"
            .parse()
            .expect("default mix")
    }

    /// Picks the profile for a point `u` in `[0, 1)`: walks the cumulative weights.
    pub fn pick(&self, u: f64) -> u8 {
        let total: u64 = self.0.iter().map(|&(_, w)| u64::from(w)).sum();
        let target = (u * total as f64) as u64;
        let mut acc = 0u64;
        for &(profile, weight) in &self.0 {
            acc += u64::from(weight);
            if target < acc {
                return profile;
            }
        }
        self.0.last().map(|&(p, _)| p).unwrap_or(0)
    }
}

impl FromStr for Mix {
    type Err = MixError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| MixError::BadWeight(part.into()))?;
            let profile = index_of(name.trim())
                .ok_or_else(|| MixError::UnknownProfile(name.trim().into()))?;
            let weight: u32 = weight
                .trim()
                .trim_end_matches('%')
                .parse()
                .map_err(|_| MixError::BadWeight(part.into()))?;
            if weight > 0 {
                out.push((profile, weight));
            }
        }
        if out.is_empty() {
            return Err(MixError::Empty);
        }
        let total: u32 = out.iter().map(|&(_, w)| w).sum();
        if total != 100 {
            return Err(MixError::NotHundred(total));
        }
        Ok(Mix(out))
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|&(p, w)| format!("{}={w}", TABLE[p as usize].0))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_valid_and_targets_differ() {
        let profiles = all();
        assert_eq!(profiles.len(), TABLE.len());
        for p in &profiles {
            assert_ne!(p.target(), p.initial, "{}", p.name);
            assert!(p.target() > p.initial);
        }
        assert!(profiles[index_of("roundtable").unwrap() as usize].is_roundtable());
    }

    #[test]
    fn probe_models_are_no_real_models() {
        let real: Vec<UpdateKey> = all().into_iter().map(|p| p.key).collect();
        for (probe, profile) in probes().iter().zip(all()) {
            assert!(!real.contains(&probe.key), "{}", probe.key);
            assert_eq!(probe.key.brand.as_str(), PROBE_BRAND);
            assert_eq!(probe.key.device_type, profile.key.device_type);
            assert_eq!(probe.key.update_type, profile.key.update_type);
            assert_eq!((probe.initial, probe.name), (profile.initial, profile.name));
        }
        assert_eq!(
            probes()[0].key.to_string(),
            "UCPhone/ucupdate-sim/CX700/A/ENU/CPE"
        );
    }

    #[test]
    fn mixes_parse_and_pick_in_proportion() {
        let mix: Mix = "CX700=75%, RoundTable=25".parse().unwrap();
        let picks: Vec<u8> = (0..100).map(|i| mix.pick(i as f64 / 100.0)).collect();
        let rt = index_of("RoundTable").unwrap();
        assert_eq!(picks.iter().filter(|&&p| p == rt).count(), 25);
        assert_eq!(mix.to_string(), "CX700=75,RoundTable=25");
        assert_eq!(
            "Nokia=5".parse::<Mix>(),
            Err(MixError::UnknownProfile("Nokia".into()))
        );
        assert_eq!(
            "CX700".parse::<Mix>(),
            Err(MixError::BadWeight("CX700".into()))
        );
        assert_eq!("CX700=0".parse::<Mix>(), Err(MixError::Empty));
        assert_eq!("CX700=50".parse::<Mix>(), Err(MixError::NotHundred(50)));
        assert_eq!(
            "CX700=60,HP4110=60".parse::<Mix>(),
            Err(MixError::NotHundred(120))
        );
        assert!(Mix::default_fleet().0.len() >= 9);
    }
}
