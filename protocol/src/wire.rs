//! Every wire-format choice of this project, in one module.
//!
//! The Device Update Service's XML schema is not public. What is known (endpoints, field
//! meanings, the store layout, NTLM outside the firewall) is followed; everything else is chosen
//! here and documented in `docs/PROTOCOL.md`, so that a captured real exchange can replace a
//! choice by editing this file and its fixtures alone.
//!
//! Reading is tolerant: element order is free, unknown elements and attributes are ignored, names
//! match without regard to case or namespace prefix, and a field may be an attribute or a child
//! element. Writing emits one canonical form.

use std::fmt;
use std::str::FromStr;

use crate::error::ProtocolError;
use crate::identity::{DeviceIdentity, FileName, MacAddress, PathSegment, SerialNumber};
use crate::store::FileKind;
use crate::url::{percent_decode, percent_encode};
use crate::version::FirmwareVersion;
use crate::xml::{self, Element, Limits, Writer};

/// Internal check handler (anonymous; plain HTTP on port 80 in the CX700 trace, or HTTPS 443).
pub const INTERNAL_HANDLER_PATH: &str = "/RequestHandler/ucdevice.upx";
/// External check handler (HTTPS 443 through the edge, NTLM required).
pub const EXTERNAL_HANDLER_PATH: &str = "/RequestHandlerExt/ucdevice.upx";
/// The DNS A/AAAA name a device looks up when it has never been provisioned: `ucupdates-r2.<domain>`.
pub const DISCOVERY_PREFIX: &str = "ucupdates-r2";
/// `Content-Type` of the check request and its response (our choice).
pub const CONTENT_TYPE_XML: &str = "text/xml; charset=utf-8";
/// Largest check request or response body a reader accepts.
pub const MAX_MESSAGE_BYTES: usize = Limits::MESSAGE.max_bytes;
/// Largest device log file the server accepts (the service's documented default).
pub const MAX_LOG_BYTES: u64 = 1_024_000;
/// Log file extensions the server accepts by default (lower case, without the dot).
pub const ALLOWED_LOG_EXTENSIONS: &[&str] = &[
    "dmp", "clg", "clg1", "clg2", "bak", "kdmp", "dat", "bin", "cat", "xml", "txt", "hex",
];

/// The DNS name to look up for `domain`, or `None` for an empty domain.
pub fn discovery_name(domain: &str) -> Option<String> {
    let domain = domain.trim().trim_matches('.');
    (!domain.is_empty()).then(|| format!("{DISCOVERY_PREFIX}.{domain}"))
}

// ----------------------------------------------------------------------------------------------
// Update check request
// ----------------------------------------------------------------------------------------------

const REQUEST_ROOT: &str = "DeviceUpdateRequest";

/// One module (firmware component) a device runs: what the audit log records per module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledModule {
    /// The update type this module is updated by (`CPE`, `RoundTable`, ...). On the wire it is
    /// optional and defaults to the file name's stem (`CPE.nbt` -> `CPE`).
    pub update_type: PathSegment,
    pub file_name: FileName,
    pub version: FirmwareVersion,
    /// As the device reports it; opaque to the server.
    pub timestamp: Option<String>,
}

/// The body a device POSTs to the check handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    pub identity: DeviceIdentity,
    /// At least one module: the version a device runs is what the check is about.
    pub modules: Vec<InstalledModule>,
    /// The last signed-in user (a SIP URI or `DOMAIN\user`), if any.
    pub user: Option<String>,
}

impl CheckRequest {
    /// The module a rule with `update_type` applies to.
    pub fn module(&self, update_type: &PathSegment) -> Option<&InstalledModule> {
        self.modules.iter().find(|m| {
            m.update_type
                .as_str()
                .eq_ignore_ascii_case(update_type.as_str())
        })
    }

    pub fn encode(&self) -> String {
        let id = &self.identity;
        let mut w = Writer::new();
        w.open(REQUEST_ROOT, &[]);
        w.leaf("DeviceType", id.device_type.as_str());
        w.leaf("Brand", id.brand.as_str());
        w.leaf("Model", id.model.as_str());
        w.leaf("Revision", id.revision.as_str());
        w.leaf("Locale", id.locale.as_str());
        w.leaf(
            "MacAddress",
            &id.mac.map(|m| m.to_string()).unwrap_or_default(),
        );
        w.leaf(
            "SerialNumber",
            id.serial
                .as_ref()
                .map(SerialNumber::as_str)
                .unwrap_or_default(),
        );
        if let Some(user) = &self.user {
            w.leaf("LastSignedInUser", user);
        }
        w.open("Modules", &[]);
        for m in &self.modules {
            let version = m.version.to_string();
            let mut attrs = vec![
                ("UpdateType", m.update_type.as_str()),
                ("FileName", m.file_name.as_str()),
                ("Version", version.as_str()),
            ];
            if let Some(ts) = &m.timestamp {
                attrs.push(("Timestamp", ts.as_str()));
            }
            w.empty("Module", &attrs);
        }
        w.close();
        w.finish()
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let doc = xml::parse(body, Limits::MESSAGE)?;
        let root = doc.root();
        expect_root(root, REQUEST_ROOT)?;
        let identity = DeviceIdentity {
            device_type: required(root, "DeviceType")?.parse()?,
            // The audit log calls the maker Vendor, the rules Brand (OCS R2's rules class has
            // both): either is read, Brand first when a body carries both.
            brand: PathSegment::new(
                root.field("Brand")
                    .or_else(|| root.field("Vendor"))
                    .ok_or(ProtocolError::MissingField("Brand"))?,
            )?,
            model: segment(root, "Model")?,
            revision: segment(root, "Revision")?,
            locale: segment(root, "Locale")?,
            mac: root
                .field("MacAddress")
                .map(MacAddress::from_str)
                .transpose()?,
            serial: root
                .field("SerialNumber")
                .map(SerialNumber::from_str)
                .transpose()?,
        };
        let user = root
            .field("LastSignedInUser")
            .map(checked_text("LastSignedInUser"))
            .transpose()?;
        let list = root
            .child("Modules")
            .ok_or(ProtocolError::MissingField("Modules"))?;
        let modules = list
            .children_named("Module")
            .map(decode_module)
            .collect::<Result<Vec<_>, _>>()?;
        if modules.is_empty() {
            return Err(ProtocolError::MissingField("Module"));
        }
        Ok(CheckRequest {
            identity,
            modules,
            user,
        })
    }
}

fn decode_module(el: Element<'_>) -> Result<InstalledModule, ProtocolError> {
    let file_name = FileName::new(required(el, "FileName")?)?;
    let update_type = match el.field("UpdateType") {
        Some(t) => PathSegment::new(t)?,
        None => PathSegment::new(file_name.stem())?,
    };
    Ok(InstalledModule {
        update_type,
        file_name,
        version: required(el, "Version")?.parse()?,
        timestamp: el
            .field("Timestamp")
            .map(checked_text("Timestamp"))
            .transpose()?,
    })
}

// ----------------------------------------------------------------------------------------------
// Update check response
// ----------------------------------------------------------------------------------------------

const RESPONSE_ROOT: &str = "DeviceUpdateResponse";

/// Whether an offered version comes from the rule's approved, pending or restore slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OfferStatus {
    Approved,
    /// Offered to test devices only.
    Pending,
    /// A rollback to the rule's restore version.
    Restore,
}

impl OfferStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            OfferStatus::Approved => "approved",
            OfferStatus::Pending => "pending",
            OfferStatus::Restore => "restore",
        }
    }
}

impl FromStr for OfferStatus {
    type Err = ProtocolError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            OfferStatus::Approved,
            OfferStatus::Pending,
            OfferStatus::Restore,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| ProtocolError::invalid("Status", format!("{text:?}")))
    }
}

/// A SHA-256 digest (our documented extension to the reply; the device relies on it to verify
/// a download before installing it).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl FromStr for Sha256Digest {
    type Err = ProtocolError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(ProtocolError::invalid("SHA256", "expected 64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            out[i] = crate::hex::byte(pair)
                .ok_or_else(|| ProtocolError::invalid("SHA256", "not hex"))?;
        }
        Ok(Sha256Digest(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

/// One file of an offered update.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OfferedFile {
    pub kind: FileKind,
    pub file_name: FileName,
    /// Our extension; absent from a real service's reply.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub size: Option<u64>,
    /// Our extension; absent from a real service's reply.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub sha256: Option<Sha256Digest>,
}

/// An update the server offers: where its files are and what they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The version directory on the internal share (`.../DeviceUpdateFiles_Int/.../<UpdateType>`).
    pub base_url: String,
    /// The same directory on the external share; blank when the server has no external URL.
    pub external_base_url: String,
    pub update_type: PathSegment,
    pub version: FirmwareVersion,
    pub timestamp: Option<String>,
    pub status: OfferStatus,
    /// At least one file; the image is the one with [`FileKind::Image`].
    pub files: Vec<OfferedFile>,
}

impl Offer {
    pub fn image(&self) -> Option<&OfferedFile> {
        self.files.iter().find(|f| f.kind == FileKind::Image)
    }
}

/// The reply to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResponse {
    /// Nothing to do for the version the device runs ("downloads=0").
    NoUpdate,
    Update(Offer),
}

impl CheckResponse {
    /// The one form this project emits. "No update" is `<Downloads>0</Downloads>` with blank
    /// `BaseURL` and `ExternalBaseURL`, which satisfies both readings of the documentation.
    pub fn encode(&self) -> String {
        let mut w = Writer::new();
        w.open(RESPONSE_ROOT, &[]);
        match self {
            CheckResponse::NoUpdate => {
                w.leaf("Downloads", "0");
                w.leaf("BaseURL", "");
                w.leaf("ExternalBaseURL", "");
            }
            CheckResponse::Update(offer) => {
                w.leaf("Downloads", &offer.files.len().to_string());
                w.leaf("BaseURL", &offer.base_url);
                w.leaf("ExternalBaseURL", &offer.external_base_url);
                let version = offer.version.to_string();
                let mut attrs = vec![
                    ("UpdateType", offer.update_type.as_str()),
                    ("Version", version.as_str()),
                    ("Status", offer.status.as_str()),
                ];
                if let Some(ts) = &offer.timestamp {
                    attrs.push(("Timestamp", ts.as_str()));
                }
                w.open("Update", &attrs);
                for file in &offer.files {
                    let size = file.size.map(|s| s.to_string());
                    let sha = file.sha256.map(|d| d.to_string());
                    let mut attrs = vec![
                        ("Kind", file.kind.as_str()),
                        ("FileName", file.file_name.as_str()),
                    ];
                    if let Some(size) = &size {
                        attrs.push(("Size", size));
                    }
                    if let Some(sha) = &sha {
                        attrs.push(("SHA256", sha));
                    }
                    w.empty("File", &attrs);
                }
                w.close();
            }
        }
        w.finish()
    }

    /// Reads either "no update" form (`Downloads` = 0, or no `Update` with blank URLs) and
    /// offers. `Downloads` may be an element or an attribute of the root.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let doc = xml::parse(body, Limits::MESSAGE)?;
        let root = doc.root();
        expect_root(root, RESPONSE_ROOT)?;
        let downloads: Option<u64> = root
            .field("Downloads")
            .map(|d| {
                d.parse().map_err(|_| {
                    ProtocolError::invalid("Downloads", format!("{d:?} is not a count"))
                })
            })
            .transpose()?;
        let update = root.child("Update");
        if downloads == Some(0) {
            return Ok(CheckResponse::NoUpdate);
        }
        let Some(update) = update else {
            if downloads.is_none()
                && root.field("BaseURL").is_none()
                && root.field("ExternalBaseURL").is_none()
            {
                return Ok(CheckResponse::NoUpdate);
            }
            return Err(ProtocolError::MissingField("Update"));
        };
        let base_url = checked_text("BaseURL")(required(root, "BaseURL")?)?;
        let external_base_url = root
            .field("ExternalBaseURL")
            .map(checked_text("ExternalBaseURL"))
            .transpose()?
            .unwrap_or_default();
        let files = update
            .children_named("File")
            .map(decode_file)
            .collect::<Result<Vec<_>, _>>()?;
        if files.is_empty() {
            return Err(ProtocolError::MissingField("File"));
        }
        let status = match update.field("Status") {
            Some(s) => s.parse()?,
            None => OfferStatus::Approved,
        };
        Ok(CheckResponse::Update(Offer {
            base_url,
            external_base_url,
            update_type: segment(update, "UpdateType")?,
            version: required(update, "Version")?.parse()?,
            timestamp: update
                .field("Timestamp")
                .map(checked_text("Timestamp"))
                .transpose()?,
            status,
            files,
        }))
    }
}

fn decode_file(el: Element<'_>) -> Result<OfferedFile, ProtocolError> {
    let file_name = FileName::new(required(el, "FileName")?)?;
    let kind = match el.field("Kind") {
        Some(k) => FileKind::from_wire(k)
            .ok_or_else(|| ProtocolError::invalid("Kind", format!("{k:?}")))?,
        None => FileKind::of(&file_name),
    };
    let size = el
        .field("Size")
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| ProtocolError::invalid("Size", format!("{s:?} is not a byte count")))
        })
        .transpose()?;
    let sha256 = el.field("SHA256").map(Sha256Digest::from_str).transpose()?;
    Ok(OfferedFile {
        kind,
        file_name,
        size,
        sha256,
    })
}

// ----------------------------------------------------------------------------------------------
// In-band provisioning (what the pool sends at sign-in)
// ----------------------------------------------------------------------------------------------

/// The update-service fields of in-band provisioning, in the `provisionGroup` /
/// `propertyEntryList` / `property name=...` shape that in-band provisioning uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provisioning {
    pub enabled: bool,
    pub internal_url: Option<String>,
    pub external_url: Option<String>,
}

impl Provisioning {
    pub fn encode(&self) -> String {
        let mut w = Writer::new();
        w.open("provisionGroup", &[("name", "ServerConfiguration")]);
        w.open("propertyEntryList", &[]);
        let enabled = if self.enabled { "true" } else { "false" };
        w.leaf_with("property", &[("name", "updatesServerEnabled")], enabled);
        if let Some(url) = &self.internal_url {
            w.leaf_with("property", &[("name", "updatesServerInternalUrl")], url);
        }
        if let Some(url) = &self.external_url {
            w.leaf_with("property", &[("name", "updatesServerExternalUrl")], url);
        }
        w.finish()
    }

    /// Reads the three fields from anywhere in the document (other properties are ignored).
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let doc = xml::parse(body, Limits::MESSAGE)?;
        let mut out = Provisioning::default();
        let mut seen_enabled = false;
        let mut stack = vec![doc.root()];
        while let Some(el) = stack.pop() {
            stack.extend(el.children());
            if !el.is("property") {
                continue;
            }
            let value = el.text().trim();
            match el.attr("name") {
                Some(n) if n.eq_ignore_ascii_case("updatesServerEnabled") => {
                    seen_enabled = true;
                    out.enabled = match value.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(ProtocolError::invalid("updatesServerEnabled", value)),
                    };
                }
                Some(n)
                    if n.eq_ignore_ascii_case("updatesServerInternalUrl") && !value.is_empty() =>
                {
                    out.internal_url = Some(checked_url("updatesServerInternalUrl", value)?);
                }
                Some(n)
                    if n.eq_ignore_ascii_case("updatesServerExternalUrl") && !value.is_empty() =>
                {
                    out.external_url = Some(checked_url("updatesServerExternalUrl", value)?);
                }
                _ => {}
            }
        }
        if !seen_enabled {
            return Err(ProtocolError::MissingField("updatesServerEnabled"));
        }
        Ok(out)
    }
}

fn checked_url(field: &'static str, value: &str) -> Result<String, ProtocolError> {
    value
        .parse::<crate::url::HttpUrl>()
        .map_err(|e| ProtocolError::invalid(field, e.to_string()))?;
    Ok(value.to_owned())
}

// ----------------------------------------------------------------------------------------------
// Device log upload
// ----------------------------------------------------------------------------------------------

/// The kinds of device log the service accepts by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogType {
    CeLog,
    Watson,
    /// A device's configuration dump (`ValidLogFileTypes` lists it; no documented file name).
    Config,
    /// A diagnostic log (`ValidLogFileTypes` lists it; no documented file name).
    Diaglog,
}

impl LogType {
    pub const fn as_str(self) -> &'static str {
        match self {
            LogType::CeLog => "CELog",
            LogType::Watson => "Watson",
            LogType::Config => "Config",
            LogType::Diaglog => "Diaglog",
        }
    }

    /// Every type, in `ValidLogFileTypes`' documented order.
    pub const ALL: [LogType; 4] = [
        LogType::Watson,
        LogType::Config,
        LogType::Diaglog,
        LogType::CeLog,
    ];
}

impl FromStr for LogType {
    type Err = ProtocolError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        LogType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                ProtocolError::invalid(
                    "type",
                    format!("{text:?}: expected Watson, Config, Diaglog or CELog"),
                )
            })
    }
}

/// A device log upload (our choice of form, the real one is not public):
/// `POST <check handler>?action=logupload&type=CELog&file=<name>&device=<MAC or serial>` with
/// the raw file as an `application/octet-stream` body of at most [`MAX_LOG_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogUpload {
    pub log_type: LogType,
    /// Its extension is one of [`ALLOWED_LOG_EXTENSIONS`].
    pub file_name: FileName,
    /// The MAC address (canonical form) or serial number that names the device's log folder.
    pub device: PathSegment,
}

impl LogUpload {
    pub fn new(
        log_type: LogType,
        file_name: FileName,
        device: PathSegment,
    ) -> Result<Self, ProtocolError> {
        let allowed = file_name
            .extension()
            .is_some_and(|e| ALLOWED_LOG_EXTENSIONS.contains(&e.as_str()));
        if !allowed {
            return Err(ProtocolError::invalid(
                "file",
                format!("{file_name}: extension not allowed"),
            ));
        }
        Ok(LogUpload {
            log_type,
            file_name,
            device,
        })
    }

    /// The query string (without `?`).
    pub fn to_query(&self) -> String {
        format!(
            "action=logupload&type={}&file={}&device={}",
            self.log_type.as_str(),
            percent_encode(self.file_name.as_str()),
            percent_encode(self.device.as_str())
        )
    }

    /// Reads a query string; `Ok(None)` when it is not a log upload at all.
    pub fn from_query(query: &str) -> Result<Option<Self>, ProtocolError> {
        let mut action = None;
        let (mut log_type, mut file, mut device) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)
                .ok_or_else(|| ProtocolError::invalid("query", "bad percent escape"))?;
            match key.to_ascii_lowercase().as_str() {
                "action" => action = Some(value),
                "type" => log_type = Some(value),
                "file" => file = Some(value),
                "device" => device = Some(value),
                _ => {}
            }
        }
        if !action.is_some_and(|a| a.eq_ignore_ascii_case("logupload")) {
            return Ok(None);
        }
        let log_type = log_type
            .ok_or(ProtocolError::MissingField("type"))?
            .parse()?;
        let file_name = FileName::new(&file.ok_or(ProtocolError::MissingField("file"))?)?;
        let device_text = device.ok_or(ProtocolError::MissingField("device"))?;
        // A MAC in any spelling names the same folder.
        let device = match device_text.parse::<MacAddress>() {
            Ok(mac) => PathSegment::new(&mac.to_string())?,
            Err(_) => PathSegment::new(device_text.parse::<SerialNumber>()?.as_str())?,
        };
        LogUpload::new(log_type, file_name, device).map(Some)
    }

    /// Checks a body length against the cap.
    pub fn check_size(len: u64) -> Result<(), ProtocolError> {
        if len > MAX_LOG_BYTES {
            return Err(ProtocolError::TooLarge {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                cap: MAX_LOG_BYTES as usize,
            });
        }
        Ok(())
    }
}

// ----------------------------------------------------------------------------------------------
// Shared field helpers
// ----------------------------------------------------------------------------------------------

fn expect_root(root: Element<'_>, expected: &'static str) -> Result<(), ProtocolError> {
    if root.is(expected) {
        Ok(())
    } else {
        Err(ProtocolError::WrongRoot {
            expected,
            found: root.name().to_owned(),
        })
    }
}

fn required<'d>(el: Element<'d>, name: &'static str) -> Result<&'d str, ProtocolError> {
    el.field(name).ok_or(ProtocolError::MissingField(name))
}

fn segment(el: Element<'_>, name: &'static str) -> Result<PathSegment, ProtocolError> {
    PathSegment::new(required(el, name)?)
}

/// Free text fields (users, timestamps, URLs) must fit on one audit-log line.
pub(crate) fn checked_text(field: &'static str) -> impl Fn(&str) -> Result<String, ProtocolError> {
    move |value| {
        if value.len() > 1024 {
            return Err(ProtocolError::invalid(field, "longer than 1024 bytes"));
        }
        if crate::identity::has_control(value) {
            return Err(ProtocolError::invalid(
                field,
                "contains a control character",
            ));
        }
        Ok(value.to_owned())
    }
}
