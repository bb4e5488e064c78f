//! The Device Update Service wire protocol (OCS 2007 R2, Lync 2010/2013, Skype for Business), as
//! plain types: no sockets, no clock, no async. Parse, don't validate: every type here can only
//! hold a value that is meaningful on the wire, and decoding is the only way in from bytes.
//!
//! # Layout
//! - [`error`]: the one error type, [`ProtocolError`].
//! - [`version`]: [`FirmwareVersion`], four dotted numbers, totally ordered.
//! - [`identity`]: device identity: [`DeviceType`], [`MacAddress`], [`SerialNumber`],
//!   [`PathSegment`] (a name that is safe as one path component), [`DeviceIdentity`].
//! - [`store`]: the update store layout
//!   `<Store>/<DeviceType>/<Brand>/<Model>/<Revision>/<Locale>/<Version>/<UpdateType>/`.
//! - [`url`]: the small `http(s)://host:port/path` URL type the other crates share.
//! - [`wire`]: **every wire-format choice** (element names, endpoints, content types, the
//!   "no update" form, the log-upload query): encode and decode of each message.
//! - [`dialect`]: wire dialects as data (a TOML file: request template, reply paths); the
//!   built-in `ucupdate` dialect is what [`wire`] writes.
//! - [`log_names`]: the documented names of uploaded CELog and Watson logs.
//! - [`audit`]: the request handler's daily audit log (CSV with a header, or R2's `;` form).
//! - [`catalog`]: Microsoft `.cat` catalogs (PKCS#7 SignedData around a certificate trust
//!   list of file digests): a bounded DER codec, no cryptography.
//! - [`xml`]: a bounded, tolerant XML reader (size, depth and element caps; no DTDs).
//! - `serde_impls` (feature `serde`): versions, file names, digests, rule keys and offered
//!   files as the JSON strings of their `Display` form, for the state files other crates write.
//!
//! What the vendor documents and what this project chose is listed in `docs/PROTOCOL.md`.

pub mod audit;
pub mod catalog;
pub mod dialect;
pub mod error;
mod hex;
pub mod identity;
pub mod log_names;
pub mod store;
pub mod url;
pub mod version;
pub mod wire;
pub mod xml;

#[cfg(feature = "serde")]
mod serde_impls;

pub use audit::{AuditFormat, AuditRecord, ResponseModule};
pub use error::ProtocolError;
pub use identity::{DeviceIdentity, DeviceType, FileName, MacAddress, PathSegment, SerialNumber};
pub use store::{FileKind, StoreKind, StorePath, UpdateKey, RTCONFIG_FILE};
pub use url::HttpUrl;
pub use version::FirmwareVersion;
pub use wire::{
    CheckRequest, CheckResponse, InstalledModule, LogType, LogUpload, Offer, OfferStatus,
    OfferedFile, Provisioning, Sha256Digest,
};
