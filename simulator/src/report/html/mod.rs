//! A self-contained HTML report: inline CSS and SVG drawn with `plotters` (see [`plots`]), no
//! scripts, no external assets, so it opens from a CI artifact store or an e-mail. Every section
//! has a stable id (`thresholds`, `latency`, `over-time`, `rollout`, `arrivals`, `convergence`,
//! `phase-time`, `errors`, `tls`, `faults`, `failures`), and so does every plot
//! (`latency-plot`, `latency-over-time`, `requests-over-time`, `rollout-curve`,
//! `requests-plot`): the CI check opens the page in headless Chromium and looks for each.

mod plots;

use std::fmt::Write as _;

use plots::{Line, BLUE, GREEN, ORANGE, PURPLE, RED};

use super::{Percentiles, Report};
use crate::duration::format_duration;

/// Every section of the page, in order (the CI check's list).
pub const SECTIONS: [&str; 11] = [
    "thresholds",
    "latency",
    "over-time",
    "rollout",
    "arrivals",
    "convergence",
    "phase-time",
    "errors",
    "tls",
    "faults",
    "failures",
];

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn vtime(ms: u64) -> String {
    format_duration(std::time::Duration::from_millis(ms))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:980px}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}\
th{background:#eee}td:first-child{text-align:left}figure.plot{margin:0.5em 0}figure.plot svg{width:100%;height:auto;border:1px solid #ddd}\
.PASS{color:#2a7}.FAIL{color:#c33}.warn{color:#a60}";

fn section(html: &mut String, id: &str, title: &str) {
    let _ = write!(html, r#"<section id="{id}"><h2>{title}</h2>"#);
}

fn percentile_cells(p: &Percentiles) -> String {
    format!(
        "<td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td>",
        p.count, p.p50, p.p90, p.p95, p.p99, p.p99_9, p.max
    )
}

const PERCENTILE_HEAD: &str =
    "<th>count</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th>";

/// A two-column table of counts, or a line saying there were none.
fn counts_table(
    html: &mut String,
    head: &str,
    rows: &std::collections::BTreeMap<String, u64>,
    none: &str,
) {
    if rows.is_empty() {
        let _ = write!(html, "<p>{none}</p>");
        return;
    }
    let _ = write!(html, "<table><tr><th>{head}</th><th>count</th></tr>");
    for (k, n) in rows {
        let _ = write!(html, "<tr><td>{}</td><td>{n}</td></tr>", esc(k));
    }
    html.push_str("</table>");
}

fn header(html: &mut String, r: &Report) {
    let status = if r.passed() { "PASS" } else { "FAIL" };
    let _ = write!(
        html,
        r#"<h1>Scenario {} <span id="verdict" class="{status}">{status}</span></h1><p>{}</p>
<p>{} of {} devices met expectations; seed {}; shards {}; server {}; virtual time {} in {:.1} s wall (time scale {}); {} requests; {:.1} MiB downloaded.</p>
"#,
        esc(&r.scenario),
        esc(&r.description),
        r.verdicts.passed,
        r.devices,
        r.seed,
        esc(&r.shards.join(", ")),
        esc(&r.server),
        vtime(r.virtual_duration_ms),
        r.wall_ms as f64 / 1000.0,
        esc(&r.time_scale),
        r.total_requests(),
        r.bytes_downloaded as f64 / 1048576.0
    );
    if let Some(a) = &r.aborted {
        let _ = write!(
            html,
            r#"<p id="aborted" class="FAIL">Aborted at virtual {}: threshold {} failed (observed {}) with --abort-on-fail.</p>"#,
            vtime(a.at_virtual_ms),
            esc(&a.threshold.expression),
            esc(&a.threshold.observed_text())
        );
    }
    if let Some(i) = &r.interrupted {
        let _ = write!(
            html,
            r#"<p id="interrupted" class="FAIL">Interrupted by {} at virtual {}: the fleet was stopped early; the verdicts are as things stood.</p>"#,
            esc(&i.signal),
            vtime(i.at_virtual_ms)
        );
    }
    if r.is_partial() {
        let _ = write!(
            html,
            r#"<p id="partial" class="FAIL">Partial: shards {} missing (merged with --allow-partial); this report does not cover the fleet.</p>"#,
            esc(&r.missing_shards.join(", "))
        );
    }
    if !r.clock.is_empty() {
        let _ = write!(
            html,
            r#"<p id="clock">Common clock: virtual 0 at {} (--start-at).</p><ul>"#,
            esc(&crate::start::format_rfc3339(r.start_unix_ms))
        );
        for c in &r.clock {
            let _ = write!(html, "<li>{}</li>", esc(&super::clock::describe(c)));
        }
        html.push_str("</ul>");
    }
    if !r.warnings.is_empty() {
        html.push_str(r#"<ul id="warnings" class="warn">"#);
        for w in &r.warnings {
            let _ = write!(html, "<li>Warning: {}</li>", esc(w));
        }
        html.push_str("</ul>");
    }
}

fn thresholds(html: &mut String, r: &Report) {
    section(html, "thresholds", "Thresholds");
    if r.thresholds.is_empty() {
        html.push_str(
            "<p>No thresholds (set them in the scenario's [thresholds] or with --threshold).</p>",
        );
    } else {
        html.push_str("<table><tr><th>threshold</th><th>observed</th><th>result</th></tr>");
        for t in &r.thresholds {
            let result = if t.passed { "PASS" } else { "FAIL" };
            let _ = write!(
                html,
                r#"<tr><td>{}</td><td>{}</td><td class="{result}">{result}</td></tr>"#,
                esc(&t.expression),
                esc(&t.observed_text())
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</section>");
}

fn latency(html: &mut String, r: &Report) {
    section(html, "latency", "Latency per endpoint (ms)");
    let groups: Vec<(String, Vec<f64>)> = r
        .endpoints
        .iter()
        .map(|(e, s)| {
            let p = &s.service_ms;
            (e.clone(), vec![p.p50, p.p90, p.p95, p.p99, p.p99_9])
        })
        .collect();
    html.push_str(&plots::grouped_bars(
        "latency-plot",
        "Service time percentiles per endpoint",
        &groups,
        &[
            ("p50", BLUE),
            ("p90", GREEN),
            ("p95", PURPLE),
            ("p99", ORANGE),
            ("p99.9", RED),
        ],
    ));
    let _ = write!(
        html,
        "<table><tr><th>endpoint</th><th>requests</th><th>errors</th><th>latency</th>{PERCENTILE_HEAD}</tr>"
    );
    for (e, s) in &r.endpoints {
        for (label, p) in [
            ("service time", &s.service_ms),
            ("from intended send", &s.intended_ms),
        ] {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{label}</td>{}</tr>",
                esc(e),
                s.requests,
                s.errors,
                percentile_cells(p)
            );
        }
    }
    let lag = r.lag_ms;
    let _ = write!(
        html,
        r#"</table><p id="lag">Lag behind schedule (wall ms): {}</p></section>"#,
        if lag.count == 0 {
            "none measured (time scale max: as fast as the client can go)".to_owned()
        } else {
            format!("p50 {:.2}, p99 {:.2}, max {:.2}", lag.p50, lag.p99, lag.max)
        }
    );
}

fn over_time(html: &mut String, r: &Report, hours: f64) {
    section(html, "over-time", "Requests and latency over virtual time");
    let bucket_h = r.curve_bucket_ms as f64 / 3_600_000.0;
    let per_minute = 60_000.0 / r.curve_bucket_ms.max(1) as f64;
    let x = |i: usize| (i as f64 + 0.5) * bucket_h;
    let requests: Vec<(f64, f64)> = r
        .requests_per_bucket
        .iter()
        .enumerate()
        .map(|(i, &n)| (x(i), n as f64 * per_minute))
        .collect();
    html.push_str(&plots::over_time(
        "requests-over-time",
        "Requests answered per virtual minute",
        "requests / virtual minute",
        &[Line {
            name: "requests",
            color: BLUE,
            points: requests,
        }],
        &r.phases,
        hours,
    ));
    let quantile = |q: f64| -> Vec<(f64, f64)> {
        r.histograms
            .check_latency_by_bucket_us
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.0.is_empty())
            .map(|(i, h)| (x(i), h.0.value_at_quantile(q) as f64 / 1000.0))
            .collect()
    };
    html.push_str(&plots::over_time(
        "latency-over-time",
        "Check service time over virtual time",
        "ms",
        &[
            Line {
                name: "p50",
                color: BLUE,
                points: quantile(0.5),
            },
            Line {
                name: "p99",
                color: ORANGE,
                points: quantile(0.99),
            },
        ],
        &r.phases,
        hours,
    ));
    html.push_str("</section>");
}

pub fn render(r: &Report) -> String {
    let hours = r.virtual_duration_ms as f64 / 3_600_000.0;
    let mut html = String::new();
    let _ = writeln!(
        html,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>ucupdate-sim: {}</title><style>{STYLE}</style></head><body>"#,
        esc(&r.scenario)
    );
    header(&mut html, r);
    thresholds(&mut html, r);
    latency(&mut html, r);
    over_time(&mut html, r, hours);

    section(&mut html, "rollout", "Rollout curve");
    let curve = r.curve();
    let line = |pick: fn(&(u64, i64, i64)) -> i64| -> Vec<(f64, f64)> {
        std::iter::once((0.0, 0.0))
            .chain(
                curve
                    .iter()
                    .map(|c| (c.0 as f64 / 3_600_000.0, pick(c) as f64)),
            )
            .collect()
    };
    html.push_str(&plots::over_time(
        "rollout-curve",
        "Devices per version over virtual time",
        "devices",
        &[
            Line {
                name: "on the target version",
                color: GREEN,
                points: line(|c| c.1),
            },
            Line {
                name: "on the initial version",
                color: BLUE,
                points: line(|c| c.2),
            },
        ],
        &r.phases,
        hours,
    ));
    html.push_str("</section>");

    section(&mut html, "arrivals", "Check arrivals");
    let arrivals: Vec<(f64, f64)> = r
        .arrivals_per_minute
        .iter()
        .enumerate()
        .map(|(m, &n)| (m as f64 / 60.0, n as f64))
        .collect();
    html.push_str(&plots::over_time(
        "requests-plot",
        "Check arrivals per virtual minute",
        "checks / virtual minute",
        &[Line {
            name: "checks",
            color: ORANGE,
            points: arrivals,
        }],
        &r.phases,
        hours,
    ));
    let (peak, mean, ratio) = r.bunching();
    let _ = write!(
        html,
        "<p>Peak {peak} per minute, mean {mean:.2}, peak-to-mean {ratio:.1} (devices checking in lock-step show as a high ratio).</p></section>"
    );

    section(
        &mut html,
        "convergence",
        "Convergence after the last offer change",
    );
    if r.convergence.count == 0 {
        html.push_str("<p>No device changed version after an offer change.</p>");
    } else {
        html.push_str("<table><tr><th>share of converged devices</th><th>virtual time</th></tr>");
        for share in [0.5, 0.9, 0.99, 1.0] {
            let at = r
                .convergence_at(share)
                .map(vtime)
                .unwrap_or_else(|| "-".into());
            let _ = write!(html, "<tr><td>{:.0}%</td><td>{at}</td></tr>", share * 100.0);
        }
        let _ = write!(
            html,
            "</table><p>{} devices converged.</p>",
            r.convergence.count
        );
    }
    html.push_str("</section>");

    section(&mut html, "phase-time", "Time in each lifecycle phase");
    let total: u64 = r.phase_ms.values().sum();
    html.push_str(
        "<table><tr><th>phase</th><th>share of device-time</th><th>device-hours</th></tr>",
    );
    for (phase, ms) in &r.phase_ms {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{:.2}%</td><td>{:.1}</td></tr>",
            esc(phase),
            *ms as f64 * 100.0 / total.max(1) as f64,
            *ms as f64 / 3_600_000.0
        );
    }
    html.push_str("</table></section>");

    section(&mut html, "errors", "Requests and errors by class");
    html.push_str("<table><tr><th>endpoint</th><th>outcomes</th></tr>");
    for (endpoint, outcomes) in &r.requests {
        let parts: Vec<String> = outcomes
            .iter()
            .map(|(o, n)| format!("{}={n}", esc(o)))
            .collect();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(endpoint),
            parts.join(" ")
        );
    }
    html.push_str("</table>");
    counts_table(&mut html, "error class", &r.errors, "No errors.");
    html.push_str("</section>");

    section(&mut html, "tls", "TLS handshakes (ms)");
    if r.tls_handshake_ms.count == 0 {
        html.push_str("<p>No TLS handshakes (plain HTTP).</p>");
    } else {
        let _ = write!(
            html,
            "<table><tr>{PERCENTILE_HEAD}</tr><tr>{}</tr></table>",
            percentile_cells(&r.tls_handshake_ms)
        );
    }
    html.push_str("</section>");

    section(&mut html, "faults", "Faults injected");
    counts_table(
        &mut html,
        "fault",
        &r.faults_injected,
        "No faults injected.",
    );
    html.push_str("</section>");

    section(&mut html, "failures", "Failed devices");
    if r.verdicts.failed == 0 {
        html.push_str("<p>None: every device met the scenario's expectations.</p>");
    } else {
        let reasons: Vec<String> = r
            .verdicts
            .by_reason
            .iter()
            .map(|(k, n)| format!("{}={n}", esc(k)))
            .collect();
        let _ = write!(
            html,
            "<p>{} failed: {}</p>",
            r.verdicts.failed,
            reasons.join(" ")
        );
        html.push_str("<table><tr><th>device</th><th>profile</th><th>expected</th><th>reached</th><th>reason</th><th>explain</th></tr>");
        for v in r.verdicts.failures.iter().take(200) {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>--trace-device {}</code></td></tr>",
                v.device,
                esc(&v.profile),
                esc(&v.expected),
                esc(&v.reached),
                esc(&v.reason),
                v.device
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</section></body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_every_section_and_plot_and_no_script() {
        let mut r = crate::report::tests::sample("0/1", 3, 1);
        r.finalize();
        let page = render(&r);
        for id in SECTIONS.iter().chain(&[
            "latency-plot",
            "latency-over-time",
            "requests-over-time",
            "rollout-curve",
            "requests-plot",
            "verdict",
        ]) {
            assert!(page.contains(&format!("id=\"{id}\"")), "{id} missing");
        }
        assert!(!page.contains("<script"));
        assert!(!page.contains("plot failed"), "{page}");
        assert!(page.contains("FAIL"));
        assert!(page.contains("--trace-device 3"));
    }

    /// The legend swatches carry the series' colours, and no style sheet rule repaints them.
    #[test]
    fn legends_are_in_the_series_colours_and_axes_have_ticks() {
        let r = crate::report::tests::sample("0/1", 3, 0);
        let page = render(&r);
        for color in ["#59A14F", "#4E79A7", "#F28E2B"] {
            assert!(
                page.to_uppercase().contains(&format!("FILL=\"{color}\"")),
                "{color} swatch missing"
            );
        }
        assert!(
            !page.contains(".legend"),
            "a CSS rule must not override the legend colours"
        );
        // Tick labels on the time axis and the phase marker of the sample's power-on.
        assert!(page.contains("virtual time (hours)"));
        assert!(
            page.contains("\npower-on\n</text>"),
            "phase markers are labelled"
        );
    }

    #[test]
    fn page_lists_the_thresholds() {
        let mut r = crate::report::tests::sample("0/1", 3, 0);
        r.apply_thresholds(&crate::thresholds::parse_all(&["errors.rate<1%"]).unwrap());
        let page = render(&r);
        assert!(page.contains("<td>errors.rate&lt;1%</td><td>"), "{page}");
        assert!(page.contains(r#"class="FAIL">FAIL</td>"#));
    }
}
