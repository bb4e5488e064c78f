//! The virtual clock and its two queues: device wake-ups (each device's next machine deadline,
//! scripted event or user activity) and finished work waiting for its virtual instant. The
//! engine always serves the earliest item of either; [`TimeScale`] says how virtual time is
//! paced against the wall clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use ucupdate_agent::machine::Event;
use ucupdate_agent::perform::Ticket;

use crate::clock;

/// A virtual instant that never comes (a device not queued, a script not set).
pub(super) const NEVER: u64 = u64::MAX;

/// How virtual time relates to wall time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum TimeScale {
    /// Serve every item as soon as the previous one is done: as fast as the client can go.
    #[default]
    Max,
    /// Virtual seconds per wall second.
    Factor(f64),
}

impl TimeScale {
    /// The wall instant virtual `t` is due at, for a run that started at `wall_start`; `None`
    /// at `max`, where everything is due at once.
    pub(super) fn due(
        self,
        wall_start: tokio::time::Instant,
        t: u64,
    ) -> Option<tokio::time::Instant> {
        match self {
            TimeScale::Factor(scale) => {
                Some(wall_start + Duration::from_secs_f64(t as f64 / 1000.0 / scale))
            }
            TimeScale::Max => None,
        }
    }

    /// When a request issued at virtual `t` was meant to leave (for the intended latency).
    pub(super) fn intended_wall(
        self,
        wall_start: tokio::time::Instant,
        t: u64,
    ) -> tokio::time::Instant {
        self.due(wall_start, t).unwrap_or_else(clock::now)
    }
}

impl std::str::FromStr for TimeScale {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("max") {
            return Ok(TimeScale::Max);
        }
        match text.parse::<f64>() {
            Ok(f) if f > 0.0 && f.is_finite() => Ok(TimeScale::Factor(f)),
            _ => Err(format!("{text:?}: expected `max` or a positive number")),
        }
    }
}

impl std::fmt::Display for TimeScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeScale::Max => f.write_str("max"),
            TimeScale::Factor(x) => write!(f, "{x}"),
        }
    }
}

/// A finished piece of device work, waiting for its virtual instant.
pub(super) struct Pending {
    pub slot: u32,
    /// The device's boot count when the work started: after a power loss nobody waits for it.
    pub boot: u16,
    /// The start it answers, for the device's [`ucupdate_agent::perform::InFlight`].
    pub ticket: Option<Ticket>,
    pub event: Event,
}

/// The next item to serve.
pub(super) enum Next {
    Pending(u64, Pending),
    Wake(u64, u32),
}

/// Both queues, ordered by virtual time. A device has at most one live wake entry: the one
/// whose instant equals its `wake` field; re-queueing leaves stale entries that are dropped
/// as they surface.
#[derive(Default)]
pub(super) struct Queues {
    wakes: BinaryHeap<Reverse<(u64, u32)>>,
    pending: BinaryHeap<Reverse<(u64, u64)>>,
    items: HashMap<u64, Pending>,
    seq: u64,
}

impl Queues {
    pub fn wake(&mut self, slot: u32, at: u64) {
        self.wakes.push(Reverse((at, slot)));
    }

    pub fn defer(&mut self, at: u64, item: Pending) {
        self.seq += 1;
        self.pending.push(Reverse((at, self.seq)));
        self.items.insert(self.seq, item);
    }

    /// The earliest queued instant; `queued_for(slot)` is the instant a device is queued for.
    pub fn next_time(&mut self, queued_for: impl Fn(u32) -> u64) -> Option<u64> {
        while let Some(&Reverse((t, slot))) = self.wakes.peek() {
            if queued_for(slot) == t {
                break;
            }
            self.wakes.pop();
        }
        let wake = self.wakes.peek().map(|Reverse((t, _))| *t);
        let pending = self.pending.peek().map(|Reverse((t, _))| *t);
        match (wake, pending) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the earliest item; finished work goes before a wake at the same instant.
    pub fn pop(&mut self) -> Option<Next> {
        let pending_first = match (self.pending.peek(), self.wakes.peek()) {
            (Some(Reverse((p, _))), Some(Reverse((w, _)))) => p <= w,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if pending_first {
            let Reverse((t, seq)) = self.pending.pop()?;
            let item = self.items.remove(&seq)?;
            Some(Next::Pending(t, item))
        } else {
            let Reverse((t, slot)) = self.wakes.pop()?;
            Some(Next::Wake(t, slot))
        }
    }
}

/// A virtual instant for traces: `1d02:03:04.005`.
pub(super) fn vtime(ms: u64) -> String {
    let (d, rest) = (ms / 86_400_000, ms % 86_400_000);
    format!(
        "{d}d{:02}:{:02}:{:02}.{:03}",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_work_goes_before_a_wake_at_the_same_instant_and_stale_wakes_drop() {
        let mut q = Queues::default();
        q.wake(1, 50);
        q.wake(1, 10); // re-queued earlier: the 50 entry is stale
        q.defer(
            10,
            Pending {
                slot: 2,
                boot: 0,
                ticket: None,
                event: Event::CheckNow,
            },
        );
        assert_eq!(q.next_time(|_| 10), Some(10));
        assert!(matches!(q.pop(), Some(Next::Pending(10, p)) if p.slot == 2));
        assert!(matches!(q.pop(), Some(Next::Wake(10, 1))));
        assert_eq!(q.next_time(|_| 10), None, "the stale wake at 50 is dropped");
    }

    #[test]
    fn virtual_time_reads_as_days_and_clock_time() {
        assert_eq!(vtime(90_061_005), "1d01:01:01.005");
    }
}
