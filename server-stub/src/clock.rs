//! The one place this crate reads a clock. Everything else takes time as an argument (the
//! decision function, the audit writer) or goes through here, so tests with paused tokio time
//! or an injected `now` are exact.
#![allow(clippy::disallowed_methods)]

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock seconds since the Unix epoch (audit-log lines, inventory check times).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Wall-clock milliseconds since the Unix epoch (NTLM timestamps).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The tokio clock (paused in tests), for connection deadlines.
pub fn tokio_now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// A monotonic instant, for the benchmarks among the tests that time an operation.
#[cfg(test)]
pub fn monotonic() -> std::time::Instant {
    std::time::Instant::now()
}
