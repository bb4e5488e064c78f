//! Every shape of JSON report the binary writes validates against `docs/report.schema.json`,
//! checked by Python's `jsonschema` (an independent implementation of JSON Schema, not our
//! serde code): a passing run with thresholds, a failing one, a run outside the firewall (TLS,
//! NTLM), a paced run (lag samples), a merge and a partial merge. And the schema is not
//! vacuous: a report with a field it does not document, or without one it requires, fails.

use std::path::{Path, PathBuf};
use std::process::Command;

const SIM: &str = env!("CARGO_BIN_EXE_ucupdate-sim");

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/report.schema.json")
}

pub fn validate(reports: &[PathBuf]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schema/validate_report.py");
    Command::new("python3")
        .arg(script)
        .arg(schema())
        .args(reports)
        .output()
        .expect("python3 (with jsonschema, in the machine image) runs")
}

fn run(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    let out = Command::new(SIM)
        .args(["run", "--no-progress"])
        .args(args)
        .arg("--report")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

#[test]
fn every_report_shape_validates_against_the_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let impossible = d.join("impossible.toml");
    std::fs::write(
        &impossible,
        "name = 'impossible'\ndescription = 'cannot converge'\nduration = '2h'\n\
         [[phase]]\nat = '0s'\naction = 'power-on'\nwindow = '10m'\n\
         [[phase]]\nat = '1h'\naction = 'publish'\n[[phase]]\nat = '1h'\naction = 'approve'\n\
         [expect]\nfinal = 'target'\n[thresholds]\ndownload = 'p99<1s'\n",
    )
    .unwrap();
    let mut reports = vec![
        run(
            d,
            "pass",
            &[
                "--scenario",
                "rollout",
                "--devices",
                "12",
                "--threshold",
                "errors.rate<1%",
                "--threshold",
                "check-internal.p99.9<1h",
            ],
        ),
        run(
            d,
            "fail",
            &["--scenario", impossible.to_str().unwrap(), "--devices", "4"],
        ),
        run(
            d,
            "external",
            &["--scenario", "external", "--devices", "10"],
        ),
        run(
            d,
            "paced",
            &[
                "--scenario",
                "boot-storm",
                "--devices",
                "6",
                "--time-scale",
                "3600",
                "--duration",
                "15m",
                // The common clock: the report's `clock` field. Far enough ahead that a
                // loaded machine's start-up (the embedded server, its signer) cannot eat the
                // 0.25 s the scenario lasts at this scale.
                "--start-at",
                "+2s",
            ],
        ),
    ];
    let shards: Vec<PathBuf> = (0..2)
        .map(|i| {
            run(
                d,
                &format!("shard{i}"),
                &[
                    "--scenario",
                    "steady",
                    "--devices",
                    "6",
                    "--shard",
                    &format!("{i}/2"),
                    "--start-at",
                    "1795600000",
                ],
            )
        })
        .collect();
    for (name, files, extra) in [
        ("merged", &shards[..], None),
        ("partial", &shards[..1], Some("--allow-partial")),
    ] {
        let path = d.join(format!("{name}.json"));
        let status = Command::new(SIM)
            .arg("merge")
            .args(files)
            .args(extra)
            .arg("--report")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(matches!(status.code(), Some(0 | 1)), "{name}");
        reports.push(path);
    }
    reports.extend(shards);
    let out = validate(&reports);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Readable without the histograms: a pipeline gets p95 with a plain JSON path.
    let pass: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reports[0]).unwrap()).unwrap();
    let p95 = &pass["endpoints"]["check-internal"]["service_ms"]["p95"];
    assert!(p95.as_f64().is_some_and(|v| v > 0.0), "{p95}");
    let external: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reports[2]).unwrap()).unwrap();
    assert!(
        external["endpoints"]["check-external"]["errors"].as_u64() > Some(0),
        "401 denials count as errors"
    );

    // Not vacuous: an undocumented field, a missing one, a wrong type each fail.
    let mut value = pass.clone();
    value["surprise"] = serde_json::json!(1);
    let mut missing = pass.clone();
    missing.as_object_mut().unwrap().remove("thresholds");
    let mut wrong = pass;
    wrong["endpoints"]["check-internal"]["service_ms"]["p99"] = serde_json::json!("fast");
    for (name, v) in [("surprise", value), ("missing", missing), ("wrong", wrong)] {
        let path = d.join(format!("{name}.json"));
        std::fs::write(&path, v.to_string()).unwrap();
        let out = validate(&[path]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
