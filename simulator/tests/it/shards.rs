//! Four shards of one fleet as four separate `ucupdate-sim` processes, merged with
//! `ucupdate-sim merge`, give the report of the whole fleet run in one process: same counts,
//! same verdicts, same curves. Exit codes follow the verdicts.

use std::path::Path;
use std::process::Command;

use ucupdate_simulator::report::Report;

const SIM: &str = env!("CARGO_BIN_EXE_ucupdate-sim");

fn args(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "run",
        "--scenario",
        "rollout",
        "--devices",
        "48",
        "--seed",
        "9",
        "--no-progress",
    ]
    .map(String::from)
    .to_vec();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn read(path: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn four_shard_processes_merge_to_the_single_process_report() {
    let dir = tempfile::tempdir().unwrap();
    let whole_path = dir.path().join("whole.json");
    let status = Command::new(SIM)
        .args(args(&["--report", whole_path.to_str().unwrap()]))
        .status()
        .unwrap();
    assert!(status.success());

    let children: Vec<_> = (0..4)
        .map(|i| {
            let out = dir.path().join(format!("shard{i}.json"));
            let shard = format!("{i}/4");
            let child = Command::new(SIM)
                .args(args(&[
                    "--shard",
                    &shard,
                    "--report",
                    out.to_str().unwrap(),
                ]))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    let mut shard_files = Vec::new();
    for (mut child, out) in children {
        assert!(child.wait().unwrap().success());
        shard_files.push(out);
    }

    let merged_path = dir.path().join("merged.json");
    let html_path = dir.path().join("merged.html");
    let output = Command::new(SIM)
        .arg("merge")
        .args(&shard_files)
        .args([
            "--report",
            merged_path.to_str().unwrap(),
            "--html",
            html_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("PASS: 48 of 48"));

    let whole = read(&whole_path);
    let merged = read(&merged_path);
    assert_eq!(merged.shards, ["0/4", "1/4", "2/4", "3/4"]);
    assert_eq!(merged.devices, whole.devices);
    assert_eq!(merged.requests, whole.requests);
    assert_eq!(merged.verdicts, whole.verdicts);
    assert_eq!(merged.curve(), whole.curve());
    assert_eq!(merged.arrivals_per_minute, whole.arrivals_per_minute);
    assert_eq!(
        merged.bytes_downloaded, whole.bytes_downloaded,
        "bytes: merged {:?} whole {:?}; requests {:?}",
        merged.bytes_downloaded, whole.bytes_downloaded, whole.requests
    );
    for (endpoint, h) in &whole.histograms.latency_us {
        assert_eq!(
            merged.histograms.latency_us[endpoint].0.len(),
            h.0.len(),
            "{endpoint}: every sample merged"
        );
    }
    assert!(std::fs::read_to_string(&html_path)
        .unwrap()
        .contains("id=\"rollout-curve\""));
}

#[test]
fn merge_refuses_shards_of_different_runs() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    for (seed, path, shard) in [("1", &a, "0/2"), ("2", &b, "1/2")] {
        let status = Command::new(SIM)
            .args([
                "run",
                "--scenario",
                "boot-storm",
                "--devices",
                "10",
                "--seed",
                seed,
                "--shard",
                shard,
                "--no-progress",
                "--report",
            ])
            .arg(path)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let output = Command::new(SIM)
        .arg("merge")
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("seed"));
}

#[test]
fn failed_expectations_exit_with_1_and_name_the_devices() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("impossible.toml");
    // Two hours is too short for a 24 h poll to bring anyone to the approved version.
    std::fs::write(
        &scenario,
        "name = 'impossible'\ndescription = 'cannot converge'\nduration = '2h'\n\
         [[phase]]\nat = '0s'\naction = 'power-on'\nwindow = '10m'\n\
         [[phase]]\nat = '1h'\naction = 'publish'\n[[phase]]\nat = '1h'\naction = 'approve'\n\
         [expect]\nfinal = 'target'\n",
    )
    .unwrap();
    let output = Command::new(SIM)
        .args(["run", "--devices", "5", "--no-progress", "--scenario"])
        .arg(&scenario)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL: 0 of 5"), "{stdout}");
    assert!(
        stdout.contains("wrong-version") && stdout.contains("--trace-device"),
        "{stdout}"
    );
}

/// Runs shard `shard` of a 10-device boot storm into `path`.
fn shard_report(path: &Path, shard: &str, extra: &[&str]) {
    let status = Command::new(SIM)
        .args([
            "run",
            "--scenario",
            "boot-storm",
            "--devices",
            "10",
            "--shard",
            shard,
        ])
        .args(["--no-progress", "--report"])
        .arg(path)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// One of two shards merged is not the fleet: refused (exit 2) unless `--allow-partial`, and
/// then the result says partial and fails (exit 1) even though every device in it passed.
#[test]
fn merge_refuses_a_missing_shard_unless_partial_which_fails() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    shard_report(&a, "0/2", &[]);
    let output = Command::new(SIM).arg("merge").arg(&a).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("shards 1/2 missing"), "{stderr}");
    assert!(output.stdout.is_empty(), "no summary for a refused merge");

    let merged = dir.path().join("merged.json");
    let output = Command::new(SIM)
        .arg("merge")
        .arg(&a)
        .arg("--allow-partial")
        .arg("--report")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("PARTIAL: shards 1/2 missing"), "{stdout}");
    assert!(stdout.contains("FAIL: 5 of 5"), "{stdout}");
    let report = read(&merged);
    assert_eq!(report.missing_shards, ["1/2"]);
    assert!(!report.passed());
}

/// Shards whose virtual time zero differs are not one run (their devices dated every update
/// differently): refused. Shards started without `--start-epoch` agree on the day.
#[test]
fn merge_refuses_shards_with_different_start_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    shard_report(&a, "0/2", &["--start-epoch", "1795600000"]);
    shard_report(&b, "1/2", &["--start-epoch", "1795600001"]);
    let output = Command::new(SIM)
        .arg("merge")
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("start epoch"));
    assert_eq!(read(&a).start_unix_ms, 1_795_600_000_000);

    shard_report(&b, "1/2", &[]);
    shard_report(&a, "0/2", &[]);
    let output = Command::new(SIM)
        .arg("merge")
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("PASS: 10 of 10"));
}
