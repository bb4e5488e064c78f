//! The request handler's daily audit log: one line per check, fields split by `;`, the device's
//! modules split by `#` (each module `FileName,Version,Timestamp`). The service names the file
//! `RequestHandlerAuditLog_<server>_<YYYYMMDD>.log`.
//!
//! Field order (our choice; the real order is not public):
//! `time;client;deviceType;mac;serial;brand;model;revision;locale;user;modules;outcome`.
//! `%`, `;`, `#`, `,` and line breaks inside values are percent-escaped so every line splits back.

use crate::error::ProtocolError;
use crate::identity::{DeviceIdentity, FileName, MacAddress, PathSegment, SerialNumber};
use crate::url::percent_decode;
use crate::wire::{CheckRequest, InstalledModule};

/// One audit-log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Seconds since the Unix epoch (UTC); written as `YYYY-MM-DD HH:MM:SS`.
    pub unix_secs: u64,
    /// The client's address as the server saw it.
    pub client: String,
    pub request: CheckRequest,
    /// What the server answered: `downloads=0`, `approved 1.0.522.200`, `denied: ...`.
    pub outcome: String,
}

const FIELDS: usize = 12;

impl AuditRecord {
    /// The log file's name for a server and a day.
    pub fn file_name(server: &str, unix_secs: u64) -> String {
        let (y, m, d) = civil_from_days((unix_secs / 86_400) as i64);
        format!("RequestHandlerAuditLog_{server}_{y:04}{m:02}{d:02}.log")
    }

    /// The line, without its line break.
    pub fn to_line(&self) -> String {
        let id = &self.request.identity;
        let modules: Vec<String> = self
            .request
            .modules
            .iter()
            .map(|m| {
                format!(
                    "{},{},{}",
                    esc(m.file_name.as_str()),
                    m.version,
                    esc(m.timestamp.as_deref().unwrap_or(""))
                )
            })
            .collect();
        let fields = [
            format_time(self.unix_secs),
            esc(&self.client),
            esc(id.device_type.as_str()),
            id.mac.map(|m| m.to_string()).unwrap_or_default(),
            id.serial
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            esc(id.brand.as_str()),
            esc(id.model.as_str()),
            esc(id.revision.as_str()),
            esc(id.locale.as_str()),
            esc(self.request.user.as_deref().unwrap_or("")),
            modules.join("#"),
            esc(&self.outcome),
        ];
        fields.join(";")
    }

    pub fn parse_line(line: &str) -> Result<Self, ProtocolError> {
        let bad = |why: &str| ProtocolError::BadAuditLine(format!("{why}: {line:?}"));
        let fields: Vec<&str> = line.trim_end_matches(['\r', '\n']).split(';').collect();
        if fields.len() != FIELDS {
            return Err(bad("expected 12 fields"));
        }
        let text = |i: usize| percent_decode(fields[i]).ok_or_else(|| bad("bad escape"));
        let optional = |i: usize| -> Result<Option<String>, ProtocolError> {
            let v = text(i)?;
            Ok((!v.is_empty()).then_some(v))
        };
        let mut modules = Vec::new();
        for module in fields[10].split('#').filter(|m| !m.is_empty()) {
            let parts: Vec<&str> = module.split(',').collect();
            let [file, version, timestamp] = parts[..] else {
                return Err(bad("module is not FileName,Version,Timestamp"));
            };
            let file_name = FileName::new(&percent_decode(file).ok_or_else(|| bad("bad escape"))?)?;
            let timestamp = percent_decode(timestamp).ok_or_else(|| bad("bad escape"))?;
            modules.push(InstalledModule {
                update_type: PathSegment::new(file_name.stem())?,
                file_name,
                version: version.parse()?,
                timestamp: (!timestamp.is_empty()).then_some(timestamp),
            });
        }
        let identity = DeviceIdentity {
            device_type: text(2)?.parse()?,
            mac: optional(3)?.map(|m| m.parse::<MacAddress>()).transpose()?,
            serial: optional(4)?
                .map(|s| s.parse::<SerialNumber>())
                .transpose()?,
            brand: PathSegment::new(&text(5)?)?,
            model: PathSegment::new(&text(6)?)?,
            revision: PathSegment::new(&text(7)?)?,
            locale: PathSegment::new(&text(8)?)?,
        };
        Ok(AuditRecord {
            unix_secs: parse_time(fields[0]).ok_or_else(|| bad("bad time"))?,
            client: text(1)?,
            request: CheckRequest {
                identity,
                modules,
                user: optional(9)?,
            },
            outcome: text(11)?,
        })
    }
}

fn esc(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '%' | ';' | '#' | ',' | '\n' | '\r' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn format_time(unix_secs: u64) -> String {
    let (y, m, d) = civil_from_days((unix_secs / 86_400) as i64);
    let s = unix_secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn parse_time(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as u32, d as u32);
    let days = u64::try_from(days).ok()?;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    // Reject dates like 02-31 that would not read back the same.
    (format_time(secs) == text).then_some(secs)
}

// Howard Hinnant's algorithms for the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_795_600_000), "2026-11-25 09:46:40");
        for secs in [0, 951_782_400, 1_795_600_000, 4_102_444_799] {
            assert_eq!(parse_time(&format_time(secs)), Some(secs));
        }
        assert_eq!(parse_time("2026-02-31 00:00:00"), None);
        assert_eq!(
            AuditRecord::file_name("pool01", 1_795_600_000),
            "RequestHandlerAuditLog_pool01_20261125.log"
        );
    }
}
