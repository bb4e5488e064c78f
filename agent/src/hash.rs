//! The workspace's two non-cryptographic mixers, in one place so every seed, digest and
//! synthetic byte stream derived from them agrees across crates: FNV-1a (64-bit) to fold bytes
//! into a `u64`, and splitmix64 to spread a `u64` (the machine's jitter generator, the
//! simulator's per-device seeds). Neither is for secrets.

/// The FNV-1a 64-bit offset basis: the hash of no bytes.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// The FNV-1a 64-bit prime.
pub const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_extend(FNV_OFFSET, bytes)
}

/// Continues an FNV-1a hash `h` with more bytes (`fnv1a(a ++ b) == fnv1a_extend(fnv1a(a), b)`).
pub fn fnv1a_extend(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// The splitmix64 increment (2^64 / the golden ratio): a generator's state advances by it.
pub const SPLITMIX_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64 (Steele, Lea, Flood 2014) as a function: the output of a generator whose state
/// was `x`. A stream is `splitmix64(s), splitmix64(s + γ), splitmix64(s + 2γ)...`, which is
/// what [`crate::machine`]'s generator draws.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(SPLITMIX_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        // From the FNV reference test suite (draft-eastlake-fnv).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a_extend(fnv1a(b"foo"), b"bar"), fnv1a(b"foobar"));
    }

    #[test]
    fn splitmix64_matches_the_reference_stream() {
        // The published algorithm seeded with 1234567, as an independent (Python) implementation
        // of it computes the first three outputs.
        let seed = 1_234_567u64;
        let stream: Vec<u64> = (0..3)
            .map(|i: u64| splitmix64(seed.wrapping_add(i.wrapping_mul(SPLITMIX_GAMMA))))
            .collect();
        assert_eq!(
            stream,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }
}
