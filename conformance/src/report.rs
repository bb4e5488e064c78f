//! The two forms of a conformance run: a plain-text table for people (stdout) and JUnit XML
//! for CI systems (GitLab, Jenkins, GitHub test reporters all read `testsuite` / `testcase` /
//! `failure` / `skipped`).

use std::fmt::Write as _;

use super::{CheckResult, Outcome};

/// One line per check (`RESULT  NAME  TIME  DETAIL`) and a summary line.
pub fn render_table(results: &[CheckResult]) -> String {
    let name_width = results
        .iter()
        .map(|r| r.name.len())
        .chain(["CHECK".len()])
        .max()
        .unwrap_or(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "RESULT  {:name_width$}  {:>8}  DETAIL",
        "CHECK", "TIME"
    );
    for r in results {
        let detail = one_line(&r.detail);
        let _ = writeln!(
            out,
            "{:6}  {:name_width$}  {:>8}  {detail}",
            r.outcome.as_str(),
            r.name,
            format!("{}ms", r.duration.as_millis()),
        );
    }
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    let _ = writeln!(
        out,
        "\n{} checks: {} passed, {} failed, {} skipped",
        results.len(),
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Skip)
    );
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A JUnit XML document with one `testsuite` named `suite` and one `testcase` per check:
/// failures carry `<failure>`, skips `<skipped>`, passes their detail in `<system-out>`.
pub fn junit_xml(results: &[CheckResult], suite: &str) -> String {
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    let total: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    let suite = escape(suite);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{suite}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{total:.3}\">",
        results.len(),
        count(Outcome::Fail),
        count(Outcome::Skip),
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{total:.3}\">",
        results.len(),
        count(Outcome::Fail),
        count(Outcome::Skip),
    );
    for r in results {
        let _ = write!(
            out,
            "    <testcase classname=\"{suite}\" name=\"{}\" time=\"{:.3}\">",
            escape(r.name),
            r.duration.as_secs_f64()
        );
        let detail = escape(&r.detail);
        match r.outcome {
            Outcome::Pass => {
                let _ = write!(out, "<system-out>{detail}</system-out>");
            }
            Outcome::Fail => {
                let _ = write!(
                    out,
                    "<failure message=\"{}\" type=\"conformance\">{detail}\n({})</failure>",
                    escape(&one_line(&r.detail)),
                    escape(r.description)
                );
            }
            Outcome::Skip => {
                let _ = write!(out, "<skipped message=\"{detail}\"/>");
            }
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Escapes text for XML content and attribute values (the protocol crate's escaping, which
/// also replaces what XML 1.0 cannot carry: a server's error body can hold anything).
fn escape(text: &str) -> String {
    ucupdate_protocol::xml::escape(text)
}
