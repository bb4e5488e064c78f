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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
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
