//! The reader: one pass over a body's bytes into a [`Document`].
//!
//! Written here rather than driven through quick-xml's event reader, which cost about 19,700
//! of the stub's 57,000 instructions per check (a third of its own work per request, for a
//! 494-byte body; docs/BENCHMARKS.md §4, sixth round): a general reader pays per event for
//! configuration, name buffers and re-scans this protocol's few kilobytes do not need. It reads
//! XML 1.0's elements, attributes, text, character and the five predefined references, CDATA,
//! comments and processing instructions (the declaration is one), refuses DTDs, and accepts
//! nothing quick-xml's reader (as `parse` used it, with end names checked) refused: the
//! tests keep that reader as the oracle (`oracle.rs`) and compare the two on generated and
//! fuzzed documents. Where it is stricter than quick-xml, it follows XML 1.0: an element
//! or attribute name is not empty and holds no quote, `<`, `=` or `/`, and attributes are
//! separated by white space.

use std::borrow::Cow;

use memchr::{memchr, memchr2};

use super::{checked_text, recheck, Document, Limits, Node, NONE};
use crate::error::ProtocolError;

/// An open element while reading: where it is, its name as written (for the end tag), and its
/// last child so far (to link the next).
struct Open<'a> {
    at: u32,
    name: &'a str,
    last_child: u32,
}

/// Reads a whole document.
pub fn parse(body: &[u8], limits: Limits) -> Result<Document<'_>, ProtocolError> {
    let doc = checked_text(body, limits)?;
    Reader {
        doc,
        bytes: doc.as_bytes(),
        at: 0,
        limits,
        // Room for a check or a reply without growing (both have about a dozen elements and
        // attributes; counting them first cost more than the growth it saved).
        out: Document {
            nodes: Vec::with_capacity(16),
            attrs: Vec::with_capacity(16),
        },
        stack: Vec::with_capacity(limits.max_depth.min(16)),
        keys: Vec::new(),
    }
    .run()
}

struct Reader<'a> {
    doc: &'a str,
    bytes: &'a [u8],
    /// The next byte to read.
    at: usize,
    limits: Limits,
    out: Document<'a>,
    stack: Vec<Open<'a>>,
    /// The current start tag's attribute names as written, for the duplicate check (`xmlns`
    /// declarations included, though the document leaves them out).
    keys: Vec<&'a str>,
}

fn err(what: impl Into<String>) -> ProtocolError {
    ProtocolError::Xml(what.into())
}

/// XML's white space.
const SPACE: u8 = 1;
/// Ends a name, or may not appear in one: white space, `>`, `/`, `=`, `<` and the quotes.
const ENDS_NAME: u8 = 2;
/// Ends a run of text: `<`, or `&` (a reference to expand).
const ENDS_TEXT: u8 = 4;

/// What each byte is to the reader, one table lookup per byte (a name's bytes are tested one at
/// a time, and a chain of comparisons per byte was a tenth of a check's reading).
static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            class |= SPACE | ENDS_NAME;
        }
        if matches!(c, b'>' | b'/' | b'=' | b'<' | b'"' | b'\'') {
            class |= ENDS_NAME;
        }
        if matches!(c, b'<' | b'&') {
            class |= ENDS_TEXT;
        }
        table[b] = class;
        b += 1;
    }
    table
};

fn is(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

/// The first `<` or `&` at or after `from` in `bytes`. Text between tags is mostly a
/// few bytes (a line break and an indent, a short value), shorter than a vector search takes
/// to set up, so the first bytes are looked at one by one.
fn find_text_end(bytes: &[u8], from: usize) -> Option<usize> {
    let inline = bytes.len().min(from + 16);
    for (at, &b) in bytes[..inline].iter().enumerate().skip(from) {
        if is(b, ENDS_TEXT) {
            return Some(at);
        }
    }
    memchr2(b'<', b'&', &bytes[inline..]).map(|n| inline + n)
}

/// Where the first `close` (two or three bytes, ending in `>`) that starts at or after `from`
/// starts. A search for the `>` and a look back, as a closer is never far; a two-way
/// searcher's set-up cost more than the search.
fn find_close(bytes: &[u8], from: usize, close: &[u8]) -> Option<usize> {
    let mut at = from + close.len() - 1;
    while at < bytes.len() {
        let gt = at + memchr(b'>', &bytes[at..])?;
        let start = gt + 1 - close.len();
        if bytes[start..=gt] == *close {
            return Some(start);
        }
        at = gt + 1;
    }
    None
}

impl<'a> Reader<'a> {
    fn run(mut self) -> Result<Document<'a>, ProtocolError> {
        loop {
            // Text up to the next markup, and whether it holds a reference to expand.
            let start = self.at;
            let mut reference = false;
            let lt = loop {
                match find_text_end(self.bytes, self.at) {
                    Some(at) if self.bytes[at] == b'&' => {
                        reference = true;
                        self.at = at + 1;
                    }
                    found => break found,
                }
            };
            let end = lt.unwrap_or(self.bytes.len());
            if end > start {
                self.text(&self.doc[start..end], reference)?;
            }
            let Some(lt) = lt else { break };
            self.at = lt;
            match self.bytes.get(lt + 1) {
                Some(b'/') => self.end_tag()?,
                Some(b'!') => self.bang()?,
                Some(b'?') => self.instruction()?,
                _ => self.start_tag()?,
            }
        }
        if !self.stack.is_empty() {
            return Err(err("unexpected end of document"));
        }
        if self.out.nodes.is_empty() {
            return Err(err("no root element"));
        }
        Ok(self.out)
    }

    /// Text between markup: the open element's, or blank outside the root.
    fn text(&mut self, raw: &'a str, reference: bool) -> Result<(), ProtocolError> {
        // Text without a reference is the document's own (the blanks between elements are
        // half the text of a check); only the rest is expanded, and rescanned.
        let value = if reference {
            unescape(raw)?
        } else {
            Cow::Borrowed(raw)
        };
        recheck(&value)?;
        match self.stack.last() {
            Some(open) => self.out.push_text(open.at, value),
            None if value.trim().is_empty() => {}
            None => return Err(err("text outside the root element")),
        }
        Ok(())
    }

    /// `<!--`, `<![CDATA[` or a refused declaration, at `self.at`.
    fn bang(&mut self) -> Result<(), ProtocolError> {
        let rest = &self.bytes[self.at..];
        if rest.starts_with(b"<!--") {
            let close = find_close(self.bytes, self.at + 4, b"-->")
                .ok_or_else(|| self.unclosed("comment"))?;
            self.at = close + 3;
        } else if rest.starts_with(b"<![CDATA[") {
            let from = self.at + 9;
            let close = find_close(self.bytes, from, b"]]>")
                .ok_or_else(|| self.unclosed("CDATA section"))?;
            let value = &self.doc[from..close];
            self.at = close + 3;
            match self.stack.last() {
                Some(open) => self.out.push_text(open.at, Cow::Borrowed(value)),
                None => return Err(err("CDATA outside the root element")),
            }
        } else if matches!(rest.get(2), Some(b'D' | b'd')) {
            return Err(err("DTDs are not accepted"));
        } else {
            return Err(err(format!(
                "`<!` at byte {} opens neither a comment nor CDATA",
                self.at
            )));
        }
        Ok(())
    }

    /// `<?...?>`, the XML declaration among them: skipped. `<?>` is not closed by its own `?`.
    fn instruction(&mut self) -> Result<(), ProtocolError> {
        let from = self.at + 1;
        match find_close(self.bytes, from, b"?>") {
            Some(q) if q > from => {
                self.at = q + 2;
                Ok(())
            }
            _ => Err(self.unclosed("processing instruction")),
        }
    }

    fn unclosed(&self, what: &str) -> ProtocolError {
        err(format!("{what} at byte {} is not closed", self.at))
    }

    /// A name starting at `self.at`: as written, and its local part (the namespace prefix
    /// dropped: what follows the last `:`, found in the same pass).
    fn name(&mut self, what: &str) -> Result<(&'a str, &'a str), ProtocolError> {
        let start = self.at;
        let mut local = start;
        let mut end = start;
        while let Some(&b) = self.bytes.get(end) {
            if is(b, ENDS_NAME) {
                break;
            }
            if b == b':' {
                local = end + 1;
            }
            end += 1;
        }
        if end == start {
            return Err(err(format!("{what} expected at byte {start}")));
        }
        self.at = end;
        // Every byte that ends a name, and `:`, is ASCII: all three are character boundaries.
        Ok((&self.doc[start..end], &self.doc[local..end]))
    }

    /// Skips white space; says whether there was any.
    fn space(&mut self) -> bool {
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(|&b| is(b, SPACE)) {
            self.at += 1;
        }
        self.at > start
    }

    /// `</name S? >`, closing the innermost open element.
    fn end_tag(&mut self) -> Result<(), ProtocolError> {
        let tag = self.at;
        let open = self.stack.pop().ok_or_else(|| err("stray end tag"))?;
        self.at += 2;
        let matches = self.bytes[self.at..].starts_with(open.name.as_bytes()) && {
            self.at += open.name.len();
            self.space();
            self.bytes.get(self.at) == Some(&b'>')
        };
        if !matches {
            return Err(err(format!(
                "the end tag at byte {tag} does not close <{}>",
                open.name
            )));
        }
        self.at += 1;
        Ok(())
    }

    /// `<name (S attr)* S? /?>`: the element and its attributes appended to the document.
    fn start_tag(&mut self) -> Result<(), ProtocolError> {
        let tag = self.at;
        self.at += 1;
        let (qualified, local) = self.name("an element name")?;
        let first_attr = self.out.attrs.len() as u32;
        self.keys.clear();
        let empty = loop {
            let spaced = self.space();
            match self.bytes.get(self.at) {
                Some(b'>') => break false,
                Some(b'/') if self.bytes.get(self.at + 1) == Some(&b'>') => {
                    self.at += 1;
                    break true;
                }
                None => return Err(err(format!("the tag at byte {tag} is not closed"))),
                Some(_) if !spaced => {
                    return Err(err(format!(
                        "white space expected before byte {} in the tag at byte {tag}",
                        self.at
                    )))
                }
                Some(_) => self.attribute()?,
            }
        };
        self.at += 1;
        let limits = self.limits;
        if self.out.nodes.len() >= limits.max_elements {
            return Err(ProtocolError::XmlLimit {
                what: "element count",
                limit: limits.max_elements,
            });
        }
        if self.stack.is_empty() && !self.out.nodes.is_empty() {
            return Err(err("a second root element"));
        }
        if self.stack.len() + 1 > limits.max_depth {
            return Err(ProtocolError::XmlLimit {
                what: "nesting depth",
                limit: limits.max_depth,
            });
        }
        let at = self.out.nodes.len() as u32;
        self.out.nodes.push(Node {
            name: local,
            attrs: (first_attr, self.out.attrs.len() as u32),
            first_child: NONE,
            next_sibling: NONE,
            text: Cow::Borrowed(""),
        });
        if let Some(parent) = self.stack.last_mut() {
            match parent.last_child {
                NONE => self.out.nodes[parent.at as usize].first_child = at,
                last => self.out.nodes[last as usize].next_sibling = at,
            }
            parent.last_child = at;
        }
        if !empty {
            self.stack.push(Open {
                at,
                name: qualified,
                last_child: NONE,
            });
        }
        Ok(())
    }

    /// `name S? = S? "value"` (or single quotes), at `self.at`.
    fn attribute(&mut self) -> Result<(), ProtocolError> {
        if self.keys.len() >= self.limits.max_attributes {
            return Err(ProtocolError::XmlLimit {
                what: "attributes per element",
                limit: self.limits.max_attributes,
            });
        }
        let (key, local) = self.name("an attribute name")?;
        if self.keys.contains(&key) {
            return Err(err(format!("attribute `{key}` given twice")));
        }
        self.keys.push(key);
        self.space();
        if self.bytes.get(self.at) != Some(&b'=') {
            return Err(err(format!("`=` expected after attribute `{key}`")));
        }
        self.at += 1;
        self.space();
        let quote = match self.bytes.get(self.at) {
            Some(&q @ (b'"' | b'\'')) => q,
            _ => {
                return Err(err(format!(
                    "a quoted value expected for attribute `{key}`"
                )))
            }
        };
        let from = self.at + 1;
        let len = memchr(quote, &self.bytes[from..])
            .ok_or_else(|| err(format!("the value of attribute `{key}` is not closed")))?;
        self.at = from + len + 1;
        if key.starts_with("xmlns") {
            return Ok(());
        }
        // The quote is ASCII, so both ends are character boundaries.
        let raw = &self.doc[from..from + len];
        let value = if raw.as_bytes().contains(&b'&') {
            unescape(raw)?
        } else {
            Cow::Borrowed(raw)
        };
        recheck(&value)?;
        self.out.attrs.push((local, value));
        Ok(())
    }
}

/// Expands the references in `raw`: the five predefined entities and character references
/// (`&#65;`, `&#x41;`). Any other entity, an `&` without its `;`, a sign, an empty or too
/// large number, and `&#0;` are refused, as quick-xml refused them.
fn unescape(raw: &str) -> Result<Cow<'_, str>, ProtocolError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = memchr(b'&', rest.as_bytes()) {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = match memchr2(b'&', b';', after.as_bytes()) {
            Some(semi) if after.as_bytes()[semi] == b';' => semi,
            _ => return Err(err("an `&` without its `;`")),
        };
        let name = &after[..semi];
        match name {
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "amp" => out.push('&'),
            "apos" => out.push('\''),
            "quot" => out.push('"'),
            _ => match name.strip_prefix('#') {
                Some(number) => out.push(char_reference(number)?),
                None => return Err(err(format!("unknown entity `&{name};`"))),
            },
        }
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// The character `&#number;` stands for: decimal, or hex after `x`.
fn char_reference(number: &str) -> Result<char, ProtocolError> {
    let (digits, radix) = match number.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    let bad = || {
        err(format!(
            "character reference `&#{number};` is not a character"
        ))
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let mut code: u32 = 0;
    for b in digits.bytes() {
        let digit = (b as char).to_digit(radix).ok_or_else(bad)?;
        code = code
            .checked_mul(radix)
            .and_then(|c| c.checked_add(digit))
            .ok_or_else(bad)?;
    }
    char::from_u32(code).filter(|&c| c != '\0').ok_or_else(bad)
}
