//! The one place in the agent crate that reads a clock. Everything else asks here, so that
//! tests running under tokio's paused time (`start_paused = true`) see exactly the instants they
//! set, and a clippy rule (`clippy.toml`) keeps stray clock reads out of every other file.
//!
//! Monotonic time comes from tokio (it follows paused and advanced time in tests); wall-clock
//! time is only for what the outside world needs as a date: NTLM timestamps, "last update" on
//! the System Information screen, log names.

#![allow(clippy::disallowed_methods)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, on tokio's monotonic clock (paused and advanced by tests).
pub fn monotonic() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Wall-clock milliseconds since the Unix epoch. A clock set before 1970 reads as 0 rather than
/// failing: a device with no RTC battery boots in 1970 and must still work.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Time since `start` on the monotonic clock.
pub fn elapsed(start: tokio::time::Instant) -> Duration {
    monotonic().saturating_duration_since(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn monotonic_follows_paused_time() {
        let start = monotonic();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(elapsed(start), Duration::from_secs(3600));
    }

    #[test]
    fn wall_clock_is_after_2020() {
        assert!(unix_millis() > 1_577_836_800_000);
    }
}
