//! [`MachineConfig`]: every timing rule and endpoint choice of the machine, shared by all the
//! machines of a process behind one `Arc`. Deserializable from the agent's TOML (durations as
//! `"24h"`, `"5m"`, `"30s"`, `"250ms"`, `"1h30m"` or a number of seconds).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use ucupdate_protocol::HttpUrl;

use crate::trust::OfferPolicy;

/// When the machine asks the driver to upload device logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogPolicy {
    /// Never (the default: the service's log share is opt-in).
    #[default]
    Never,
    /// After every check the server answered.
    AfterCheck,
    /// After the first answered check of each `poll_interval`.
    Daily,
}

/// The machine's configuration. Defaults follow `docs/SERVICE-FACTS.md`:
/// a 24 h period, 5 minutes of idle before the restart, discovery over plain HTTP on port 80.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MachineConfig {
    /// Period of the regular check, measured from the end of the previous one.
    #[serde(with = "duration_text")]
    pub poll_interval: Duration,
    /// Total width of the window the regular check lands in, centred on `poll_interval`
    /// (default 10 % of 24 h, so 22.8 h to 25.2 h). Clamped to `poll_interval`.
    #[serde(with = "duration_text")]
    pub poll_jitter: Duration,
    /// The power-on check lands uniformly in `[0, power_on_jitter]` after power-on, so a
    /// fleet powered on at once (a building's power restored) does not check at one instant.
    #[serde(with = "duration_text")]
    pub power_on_jitter: Duration,
    /// The sign-in check lands in `[0, sign_in_jitter]` after the sign-in.
    #[serde(with = "duration_text")]
    pub sign_in_jitter: Duration,
    /// `check-now` lands in `[0, check_now_jitter]` (default 0: a person is waiting).
    #[serde(with = "duration_text")]
    pub check_now_jitter: Duration,
    /// How long the device must be idle (no activity, no call) before the install and restart.
    #[serde(with = "duration_text")]
    pub idle_before_restart: Duration,
    /// First retry ceiling; doubles per consecutive failure.
    #[serde(with = "duration_text")]
    pub backoff_base: Duration,
    /// Largest retry ceiling.
    #[serde(with = "duration_text")]
    pub backoff_cap: Duration,
    /// Failed attempts at one offered update (hash mismatch, cut, 5xx...) before it is dropped
    /// until the next regular check.
    pub max_download_attempts: u32,
    /// Watchdog on a resolve, check or log upload the driver never answers.
    #[serde(with = "duration_text")]
    pub request_timeout: Duration,
    /// Watchdog on one file download.
    #[serde(with = "duration_text")]
    pub download_timeout: Duration,
    /// Watchdog on the install hook.
    #[serde(with = "duration_text")]
    pub install_timeout: Duration,
    /// `Some(true)`: always use the external URL; `Some(false)`: never; `None`: internal first,
    /// external when the internal one fails with a DNS, connect or timeout class error.
    pub outside_firewall: Option<bool>,
    /// The DHCP domain: the discovery name is `ucupdates-r2.<dhcp_domain>`.
    pub dhcp_domain: Option<String>,
    /// Used for discovery when no DHCP domain is known.
    pub sip_domain: Option<String>,
    /// Scheme of the discovered internal URL (the CX700 trace: plain HTTP).
    pub discovery_https: bool,
    /// Port of the discovered internal URL (the CX700 trace: 80).
    pub discovery_port: u16,
    /// A hand-configured internal check URL (RoundTable). Skips discovery and provisioning.
    pub server_url: Option<String>,
    /// A hand-configured external check URL.
    pub external_server_url: Option<String>,
    pub log_upload: LogPolicy,
    /// Where an offer's files may come from and how large they may be. Not a `[machine]` key:
    /// the agent fills it from `[trust]`.
    #[serde(skip)]
    pub offer_policy: OfferPolicy,
}

impl Default for MachineConfig {
    fn default() -> Self {
        const MIN: u64 = 60;
        MachineConfig {
            poll_interval: Duration::from_secs(24 * 3600),
            poll_jitter: Duration::from_secs(24 * 360),
            power_on_jitter: Duration::from_secs(10 * MIN),
            sign_in_jitter: Duration::from_secs(30),
            check_now_jitter: Duration::ZERO,
            idle_before_restart: Duration::from_secs(5 * MIN),
            backoff_base: Duration::from_secs(2 * MIN),
            backoff_cap: Duration::from_secs(60 * MIN),
            max_download_attempts: 5,
            request_timeout: Duration::from_secs(10 * MIN),
            download_timeout: Duration::from_secs(4 * 60 * MIN),
            install_timeout: Duration::from_secs(60 * MIN),
            outside_firewall: None,
            dhcp_domain: None,
            sip_domain: None,
            discovery_https: false,
            discovery_port: 80,
            server_url: None,
            external_server_url: None,
            log_upload: LogPolicy::Never,
            offer_policy: OfferPolicy::default(),
        }
    }
}

/// Why a configuration was refused by [`MachineConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
    /// `backoff_base` is larger than `backoff_cap`.
    #[error("`backoff_base` must not exceed `backoff_cap`")]
    BackoffOrder,
    /// A configured URL does not parse.
    #[error("`{field}`: {reason}")]
    BadUrl { field: &'static str, reason: String },
}

/// Floors applied whatever the configuration says, so that a zero in a config file can never
/// make the machine spin (aktualizr shipped a 10 s poll to production; Mender's 0 s retry).
pub(crate) const MIN_POLL: Duration = Duration::from_secs(60);
pub(crate) const MIN_BACKOFF: Duration = Duration::from_secs(1);

impl MachineConfig {
    /// Refuses values that make no sense. The machine also clamps (see `MIN_POLL`), so an
    /// unvalidated config is safe, merely surprising.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, d) in [
            ("poll_interval", self.poll_interval),
            ("backoff_base", self.backoff_base),
            ("idle_before_restart", self.idle_before_restart),
            ("request_timeout", self.request_timeout),
            ("download_timeout", self.download_timeout),
            ("install_timeout", self.install_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.max_download_attempts == 0 {
            return Err(ConfigError::Zero("max_download_attempts"));
        }
        if self.backoff_base > self.backoff_cap {
            return Err(ConfigError::BackoffOrder);
        }
        for (field, url) in [
            ("server_url", &self.server_url),
            ("external_server_url", &self.external_server_url),
        ] {
            if let Some(url) = url {
                HttpUrl::handler(url, "/").map_err(|e| ConfigError::BadUrl {
                    field,
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(())
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        self.poll_interval.max(MIN_POLL)
    }

    pub(crate) fn poll_jitter(&self) -> Duration {
        self.poll_jitter.min(self.poll_interval())
    }

    pub(crate) fn backoff_base(&self) -> Duration {
        self.backoff_base.max(MIN_BACKOFF)
    }

    /// The domain discovery uses: DHCP first, SIP as the fallback (the process page and the
    /// DNS planning pages disagree, so both are supported).
    pub fn discovery_domain(&self) -> Option<&str> {
        [&self.dhcp_domain, &self.sip_domain]
            .into_iter()
            .flatten()
            .map(|d| d.trim().trim_matches('.'))
            .find(|d| !d.is_empty())
    }
}

/// Durations as human text in config files and the persisted state.
pub mod duration_text {
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as \"24h\", \"5m\", \"1h30m\", \"250ms\" or seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom("negative duration"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse(v).ok_or_else(|| E::custom(format!("invalid duration {v:?}")))
            }
        }
        d.deserialize_any(V)
    }

    /// `"1h30m"`, `"250ms"`, `"2d"`, `"90"` (seconds).
    pub fn parse(text: &str) -> Option<Duration> {
        let text = text.trim();
        if let Ok(secs) = text.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let mut total: u64 = 0;
        let mut rest = text;
        if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit())?;
            if digits == 0 {
                return None;
            }
            let n: u64 = rest[..digits].parse().ok()?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let ms_per = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1000,
                "m" | "min" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return None,
            };
            total = total.checked_add(n.checked_mul(ms_per)?)?;
            rest = &rest[unit_len..];
        }
        Some(Duration::from_millis(total))
    }

    /// The largest unit that divides the value exactly, so `parse(format(d)) == d`.
    pub fn format(d: Duration) -> String {
        let ms = super::super::time::millis(d);
        for (unit, per) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms != 0 && ms.is_multiple_of(per) {
                return format!("{}{unit}", ms / per);
            }
        }
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_behaviour() {
        let c = MachineConfig::default();
        assert_eq!(c.poll_interval, Duration::from_secs(86_400));
        assert_eq!(c.idle_before_restart, Duration::from_secs(300));
        assert_eq!(c.discovery_port, 80);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn reads_toml_with_text_durations() {
        let c: MachineConfig = toml::from_str(
            "poll_interval = \"12h\"\nidle_before_restart = 90\nbackoff_base = \"1m30s\"\n\
             outside_firewall = true\nsip_domain = \"contoso.com\"\nlog_upload = \"daily\"\n",
        )
        .unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(12 * 3600));
        assert_eq!(c.idle_before_restart, Duration::from_secs(90));
        assert_eq!(c.backoff_base, Duration::from_secs(90));
        assert_eq!(c.outside_firewall, Some(true));
        assert_eq!(c.discovery_domain(), Some("contoso.com"));
        assert_eq!(c.log_upload, LogPolicy::Daily);
        assert!(toml::from_str::<MachineConfig>("poll_interval = \"soon\"").is_err());
        assert!(toml::from_str::<MachineConfig>("pol_interval = \"1h\"").is_err());
    }

    #[test]
    fn durations_round_trip_through_text() {
        for ms in [0, 1, 999, 1000, 90_000, 3_600_000, 86_400_000, 123_456_789] {
            let d = Duration::from_millis(ms);
            assert_eq!(
                duration_text::parse(&duration_text::format(d)),
                Some(d),
                "{ms}"
            );
        }
        for bad in ["", "h", "5x", "-5s", "5 s"] {
            assert_eq!(duration_text::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn validate_refuses_nonsense() {
        let zero = MachineConfig {
            poll_interval: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(zero.validate(), Err(ConfigError::Zero("poll_interval")));
        let order = MachineConfig {
            backoff_base: Duration::from_secs(7200),
            ..Default::default()
        };
        assert_eq!(order.validate(), Err(ConfigError::BackoffOrder));
        let url = MachineConfig {
            server_url: Some("ftp://x".into()),
            ..Default::default()
        };
        assert!(matches!(
            url.validate(),
            Err(ConfigError::BadUrl {
                field: "server_url",
                ..
            })
        ));
        let dhcp = MachineConfig {
            dhcp_domain: Some(" .".into()),
            sip_domain: Some("sip.example".into()),
            ..Default::default()
        };
        assert_eq!(dhcp.discovery_domain(), Some("sip.example"));
    }
}
