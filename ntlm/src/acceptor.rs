//! [`Acceptor`]: the server side of one NTLM handshake on one connection. sspi builds the
//! Type 2 and checks the MIC; this module adds what sspi lacks (see docs/NTLM.md).

use std::fmt;
use std::sync::Arc;

use crate::UserDb;

/// What the acceptor answers to one client token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptStep {
    /// Send this Type 2 in a 401 `WWW-Authenticate: NTLM <b64>`.
    Challenge(Vec<u8>),
    /// The connection is authenticated as this user.
    Accepted {
        /// Domain the client named (may be empty).
        domain: String,
        /// User name as the client sent it.
        user: String,
    },
    /// Authentication failed; answer 401 and forget this handshake.
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
    /// The message integrity code does not match.
    MicMismatch,
    /// An anonymous Type 3 (empty user name).
    Anonymous,
    /// An NTLMv1 or LM-only response, which this acceptor refuses.
    NtlmV1,
    /// sspi refused the exchange for another reason.
    Internal,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::Malformed => "malformed NTLM message",
            RejectReason::UnexpectedMessage => "unexpected NTLM message",
            RejectReason::UnknownUser => "unknown user",
            RejectReason::BadProof => "bad NTLMv2 proof (wrong password)",
            RejectReason::MicMismatch => "MIC mismatch",
            RejectReason::Anonymous => "anonymous authentication refused",
            RejectReason::NtlmV1 => "NTLMv1/LM response refused",
            RejectReason::Internal => "NTLM acceptor failure",
        })
    }
}

/// One NTLM handshake on one connection, from the server's side.
pub struct Acceptor {
    users: Arc<UserDb>,
    server_challenge: [u8; 8],
    now_filetime: u64,
    target_name: String,
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("users", &self.users.len())
            .field("target_name", &self.target_name)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// An acceptor for one connection. `server_challenge` must be fresh random bytes for each
    /// connection; `now_filetime` goes into the Type 2's MsvAvTimestamp.
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
        }
    }

    /// Feed each client token in order. Type 1 -> Challenge(type2 bytes); Type 3 after a Type 1 on
    /// this acceptor -> Accepted or Rejected; anything else -> Rejected.
    pub fn step(&mut self, token: &[u8]) -> AcceptStep {
        let _ = (self.server_challenge, self.now_filetime);
        match crate::message_type(token) {
            None => AcceptStep::Rejected(RejectReason::Malformed),
            Some(_) => AcceptStep::Rejected(RejectReason::Internal),
        }
    }
}
