//! [`Client`]: the device side of one NTLMv2 handshake (Type 1 out, Type 2 in, Type 3 out).
//! Small on purpose, for firmware: NTLMv2 only, UNICODE only, no key exchange (so no RC4);
//! target info is copied from the Type 2 with MsvAvFlags saying a MIC is present, and the
//! MIC is always sent, binding all three messages together.

use crate::crypto;
use crate::message::{self, av, flags, AvPair, Builder};
use crate::{Credentials, NtlmError};

/// Flags this client asks for in its Type 1. No SIGN/SEAL/KEY_EXCH: HTTP does not use
/// NTLM session security, and leaving them out keeps RC4 off the device.
const CLIENT_FLAGS: u32 = flags::UNICODE
    | flags::REQUEST_TARGET
    | flags::NTLM
    | flags::ALWAYS_SIGN
    | flags::EXTENDED_SESSION_SECURITY
    | flags::VERSION
    | flags::N128
    | flags::N56;

#[derive(Debug)]
enum State {
    Start,
    /// Type 1 sent; its bytes go into the MIC.
    Negotiated(Vec<u8>),
    Done,
}

/// One NTLM handshake on one connection, from the device's side.
#[derive(Debug)]
pub struct Client {
    credentials: Credentials,
    workstation: String,
    state: State,
}

impl Client {
    /// A client for `credentials`, naming itself `workstation` in its Type 3.
    pub fn new(credentials: Credentials, workstation: &str) -> Client {
        Client {
            credentials,
            workstation: workstation.to_string(),
            state: State::Start,
        }
    }

    /// The Type 1 (negotiate) message. Calling it again starts the handshake over.
    pub fn negotiate(&mut self) -> Vec<u8> {
        let mut b = Builder::new(1);
        b.u32(CLIENT_FLAGS);
        b.field(&[]); // domain: not supplied
        b.field(&[]); // workstation: not supplied
        b.bytes(&message::VERSION);
        // Two empty fields cannot exceed the u16 length limit.
        let msg = b.finish().unwrap_or_default();
        self.state = State::Negotiated(msg.clone());
        msg
    }

    /// Type 3 from the server's Type 2. `client_challenge` is 8 random bytes, `now_filetime` the
    /// time as a Windows FILETIME used when the Type 2 target info has no MsvAvTimestamp.
    pub fn authenticate(
        &mut self,
        challenge: &[u8],
        client_challenge: [u8; 8],
        now_filetime: u64,
    ) -> Result<Vec<u8>, NtlmError> {
        let negotiate = match std::mem::replace(&mut self.state, State::Done) {
            State::Negotiated(n) => n,
            State::Start => return Err(NtlmError::OutOfOrder("authenticate before negotiate")),
            State::Done => return Err(NtlmError::OutOfOrder("authenticate called twice")),
        };
        let parsed = message::parse_challenge(challenge).map_err(NtlmError::Malformed)?;
        if parsed.flags & flags::UNICODE == 0 {
            return Err(NtlmError::Unsupported("server did not accept UNICODE"));
        }
        let pairs = message::parse_av_pairs_or_empty(parsed.target_info)?;

        // With a server timestamp the client must use it and send a zero LM response
        // (MS-NLMP 3.1.5.1.2): the server's clock, not ours, is what it will check.
        let server_time = pairs
            .iter()
            .find(|p| p.id == av::TIMESTAMP)
            .and_then(|p| message::u64_at(p.value, 0));
        let time = server_time.unwrap_or(now_filetime);

        let av_flags = pairs
            .iter()
            .find(|p| p.id == av::FLAGS)
            .and_then(|p| message::u32_at(p.value, 0))
            .unwrap_or(0)
            | av::FLAG_MIC_PRESENT;
        let av_flags = av_flags.to_le_bytes();
        let mut out_pairs: Vec<AvPair<'_>> = pairs
            .iter()
            .copied()
            .filter(|p| p.id != av::FLAGS)
            .collect();
        out_pairs.push(AvPair {
            id: av::FLAGS,
            value: &av_flags,
        });
        let target_info = message::encode_av_pairs(&out_pairs)
            .ok_or(NtlmError::Malformed("target info too long"))?;

        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&time.to_le_bytes());
        blob.extend_from_slice(&client_challenge);
        blob.extend_from_slice(&[0; 4]);
        blob.extend_from_slice(&target_info);
        blob.extend_from_slice(&[0; 4]);

        let creds = &self.credentials;
        let ntowf = crypto::ntowfv2(&creds.password, &creds.user, &creds.domain);
        let proof = crypto::nt_proof(&ntowf, &parsed.server_challenge, &blob);
        let mut nt_response = proof.to_vec();
        nt_response.extend_from_slice(&blob);
        let lm_response = if server_time.is_some() {
            [0u8; 24]
        } else {
            crypto::lmv2_response(&ntowf, &parsed.server_challenge, &client_challenge)
        };
        // Without KEY_EXCH the exported session key is the session base key.
        let session_key = crypto::session_base_key(&ntowf, &proof);

        let negotiated = (CLIENT_FLAGS & parsed.flags) | flags::UNICODE | flags::NTLM;
        let negotiated = negotiated | (parsed.flags & flags::TARGET_INFO);
        let mut b = Builder::new(3);
        b.field(&lm_response);
        b.field(&nt_response);
        b.field(&crypto::utf16le(&creds.domain));
        b.field(&crypto::utf16le(&creds.user));
        b.field(&crypto::utf16le(&self.workstation));
        b.field(&[]); // no encrypted random session key: no KEY_EXCH
        b.u32(negotiated);
        b.bytes(&message::VERSION);
        b.bytes(&[0; 16]); // MIC, filled in below
        let mut msg = b.finish().ok_or(NtlmError::Unsupported(
            "a credential or target info field is longer than 65535 bytes",
        ))?;
        let mic = crypto::mic(&session_key, &negotiate, challenge, &msg);
        msg[message::MIC_OFFSET..message::AUTH_HEADER_WITH_MIC].copy_from_slice(&mic);
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new(Credentials::parse_user("CORP\\alice", "secret"), "PHONE")
    }

    /// A Type 2 as an old server sends it: UNICODE, no target info.
    fn bare_type2(server_flags: u32) -> Vec<u8> {
        let mut b = Builder::new(2);
        b.field(&[]);
        b.u32(server_flags);
        b.bytes(&[5; 8]);
        b.bytes(&[0; 8]);
        b.finish().unwrap_or_default()
    }

    #[test]
    fn type1_asks_for_unicode_and_ntlm_and_has_no_names() {
        let t1 = client().negotiate();
        assert_eq!(t1.len(), 40);
        let Ok(f) = message::parse_negotiate(&t1) else {
            panic!("our Type 1 does not parse");
        };
        assert_eq!(
            f & (flags::UNICODE | flags::NTLM),
            flags::UNICODE | flags::NTLM
        );
        assert_eq!(f & flags::KEY_EXCH, 0, "the device build carries no RC4");
    }

    #[test]
    fn authenticate_needs_one_negotiate_first() {
        let mut c = client();
        assert_eq!(
            c.authenticate(&bare_type2(flags::UNICODE), [1; 8], 0),
            Err(NtlmError::OutOfOrder("authenticate before negotiate"))
        );
        c.negotiate();
        assert!(c
            .authenticate(&bare_type2(flags::UNICODE), [1; 8], 0)
            .is_ok());
        assert_eq!(
            c.authenticate(&bare_type2(flags::UNICODE), [1; 8], 0),
            Err(NtlmError::OutOfOrder("authenticate called twice"))
        );
    }

    #[test]
    fn without_a_server_timestamp_the_clock_argument_and_lmv2_are_used() {
        let mut c = client();
        c.negotiate();
        let now: u64 = 0x0123_4567_89ab_cdef;
        let t3 = c
            .authenticate(&bare_type2(flags::UNICODE), [0xcc; 8], now)
            .unwrap_or_else(|e| panic!("{e}"));
        let Ok(auth) = message::parse_authenticate(&t3) else {
            panic!("our Type 3 does not parse");
        };
        // Blob: proof(16) + 1,1 + 6 reserved + time.
        assert_eq!(auth.nt_response.get(24..32), Some(&now.to_le_bytes()[..]));
        let ntowf = crypto::ntowfv2("secret", "alice", "CORP");
        let lm = crypto::lmv2_response(&ntowf, &[5; 8], &[0xcc; 8]);
        assert!(t3.windows(24).any(|w| w == lm));
        assert_eq!(auth.user, crypto::utf16le("alice"));
        assert_eq!(auth.domain, crypto::utf16le("CORP"));
        assert!(auth.mic.is_some_and(|m| m != [0; 16]));
    }

    #[test]
    fn the_blob_keeps_server_av_pairs_and_says_a_mic_is_present() {
        let name = crypto::utf16le("SRV");
        let pairs = [AvPair {
            id: av::NB_COMPUTER_NAME,
            value: &name,
        }];
        let info = message::encode_av_pairs(&pairs).unwrap_or_default();
        let mut b = Builder::new(2);
        b.field(&[]);
        b.u32(flags::UNICODE | flags::TARGET_INFO);
        b.bytes(&[5; 8]);
        b.bytes(&[0; 8]);
        b.field(&info);
        let t2 = b.finish().unwrap_or_default();
        let mut c = client();
        c.negotiate();
        let t3 = c
            .authenticate(&t2, [1; 8], 9)
            .unwrap_or_else(|e| panic!("{e}"));
        let Ok(auth) = message::parse_authenticate(&t3) else {
            panic!("our Type 3 does not parse");
        };
        let blob_pairs = auth
            .nt_response
            .get(44..)
            .map(message::parse_av_pairs)
            .and_then(Result::ok)
            .unwrap_or_default();
        assert!(blob_pairs
            .iter()
            .any(|p| p.id == av::NB_COMPUTER_NAME && p.value == name));
        let flags_value = blob_pairs
            .iter()
            .find(|p| p.id == av::FLAGS)
            .map(|p| p.value);
        assert_eq!(flags_value, Some(&av::FLAG_MIC_PRESENT.to_le_bytes()[..]));
    }

    #[test]
    fn bad_type2s_are_errors() {
        for (t2, want) in [
            (b"garbage".to_vec(), "no NTLMSSP signature"),
            (b"NTLMSSP\0\x03\0\0\0".to_vec(), "unexpected message type"),
            (b"NTLMSSP\0\x02\0\0\0".to_vec(), "header truncated"),
        ] {
            let mut c = client();
            c.negotiate();
            assert_eq!(
                c.authenticate(&t2, [1; 8], 0),
                Err(NtlmError::Malformed(want))
            );
        }
        let mut c = client();
        c.negotiate();
        assert!(matches!(
            c.authenticate(&bare_type2(0x0000_0002), [1; 8], 0),
            Err(NtlmError::Unsupported(_))
        ));
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let text = format!("{:?}", client());
        assert!(text.contains("alice"));
        assert!(!text.contains("secret"));
    }
}
