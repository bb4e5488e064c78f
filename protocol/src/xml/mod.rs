//! A bounded, tolerant XML reader (the reading itself is in `read.rs`, the writer in
//! `write.rs`).
//!
//! Reading builds a [`Document`] (the elements in one vector, names and plain values borrowed
//! from the body) under hard caps (body size, depth, element count, attributes per element),
//! and refuses DTDs outright, so entity-expansion bombs never start. Names are compared by local
//! name (namespace prefixes dropped) without regard to ASCII case, and a field may be given as
//! an attribute or as a child element: the real schema is not public, so the reader accepts the
//! plausible spellings and ignores whatever it does not know.

use std::borrow::Cow;

use crate::error::ProtocolError;

/// Caps applied while reading.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
    /// Attributes on one element. Each name is checked against the element's others, so
    /// without a cap one tag of tens of thousands of attributes cost a quarter of a second a
    /// request (quick-xml's check was quadratic too).
    pub max_attributes: usize,
}

impl Limits {
    /// The caps for every message this protocol exchanges (they are all a few KiB at most).
    pub const MESSAGE: Limits = Limits {
        max_bytes: 64 * 1024,
        max_depth: 16,
        max_elements: 2048,
        max_attributes: 64,
    };
}

#[cfg(test)]
mod oracle;
mod read;
#[cfg(test)]
mod read_tests;
mod write;

pub use read::parse;
pub use write::{escape, Writer};

/// "No element": the end of a child or sibling list.
const NONE: u32 = u32::MAX;

/// A read document: every element in one vector in document order, every attribute in
/// another (an element's attributes are one run of it), children as linked lists. Names and
/// values are borrowed from the body where they can be (a name always is; a value only needs
/// its own string when it held a reference such as `&amp;`, or when an element's text comes in
/// several pieces). The tree of strings and vectors this replaced made about forty small
/// allocations per check, and moving its elements was a further 2 % of the stub's CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct Document<'a> {
    nodes: Vec<Node<'a>>,
    attrs: Vec<(&'a str, Cow<'a, str>)>,
}

#[derive(Debug, Clone, PartialEq)]
struct Node<'a> {
    name: &'a str,
    attrs: (u32, u32),
    first_child: u32,
    next_sibling: u32,
    text: Cow<'a, str>,
}

impl<'a> Document<'a> {
    /// The root element (a document read by [`parse`] always has one).
    pub fn root(&self) -> Element<'_> {
        Element { doc: self, at: 0 }
    }

    fn push_text(&mut self, at: u32, piece: Cow<'a, str>) {
        let text = &mut self.nodes[at as usize].text;
        match text {
            Cow::Borrowed("") => *text = piece,
            Cow::Borrowed(first) => {
                // The second piece: the blanks between a parent's children come a few bytes at
                // a time, so one buffer with room for the rest rather than a doubling each time.
                let mut joined = String::with_capacity((first.len() + piece.len()).max(64));
                joined.push_str(first);
                joined.push_str(&piece);
                *text = Cow::Owned(joined);
            }
            Cow::Owned(joined) => joined.push_str(&piece),
        }
    }
}

/// One element of a [`Document`]: local name, attributes (local names), children and
/// concatenated text.
#[derive(Debug, Clone, Copy)]
pub struct Element<'d> {
    doc: &'d Document<'d>,
    at: u32,
}

impl<'d> Element<'d> {
    fn node(&self) -> &'d Node<'d> {
        &self.doc.nodes[self.at as usize]
    }

    /// The local name (without a namespace prefix).
    pub fn name(&self) -> &'d str {
        self.node().name
    }

    pub fn is(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name)
    }

    /// Attributes as (local name, value), in document order; `xmlns` declarations are left out.
    pub fn attrs(&self) -> impl Iterator<Item = (&'d str, &'d str)> + 'd {
        let (start, end) = self.node().attrs;
        self.doc.attrs[start as usize..end as usize]
            .iter()
            .map(|(k, v)| (*k, v.as_ref()))
    }

    pub fn attr(&self, name: &str) -> Option<&'d str> {
        self.attrs()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The element's text: every text and CDATA piece directly inside it, concatenated.
    pub fn text(&self) -> &'d str {
        &self.node().text
    }

    pub fn children(&self) -> Children<'d> {
        Children {
            doc: self.doc,
            next: self.node().first_child,
        }
    }

    pub fn child(&self, name: &str) -> Option<Element<'d>> {
        self.children().find(|c| c.is(name))
    }

    pub fn children_named<'n>(&self, name: &'n str) -> impl Iterator<Item = Element<'d>> + 'n
    where
        'd: 'n,
    {
        self.children().filter(move |c| c.is(name))
    }

    /// A field given as an attribute or as a child element's text, trimmed; `None` when absent
    /// or blank.
    pub fn field(&self, name: &str) -> Option<&'d str> {
        let raw = self
            .attr(name)
            .or_else(|| self.child(name).map(|c| c.text()))?;
        let trimmed = raw.trim();
        (!trimmed.is_empty()).then_some(trimmed)
    }
}

/// The children of an [`Element`], in document order.
#[derive(Debug, Clone)]
pub struct Children<'d> {
    doc: &'d Document<'d>,
    next: u32,
}

impl<'d> Iterator for Children<'d> {
    type Item = Element<'d>;

    fn next(&mut self) -> Option<Element<'d>> {
        let at = self.next;
        let node = self.doc.nodes.get(at as usize)?;
        self.next = node.next_sibling;
        Some(Element { doc: self.doc, at })
    }
}

/// The body as text a reader may read: within the size cap, UTF-8, a leading byte-order mark
/// dropped, and no character XML 1.0 cannot carry.
fn checked_text(body: &[u8], limits: Limits) -> Result<&str, ProtocolError> {
    if body.len() > limits.max_bytes {
        return Err(ProtocolError::TooLarge {
            len: body.len(),
            cap: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(body).map_err(|e| ProtocolError::BadUtf8 {
        at: e.valid_up_to(),
    })?;
    let doc = text.strip_prefix('\u{feff}').unwrap_or(text);
    xml_chars(doc)?;
    Ok(doc)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Document<'_>, ProtocolError> {
        parse(text.as_bytes(), Limits::MESSAGE)
    }

    #[test]
    fn reads_fields_from_attributes_or_children_ignoring_prefixes_and_case() {
        let doc = read(
            r#"<?xml version="1.0"?><ns:Root xmlns:ns="urn:x" ns:Id="7"><NAME> a &amp; b </NAME><Extra/></ns:Root>"#,
        )
        .unwrap();
        let root = doc.root();
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
        // 64 attributes on an element are read, the 65th is refused (xmlns ones count: each is
        // checked against the others all the same).
        let attrs = |n: usize| {
            let list: String = (0..n).map(|i| format!(" a{i}='' xmlns:p{i}='u'")).collect();
            format!("<a{list}/>")
        };
        assert!(read(&attrs(32)).is_ok());
        assert!(matches!(
            read(&attrs(33)),
            Err(ProtocolError::XmlLimit {
                what: "attributes per element",
                limit: 64
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
        let doc = read("<a> \r\n\t<b/>\r\n&amp;<c> </c></a>").unwrap();
        assert_eq!(doc.root().text(), " \r\n\t\r\n&");
        assert_eq!(doc.root().child("c").unwrap().text(), " ");
    }

    /// Names and values without a reference are the document's own text; a value with one,
    /// or text that comes in several pieces, gets its own string (with the same content).
    #[test]
    fn plain_values_borrow_the_document() {
        let doc = read("<p:a x='1' p:y='&lt;'>t<![CDATA[c]]><b> plain </b></p:a>").unwrap();
        assert_eq!(doc.root().name(), "a");
        assert!(matches!(doc.attrs[0], ("x", Cow::Borrowed("1"))));
        assert!(matches!(&doc.attrs[1], ("y", Cow::Owned(v)) if v == "<"));
        assert!(matches!(doc.nodes[1].text, Cow::Borrowed(" plain ")));
        assert!(matches!(&doc.nodes[0].text, Cow::Owned(t) if t == "tc"));
        assert_eq!(doc.root().field("b"), Some("plain"));
    }

    /// Children and attributes belong to the element they were read in, in document order,
    /// however deep the siblings nest.
    #[test]
    fn children_and_attributes_keep_their_places() {
        let doc =
            read("<r k='0'><a n='1'>1</a><b><c m='x' n='y'/><d/></b><a>2</a><e/></r>").unwrap();
        let root = doc.root();
        let names: Vec<_> = root.children().map(|c| c.name()).collect();
        assert_eq!(names, ["a", "b", "a", "e"]);
        let b = root.child("b").unwrap();
        let inner: Vec<_> = b.children().map(|c| c.name()).collect();
        assert_eq!(inner, ["c", "d"]);
        assert_eq!(
            b.child("c").unwrap().attrs().collect::<Vec<_>>(),
            [("m", "x"), ("n", "y")]
        );
        assert_eq!(b.child("d").unwrap().attrs().count(), 0);
        assert_eq!(b.child("d").unwrap().children().count(), 0);
        let texts: Vec<_> = root.children_named("A").map(|c| c.text()).collect();
        assert_eq!(texts, ["1", "2"]);
        assert_eq!(root.attrs().collect::<Vec<_>>(), [("k", "0")]);
        assert_eq!(root.child("a").unwrap().attr("N"), Some("1"));
        assert!(root.child("c").is_none(), "a grandchild is not a child");
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
}
