//! Durations as people write them in scenarios and on the command line.

use std::time::Duration;

use ucupdate_agent::machine::config::duration_text;

/// `250ms`, `90s`, `5m`, `24h`, `3d`, combinations like `1h30m`, or a bare number of seconds:
/// the agent's own reader, so a scenario's `[agent]` table and its phases read alike.
pub fn parse_duration(text: &str) -> Option<Duration> {
    duration_text::parse(text)
}

/// Shortest exact spelling: `1d2h`, `90s` -> `1m30s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Serde `with` module for a required duration (text, or a number of seconds).
pub use ucupdate_agent::machine::config::duration_text as text;

pub mod opt_text {
    use std::time::Duration;

    use serde::{de, Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| {
            super::parse_duration(&t)
                .ok_or_else(|| de::Error::custom(format!("bad duration {t:?}")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_durations() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("3d"), Some(Duration::from_secs(3 * 86_400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("42"), Some(Duration::from_secs(42)));
        for bad in ["", "h", "5x", "1.5h", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(93_784)), "1d2h3m4s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
    }
}
