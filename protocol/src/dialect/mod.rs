//! Wire dialects: the format of the update check and its reply as data, not code.
//!
//! The Device Update Service's element names were never published, so a real pool may speak a
//! format other than the one [`crate::wire`] chose. A [`Dialect`] says, in a small versioned
//! TOML file, how a check looks (a body template with named placeholders, the method, path and
//! headers) and where a reply keeps each value (namespace-aware element/attribute paths), and
//! how "no update" looks. The built-in dialect `ucupdate` renders exactly what [`crate::wire`]
//! writes; a dialect learned from one captured exchange renders what the captured phone sent.
//! A dialect file can only place values and name paths: there are no expressions (see
//! [`template`]), and it is bounded in size.

pub mod check;
pub mod learn;
mod reply;
mod request;
pub mod template;
pub mod tree;
mod write;

use std::collections::BTreeMap;

use thiserror::Error;

use crate::identity::MacAddress;
use crate::wire::{CheckResponse, Offer};
use crate::ProtocolError;
use template::{Template, Vocabulary};
use tree::Path;

pub use reply::ReplyPaths;
pub use request::DecodeError;

/// The dialect file format this code reads (`format = 1`).
pub const FORMAT: i64 = 1;
/// Largest dialect file accepted.
pub const MAX_DIALECT_BYTES: usize = 64 * 1024;
/// The name of the built-in dialect.
pub const BUILTIN: &str = "ucupdate";
/// Request headers a dialect may never carry: credentials belong to the run, not the format.
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
];

const BUILTIN_TOML: &str = include_str!("builtin.toml");

/// Placeholders of a check request. Outside `modules`, `update_type`, `file_name`, `version`
/// and `timestamp` are the first module's (a flattened, one-module request).
pub const REQUEST_VOCABULARY: Vocabulary = Vocabulary {
    values: &[
        "device_type",
        "brand",
        "model",
        "revision",
        "locale",
        "mac",
        "serial",
        "user",
        "update_type",
        "file_name",
        "version",
        "timestamp",
    ],
    lists: &[(
        "modules",
        &["update_type", "file_name", "version", "timestamp"],
    )],
};

/// Placeholders of a reply (the stub's side). `offer` is present when there is an update.
pub const REPLY_VOCABULARY: Vocabulary = Vocabulary {
    values: &[
        "offer",
        "downloads",
        "base_url",
        "external_base_url",
        "update_type",
        "version",
        "timestamp",
        "status",
        "image_file",
        "catalog_file",
    ],
    lists: &[("files", &["kind", "file_name", "size", "sha256"])],
};

/// Why a dialect file was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DialectError {
    #[error("dialect file of {0} bytes exceeds the {MAX_DIALECT_BYTES}-byte cap")]
    TooLarge(usize),
    #[error("dialect file is not TOML: {0}")]
    Toml(String),
    #[error("dialect file format {0} is not supported (this build reads format {FORMAT})")]
    Format(i64),
    #[error("dialect key `{0}`: {1}")]
    Key(String, String),
    #[error("template: {0}")]
    Template(String),
    #[error("path `{path}`: {why}")]
    Path { path: String, why: String },
    #[error("header `{0}` carries credentials or is set by the client; it cannot be in a dialect")]
    ForbiddenHeader(String),
}

/// How the captured device spelled its MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacFormat {
    pub separator: Option<char>,
    pub upper: bool,
}

impl MacFormat {
    /// Reads a pattern such as `XX-XX-XX-XX-XX-XX`, `xx:xx:xx:xx:xx:xx` or `XXXXXXXXXXXX`.
    pub fn parse(pattern: &str) -> Result<Self, DialectError> {
        let bad = || {
            DialectError::Key(
                "request.mac_format".into(),
                format!("{pattern:?}: expected e.g. XX-XX-XX-XX-XX-XX, xx:xx:..., or XXXXXXXXXXXX"),
            )
        };
        let upper = pattern.starts_with('X');
        let digit = if upper { 'X' } else { 'x' };
        let separator = match pattern.len() {
            12 => None,
            17 => Some(pattern.chars().nth(2).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        if separator.is_some_and(|s| s != '-' && s != ':') {
            return Err(bad());
        }
        let format = MacFormat { separator, upper };
        let expected: String = format.pattern_of(digit);
        if expected != pattern {
            return Err(bad());
        }
        Ok(format)
    }

    /// The spelling of a MAC found in a capture, if `text` is one.
    pub fn of(text: &str) -> Option<Self> {
        text.parse::<MacAddress>().ok()?;
        let letters: Vec<char> = text.chars().filter(char::is_ascii_alphabetic).collect();
        let upper = !letters.iter().any(char::is_ascii_lowercase);
        let separator = (text.len() == 17).then(|| text.as_bytes()[2] as char);
        Some(MacFormat { separator, upper })
    }

    fn pattern_of(self, digit: char) -> String {
        let pair: String = [digit, digit].iter().collect();
        vec![pair; 6].join(&self.separator.map(String::from).unwrap_or_default())
    }

    pub fn pattern(self) -> String {
        self.pattern_of(if self.upper { 'X' } else { 'x' })
    }

    pub fn spell(self, mac: MacAddress) -> String {
        let parts: Vec<String> = mac
            .octets()
            .iter()
            .map(|b| {
                if self.upper {
                    format!("{b:02X}")
                } else {
                    format!("{b:02x}")
                }
            })
            .collect();
        parts.join(&self.separator.map(String::from).unwrap_or_default())
    }
}

/// The request side of a dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestForm {
    pub method: String,
    pub path: String,
    /// In the order the phone sent them; never a credential (see [`FORBIDDEN_HEADERS`]).
    pub headers: Vec<(String, String)>,
    pub mac_format: MacFormat,
    pub body: Template,
}

/// A whole dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    pub name: String,
    pub request: RequestForm,
    pub reply: ReplyPaths,
}

impl Dialect {
    /// The built-in `ucupdate` dialect (what [`crate::wire`] writes).
    pub fn builtin() -> Dialect {
        Dialect::from_toml(BUILTIN_TOML).expect("the built-in dialect is valid")
    }

    /// The built-in dialect's file text (a starting point for a hand-written dialect).
    pub fn builtin_toml() -> &'static str {
        BUILTIN_TOML
    }

    pub fn from_toml(text: &str) -> Result<Dialect, DialectError> {
        if text.len() > MAX_DIALECT_BYTES {
            return Err(DialectError::TooLarge(text.len()));
        }
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| DialectError::Toml(e.to_string()))?;
        let top = Keys::new("", &table, &["format", "name", "request", "reply"])?;
        let format = top
            .get("format")
            .and_then(toml::Value::as_integer)
            .ok_or_else(|| DialectError::Key("format".into(), "missing (use format = 1)".into()))?;
        if format != FORMAT {
            return Err(DialectError::Format(format));
        }
        let name = top.string("name")?;
        let request = top.table("request")?;
        let request = Keys::new(
            "request.",
            request,
            &["method", "path", "headers", "mac_format", "body"],
        )?;
        let method = request.string("method")?;
        if !matches!(method.as_str(), "POST" | "PUT" | "GET") {
            return Err(DialectError::Key(
                "request.method".into(),
                "one of POST, PUT, GET".into(),
            ));
        }
        let path = request.string("path")?;
        if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ' ') {
            return Err(DialectError::Key(
                "request.path".into(),
                "an absolute path without spaces".into(),
            ));
        }
        let mut headers = Vec::new();
        for pair in request
            .get("headers")
            .and_then(toml::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let pair = pair.as_array().filter(|p| p.len() == 2).ok_or_else(|| {
                DialectError::Key("request.headers".into(), "a list of [name, value]".into())
            })?;
            let (Some(k), Some(v)) = (pair[0].as_str(), pair[1].as_str()) else {
                return Err(DialectError::Key(
                    "request.headers".into(),
                    "names and values are strings".into(),
                ));
            };
            if FORBIDDEN_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(DialectError::ForbiddenHeader(k.to_owned()));
            }
            let token =
                |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            if !token(k) || v.chars().any(char::is_control) {
                return Err(DialectError::Key(
                    "request.headers".into(),
                    format!("{k:?} is not a valid header"),
                ));
            }
            headers.push((k.to_owned(), v.to_owned()));
        }
        let mac_format = MacFormat::parse(&request.string("mac_format")?)?;
        let body = Template::parse(&request.string("body")?, &REQUEST_VOCABULARY)?;
        let reply = ReplyPaths::from_table(top.table("reply")?)?;
        Ok(Dialect {
            name,
            request: RequestForm {
                method,
                path,
                headers,
                mac_format,
                body,
            },
            reply,
        })
    }

    /// Reads a reply in this dialect (the first offered update when it offers several).
    pub fn decode_reply(&self, body: &[u8]) -> Result<CheckResponse, ProtocolError> {
        self.reply.decode(body)
    }

    /// Every update a reply offers.
    pub fn decode_offers(&self, body: &[u8]) -> Result<Vec<Offer>, ProtocolError> {
        self.reply.decode_offers(body)
    }

    /// Writes a reply in this dialect (for a stub standing in for a pool of this dialect):
    /// through its reply template if it has one, else where its reply paths say.
    pub fn encode_reply(&self, response: &CheckResponse) -> String {
        self.reply.encode(response)
    }
}

/// A TOML table whose keys are checked against the ones a dialect knows (a typo is an error,
/// not a silently ignored setting).
pub(crate) struct Keys<'a> {
    prefix: &'static str,
    table: &'a toml::Table,
}

impl<'a> Keys<'a> {
    pub(crate) fn new(
        prefix: &'static str,
        table: &'a toml::Table,
        known: &[&str],
    ) -> Result<Self, DialectError> {
        if let Some(k) = table.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(DialectError::Key(
                format!("{prefix}{k}"),
                "unknown key".into(),
            ));
        }
        Ok(Keys { prefix, table })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a toml::Value> {
        self.table.get(key)
    }

    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<String>, DialectError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(DialectError::Key(
                format!("{}{key}", self.prefix),
                "must be a string".into(),
            )),
        }
    }

    pub(crate) fn string(&self, key: &str) -> Result<String, DialectError> {
        self.opt_string(key)?
            .ok_or_else(|| DialectError::Key(format!("{}{key}", self.prefix), "missing".into()))
    }

    pub(crate) fn opt_path(
        &self,
        key: &str,
        namespaces: &BTreeMap<String, String>,
    ) -> Result<Option<Path>, DialectError> {
        self.opt_string(key)?
            .map(|p| Path::parse(&p, namespaces))
            .transpose()
    }

    pub(crate) fn table(&self, key: &str) -> Result<&'a toml::Table, DialectError> {
        self.table
            .get(key)
            .and_then(toml::Value::as_table)
            .ok_or_else(|| {
                DialectError::Key(format!("{}{key}", self.prefix), "missing table".into())
            })
    }
}

#[cfg(test)]
mod tests;
