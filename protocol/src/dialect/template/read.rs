//! Reading a body back through its template: the inverse of [`Template::render`], so a stub
//! standing in for a pool of a dialect (and `dialect check`) can read a check in that dialect.
//!
//! Literals must match byte for byte. A value is what [`Template::render`] could have written
//! there: XML-escaped text, so it never holds `<`, `>`, `"`, `'` or a raw line break, and it
//! ends where what follows it matches (the shortest such reading is tried first). An optional
//! section is tried with its inside, then without. A list takes as many items as match, one
//! after the other (an item ends where its inside does): it never gives an item back, which
//! keeps the work linear in the body for every template a dialect can hold. A step budget
//! bounds the rest (adjacent values), so a hostile body costs bounded time and no stack.

use super::{MatchError, Node, Template};

/// Named values as read, in body order.
pub type Values = Vec<(String, String)>;

/// The values read from a body, as written (still XML-escaped), in body order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub values: Values,
    /// Per list of the template, its items' values, in order.
    pub lists: Vec<(String, Vec<Values>)>,
}

/// Work one read may do before it gives up (each try of a node, or of a value's end, is one
/// step, and so are each 16 bytes a value's end is looked for in).
const STEP_BUDGET: usize = 100_000;
/// Items one list may hold (the stub's module cap is far lower).
pub const MAX_ITEMS: usize = 1024;

/// What follows the nodes being matched: more nodes of an enclosing sequence, or the end.
enum Cont<'n, 'k> {
    /// The end of the body (`whole`), or of a list item (anywhere).
    Done {
        whole: bool,
    },
    Then(&'n [Node], &'k Cont<'n, 'k>),
}

/// A value while reading: its name and where it is in the body (copied out once at the end).
type Span<'n> = (&'n str, usize, usize);

#[derive(Default)]
struct Spans<'n> {
    values: Vec<Span<'n>>,
    lists: Vec<(&'n str, Vec<Vec<Span<'n>>>)>,
}

struct Reader<'b> {
    body: &'b str,
    steps: usize,
    /// Where the body left the template, as far in as any reading got.
    furthest: usize,
    exhausted: bool,
    /// Where the last successful item ended.
    end: usize,
}

impl Template {
    /// Reads the values back out of `body`; `Err` says where the body leaves the template.
    pub fn read(&self, body: &str) -> Result<Captured, MatchError> {
        let mut r = Reader {
            body,
            steps: 0,
            furthest: 0,
            exhausted: false,
            end: 0,
        };
        let mut spans = Spans::default();
        if r.seq(&self.nodes, 0, &Cont::Done { whole: true }, &mut spans) {
            let copy = |v: &[Span<'_>]| {
                v.iter()
                    .map(|(n, a, b)| ((*n).to_owned(), body[*a..*b].to_owned()))
                    .collect::<Vec<_>>()
            };
            return Ok(Captured {
                values: copy(&spans.values),
                lists: spans
                    .lists
                    .iter()
                    .map(|(n, items)| ((*n).to_owned(), items.iter().map(|i| copy(i)).collect()))
                    .collect(),
            });
        }
        if r.exhausted {
            return Err(MatchError::TooComplex);
        }
        Err(MatchError::Differs { at: r.furthest })
    }
}

/// The longest run at the start of `text` a rendered value could fill.
fn value_run(text: &str) -> usize {
    text.find(|c: char| matches!(c, '<' | '>' | '"' | '\'') || c.is_control())
        .unwrap_or(text.len())
}

impl Reader<'_> {
    fn differs(&mut self, at: usize) {
        self.furthest = self.furthest.max(at);
    }

    /// Counts one step; `false` once the budget is spent.
    fn step(&mut self) -> bool {
        self.steps += 1;
        if self.steps > STEP_BUDGET {
            self.exhausted = true;
        }
        !self.exhausted
    }

    /// Matches `nodes` at `at`, then `k`. On failure `caps` is as it was.
    fn seq<'n>(
        &mut self,
        nodes: &'n [Node],
        at: usize,
        k: &Cont<'n, '_>,
        caps: &mut Spans<'n>,
    ) -> bool {
        if !self.step() {
            return false;
        }
        let Some((node, rest)) = nodes.split_first() else {
            return match k {
                Cont::Done { whole } => {
                    if *whole && at != self.body.len() {
                        self.differs(at);
                        return false;
                    }
                    self.end = at;
                    true
                }
                Cont::Then(more, k) => self.seq(more, at, k, caps),
            };
        };
        match node {
            Node::Literal(lit) => {
                if self.body[at..].starts_with(lit.as_str()) {
                    return self.seq(rest, at + lit.len(), k, caps);
                }
                let same = self.body[at..]
                    .bytes()
                    .zip(lit.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                self.differs(at + same);
                false
            }
            Node::Value(name) => {
                let run = value_run(&self.body[at..]);
                // Looking through the run costs in proportion to its length.
                self.steps += run / 16;
                let next = match rest.first() {
                    Some(Node::Literal(l)) => Some(l.as_str()),
                    _ => None,
                };
                // Where the value may end: where the literal after it starts (found, not
                // walked to), else at every character of the run.
                let body = self.body;
                let ends: Box<dyn Iterator<Item = usize>> = match next {
                    Some(l) => Box::new(
                        body[at..]
                            .match_indices(l)
                            .map(move |(i, _)| at + i)
                            .take_while(move |e| *e <= at + run),
                    ),
                    None => Box::new(
                        body[at..at + run]
                            .char_indices()
                            .map(move |(i, _)| at + i)
                            .chain([at + run]),
                    ),
                };
                for end in ends {
                    if !self.step() {
                        return false;
                    }
                    caps.values.push((name, at, end));
                    if self.seq(rest, end, k, caps) {
                        return true;
                    }
                    caps.values.pop();
                    if self.exhausted {
                        return false;
                    }
                }
                // What follows the value never matched: it differs right after the run.
                self.differs(at + run);
                false
            }
            Node::Each(name, inner) => {
                let mut items = Vec::new();
                let mut pos = at;
                while items.len() < MAX_ITEMS {
                    let mut item = Spans::default();
                    if !self.seq(inner, pos, &Cont::Done { whole: false }, &mut item)
                        || self.end == pos
                    {
                        // No further item (an empty one would repeat forever).
                        break;
                    }
                    items.push(item.values);
                    pos = self.end;
                }
                if self.exhausted {
                    return false;
                }
                caps.lists.push((name, items));
                if self.seq(rest, pos, k, caps) {
                    return true;
                }
                caps.lists.pop();
                false
            }
            Node::IfPresent(_, inner) | Node::IfAbsent(_, inner) => {
                if self.seq(inner, at, &Cont::Then(rest, k), caps) {
                    return true;
                }
                self.seq(rest, at, k, caps)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Context, Vocabulary};
    use super::*;

    const VOCAB: Vocabulary = Vocabulary {
        values: &["a", "b"],
        lists: &[("items", &["x", "y"])],
    };

    fn t(source: &str) -> Template {
        Template::parse(source, &VOCAB).unwrap()
    }

    #[test]
    fn reads_values_optional_sections_and_lists() {
        let tpl = t("<r a=\"{{a}}\">{{?b}}<b>{{b}}</b>{{/b}}{{#items}}<i x=\"{{x}}\"{{?y}} y=\"{{y}}\"{{/y}}/>{{/items}}</r>");
        let mut c = Context::new();
        c.set("a", Some("1&2"));
        let item = |x: &str, y: Option<&str>| {
            let mut i = Context::new();
            i.set("x", Some(x)).set("y", y);
            i
        };
        c.list(
            "items",
            vec![item("p", None), item("q", Some("z")), item("", None)],
        );
        let body = tpl.render(&c);
        let got = tpl.read(&body).unwrap();
        assert_eq!(got.values, vec![("a".to_owned(), "1&amp;2".to_owned())]);
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            got.lists,
            vec![(
                "items".to_owned(),
                vec![
                    vec![pair("x", "p")],
                    vec![pair("x", "q"), pair("y", "z")],
                    vec![pair("x", "")]
                ]
            )]
        );
        c.set("b", Some("B"));
        c.list("items", Vec::new());
        let got = tpl.read(&tpl.render(&c)).unwrap();
        assert_eq!(got.values[1], pair("b", "B"));
        assert_eq!(got.lists[0].1.len(), 0);
    }

    #[test]
    fn says_where_a_body_leaves_the_template() {
        let tpl = t("<r>{{a}}</r>\n");
        assert_eq!(tpl.read("<r>x</q>\n"), Err(MatchError::Differs { at: 4 }));
        assert_eq!(tpl.read("<s>x</r>\n"), Err(MatchError::Differs { at: 1 }));
        assert_eq!(
            tpl.read("<r>x</r>\nmore"),
            Err(MatchError::Differs { at: 9 })
        );
        // A value never spans markup.
        assert!(tpl.read("<r><x/></r>\n").is_err());
        assert!(tpl.read("").is_err());
    }

    #[test]
    fn adjacent_values_on_a_hostile_body_end_in_bounded_time() {
        let tpl = t("{{a}}{{b}}{{a}}{{b}}{{a}}{{b}}!");
        let body = "x".repeat(60_000);
        assert_eq!(tpl.read(&body), Err(MatchError::TooComplex));
        let many = t("{{#items}}<i>{{x}}</i>{{/items}}");
        assert!(many.read(&"<i>1</i>".repeat(MAX_ITEMS + 1)).is_err());
        assert_eq!(
            many.read(&"<i>1</i>".repeat(MAX_ITEMS)).unwrap().lists[0]
                .1
                .len(),
            MAX_ITEMS
        );
    }
}
