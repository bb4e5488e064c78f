//! The reply half of learning: where a captured offer keeps its values, as dialect paths.
//!
//! The offer's version is the four-part version (the BaseURL's version directory when there is
//! one); the element holding it is the update; the file names under it are either a repeated
//! file element or named image and signature elements. Prefixes are the document's own.

use std::collections::BTreeMap;

use super::super::tree::{self, Node};
use super::{looks_like_timestamp, toml_string, LearnError};
use crate::version::FirmwareVersion;

pub struct LearnedReply {
    /// The `[reply]` keys, as TOML lines.
    pub toml: String,
    /// `<type>/<brand>/<model>/<rev>/<locale>/<version>/<update type>` from the BaseURL.
    pub store_segments: Option<Vec<String>>,
    pub file_names: Vec<String>,
    pub notes: Vec<String>,
}

struct Value<'a> {
    chain: Vec<&'a Node>,
    attr: Option<(Option<String>, String)>,
    value: String,
}

impl Value<'_> {
    fn field(&self) -> &str {
        match &self.attr {
            Some((_, a)) => a,
            None => &self.chain.last().expect("an element").name,
        }
    }
}

fn collect<'a>(node: &'a Node, chain: &mut Vec<&'a Node>, out: &mut Vec<Value<'a>>) {
    chain.push(node);
    for (ns, local, value) in &node.attrs {
        out.push(Value {
            chain: chain.clone(),
            attr: Some((ns.clone(), local.clone())),
            value: value.trim().to_owned(),
        });
    }
    if node.children.is_empty() {
        out.push(Value {
            chain: chain.clone(),
            attr: None,
            value: node.text.trim().to_owned(),
        });
    }
    for child in &node.children {
        collect(child, chain, out);
    }
    chain.pop();
}

/// The document's own prefixes (`xmlns:p="uri"`), by URI; a default namespace gets `d`.
fn prefixes(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (at, _) in text.match_indices("xmlns") {
        let rest = &text[at + 5..];
        let (prefix, rest) = match rest.strip_prefix(':') {
            Some(r) => match r.find('=') {
                Some(eq) => (r[..eq].trim().to_owned(), &r[eq + 1..]),
                None => continue,
            },
            None => match rest.trim_start().strip_prefix('=') {
                Some(r) => ("d".to_owned(), r),
                None => continue,
            },
        };
        let rest = rest.trim_start();
        let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        if let Some(end) = rest[1..].find(quote) {
            out.entry(rest[1..1 + end].to_owned()).or_insert(prefix);
        }
    }
    out
}

struct Namer<'a> {
    prefixes: &'a BTreeMap<String, String>,
}

impl Namer<'_> {
    fn step(&self, ns: Option<&str>, local: &str) -> String {
        match ns.and_then(|n| self.prefixes.get(n)) {
            Some(p) => format!("{p}:{local}"),
            None => local.to_owned(),
        }
    }

    /// The path of `v` from `chain[from]` (exclusive).
    fn path(&self, v: &Value<'_>, from: usize) -> String {
        let mut steps: Vec<String> = v.chain[from + 1..]
            .iter()
            .map(|n| self.step(n.ns.as_deref(), &n.name))
            .collect();
        if let Some((ns, a)) = &v.attr {
            steps.push(format!("@{}", self.step(ns.as_deref(), a)));
        }
        if steps.is_empty() {
            ".".to_owned()
        } else {
            steps.join("/")
        }
    }
}

pub fn learn(body: &[u8]) -> Result<LearnedReply, LearnError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(LearnError::Missing(
            "the capture holds no reply to the check (was the capture stopped too early?)".into(),
        ));
    }
    let root = tree::parse(body).map_err(|e| LearnError::ReplyNotXml(e.to_string()))?;
    let text = String::from_utf8_lossy(body);
    let prefixes = prefixes(&text);
    let namer = Namer {
        prefixes: &prefixes,
    };
    let mut values = Vec::new();
    collect(&root, &mut Vec::new(), &mut values);
    let mut notes = Vec::new();

    let is_url = |v: &str| v.starts_with("http://") || v.starts_with("https://");
    let base = values
        .iter()
        .filter(|v| is_url(&v.value))
        .max_by_key(|v| v.value.contains("_Int/"))
        .ok_or_else(no_offer)?;
    let store_segments = store_segments(&base.value);
    if store_segments.is_none() {
        notes.push(format!(
            "the BaseURL {} is not an update store path: identity is recognised by field names only",
            base.value
        ));
    }
    let external = values.iter().find(|v| {
        !std::ptr::eq(*v, base)
            && (v.field().to_ascii_lowercase().contains("ext") || v.value.contains("_Ext/"))
    });
    let versions: Vec<&Value> = values
        .iter()
        .filter(|v| v.value.parse::<FirmwareVersion>().is_ok())
        .collect();
    let version = versions
        .iter()
        .find(|v| store_segments.as_ref().is_some_and(|s| s[5] == v.value))
        .or(versions.first())
        .ok_or_else(no_offer)?;
    // The update is the element holding the version (attribute) or its parent (child text).
    let update_depth = if version.attr.is_some() {
        version.chain.len() - 1
    } else {
        version.chain.len().saturating_sub(2)
    };
    let update = version.chain[update_depth];
    let under: Vec<&Value> = values
        .iter()
        .filter(|v| v.chain.len() > update_depth && std::ptr::eq(v.chain[update_depth], update))
        .collect();
    let file_like = |v: &&Value| {
        !is_url(&v.value)
            && v.value.contains('.')
            && v.value.parse::<FirmwareVersion>().is_err()
            && crate::identity::FileName::new(&v.value).is_ok_and(|f| {
                f.extension()
                    .is_some_and(|e| e.chars().all(|c| c.is_ascii_alphanumeric()))
            })
    };
    let files: Vec<&Value> = under.iter().copied().filter(file_like).collect();
    if files.is_empty() {
        return Err(LearnError::Missing(
            "the captured offer names no file (image or catalog) that could be recognised".into(),
        ));
    }
    let mut lines = vec![];
    if !prefixes.is_empty() {
        let ns = prefixes
            .iter()
            .map(|(uri, p)| format!("{p} = {}", toml_string(uri)))
            .collect::<Vec<_>>()
            .join(", ");
        lines.push(format!("namespaces = {{ {ns} }}"));
    }
    let mut set = |k: &str, v: String| lines.push(format!("{k} = {}", toml_string(&v)));
    set("root", namer.step(root.ns.as_deref(), &root.name));
    let downloads = values.iter().find(|v| {
        let f = v.field().to_ascii_lowercase();
        (f.contains("download") || f.contains("count")) && v.value.parse::<u64>().is_ok()
    });
    if let Some(d) = downloads {
        set("downloads", namer.path(d, 0));
    }
    set("base_url", namer.path(base, 0));
    if let Some(e) = external {
        set("external_base_url", namer.path(e, 0));
    }
    set(
        "update",
        namer.path(
            &Value {
                chain: version.chain[..=update_depth].to_vec(),
                attr: None,
                value: String::new(),
            },
            0,
        ),
    );
    let rel = |v: &Value| namer.path(v, update_depth);
    if let Some(segments) = &store_segments {
        if let Some(t) = under
            .iter()
            .find(|v| v.value == segments[6] && !file_like(v))
        {
            set("update_type", rel(t));
        }
    }
    set("version", rel(version));
    if let Some(t) = under.iter().find(|v| looks_like_timestamp(&v.value)) {
        set("timestamp", rel(t));
    }
    if let Some(s) = under.iter().find(|v| {
        ["approved", "pending", "restore"].contains(&v.value.to_ascii_lowercase().as_str())
    }) {
        set("status", rel(s));
    }
    // A repeated file element: two file names in same-named sibling elements, same field.
    let repeated = files.iter().any(|a| {
        files.iter().any(|b| {
            !std::ptr::eq(*a, *b)
                && a.chain.len() == b.chain.len()
                && a.field() == b.field()
                && a.attr.is_some() == b.attr.is_some()
                && !std::ptr::eq(*a.chain.last().unwrap(), *b.chain.last().unwrap())
                && a.chain.last().unwrap().name == b.chain.last().unwrap().name
        })
    });
    if repeated {
        let first = files[0];
        let file_depth = if first.attr.is_some() {
            first.chain.len() - 1
        } else {
            first.chain.len() - 2
        };
        let file_el = Value {
            chain: first.chain[..=file_depth].to_vec(),
            attr: None,
            value: String::new(),
        };
        set("file", rel(&file_el));
        set("file_name", namer.path(first, file_depth));
        let in_file = |v: &&&Value| {
            v.chain.len() > file_depth && std::ptr::eq(v.chain[file_depth], first.chain[file_depth])
        };
        if let Some(k) = under
            .iter()
            .filter(in_file)
            .find(|v| crate::store::FileKind::from_wire(&v.value).is_some() && !file_like(v))
        {
            set("file_kind", namer.path(k, file_depth));
        }
        if let Some(k) = under
            .iter()
            .filter(in_file)
            .find(|v| v.field().to_ascii_lowercase().contains("size"))
        {
            set("file_size", namer.path(k, file_depth));
        }
        if let Some(k) = under
            .iter()
            .filter(in_file)
            .find(|v| v.value.len() == 64 && v.value.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            set("file_sha256", namer.path(k, file_depth));
        }
    } else {
        let catalog = files
            .iter()
            .find(|v| v.value.to_ascii_lowercase().ends_with(".cat"));
        let image = files
            .iter()
            .find(|v| !v.value.to_ascii_lowercase().ends_with(".cat"));
        match image {
            Some(i) => set("image_file", rel(i)),
            None => {
                return Err(LearnError::Missing(
                    "the captured offer names a catalog but no image file".into(),
                ))
            }
        }
        if let Some(c) = catalog {
            set("catalog_file", rel(c));
        }
    }
    if downloads.is_some() {
        set("no_update", "downloads-zero".into());
        notes.push("\"no update\" is taken to be a download count of 0 or a reply without an offer (one captured offer cannot show it): edit `no_update` if the pool differs".into());
    } else {
        set("no_update", "update-absent".into());
        notes.push("\"no update\" is taken to be a reply without an offer element: edit `no_update` if the pool differs".into());
    }
    Ok(LearnedReply {
        toml: lines.join("\n") + "\n",
        store_segments,
        file_names: files.iter().map(|f| f.value.clone()).collect(),
        notes,
    })
}

fn no_offer() -> LearnError {
    LearnError::Missing(
        "the captured reply offers no update (no BaseURL and version), so where an offer's values go \
         cannot be learned: capture a check by a phone running an older version than the one approved"
            .into(),
    )
}

/// The seven store directories after `DeviceUpdateFiles_*` in a BaseURL.
fn store_segments(url: &str) -> Option<Vec<String>> {
    let path = url.split_once("://")?.1.split_once('/')?.1;
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let at = segments
        .iter()
        .position(|s| s.starts_with("DeviceUpdateFiles"))?;
    let store: Vec<String> = segments
        .get(at + 1..at + 8)?
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    store[5].parse::<FirmwareVersion>().ok()?;
    Some(store)
}
