//! Who each virtual device is, derived on demand from its **global index** and the run's seed:
//! nothing about a device's identity is stored, and shard `I/N` derives exactly the devices a
//! single-process run would (the shard only picks which indices it runs).

/// The agent's splitmix64: a device's seeds here and its machine's jitter come from one copy.
pub use ucupdate_agent::hash::splitmix64;
use ucupdate_protocol::{DeviceIdentity, MacAddress, SerialNumber};

use crate::profile::{Mix, Profile};

/// The fleet-wide knobs a device's identity derives from.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub devices: u64,
    pub mix: Mix,
    /// Share of devices outside the firewall (they use the external URL and NTLM).
    pub external_share: f64,
    /// Share of devices with a user signed in.
    pub signed_in_share: f64,
    /// Devices with a global index below this are test devices (by MAC) on the server.
    pub test_devices: u64,
    pub seed: u64,
}

/// One device of the fleet, as derived from its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSpec {
    pub index: u64,
    pub profile: u8,
    pub external: bool,
    pub signed_in: bool,
    pub test_device: bool,
    /// Seeds the device's machine (jitter, back-off) and its activity model.
    pub seed: u64,
}

impl DeviceSpec {
    pub fn derive(index: u64, fleet: &FleetSpec) -> DeviceSpec {
        let seed = splitmix64(fleet.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // A golden-ratio sequence gives every prefix of the fleet the mix's proportions (within
        // one device), which a hash would only approach; the seed shifts where it starts.
        let offset = unit(splitmix64(fleet.seed));
        let u = (offset + index as f64 * 0.618_033_988_749_894_9).fract();
        DeviceSpec {
            index,
            profile: fleet.mix.pick(u),
            external: unit(splitmix64(seed ^ 1)) < fleet.external_share,
            signed_in: unit(splitmix64(seed ^ 2)) < fleet.signed_in_share,
            test_device: index < fleet.test_devices,
            seed,
        }
    }

    /// A locally administered, unicast MAC that encodes the index: unique across the fleet.
    pub fn mac(&self) -> MacAddress {
        let i = self.index.to_be_bytes();
        MacAddress::new([0x02, 0x5c, i[4], i[5], i[6], i[7]])
    }

    pub fn serial(&self) -> SerialNumber {
        format!("SIM{:010}", self.index)
            .parse()
            .expect("serial from digits")
    }

    pub fn identity(&self, profile: &Profile) -> DeviceIdentity {
        DeviceIdentity {
            device_type: profile.key.device_type.clone(),
            brand: profile.key.brand.clone(),
            model: profile.key.model.clone(),
            revision: profile.key.revision.clone(),
            locale: profile.key.locale.clone(),
            mac: Some(self.mac()),
            serial: Some(self.serial()),
        }
    }

    /// The signed-in user's account, `DOMAIN\simNNN`.
    pub fn user(&self, domain: &str) -> String {
        format!("{domain}\\sim{}", self.index)
    }

    /// The user's password: derived, so the embedded server and the devices agree without a
    /// file, and a remote server can be given the same list (`ucupdate-sim users`).
    pub fn password(&self, secret: &str) -> String {
        format!(
            "{secret}-{:08x}",
            splitmix64(self.index ^ 0x5157_5157) as u32
        )
    }
}

/// The shard `i` of `n` runs the global indices `i, i+n, i+2n, ...`: every shard gets the same
/// mix and the same share of test devices, and the union is the whole fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn indices(self, devices: u64) -> impl Iterator<Item = u64> {
        (self.index..devices).step_by(self.count.max(1) as usize)
    }

    pub fn len(self, devices: u64) -> u64 {
        if self.index >= devices {
            0
        } else {
            (devices - self.index).div_ceil(self.count)
        }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    /// `I/N` with `0 <= I < N`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: expected I/N"))?;
        let index: u64 = i
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: bad shard index"))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: bad shard count"))?;
        if count == 0 || index >= count {
            return Err(format!("{text:?}: need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

/// A `u64` as a point in `[0, 1)`.
pub fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(seed: u64) -> FleetSpec {
        FleetSpec {
            devices: 1000,
            mix: Mix::default_fleet(),
            external_share: 0.2,
            signed_in_share: 0.5,
            test_devices: 10,
            seed,
        }
    }

    #[test]
    fn derivation_is_a_pure_function_of_index_and_seed() {
        let a = DeviceSpec::derive(42, &fleet(7));
        assert_eq!(a, DeviceSpec::derive(42, &fleet(7)));
        assert_ne!(a.seed, DeviceSpec::derive(42, &fleet(8)).seed);
        assert_eq!(a.mac().to_string(), "02-5C-00-00-00-2A");
        assert_eq!(a.serial().as_str(), "SIM0000000042");
    }

    #[test]
    fn shares_come_out_near_their_targets() {
        let f = fleet(1);
        let specs: Vec<DeviceSpec> = (0..f.devices).map(|i| DeviceSpec::derive(i, &f)).collect();
        let external = specs.iter().filter(|d| d.external).count();
        let signed_in = specs.iter().filter(|d| d.signed_in).count();
        assert!((150..250).contains(&external), "{external}");
        assert!((430..570).contains(&signed_in), "{signed_in}");
        assert_eq!(specs.iter().filter(|d| d.test_device).count(), 10);
        let rt = crate::profile::index_of("RoundTable").unwrap();
        let roundtables = specs.iter().filter(|d| d.profile == rt).count();
        assert!((95..=105).contains(&roundtables), "{roundtables}");
    }

    #[test]
    fn shards_partition_the_fleet() {
        let mut seen: Vec<u64> = Vec::new();
        for i in 0..4 {
            let shard = Shard { index: i, count: 4 };
            let mine: Vec<u64> = shard.indices(10).collect();
            assert_eq!(mine.len() as u64, shard.len(10));
            seen.extend(mine);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(
            "3/4".parse::<Shard>().unwrap(),
            Shard { index: 3, count: 4 }
        );
        assert!("4/4".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
    }
}
