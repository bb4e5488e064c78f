//! A small DER reader and writer: exactly what the catalog codec needs, nothing more.
//!
//! Why hand-rolled rather than the `der`/`cms`/`x509-cert` crates: the armv7 device binary has a
//! 2 MiB budget and was at 1.98 MiB before catalogs; those crates bring generic ASN.1 machinery
//! (derive macros, a type per module of X.509) for the handful of shapes a catalog uses. This
//! reader is a few hundred bytes of code. Certificates themselves are not parsed here: they stay
//! opaque DER and go to `webpki`, which the TLS stack already links.
//!
//! The reader accepts DER only: definite lengths, minimal length octets, low tag numbers
//! (all that PKCS#7 and the CTL use). Nesting is bounded by the schema the codec walks: it never
//! descends into a value it does not understand, so no input can make it recurse.

use super::CatalogError;

/// Universal tags and the context tags PKCS#7 uses.
pub mod tag {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const PRINTABLE_STRING: u8 = 0x13;
    pub const IA5_STRING: u8 = 0x16;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const BMP_STRING: u8 = 0x1e;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[n]` constructed (EXPLICIT, or IMPLICIT of a constructed type).
    pub const fn context(n: u8) -> u8 {
        0xa0 | n
    }
}

/// One decoded tag-length-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    /// The value octets (without tag and length).
    pub content: &'a [u8],
    /// The whole encoding (tag, length and value), for signatures over exact bytes.
    pub raw: &'a [u8],
}

/// A cursor over a run of concatenated TLVs (the content of a SEQUENCE or SET).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
    /// What is being read, for error messages.
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader { rest: bytes, what }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The tag of the next value, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next value, whatever its tag.
    pub fn any(&mut self) -> Result<Tlv<'a>, CatalogError> {
        let (tlv, rest) = split_tlv(self.rest, self.what)?;
        self.rest = rest;
        Ok(tlv)
    }

    /// The next value, which must carry `tag`.
    pub fn expect(&mut self, tag: u8) -> Result<Tlv<'a>, CatalogError> {
        match self.peek_tag() {
            Some(t) if t == tag => self.any(),
            found => Err(CatalogError::UnexpectedTag {
                what: self.what,
                expected: tag,
                found,
            }),
        }
    }

    /// The next value if it carries `tag`; nothing is consumed otherwise.
    pub fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, CatalogError> {
        if self.peek_tag() == Some(tag) {
            self.any().map(Some)
        } else {
            Ok(None)
        }
    }

    /// A reader over the content of the next value, which must carry `tag`.
    pub fn nested(&mut self, tag: u8, what: &'static str) -> Result<Reader<'a>, CatalogError> {
        Ok(Reader::new(self.expect(tag)?.content, what))
    }

    /// Refuses trailing bytes where the schema ends.
    pub fn finish(&self) -> Result<(), CatalogError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CatalogError::TrailingData { what: self.what })
        }
    }
}

/// Splits one TLV off the front of `bytes`.
fn split_tlv<'a>(bytes: &'a [u8], what: &'static str) -> Result<(Tlv<'a>, &'a [u8]), CatalogError> {
    let bad = |reason: &'static str| CatalogError::BadDer { what, reason };
    let (&tag, after_tag) = bytes
        .split_first()
        .ok_or(bad("truncated: expected a tag"))?;
    if tag & 0x1f == 0x1f {
        return Err(bad("high tag numbers are not used by catalogs"));
    }
    let (&first, after_len) = after_tag
        .split_first()
        .ok_or(bad("truncated: expected a length"))?;
    let (len, body) = if first < 0x80 {
        (usize::from(first), after_len)
    } else if first == 0x80 {
        return Err(bad("indefinite length (BER) is not DER"));
    } else {
        let n = usize::from(first & 0x7f);
        if n > 4 {
            return Err(bad("length of more than four octets"));
        }
        if after_len.len() < n {
            return Err(bad("truncated length"));
        }
        let (octets, body) = after_len.split_at(n);
        if octets[0] == 0 {
            return Err(bad("non-minimal length"));
        }
        let len = octets
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return Err(bad("non-minimal length"));
        }
        (len, body)
    };
    if body.len() < len {
        return Err(bad("value runs past the end of its container"));
    }
    let (content, rest) = body.split_at(len);
    let header = bytes.len() - body.len();
    let raw = &bytes[..header + len];
    Ok((Tlv { tag, content, raw }, rest))
}

/// Decodes one TLV that must fill `bytes` exactly.
pub fn single<'a>(bytes: &'a [u8], what: &'static str) -> Result<Tlv<'a>, CatalogError> {
    let mut r = Reader::new(bytes, what);
    let tlv = r.any()?;
    r.finish()?;
    Ok(tlv)
}

/// A non-negative INTEGER that fits in `u64` (versions, flags).
pub fn small_uint(content: &[u8], what: &'static str) -> Result<u64, CatalogError> {
    let bad = |reason| CatalogError::BadDer { what, reason };
    match content {
        [] => Err(bad("empty INTEGER")),
        [b, ..] if b & 0x80 != 0 => Err(bad("negative INTEGER")),
        [0, rest @ ..] if rest.len() > 8 => Err(bad("INTEGER too large")),
        [0] => Ok(0),
        [0, ..] => Ok(content[1..].iter().fold(0, |a, &b| (a << 8) | u64::from(b))),
        _ if content.len() > 8 => Err(bad("INTEGER too large")),
        _ => Ok(content.iter().fold(0, |a, &b| (a << 8) | u64::from(b))),
    }
}

/// A BMPString (UTF-16 big-endian) as text.
pub fn bmp_string(content: &[u8], what: &'static str) -> Result<String, CatalogError> {
    if !content.len().is_multiple_of(2) {
        return Err(CatalogError::BadDer {
            what,
            reason: "BMPString of odd length",
        });
    }
    let units = content
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| CatalogError::BadDer {
            what,
            reason: "BMPString is not valid UTF-16",
        })
}

/// Seconds since the Unix epoch from a UTCTime or GeneralizedTime (`Z` form only, as DER
/// requires).
pub fn time(tlv: &Tlv<'_>, what: &'static str) -> Result<u64, CatalogError> {
    let bad = |reason| CatalogError::BadDer { what, reason };
    let text = tlv.content;
    let (year, rest) = match tlv.tag {
        tag::UTC_TIME if text.len() == 13 => {
            let yy = digits(&text[..2]).ok_or(bad("bad UTCTime"))?;
            // RFC 5280: 50..99 are 19xx, 00..49 are 20xx.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        tag::GENERALIZED_TIME if text.len() == 15 => (
            digits(&text[..4]).ok_or(bad("bad GeneralizedTime"))?,
            &text[4..],
        ),
        tag::UTC_TIME | tag::GENERALIZED_TIME => return Err(bad("time is not in the DER Z form")),
        _ => return Err(bad("expected a UTCTime or GeneralizedTime")),
    };
    if year < 1970 {
        return Err(bad("time before 1970"));
    }
    if rest.last() != Some(&b'Z') {
        return Err(bad("time is not in UTC (no Z)"));
    }
    let field = |i: usize| digits(&rest[i..i + 2]).ok_or(bad("bad digits in time"));
    let (month, day, hour, min, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(bad("no such date"));
    }
    if hour > 23 || min > 59 || sec > 59 {
        return Err(bad("no such time of day"));
    }
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + min * 60 + sec)
}

fn digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (the caller refuses earlier years).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let before_year: u64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let before_month: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    before_year + before_month + day - 1
}

/// 9999-12-31T23:59:59Z, the last instant a GeneralizedTime can say.
pub const MAX_TIME: u64 = 253_402_300_799;

/// The inverse of [`time`]: seconds since the epoch as `YYMMDDhhmmssZ` (UTCTime, years
/// 1970..2049) or `YYYYMMDDhhmmssZ` (GeneralizedTime, from 2050 on, as RFC 5280 asks).
/// Times past year 9999 are written as [`MAX_TIME`].
pub fn encode_time(unix: u64) -> Vec<u8> {
    let unix = unix.min(MAX_TIME);
    let (mut days, secs) = (unix / 86_400, unix % 86_400);
    let mut year = 1970;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let mut month = 1;
    while days >= days_in_month(year, month) {
        days -= days_in_month(year, month);
        month += 1;
    }
    let body = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        month,
        days + 1,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    if year < 2050 {
        tlv(tag::UTC_TIME, format!("{:02}{body}", year % 100).as_bytes())
    } else {
        tlv(tag::GENERALIZED_TIME, format!("{year:04}{body}").as_bytes())
    }
}

// ---- writer ----

/// Encodes one TLV.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let octets = len.to_be_bytes();
        let skip = octets.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (octets.len() - skip) as u8);
        out.extend_from_slice(&octets[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A constructed value from already-encoded parts.
pub fn cons(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    cons(tag::SEQUENCE, parts)
}

/// A SET OF, sorted as DER requires (by encoding).
pub fn set_of(mut parts: Vec<Vec<u8>>) -> Vec<u8> {
    parts.sort();
    tlv(tag::SET, &parts.concat())
}

pub fn oid(content: &[u8]) -> Vec<u8> {
    tlv(tag::OID, content)
}

pub fn octets(content: &[u8]) -> Vec<u8> {
    tlv(tag::OCTET_STRING, content)
}

pub fn null() -> Vec<u8> {
    tlv(tag::NULL, &[])
}

/// A non-negative INTEGER.
pub fn uint(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    let mut content = bytes[skip..].to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    tlv(tag::INTEGER, &content)
}

/// A BMPString (UTF-16 big-endian).
pub fn bmp(text: &str) -> Vec<u8> {
    let content: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    tlv(tag::BMP_STRING, &content)
}

/// `AlgorithmIdentifier` with NULL parameters.
pub fn algorithm(oid_content: &[u8]) -> Vec<u8> {
    seq(&[&oid(oid_content), &null()])
}

/// Dotted text of an OID's content octets (for messages and docs).
pub fn oid_to_string(content: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in content {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if acc > u64::MAX >> 8 {
            return "<oversized OID>".into();
        }
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let first = (acc / 40).min(2);
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip_across_the_short_and_long_forms() {
        for len in [0usize, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000] {
            let content = vec![0x55; len];
            let enc = tlv(tag::OCTET_STRING, &content);
            let got = single(&enc, "test").unwrap();
            assert_eq!(got.content.len(), len);
            assert_eq!(got.raw, &enc[..]);
        }
    }

    #[test]
    fn non_der_lengths_are_refused() {
        for bad in [
            &[0x04, 0x80, 0x00, 0x00][..],      // indefinite
            &[0x04, 0x81, 0x05, 0, 0, 0, 0, 0], // long form for a short length
            &[0x04, 0x82, 0x00, 0x80],          // leading zero length octet
            &[0x04, 0x85, 1, 0, 0, 0, 0],       // five length octets
            &[0x04, 0x05, 0x00],                // runs past the end
            &[0x1f, 0x01, 0x00],                // high tag number
        ] {
            assert!(single(bad, "test").is_err(), "{bad:02x?}");
        }
    }

    #[test]
    fn times_round_trip_and_bad_dates_are_refused() {
        for unix in [
            0u64,
            951_782_400,
            1_700_000_000,
            2_524_608_000,
            4_102_444_799,
        ] {
            let enc = encode_time(unix);
            assert_eq!(
                time(&single(&enc, "t").unwrap(), "t").unwrap(),
                unix,
                "{unix}"
            );
        }
        // 2000-02-29 existed, 2100-02-29 did not.
        let ok = tlv(tag::UTC_TIME, b"000229000000Z");
        assert_eq!(time(&single(&ok, "t").unwrap(), "t").unwrap(), 951_782_400);
        for bad in [
            &b"21000229000000Z"[..],
            b"20001301000000Z",
            b"20000101240000Z",
        ] {
            let enc = tlv(tag::GENERALIZED_TIME, bad);
            assert!(time(&single(&enc, "t").unwrap(), "t").is_err());
        }
        let local = tlv(tag::UTC_TIME, b"2401010000000");
        assert!(time(&single(&local, "t").unwrap(), "t").is_err());
        let before_epoch = tlv(tag::UTC_TIME, b"691231235959Z");
        assert!(time(&single(&before_epoch, "t").unwrap(), "t").is_err());
        // Far-future inputs are clamped, not looped over for ever.
        let last = encode_time(u64::MAX);
        assert_eq!(time(&single(&last, "t").unwrap(), "t").unwrap(), MAX_TIME);
    }

    #[test]
    fn integers_and_oids_read_back() {
        for v in [0u64, 1, 0x7f, 0x80, 0x1001_0001, u64::MAX] {
            let enc = uint(v);
            assert_eq!(
                small_uint(single(&enc, "i").unwrap().content, "i").unwrap(),
                v
            );
        }
        assert!(small_uint(&[0xff], "i").is_err());
        assert_eq!(
            oid_to_string(&[0x2b, 6, 1, 4, 1, 0x82, 0x37, 10, 1]),
            "1.3.6.1.4.1.311.10.1"
        );
    }
}
