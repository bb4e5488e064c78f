//! The `ucupdate-sim` binary's output options, end to end.

use std::process::Command;

/// `--report -` wrote a file named `-`: it means standard output, which then holds the JSON
/// report alone (the text summary moves to stderr), and no file is created.
#[test]
fn report_dash_is_standard_output_and_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ucupdate-sim"))
        .current_dir(dir.path())
        .args([
            "run",
            "--scenario",
            "steady",
            "--devices",
            "5",
            "--report",
            "-",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"));
    assert!(report.get("format").is_some(), "{stdout}");
    assert!(
        stderr.contains("PASS"),
        "the summary goes to stderr: {stderr}"
    );
    assert!(!dir.path().join("-").exists(), "a file named - was written");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Both reports cannot share standard output: a usage error (exit 2), not a garbled stream.
#[test]
fn both_reports_on_standard_output_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ucupdate-sim"))
        .current_dir(dir.path())
        .args(["run", "--scenario", "steady", "--devices", "2"])
        .args(["--report", "-", "--html", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard output"));
}

fn sim(args: &[&str]) -> std::process::Output {
    sim_scenario("steady", args)
}

fn sim_scenario(scenario: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ucupdate-sim"))
        .args([
            "run",
            "--no-progress",
            "--devices",
            "4",
            "--scenario",
            scenario,
        ])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// Thresholds from the command line are evaluated at the end, listed pass/fail in the summary
/// and the JSON report, and one that fails makes the run fail (exit 1) though every device
/// passed.
#[test]
fn a_failed_threshold_fails_the_run_and_every_threshold_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = sim(&[
        "--threshold",
        "check-internal.p99<1h",
        "--threshold",
        "devices.failed==0",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("pass check-internal.p99<1h"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["thresholds"][1]["expression"], "devices.failed==0");
    assert_eq!(json["thresholds"][1]["passed"], true);
    assert_eq!(json["passed"], true);

    // No check is answered in under a microsecond.
    let out = sim(&["--threshold", "check-internal.max<1us"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .contains("FAIL: 4 of 4 devices met expectations (0 failed), 1 of 1 thresholds failed"),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL check-internal.max<1us"), "{stdout}");
}

/// A threshold in the scenario's `[thresholds]` gates the run like one on the command line.
#[test]
fn scenario_thresholds_gate_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("gated.toml");
    let steady = include_str!("../../scenarios/steady.toml");
    std::fs::write(
        &scenario,
        format!("{steady}\n[thresholds]\ncheck-internal = ['p50<1h', 'count>=1000']\n"),
    )
    .unwrap();
    let out = sim_scenario(scenario.to_str().unwrap(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("pass check-internal.p50<1h"), "{stdout}");
    assert!(
        stdout.contains("FAIL check-internal.count>=1000"),
        "{stdout}"
    );
}

/// A threshold that does not parse is a setup error before the run, naming the mistake.
#[test]
fn a_threshold_that_does_not_parse_is_a_setup_error() {
    for (expr, needle) in [
        ("check-internal.p99<500", "needs a unit"),
        ("check.p99<1s", "unknown metric"),
        ("errors.rate", "no comparison"),
    ] {
        let out = sim(&["--threshold", expr]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{expr}: {stderr}");
        assert!(
            stderr.contains(needle) && stderr.contains(expr),
            "{expr}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "no run for a bad threshold");
    }
}

/// `--junit` writes the verdicts and each threshold as JUnit test cases, for CI reporters.
#[test]
fn junit_lists_the_verdicts_and_every_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("sim.xml");
    let out = sim(&[
        "--threshold",
        "check-internal.p99<1h",
        "--threshold",
        "check-internal.max<1us",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"<testsuite name="ucupdate-sim steady" tests="3" failures="1""#),
        "{xml}"
    );
    assert!(
        xml.contains(
            r#"<testcase classname="ucupdate-sim steady" name="verdicts" time="0"></testcase>"#
        ),
        "{xml}"
    );
    assert!(
        xml.contains(
            r#"name="threshold check-internal.max&lt;1us" time="0"><failure message="observed "#
        ),
        "{xml}"
    );
}

/// A short paced run: six virtual hours at 100000 (about 0.2 s).
fn paced(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ucupdate-sim"))
        .args(["run", "--scenario", "rollout", "--devices", "20"])
        .args(["--time-scale", "100000", "--duration", "6h"])
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Off a terminal (stderr is a pipe here), progress is plain lines: the virtual clock, the
/// phase, requests/s, errors, p99 so far, lag; always one when the run ends.
#[test]
fn off_a_terminal_progress_is_plain_lines() {
    let out = paced(&["--progress-interval", "1h"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("progress: "))
        .unwrap_or_else(|| panic!("no progress line: {stderr}"));
    assert!(
        line.starts_with("progress: virtual 0d06:00:00 of 6h (100%), phase approve, "),
        "{line}"
    );
    for field in [
        " req/s, ",
        " requests, ",
        " errors, ",
        "check p99 ",
        "lag p99 ",
        " in flight, eta ",
    ] {
        assert!(line.contains(field), "{field:?} missing: {line}");
    }
    assert!(
        stderr.starts_with("ucupdate-sim: running scenario rollout, 20 devices"),
        "{stderr}"
    );
    let quiet = paced(&["--no-progress"]);
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("progress: "));
}

/// Lag is measured on a paced run, reported (summary and JSON), can be gated on, and warns
/// past its bound (here 0 s, so that any lag passes it); at `max` it is not measured and the
/// summary says why.
#[test]
fn lag_is_reported_warned_about_and_gated_on() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = paced(&[
        "--no-progress",
        "--lag-warning",
        "0s",
        "--threshold",
        "lag.max<1h",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("lag, ms: how far behind its schedule"),
        "{stdout}"
    );
    assert!(stdout.contains("pass lag.max<1h"), "{stdout}");
    assert!(
        stdout.contains("warning: the simulator could not keep up"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(
        json["lag_ms"]["count"].as_u64() > Some(0),
        "{}",
        json["lag_ms"]
    );
    assert!(json["warnings"][0]
        .as_str()
        .unwrap()
        .contains("could not keep up"));

    let out = sim(&["--threshold", "lag.p99<1h"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no lag samples at max: the gate fails"
    );
    assert!(stdout.contains("FAIL lag.p99<1h"), "{stdout}");
    assert!(
        stdout.contains("none measured (time scale max: as fast as the client can go)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: time scale max: the fleet ran as fast as the client can go"),
        "{stdout}"
    );
}

/// `--abort-on-fail` stops the run as soon as a threshold fails on the data so far (here at
/// the first check: none is answered in under a microsecond), instead of running the scenario
/// out; the reports say where and why, and the run fails.
#[test]
fn abort_on_fail_stops_the_run_at_the_first_failing_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = sim_scenario(
        "rollout",
        &[
            "--threshold",
            "check-internal.max<1us",
            "--abort-on-fail",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ABORTED at virtual "), "{stdout}");
    assert!(
        stdout.contains("threshold check-internal.max<1us failed (observed "),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let at = json["aborted"]["at_virtual_ms"].as_u64().unwrap();
    assert!(
        at < 72 * 3_600_000,
        "stopped before the end of the 3 days: {at}"
    );
    assert_eq!(
        json["aborted"]["threshold"]["expression"],
        "check-internal.max<1us"
    );
    let out = crate::schema::validate(&[report]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Injected faults are counted in the report, not logged one by one: a faulted run's stderr
/// holds no device warnings by default, and `UCUPDATE_LOG=warn` brings them back.
#[test]
fn injected_faults_do_not_flood_stderr() {
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bench/scenarios/soak-quick.toml"
    );
    let run = |log: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ucupdate-sim"));
        cmd.args([
            "run",
            "--no-progress",
            "--devices",
            "200",
            "--scenario",
            scenario,
        ])
        .env("NO_COLOR", "1")
        .env_remove("UCUPDATE_LOG");
        if let Some(filter) = log {
            cmd.env("UCUPDATE_LOG", filter);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (stdout, stderr)
    };
    let (stdout, stderr) = run(None);
    assert!(stdout.contains("faults injected:"), "{stdout}");
    let warnings = stderr.lines().filter(|l| l.contains("WARN")).count();
    assert_eq!(warnings, 0, "{stderr}");
    let (_, stderr) = run(Some("warn"));
    assert!(stderr.lines().any(|l| l.contains("WARN")), "{stderr}");
}

/// A device with no route to the server (no DHCP domain to discover it in, never provisioned
/// by a sign-in) used to show nothing after power-on: its timeline now says why it is quiet,
/// in the machine's words, and when it tries again; a device that reaches the server says
/// what it waits for between checks.
#[test]
fn a_traced_device_with_no_route_says_why_it_does_nothing() {
    let trace = |device: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_ucupdate-sim"))
            .args(["run", "--no-progress", "--scenario", "rollout"])
            .args(["--devices", "20", "--domain", "", "--trace-device", device])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let start = stdout.find("timeline of device").expect("a timeline");
        let end = stdout[start..]
            .find("\n\n")
            .map_or(stdout.len(), |e| start + e);
        stdout[start..end].to_owned()
    };
    // Device 0 never signs in: it never checks, and every cycle says why.
    let quiet = trace("0");
    assert!(
        quiet.contains("scenario phase power-on\n0d00:00:00.000  off          wait   power: the device is off until 0d00:26:35.912"),
        "when it comes on: {quiet}"
    );
    let reason = "wait   no route to the update server: no server URL configured, never \
                  provisioned by a sign-in, and no DHCP or SIP domain to discover \
                  ucupdates-r2.<domain> in; the next check at ";
    assert!(quiet.contains(reason), "{quiet}");
    assert!(quiet.matches(reason).count() >= 3, "one per cycle: {quiet}");
    assert!(!quiet.contains("action check"), "{quiet}");
    // Device 1 signs in (provisioned) and then checks: between checks it waits for the next.
    let provisioned = trace("1");
    assert!(
        provisioned.contains(reason),
        "before its sign-in: {provisioned}"
    );
    assert!(
        provisioned.contains("action check internal"),
        "{provisioned}"
    );
    assert!(
        provisioned.contains("wait   the next check at ")
            && provisioned.contains("(last check: no update)"),
        "{provisioned}"
    );
    assert!(
        provisioned.contains("wait   the device to stay idle: install "),
        "{provisioned}"
    );
    assert!(
        provisioned.contains("wait   power: the device is off until "),
        "the reboot: {provisioned}"
    );
}

/// `--threads 1` puts the engine, every request and the embedded server on one thread. A
/// rollout over loopback TCP (checks, downloads, NTLM outside the firewall) still completes
/// with every verdict passed: nothing in a run waits on a thread it no longer has.
#[test]
fn a_rollout_on_one_thread_passes_and_zero_threads_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = sim_scenario(
        "rollout",
        &[
            "--threads",
            "1",
            "--transport",
            "tcp",
            "--external-share",
            "0.5",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["verdicts"]["passed"], 4, "{}", r["verdicts"]);
    assert_eq!(r["verdicts"]["failed"], 0, "{}", r["verdicts"]);
    assert_eq!(r["threads"], 1, "the report says what the run had");
    for endpoint in ["check-internal", "check-external", "download"] {
        assert!(
            r["requests"][endpoint]["200"].as_u64() > Some(0),
            "{}",
            r["requests"]
        );
    }

    let refused = sim(&["--threads", "0"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--threads"));
}
