//! Link shaping for the simulator's virtual devices: an added latency and a byte-rate cap,
//! both on tokio time so a compressed-time run (or a paused-time test) shapes exactly.

use std::time::Duration;

use super::client::RequestShaping;
use crate::clock;

/// Waits out the added latency, if any.
pub(crate) async fn delay(shaping: RequestShaping) {
    if !shaping.added_latency.is_zero() {
        tokio::time::sleep(shaping.added_latency).await;
    }
}

/// Paces a byte stream to `bytes_per_sec`: after `n` bytes in total it waits until
/// `start + n / rate` (so short bursts are smoothed, and a slow reader is not penalised twice).
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: Option<u64>,
    start: tokio::time::Instant,
    bytes: u64,
}

impl Pacer {
    pub(crate) fn new(shaping: RequestShaping) -> Pacer {
        Pacer {
            rate: shaping.bytes_per_sec.map(|r| r.get()),
            start: clock::monotonic(),
            bytes: 0,
        }
    }

    pub(crate) async fn pace(&mut self, n: u64) {
        let Some(rate) = self.rate else { return };
        self.bytes = self.bytes.saturating_add(n);
        let nanos = u128::from(self.bytes) * 1_000_000_000 / u128::from(rate);
        let due = self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        tokio::time::sleep_until(due).await;
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pacer_spreads_bytes_over_time() {
        let shaping = RequestShaping {
            bytes_per_sec: NonZeroU64::new(1000),
            added_latency: Duration::ZERO,
        };
        let start = clock::monotonic();
        let mut pacer = Pacer::new(shaping);
        for _ in 0..10 {
            pacer.pace(250).await;
        }
        assert_eq!(clock::elapsed(start), Duration::from_millis(2500));
    }

    #[tokio::test(start_paused = true)]
    async fn unshaped_is_instant_and_latency_is_exact() {
        let start = clock::monotonic();
        Pacer::new(RequestShaping::NONE).pace(1 << 30).await;
        assert_eq!(clock::elapsed(start), Duration::ZERO);
        delay(RequestShaping {
            bytes_per_sec: None,
            added_latency: Duration::from_millis(80),
        })
        .await;
        assert_eq!(clock::elapsed(start), Duration::from_millis(80));
    }
}
