//! How much an anonymous client may make the server keep, and for how long: [`Quotas`], the
//! caps and retention periods of device logs, the audit log, checks and the inventory.
//!
//! The service's own settings (`MaxLogFileSize`, `LogCleanUpInterval`, ...) are in
//! [`crate::settings`]; these are ours, documented in `docs/SERVER.md`, with the same ranges
//! where the service has a similar one. Every
//! cap is there because the internal site is anonymous: a device id is whatever the request
//! says, so per-device caps alone bound nothing, and each one has a total beside it.

use std::time::Duration;

use ucupdate_protocol::wire::MAX_LOG_BYTES;

/// Seconds in a day, for the retention periods.
pub const DAY_SECS: u64 = 86_400;

/// The valid range of a retention period in days (`LogCleanUpInterval`: 1-365).
pub const RETENTION_DAYS: std::ops::RangeInclusive<u32> = 1..=365;

/// Caps and retention periods. [`Quotas::default`] gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Bytes of logs kept for one device id; an upload beyond it gets 507.
    pub max_log_bytes_per_device: u64,
    /// Bytes of logs kept for all devices together; an upload beyond it gets 507.
    pub max_log_bytes_total: u64,
    /// Days an audit-log file is kept after its day ended (1-365).
    pub audit_retention_days: u32,
    /// Modules one check may list; a check with more is refused with 400 (nothing is recorded).
    pub max_modules_per_check: usize,
    /// Devices the inventory remembers; at the cap the device seen longest ago is forgotten.
    pub max_inventory_entries: usize,
    /// How often the cleanup task deletes logs and audit files past their retention.
    pub cleanup_interval: Duration,
}

/// What a stored file costs against the log quotas at least: a file system block, so that
/// a flood of empty files is bounded by the quotas too (in inodes, not only in bytes).
pub const MIN_LOG_FILE_COST: u64 = 4096;

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_log_bytes_per_device: 10 * MAX_LOG_BYTES,
            max_log_bytes_total: 500 * MAX_LOG_BYTES,
            audit_retention_days: 10,
            max_modules_per_check: 32,
            max_inventory_entries: 100_000,
            cleanup_interval: Duration::from_secs(3600),
        }
    }
}

/// A quota setting out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuotaError(String);

impl Quotas {
    /// Refuses settings the real service would refuse (retention outside 1-365 days) and
    /// caps of zero, which would turn a feature off by accident.
    pub fn validate(&self) -> Result<(), QuotaError> {
        for (name, days) in [("audit retention", self.audit_retention_days)] {
            if !RETENTION_DAYS.contains(&days) {
                return Err(QuotaError(format!(
                    "{name} of {days} days: expected 1 to 365"
                )));
            }
        }
        let caps = [
            ("per-device log quota", self.max_log_bytes_per_device),
            ("total log quota", self.max_log_bytes_total),
            ("modules per check", self.max_modules_per_check as u64),
            ("inventory entries", self.max_inventory_entries as u64),
        ];
        match caps.iter().find(|(_, v)| *v == 0) {
            Some((name, _)) => Err(QuotaError(format!("{name} must be at least 1"))),
            None => Ok(()),
        }
    }

    /// The audit retention in seconds.
    pub fn audit_retention_secs(&self) -> u64 {
        u64::from(self.audit_retention_days) * DAY_SECS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_retention_is_bounded_like_the_service() {
        let q = Quotas::default();
        assert_eq!(q.audit_retention_days, 10);
        assert_eq!(q.validate(), Ok(()));
        for days in [0, 366] {
            let bad = Quotas {
                audit_retention_days: days,
                ..q
            };
            assert!(bad.validate().is_err(), "{days}");
        }
        let zero = Quotas {
            max_inventory_entries: 0,
            ..q
        };
        assert!(zero.validate().is_err());
    }
}
