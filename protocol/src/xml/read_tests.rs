//! The reader against the oracle it replaced (quick-xml's event reader, `oracle.rs`): on
//! well-formed documents both read the same document; on anything at all, what the reader
//! accepts the oracle accepted too, read the same way. The reader is stricter in a few
//! documented places; those are listed here, each one refused.

use std::path::Path;

use proptest::prelude::*;

use super::{oracle, parse, Document, Limits};
use crate::error::ProtocolError;

fn new(text: &[u8]) -> Result<Document<'_>, ProtocolError> {
    parse(text, Limits::MESSAGE)
}

fn old(text: &[u8]) -> Result<Document<'_>, ProtocolError> {
    oracle::parse(text, Limits::MESSAGE)
}

/// What both readers must agree on: an accepted body was accepted before, read the same way.
fn never_looser(text: &[u8]) -> Result<(), String> {
    match (new(text), old(text)) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Ok(a), Ok(b)) => Err(format!("read differently:\n new {a:?}\n old {b:?}")),
        (Ok(_), Err(e)) => Err(format!("accepted what quick-xml refused ({e})")),
        (Err(_), _) => Ok(()),
    }
}

/// A name as a document may write it: plain, prefixed, with a dot, a dash or a letter past
/// ASCII, in any case.
fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a",
        "B",
        "Module",
        "p:c",
        "ns:Root",
        "d-1",
        "e.f",
        "g_h",
        "\u{e9}t\u{e9}",
        "x",
    ])
    .prop_map(str::to_owned)
}

/// Text or an attribute value: plain runs, blanks (CR, LF, tab), non-ASCII, and every kind of
/// reference the reader expands.
fn value(quote: Option<char>) -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "x",
        " ",
        "\r\n",
        "\t",
        "1.0.522.101",
        "\u{e9}",
        "\u{1f600}",
        "&amp;",
        "&lt;",
        "&gt;",
        "&apos;",
        "&quot;",
        "&#65;",
        "&#x41;",
        "&#x1F600;",
        "&#233;",
        ">",
        ";",
        "]",
    ]);
    prop::collection::vec(piece, 0..6).prop_map(move |pieces| {
        let text = pieces.concat();
        // A value never holds its own quote raw (the reference stands in for it).
        match quote {
            Some('"') => text.replace('"', "&quot;"),
            Some(q) => text.replace(q, "&apos;"),
            None => text,
        }
    })
}

#[derive(Debug, Clone)]
enum Item {
    Element(Tree),
    Text(String),
    CData(String),
    Comment(String),
    Pi,
}

#[derive(Debug, Clone)]
struct Tree {
    name: String,
    attrs: Vec<(String, String, char, &'static str)>,
    items: Vec<Item>,
    /// `/>` or ` />` when there are no items; ignored otherwise.
    empty: Option<&'static str>,
    /// White space before the end tag's `>`.
    end_space: &'static str,
}

fn tree() -> impl Strategy<Value = Tree> {
    let attr = (
        prop::sample::select(vec!["k", "Id", "p:v", "xmlns", "xmlns:p", "n-2"]),
        prop::sample::select(vec!['"', '\'']),
        prop::sample::select(vec!["=", " = ", "\n=\t"]),
    )
        .prop_flat_map(|(key, quote, eq)| {
            value(Some(quote)).prop_map(move |v| (key.to_owned(), v, quote, eq))
        });
    let attrs = prop::collection::vec(attr, 0..4).prop_map(|mut attrs| {
        // Each name once: a repeated attribute is refused by both readers.
        let mut seen = std::collections::HashSet::new();
        attrs.retain(|(k, ..)| seen.insert(k.clone()));
        attrs
    });
    let leaf = (
        name(),
        attrs.clone(),
        prop::sample::select(vec![Some("/>"), Some(" />"), None]),
    )
        .prop_map(|(name, attrs, empty)| Tree {
            name,
            attrs,
            items: Vec::new(),
            empty,
            end_space: "",
        });
    leaf.prop_recursive(4, 24, 5, move |inner| {
        let item = prop_oneof![
            3 => inner.prop_map(Item::Element),
            3 => value(None).prop_map(Item::Text),
            1 => value(None).prop_map(|v| Item::CData(v.replace(']', "["))),
            1 => "[a-z -]{0,6}".prop_map(|c| Item::Comment(c.replace("--", "-"))),
            1 => Just(Item::Pi),
        ];
        (
            name(),
            attrs.clone(),
            prop::collection::vec(item, 0..5),
            prop::sample::select(vec!["", " ", "\r\n"]),
        )
            .prop_map(|(name, attrs, items, end_space)| Tree {
                name,
                attrs,
                items,
                empty: None,
                end_space,
            })
    })
}

fn write(tree: &Tree, out: &mut String) {
    out.push('<');
    out.push_str(&tree.name);
    for (key, value, quote, eq) in &tree.attrs {
        out.push_str(&format!(" {key}{eq}{quote}{value}{quote}"));
    }
    if let (Some(empty), true) = (tree.empty, tree.items.is_empty()) {
        out.push_str(empty);
        return;
    }
    out.push('>');
    for item in &tree.items {
        match item {
            Item::Element(child) => write(child, out),
            Item::Text(text) => out.push_str(text),
            Item::CData(data) => out.push_str(&format!("<![CDATA[{data}]]>")),
            Item::Comment(c) => out.push_str(&format!("<!--{c}-->")),
            Item::Pi => out.push_str("<?pi some ?data?>"),
        }
    }
    out.push_str(&format!("</{}{}>", tree.name, tree.end_space));
}

/// Markup fragments, shuffled into every kind of broken document.
const TOKENS: &[&str] = &[
    "<a",
    "<b",
    "<p:a",
    "</a>",
    "</b>",
    "</a >",
    "</",
    ">",
    "/>",
    "/",
    " ",
    "\n",
    "x='1'",
    "y=\"2\"",
    "x = '3'",
    "='",
    "'",
    "\"",
    "=",
    "&amp;",
    "&lt;",
    "&#65;",
    "&#x;",
    "&#0;",
    "&",
    ";",
    "&bogus;",
    "<!--",
    "-->",
    "--",
    "<![CDATA[",
    "]]>",
    "]",
    "<?",
    "?>",
    "?",
    "<?xml ",
    "<!DOCTYPE",
    "<!",
    "text",
    "\u{e9}",
    "xmlns='u'",
    "<",
    "<>",
    "< a>",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A well-formed document: both readers accept it and read the same document.
    #[test]
    fn well_formed_documents_read_as_quick_xml_read_them(
        tree in tree(),
        decl in prop::sample::select(vec!["", "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n", "\u{feff}"]),
        tail in prop::sample::select(vec!["", "\n", "<!-- end -->", " <?x?> "]),
    ) {
        let mut text = decl.to_owned();
        write(&tree, &mut text);
        text.push_str(tail);
        let read = new(text.as_bytes());
        prop_assert!(read.is_ok(), "{text:?}: {read:?}");
        prop_assert_eq!(read.unwrap(), old(text.as_bytes()).unwrap(), "{:?}", text);
    }

    /// Anything at all: the reader never accepts what quick-xml refused, nor reads it otherwise.
    #[test]
    fn nothing_quick_xml_refused_is_accepted(
        tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..24),
        wrap in any::<bool>(),
    ) {
        let mut text = tokens.concat();
        if wrap {
            text = format!("<r>{text}</r>");
        }
        prop_assert_eq!(never_looser(text.as_bytes()), Ok(()), "{:?}", text);
    }
}

/// Every body the fuzzers kept and every fixture: accepted exactly when quick-xml accepted it,
/// and read the same way.
#[test]
fn the_fuzz_corpus_and_the_fixtures_read_as_before() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("tests/fixtures")];
    for entry in std::fs::read_dir(root.join("../fuzz/corpus")).unwrap() {
        dirs.push(entry.unwrap().path());
    }
    let (mut read, mut accepted) = (0, 0);
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.is_file() {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            if let Err(e) = never_looser(&bytes) {
                panic!("{}: {e}", path.display());
            }
            assert_eq!(
                new(&bytes).is_ok(),
                old(&bytes).is_ok(),
                "{}: refused by one reader only",
                path.display()
            );
            read += 1;
            accepted += usize::from(new(&bytes).is_ok());
        }
    }
    assert!(
        read > 100 && accepted > 20,
        "{read} inputs, {accepted} accepted"
    );
}

/// Where the reader is stricter than quick-xml, by XML 1.0's rules: quick-xml took each of
/// these, the reader refuses them.
#[test]
fn the_few_places_it_is_stricter_than_quick_xml() {
    for text in [
        // Attributes not separated by white space.
        "<a x='1'y='2'/>",
        // An empty element name (quick-xml read `< >` as an element named ``).
        "<a>< ></></a>",
        // `=` or `<` inside a name.
        "<a=b/>",
        "<a<b></a<b>",
        // A `/` that does not end the tag.
        "<a/ ></a/>",
    ] {
        assert!(
            old(text.as_bytes()).is_ok(),
            "{text:?}: quick-xml refused it"
        );
        assert!(new(text.as_bytes()).is_err(), "{text:?}: accepted");
    }
}

/// The reader's errors say what is wrong and where.
#[test]
fn errors_name_the_place() {
    let cases = [
        ("<a><b></a>", "the end tag at byte 6 does not close <b>"),
        ("<a x='1' x='2'/>", "attribute `x` given twice"),
        ("<a x=1/>", "a quoted value expected for attribute `x`"),
        ("<a><!-- x</a>", "comment at byte 3 is not closed"),
        ("<a>&nbsp;</a>", "unknown entity `&nbsp;`"),
        (
            "<a>&#xD800;</a>",
            "character reference `&#xD800;` is not a character",
        ),
        ("<a>x & y</a>", "an `&` without its `;`"),
        (
            "<!ELEMENT a><a/>",
            "`<!` at byte 0 opens neither a comment nor CDATA",
        ),
    ];
    for (text, want) in cases {
        match new(text.as_bytes()) {
            Err(ProtocolError::Xml(m)) => assert_eq!(m, want, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}
