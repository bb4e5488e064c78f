//! The human summary printed at the end of a run.

use std::fmt::Write as _;

use super::{Hist, Report};
use crate::duration::format_duration;

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn vtime(ms: u64) -> String {
    format_duration(std::time::Duration::from_millis(ms))
}

/// A virtual duration for people: to the second past a minute (`20h6m57s`, not
/// `20h6m57s279ms`), exact below it.
fn vtime_rounded(ms: u64) -> String {
    if ms >= 60_000 {
        vtime((ms + 500) / 1000 * 1000)
    } else {
        vtime(ms)
    }
}

fn latency_row(out: &mut String, name: &str, h: &Hist) {
    let s = h.summary();
    let _ = writeln!(
        out,
        "  {name:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        s.count,
        ms(s.p50),
        ms(s.p90),
        ms(s.p95),
        ms(s.p99),
        ms(s.p999),
        ms(s.max)
    );
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let verdict = if r.passed() { "PASS" } else { "FAIL" };
    let failed_thresholds = r.thresholds.iter().filter(|t| !t.passed).count();
    let _ = writeln!(out, "scenario {} — {}", r.scenario, r.description);
    if let Some(a) = &r.aborted {
        let _ = writeln!(
            out,
            "ABORTED at virtual {} of {}: threshold {} failed (observed {}) with --abort-on-fail",
            vtime(a.at_virtual_ms),
            vtime(r.virtual_duration_ms),
            a.threshold.expression,
            a.threshold.observed_text()
        );
    }
    if let Some(i) = &r.interrupted {
        let _ = writeln!(
            out,
            "INTERRUPTED by {} at virtual {} of {}: the fleet was stopped early; the verdicts are as things stood",
            i.signal,
            vtime(i.at_virtual_ms),
            vtime(r.virtual_duration_ms)
        );
    }
    if r.is_partial() {
        let _ = writeln!(
            out,
            "PARTIAL: shards {} missing (merged with --allow-partial): this report does not cover the fleet",
            r.missing_shards.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "{verdict}: {} of {} devices met expectations ({} failed){}; seed {}{}, server {} over {}{}",
        r.verdicts.passed,
        r.devices,
        r.verdicts.failed,
        match failed_thresholds {
            0 => String::new(),
            n => format!(", {n} of {} thresholds failed", r.thresholds.len()),
        },
        r.seed,
        // An unsharded run has nothing to say about shards.
        if r.shards.len() == 1 && r.shards[0] == "0/1" {
            String::new()
        } else {
            format!(", shards {}", r.shards.join(","))
        },
        r.server,
        r.transport,
        match r.threads {
            Some(1) => ", 1 thread".to_owned(),
            Some(n) => format!(", {n} threads"),
            None => String::new(),
        }
    );
    if !r.clock.is_empty() {
        let _ = writeln!(
            out,
            "common clock: virtual 0 at {} (--start-at)",
            crate::start::format_rfc3339(r.start_unix_ms)
        );
        for c in &r.clock {
            let _ = writeln!(out, "  {}", super::clock::describe(c));
        }
    }
    let wall = r.wall_ms as f64 / 1000.0;
    let _ = writeln!(
        out,
        "virtual time {} in {wall:.1} s wall (time scale {}); {} requests ({:.0}/s wall); {:.1} MiB downloaded",
        match (&r.interrupted, &r.aborted) {
            (Some(i), _) => format!("{} of {}", vtime(i.at_virtual_ms), vtime(r.virtual_duration_ms)),
            (None, Some(a)) => format!("{} of {}", vtime(a.at_virtual_ms), vtime(r.virtual_duration_ms)),
            (None, None) => vtime(r.virtual_duration_ms),
        },
        r.time_scale,
        r.total_requests(),
        if wall > 0.0 { r.total_requests() as f64 / wall } else { 0.0 },
        r.bytes_downloaded as f64 / (1024.0 * 1024.0)
    );

    let _ = writeln!(out, "\nrequests by endpoint and outcome:");
    for (endpoint, outcomes) in &r.requests {
        let parts: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o}={n}")).collect();
        let _ = writeln!(out, "  {endpoint:<16} {}", parts.join("  "));
    }

    let pace = if r.time_scale == "max" {
        ", time scale max: a client going as fast as it can"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "\nlatency, ms (service time: send to end of reply{pace})"
    );
    let _ = writeln!(
        out,
        "  {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "endpoint", "count", "p50", "p90", "p95", "p99", "p99.9", "max"
    );
    for (name, h) in &r.histograms.latency_us {
        latency_row(&mut out, name, h);
    }
    let _ = writeln!(
        out,
        "latency, ms, from the intended send time (coordinated omission corrected)"
    );
    for (name, h) in &r.histograms.latency_intended_us {
        latency_row(&mut out, name, h);
    }
    if !r.histograms.tls_handshake_us.0.is_empty() {
        latency_row(&mut out, "tls handshake", &r.histograms.tls_handshake_us);
    }
    if r.histograms.lag_us.0.is_empty() {
        let _ = writeln!(
            out,
            "lag behind schedule: none measured (time scale max: as fast as the client can go)"
        );
    } else {
        let _ = writeln!(
            out,
            "lag, ms: how far behind its schedule the engine served (wall time)"
        );
        latency_row(&mut out, "lag", &r.histograms.lag_us);
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if let Some(cleanup) = &r.shared_server {
        let _ = writeln!(out, "shared server: {cleanup}");
    }

    if !r.errors.is_empty() {
        let parts: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c}={n}")).collect();
        let _ = writeln!(out, "\nerrors by class: {}", parts.join("  "));
        for (class, message) in &r.first_errors {
            let _ = writeln!(out, "  first {class}: {message}");
        }
    }

    if !r.faults_injected.is_empty() {
        let parts: Vec<String> = r
            .faults_injected
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        let _ = writeln!(out, "faults injected: {}", parts.join("  "));
    }

    let total_phase: u64 = r.phase_ms.values().sum();
    if total_phase > 0 {
        let _ = writeln!(
            out,
            "\ntime in each lifecycle phase (share of device-time):"
        );
        for (phase, t) in &r.phase_ms {
            let _ = writeln!(
                out,
                "  {phase:<16} {:>6.2}%",
                *t as f64 * 100.0 / total_phase as f64
            );
        }
    }

    if !r.histograms.convergence_ms.0.is_empty() {
        let q = |s: f64| {
            r.convergence_at(s)
                .map(vtime_rounded)
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            out,
            "\nconvergence after the last offer change ({} devices): 50% {}  90% {}  99% {}  100% {}",
            r.histograms.convergence_ms.0.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0)
        );
    }
    let (peak, mean, ratio) = r.bunching();
    let _ = writeln!(
        out,
        "check arrivals per virtual minute: peak {peak}, mean {mean:.2}, peak-to-mean {ratio:.1}"
    );

    if !r.thresholds.is_empty() {
        let failed = r.thresholds.iter().filter(|t| !t.passed).count();
        let _ = writeln!(
            out,
            "\nthresholds ({} passed, {failed} failed):",
            r.thresholds.len() - failed
        );
        for t in &r.thresholds {
            let _ = writeln!(
                out,
                "  {} {:<40} observed {}",
                if t.passed { "pass" } else { "FAIL" },
                t.expression,
                t.observed_text()
            );
        }
    }

    if r.verdicts.failed > 0 {
        let reasons = r.verdicts.reason_counts();
        let _ = writeln!(out, "\nfailed verdicts by reason: {}", reasons.join("  "));
        const SHOWN: usize = 10;
        for v in r.verdicts.failures.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "  device {} ({}): expected {}, reached {} — {}  (explain: --trace-device {})",
                v.device, v.profile, v.expected, v.reached, v.reason, v.device
            );
        }
        let more = r.verdicts.failed.saturating_sub(SHOWN as u64);
        if more > 0 {
            let _ = writeln!(
                out,
                "  ... and {more} more (the JSON report lists the first {})",
                r.verdicts.failures.len()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_the_verdict_and_the_failed_devices() {
        let mut r = crate::report::tests::sample("0/2", 5, 1);
        r.missing_shards = vec!["1/2".into()];
        let text = render(&r);
        assert!(text.contains("PARTIAL: shards 1/2 missing"), "{text}");
        assert!(
            text.contains("lag behind schedule: none measured (time scale max"),
            "{text}"
        );
        assert!(text.contains("FAIL: 4 of 5 devices"), "{text}");
        assert!(text.contains("--trace-device 5"), "{text}");
        assert!(text.contains("check-internal"), "{text}");
    }

    #[test]
    fn a_newcomer_reads_round_times_no_empty_shards_and_how_many_failures_are_left() {
        let mut r = crate::report::tests::sample("0/1", 30, 25);
        r.verdicts.failed = 25;
        let text = render(&r);
        assert!(!text.contains("shards 0/1"), "{text}");
        assert!(text.contains("... and 15 more"), "{text}");
        assert!(text.contains("  first connect: refused (0/1)"), "{text}");
        assert_eq!(vtime_rounded(72_417_279), "20h6m57s");
        assert_eq!(vtime_rounded(1_250), "1s250ms");
    }

    #[test]
    fn an_interrupted_run_and_a_lagging_engine_say_so() {
        let mut r = crate::report::tests::sample("0/1", 5, 0);
        r.time_scale = "3600".into();
        r.histograms.lag_us.record(250_000);
        r.interrupted = Some(crate::report::Interrupted {
            signal: "SIGTERM".into(),
            at_virtual_ms: 3_600_000,
        });
        r.finalize();
        assert!(!r.passed);
        let text = render(&r);
        assert!(
            text.contains("INTERRUPTED by SIGTERM at virtual 1h of 1h"),
            "{text}"
        );
        assert!(
            text.contains(
                "warning: the simulator could not keep up: it served devices 250 ms (p99"
            ),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("lag ") && l.contains("250.")),
            "{text}"
        );
    }

    #[test]
    fn summary_lists_every_threshold_and_a_failed_one_fails_the_run() {
        let mut r = crate::report::tests::sample("0/1", 5, 0);
        let thresholds =
            crate::thresholds::parse_all(&["check-internal.p95<1s", "errors.rate<1%"]).unwrap();
        r.apply_thresholds(&thresholds);
        let text = render(&r);
        assert!(
            text.contains(
                "FAIL: 5 of 5 devices met expectations (0 failed), 1 of 2 thresholds failed"
            ),
            "{text}"
        );
        assert!(text.contains("pass check-internal.p95<1s"), "{text}");
        assert!(text.contains("FAIL errors.rate<1%"), "{text}");
        assert!(text.contains("observed 10.00%"), "{text}");
        assert!(!r.passed && !r.passed());
    }
}
