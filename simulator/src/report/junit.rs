//! JUnit XML of a report, for CI test reporters (GitLab, Jenkins, GitHub all read `testsuite` /
//! `testcase` / `failure`): one test case for the fleet's verdicts, one per threshold, and one
//! for a partial merge or an interrupted run, each failing with what went wrong.

use std::fmt::Write as _;

use super::Report;

/// A test case: its name, and its failure (message, body) if it failed.
struct Case {
    name: String,
    failure: Option<(String, String)>,
}

fn cases(r: &Report) -> Vec<Case> {
    let mut cases = Vec::new();
    let failed = r.verdicts.failed
        + r.devices
            .saturating_sub(r.verdicts.passed + r.verdicts.failed);
    cases.push(Case {
        name: "verdicts".into(),
        failure: (failed > 0).then(|| {
            let reasons = r.verdicts.reason_counts();
            let mut body = String::new();
            for v in r.verdicts.failures.iter().take(100) {
                let _ = writeln!(
                    body,
                    "device {} ({}): expected {}, reached {}: {} (explain: --trace-device {})",
                    v.device, v.profile, v.expected, v.reached, v.reason, v.device
                );
            }
            (
                format!(
                    "{failed} of {} devices failed: {}",
                    r.devices,
                    reasons.join(" ")
                ),
                body,
            )
        }),
    });
    for t in &r.thresholds {
        cases.push(Case {
            name: format!("threshold {}", t.expression),
            failure: (!t.passed)
                .then(|| (format!("observed {}", t.observed_text()), String::new())),
        });
    }
    if let Some(a) = &r.aborted {
        cases.push(Case {
            name: "run completed".into(),
            failure: Some((
                format!(
                    "aborted at virtual {} ms: threshold {} failed (observed {})",
                    a.at_virtual_ms,
                    a.threshold.expression,
                    a.threshold.observed_text()
                ),
                String::new(),
            )),
        });
    }
    if let Some(i) = &r.interrupted {
        cases.push(Case {
            name: "run completed".into(),
            failure: Some((
                format!(
                    "interrupted by {} at virtual {} ms",
                    i.signal, i.at_virtual_ms
                ),
                String::new(),
            )),
        });
    }
    if r.is_partial() {
        cases.push(Case {
            name: "all shards merged".into(),
            failure: Some((
                format!("shards {} missing", r.missing_shards.join(", ")),
                String::new(),
            )),
        });
    }
    cases
}

/// The report as a JUnit document with one `testsuite` named after the scenario.
pub fn render(r: &Report) -> String {
    let cases = cases(r);
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let suite = esc(&format!("ucupdate-sim {}", r.scenario));
    let time = r.wall_ms as f64 / 1000.0;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{suite}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">",
        cases.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{time:.3}\">",
        cases.len()
    );
    for c in &cases {
        let _ = write!(
            out,
            "    <testcase classname=\"{suite}\" name=\"{}\" time=\"0\">",
            esc(&c.name)
        );
        if let Some((message, body)) = &c.failure {
            let _ = write!(
                out,
                "<failure message=\"{}\" type=\"ucupdate-sim\">{}</failure>",
                esc(message),
                esc(body)
            );
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// XML escaping (the protocol crate's, which also replaces what XML 1.0 cannot carry).
fn esc(text: &str) -> String {
    ucupdate_protocol::xml::escape(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_thresholds_are_test_cases() {
        let mut r = crate::report::tests::sample("0/1", 5, 1);
        r.apply_thresholds(
            &crate::thresholds::parse_all(&["check-internal.p99<1s", "errors.rate<1%"]).unwrap(),
        );
        let xml = render(&r);
        assert!(xml.contains(r#"tests="3" failures="2""#), "{xml}");
        assert!(
            xml.contains(r#"name="threshold check-internal.p99&lt;1s" time="0"></testcase>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<failure message="observed 10.00%""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<failure message="1 of 5 devices failed: stuck=1""#),
            "{xml}"
        );
        assert!(xml.contains("--trace-device 5"), "{xml}");
    }
}
