//! Firmware versions: exactly four dotted decimal numbers (`1.0.522.101`, `4.0.7577.4066`).

use std::fmt;
use std::str::FromStr;

use crate::error::ProtocolError;

/// A firmware version as the Device Update Service writes it: `major.minor.build.revision`.
///
/// Ordered part by part as numbers, so `1.0.522.101 < 1.0.1000.0`. Each part fits a `u32`;
/// leading zeros are accepted on input (`01` reads as `1`) and never written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FirmwareVersion([u32; 4]);

impl FirmwareVersion {
    pub const fn new(major: u32, minor: u32, build: u32, revision: u32) -> Self {
        FirmwareVersion([major, minor, build, revision])
    }

    pub const fn parts(&self) -> [u32; 4] {
        self.0
    }
}

impl FromStr for FirmwareVersion {
    type Err = ProtocolError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ProtocolError::BadVersion {
            text: text.to_owned(),
            reason,
        };
        let mut parts = [0u32; 4];
        let mut count = 0;
        for piece in text.split('.') {
            if count == 4 {
                return Err(bad("more than four parts"));
            }
            if piece.is_empty() {
                return Err(bad("empty part"));
            }
            if !piece.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("parts must be decimal digits"));
            }
            parts[count] = piece
                .parse()
                .map_err(|_| bad("part does not fit 32 bits"))?;
            count += 1;
        }
        if count != 4 {
            return Err(bad("fewer than four parts"));
        }
        Ok(FirmwareVersion(parts))
    }
}

impl fmt::Display for FirmwareVersion {
    /// Into one buffer on the stack, then one write: `write!(f, "{a}.{b}.{c}.{d}")` went
    /// through the formatter four times, about 1,000 instructions a version, and the stub
    /// writes two per check (the audit line, the inventory); the agent one per module it checks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Four parts of at most 10 digits and three dots.
        let mut out = [0u8; 43];
        let mut len = 0;
        let mut digits = itoa::Buffer::new();
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                out[len] = b'.';
                len += 1;
            }
            let text = digits.format(*part).as_bytes();
            out[len..len + text.len()].copy_from_slice(text);
            len += text.len();
        }
        // Only ASCII went in.
        f.write_str(std::str::from_utf8(&out[..len]).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_numerically() {
        let old: FirmwareVersion = "1.0.522.101".parse().unwrap();
        let new: FirmwareVersion = "1.0.1000.0".parse().unwrap();
        assert!(old < new);
        assert_eq!(new.to_string(), "1.0.1000.0");
        assert_eq!(
            "01.0.0.7".parse::<FirmwareVersion>().unwrap().to_string(),
            "1.0.0.7"
        );
    }

    #[test]
    fn writes_what_four_dotted_numbers_would() {
        let edges = [
            0,
            1,
            9,
            10,
            99,
            100,
            65_535,
            999_999_999,
            1_000_000_000,
            u32::MAX,
        ];
        for a in edges {
            for b in [0, 7, u32::MAX] {
                let v = FirmwareVersion::new(a, b, edges[(a % 10) as usize], a ^ b);
                let [w, x, y, z] = v.parts();
                assert_eq!(v.to_string(), format!("{w}.{x}.{y}.{z}"));
            }
        }
        // Widths and fills are not the formatter's to apply here, before or now.
        assert_eq!(
            format!("{:>12}", FirmwareVersion::new(1, 2, 3, 4)),
            "1.2.3.4"
        );
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        for (text, reason) in [
            ("1.0.522", "fewer than four parts"),
            ("1.0.522.101.5", "more than four parts"),
            ("1..522.101", "empty part"),
            ("1.0.522.x", "parts must be decimal digits"),
            ("1.0.522.-1", "parts must be decimal digits"),
            (" 1.0.522.101", "parts must be decimal digits"),
            ("1.0.522.99999999999", "part does not fit 32 bits"),
            ("", "empty part"),
        ] {
            match text.parse::<FirmwareVersion>() {
                Err(ProtocolError::BadVersion { reason: got, .. }) => {
                    assert_eq!(got, reason, "{text:?}")
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }
}
