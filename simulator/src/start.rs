//! Virtual time zero on the wall clock (`--start-at`): one instant every shard of a fleet maps
//! virtual 0 to, so shards on different machines, started at different moments, run one
//! schedule. This module parses the instant (RFC 3339, `+DURATION` from now, or Unix seconds)
//! and places it on a shard's monotonic clock: a shard that starts early waits for it, one that
//! starts late joins the schedule in progress. Pure functions of injected "now"s, so tests need
//! no sleeps.

use std::time::Duration;

/// `--start-at TEXT` as Unix ms: `2026-12-01T10:00:00Z` (RFC 3339, any offset, fractions of a
/// second), `+90s` (a duration from `now_unix_ms`), or a bare number of Unix seconds (the
/// spelling `--start-epoch` always took).
pub fn parse_start_at(text: &str, now_unix_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('+') {
        let d = crate::duration::parse_duration(rest)
            .ok_or_else(|| format!("--start-at {text}: {rest:?} is not a duration"))?;
        return Ok(now_unix_ms.saturating_add(d.as_millis() as u64));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text
            .parse()
            .map_err(|_| format!("--start-at {text}: too large"))?;
        return Ok(secs.saturating_mul(1000));
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!(
            "--start-at {text}: expected an RFC 3339 instant (2026-12-01T10:00:00Z), +DURATION \
             (+2m), or Unix seconds"
        )
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]` (`t` and a space accepted for `T`, `z` for `Z`).
fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut frac_ms = 0i64;
    if let Some(f) = rest.strip_prefix('.') {
        let digits = f.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let ms: String = f[..digits].chars().chain("000".chars()).take(3).collect();
        frac_ms = ms.parse().ok()?;
        rest = &f[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let r = rest.as_bytes();
            if r.len() != 6 || r[3] != b':' {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            sign * (oh * 60 + om)
        }
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60;
    u64::try_from(secs * 1000 + frac_ms).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-12-01T10:00:00.250Z`, for the summary and the docs' examples.
pub fn format_rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let day = ucupdate_protocol::audit::format_time(secs);
    format!("{}T{}.{:03}Z", &day[..10], &day[11..], unix_ms % 1000)
}

/// Where a shard stands against the common clock when its engine starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// Wall ms from virtual time zero to this shard's start: negative when it started early
    /// (and waits), positive when it started late (and joins the schedule in progress).
    pub offset_ms: i64,
}

impl Anchor {
    /// The anchor of a shard whose engine starts at `now_unix_ms`, for virtual zero at
    /// `start_unix_ms`.
    pub fn measure(start_unix_ms: u64, now_unix_ms: u64) -> Anchor {
        Anchor {
            offset_ms: now_unix_ms as i64 - start_unix_ms as i64,
        }
    }

    /// Virtual ms already past when the shard joined, at `scale` virtual seconds per wall
    /// second (0 for a shard that started early).
    pub fn joined_virtual_ms(self, scale: f64) -> u64 {
        (self.offset_ms.max(0) as f64 * scale) as u64
    }

    /// The monotonic instant of virtual zero, given the shard's start `now` on that clock:
    /// `None` if it would lie before the clock's own origin (a start-at long past).
    pub fn origin(self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        let by = Duration::from_millis(self.offset_ms.unsigned_abs());
        if self.offset_ms >= 0 {
            now.checked_sub(by)
        } else {
            now.checked_add(by)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_600_000_000; // 2026-11-25T09:46:40Z

    #[test]
    fn rfc3339_instants_parse_with_offsets_and_fractions() {
        assert_eq!(parse_start_at("2026-11-25T09:46:40Z", 0), Ok(NOW));
        assert_eq!(parse_start_at("2026-11-25t09:46:40.25z", 0), Ok(NOW + 250));
        assert_eq!(parse_start_at("2026-11-25T10:46:40+01:00", 0), Ok(NOW));
        assert_eq!(parse_start_at("2026-11-25 08:16:40-01:30", 0), Ok(NOW));
        assert_eq!(parse_start_at("1970-01-01T00:00:00Z", 0), Ok(0));
        assert_eq!(
            parse_start_at("2000-02-29T00:00:00Z", 0),
            Ok(951_782_400_000)
        );
        for bad in [
            "2026-11-25T09:46:40",
            "2026-13-25T09:46:40Z",
            "2026-11-25T09:46Z",
            "tomorrow",
            "2026-11-25T09:46:40.Z",
            "2026-11-25T09:46:40+0100",
        ] {
            assert!(parse_start_at(bad, 0).is_err(), "{bad}");
        }
        assert_eq!(format_rfc3339(NOW + 250), "2026-11-25T09:46:40.250Z");
    }

    #[test]
    fn relative_and_unix_seconds_forms() {
        assert_eq!(parse_start_at("+90s", NOW), Ok(NOW + 90_000));
        assert_eq!(parse_start_at("+1h30m", NOW), Ok(NOW + 5_400_000));
        assert_eq!(parse_start_at("1795600000", 7), Ok(NOW));
        assert!(parse_start_at("+soon", NOW).is_err());
    }

    #[test]
    fn a_late_shard_joins_in_progress_and_an_early_one_waits() {
        // 1.5 s late at 3600 virtual seconds per wall second: 90 virtual minutes are past.
        let late = Anchor::measure(NOW, NOW + 1500);
        assert_eq!(late.offset_ms, 1500);
        assert_eq!(late.joined_virtual_ms(3600.0), 5_400_000);
        let early = Anchor::measure(NOW, NOW - 250);
        assert_eq!(early.offset_ms, -250);
        assert_eq!(early.joined_virtual_ms(3600.0), 0);
    }

    #[tokio::test]
    async fn the_origin_sits_on_the_monotonic_clock() {
        let now = crate::clock::now();
        let late = Anchor::measure(NOW, NOW + 1500).origin(now).unwrap();
        assert_eq!(now.duration_since(late), Duration::from_millis(1500));
        let early = Anchor::measure(NOW, NOW - 250).origin(now).unwrap();
        assert_eq!(early.duration_since(now), Duration::from_millis(250));
    }
}
