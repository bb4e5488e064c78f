//! [`NetError`], the one error type of the HTTP client, and [`ErrorClass`], the coarse bucket
//! the state machine reacts to and the simulator counts by.

use std::io;
use std::net::SocketAddr;

use ucupdate_protocol::{ProtocolError, Sha256Digest};

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutPhase {
    /// Name lookup plus TCP connect.
    Connect,
    /// The TLS handshake.
    TlsHandshake,
    /// From sending a request to the end of the response head.
    ResponseHead,
    /// No body bytes for this long.
    BodyIdle,
    /// The whole download took longer than its deadline (a trickling or endless body).
    Total,
}

/// Coarse failure classes: the retry policy and the fleet report work on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorClass {
    Dns,
    Connect,
    Tls,
    Timeout,
    /// The connection broke mid-exchange (reset, early close, malformed HTTP).
    Transport,
    Http4xx,
    Http5xx,
    /// 401 without credentials, or after NTLM.
    Unauthorized,
    /// The server answered, but not with anything this client understands.
    Protocol,
    /// Downloaded bytes differ from the advertised size or SHA-256.
    HashMismatch,
    /// Local disk.
    Io,
    /// A caller mistake or a client built without what the request needs.
    Config,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 12] = [
        ErrorClass::Dns,
        ErrorClass::Connect,
        ErrorClass::Tls,
        ErrorClass::Timeout,
        ErrorClass::Transport,
        ErrorClass::Http4xx,
        ErrorClass::Http5xx,
        ErrorClass::Unauthorized,
        ErrorClass::Protocol,
        ErrorClass::HashMismatch,
        ErrorClass::Io,
        ErrorClass::Config,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Dns => "dns",
            ErrorClass::Connect => "connect",
            ErrorClass::Tls => "tls",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Transport => "transport",
            ErrorClass::Http4xx => "http4xx",
            ErrorClass::Http5xx => "http5xx",
            ErrorClass::Unauthorized => "unauthorized",
            ErrorClass::Protocol => "protocol",
            ErrorClass::HashMismatch => "hash_mismatch",
            ErrorClass::Io => "io",
            ErrorClass::Config => "config",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in the exchange a 401 came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStage {
    /// The anonymous request (no credentials were given, or the server offers no NTLM).
    Anonymous,
    /// The Type 1 (negotiate) request got no challenge.
    Negotiate,
    /// The Type 3 (authenticate) request was refused: wrong user or password.
    Authenticate,
}

/// Everything `net` can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The host name did not resolve.
    #[error("resolving {host}: {error}")]
    Dns { host: String, error: io::Error },
    /// No address accepted a TCP connection.
    #[error("connecting to {addr}: {error}")]
    Connect { addr: SocketAddr, error: io::Error },
    /// The TLS handshake failed (certificate not trusted, name mismatch, protocol error).
    #[error("TLS handshake with {host}: {error}")]
    Tls { host: String, error: io::Error },
    /// A per-request timeout ran out.
    #[error("timed out: {phase:?}")]
    Timeout { phase: TimeoutPhase },
    /// HTTP-level failure of the connection (reset, early close, bad framing).
    #[error("HTTP transport: {0}")]
    Transport(hyper::Error),
    /// A status the operation does not accept.
    #[error("HTTP status {status}")]
    Status { status: u16 },
    /// The server wants authentication and it was missing or refused.
    #[error("401 Unauthorized at {stage:?} (server offers NTLM: {ntlm_offered})")]
    Unauthorized {
        stage: AuthStage,
        ntlm_offered: bool,
    },
    /// The NTLM exchange itself failed (bad Type 2, ...).
    #[error("NTLM: {0}")]
    Ntlm(ucupdate_ntlm::NtlmError),
    /// A response body that is not a valid message.
    #[error("bad response body: {0}")]
    Body(ProtocolError),
    /// A response body over the size cap.
    #[error("response body larger than {cap} bytes")]
    TooLarge { cap: u64 },
    /// The server's answer does not follow HTTP as this client needs it (bad Content-Range...).
    #[error("unexpected response: {0}")]
    Unexpected(String),
    /// The downloaded file is not the size the offer says.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    /// The downloaded file does not hash to the offer's SHA-256.
    #[error("SHA-256 mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    /// A download stopped early; `on_disk` bytes are kept for a resume.
    #[error("download cut after {on_disk} bytes on disk: {cause}")]
    Partial { on_disk: u64, cause: Box<NetError> },
    /// A local file operation failed.
    #[error("{op} {path}: {error}")]
    Io {
        op: &'static str,
        path: String,
        error: io::Error,
    },
    /// The request cannot be made as asked (https without a TLS config, bad header value...).
    #[error("bad request setup: {0}")]
    Config(String),
}

impl NetError {
    /// The coarse class of this error (a [`NetError::Partial`] has the class of its cause).
    pub fn class(&self) -> ErrorClass {
        match self {
            NetError::Dns { .. } => ErrorClass::Dns,
            NetError::Connect { .. } => ErrorClass::Connect,
            NetError::Tls { .. } => ErrorClass::Tls,
            NetError::Timeout { .. } => ErrorClass::Timeout,
            NetError::Transport(_) => ErrorClass::Transport,
            NetError::Status { status } if *status >= 500 => ErrorClass::Http5xx,
            NetError::Status { status } if *status >= 400 => ErrorClass::Http4xx,
            NetError::Status { .. } => ErrorClass::Protocol,
            NetError::Unauthorized { .. } => ErrorClass::Unauthorized,
            NetError::Ntlm(_) => ErrorClass::Protocol,
            NetError::Body(_) | NetError::TooLarge { .. } | NetError::Unexpected(_) => {
                ErrorClass::Protocol
            }
            NetError::SizeMismatch { .. } | NetError::HashMismatch { .. } => {
                ErrorClass::HashMismatch
            }
            NetError::Partial { cause, .. } => cause.class(),
            NetError::Io { .. } => ErrorClass::Io,
            NetError::Config(_) => ErrorClass::Config,
        }
    }

    /// For a cut download: how many bytes are on disk for a resume.
    pub fn bytes_on_disk(&self) -> Option<u64> {
        match self {
            NetError::Partial { on_disk, .. } => Some(*on_disk),
            _ => None,
        }
    }

    /// The HTTP status behind this error, if a response came back.
    pub fn status(&self) -> Option<u16> {
        match self {
            NetError::Status { status } => Some(*status),
            NetError::Unauthorized { .. } => Some(401),
            NetError::Partial { cause, .. } => cause.status(),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.display().to_string();
        move |source| NetError::Io {
            op,
            path,
            error: source,
        }
    }
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<ucupdate_ntlm::NtlmError> for NetError {
    fn from(error: ucupdate_ntlm::NtlmError) -> Self {
        NetError::Ntlm(error)
    }
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<ProtocolError> for NetError {
    fn from(error: ProtocolError) -> Self {
        NetError::Body(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_status_and_partial_cause() {
        assert_eq!(
            NetError::Status { status: 503 }.class(),
            ErrorClass::Http5xx
        );
        assert_eq!(
            NetError::Status { status: 404 }.class(),
            ErrorClass::Http4xx
        );
        assert_eq!(
            NetError::Status { status: 302 }.class(),
            ErrorClass::Protocol
        );
        let cut = NetError::Partial {
            on_disk: 10,
            cause: Box::new(NetError::Timeout {
                phase: TimeoutPhase::BodyIdle,
            }),
        };
        assert_eq!(cut.class(), ErrorClass::Timeout);
        assert_eq!(cut.bytes_on_disk(), Some(10));
        let names: std::collections::HashSet<_> =
            ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorClass::ALL.len());
    }
}
