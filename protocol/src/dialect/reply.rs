//! The reply side of a dialect: where each value of a check reply is, how "no update" looks,
//! and (optionally) the template a stub writes replies with (without one, it writes them from
//! the paths: [`super::write`]).

use std::collections::BTreeMap;
use std::str::FromStr;

use super::template::{Context, Template};
use super::tree::{self, Name, Node, Path};
use super::{DialectError, Keys, REPLY_VOCABULARY};
use crate::identity::{FileName, PathSegment};
use crate::store::FileKind;
use crate::wire::{CheckResponse, Offer, OfferStatus, OfferedFile, Sha256Digest};
use crate::ProtocolError;

/// What a reply that offers nothing looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoUpdate {
    /// The download count is 0 (or absent together with every update element).
    DownloadsZero,
    /// No update element at all.
    UpdateAbsent,
    /// This element is present and empty (no children, blank text).
    Empty(Path),
}

/// Paths of a reply's values. Update-relative paths start at each update element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPaths {
    pub namespaces: BTreeMap<String, String>,
    pub root: Name,
    pub downloads: Option<Path>,
    pub base_url: Path,
    pub external_base_url: Option<Path>,
    pub update: Path,
    pub update_type: Option<Path>,
    pub version: Path,
    pub timestamp: Option<Path>,
    pub status: Option<Path>,
    /// A repeated file element, with name, kind, size and digest relative to it ...
    pub file: Option<Path>,
    pub file_name: Option<Path>,
    pub file_kind: Option<Path>,
    pub file_size: Option<Path>,
    pub file_sha256: Option<Path>,
    /// ... and/or the image and signature (catalog) file names directly under the update.
    pub image_file: Option<Path>,
    pub catalog_file: Option<Path>,
    pub no_update: NoUpdate,
    pub body: Option<Template>,
}

const KEYS: &[&str] = &[
    "namespaces",
    "root",
    "downloads",
    "base_url",
    "external_base_url",
    "update",
    "update_type",
    "version",
    "timestamp",
    "status",
    "file",
    "file_name",
    "file_kind",
    "file_size",
    "file_sha256",
    "image_file",
    "catalog_file",
    "no_update",
    "body",
];

impl ReplyPaths {
    pub(crate) fn from_table(table: &toml::Table) -> Result<Self, DialectError> {
        let keys = Keys::new("reply.", table, KEYS)?;
        let mut namespaces = BTreeMap::new();
        if let Some(ns) = keys.get("namespaces") {
            let ns = ns.as_table().ok_or_else(|| {
                DialectError::Key("reply.namespaces".into(), "a table prefix = URI".into())
            })?;
            for (prefix, uri) in ns {
                let uri = uri.as_str().ok_or_else(|| {
                    DialectError::Key(format!("reply.namespaces.{prefix}"), "a URI string".into())
                })?;
                namespaces.insert(prefix.clone(), uri.to_owned());
            }
        }
        let path = |k: &str| keys.opt_path(k, &namespaces);
        let need = |k: &str| {
            path(k)?.ok_or_else(|| DialectError::Key(format!("reply.{k}"), "missing".into()))
        };
        let root = Path::parse(&keys.string("root")?, &namespaces)?;
        let [root] = <[Name; 1]>::try_from(root.steps)
            .map_err(|_| DialectError::Key("reply.root".into(), "one element name".into()))?;
        let file = path("file")?;
        let file_name = path("file_name")?;
        let image_file = path("image_file")?;
        if file.is_some() != file_name.is_some() {
            return Err(DialectError::Key(
                "reply.file".into(),
                "`file` and `file_name` go together".into(),
            ));
        }
        if file.is_none() && image_file.is_none() {
            return Err(DialectError::Key(
                "reply.file".into(),
                "either `file` + `file_name` or `image_file` is needed".into(),
            ));
        }
        let no_update = match keys.string("no_update")?.as_str() {
            "downloads-zero" => NoUpdate::DownloadsZero,
            "update-absent" => NoUpdate::UpdateAbsent,
            other => match other.strip_prefix("empty:") {
                Some(p) => NoUpdate::Empty(Path::parse(p, &namespaces)?),
                None => {
                    return Err(DialectError::Key(
                        "reply.no_update".into(),
                        "downloads-zero, update-absent or empty:<path>".into(),
                    ))
                }
            },
        };
        let downloads = path("downloads")?;
        if no_update == NoUpdate::DownloadsZero && downloads.is_none() {
            return Err(DialectError::Key(
                "reply.no_update".into(),
                "downloads-zero needs `downloads`".into(),
            ));
        }
        let body = keys
            .opt_string("body")?
            .map(|b| Template::parse(&b, &REPLY_VOCABULARY))
            .transpose()?;
        Ok(ReplyPaths {
            root,
            downloads,
            base_url: need("base_url")?,
            external_base_url: path("external_base_url")?,
            update: need("update")?,
            update_type: path("update_type")?,
            version: need("version")?,
            timestamp: path("timestamp")?,
            status: path("status")?,
            file,
            file_name,
            file_kind: path("file_kind")?,
            file_size: path("file_size")?,
            file_sha256: path("file_sha256")?,
            image_file,
            catalog_file: path("catalog_file")?,
            no_update,
            body,
            namespaces,
        })
    }

    fn read(&self, body: &[u8]) -> Result<Node, ProtocolError> {
        let root = tree::parse(body)?;
        if !self.root.matches_node(&root) {
            return Err(ProtocolError::WrongRoot {
                expected: "the dialect's reply root",
                found: root.name,
            });
        }
        Ok(root)
    }

    pub fn decode(&self, body: &[u8]) -> Result<CheckResponse, ProtocolError> {
        Ok(match self.decode_offers(body)?.into_iter().next() {
            None => CheckResponse::NoUpdate,
            Some(offer) => CheckResponse::Update(offer),
        })
    }

    /// Every offered update; empty for "no update".
    pub fn decode_offers(&self, body: &[u8]) -> Result<Vec<Offer>, ProtocolError> {
        let root = self.read(body)?;
        let downloads: Option<u64> = match self.downloads.as_ref().and_then(|p| p.value(&root)) {
            None => None,
            Some(d) => Some(d.parse().map_err(|_| {
                ProtocolError::invalid("Downloads", format!("{d:?} is not a count"))
            })?),
        };
        let updates = self.update.elements(&root);
        let none = match &self.no_update {
            NoUpdate::DownloadsZero => downloads == Some(0),
            NoUpdate::UpdateAbsent => updates.is_empty(),
            NoUpdate::Empty(p) => p
                .elements(&root)
                .iter()
                .any(|n| n.children.is_empty() && n.text.trim().is_empty()),
        };
        // `wire`'s reader also takes a reply with neither a count nor an update as "no update".
        let bare = self.no_update == NoUpdate::DownloadsZero
            && updates.is_empty()
            && downloads.is_none_or(|d| d == 0);
        if none || bare {
            return Ok(Vec::new());
        }
        if updates.is_empty() {
            // Neither form the dialect knows: never guess "no update" from a reply we do not
            // understand.
            return Err(ProtocolError::MissingField("Update"));
        }
        let base_url = text("BaseURL", self.base_url.value(&root))?
            .ok_or(ProtocolError::MissingField("BaseURL"))?;
        let external_base_url = text(
            "ExternalBaseURL",
            self.external_base_url.as_ref().and_then(|p| p.value(&root)),
        )?
        .unwrap_or_default();
        updates
            .into_iter()
            .map(|u| self.decode_update(u, &base_url, &external_base_url))
            .collect()
    }

    fn decode_update(&self, u: &Node, base: &str, external: &str) -> Result<Offer, ProtocolError> {
        let at = |p: &Option<Path>| p.as_ref().and_then(|p| p.value(u));
        let mut files = Vec::new();
        if let (Some(file), Some(name)) = (&self.file, &self.file_name) {
            for f in file.elements(u) {
                let file_name = FileName::new(
                    name.value(f)
                        .ok_or(ProtocolError::MissingField("FileName"))?,
                )?;
                let kind = match self.file_kind.as_ref().and_then(|p| p.value(f)) {
                    Some(k) => FileKind::from_wire(k)
                        .ok_or_else(|| ProtocolError::invalid("Kind", format!("{k:?}")))?,
                    None => FileKind::of(&file_name),
                };
                let size = self
                    .file_size
                    .as_ref()
                    .and_then(|p| p.value(f))
                    .map(|s| {
                        s.parse::<u64>().map_err(|_| {
                            ProtocolError::invalid("Size", format!("{s:?} is not a byte count"))
                        })
                    })
                    .transpose()?;
                let sha256 = self
                    .file_sha256
                    .as_ref()
                    .and_then(|p| p.value(f))
                    .map(Sha256Digest::from_str)
                    .transpose()?;
                files.push(OfferedFile {
                    kind,
                    file_name,
                    size,
                    sha256,
                });
            }
        }
        for (path, kind) in [
            (&self.image_file, FileKind::Image),
            (&self.catalog_file, FileKind::Catalog),
        ] {
            if let Some(name) = at(path) {
                files.push(OfferedFile {
                    kind,
                    file_name: FileName::new(name)?,
                    size: None,
                    sha256: None,
                });
            }
        }
        if files.is_empty() {
            return Err(ProtocolError::MissingField("File"));
        }
        let update_type = match at(&self.update_type) {
            Some(t) => PathSegment::new(t)?,
            None => {
                let image = files
                    .iter()
                    .find(|f| f.kind == FileKind::Image)
                    .unwrap_or(&files[0]);
                PathSegment::new(image.file_name.stem())?
            }
        };
        Ok(Offer {
            base_url: base.to_owned(),
            external_base_url: external.to_owned(),
            update_type,
            version: at(&Some(self.version.clone()))
                .ok_or(ProtocolError::MissingField("Version"))?
                .parse()?,
            timestamp: text("Timestamp", at(&self.timestamp))?,
            status: match at(&self.status) {
                Some(s) => s.parse()?,
                None => OfferStatus::Approved,
            },
            files,
        })
    }

    /// Through the reply template when the dialect has one, else through the paths alone
    /// ([`super::write`]).
    pub fn encode(&self, response: &CheckResponse) -> String {
        let Some(template) = self.body.as_ref() else {
            return self.write(response);
        };
        let mut c = Context::new();
        if let CheckResponse::Update(offer) = response {
            let find = |k: FileKind| {
                offer
                    .files
                    .iter()
                    .find(|f| f.kind == k)
                    .map(|f| f.file_name.to_string())
            };
            c.set("offer", Some(""))
                .set("downloads", Some(offer.files.len().to_string()))
                .set("base_url", Some(offer.base_url.as_str()))
                .set("external_base_url", Some(offer.external_base_url.as_str()))
                .set("update_type", Some(offer.update_type.as_str()))
                .set("version", Some(offer.version.to_string()))
                .set("timestamp", offer.timestamp.as_deref())
                .set("status", Some(offer.status.as_str()))
                .set("image_file", find(FileKind::Image))
                .set("catalog_file", find(FileKind::Catalog));
            let files = offer
                .files
                .iter()
                .map(|f| {
                    let mut fc = Context::new();
                    fc.set("kind", Some(f.kind.as_str()))
                        .set("file_name", Some(f.file_name.as_str()))
                        .set("size", f.size.map(|s| s.to_string()))
                        .set("sha256", f.sha256.map(|d| d.to_string()));
                    fc
                })
                .collect();
            c.list("files", files);
        } else {
            c.set("downloads", Some("0"));
        }
        template.render(&c)
    }
}

/// Free text (URLs, timestamps) must fit on one audit-log line, as in [`crate::wire`].
fn text(field: &'static str, value: Option<&str>) -> Result<Option<String>, ProtocolError> {
    match value {
        None => Ok(None),
        Some(v) if v.len() > 1024 => Err(ProtocolError::invalid(field, "longer than 1024 bytes")),
        Some(v) if v.chars().any(char::is_control) => Err(ProtocolError::invalid(
            field,
            "contains a control character",
        )),
        Some(v) => Ok(Some(v.to_owned())),
    }
}
