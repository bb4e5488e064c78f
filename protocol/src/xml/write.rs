//! The minimal XML writer every message and report uses: documents built as text, values
//! escaped, names fixed by the caller.

use super::is_xml_char;

/// Builds a document as text. Attribute values and text are escaped; names are ours and fixed.
pub struct Writer {
    out: String,
    open: Vec<&'static str>,
}

impl Writer {
    pub fn new() -> Self {
        // Room for a whole check request or reply (0.5-1 KB), which otherwise grew from the
        // declaration's 39 bytes by doubling: four reallocations and copies.
        let mut out = String::with_capacity(1024);
        out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        Writer {
            out,
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

/// Copies the runs that need nothing in one piece (most values are plain: a check's every
/// value was once pushed character by character, 4k of its 9.3k instructions) and writes the
/// others as [`escape_char`] says.
fn escape_into(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.bytes().position(may_need_escaping) {
        out.push_str(&rest[..at]);
        // `at` starts a character: every byte `may_need_escaping` takes is ASCII or 0xEF, a
        // lead byte, never a continuation byte.
        let tail = &rest[at..];
        let Some(c) = tail.chars().next() else { break };
        escape_char(out, c);
        rest = &tail[c.len_utf8()..];
    }
    out.push_str(rest);
}

/// Whether `b` may start a character [`escape_char`] changes: the markup characters, every C0
/// control, and 0xEF, the lead byte of U+FFFE and U+FFFF (and of other characters, which
/// `escape_char` then writes as they are).
fn may_need_escaping(b: u8) -> bool {
    b < 0x20 || matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'' | 0xEF)
}

fn escape_char(out: &mut String, c: char) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse, Limits};

    #[test]
    fn runs_are_copied_as_one_character_at_a_time_would_write_them() {
        // Each character on its own through `escape_char`: what the run copy must equal.
        let one_by_one = |text: &str| {
            let mut out = String::new();
            text.chars().for_each(|c| escape_char(&mut out, c));
            out
        };
        let samples = [
            "",
            "plain",
            "a & b",
            "<x y=\"1\">'z'</x>",
            "tab\there\r\nline",
            "\u{0}\u{1}\u{8}\u{b}\u{1f} controls",
            "\u{fffe}\u{ffff}\u{fffd}\u{feff}\u{f000} EF-led",
            "caf\u{e9} \u{1f4de} na\u{ef}ve \u{ef}",
            "&&&",
            "end&",
        ];
        for text in samples {
            assert_eq!(escape(text), one_by_one(text), "{text:?}");
        }
        assert_eq!(escape("\u{ffff}x\u{1}"), "\u{fffd}x\u{fffd}");
        assert_eq!(
            escape("\u{feff}"),
            "\u{feff}",
            "other 0xEF-led characters stay"
        );
    }

    #[test]
    fn writer_output_reads_back() {
        let mut w = Writer::new();
        w.open("Root", &[("A", "x\"<&>\ny")]);
        w.leaf("Name", "a & b");
        w.empty("E", &[]);
        let text = w.finish();
        let doc = parse(text.as_bytes(), Limits::MESSAGE).unwrap();
        let root = doc.root();
        assert_eq!(root.attr("A"), Some("x\"<&>\ny"));
        assert_eq!(root.field("Name"), Some("a & b"));
        assert!(root.child("E").is_some());
    }
}
