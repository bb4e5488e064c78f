//! [`Acceptor`]: the server side of one NTLM handshake on one connection. It answers a
//! Type 1 with a Type 2 built from the caller's challenge and time, then checks the Type 3:
//! NTLMv2 only, the user looked up by the name the client sent, the NTLMv2 proof verified
//! against that user's password, the MIC verified whenever the client says it sent one, and
//! the domain the client named required to be the account's. The identity accepted is the
//! account as the user file spells it, never the client's spelling.
//! Why this is not sspi: see docs/NTLM.md ("Why not sspi").

use std::fmt;
use std::sync::Arc;

use crate::crypto;
use crate::message::{self, av, flags, AvPair, Builder};
use crate::userdb::Lookup;
use crate::UserDb;

/// What the acceptor answers to one client token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptStep {
    /// Send this Type 2 in a 401 `WWW-Authenticate: NTLM <b64>`.
    Challenge(Vec<u8>),
    /// The connection is authenticated as this account of the user file.
    Accepted {
        /// The account's domain as the user file spells it (empty for an account listed
        /// without one), whatever the client sent.
        domain: String,
        /// The account's user name as the user file spells it, whatever case the client used.
        user: String,
    },
    /// Authentication failed; answer 401. This acceptor is spent: a retry needs a new one
    /// (with a fresh challenge).
    Rejected(RejectReason),
}

/// Why a token was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// Not a well-formed NTLM message.
    Malformed,
    /// A valid message at the wrong point in the handshake.
    UnexpectedMessage,
    /// The user the client named is not in the user file.
    UnknownUser,
    /// The NTLMv2 proof does not match the user's password.
    BadProof,
    /// The password is right but the client named a domain the account does not belong to
    /// (`EVILDOM\alice`, `alice@attacker.example`).
    ForeignDomain,
    /// The message integrity code does not match.
    MicMismatch,
    /// An anonymous Type 3 (empty user name).
    Anonymous,
    /// An NTLMv1 or LM-only response, which this acceptor refuses.
    NtlmV1,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::Malformed => "malformed NTLM message",
            RejectReason::UnexpectedMessage => "unexpected NTLM message",
            RejectReason::UnknownUser => "unknown user",
            RejectReason::BadProof => "bad NTLMv2 proof (wrong password)",
            RejectReason::ForeignDomain => "domain does not belong to the account",
            RejectReason::MicMismatch => "MIC mismatch",
            RejectReason::Anonymous => "anonymous authentication refused",
            RejectReason::NtlmV1 => "NTLMv1/LM response refused",
        })
    }
}

impl std::error::Error for RejectReason {}

/// Flags the Type 2 echoes when the client asked for them. Echoing SIGN/SEAL/KEY_EXCH is
/// what Windows does; refusing them makes some clients (pyspnego) give up.
const ECHOED_FLAGS: u32 = flags::SIGN
    | flags::SEAL
    | flags::ALWAYS_SIGN
    | flags::EXTENDED_SESSION_SECURITY
    | flags::VERSION
    | flags::N128
    | flags::KEY_EXCH
    | flags::N56;

/// What an unknown user's proof is checked against, so that refusing one costs the same
/// hashing as a wrong password. No proof can match it by more than chance, and an unknown user
/// is refused even then.
const UNKNOWN_USER_PASSWORD: &str = "unknown-user: no such account";

/// Smallest NTLMv2 response: NTProofStr (16) + blob header (28) + MsvAvEOL (4).
const MIN_NTLMV2_RESPONSE: usize = 16 + 28 + 4;

#[derive(Debug)]
enum State {
    ExpectNegotiate,
    /// Type 1 and our Type 2, both needed for the MIC.
    ExpectAuthenticate {
        negotiate: Vec<u8>,
        challenge: Vec<u8>,
    },
    Done,
}

/// One NTLM handshake on one connection, from the server's side. Create one per connection,
/// and a new one (with a new challenge) whenever a Type 1 arrives on a connection whose
/// acceptor has already answered one: an acceptor never issues its challenge twice.
pub struct Acceptor {
    users: Arc<UserDb>,
    server_challenge: [u8; 8],
    now_filetime: u64,
    target_name: String,
    state: State,
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("users", &self.users.len())
            .field("target_name", &self.target_name)
            .field("state", &self.state_name())
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// An acceptor for one connection. `server_challenge` must be fresh random bytes for each
    /// acceptor (it is what makes a captured Type 3 useless elsewhere); `now_filetime` goes
    /// into the Type 2's MsvAvTimestamp; `target_name` names the domain and server.
    pub fn new(
        users: Arc<UserDb>,
        server_challenge: [u8; 8],
        now_filetime: u64,
        target_name: &str,
    ) -> Acceptor {
        Acceptor {
            users,
            server_challenge,
            now_filetime,
            target_name: target_name.to_string(),
            state: State::ExpectNegotiate,
        }
    }

    /// Feed each client token in order. Type 1 -> Challenge(type2 bytes); Type 3 after a Type 1 on
    /// this acceptor -> Accepted or Rejected; anything else -> Rejected.
    pub fn step(&mut self, token: &[u8]) -> AcceptStep {
        let state = std::mem::replace(&mut self.state, State::Done);
        let ty = message::message_type(token);
        match (state, ty) {
            (_, None) => AcceptStep::Rejected(RejectReason::Malformed),
            (State::ExpectNegotiate, Some(1)) => match message::parse_negotiate(token) {
                Ok(client_flags) => match self.challenge(client_flags) {
                    Some(challenge) => {
                        self.state = State::ExpectAuthenticate {
                            negotiate: token.to_vec(),
                            challenge: challenge.clone(),
                        };
                        AcceptStep::Challenge(challenge)
                    }
                    None => AcceptStep::Rejected(RejectReason::Malformed),
                },
                Err(_) => AcceptStep::Rejected(RejectReason::Malformed),
            },
            (
                State::ExpectAuthenticate {
                    negotiate,
                    challenge,
                },
                Some(3),
            ) => match self.verify(&negotiate, &challenge, token) {
                Ok((domain, user)) => AcceptStep::Accepted { domain, user },
                Err(reason) => AcceptStep::Rejected(reason),
            },
            _ => AcceptStep::Rejected(RejectReason::UnexpectedMessage),
        }
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            State::ExpectNegotiate => "expect-negotiate",
            State::ExpectAuthenticate { .. } => "expect-authenticate",
            State::Done => "done",
        }
    }

    /// The Type 2. Always UNICODE, whatever the client asked: curl's Type 1 offers only OEM
    /// yet follows a UNICODE Type 2, and every string we then parse is UTF-16LE.
    fn challenge(&self, client_flags: u32) -> Option<Vec<u8>> {
        let name = crypto::utf16le(&self.target_name);
        let time = self.now_filetime.to_le_bytes();
        let pairs = [
            AvPair {
                id: av::NB_DOMAIN_NAME,
                value: &name,
            },
            AvPair {
                id: av::NB_COMPUTER_NAME,
                value: &name,
            },
            AvPair {
                id: av::DNS_DOMAIN_NAME,
                value: &name,
            },
            AvPair {
                id: av::DNS_COMPUTER_NAME,
                value: &name,
            },
            AvPair {
                id: av::TIMESTAMP,
                value: &time,
            },
        ];
        let target_info = message::encode_av_pairs(&pairs)?;
        let flags = flags::UNICODE
            | flags::REQUEST_TARGET
            | flags::NTLM
            | flags::TARGET_TYPE_DOMAIN
            | flags::TARGET_INFO
            | flags::VERSION
            | (client_flags & ECHOED_FLAGS);
        let mut b = Builder::new(2);
        b.field(&name);
        b.u32(flags);
        b.bytes(&self.server_challenge);
        b.bytes(&[0; 8]);
        b.field(&target_info);
        b.bytes(&message::VERSION);
        b.finish()
    }

    /// Every check a Type 3 must pass; the order makes the reason the most specific one.
    fn verify(
        &self,
        negotiate: &[u8],
        challenge: &[u8],
        token: &[u8],
    ) -> Result<(String, String), RejectReason> {
        let auth = message::parse_authenticate(token).map_err(|_| RejectReason::Malformed)?;
        let unicode = auth.flags & flags::UNICODE != 0;
        let user = decode_string(auth.user, unicode)?;
        let domain = decode_string(auth.domain, unicode)?;
        if user.is_empty() {
            return Err(RejectReason::Anonymous);
        }
        // A 24-byte NT response is NTLMv1 (or NTLM2 session response); none means LM only.
        if auth.nt_response.len() <= 24 {
            return Err(RejectReason::NtlmV1);
        }
        if auth.nt_response.len() < MIN_NTLMV2_RESPONSE {
            return Err(RejectReason::Malformed);
        }
        let (proof, blob) = auth.nt_response.split_at(16);
        if blob.get(..2) != Some(&[1, 1][..]) {
            return Err(RejectReason::Malformed);
        }
        let blob_pairs = blob
            .get(28..)
            .map(message::parse_av_pairs)
            .ok_or(RejectReason::Malformed)?
            .map_err(|_| RejectReason::Malformed)?;

        // The same hashing whether or not the user exists, and whatever domains match: three
        // NTOWFv2 + NTProofStr, against a dummy password for an unknown user, so the time a
        // refusal takes does not tell who has an account.
        let lookup = self.users.resolve(&domain, &user, &self.target_name);
        let (password, account_domain) = match &lookup {
            Lookup::Found { entry, .. } => (
                entry.password.as_str(),
                entry.domain.as_deref().unwrap_or(""),
            ),
            Lookup::Unknown => (UNKNOWN_USER_PASSWORD, ""),
        };
        // Windows also tries the account's own domain and the empty domain, because clients
        // disagree on which domain goes into NTOWFv2; the user name stays the client's.
        let mut matched = None;
        for d in [domain.as_str(), account_domain, ""] {
            let ntowf = crypto::ntowfv2(password, &user, d);
            let ok = crypto::ct_eq(
                &crypto::nt_proof(&ntowf, &self.server_challenge, blob),
                proof,
            );
            if ok && matched.is_none() {
                matched = Some(ntowf);
            }
        }
        let Lookup::Found { entry, domain_ok } = lookup else {
            return Err(RejectReason::UnknownUser);
        };
        let ntowf = matched.ok_or(RejectReason::BadProof)?;

        let av_flags = blob_pairs
            .iter()
            .find(|p| p.id == av::FLAGS)
            .and_then(|p| message::u32_at(p.value, 0))
            .unwrap_or(0);
        if av_flags & av::FLAG_MIC_PRESENT != 0 {
            let sent_mic = auth.mic.ok_or(RejectReason::MicMismatch)?;
            let proof: [u8; 16] = proof.try_into().map_err(|_| RejectReason::Malformed)?;
            let key_exchange_key = crypto::session_base_key(&ntowf, &proof);
            let exported = if auth.flags & flags::KEY_EXCH != 0 {
                let key = crypto::rc4(&key_exchange_key, auth.encrypted_session_key);
                key.as_slice()
                    .try_into()
                    .map_err(|_| RejectReason::Malformed)?
            } else {
                key_exchange_key
            };
            let mut zeroed = token.to_vec();
            zeroed[message::MIC_OFFSET..message::AUTH_HEADER_WITH_MIC].fill(0);
            let mic = crypto::mic(&exported, negotiate, challenge, &zeroed);
            if !crypto::ct_eq(&mic, &sent_mic) {
                return Err(RejectReason::MicMismatch);
            }
        }
        if !domain_ok {
            return Err(RejectReason::ForeignDomain);
        }
        // The identity is the account's, spelled as the user file spells it.
        Ok((entry.domain.clone().unwrap_or_default(), entry.user.clone()))
    }
}

/// A Type 3 string: UTF-16LE under UNICODE, else OEM, read as Latin-1 (it is ASCII in practice).
fn decode_string(bytes: &[u8], unicode: bool) -> Result<String, RejectReason> {
    if !unicode {
        return Ok(bytes.iter().copied().map(char::from).collect());
    }
    if !bytes.len().is_multiple_of(2) {
        return Err(RejectReason::Malformed);
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| RejectReason::Malformed)
}

#[cfg(test)]
mod tests;
