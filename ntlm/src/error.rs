//! The crate's one error type, [`NtlmError`]: what can go wrong decoding a header, parsing a
//! server's Type 2 on the client, or reading a user file. The acceptor never returns errors;
//! it answers with a [`crate::RejectReason`] instead.

/// Errors from the client side, the header helpers and the user file parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NtlmError {
    /// The header's scheme is not `NTLM`.
    #[error("authorization scheme is not NTLM")]
    NotNtlm,
    /// The header names the NTLM scheme but carries no token.
    #[error("NTLM header carries no token")]
    MissingToken,
    /// The token is not valid base64.
    #[error("NTLM token is not valid base64")]
    BadBase64,
    /// The bytes are not an NTLM message of the expected type, or a field points outside it.
    #[error("malformed NTLM message: {0}")]
    Malformed(&'static str),
    /// The server's Type 2 did not offer what this client requires (NTLMv2 target info).
    #[error("server challenge unsupported: {0}")]
    Unsupported(&'static str),
    /// `authenticate` was called twice, or before `negotiate`.
    #[error("NTLM client used out of order: {0}")]
    OutOfOrder(&'static str),
    /// A user file line could not be parsed (1-based line number).
    #[error("user file line {line}: {reason}")]
    UserFile {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}
