//! `--metrics ADDR` serves the run's live numbers in the Prometheus text format while it runs,
//! read here with curl (an independent HTTP client): counters by endpoint and outcome, the
//! request-duration histogram, devices per phase, lag.

use std::process::Command;

use crate::interrupt::{kill, spawn, wait_for};

/// The requests count of a plain progress line (`..., 12 requests, ...`).
fn requests_in(line: &str) -> u64 {
    line.split(", ")
        .find_map(|part| part.strip_suffix(" requests")?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn metrics_are_served_for_prometheus_while_the_run_goes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = spawn(
        &[
            "--scenario",
            "rollout",
            "--devices",
            "20",
            "--time-scale",
            "3600",
            "--progress-interval",
            "100ms",
            "--metrics",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    let announce = wait_for(&lines, "ucupdate-sim: metrics on http://");
    let url = announce.rsplit(' ').next().unwrap().to_owned();
    // A progress line is printed after the snapshot it shows was published.
    while requests_in(&wait_for(&lines, "progress: ")) == 0 {}
    let out = Command::new("curl")
        .args(["-sS", "--fail", &url])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    kill("TERM", &child);
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "# TYPE ucupdate_sim_request_duration_seconds histogram",
        "ucupdate_sim_request_duration_seconds_bucket{endpoint=\"check-internal\",le=\"+Inf\"} ",
        "ucupdate_sim_requests_total{endpoint=\"check-internal\",outcome=\"200\"} ",
        "ucupdate_sim_devices{phase=\"idle\"} ",
        "ucupdate_sim_scenario_phase{phase=",
        "ucupdate_sim_lag_p99_seconds ",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
}
