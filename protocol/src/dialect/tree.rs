//! A namespace-aware view of a reply, and the paths a dialect uses to find values in it.
//!
//! The body is first read by [`crate::xml::parse`], so every cap and refusal (size, depth,
//! element count, DTDs, bad characters) applies unchanged; only then is it read again with
//! namespace resolution to build this tree. A path is `step/step/...`, optionally ending in
//! `@attr`; a step is `Local` (any namespace) or `prefix:Local`, where the prefix is one the
//! dialect declares in `[reply.namespaces]` (the document's own prefixes do not matter, its
//! namespace URIs do). Local names match without regard to ASCII case, like the wire reader.

use std::collections::BTreeMap;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::DialectError;
use crate::error::ProtocolError;
use crate::xml::{self, Limits};

/// One element with its resolved namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub ns: Option<String>,
    pub name: String,
    /// (namespace, local name, value); `xmlns` declarations are left out.
    pub attrs: Vec<(Option<String>, String, String)>,
    pub children: Vec<Node>,
    pub text: String,
}

/// Reads `body` into its root node.
pub fn parse(body: &[u8]) -> Result<Node, ProtocolError> {
    xml::parse(body, Limits::MESSAGE)?;
    // Checked above: valid UTF-8, no DTD, within the caps.
    let text = std::str::from_utf8(body).map_err(|e| ProtocolError::BadUtf8 {
        at: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = NsReader::from_str(text);
    let err = |e: quick_xml::Error| ProtocolError::Xml(e.to_string());
    let mut stack: Vec<Node> = Vec::new();
    let ns_of = |r: ResolveResult<'_>| match r {
        ResolveResult::Bound(ns) => Some(String::from_utf8_lossy(ns.as_ref()).into_owned()),
        _ => None,
    };
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(err)?;
        let (start, empty) = match event {
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            Event::End(_) => {
                let done = stack
                    .pop()
                    .ok_or_else(|| ProtocolError::Xml("stray end".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
                continue;
            }
            Event::Text(t) => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&t.unescape().map_err(err)?);
                }
                continue;
            }
            Event::CData(d) => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&String::from_utf8_lossy(&d));
                }
                continue;
            }
            Event::Eof => return Err(ProtocolError::Xml("no root element".into())),
            _ => continue,
        };
        let mut node = Node {
            ns: ns_of(resolved),
            name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
            ..Node::default()
        };
        for attr in start.attributes() {
            let attr = attr.map_err(|e| ProtocolError::Xml(e.to_string()))?;
            let key = attr.key;
            if key.as_ref() == b"xmlns" || key.as_ref().starts_with(b"xmlns:") {
                continue;
            }
            let (ns, local) = reader.resolve_attribute(key);
            let value = attr
                .unescape_value()
                .map_err(|e| ProtocolError::Xml(e.to_string()))?;
            node.attrs.push((
                ns_of(ns),
                String::from_utf8_lossy(local.as_ref()).into_owned(),
                value.into_owned(),
            ));
        }
        if empty {
            match stack.last_mut() {
                Some(parent) => parent.children.push(node),
                None => return Ok(node),
            }
        } else {
            stack.push(node);
        }
    }
}

/// One step: an optional namespace URI and a local name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub ns: Option<String>,
    pub local: String,
}

impl Name {
    fn matches(&self, ns: Option<&str>, local: &str) -> bool {
        self.local.eq_ignore_ascii_case(local)
            && self.ns.as_deref().is_none_or(|want| Some(want) == ns)
    }

    pub fn matches_node(&self, node: &Node) -> bool {
        self.matches(node.ns.as_deref(), &node.name)
    }
}

/// A checked path: element steps, then optionally an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub steps: Vec<Name>,
    pub attr: Option<Name>,
    pub source: String,
}

impl Path {
    pub fn parse(text: &str, namespaces: &BTreeMap<String, String>) -> Result<Self, DialectError> {
        let bad = |why: &str| DialectError::Path {
            path: text.to_owned(),
            why: why.to_owned(),
        };
        if text.len() > 512 {
            return Err(bad("longer than 512 bytes"));
        }
        let name = |step: &str| -> Result<Name, DialectError> {
            let (prefix, local) = match step.split_once(':') {
                Some((p, l)) => (Some(p), l),
                None => (None, step),
            };
            let ok = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
            };
            if !ok(local) || prefix.is_some_and(|p| !ok(p)) {
                return Err(bad(&format!("`{step}` is not an XML name")));
            }
            let ns =
                match prefix {
                    None => None,
                    Some(p) => Some(namespaces.get(p).cloned().ok_or_else(|| {
                        bad(&format!("prefix `{p}` is not in [reply.namespaces]"))
                    })?),
                };
            Ok(Name {
                ns,
                local: local.to_owned(),
            })
        };
        let mut steps = Vec::new();
        let mut attr = None;
        let parts: Vec<&str> = if text.is_empty() {
            Vec::new()
        } else {
            text.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            if let Some(a) = part.strip_prefix('@') {
                if i + 1 != parts.len() {
                    return Err(bad("an attribute can only be the last step"));
                }
                attr = Some(name(a)?);
            } else if *part == "." {
                continue;
            } else {
                steps.push(name(part)?);
            }
        }
        Ok(Path {
            steps,
            attr,
            source: text.to_owned(),
        })
    }

    /// The elements the steps reach from `from` (every match at every step).
    pub fn elements<'a>(&self, from: &'a Node) -> Vec<&'a Node> {
        let mut at = vec![from];
        for step in &self.steps {
            at = at
                .into_iter()
                .flat_map(|n| n.children.iter().filter(|c| step.matches_node(c)))
                .collect();
        }
        at
    }

    /// The first value the path reaches, trimmed; `None` when absent or blank.
    pub fn value<'a>(&self, from: &'a Node) -> Option<&'a str> {
        self.elements(from).into_iter().find_map(|n| {
            let raw = match &self.attr {
                Some(a) => n
                    .attrs
                    .iter()
                    .find(|(ns, local, _)| a.matches(ns.as_deref(), local))
                    .map(|(_, _, v)| v.as_str())?,
                None => n.text.as_str(),
            };
            let t = raw.trim();
            (!t.is_empty()).then_some(t)
        })
    }
}
