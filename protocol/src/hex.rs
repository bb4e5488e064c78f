//! Hexadecimal digits read strictly (`0-9`, `a-f`, `A-F` and nothing else), for every value
//! written in hex: MAC addresses, SHA-256 digests, `%XX` escapes. `u8::from_str_radix` is not
//! used because it takes a sign: `+f` read as the byte 0x0F.

/// The value of one hex digit.
pub(crate) fn digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte two hex digits spell; `None` unless `pair` is exactly two digits.
pub(crate) fn byte(pair: &[u8]) -> Option<u8> {
    match pair {
        [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_reads_back_from_its_digits_in_either_case() {
        for b in 0..=255u8 {
            assert_eq!(byte(format!("{b:02x}").as_bytes()), Some(b));
            assert_eq!(byte(format!("{b:02X}").as_bytes()), Some(b));
        }
        for bad in ["+f", "-1", " f", "g0", "f", "fff", ""] {
            assert_eq!(byte(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
