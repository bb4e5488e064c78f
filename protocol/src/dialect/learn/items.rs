//! The repeated module elements of a captured check: when the phone lists several modules, the
//! element holding the first module's version has same-named siblings, one per module. They
//! become the template's `{{#modules}}...{{/modules}}` section: the first item (with its line's
//! indentation and line break) as the section's inside, the others replaced by it.

/// One element of the body: its raw (prefixed) name, its byte range and its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub start: usize,
    pub end: usize,
    pub parent: Option<usize>,
}

/// Every element in document order (the order of [`super::scan::Span::element_index`]).
/// The body is well formed ([`crate::xml::parse`] accepted it).
pub fn elements(text: &str) -> Vec<Element> {
    let bytes = text.as_bytes();
    let mut out: Vec<Element> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut i = 0;
    while let Some(lt) = text[i..].find('<').map(|p| i + p) {
        let rest = &text[lt..];
        let skip = |end: &str, i: &mut usize| {
            *i = lt + rest.find(end).map_or(rest.len(), |e| e + end.len());
        };
        if rest.starts_with("<!--") {
            skip("-->", &mut i);
        } else if rest.starts_with("<![CDATA[") {
            skip("]]>", &mut i);
        } else if rest.starts_with("<?") || rest.starts_with("<!") {
            skip(">", &mut i);
        } else if rest.starts_with("</") {
            skip(">", &mut i);
            if let Some(index) = open.pop() {
                out[index].end = i;
            }
        } else {
            // A start tag: its end is the first `>` outside quotes.
            let mut j = lt + 1;
            let mut quote = None;
            while j < bytes.len() {
                match (quote, bytes[j]) {
                    (None, b'"' | b'\'') => quote = Some(bytes[j]),
                    (Some(q), b) if b == q => quote = None,
                    (None, b'>') => break,
                    _ => {}
                }
                j += 1;
            }
            let name_end = text[lt + 1..]
                .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
                .map_or(bytes.len(), |e| lt + 1 + e);
            let empty = j > 0 && bytes.get(j - 1) == Some(&b'/');
            i = (j + 1).min(bytes.len());
            out.push(Element {
                name: text[lt + 1..name_end].to_owned(),
                start: lt,
                end: i,
                parent: open.last().copied(),
            });
            if !empty {
                open.push(out.len() - 1);
            }
        }
    }
    out
}

/// Where the module section is in the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    /// The bytes the section stands for: every item with its indentation and line break.
    pub start: usize,
    pub end: usize,
    /// The first item with its indentation and line break (the section's inside).
    pub first_end: usize,
    /// Each item's element range.
    pub items: Vec<(usize, usize)>,
}

/// The module items around element `at` (the first module's version is in it): its nearest
/// ancestor-or-self that has same-named siblings, separated by the same blank text each.
pub fn around(text: &str, elements: &[Element], at: usize) -> Option<Repeat> {
    let mut here = Some(at);
    while let Some(index) = here {
        let el = &elements[index];
        let siblings: Vec<&Element> = elements
            .iter()
            .filter(|e| e.parent == el.parent && e.name == el.name)
            .collect();
        if siblings.len() >= 2 && siblings[0].start == el.start {
            return layout(text, &siblings);
        }
        here = el.parent;
    }
    None
}

fn layout(text: &str, items: &[&Element]) -> Option<Repeat> {
    let gap = &text[items[0].end..items[1].start];
    let blank = |s: &str| s.chars().all(char::is_whitespace);
    if !blank(gap) || items.windows(2).any(|w| &text[w[0].end..w[1].start] != gap) {
        return None;
    }
    // The gap is the end of one item's line and the indentation of the next.
    let (trail, lead) = match gap.rfind('\n') {
        Some(nl) => gap.split_at(nl + 1),
        None => ("", gap),
    };
    let last = items[items.len() - 1];
    if !text[..items[0].start].ends_with(lead) || !text[last.end..].starts_with(trail) {
        return None;
    }
    Some(Repeat {
        start: items[0].start - lead.len(),
        end: last.end + trail.len(),
        first_end: items[0].end + trail.len(),
        items: items.iter().map(|e| (e.start, e.end)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_repeated_items_with_their_layout() {
        let text =
            "<r>\n  <m:P a=\"x\"><V>1.0.0.1</V></m:P>\n  <m:P a='>'><V>1.0.0.2</V></m:P>\n</r>\n";
        let els = elements(text);
        let names: Vec<&str> = els.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["r", "m:P", "V", "m:P", "V"]);
        assert_eq!(
            &text[els[1].start..els[1].end],
            "<m:P a=\"x\"><V>1.0.0.1</V></m:P>"
        );
        let r = around(text, &els, 2).unwrap();
        assert_eq!(
            &text[r.start..r.first_end],
            "  <m:P a=\"x\"><V>1.0.0.1</V></m:P>\n"
        );
        assert_eq!(
            &text[r.first_end..r.end],
            "  <m:P a='>'><V>1.0.0.2</V></m:P>\n"
        );
        assert_eq!(r.items.len(), 2);
        // One module: nothing repeats.
        let one = "<r><P><V>1.0.0.1</V></P></r>";
        assert_eq!(around(one, &elements(one), 2), None);
        let compact = "<r><P/><P/></r>";
        let r = around(compact, &elements(compact), 1).unwrap();
        assert_eq!((r.start, r.first_end, r.end), (3, 7, 11));
    }
}
