//! Machine time: [`Instant`], milliseconds since an arbitrary epoch chosen by whoever drives the
//! machine (boot for the real agent, the start of a run for the simulator). The machine never
//! reads a clock; every instant it sees was passed in.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in machine time, in milliseconds since the driver's epoch. Monotonic by contract:
/// the driver never passes an instant earlier than one it passed before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub const fn from_millis(ms: u64) -> Instant {
        Instant(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// Durations longer than `u64` milliseconds (585 million years) saturate rather than wrap, so
/// a huge configured interval means "never" instead of "now".
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(millis(rhs)))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Display for Instant {
    /// `3d04:05:06.007`: days since the epoch, then a clock, so a week-long trace stays readable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 % 1000;
        let s = self.0 / 1000;
        let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
        write!(f, "{d}d{h:02}:{m:02}:{s:02}.{ms:03}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_displays_days() {
        let t = Instant(1_000) + Duration::from_secs(86_400 + 3_600 + 61);
        assert_eq!(t.to_string(), "1d01:01:02.000");
        assert_eq!(Instant(5) - Instant(9), Duration::ZERO);
        assert_eq!(
            Instant(u64::MAX - 1) + Duration::from_secs(1),
            Instant(u64::MAX)
        );
        assert_eq!(
            Instant(7).saturating_duration_since(Instant(2)),
            Duration::from_millis(5)
        );
    }
}
