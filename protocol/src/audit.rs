//! The request handler's daily audit log, `RequestHandlerAuditLog_<server>_<YYYYMMDD>.log`: one
//! record per check, in the documented columns (OCS 2007 R2 and Lync 2010 audit-schema pages):
//!
//! Logging Date Time, User Host Address, Device Type, MAC Address, Serial Number, Vendor, Model,
//! Revision, Locale, Request Modules, Response Modules, User ID.
//!
//! Two forms of the same record ([`AuditFormat`]): the CSV one that Lync-era admin scripts read
//! (a header row whose line 1 starts `Logging DateTime,`, fields quoted per RFC 4180) and OCS
//! R2's, with `;` between fields. Request modules are `Filename;Version;Timestamp`, response
//! modules `Filename;Signature Filename;Version;Timestamp`, `#` between modules, in both forms.
//! Our choices where the documentation is silent: the time is `YYYY-MM-DD HH:MM:SS` UTC; `%`,
//! `;`, `#` and line breaks inside a module's parts (and, in the R2 form, inside any value) are
//! percent-escaped, so every record splits back. What the server decided is not a column (the
//! service has none); the stub logs and counts it elsewhere. [`parse_log`] reads either form.

use crate::error::ProtocolError;
use crate::identity::{DeviceIdentity, FileName, MacAddress, PathSegment, SerialNumber};
use crate::store::FileKind;
use crate::url::percent_decode;
use crate::version::FirmwareVersion;
use crate::wire::{CheckRequest, CheckResponse, InstalledModule};

/// The CSV form's header row. `Logging DateTime`, `User Host Address`, `Mac Address`, `Vendor`,
/// `Model` and `Revision` are spelled as a public community report script reads them by name;
/// the others follow the documented column names.
pub const CSV_HEADER: &str = "Logging DateTime,User Host Address,Device Type,Mac Address,\
Serial Number,Vendor,Model,Revision,Locale,Request Modules,Response Modules,User ID";

/// How audit records are written. Readers accept both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditFormat {
    /// Comma-separated with a header row (Lync Server 2010 and later; the default).
    #[default]
    Csv,
    /// `;` between fields, no header (OCS 2007 R2).
    R2,
}

impl AuditFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditFormat::Csv => "csv",
            AuditFormat::R2 => "r2",
        }
    }

    fn separator(self) -> char {
        match self {
            AuditFormat::Csv => ',',
            AuditFormat::R2 => ';',
        }
    }
}

impl std::str::FromStr for AuditFormat {
    type Err = ProtocolError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "csv" => Ok(AuditFormat::Csv),
            "r2" => Ok(AuditFormat::R2),
            _ => Err(ProtocolError::BadAuditLine(format!(
                "unknown audit format {text:?} (csv or r2)"
            ))),
        }
    }
}

/// One module of the server's reply, as the Response Modules column lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseModule {
    pub file_name: FileName,
    /// The catalog (`.cat`) that signs the file; `None` when the offer has none.
    pub signature_file_name: Option<FileName>,
    pub version: FirmwareVersion,
    pub timestamp: Option<String>,
}

impl ResponseModule {
    /// The modules a reply offers: none for "no update", else the image (or the first file)
    /// with its catalog.
    pub fn of(response: &CheckResponse) -> Vec<ResponseModule> {
        let CheckResponse::Update(offer) = response else {
            return Vec::new();
        };
        let file = offer.image().or_else(|| offer.files.first());
        let signature = offer.files.iter().find(|f| f.kind == FileKind::Catalog);
        file.map(|f| ResponseModule {
            file_name: f.file_name.clone(),
            signature_file_name: signature.map(|s| s.file_name.clone()),
            version: offer.version,
            timestamp: offer.timestamp.clone(),
        })
        .into_iter()
        .collect()
    }
}

/// One audit record (one check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Seconds since the Unix epoch (UTC); written as `YYYY-MM-DD HH:MM:SS`.
    pub unix_secs: u64,
    /// The client's address as the server saw it (User Host Address).
    pub client: String,
    /// The device, its modules and its user (User ID) as the check carried them.
    pub request: CheckRequest,
    /// What the reply offered (Response Modules).
    pub response: Vec<ResponseModule>,
}

const FIELDS: usize = 12;

impl AuditRecord {
    /// The log file's name for a server and a day.
    pub fn file_name(server: &str, unix_secs: u64) -> String {
        let (y, m, d) = civil_from_days((unix_secs / 86_400) as i64);
        format!("RequestHandlerAuditLog_{server}_{y:04}{m:02}{d:02}.log")
    }

    /// The record in `format`, without its line break (a CSV field may hold one, quoted).
    pub fn to_line(&self, format: AuditFormat) -> String {
        let mut out = String::with_capacity(256);
        self.write_line(format, &mut out);
        out
    }

    /// [`AuditRecord::to_line`] appended to `out`. Each field is built in one scratch string
    /// and escaped straight into `out`: the stub writes a line per check, and the earlier
    /// string per field and per module was a tenth of its CPU per check (docs/BENCHMARKS.md §4).
    pub fn write_line(&self, format: AuditFormat, out: &mut String) {
        use std::fmt::Write as _;
        let id = &self.request.identity;
        let mut field = String::with_capacity(64);
        for i in 0..FIELDS {
            field.clear();
            // `write!` into a String cannot fail.
            match i {
                0 => push_time(&mut field, self.unix_secs),
                1 => field.push_str(&self.client),
                2 => field.push_str(id.device_type.as_str()),
                3 => {
                    if let Some(mac) = id.mac {
                        let _ = write!(field, "{mac}");
                    }
                }
                4 => field.push_str(id.serial.as_ref().map_or("", |s| s.as_str())),
                5 => field.push_str(id.brand.as_str()),
                6 => field.push_str(id.model.as_str()),
                7 => field.push_str(id.revision.as_str()),
                8 => field.push_str(id.locale.as_str()),
                9 => {
                    for (k, m) in self.request.modules.iter().enumerate() {
                        if k > 0 {
                            field.push('#');
                        }
                        push_escaped(&mut field, m.file_name.as_str(), PART_SPECIAL);
                        let _ = write!(field, ";{};", m.version);
                        push_escaped(
                            &mut field,
                            m.timestamp.as_deref().unwrap_or(""),
                            PART_SPECIAL,
                        );
                    }
                }
                10 => {
                    for (k, m) in self.response.iter().enumerate() {
                        if k > 0 {
                            field.push('#');
                        }
                        push_escaped(&mut field, m.file_name.as_str(), PART_SPECIAL);
                        field.push(';');
                        let signature = m.signature_file_name.as_ref().map_or("", |f| f.as_str());
                        push_escaped(&mut field, signature, PART_SPECIAL);
                        let _ = write!(field, ";{};", m.version);
                        push_escaped(
                            &mut field,
                            m.timestamp.as_deref().unwrap_or(""),
                            PART_SPECIAL,
                        );
                    }
                }
                _ => field.push_str(self.request.user.as_deref().unwrap_or("")),
            }
            if i > 0 {
                out.push(format.separator());
            }
            match format {
                AuditFormat::Csv => push_csv(out, &field),
                // The module columns are escaped already; their `;` and `#` are structure.
                AuditFormat::R2 if i == 9 || i == 10 => out.push_str(&field),
                AuditFormat::R2 => push_escaped(out, &field, R2_SPECIAL),
            }
        }
    }

    /// One record in either form (told apart by the character after the time).
    pub fn parse_line(line: &str) -> Result<Self, ProtocolError> {
        let line = line.trim_end_matches(['\r', '\n']);
        let bad = |why: &str| ProtocolError::BadAuditLine(format!("{why}: {line:?}"));
        let fields = match line.as_bytes().get(19) {
            Some(b',') => {
                let (fields, rest) = split_csv(line).ok_or_else(|| bad("bad CSV quoting"))?;
                if !rest.trim_end_matches(['\r', '\n']).is_empty() {
                    return Err(bad("more than one record"));
                }
                fields
            }
            Some(b';') => split_r2(line).ok_or_else(|| bad("bad R2 fields"))?,
            _ => return Err(bad("no time then `,` or `;` at the start")),
        };
        Self::from_fields(&fields).map_err(|e| match e {
            ProtocolError::BadAuditLine(why) => bad(&why),
            e => e,
        })
    }

    fn from_fields(fields: &[String]) -> Result<Self, ProtocolError> {
        let bad = |why: &str| ProtocolError::BadAuditLine(why.to_owned());
        if fields.len() != FIELDS {
            return Err(bad("expected 12 fields"));
        }
        let optional = |i: usize| (!fields[i].is_empty()).then(|| fields[i].clone());
        let mut modules = Vec::new();
        for module in modules_of(&fields[9]) {
            let [file, version, timestamp] = &module[..] else {
                return Err(bad("request module is not Filename;Version;Timestamp"));
            };
            let file_name = FileName::new(&unpart(file)?)?;
            let timestamp = unpart(timestamp)?;
            modules.push(InstalledModule {
                update_type: PathSegment::new(file_name.stem())?,
                file_name,
                version: version.parse()?,
                timestamp: (!timestamp.is_empty()).then_some(timestamp),
            });
        }
        let mut response = Vec::new();
        for module in modules_of(&fields[10]) {
            let [file, signature, version, timestamp] = &module[..] else {
                return Err(bad(
                    "response module is not Filename;Signature Filename;Version;Timestamp",
                ));
            };
            let signature = unpart(signature)?;
            let timestamp = unpart(timestamp)?;
            response.push(ResponseModule {
                file_name: FileName::new(&unpart(file)?)?,
                signature_file_name: (!signature.is_empty())
                    .then(|| FileName::new(&signature))
                    .transpose()?,
                version: version.parse()?,
                timestamp: (!timestamp.is_empty()).then_some(timestamp),
            });
        }
        let identity = DeviceIdentity {
            device_type: fields[2].parse()?,
            mac: optional(3).map(|m| m.parse::<MacAddress>()).transpose()?,
            serial: optional(4).map(|s| s.parse::<SerialNumber>()).transpose()?,
            brand: PathSegment::new(&fields[5])?,
            model: PathSegment::new(&fields[6])?,
            revision: PathSegment::new(&fields[7])?,
            locale: PathSegment::new(&fields[8])?,
        };
        Ok(AuditRecord {
            unix_secs: parse_time(&fields[0]).ok_or_else(|| bad("bad time"))?,
            client: fields[1].clone(),
            request: CheckRequest {
                identity,
                modules,
                user: optional(11),
            },
            response,
        })
    }
}

/// Every record of an audit file in either form; a CSV header row (anywhere, as appended
/// files may hold several) is skipped, blank lines too.
pub fn parse_log(text: &str) -> Result<Vec<AuditRecord>, ProtocolError> {
    let mut records = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let line = &rest[..line_end];
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() || trimmed == CSV_HEADER {
            rest = &rest[line_end..];
            continue;
        }
        if trimmed.as_bytes().get(19) == Some(&b',') {
            // A quoted CSV field may span lines: split the record, not the line.
            let (_, after) = split_csv(rest).ok_or_else(|| {
                ProtocolError::BadAuditLine(format!("bad CSV quoting: {trimmed:?}"))
            })?;
            records.push(AuditRecord::parse_line(&rest[..rest.len() - after.len()])?);
            rest = after;
        } else {
            records.push(AuditRecord::parse_line(trimmed)?);
            rest = &rest[line_end..];
        }
    }
    Ok(records)
}

/// Escapes a module's part: `%`, `;`, `#` and line breaks.
/// What a module part (file name, timestamp) escapes: `;` and `#` are the columns' structure.
const PART_SPECIAL: &[char] = &['%', ';', '#', '\n', '\r'];
/// What an R2 field escapes (the whole line splits on `;`).
const R2_SPECIAL: &[char] = &['%', ';', '\n', '\r'];

fn unpart(value: &str) -> Result<String, ProtocolError> {
    percent_decode(value).ok_or_else(|| ProtocolError::BadAuditLine("bad escape".to_owned()))
}

/// `value` with each of `special` as `%XX` (all of them are ASCII).
fn push_escaped(out: &mut String, value: &str, special: &[char]) {
    if !value.contains(special) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        if special.contains(&c) {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            let b = c as u32 as usize;
            out.push('%');
            out.push(char::from(HEX[b >> 4 & 15]));
            out.push(char::from(HEX[b & 15]));
        } else {
            out.push(c);
        }
    }
}

/// A CSV field per RFC 4180: quoted (with `"` doubled) when it holds `,`, `"` or a line break.
fn push_csv(out: &mut String, value: &str) {
    if !value.contains([',', '"', '\n', '\r']) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// Splits one CSV record off `text`: its fields and what follows its line break.
fn split_csv(text: &str) -> Option<(Vec<String>, &str)> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.char_indices().peekable();
    let mut quoted_field = false;
    loop {
        match chars.next() {
            None => {
                fields.push(field);
                return Some((fields, ""));
            }
            Some((_, '"')) if field.is_empty() && !quoted_field => {
                quoted_field = true;
                loop {
                    match chars.next()? {
                        (_, '"') if chars.peek().is_some_and(|&(_, c)| c == '"') => {
                            chars.next();
                            field.push('"');
                        }
                        (_, '"') => break,
                        (_, c) => field.push(c),
                    }
                }
                // After the closing quote only a separator or the end of the record.
                if !matches!(chars.peek(), None | Some((_, ',' | '\r' | '\n'))) {
                    return None;
                }
            }
            Some((_, ',')) => {
                fields.push(std::mem::take(&mut field));
                quoted_field = false;
            }
            Some((i, '\r' | '\n')) => {
                fields.push(field);
                let rest = &text[i..];
                let rest = rest
                    .strip_prefix("\r\n")
                    .or_else(|| rest.strip_prefix('\n'));
                return Some((fields, rest.unwrap_or(&text[i + 1..])));
            }
            Some((_, '"')) => return None,
            Some((_, c)) => field.push(c),
        }
    }
}

/// Splits an R2 line into its 12 fields. Its module columns hold `;` too, so they are walked:
/// each request module has 3 parts, each response module 4; a part that ends in `#name`
/// starts the next module of the same column. An empty column is one empty part.
fn split_r2(line: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = line.split(';').collect();
    if parts.len() < FIELDS {
        return None;
    }
    let mut fields: Vec<String> = Vec::with_capacity(FIELDS);
    for p in &parts[..9] {
        fields.push(percent_decode(p)?);
    }
    let mut i = 9;
    for arity in [3, 4] {
        let start = i;
        if parts.get(i)?.is_empty() {
            i += 1;
        } else {
            loop {
                // The last part of a module: `timestamp` or `timestamp#NextFile`.
                let last = parts.get(i + arity - 1)?;
                i += arity - 1;
                if !last.contains('#') {
                    i += 1;
                    break;
                }
            }
        }
        fields.push(parts[start..i].join(";"));
    }
    if i + 1 != parts.len() {
        return None;
    }
    fields.push(percent_decode(parts[i])?);
    Some(fields)
}

/// A module column's modules, each split into its escaped parts.
fn modules_of(column: &str) -> Vec<Vec<&str>> {
    column
        .split('#')
        .filter(|m| !m.is_empty())
        .map(|m| m.split(';').collect())
        .collect()
}

/// The User Host Address column for a client: IPv4 as its dotted quad, IPv6 as `std` writes
/// it. The quad digit by digit: `IpAddr::to_string` went through the formatter (1,300
/// instructions, once per check in the stub).
pub fn host_address(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(digits.format(octet));
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn format_time(unix_secs: u64) -> String {
    let mut out = String::with_capacity(19);
    push_time(&mut out, unix_secs);
    out
}

/// [`format_time`] appended to `out`, digit by digit: the six padded numbers of a `write!` cost
/// about 1,500 instructions, and the stub writes a time per check (callgrind, docs/BENCHMARKS.md
/// §4, fifth round).
fn push_time(out: &mut String, unix_secs: u64) {
    let (y, m, d) = civil_from_days((unix_secs / 86_400) as i64);
    let s = unix_secs % 86_400;
    let Ok(year) = u16::try_from(y) else {
        return push_time_slowly(out, (y, m, d), s);
    };
    if year > 9999 {
        return push_time_slowly(out, (y, m, d), s);
    }
    let mut text = *b"0000-00-00 00:00:00";
    let digit = |n: u64| b'0' + (n % 10) as u8;
    for (at, n) in [
        (0, u64::from(year) / 100),
        (2, u64::from(year) % 100),
        (5, u64::from(m)),
        (8, u64::from(d)),
        (11, s / 3600),
        (14, s / 60 % 60),
        (17, s % 60),
    ] {
        text[at] = digit(n / 10);
        text[at + 1] = digit(n);
    }
    // Only ASCII digits went in.
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// [`push_time`] past the year 9999, where the year takes more than four digits.
fn push_time_slowly(out: &mut String, (y, m, d): (i64, u32, u32), s: u64) {
    use std::fmt::Write as _;
    // `write!` into a String cannot fail.
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
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

    #[test]
    fn a_host_address_is_what_std_writes() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        for octets in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [9, 10, 99, 100],
            [255, 255, 255, 255],
        ] {
            let ip = IpAddr::V4(Ipv4Addr::from(octets));
            assert_eq!(host_address(ip), ip.to_string());
        }
        for n in (0..=u32::MAX).step_by(16_777_259) {
            let ip = IpAddr::V4(Ipv4Addr::from(n));
            assert_eq!(host_address(ip), ip.to_string());
        }
        let v6 = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001));
        assert_eq!(host_address(v6), "::ffff:10.0.0.1");
    }

    /// The digit-by-digit time is what the padded `write!` writes, at every 59th second of six
    /// days (the epoch, a leap day and the day after, 2026, the last day of 9999 and the first
    /// of 10000) and at the largest time there is.
    #[test]
    fn the_time_is_written_as_the_formatter_would() {
        let slow = |secs: u64| {
            let mut out = String::new();
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            push_time_slowly(&mut out, (y, m, d), secs % 86_400);
            out
        };
        let days = [0, 11_016, 11_017, 20_513, 2_932_896, 2_932_897];
        for day in days {
            for s in (0..86_400).step_by(59) {
                let secs = day * 86_400 + s;
                assert_eq!(format_time(secs), slow(secs), "{secs}");
            }
        }
        assert_eq!(format_time(253_402_300_799), "9999-12-31 23:59:59");
        assert_eq!(format_time(253_402_300_800), "10000-01-01 00:00:00");
        assert_eq!(format_time(u64::MAX), slow(u64::MAX));
    }
}
