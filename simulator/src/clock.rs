//! The one place the simulator reads the wall clock: pacing virtual time and measuring
//! latency. Tokio's clock, so tests can pause it.

/// Now, on tokio's (pausable) monotonic clock.
#[allow(clippy::disallowed_methods)]
pub fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Unix milliseconds, for dating a run.
#[allow(clippy::disallowed_methods)]
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
