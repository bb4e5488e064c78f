//! A bounded, tolerant XML reader and a minimal writer.
//!
//! Reading builds a small element tree with hard caps (body size, depth, element count) and
//! refuses DTDs outright, so entity-expansion bombs never start. Names are compared by local
//! name (namespace prefixes dropped) without regard to ASCII case, and a field may be given as
//! an attribute or as a child element: the real schema is not public, so the reader accepts the
//! plausible spellings and ignores whatever it does not know.

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

/// One element: local name, attributes (local names), children and concatenated text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(name))
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(name))
    }

    /// A field given as an attribute or as a child element's text, trimmed; `None` when absent
    /// or blank.
    pub fn field(&self, name: &str) -> Option<&str> {
        let raw = self
            .attr(name)
            .or_else(|| self.child(name).map(|c| c.text.as_str()))?;
        let trimmed = raw.trim();
        (!trimmed.is_empty()).then_some(trimmed)
    }
}

/// Reads a whole document into its root element.
pub fn parse(body: &[u8], limits: Limits) -> Result<Element, ProtocolError> {
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
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;

    let xml_err = |e: quick_xml::Error| ProtocolError::Xml(e.to_string());
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
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
                // The blanks between elements (about half the text events of a check) have no
                // reference to expand: taken as they are, without the unescaper's scans.
                let value = match blank(&text) {
                    Some(blank) => std::borrow::Cow::Borrowed(blank),
                    None => text.unescape().map_err(xml_err)?,
                };
                recheck(&value)?;
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&value),
                    None if value.trim().is_empty() => {}
                    None => return Err(ProtocolError::Xml("text outside the root element".into())),
                }
                continue;
            }
            Event::CData(data) => {
                let value = std::str::from_utf8(&data).map_err(|e| ProtocolError::BadUtf8 {
                    at: e.valid_up_to(),
                })?;
                match stack.last_mut() {
                    Some(open) => open.text.push_str(value),
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
        let element = open_element(&start)?;
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

/// The text as it is when it is only XML white space (then unescaping would return it as is).
fn blank<'a>(text: &'a quick_xml::events::BytesText<'_>) -> Option<&'a str> {
    let raw: &[u8] = text;
    if raw
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        std::str::from_utf8(raw).ok()
    } else {
        None
    }
}

fn open_element(start: &BytesStart<'_>) -> Result<Element, ProtocolError> {
    let mut element = Element {
        name: local_name(start.name().as_ref())?,
        ..Element::default()
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| ProtocolError::Xml(e.to_string()))?;
        let key = local_name(attr.key.as_ref())?;
        if attr.key.as_ref().starts_with(b"xmlns") {
            continue;
        }
        let value = attr
            .unescape_value()
            .map_err(|e| ProtocolError::Xml(e.to_string()))?;
        recheck(&value)?;
        element.attrs.push((key, value.into_owned()));
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
fn recheck(value: &std::borrow::Cow<'_, str>) -> Result<(), ProtocolError> {
    match value {
        std::borrow::Cow::Borrowed(_) => Ok(()),
        std::borrow::Cow::Owned(owned) => xml_chars(owned),
    }
}

fn close(stack: &mut [Element], root: &mut Option<Element>, done: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(done),
        None => *root = Some(done),
    }
}

fn local_name(qualified: &[u8]) -> Result<String, ProtocolError> {
    let local = match qualified.iter().rposition(|&b| b == b':') {
        Some(i) => &qualified[i + 1..],
        None => qualified,
    };
    std::str::from_utf8(local)
        .map(str::to_owned)
        .map_err(|e| ProtocolError::BadUtf8 {
            at: e.valid_up_to(),
        })
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

    fn read(text: &str) -> Result<Element, ProtocolError> {
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
        let root = read(&w.finish()).unwrap();
        assert_eq!(root.attr("A"), Some("x\"<&>\ny"));
        assert_eq!(root.field("Name"), Some("a & b"));
        assert!(root.child("E").is_some());
    }
}
