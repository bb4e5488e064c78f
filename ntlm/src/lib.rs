//! Sans-IO NTLM (NTLMv2) for the Device Update Service's external listener: a [`Client`]
//! that devices use to answer a server's challenge, and an [`Acceptor`] (feature `acceptor`,
//! on by default) that the server stub uses to authenticate one TCP connection. Nothing here
//! does I/O, reads a clock or draws randomness: time and random bytes are arguments, so every
//! handshake in the tests is exact.
//!
//! # Layout
//! - [`error`]: [`NtlmError`], the one error type.
//! - `credentials`: [`Credentials`] and the `DOMAIN\user` / `user@domain` spellings.
//! - `crypto`: NTOWFv2, NTProofStr and the MIC (HMAC-MD5 over MD4).
//! - `message`: the wire layout of Type 1/2/3 messages and target-info AV pairs.
//! - `client`: [`Client`], the device side.
//! - `userdb`: [`UserDb`], the acceptor's user file.
//! - `acceptor`: [`Acceptor`], [`AcceptStep`], [`RejectReason`] (see docs/NTLM.md).
//! - this file: HTTP header helpers, [`message_type`] and [`filetime_from_unix_millis`].

mod client;
mod credentials;
mod crypto;
pub mod error;
mod message;
mod userdb;

#[cfg(feature = "acceptor")]
mod acceptor;

#[cfg(feature = "acceptor")]
pub use acceptor::{AcceptStep, Acceptor, RejectReason};
pub use client::Client;
pub use credentials::Credentials;
pub use error::NtlmError;
pub use userdb::UserDb;

use base64::Engine as _;

/// `Authorization` / `WWW-Authenticate` value for a token: `NTLM <base64>`.
pub fn to_header(token: &[u8]) -> String {
    format!(
        "NTLM {}",
        base64::engine::general_purpose::STANDARD.encode(token)
    )
}

/// The token in an `NTLM <base64>` header value (scheme case-insensitive).
pub fn from_header(value: &str) -> Result<Vec<u8>, NtlmError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("NTLM") {
        return Err(NtlmError::NotNtlm);
    }
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(NtlmError::MissingToken);
    }
    base64::engine::general_purpose::STANDARD
        .decode(rest)
        .map_err(|_| NtlmError::BadBase64)
}

/// The NTLM message type of a token (1, 2 or 3), or `None` if it is not an NTLM message.
pub fn message_type(token: &[u8]) -> Option<u32> {
    message::message_type(token)
}

/// Seconds between 1601-01-01 (the FILETIME epoch) and 1970-01-01 (the Unix epoch).
const FILETIME_UNIX_OFFSET_SECS: u64 = 11_644_473_600;

/// FILETIME helper for callers: 100 ns ticks since 1601-01-01.
pub fn filetime_from_unix_millis(ms: u64) -> u64 {
    FILETIME_UNIX_OFFSET_SECS
        .saturating_mul(10_000_000)
        .saturating_add(ms.saturating_mul(10_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_reject_other_schemes() {
        let token = b"NTLMSSP\0\x01\0\0\0".to_vec();
        let header = to_header(&token);
        assert_eq!(header, "NTLM TlRMTVNTUAABAAAA");
        assert_eq!(from_header(&header), Ok(token.clone()));
        assert_eq!(from_header("ntlm   TlRMTVNTUAABAAAA "), Ok(token));
        assert!(from_header("Negotiate TlRMTVNTUAABAAAA").is_err());
        assert!(from_header("NTLM").is_err());
        assert!(from_header("NTLM !!!").is_err());
        assert!(from_header("").is_err());
    }

    #[test]
    fn filetime_counts_100ns_ticks_from_1601() {
        assert_eq!(filetime_from_unix_millis(0), 116_444_736_000_000_000);
        assert_eq!(
            filetime_from_unix_millis(1_500),
            116_444_736_000_000_000 + 15_000_000
        );
    }
}
