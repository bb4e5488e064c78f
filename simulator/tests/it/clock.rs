//! `--start-at`, the common clock: a process started after virtual zero joins the schedule in
//! progress (what is already past fires at once, counted as late, not as lag), one started
//! before it waits, and one started after the whole scenario is a setup error. The instants are
//! given relative to the test's own clock reading, so nothing here waits for time to pass.

use std::process::Command;

use ucupdate_simulator::report::Report;

const SIM: &str = env!("CARGO_BIN_EXE_ucupdate-sim");

#[allow(clippy::disallowed_methods)]
fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// boot-storm, 20 devices, `duration` of virtual time at `scale`.
fn run(start_at: &str, scale: &str, duration: &str) -> (std::process::Output, Option<Report>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    let out = Command::new(SIM)
        .args([
            "run",
            "--scenario",
            "boot-storm",
            "--devices",
            "20",
            "--no-progress",
        ])
        .args([
            "--time-scale",
            scale,
            "--duration",
            duration,
            "--start-at",
            start_at,
        ])
        .arg("--report")
        .arg(&path)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&path)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    (out, report)
}

#[test]
fn a_late_process_joins_in_progress_and_counts_what_was_past() {
    // Virtual zero a second ago: at 600x the 5-minute storm is at least 10 virtual minutes
    // past (more on a loaded machine; 90 minutes leave room for a slow process start).
    let start = unix_secs() - 1;
    let (out, report) = run(&start.to_string(), "600", "90m");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report.unwrap();
    assert_eq!(r.verdicts.failed, 0);
    assert_eq!(
        r.start_unix_ms,
        start * 1000,
        "virtual zero is the instant given"
    );
    let c = &r.clock[0];
    assert!(c.start_offset_ms >= 1000, "{c:?}");
    assert!(c.joined_at_virtual_ms >= 600_000, "{c:?}");
    assert_eq!(c.late_devices, 20, "every power-on was past: {c:?}");
    assert!(c.late_events >= 20, "{c:?}");
    assert!(c.coordinator);
    // What fired at once is late, not lag: the engine did not fall behind its schedule.
    assert!(r.lag_ms.max < 1000.0, "lag {:?}", r.lag_ms);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("shard 0/1 started") && summary.contains("late"),
        "{summary}"
    );
}

#[test]
fn an_early_process_waits_for_virtual_zero() {
    // 3 virtual hours at 3600x: 3 s of wall time after the wait.
    // Far enough ahead that a loaded machine's start-up is still early.
    let (out, report) = run("+2s", "3600", "3h");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report.unwrap();
    let c = &r.clock[0];
    assert!(c.start_offset_ms < 0, "{c:?}");
    assert_eq!(
        (c.late_events, c.late_devices, c.joined_at_virtual_ms),
        (0, 0, 0)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("early (waited)"));
}

#[test]
fn a_start_past_the_whole_scenario_is_a_setup_error() {
    // An hour ago at 3600x: 3600 virtual hours past a 3-hour scenario.
    let (out, _) = run(&(unix_secs() - 3600).to_string(), "3600", "3h");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the whole scenario is over"));
    let (out, _) = run("yesterday", "3600", "3h");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected an RFC 3339 instant"));
}
