//! Each shard's place on the common clock (`--start-at`): where it started against virtual time
//! zero, what it found already past, and whether it administered the server. A merge lists every
//! shard's, so a reader sees at once whether the fleet ran one schedule.

use serde::{Deserialize, Serialize};

/// One shard's start against the common clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardClock {
    /// The shard, `I/N`.
    pub shard: String,
    /// Wall ms from virtual time zero to the shard's start, as its machine's clock measured it:
    /// negative when it started early (and waited), positive when it started late.
    pub start_offset_ms: i64,
    /// Virtual ms already past when the shard joined (served at once on joining).
    pub joined_at_virtual_ms: u64,
    /// Items (wake-ups, answers, phases) due before the shard joined.
    pub late_events: u64,
    /// Devices with a wake-up already past when the shard joined: they fired at once.
    pub late_devices: u64,
    /// Whether this shard ran the scenario's admin phases (the coordinator).
    pub coordinator: bool,
}

/// One line per shard for the summary: `shard 2/3 started 1.52 s late (virtual 0d00:30:24
/// past; 12 devices, 14 items fired at once)`.
pub fn describe(c: &ShardClock) -> String {
    let role = if c.coordinator { ", coordinator" } else { "" };
    let secs = c.start_offset_ms.unsigned_abs() as f64 / 1000.0;
    if c.start_offset_ms <= 0 {
        format!("shard {} started {secs:.3} s early (waited){role}", c.shard)
    } else {
        format!(
            "shard {} started {secs:.3} s late (virtual {} past; {} devices, {} items fired at once){role}",
            c.shard,
            crate::duration::format_duration(std::time::Duration::from_millis(
                c.joined_at_virtual_ms
            )),
            c.late_devices,
            c.late_events
        )
    }
}
