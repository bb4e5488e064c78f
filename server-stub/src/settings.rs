//! The service's device-update settings, as `Get-CsDeviceUpdateConfiguration` shows them:
//! [`DeviceUpdateConfiguration`], with the documented defaults and ranges, and
//! [`ConfigurationPatch`], the fields one change sets (`serve` flags, `PUT
//! /admin/configuration`, like `Set-CsDeviceUpdateConfiguration`).
//!
//! Names are the cmdlet's (PascalCase in JSON). What the stub does with each:
//! - `ValidLogFileTypes`, `ValidLogFileExtensions`, `MaxLogFileSize`: enforced on every log
//!   upload (400, 400, 413). The upload form itself is parsed by the protocol crate, which
//!   knows the types CELog and Watson and its own extension list, so a type or extension
//!   listed here but not there is still refused at parse (docs/SERVER.md says which).
//! - `LogCleanUpInterval`: how long device logs are kept (the retention cleanup).
//! - `MaxLogCacheLimit`, `LogFlushInterval`, `LogCleanUpTimeOfDay`: validated, stored and
//!   shown; the stub writes each upload to disk at once (it has no log cache) and its cleanup
//!   runs every `--cleanup-interval`, so they change nothing else.

use serde::{Deserialize, Serialize};
use ucupdate_protocol::wire::MAX_LOG_BYTES;

/// The log types the service knows (`ValidLogFileTypes` may list only these).
pub const KNOWN_LOG_TYPES: [&str; 4] = ["Watson", "Config", "Diaglog", "CELog"];

/// A setting out of its range or of the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The settings, with the defaults `Get-CsDeviceUpdateConfiguration` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceUpdateConfiguration {
    /// Log types devices may upload.
    pub valid_log_file_types: Vec<String>,
    /// File extensions (with the dot) devices may upload.
    pub valid_log_file_extensions: Vec<String>,
    /// Largest log file, bytes (at most 1,024,000: the protocol's cap).
    pub max_log_file_size: u64,
    /// Bytes the service buffers before a flush (at least 1).
    pub max_log_cache_limit: u64,
    /// Seconds between flushes of the log cache, 60 to 3600 (1 minute to 1 hour).
    #[serde(rename = "LogFlushInterval")]
    pub log_flush_interval_secs: u64,
    /// Days device logs are kept, 1 to 365.
    #[serde(rename = "LogCleanUpInterval")]
    pub log_clean_up_interval_days: u32,
    /// When the cleanup runs, `HH:MM` (24 h); unset by default.
    pub log_clean_up_time_of_day: Option<String>,
}

impl Default for DeviceUpdateConfiguration {
    fn default() -> Self {
        let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        DeviceUpdateConfiguration {
            valid_log_file_types: list(&KNOWN_LOG_TYPES),
            valid_log_file_extensions: list(&[
                ".dmp", ".clg", ".clg1", ".clg2", ".bak", ".kdmp", ".dat", ".bin", ".cat", ".xml",
                ".txt", ".hex",
            ]),
            max_log_file_size: MAX_LOG_BYTES,
            max_log_cache_limit: 512_000,
            log_flush_interval_secs: 300,
            log_clean_up_interval_days: 10,
            log_clean_up_time_of_day: None,
        }
    }
}

/// The fields one change sets; the others keep their value. `LogCleanUpTimeOfDay: ""`
/// unsets the time of day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ConfigurationPatch {
    pub valid_log_file_types: Option<Vec<String>>,
    pub valid_log_file_extensions: Option<Vec<String>>,
    pub max_log_file_size: Option<u64>,
    pub max_log_cache_limit: Option<u64>,
    #[serde(rename = "LogFlushInterval")]
    pub log_flush_interval_secs: Option<u64>,
    #[serde(rename = "LogCleanUpInterval")]
    pub log_clean_up_interval_days: Option<u32>,
    pub log_clean_up_time_of_day: Option<String>,
}

impl DeviceUpdateConfiguration {
    /// This configuration with `patch` applied, if the result is valid.
    pub fn apply(&self, patch: &ConfigurationPatch) -> Result<Self, ConfigError> {
        let mut next = self.clone();
        let p = patch.clone();
        if let Some(v) = p.valid_log_file_types {
            next.valid_log_file_types = v;
        }
        if let Some(v) = p.valid_log_file_extensions {
            next.valid_log_file_extensions = v;
        }
        if let Some(v) = p.max_log_file_size {
            next.max_log_file_size = v;
        }
        if let Some(v) = p.max_log_cache_limit {
            next.max_log_cache_limit = v;
        }
        if let Some(v) = p.log_flush_interval_secs {
            next.log_flush_interval_secs = v;
        }
        if let Some(v) = p.log_clean_up_interval_days {
            next.log_clean_up_interval_days = v;
        }
        if let Some(v) = p.log_clean_up_time_of_day {
            next.log_clean_up_time_of_day = (!v.is_empty()).then_some(v);
        }
        next.validate()?;
        Ok(next)
    }

    /// The documented ranges, and shapes that keep names on one line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        for t in &self.valid_log_file_types {
            if !KNOWN_LOG_TYPES.iter().any(|k| k.eq_ignore_ascii_case(t)) {
                return bad(format!(
                    "ValidLogFileTypes: {t:?} is not one of Watson, Config, Diaglog, CELog"
                ));
            }
        }
        for e in &self.valid_log_file_extensions {
            let ok = e.len() >= 2
                && e.len() <= 16
                && e.starts_with('.')
                && e[1..].bytes().all(|b| b.is_ascii_alphanumeric());
            if !ok {
                return bad(format!(
                    "ValidLogFileExtensions: {e:?} is not a dot and 1-15 letters or digits"
                ));
            }
        }
        if !(1..=MAX_LOG_BYTES).contains(&self.max_log_file_size) {
            return bad(format!(
                "MaxLogFileSize {}: expected 1 to {MAX_LOG_BYTES}",
                self.max_log_file_size
            ));
        }
        if self.max_log_cache_limit == 0 {
            return bad("MaxLogCacheLimit must be at least 1".into());
        }
        if !(60..=3600).contains(&self.log_flush_interval_secs) {
            return bad(format!(
                "LogFlushInterval {} s: expected 1 minute to 1 hour (60-3600 s)",
                self.log_flush_interval_secs
            ));
        }
        if !crate::quota::RETENTION_DAYS.contains(&self.log_clean_up_interval_days) {
            return bad(format!(
                "LogCleanUpInterval {} days: expected 1 to 365",
                self.log_clean_up_interval_days
            ));
        }
        if let Some(t) = &self.log_clean_up_time_of_day {
            if parse_time_of_day(t).is_none() {
                return bad(format!(
                    "LogCleanUpTimeOfDay {t:?}: expected HH:MM (00:00-23:59)"
                ));
            }
        }
        Ok(())
    }

    /// Whether uploads of log type `log_type` are allowed (case-insensitive).
    pub fn allows_type(&self, log_type: &str) -> bool {
        self.valid_log_file_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(log_type))
    }

    /// Whether uploads with extension `ext` (without the dot) are allowed (case-insensitive).
    pub fn allows_extension(&self, ext: &str) -> bool {
        self.valid_log_file_extensions
            .iter()
            .any(|e| e[1..].eq_ignore_ascii_case(ext))
    }

    /// The log retention in seconds.
    pub fn log_retention_secs(&self) -> u64 {
        u64::from(self.log_clean_up_interval_days) * crate::quota::DAY_SECS
    }
}

/// `HH:MM` as minutes after midnight.
fn parse_time_of_day(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let two = |s: &str| {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let (h, m) = (two(h)?, two(m)?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let d = DeviceUpdateConfiguration::default();
        assert_eq!(d.validate(), Ok(()));
        assert_eq!(d.max_log_file_size, 1_024_000);
        assert_eq!(d.max_log_cache_limit, 512_000);
        assert_eq!(d.log_flush_interval_secs, 5 * 60);
        assert_eq!(d.log_clean_up_interval_days, 10);
        assert_eq!(d.log_clean_up_time_of_day, None);
        assert_eq!(
            d.valid_log_file_types,
            ["Watson", "Config", "Diaglog", "CELog"]
        );
        assert_eq!(d.valid_log_file_extensions.len(), 12);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["MaxLogFileSize"], 1_024_000);
        assert!(json["ValidLogFileExtensions"][2] == ".clg1");
    }

    /// Each range's edges: inside accepted, one past refused.
    #[test]
    fn ranges_are_checked() {
        let d = DeviceUpdateConfiguration::default();
        let patch = |f: &dyn Fn(&mut ConfigurationPatch)| {
            let mut p = ConfigurationPatch::default();
            f(&mut p);
            d.apply(&p)
        };
        let ok: [&dyn Fn(&mut ConfigurationPatch); 8] = [
            &|p| p.log_flush_interval_secs = Some(60),
            &|p| p.log_flush_interval_secs = Some(3600),
            &|p| p.log_clean_up_interval_days = Some(1),
            &|p| p.log_clean_up_interval_days = Some(365),
            &|p| p.max_log_file_size = Some(1),
            &|p| p.log_clean_up_time_of_day = Some("23:59".into()),
            &|p| p.valid_log_file_types = Some(vec!["celog".into()]),
            &|p| p.valid_log_file_extensions = Some(vec![".clg".into(), ".TXT".into()]),
        ];
        for (i, f) in ok.iter().enumerate() {
            assert!(patch(*f).is_ok(), "case {i}");
        }
        let bad: [&dyn Fn(&mut ConfigurationPatch); 10] = [
            &|p| p.log_flush_interval_secs = Some(59),
            &|p| p.log_flush_interval_secs = Some(3601),
            &|p| p.log_clean_up_interval_days = Some(0),
            &|p| p.log_clean_up_interval_days = Some(366),
            &|p| p.max_log_file_size = Some(0),
            &|p| p.max_log_file_size = Some(1_024_001),
            &|p| p.max_log_cache_limit = Some(0),
            &|p| p.log_clean_up_time_of_day = Some("24:00".into()),
            &|p| p.valid_log_file_types = Some(vec!["Crash".into()]),
            &|p| p.valid_log_file_extensions = Some(vec!["clg".into()]),
        ];
        for (i, f) in bad.iter().enumerate() {
            assert!(patch(*f).is_err(), "case {i}");
        }
        let unset = d
            .apply(&ConfigurationPatch {
                log_clean_up_time_of_day: Some("03:30".into()),
                ..Default::default()
            })
            .unwrap()
            .apply(&ConfigurationPatch {
                log_clean_up_time_of_day: Some(String::new()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(unset.log_clean_up_time_of_day, None);
    }
}
