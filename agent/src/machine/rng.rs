//! The machine's reproducible randomness: an 8-byte splitmix64 generator and the two delay
//! rules built on it, jitter and back-off. Same seed, same config, same events: same instants.

use std::time::Duration;

use super::time::millis;
use crate::hash::{splitmix64, SPLITMIX_GAMMA};

/// A splitmix64 stream ([`crate::hash::splitmix64`]): one `u64` of state, full period, good
/// enough to spread a fleet; not for secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        // Seeds 0, 1, 2... from a simulator are adjacent; one scramble step decorrelates them.
        let mut rng = Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B);
        rng.next_u64();
        rng
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let out = splitmix64(self.0);
        self.0 = self.0.wrapping_add(SPLITMIX_GAMMA);
        out
    }

    /// Uniform in `0..=max` (Lemire's multiply-high; the tiny bias is irrelevant for delays).
    pub(crate) fn up_to(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        match max.checked_add(1) {
            Some(span) => ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64,
            None => self.next_u64(),
        }
    }

    /// Uniform in `0..=max`, in whole milliseconds.
    pub(crate) fn jitter(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.up_to(millis(max)))
    }
}

/// The delay before retry number `failures` (1 for the first failure).
///
/// Exponential (`base * 2^(failures-1)`, capped at `cap`) with "equal jitter": uniform in
/// `[ceiling/2, ceiling]`. Full jitter (`[0, ceiling]`) can draw near-zero delays several times
/// in a row, and then no per-hour request cap could be promised; keeping half the ceiling fixed
/// is what lets docs/AGENT-MACHINE.md state a hard cap that the tests check.
pub(crate) fn backoff(rng: &mut Rng, base: Duration, cap: Duration, failures: u32) -> Duration {
    let base = millis(base).max(1);
    let cap = millis(cap).max(base);
    let shift = failures.saturating_sub(1).min(63);
    let ceiling = base
        .checked_shl(shift)
        .filter(|c| c >> shift == base)
        .unwrap_or(u64::MAX)
        .min(cap);
    let half = ceiling / 2;
    Duration::from_millis(half + rng.up_to(ceiling - half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_seeds_differ() {
        let (mut a, mut b, mut c) = (Rng::new(7), Rng::new(7), Rng::new(8));
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn up_to_stays_in_range_and_reaches_both_halves() {
        let mut rng = Rng::new(1);
        let draws: Vec<u64> = (0..1000).map(|_| rng.up_to(9)).collect();
        assert!(draws.iter().all(|&d| d <= 9));
        assert!(draws.contains(&0) && draws.contains(&9));
        assert_eq!(rng.up_to(0), 0);
        let _ = rng.up_to(u64::MAX);
    }

    #[test]
    fn backoff_doubles_within_half_bounds_and_caps() {
        let mut rng = Rng::new(3);
        let (base, cap) = (Duration::from_secs(120), Duration::from_secs(3600));
        for failures in 1..=80u32 {
            let ceiling = (120u64 << (failures - 1).min(40)).min(3600);
            for _ in 0..50 {
                let d = backoff(&mut rng, base, cap, failures).as_secs_f64();
                assert!(
                    d >= ceiling as f64 / 2.0 && d <= ceiling as f64,
                    "{failures}: {d}"
                );
            }
        }
    }
}
