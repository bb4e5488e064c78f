//! The protocol crate's one error type. Every decoder returns it; none of them panics.

use thiserror::Error;

/// Why a message, a name or a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The body is larger than the cap for its kind of message.
    #[error("body of {len} bytes exceeds the {cap}-byte cap")]
    TooLarge { len: usize, cap: usize },
    /// The body is not valid UTF-8.
    #[error("body is not valid UTF-8 (at byte {at})")]
    BadUtf8 { at: usize },
    /// The XML is not well formed, or uses a construct this reader refuses (DTDs, entities).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The XML nests deeper, or holds more elements, than the reader allows.
    #[error("XML exceeds the {what} limit of {limit}")]
    XmlLimit { what: &'static str, limit: usize },
    /// The root element is not the one expected for this message.
    #[error("expected root element <{expected}>, found <{found}>")]
    WrongRoot {
        expected: &'static str,
        found: String,
    },
    /// A field the message cannot do without is absent or blank.
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    /// A field is present but its value is not acceptable.
    #[error("invalid `{field}`: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// A firmware version that is not four dotted numbers.
    #[error("invalid firmware version {text:?}: {reason}")]
    BadVersion { text: String, reason: &'static str },
    /// A MAC address in none of the three accepted spellings.
    #[error("invalid MAC address {0:?}: expected 12 hex digits, optionally in pairs split by '-' or ':'")]
    BadMac(String),
    /// A name that could escape the update store or is not a single path component.
    #[error("unsafe path component {text:?}: {reason}")]
    UnsafeComponent { text: String, reason: &'static str },
    /// A URL path that is not inside the update store.
    #[error("not an update store path: {0}")]
    NotStorePath(String),
    /// A URL that is not `http(s)://host[:port]/path`.
    #[error("invalid URL {text:?}: {reason}")]
    BadUrl { text: String, reason: &'static str },
    /// An audit-log line with the wrong shape.
    #[error("invalid audit-log line: {0}")]
    BadAuditLine(String),
}

impl ProtocolError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ProtocolError::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}
