//! The request side of a dialect, both ways: a device's check rendered through the request
//! template ([`Dialect::encode_request`], what the agent and the simulator send), and a check
//! read back through the same template ([`Dialect::decode_request`], what a stub standing in
//! for a pool of the dialect reads, and what `dialect check` compares). One place, so the two
//! cannot drift apart.

use std::collections::BTreeMap;

use super::template::{Captured, Context, MatchError};
use super::Dialect;
use crate::identity::{DeviceIdentity, FileName, MacAddress, PathSegment, SerialNumber};
use crate::wire::{checked_text, CheckRequest, InstalledModule};
use crate::xml::{self, Limits};
use crate::ProtocolError;

/// The list placeholder holding the modules.
const MODULES: &str = "modules";
/// The names a module item has (outside an item they are the first module's).
const MODULE_NAMES: &[&str] = &["update_type", "file_name", "version", "timestamp"];

/// Why a body is not a check in a dialect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("not a check this project reads: {0}")]
    Message(ProtocolError),
    #[error("the check does not fit the dialect's template: {0}")]
    Template(#[from] MatchError),
    #[error("`{0}` has two different values in the check")]
    Conflict(String),
    #[error("the check has no module (no {{{{version}}}} was read)")]
    NoModule,
    #[error("the value of `{0}` is not acceptable: {1}")]
    Value(String, ProtocolError),
}

/// The values of a check read through a template, unescaped and trimmed (blank is absent,
/// as `wire` reads an empty element).
#[derive(Debug, Default)]
struct Values(BTreeMap<String, String>);

impl Values {
    fn put(&mut self, name: &str, raw: &str) -> Result<(), DecodeError> {
        let value = quick_xml::escape::unescape(raw)
            .map_err(|e| DecodeError::Value(name.to_owned(), ProtocolError::Xml(e.to_string())))?;
        let value = value.trim();
        if value.is_empty() {
            return Ok(());
        }
        match self.0.get(name) {
            Some(seen) if seen != value => Err(DecodeError::Conflict(name.to_owned())),
            Some(_) => Ok(()),
            None => {
                self.0.insert(name.to_owned(), value.to_owned());
                Ok(())
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

fn bad(name: &str) -> impl Fn(ProtocolError) -> DecodeError + '_ {
    move |e| DecodeError::Value(name.to_owned(), e)
}

impl Dialect {
    /// The check body a device with `request` sends in this dialect.
    pub fn encode_request(&self, request: &CheckRequest) -> String {
        self.request.body.render(&self.request_context(request))
    }

    /// The values a check request fills in.
    pub fn request_context(&self, request: &CheckRequest) -> Context {
        let id = &request.identity;
        let mut c = Context::new();
        c.set("device_type", Some(id.device_type.as_str()))
            .set("brand", Some(id.brand.as_str()))
            .set("model", Some(id.model.as_str()))
            .set("revision", Some(id.revision.as_str()))
            .set("locale", Some(id.locale.as_str()))
            .set(
                "mac",
                Some(
                    id.mac
                        .map(|m| self.request.mac_format.spell(m))
                        .unwrap_or_default(),
                ),
            )
            .set(
                "serial",
                Some(
                    id.serial
                        .as_ref()
                        .map(SerialNumber::as_str)
                        .unwrap_or_default(),
                ),
            )
            .set("user", request.user.as_deref());
        let module = |m: &InstalledModule| {
            let mut mc = Context::new();
            mc.set("update_type", Some(m.update_type.as_str()))
                .set("file_name", Some(m.file_name.as_str()))
                .set("version", Some(m.version.to_string()))
                .set("timestamp", m.timestamp.as_deref());
            mc
        };
        if let Some(first) = request.modules.first() {
            c.set("update_type", Some(first.update_type.as_str()))
                .set("file_name", Some(first.file_name.as_str()))
                .set("version", Some(first.version.to_string()))
                .set("timestamp", first.timestamp.as_deref());
        }
        c.list(MODULES, request.modules.iter().map(module).collect());
        c
    }

    /// Reads a check sent in this dialect: the body must be XML within the caps every message
    /// has ([`crate::xml::parse`]), fit the request template byte for byte outside the
    /// placeholders, and carry valid values (the same checks as [`CheckRequest::decode`]).
    pub fn decode_request(&self, body: &[u8]) -> Result<CheckRequest, DecodeError> {
        xml::parse(body, Limits::MESSAGE).map_err(DecodeError::Message)?;
        let text = std::str::from_utf8(body).map_err(|e| {
            DecodeError::Message(ProtocolError::BadUtf8 {
                at: e.valid_up_to(),
            })
        })?;
        let captured = self.request.body.read(text)?;
        self.request_from(&captured)
    }

    /// The check `captured` (read through this dialect's request template) describes. A
    /// placeholder the template does not have takes the value the learner assumes for it
    /// (UCPhone, brand and model `Unknown`, revision `A`, locale `ENU`, module `CPE.nbt`).
    pub fn request_from(&self, captured: &Captured) -> Result<CheckRequest, DecodeError> {
        let mut top = Values::default();
        for (name, raw) in &captured.values {
            top.put(name, raw)?;
        }
        let mut items = Vec::new();
        for (list, found) in &captured.lists {
            if list != MODULES {
                continue;
            }
            for item in found {
                let mut own = Values::default();
                for (name, raw) in item {
                    if MODULE_NAMES.contains(&name.as_str()) {
                        own.put(name, raw)?;
                    } else {
                        top.put(name, raw)?;
                    }
                }
                items.push(own);
            }
        }
        let listed = captured.lists.iter().any(|(l, _)| l == MODULES);
        let mut modules = Vec::new();
        if listed {
            for item in &items {
                modules.push(module(item)?);
            }
            // Outside the list the same names are the first module's: they must agree.
            if let Some(first) = items.first() {
                for name in MODULE_NAMES {
                    if let (Some(a), Some(b)) = (top.get(name), first.get(name)) {
                        if a != b {
                            return Err(DecodeError::Conflict((*name).to_owned()));
                        }
                    }
                }
            }
        }
        if modules.is_empty() {
            if top.get("version").is_none() {
                return Err(DecodeError::NoModule);
            }
            modules.push(module(&top)?);
        }
        let segment = |name: &str, default: &str| {
            PathSegment::new(top.get(name).unwrap_or(default)).map_err(bad(name))
        };
        let identity = DeviceIdentity {
            device_type: top
                .get("device_type")
                .unwrap_or("UCPhone")
                .parse()
                .map_err(bad("device_type"))?,
            brand: segment("brand", "Unknown")?,
            model: segment("model", "Unknown")?,
            revision: segment("revision", "A")?,
            locale: segment("locale", "ENU")?,
            mac: top
                .get("mac")
                .map(str::parse::<MacAddress>)
                .transpose()
                .map_err(bad("mac"))?,
            serial: top
                .get("serial")
                .map(str::parse)
                .transpose()
                .map_err(bad("serial"))?,
        };
        Ok(CheckRequest {
            identity,
            modules,
            user: top
                .get("user")
                .map(checked_text("LastSignedInUser"))
                .transpose()
                .map_err(bad("user"))?,
        })
    }
}

fn module(values: &Values) -> Result<InstalledModule, DecodeError> {
    let file_name =
        FileName::new(values.get("file_name").unwrap_or("CPE.nbt")).map_err(bad("file_name"))?;
    let update_type = PathSegment::new(values.get("update_type").unwrap_or(file_name.stem()))
        .map_err(bad("update_type"))?;
    Ok(InstalledModule {
        update_type,
        file_name,
        version: values
            .get("version")
            .ok_or(DecodeError::NoModule)?
            .parse()
            .map_err(bad("version"))?,
        timestamp: values
            .get("timestamp")
            .map(checked_text("Timestamp"))
            .transpose()
            .map_err(bad("timestamp"))?,
    })
}
