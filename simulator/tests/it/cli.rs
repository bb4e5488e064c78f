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
