//! NTLMv2 cryptography (MS-NLMP 3.3.2 and 3.1.5.1.2): NTOWFv2, the NTLMv2 and LMv2
//! responses, the session base key, the MIC and RC4 for a client's encrypted session key.
//! Every HMAC key here is 16 bytes, so no keying step can fail.

use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;

/// Zero-padded to the 64-byte block: HMAC pads shorter keys the same way, so this is
/// exactly HMAC-MD5 keyed with the 16 bytes, with no fallible `new_from_slice`.
pub(crate) fn hmac_md5(key: &[u8; 16], parts: &[&[u8]]) -> [u8; 16] {
    let mut block = [0u8; 64];
    block[..16].copy_from_slice(key);
    let mut mac = <Hmac<Md5> as hmac::digest::KeyInit>::new(&block.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// UTF-16LE, the encoding of every NTLM string once UNICODE is negotiated.
pub(crate) fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// NTOWFv1: MD4 of the UTF-16LE password (the "NT hash").
pub(crate) fn nt_hash(password: &str) -> [u8; 16] {
    Md4::digest(utf16le(password)).into()
}

/// NTOWFv2 = HMAC-MD5(MD4(UTF-16LE(password)), UTF-16LE(UPPER(user) || domain)).
pub(crate) fn ntowfv2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    #[cfg(test)]
    NTOWFV2_CALLS.with(|c| c.set(c.get() + 1));
    let mut who = user.to_uppercase();
    who.push_str(domain);
    hmac_md5(&nt_hash(password), &[&utf16le(&who)])
}

#[cfg(test)]
thread_local! {
    /// NTOWFv2 computations on this thread: how tests see that every refusal hashes alike.
    static NTOWFV2_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many NTOWFv2 this thread has computed (tests only).
#[cfg(all(test, feature = "acceptor"))]
pub(crate) fn ntowfv2_calls() -> u64 {
    NTOWFV2_CALLS.with(std::cell::Cell::get)
}

/// NTProofStr = HMAC-MD5(NTOWFv2, server challenge || blob).
pub(crate) fn nt_proof(ntowf: &[u8; 16], server_challenge: &[u8; 8], blob: &[u8]) -> [u8; 16] {
    hmac_md5(ntowf, &[server_challenge, blob])
}

/// SessionBaseKey (also the KeyExchangeKey for NTLMv2) = HMAC-MD5(NTOWFv2, NTProofStr).
pub(crate) fn session_base_key(ntowf: &[u8; 16], proof: &[u8; 16]) -> [u8; 16] {
    hmac_md5(ntowf, &[proof])
}

/// LMv2 response: HMAC-MD5(NTOWFv2, server challenge || client challenge) || client challenge.
pub(crate) fn lmv2_response(
    ntowf: &[u8; 16],
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
) -> [u8; 24] {
    let mac = hmac_md5(ntowf, &[server_challenge, client_challenge]);
    let mut out = [0u8; 24];
    out[..16].copy_from_slice(&mac);
    out[16..].copy_from_slice(client_challenge);
    out
}

/// MIC = HMAC-MD5(ExportedSessionKey, Type 1 || Type 2 || Type 3 with a zeroed MIC field).
pub(crate) fn mic(
    exported_session_key: &[u8; 16],
    negotiate: &[u8],
    challenge: &[u8],
    authenticate_zeroed: &[u8],
) -> [u8; 16] {
    hmac_md5(
        exported_session_key,
        &[negotiate, challenge, authenticate_zeroed],
    )
}

/// RC4, needed only to recover a client's exported session key under KEY_EXCH so the MIC
/// can be checked; 16 lines are cheaper than another dependency.
#[cfg_attr(not(feature = "acceptor"), allow(dead_code))]
pub(crate) fn rc4(key: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let mut s: [u8; 256] = core::array::from_fn(|i| i as u8);
    let mut j: u8 = 0;
    for i in 0..256 {
        j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
        s.swap(i, usize::from(j));
    }
    let (mut i, mut j) = (0u8, 0u8);
    data.iter()
        .map(|byte| {
            i = i.wrapping_add(1);
            j = j.wrapping_add(s[usize::from(i)]);
            s.swap(usize::from(i), usize::from(j));
            let k = s[usize::from(s[usize::from(i)].wrapping_add(s[usize::from(j)]))];
            byte ^ k
        })
        .collect()
}

/// Equality whose time does not depend on where the first difference is, so a proof or MIC
/// check leaks nothing about how close a forgery came.
#[cfg_attr(not(feature = "acceptor"), allow(dead_code))]
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    const CLIENT_CHALLENGE: [u8; 8] = [0xaa; 8];

    /// The temp/blob of MS-NLMP 4.2.4.1.3: time 0, client challenge aa.., AV pairs
    /// NbDomainName "Domain", NbComputerName "Server".
    fn spec_blob() -> Vec<u8> {
        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&[0; 8]);
        blob.extend_from_slice(&CLIENT_CHALLENGE);
        blob.extend_from_slice(&[0; 4]);
        blob.extend_from_slice(&[2, 0, 12, 0]);
        blob.extend_from_slice(&utf16le("Domain"));
        blob.extend_from_slice(&[1, 0, 12, 0]);
        blob.extend_from_slice(&utf16le("Server"));
        blob.extend_from_slice(&[0; 4]); // MsvAvEOL
        blob.extend_from_slice(&[0; 4]);
        blob
    }

    #[test]
    fn ms_nlmp_4_2_2_ntowfv1() {
        assert_eq!(
            hex(&nt_hash("Password")),
            "a4f49c406510bdcab6824ee7c30fd852"
        );
    }

    #[test]
    fn ms_nlmp_4_2_4_ntowfv2() {
        assert_eq!(
            hex(&ntowfv2("Password", "User", "Domain")),
            "0c868a403bfd7a93a3001ef22ef02e3f"
        );
    }

    #[test]
    fn ntowfv2_upper_cases_the_user_but_not_the_domain() {
        let reference = ntowfv2("Password", "User", "Domain");
        assert_eq!(ntowfv2("Password", "uSeR", "Domain"), reference);
        assert_ne!(ntowfv2("Password", "User", "DOMAIN"), reference);
    }

    #[test]
    fn ms_nlmp_4_2_4_ntproofstr_and_session_base_key() {
        let ntowf = ntowfv2("Password", "User", "Domain");
        let proof = nt_proof(&ntowf, &SERVER_CHALLENGE, &spec_blob());
        assert_eq!(hex(&proof), "68cd0ab851e51c96aabc927bebef6a1c");
        assert_eq!(
            hex(&session_base_key(&ntowf, &proof)),
            "8de40ccadbc14a82f15cb0ad0de95ca3"
        );
    }

    #[test]
    fn ms_nlmp_4_2_4_lmv2_response() {
        let ntowf = ntowfv2("Password", "User", "Domain");
        assert_eq!(
            hex(&lmv2_response(&ntowf, &SERVER_CHALLENGE, &CLIENT_CHALLENGE)),
            "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"
        );
    }

    #[test]
    fn hmac_md5_matches_rfc_2202_case_1() {
        // Proves the zero-padded-key shortcut is real HMAC: a 16-byte key of 0x0b
        // over "Hi There" is RFC 2202 test case 1.
        assert_eq!(
            hex(&hmac_md5(&[0x0b; 16], &[b"Hi There"])),
            "9294727a3638bb1c13f48ef8158bfc9d"
        );
    }

    #[test]
    fn rc4_rfc_6229_128_bit_key() {
        let key: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
        assert_eq!(
            hex(&rc4(&key, &[0; 16])),
            "9ac7cc9a609d1ef7b2932899cde41b97"
        );
        assert_eq!(rc4(&key, &rc4(&key, b"round trip")), b"round trip");
    }

    #[test]
    fn ct_eq_compares_content_and_length() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
