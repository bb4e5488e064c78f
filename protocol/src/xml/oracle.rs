//! The reader `parse` replaced (quick-xml's event reader, as it stood in session 8), kept as
//! the oracle the new reader is compared with: whatever the new one accepts, this one must
//! accept too and read into the same document (`read_tests.rs`).

use std::borrow::Cow;

use quick_xml::events::attributes::Attributes;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::{checked_text, recheck, Document, Limits, Node, NONE};
use crate::error::ProtocolError;

/// An open element while reading: where it is, and its last child so far (to link the next).
struct Open {
    at: u32,
    last_child: u32,
}

/// Reads a whole document.
pub(super) fn parse(body: &[u8], limits: Limits) -> Result<Document<'_>, ProtocolError> {
    let doc = checked_text(body, limits)?;
    let mut reader = Reader::from_str(doc);
    reader.config_mut().check_end_names = true;

    // Room for a check or a reply without growing (both have about a dozen elements and
    // attributes; counting them first cost more than the growth it saved).
    let mut out = Document {
        nodes: Vec::with_capacity(16),
        attrs: Vec::with_capacity(16),
    };
    let xml_err = |e: quick_xml::Error| ProtocolError::Xml(e.to_string());
    let mut stack: Vec<Open> = Vec::with_capacity(limits.max_depth.min(16));
    loop {
        let (start, empty) = match reader.read_event().map_err(xml_err)? {
            Event::Start(start) => (start, false),
            Event::Empty(start) => (start, true),
            Event::End(_) => {
                stack
                    .pop()
                    .ok_or_else(|| ProtocolError::Xml("stray end tag".into()))?;
                continue;
            }
            Event::Text(text) => {
                // Text without a reference is the document's own (the blanks between elements
                // are half the text events of a check); only the rest goes through the unescaper.
                let value = match borrowed(doc, &text) {
                    Some(plain) => Cow::Borrowed(plain),
                    None => text.unescape().map_err(xml_err)?,
                };
                recheck(&value)?;
                match stack.last() {
                    Some(open) => out.push_text(open.at, value),
                    None if value.trim().is_empty() => {}
                    None => return Err(ProtocolError::Xml("text outside the root element".into())),
                }
                continue;
            }
            Event::CData(data) => {
                let value = within(doc, &data).ok_or_else(not_borrowed)?;
                match stack.last() {
                    Some(open) => out.push_text(open.at, Cow::Borrowed(value)),
                    None => {
                        return Err(ProtocolError::Xml("CDATA outside the root element".into()))
                    }
                }
                continue;
            }
            Event::DocType(_) => {
                return Err(ProtocolError::Xml("DTDs are not accepted".into()));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => continue,
            Event::Eof => break,
        };
        if out.nodes.len() >= limits.max_elements {
            return Err(ProtocolError::XmlLimit {
                what: "element count",
                limit: limits.max_elements,
            });
        }
        if stack.is_empty() && !out.nodes.is_empty() {
            return Err(ProtocolError::Xml("a second root element".into()));
        }
        if stack.len() + 1 > limits.max_depth {
            return Err(ProtocolError::XmlLimit {
                what: "nesting depth",
                limit: limits.max_depth,
            });
        }
        let at = out.nodes.len() as u32;
        open_element(doc, &start, &mut out)?;
        if let Some(parent) = stack.last_mut() {
            match parent.last_child {
                NONE => out.nodes[parent.at as usize].first_child = at,
                last => out.nodes[last as usize].next_sibling = at,
            }
            parent.last_child = at;
        }
        if !empty {
            stack.push(Open {
                at,
                last_child: NONE,
            });
        }
    }
    if !stack.is_empty() {
        return Err(ProtocolError::Xml("unexpected end of document".into()));
    }
    if out.nodes.is_empty() {
        return Err(ProtocolError::Xml("no root element".into()));
    }
    Ok(out)
}

/// `part` as the slice of `doc` it lies in. A reader over a `&str` hands out events that
/// borrow from the document, so a name or a value is the document's own text: no copy and no
/// second UTF-8 check (quick-xml's decoder re-validated every name and value: 8 % of a decode).
/// `None` when `part` is not inside `doc` (allocations never overlap, so a range inside the
/// document's bytes is the document's).
fn within<'a>(doc: &'a str, part: &[u8]) -> Option<&'a str> {
    let start = (part.as_ptr() as usize).checked_sub(doc.as_ptr() as usize)?;
    doc.get(start..start.checked_add(part.len())?)
}

/// [`within`] for a value that has no reference to expand (no `&`): then it is read as it is.
fn borrowed<'a>(doc: &'a str, raw: &[u8]) -> Option<&'a str> {
    if raw.contains(&b'&') {
        None
    } else {
        within(doc, raw)
    }
}

/// The reader is always over the document's own `&str`, so an event that is not a slice of it
/// would be a change in quick-xml: refused rather than guessed at.
fn not_borrowed() -> ProtocolError {
    ProtocolError::Xml("the reader returned text that is not the document's".into())
}

/// Appends the element `start` opens, and its attributes, to `out`.
fn open_element<'a>(
    doc: &'a str,
    start: &BytesStart<'a>,
    out: &mut Document<'a>,
) -> Result<(), ProtocolError> {
    let tag = within(doc, start).ok_or_else(not_borrowed)?;
    let name_len = start.name().as_ref().len();
    let name = local_name(tag.get(..name_len).ok_or_else(not_borrowed)?);
    let first_attr = out.attrs.len() as u32;
    for attr in Attributes::new(tag, name_len) {
        let attr = attr.map_err(|e| ProtocolError::Xml(e.to_string()))?;
        let key = attr.key.as_ref();
        if key.starts_with(b"xmlns") {
            continue;
        }
        let key = local_name(within(tag, key).ok_or_else(not_borrowed)?);
        let value = match borrowed(tag, &attr.value) {
            Some(plain) => Cow::Borrowed(plain),
            None => attr
                .unescape_value()
                .map_err(|e| ProtocolError::Xml(e.to_string()))?,
        };
        recheck(&value)?;
        out.attrs.push((key, value));
    }
    out.nodes.push(Node {
        name,
        attrs: (first_attr, out.attrs.len() as u32),
        first_child: NONE,
        next_sibling: NONE,
        text: Cow::Borrowed(""),
    });
    Ok(())
}

/// The name without its namespace prefix (`ns:Name` -> `Name`). A byte search: names are a
/// few bytes, and `rsplit_once`'s searcher cost 4 % of a decode. `:` is ASCII, so the slice
/// after it starts on a character boundary.
fn local_name(qualified: &str) -> &str {
    match qualified.bytes().rposition(|b| b == b':') {
        Some(colon) => &qualified[colon + 1..],
        None => qualified,
    }
}
