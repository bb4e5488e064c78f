//! A bounded, tolerant XML reader and a minimal writer.
//!
//! Reading builds a small element tree with hard caps (body size, depth, element count) and
//! refuses DTDs outright, so entity-expansion bombs never start. Names are compared by local
//! name (namespace prefixes dropped) without regard to ASCII case, and a field may be given as
//! an attribute or as a child element: the real schema is not public, so the reader accepts the
//! plausible spellings and ignores whatever it does not know.

use std::borrow::Cow;

use quick_xml::events::attributes::Attributes;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::error::ProtocolError;

/// Caps applied while reading.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
}

impl Limits {
    /// The caps for every message this protocol exchanges (they are all a few KiB at most).
    pub const MESSAGE: Limits = Limits {
        max_bytes: 64 * 1024,
        max_depth: 16,
        max_elements: 2048,
    };
}

/// One element: local name, attributes (local names), children and concatenated text, all
/// borrowed from the document where they can be (a name always is; a value only needs its own
/// string when it held a reference such as `&amp;`, or when an element's text comes in several
/// pieces). A check's tree used to be about forty small strings, each allocated and freed per
/// message: that was a fifth of the decode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element<'a> {
    pub name: &'a str,
    pub attrs: Vec<(&'a str, Cow<'a, str>)>,
    pub children: Vec<Element<'a>>,
    pub text: Cow<'a, str>,
}

impl<'a> Element<'a> {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    pub fn child(&self, name: &str) -> Option<&Element<'a>> {
        self.children.iter().find(|c| c.is(name))
    }

    pub fn children_named<'s>(
        &'s self,
        name: &'s str,
    ) -> impl Iterator<Item = &'s Element<'a>> + 's {
        self.children.iter().filter(move |c| c.is(name))
    }

    /// A field given as an attribute or as a child element's text, trimmed; `None` when absent
    /// or blank.
    pub fn field(&self, name: &str) -> Option<&str> {
        let raw = self
            .attr(name)
            .or_else(|| self.child(name).map(|c| c.text.as_ref()))?;
        let trimmed = raw.trim();
        (!trimmed.is_empty()).then_some(trimmed)
    }

    fn push_text(&mut self, piece: Cow<'a, str>) {
        if self.text.is_empty() {
            self.text = piece;
        } else {
            self.text.to_mut().push_str(&piece);
        }
    }
}

/// Reads a whole document into its root element.
pub fn parse(body: &[u8], limits: Limits) -> Result<Element<'_>, ProtocolError> {
    if body.len() > limits.max_bytes {
        return Err(ProtocolError::TooLarge {
            len: body.len(),
            cap: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(body).map_err(|e| ProtocolError::BadUtf8 {
        at: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    xml_chars(text)?;
    let doc = text;
    let mut reader = Reader::from_str(doc);
    reader.config_mut().check_end_names = true;

    let xml_err = |e: quick_xml::Error| ProtocolError::Xml(e.to_string());
    let mut stack: Vec<Element<'_>> = Vec::new();
    let mut root: Option<Element<'_>> = None;
    let mut count = 0usize;
    loop {
        let (start, empty) = match reader.read_event().map_err(xml_err)? {
            Event::Start(start) => (start, false),
            Event::Empty(start) => (start, true),
            Event::End(_) => {
                let done = stack
                    .pop()
                    .ok_or_else(|| ProtocolError::Xml("stray end tag".into()))?;
                close(&mut stack, &mut root, done);
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
                match stack.last_mut() {
                    Some(open) => open.push_text(value),
                    None if value.trim().is_empty() => {}
                    None => return Err(ProtocolError::Xml("text outside the root element".into())),
                }
                continue;
            }
            Event::CData(data) => {
                let value = within(doc, &data).ok_or_else(not_borrowed)?;
                match stack.last_mut() {
                    Some(open) => open.push_text(Cow::Borrowed(value)),
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
        count += 1;
        if count > limits.max_elements {
            return Err(ProtocolError::XmlLimit {
                what: "element count",
                limit: limits.max_elements,
            });
        }
        if root.is_some() {
            return Err(ProtocolError::Xml("a second root element".into()));
        }
        let element = open_element(doc, &start)?;
        if stack.len() + 1 > limits.max_depth {
            return Err(ProtocolError::XmlLimit {
                what: "nesting depth",
                limit: limits.max_depth,
            });
        }
        if empty {
            close(&mut stack, &mut root, element);
        } else {
            stack.push(element);
        }
    }
    if !stack.is_empty() {
        return Err(ProtocolError::Xml("unexpected end of document".into()));
    }
    root.ok_or_else(|| ProtocolError::Xml("no root element".into()))
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

fn open_element<'a>(doc: &'a str, start: &BytesStart<'a>) -> Result<Element<'a>, ProtocolError> {
    let tag = within(doc, start).ok_or_else(not_borrowed)?;
    let name_len = start.name().as_ref().len();
    let mut element = Element {
        name: local_name(tag.get(..name_len).ok_or_else(not_borrowed)?),
        ..Element::default()
    };
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
        element.attrs.push((key, value));
    }
    Ok(element)
}

/// Refuses characters XML 1.0 cannot carry (its `Char` production: C0 controls other than tab,
/// line feed and carriage return, and U+FFFE/U+FFFF), raw or written as character references.
/// Accepting them would let a value read here fail to survive our own writer, which replaces
/// them (found by the `check_response` fuzz target).
///
/// A byte scan, not a `char` one: every refused character is either one byte below 0x20 or
/// U+FFFE/U+FFFF, whose UTF-8 is `EF BF BE`/`EF BF BF` (`EF` only ever starts a sequence), so
/// no character needs decoding (this scan of every check body was 3 % of the stub's CPU).
fn xml_chars(text: &str) -> Result<(), ProtocolError> {
    let bytes = text.as_bytes();
    // First whole blocks without a branch per byte (the compiler vectorises the fold): only a
    // block holding a control other than tab, LF, CR, or an 0xEF byte is looked at closely.
    let suspect = |b: u8| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) | (b == 0xef);
    if bytes
        .chunks(64)
        .all(|block| !block.iter().fold(false, |any, &b| any | suspect(b)))
    {
        return Ok(());
    }
    let refused = |at: usize, b: u8| match b {
        b'\t' | b'\n' | b'\r' => false,
        0..=0x1f => true,
        0xef => matches!(bytes.get(at + 1..at + 3), Some([0xbf, 0xbe | 0xbf])),
        _ => false,
    };
    match bytes.iter().enumerate().find(|&(at, &b)| refused(at, b)) {
        None => Ok(()),
        Some((at, _)) => {
            let c = text[at..].chars().next().unwrap_or_default();
            Err(ProtocolError::Xml(format!(
                "character U+{:04X} at byte {at} is not allowed in XML",
                c as u32
            )))
        }
    }
}

/// XML 1.0's `Char` production, one character at a time (the writer's replacement test).
fn is_xml_char(c: char) -> bool {
    !matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

/// [`xml_chars`] for a text or attribute value after unescaping: a value borrowed from the
/// document had no reference to expand, so the document's own scan covered it; only an
/// unescaped (owned) one can hold a character written as a reference (`&#1;`).
// The `Cow` itself is the point: whether the value was borrowed is what decides.
#[allow(clippy::ptr_arg)]
fn recheck(value: &Cow<'_, str>) -> Result<(), ProtocolError> {
    match value {
        Cow::Borrowed(_) => Ok(()),
        Cow::Owned(owned) => xml_chars(owned),
    }
}

fn close<'a>(stack: &mut [Element<'a>], root: &mut Option<Element<'a>>, done: Element<'a>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(done),
        None => *root = Some(done),
    }
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

/// Builds a document as text. Attribute values and text are escaped; names are ours and fixed.
pub struct Writer {
    out: String,
    open: Vec<&'static str>,
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            out: String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"),
            open: Vec::new(),
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
    }

    /// Opens `<name a="v" ...>`.
    pub fn open(&mut self, name: &'static str, attrs: &[(&str, &str)]) {
        self.indent();
        self.start_tag(name, attrs);
        self.out.push_str(">\n");
        self.open.push(name);
    }

    /// Writes `<name a="v" .../>`.
    pub fn empty(&mut self, name: &'static str, attrs: &[(&str, &str)]) {
        self.indent();
        self.start_tag(name, attrs);
        self.out.push_str("/>\n");
    }

    /// Writes `<name>text</name>`.
    pub fn leaf(&mut self, name: &'static str, text: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        escape_into(&mut self.out, text);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    /// Writes `<name attrs...>text</name>`.
    pub fn leaf_with(&mut self, name: &'static str, attrs: &[(&str, &str)], text: &str) {
        self.indent();
        self.start_tag(name, attrs);
        self.out.push('>');
        escape_into(&mut self.out, text);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    pub fn close(&mut self) {
        if let Some(name) = self.open.pop() {
            self.indent();
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push_str(">\n");
        }
    }

    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }

    fn start_tag(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        for (key, value) in attrs {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
    }
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

/// Escapes text for XML content and attribute values. Characters XML 1.0 cannot carry at all
/// (most C0 controls, U+FFFE, U+FFFF) become U+FFFD: the protocol's own values never hold them,
/// but reports that quote a server's error body can.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Keep line breaks and tabs in attribute values through a round trip.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if !is_xml_char(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Element<'_>, ProtocolError> {
        parse(text.as_bytes(), Limits::MESSAGE)
    }

    #[test]
    fn reads_fields_from_attributes_or_children_ignoring_prefixes_and_case() {
        let root = read(
            r#"<?xml version="1.0"?><ns:Root xmlns:ns="urn:x" ns:Id="7"><NAME> a &amp; b </NAME><Extra/></ns:Root>"#,
        )
        .unwrap();
        assert!(root.is("root"));
        assert_eq!(root.field("id"), Some("7"));
        assert_eq!(root.field("Name"), Some("a & b"));
        assert_eq!(root.field("Missing"), None);
    }

    #[test]
    fn refuses_dtds_and_entity_bombs() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><r>&lol2;</r>"#;
        assert!(matches!(read(bomb), Err(ProtocolError::Xml(m)) if m.contains("DTD")));
        assert!(matches!(
            read("<r>&custom;</r>"),
            Err(ProtocolError::Xml(_))
        ));
    }

    #[test]
    fn enforces_caps() {
        let deep = "<a>".repeat(17) + &"</a>".repeat(17);
        assert!(matches!(
            read(&deep),
            Err(ProtocolError::XmlLimit {
                what: "nesting depth",
                ..
            })
        ));
        let wide = format!("<a>{}</a>", "<b/>".repeat(2048));
        assert!(matches!(
            read(&wide),
            Err(ProtocolError::XmlLimit {
                what: "element count",
                ..
            })
        ));
        let big = vec![b' '; 64 * 1024 + 1];
        assert!(matches!(
            parse(&big, Limits::MESSAGE),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn refuses_broken_documents() {
        for text in [
            "",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "text",
            "<a/>trailing",
            "<a x='1' x='2'/>",
            "<a>\u{ffff}</a>",
            "<a>&#xFFFF;</a>",
            "<a x='&#1;'/>",
            "<a>x\u{0}y</a>",
            "<a><!-- \u{1b} --></a>",
        ] {
            assert!(read(text).is_err(), "{text:?} accepted");
        }
        assert!(matches!(
            parse(b"<a>\xff</a>", Limits::MESSAGE),
            Err(ProtocolError::BadUtf8 { .. })
        ));
    }

    /// White space between elements is the parent's text, verbatim (the blank fast path
    /// must keep CR LF and tabs as the unescaper did), beside unescaped text.
    #[test]
    fn blank_text_is_kept_verbatim() {
        let root = read("<a> \r\n\t<b/>\r\n&amp;<c> </c></a>").unwrap();
        assert_eq!(root.text, " \r\n\t\r\n&");
        assert_eq!(root.child("c").unwrap().text, " ");
    }

    /// Names and values without a reference are the document's own text; a value with one,
    /// or text that comes in several pieces, gets its own string (with the same content).
    #[test]
    fn plain_values_borrow_the_document() {
        let root = read("<p:a x='1' p:y='&lt;'>t<![CDATA[c]]><b> plain </b></p:a>").unwrap();
        assert_eq!(root.name, "a");
        assert!(matches!(root.attrs[0], ("x", Cow::Borrowed("1"))));
        assert!(matches!(&root.attrs[1], ("y", Cow::Owned(v)) if v == "<"));
        assert!(matches!(root.children[0].text, Cow::Borrowed(" plain ")));
        assert!(matches!(&root.text, Cow::Owned(t) if t == "tc"));
        assert_eq!(root.field("b"), Some("plain"));
    }

    /// The character scan `xml_chars` replaced (one `char` at a time), kept as the reference.
    fn char_scan(text: &str) -> Result<(), String> {
        match text.char_indices().find(|&(_, c)| !is_xml_char(c)) {
            None => Ok(()),
            Some((at, c)) => Err(ProtocolError::Xml(format!(
                "character U+{:04X} at byte {at} is not allowed in XML",
                c as u32
            ))
            .to_string()),
        }
    }

    proptest::proptest! {
        /// The byte scan refuses exactly what the character scan did, at the same byte, with
        /// the same message (strings dense in controls and in U+FFFx's neighbours).
        #[test]
        fn byte_scan_matches_the_char_scan(
            text in "[\\x00-\\x21a\u{7f}\u{e9}\u{efbf}\u{fdd0}\u{fffd}-\u{ffff}\u{10000}\u{10fffe}]{0,12}",
        ) {
            proptest::prop_assert_eq!(xml_chars(&text).map_err(|e| e.to_string()), char_scan(&text));
        }

        /// A character written as a reference is refused in text and in attribute values
        /// exactly when the character scan refuses it (borrowed values skip the rescan).
        #[test]
        fn references_are_rescanned(code in 1u32..0x1_1000) {
            if let Some(c) = char::from_u32(code) {
                let refused = char_scan(&c.to_string()).is_err();
                proptest::prop_assert_eq!(read(&format!("<a>x&#{code};</a>")).is_err(), refused);
                proptest::prop_assert_eq!(read(&format!("<a v='&#x{code:X};'/>")).is_err(), refused);
            }
        }
    }

    #[test]
    fn writer_output_reads_back() {
        let mut w = Writer::new();
        w.open("Root", &[("A", "x\"<&>\ny")]);
        w.leaf("Name", "a & b");
        w.empty("E", &[]);
        let text = w.finish();
        let root = read(&text).unwrap();
        assert_eq!(root.attr("A"), Some("x\"<&>\ny"));
        assert_eq!(root.field("Name"), Some("a & b"));
        assert!(root.child("E").is_some());
    }
}
