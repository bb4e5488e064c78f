//! Where the values of a captured XML body are: every attribute value and every element's text,
//! with its byte span in the raw body, so a learned template keeps every other byte as it was.

/// One value of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    /// The raw text (only values without entity references are taken: raw equals value).
    pub value: String,
    /// The attribute's local name, or the element's for text.
    pub field: String,
    /// The element the value belongs to (its local name), and its index among all elements.
    pub element: String,
    pub element_index: usize,
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// Scans a body already accepted by [`crate::xml::parse`] (so it is well formed).
pub fn values(text: &str) -> Vec<Span> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut count = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            let end = text[i..].find('<').map_or(bytes.len(), |e| i + e);
            let raw = &text[i..end];
            let trimmed = raw.trim();
            if let Some((name, index)) = open.last() {
                if !trimmed.is_empty() && !trimmed.contains('&') {
                    let start = i + (raw.len() - raw.trim_start().len());
                    out.push(Span {
                        start,
                        end: start + trimmed.len(),
                        value: trimmed.to_owned(),
                        field: name.clone(),
                        element: name.clone(),
                        element_index: *index,
                    });
                }
            }
            i = end;
            continue;
        }
        let rest = &text[i..];
        if rest.starts_with("<!--") {
            i += rest.find("-->").map_or(rest.len(), |e| e + 3);
            continue;
        }
        if rest.starts_with("<?") || rest.starts_with("<!") {
            i += rest.find('>').map_or(rest.len(), |e| e + 1);
            continue;
        }
        if rest.starts_with("</") {
            open.pop();
            i += rest.find('>').map_or(rest.len(), |e| e + 1);
            continue;
        }
        // A start tag: name, then attributes name="value" / name='value'.
        let mut j = i + 1;
        while j < bytes.len()
            && !bytes[j].is_ascii_whitespace()
            && bytes[j] != b'>'
            && bytes[j] != b'/'
        {
            j += 1;
        }
        let name = local(&text[i + 1..j]).to_owned();
        let index = count;
        count += 1;
        loop {
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= bytes.len() {
                break;
            }
            if bytes[j] == b'>' {
                open.push((name.clone(), index));
                j += 1;
                break;
            }
            if bytes[j] == b'/' {
                j += 2;
                break;
            }
            let key_start = j;
            while j < bytes.len() && bytes[j] != b'=' && !bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            let key = &text[key_start..j];
            while j < bytes.len() && bytes[j] != b'"' && bytes[j] != b'\'' {
                j += 1;
            }
            let quote = bytes[j];
            let value_start = j + 1;
            let value_end = text[value_start..]
                .find(quote as char)
                .map_or(bytes.len(), |e| value_start + e);
            let value = &text[value_start..value_end];
            if !key.starts_with("xmlns") && !value.is_empty() && !value.contains('&') {
                out.push(Span {
                    start: value_start,
                    end: value_end,
                    value: value.to_owned(),
                    field: local(key).to_owned(),
                    element: name.clone(),
                    element_index: index,
                });
            }
            j = value_end + 1;
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_attribute_and_text_values_with_their_spans() {
        let text = "<?xml version=\"1.0\"?>\n<a:R xmlns:a=\"urn:x\" a:k='v1'>\n  <a:T> hi </a:T><E x=\"1\"/><!-- <no/> --><F>&amp;</F></a:R>";
        let spans = values(text);
        let got: Vec<(&str, &str, &str)> = spans
            .iter()
            .map(|s| (s.field.as_str(), s.element.as_str(), &text[s.start..s.end]))
            .collect();
        assert_eq!(
            got,
            vec![("k", "R", "v1"), ("T", "T", "hi"), ("x", "E", "1")]
        );
    }
}
