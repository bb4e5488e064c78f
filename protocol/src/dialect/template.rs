//! A dialect's body templates: literal bytes with named placeholders, and nothing else.
//!
//! `{{name}}` is a value (XML-escaped on output), `{{#list}}...{{/list}}` repeats its inside
//! once per item of a list, `{{?name}}...{{/name}}` keeps its inside only when the value is
//! present, `{{^name}}...{{/name}}` only when it is absent. There are no expressions, no
//! filters and no includes: a template can say where values go and which parts are optional,
//! and that is all, so a dialect file is data and never code. Every name is checked against
//! the fixed set of placeholders the message has when the template is parsed.

use std::collections::BTreeMap;

use super::DialectError;
use crate::xml;

mod read;
pub use read::{Captured, MAX_ITEMS};

/// One parsed piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Literal(String),
    Value(String),
    Each(String, Vec<Node>),
    IfPresent(String, Vec<Node>),
    IfAbsent(String, Vec<Node>),
}

/// A checked template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    nodes: Vec<Node>,
    source: String,
}

/// Why a body does not fit a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    #[error("the body differs from the template at byte {at}")]
    Differs { at: usize },
    #[error("the body is too intricate to read through the template")]
    TooComplex,
}

/// The values a template is rendered with: text values and lists of nested contexts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    values: BTreeMap<&'static str, Slot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Text(String),
    List(Vec<Context>),
    /// Set to nothing: hides a same-named value of an outer scope (a module without a
    /// timestamp must not show the first module's).
    Absent,
}

impl Context {
    pub fn new() -> Self {
        Context::default()
    }

    /// Sets `name`; `None` makes it absent here, even when an outer scope has it.
    pub fn set(&mut self, name: &'static str, value: Option<impl Into<String>>) -> &mut Self {
        let slot = value.map_or(Slot::Absent, |v| Slot::Text(v.into()));
        self.values.insert(name, slot);
        self
    }

    pub fn list(&mut self, name: &'static str, items: Vec<Context>) -> &mut Self {
        self.values.insert(name, Slot::List(items));
        self
    }
}

/// The placeholders a template may use: top-level names and, per list, the names inside it.
pub struct Vocabulary {
    pub values: &'static [&'static str],
    pub lists: &'static [(&'static str, &'static [&'static str])],
}

impl Vocabulary {
    fn allows_value(&self, scope: &[&str], name: &str) -> bool {
        match scope.last() {
            None => self.values.contains(&name),
            // Inside a list its own names and the top-level ones are both visible.
            Some(list) => {
                self.values.contains(&name)
                    || self
                        .lists
                        .iter()
                        .any(|(l, names)| l == list && names.contains(&name))
            }
        }
    }

    fn allows_list(&self, scope: &[&str], name: &str) -> bool {
        scope.is_empty() && self.lists.iter().any(|(l, _)| *l == name)
    }
}

impl Template {
    pub fn parse(source: &str, vocabulary: &Vocabulary) -> Result<Self, DialectError> {
        let mut rest = source;
        let mut stack: Vec<(char, String, Vec<Node>)> = Vec::new();
        let mut current: Vec<Node> = Vec::new();
        while let Some(at) = rest.find("{{") {
            if at > 0 {
                current.push(Node::Literal(rest[..at].to_owned()));
            }
            let after = &rest[at + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| DialectError::Template("unclosed `{{`".into()))?;
            let tag = &after[..end];
            rest = &after[end + 2..];
            let (sigil, name) = match tag.chars().next() {
                Some(c @ ('#' | '?' | '^' | '/')) => (Some(c), &tag[1..]),
                _ => (None, tag),
            };
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(DialectError::Template(format!(
                    "`{{{{{tag}}}}}` is not a placeholder (names are lower case letters, digits and `_`)"
                )));
            }
            let scope: Vec<&str> = stack
                .iter()
                .filter(|(s, _, _)| *s == '#')
                .map(|(_, n, _)| n.as_str())
                .collect();
            match sigil {
                None => {
                    if !vocabulary.allows_value(&scope, name) {
                        return Err(unknown(name));
                    }
                    current.push(Node::Value(name.to_owned()));
                }
                Some('#') => {
                    if !vocabulary.allows_list(&scope, name) {
                        return Err(unknown(name));
                    }
                    stack.push(('#', name.to_owned(), std::mem::take(&mut current)));
                }
                Some(c @ ('?' | '^')) => {
                    if !vocabulary.allows_value(&scope, name)
                        && !vocabulary.allows_list(&scope, name)
                    {
                        return Err(unknown(name));
                    }
                    stack.push((c, name.to_owned(), std::mem::take(&mut current)));
                }
                _ => {
                    let (open, open_name, parent) = stack.pop().ok_or_else(|| {
                        DialectError::Template(format!("`{{{{/{name}}}}}` closes nothing"))
                    })?;
                    if open_name != name {
                        return Err(DialectError::Template(format!(
                            "`{{{{/{name}}}}}` closes `{open_name}`"
                        )));
                    }
                    let body = std::mem::replace(&mut current, parent);
                    current.push(match open {
                        '#' => Node::Each(open_name, body),
                        '?' => Node::IfPresent(open_name, body),
                        _ => Node::IfAbsent(open_name, body),
                    });
                }
            }
        }
        if let Some((_, name, _)) = stack.last() {
            return Err(DialectError::Template(format!("`{name}` is never closed")));
        }
        if !rest.is_empty() {
            current.push(Node::Literal(rest.to_owned()));
        }
        Ok(Template {
            nodes: current,
            source: source.to_owned(),
        })
    }

    /// The template text as written in the dialect file.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with `context`; values are XML-escaped, literals are copied byte for byte.
    pub fn render(&self, context: &Context) -> String {
        let mut out = String::with_capacity(self.source.len() + 256);
        render_into(&mut out, &self.nodes, &[context]);
        out
    }

    /// The literal pieces in order (what must match a capture byte for byte).
    pub fn literals(&self) -> Vec<&str> {
        let mut out = Vec::new();
        collect_literals(&self.nodes, &mut out);
        out
    }
}

fn unknown(name: &str) -> DialectError {
    DialectError::Template(format!("unknown placeholder `{name}` here"))
}

fn collect_literals<'a>(nodes: &'a [Node], out: &mut Vec<&'a str>) {
    for node in nodes {
        match node {
            Node::Literal(text) => out.push(text),
            Node::Value(_) => {}
            Node::Each(_, body) | Node::IfPresent(_, body) | Node::IfAbsent(_, body) => {
                collect_literals(body, out)
            }
        }
    }
}

fn lookup<'a>(scopes: &[&'a Context], name: &str) -> Option<&'a Slot> {
    match scopes.iter().rev().find_map(|c| c.values.get(name)) {
        Some(Slot::Absent) | None => None,
        found => found,
    }
}

fn render_into(out: &mut String, nodes: &[Node], scopes: &[&Context]) {
    for node in nodes {
        match node {
            Node::Literal(text) => out.push_str(text),
            Node::Value(name) => {
                if let Some(Slot::Text(value)) = lookup(scopes, name) {
                    out.push_str(&xml::escape(value));
                }
            }
            Node::Each(name, body) => {
                if let Some(Slot::List(items)) = lookup(scopes, name) {
                    for item in items {
                        let mut inner = scopes.to_vec();
                        inner.push(item);
                        render_into(out, body, &inner);
                    }
                }
            }
            Node::IfPresent(name, body) => {
                if lookup(scopes, name).is_some() {
                    render_into(out, body, scopes);
                }
            }
            Node::IfAbsent(name, body) => {
                if lookup(scopes, name).is_none() {
                    render_into(out, body, scopes);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOCAB: Vocabulary = Vocabulary {
        values: &["a", "b"],
        lists: &[("items", &["x"])],
    };

    #[test]
    fn renders_values_sections_and_escapes() {
        let t = Template::parse("<r a=\"{{a}}\">{{?b}}<b/>{{/b}}{{^b}}<nob/>{{/b}}{{#items}}<i>{{x}}{{a}}</i>{{/items}}</r>", &VOCAB).unwrap();
        let mut c = Context::new();
        c.set("a", Some("1&2"));
        let mut item = Context::new();
        item.set("x", Some("<"));
        c.list("items", vec![item.clone(), item]);
        assert_eq!(
            t.render(&c),
            "<r a=\"1&amp;2\"><nob/><i>&lt;1&amp;2</i><i>&lt;1&amp;2</i></r>"
        );
        c.set("b", Some(""));
        assert!(t.render(&c).contains("<b/>"));
    }

    #[test]
    fn refuses_anything_but_known_placeholders() {
        for bad in [
            "{{c}}",
            "{{x}}",
            "{{#a}}{{/a}}",
            "{{#items}}",
            "{{/items}}",
            "{{#items}}{{/b}}",
            "{{a",
            "{{a + 1}}",
            "{{A}}",
            "{{}}",
            "{{#items}}{{#items}}{{/items}}{{/items}}",
        ] {
            assert!(Template::parse(bad, &VOCAB).is_err(), "{bad:?} accepted");
        }
    }
}
