//! Who a device is: the fields that key update rules and name test devices.
//!
//! Brand, model, revision and locale become directories of the update store, so they are
//! [`PathSegment`]s: a value that could escape the store cannot be constructed.

use std::fmt;
use std::str::FromStr;

use crate::error::ProtocolError;

/// Longest single name we accept (a path component on every file system we serve from).
const MAX_SEGMENT: usize = 128;

/// A non-empty name that is safe as exactly one path component of the update store.
///
/// Refused: empty, `.` and `..`, `/` and `\`, `:` (drive letters, NTFS streams), `%` (so a
/// percent-decoded URL cannot smuggle a separator twice), control characters, and names
/// longer than 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathSegment(String);

impl PathSegment {
    pub fn new(text: &str) -> Result<Self, ProtocolError> {
        let bad = |reason| ProtocolError::UnsafeComponent {
            text: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if text == "." || text == ".." {
            return Err(bad("relative directory"));
        }
        if text.len() > MAX_SEGMENT {
            return Err(bad("longer than 128 bytes"));
        }
        // Byte scans, each rule's reason in the order they were always tested: every character
        // the first two name is ASCII, so no character needs decoding. A check makes six
        // segments; with `contains` of char arrays and `chars()` each cost 365 instructions,
        // now 286, most of it the copy (callgrind of the stub, docs/BENCHMARKS.md §4).
        let bytes = text.as_bytes();
        if bytes.iter().any(|b| matches!(b, b'/' | b'\\')) {
            return Err(bad("contains a path separator"));
        }
        if bytes.iter().any(|b| matches!(b, b':' | b'%')) {
            return Err(bad("contains ':' or '%'"));
        }
        if has_control(text) {
            return Err(bad("contains a control character"));
        }
        if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
            return Err(bad("leading or trailing white space"));
        }
        Ok(PathSegment(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `text` holds a control character (`char::is_control`). Most text is printable
/// ASCII, which one range test per byte clears; only text with a control or a byte past ASCII
/// is read character by character.
pub(crate) fn has_control(text: &str) -> bool {
    text.bytes().any(|b| !(b' '..=b'~').contains(&b)) && text.chars().any(char::is_control)
}

impl FromStr for PathSegment {
    type Err = ProtocolError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PathSegment::new(text)
    }
}

impl fmt::Display for PathSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for PathSegment {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A file name inside a store directory or a log folder: a [`PathSegment`] by another name,
/// kept apart so that a signature cannot mix up a directory and a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(PathSegment);

impl FileName {
    pub fn new(text: &str) -> Result<Self, ProtocolError> {
        PathSegment::new(text).map(FileName)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The lower-cased extension without its dot (`"nbt"` for `CPE.NBT`), if any.
    pub fn extension(&self) -> Option<String> {
        let name = self.as_str();
        let dot = name.rfind('.')?;
        (dot + 1 < name.len()).then(|| name[dot + 1..].to_ascii_lowercase())
    }

    /// The name without its last extension (`"CPE"` for `CPE.nbt`).
    pub fn stem(&self) -> &str {
        let name = self.as_str();
        match name.rfind('.') {
            Some(dot) if dot > 0 => &name[..dot],
            _ => name,
        }
    }
}

impl FromStr for FileName {
    type Err = ProtocolError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        FileName::new(text)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The device type of a rule. R2 knows `UCPhone` and `RoundTable`; any other safe name is kept
/// as given so that later device classes pass through unchanged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceType {
    UcPhone,
    RoundTable,
    Other(PathSegment),
}

impl DeviceType {
    pub fn as_str(&self) -> &str {
        match self {
            DeviceType::UcPhone => "UCPhone",
            DeviceType::RoundTable => "RoundTable",
            DeviceType::Other(name) => name.as_str(),
        }
    }
}

impl FromStr for DeviceType {
    type Err = ProtocolError;
    /// `UCPhone` and `RoundTable` are matched without regard to case and written canonically.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("UCPhone") {
            Ok(DeviceType::UcPhone)
        } else if text.eq_ignore_ascii_case("RoundTable") {
            Ok(DeviceType::RoundTable)
        } else {
            PathSegment::new(text).map(DeviceType::Other)
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A MAC address. Reads `010203040506`, `01-02-03-04-05-06` and `01:02:03:04:05:06` (any case);
/// writes the form the Device Update Service logs use: `01-02-03-04-05-06`, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddress([u8; 6]);

impl MacAddress {
    pub const fn new(bytes: [u8; 6]) -> Self {
        MacAddress(bytes)
    }

    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl FromStr for MacAddress {
    type Err = ProtocolError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ProtocolError::BadMac(text.to_owned());
        let digits: Vec<u8> = match text.len() {
            12 => text.bytes().collect(),
            17 => {
                let sep = text.as_bytes()[2];
                if sep != b'-' && sep != b':' {
                    return Err(bad());
                }
                let mut out = Vec::with_capacity(12);
                for (i, b) in text.bytes().enumerate() {
                    if i % 3 == 2 {
                        if b != sep {
                            return Err(bad());
                        }
                    } else {
                        out.push(b);
                    }
                }
                out
            }
            _ => return Err(bad()),
        };
        let mut bytes = [0u8; 6];
        for (i, pair) in digits.chunks(2).enumerate() {
            bytes[i] = crate::hex::byte(pair).ok_or_else(bad)?;
        }
        Ok(MacAddress(bytes))
    }
}

impl fmt::Display for MacAddress {
    /// `AA-BB-CC-DD-EE-FF`. By table rather than six `{:02X}`: the stub formats a MAC several
    /// times per check (inventory key, dirty set, audit line), and the formatter machinery
    /// was 2 % of its CPU per check (docs/BENCHMARKS.md §4).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = [b'-'; 17];
        for (i, byte) in self.0.iter().enumerate() {
            out[i * 3] = HEX[usize::from(byte >> 4)];
            out[i * 3 + 1] = HEX[usize::from(byte & 15)];
        }
        // Only ASCII went in.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// A serial number: letters, digits, `-` and `_`, 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SerialNumber(String);

impl SerialNumber {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SerialNumber {
    type Err = ProtocolError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(SerialNumber(text.to_owned()))
        } else {
            Err(ProtocolError::invalid(
                "SerialNumber",
                format!("{text:?}: expected 1-64 letters, digits, '-' or '_'"),
            ))
        }
    }
}

impl fmt::Display for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything that says which rules apply to a device and whether it is a test device.
/// MAC and serial number may each be blank on the wire; they are `None` then.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    pub device_type: DeviceType,
    pub brand: PathSegment,
    pub model: PathSegment,
    pub revision: PathSegment,
    pub locale: PathSegment,
    pub mac: Option<MacAddress>,
    pub serial: Option<SerialNumber>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `PathSegment::new` as it was written before its byte scans, the reference they match.
    fn segment_by_chars(text: &str) -> Result<(), &'static str> {
        if text.is_empty() {
            return Err("empty");
        }
        if text == "." || text == ".." {
            return Err("relative directory");
        }
        if text.len() > MAX_SEGMENT {
            return Err("longer than 128 bytes");
        }
        if text.contains(['/', '\\']) {
            return Err("contains a path separator");
        }
        if text.contains([':', '%']) {
            return Err("contains ':' or '%'");
        }
        if text.chars().any(char::is_control) {
            return Err("contains a control character");
        }
        if text.trim() != text {
            return Err("leading or trailing white space");
        }
        Ok(())
    }

    fn reason(result: Result<PathSegment, ProtocolError>) -> Result<(), &'static str> {
        match result {
            Ok(_) => Ok(()),
            Err(ProtocolError::UnsafeComponent { reason, .. }) => Err(reason),
            Err(e) => panic!("not a segment error: {e}"),
        }
    }

    proptest! {
        /// The byte scans refuse what the character tests refused, for the same first reason,
        /// across ASCII, the C1 controls, Unicode white space and everything else.
        #[test]
        fn segments_are_judged_as_the_character_tests_judged_them(
            text in "[a-z./\\\\:% \\t\\x7f\\u{80}-\\u{a0}\\u{1680}\\u{2000}-\\u{200b}\\u{3000}é€😀]{0,12}"
        ) {
            prop_assert_eq!(reason(PathSegment::new(&text)), segment_by_chars(&text));
            prop_assert_eq!(has_control(&text), text.chars().any(char::is_control));
        }
    }

    #[test]
    fn every_control_character_is_found_and_nothing_else() {
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let text = format!("a{c}b");
            assert_eq!(has_control(&text), c.is_control(), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn mac_reads_three_spellings_and_writes_one() {
        for text in ["0004f2000176", "00-04-F2-00-01-76", "00:04:f2:00:01:76"] {
            let mac: MacAddress = text.parse().unwrap();
            assert_eq!(mac.to_string(), "00-04-F2-00-01-76");
        }
        // Every nibble value, both halves of a byte: as `{:02X}` writes them.
        for bytes in [
            [0xab, 0xcd, 0xef, 0x01, 0x9a, 0xff],
            [0x10, 0x32, 0x54, 0x76, 0x98, 0xba],
        ] {
            let want = bytes.map(|b| format!("{b:02X}")).join("-");
            assert_eq!(MacAddress(bytes).to_string(), want);
        }
    }

    #[test]
    fn mac_rejects_mixed_or_short_forms() {
        for text in [
            "00-04:F2-00-01-76",
            "0004f200017",
            "00-04-F2-00-01-7G",
            "",
            "00_04_F2_00_01_76",
        ] {
            assert!(
                matches!(text.parse::<MacAddress>(), Err(ProtocolError::BadMac(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn path_segment_refuses_escapes() {
        for text in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "C:",
            "%2e%2e",
            "a\nb",
            " A",
            "x".repeat(129).as_str(),
        ] {
            assert!(PathSegment::new(text).is_err(), "{text:?} accepted");
        }
        assert_eq!(PathSegment::new("CX700").unwrap().as_str(), "CX700");
        assert!(
            PathSegment::new("..a").is_ok(),
            "dots inside a name are harmless"
        );
    }

    #[test]
    fn device_type_keeps_unknown_types() {
        assert_eq!(
            "ucphone".parse::<DeviceType>().unwrap(),
            DeviceType::UcPhone
        );
        assert_eq!(
            "ROUNDTABLE".parse::<DeviceType>().unwrap().to_string(),
            "RoundTable"
        );
        assert_eq!(
            "LyncPhone".parse::<DeviceType>().unwrap().to_string(),
            "LyncPhone"
        );
        assert!("../etc".parse::<DeviceType>().is_err());
    }

    #[test]
    fn serial_numbers() {
        assert!("PCX7-00_12".parse::<SerialNumber>().is_ok());
        assert!("bad serial".parse::<SerialNumber>().is_err());
        assert!("".parse::<SerialNumber>().is_err());
    }

    #[test]
    fn file_name_parts() {
        let name = FileName::new("CPE.NBT").unwrap();
        assert_eq!(name.extension().as_deref(), Some("nbt"));
        assert_eq!(name.stem(), "CPE");
        assert_eq!(FileName::new("README").unwrap().extension(), None);
    }
}
