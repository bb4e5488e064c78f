//! A self-contained HTML report: inline CSS and SVG, no scripts, no external assets, so it opens
//! from a CI artifact store or an e-mail. Plots: latency percentiles per endpoint, the rollout
//! curve (devices per version over virtual time) and check arrivals over virtual time. Each plot
//! is an `<svg>` with a stable id (`latency-plot`, `rollout-curve`, `requests-plot`).

use std::fmt::Write as _;

use super::Report;
use crate::duration::format_duration;

const W: f64 = 720.0;
const H: f64 = 240.0;
const PAD: f64 = 40.0;

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn vtime(ms: u64) -> String {
    format_duration(std::time::Duration::from_millis(ms))
}

/// A named, coloured series of (x, y) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A polyline plot of one or more series over a shared x range.
fn line_plot(id: &str, title: &str, series: &[Series<'_>], x_label: &str) -> String {
    let xs = series.iter().flat_map(|s| s.2.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.2.iter().map(|p| p.1));
    let x_max = xs.fold(1.0f64, f64::max);
    let y_max = ys.fold(1.0f64, f64::max);
    let sx = |x: f64| PAD + x / x_max * (W - 2.0 * PAD);
    let sy = |y: f64| H - PAD - y / y_max * (H - 2.0 * PAD);
    let mut svg = format!(
        r#"<svg id="{id}" class="plot" viewBox="0 0 {W} {H}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    let _ = write!(
        svg,
        r#"<line x1="{PAD}" y1="{}" x2="{}" y2="{}" class="axis"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{}" class="axis"/>"#,
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD
    );
    let _ = write!(
        svg,
        r#"<text x="{PAD}" y="{}" class="label">0</text>"#,
        H - PAD + 14.0
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" class="label" text-anchor="end">{x_max:.0} {}</text>"#,
        W - PAD,
        H - PAD + 14.0,
        esc(x_label)
    );
    let _ = write!(
        svg,
        r#"<text x="4" y="{}" class="label">{y_max:.0}</text>"#,
        PAD + 4.0
    );
    for (i, (name, color, points)) in series.iter().enumerate() {
        let pts: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" class="legend" fill="{color}">{}</text>"#,
            W - PAD - 150.0,
            PAD + 14.0 * i as f64,
            esc(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn latency_plot(r: &Report) -> String {
    let rows: Vec<(&String, super::Summary)> = r
        .histograms
        .latency_us
        .iter()
        .map(|(k, h)| (k, h.summary()))
        .collect();
    let y_max = rows.iter().map(|(_, s)| s.p999.max(1)).max().unwrap_or(1) as f64;
    let mut svg = format!(
        r#"<svg id="latency-plot" class="plot" viewBox="0 0 {W} {H}" role="img" aria-label="latency percentiles"><title>Latency percentiles per endpoint (ms)</title>"#
    );
    let groups = rows.len().max(1) as f64;
    let group_w = (W - 2.0 * PAD) / groups;
    let colors = ["#4e79a7", "#59a14f", "#f28e2b", "#e15759"];
    for (g, (name, s)) in rows.iter().enumerate() {
        for (i, (label, v)) in [
            ("p50", s.p50),
            ("p90", s.p90),
            ("p99", s.p99),
            ("p99.9", s.p999),
        ]
        .iter()
        .enumerate()
        {
            let bar_w = group_w / 5.0;
            let x = PAD + g as f64 * group_w + i as f64 * bar_w;
            let h = *v as f64 / y_max * (H - 2.0 * PAD);
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} {label}: {:.2} ms</title></rect>"#,
                H - PAD - h,
                bar_w - 2.0,
                colors[i],
                esc(name),
                *v as f64 / 1000.0
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" class="label">{}</text>"#,
            PAD + g as f64 * group_w,
            H - PAD + 14.0,
            esc(name)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="4" y="{}" class="label">{:.1} ms</text>"#,
        PAD + 4.0,
        y_max / 1000.0
    );
    for (i, label) in ["p50", "p90", "p99", "p99.9"].iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" class="legend" fill="{}">{label}</text>"#,
            W - PAD - 60.0,
            PAD + 14.0 * i as f64,
            colors[i]
        );
    }
    svg.push_str("</svg>");
    svg
}

pub fn render(r: &Report) -> String {
    let curve = r.curve();
    let hours = |ms: u64| ms as f64 / 3_600_000.0;
    let target: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
        .chain(curve.iter().map(|&(t, n, _)| (hours(t), n as f64)))
        .collect();
    let initial_start = curve.first().map(|_| 0.0).unwrap_or(0.0);
    let initial: Vec<(f64, f64)> = std::iter::once((0.0, initial_start))
        .chain(curve.iter().map(|&(t, _, n)| (hours(t), n as f64)))
        .collect();
    let arrivals: Vec<(f64, f64)> = r
        .arrivals_per_minute
        .iter()
        .enumerate()
        .map(|(m, &n)| (m as f64 / 60.0, n as f64))
        .collect();

    let mut html = String::new();
    let status = if r.passed() { "PASS" } else { "FAIL" };
    let _ = write!(
        html,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>ucupdate-sim: {}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:960px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}th{{background:#eee}}.plot{{width:100%;height:auto;border:1px solid #ddd;margin:0.5em 0}}
.axis{{stroke:#333}}.label,.legend{{font-size:11px;fill:#333}}.PASS{{color:#2a7}}.FAIL{{color:#c33}}</style></head><body>
"#,
        esc(&r.scenario)
    );
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
    if let Some(i) = &r.interrupted {
        let _ = write!(
            html,
            r#"<p id="interrupted" class="FAIL">Interrupted by {} at virtual {}: the fleet was stopped early; the verdicts are as things stood.</p>"#,
            esc(&i.signal),
            vtime(i.at_virtual_ms)
        );
    }
    if !r.warnings.is_empty() {
        html.push_str(r#"<ul id="warnings">"#);
        for w in &r.warnings {
            let _ = write!(html, "<li>Warning: {}</li>", esc(w));
        }
        html.push_str("</ul>");
    }
    if r.is_partial() {
        let _ = write!(
            html,
            r#"<p id="partial" class="FAIL">Partial: shards {} missing (merged with --allow-partial); this report does not cover the fleet.</p>"#,
            esc(&r.missing_shards.join(", "))
        );
    }
    html.push_str("<h2>Latency</h2>");
    html.push_str(&latency_plot(r));
    html.push_str("<table><tr><th>endpoint</th><th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>p99 from intended send</th></tr>");
    for (name, h) in &r.histograms.latency_us {
        let s = h.summary();
        let co = r
            .histograms
            .latency_intended_us
            .get(name)
            .map(|h| h.summary().p99)
            .unwrap_or(0);
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            esc(name),
            s.count,
            s.p50 as f64 / 1e3,
            s.p90 as f64 / 1e3,
            s.p99 as f64 / 1e3,
            s.p999 as f64 / 1e3,
            s.max as f64 / 1e3,
            co as f64 / 1e3
        );
    }
    let lag = r.lag_ms;
    let _ = write!(
        html,
        r#"</table><p id="lag">Lag behind schedule (wall ms): {}</p>"#,
        if lag.count == 0 {
            "none measured (time scale max: as fast as the client can go)".to_owned()
        } else {
            format!("p50 {:.2}, p99 {:.2}, max {:.2}", lag.p50, lag.p99, lag.max)
        }
    );
    html.push_str("<h2>Rollout curve</h2>");
    html.push_str(&line_plot(
        "rollout-curve",
        "Change in devices per version over virtual time",
        &[
            ("on target version", "#59a14f", target),
            ("on initial version", "#4e79a7", initial),
        ],
        "virtual hours",
    ));
    html.push_str("<h2>Check arrivals</h2>");
    html.push_str(&line_plot(
        "requests-plot",
        "Check arrivals per virtual minute",
        &[("checks / minute", "#f28e2b", arrivals)],
        "virtual hours",
    ));
    let (peak, mean, ratio) = r.bunching();
    let _ = write!(
        html,
        "<p>Peak {peak} per minute, mean {mean:.2}, peak-to-mean {ratio:.1}.</p>"
    );
    html.push_str("<h2>Requests</h2><table><tr><th>endpoint</th><th>outcomes</th></tr>");
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
    if !r.thresholds.is_empty() {
        html.push_str(r#"<h2>Thresholds</h2><table id="thresholds"><tr><th>threshold</th><th>observed</th><th>result</th></tr>"#);
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
    if r.verdicts.failed > 0 {
        html.push_str("<h2>Failed devices</h2><table><tr><th>device</th><th>profile</th><th>expected</th><th>reached</th><th>reason</th></tr>");
        for v in r.verdicts.failures.iter().take(200) {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                v.device,
                esc(&v.profile),
                esc(&v.expected),
                esc(&v.reached),
                esc(&v.reason)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_every_plot_and_no_script() {
        let page = render(&crate::report::tests::sample("0/1", 3, 0));
        for id in ["latency-plot", "rollout-curve", "requests-plot", "verdict"] {
            assert!(page.contains(&format!("id=\"{id}\"")), "{id} missing");
        }
        assert!(!page.contains("<script"));
        assert!(page.contains("PASS"));
        assert!(
            !page.contains("id=\"thresholds\""),
            "no table without thresholds"
        );
    }

    #[test]
    fn page_lists_the_thresholds() {
        let mut r = crate::report::tests::sample("0/1", 3, 0);
        r.apply_thresholds(&crate::thresholds::parse_all(&["errors.rate<1%"]).unwrap());
        let page = render(&r);
        assert!(page.contains("id=\"thresholds\""));
        assert!(page.contains("<td>errors.rate&lt;1%</td><td>"), "{page}");
        assert!(page.contains(r#"class="FAIL">FAIL</td>"#));
    }
}
