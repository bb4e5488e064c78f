//! The Kubernetes Indexed Job's flow, locally: three `ucupdate-sim run` shard processes (the
//! real binary, started through `sh -c` with `JOB_COMPLETION_INDEX` set, as
//! `deploy/k8s/sim-shards.yaml` runs them) started at different moments with one `--start-at`,
//! against ONE shared server stub (in-process on loopback, its admin API behind its token),
//! then `ucupdate-sim merge`. The merged verdicts and counts equal a single-process run of the
//! same fleet against a second stub; the shared server saw the coordinator's administration
//! once (exactly the single run's admin requests, under the probe models, cleaned up after
//! every shard's last check), and its audit
//! log shows the scenario's boot storm: every device's first check within one second of wall
//! time although the shards started seconds apart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use ucupdate_server_stub::{RunningServer, ServerConfig};
use ucupdate_simulator::report::Report;

const SIM: &str = env!("CARGO_BIN_EXE_ucupdate-sim");

/// 24 devices power on within 5 virtual minutes; a publish and an approval land in gaps
/// between the 20-minute polls (so no check races a change on any shard).
const SCENARIO: &str = r#"
name = "job-storm"
description = "A site's boot storm, then a rollout approved once for the whole fleet."
duration = "2h"

[fleet]
devices = 24
signed_in_share = 0.0
test_devices = 2

[agent]
poll_interval = "20m"
poll_jitter = "2m"
power_on_jitter = "1m"

[activity]
busy_share = 0.0

[[phase]]
at = "0s"
action = "power-on"
window = "5m"

[[phase]]
at = "32m"
action = "publish"

[[phase]]
at = "52m"
action = "approve"

[expect]
final = "target"
min_checks = 2
converge_within = "45m"
"#;

/// 600 virtual seconds per wall second: the 2 h scenario lasts 12 s, the storm 0.5 s. At 1200
/// the merged and single-process reports differed twice on a machine at load 10 (cause not
/// pinned down); half the speed doubles every wall-time margin.
const TIME_SCALE: &str = "600";

async fn stub(dir: &Path) -> (RunningServer, PathBuf) {
    let mut config = ServerConfig::loopback(dir.join("data"));
    config.internal_tls = None;
    config.external = None;
    let server = ucupdate_server_stub::start(config).await.unwrap();
    let token = dir.join("admin.token");
    std::fs::write(&token, server.admin_token().secret()).unwrap();
    (server, token)
}

/// A shard as the Indexed Job's pod runs it: the shell expands `JOB_COMPLETION_INDEX`.
fn spawn(
    server: &RunningServer,
    token: &Path,
    scenario: &Path,
    shard: Option<(u64, u64)>,
    start_at: u64,
    report: &Path,
) -> Child {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(
            r#"exec "$SIM" run --scenario "$SCENARIO" --time-scale "$TIME_SCALE" \
                 --server "$SERVER" ${ADMIN:+--admin "$ADMIN" --admin-token-file "$TOKEN"} --trust none \
                 --start-at "$START_AT" --report "$REPORT" --no-progress ${SHARDS:+--shard "$JOB_COMPLETION_INDEX/$SHARDS"}"#,
        )
        .env("SIM", SIM)
        .env("SCENARIO", scenario)
        .env("TIME_SCALE", TIME_SCALE)
        .env("SERVER", server.internal_url().unwrap().to_string())
        .env("START_AT", start_at.to_string())
        .env("REPORT", report)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // Only the coordinator (shard 0, and the single run) needs the admin API: the other
    // shards run devices only.
    if shard.is_none_or(|(index, _)| index == 0) {
        cmd.env("ADMIN", server.admin_url().unwrap().to_string())
            .env("TOKEN", token);
    }
    if let Some((index, count)) = shard {
        cmd.env("JOB_COMPLETION_INDEX", index.to_string())
            .env("SHARDS", count.to_string());
    }
    cmd.spawn().unwrap()
}

/// Waits for a process; its stderr.
fn finish(child: Child, what: &str) -> String {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what}: {:?}\n{stderr}", out.status);
    stderr
}

fn read(path: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Each device's (by MAC) first check on the server's wall clock (audit seconds).
fn first_checks(data: &Path) -> BTreeMap<String, u64> {
    let dir = data.join(ucupdate_server_stub::audit::AUDIT_DIR);
    let mut first = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for record in ucupdate_protocol::audit::parse_log(&text).unwrap() {
            let mac = record.request.identity.mac.map(|m| m.to_string());
            let at = first.entry(mac.unwrap_or_default()).or_insert(u64::MAX);
            *at = (*at).min(record.unix_secs);
        }
    }
    first
}

#[allow(clippy::disallowed_methods)]
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_started_apart_against_one_server_are_one_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("job-storm.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let (shared, shared_token) = stub(&dir.path().join("shared")).await;
    let (single, single_token) = stub(&dir.path().join("single")).await;

    // Virtual zero 5 s from now or more (whole seconds, as a Job's START_AT is written):
    // room for three processes to start on a loaded CI machine.
    let start_at_ms = (unix_ms() + 5000).div_ceil(1000) * 1000;
    let start_at = start_at_ms / 1000;
    let whole_path = dir.path().join("whole.json");
    let whole = spawn(
        &single,
        &single_token,
        &scenario,
        None,
        start_at,
        &whole_path,
    );
    // Pods are scheduled apart: shard 0 now, shard 1 2 s later, shard 2 only after virtual
    // zero (it joins the schedule in progress). The stagger is the input, not a timing wait.
    let paths: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("shard-{i}.json")))
        .collect();
    let mut shards = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let spawn_at = match i {
            0 => 0,
            1 => start_at_ms - 1500,
            _ => start_at_ms + 400,
        };
        let now = unix_ms();
        if spawn_at > now {
            tokio::time::sleep(Duration::from_millis(spawn_at - now)).await;
        }
        shards.push(spawn(
            &shared,
            &shared_token,
            &scenario,
            Some((i as u64, 3)),
            start_at,
            path,
        ));
    }
    let waits = tokio::task::spawn_blocking(move || {
        finish(whole, "single-process run");
        shards
            .into_iter()
            .enumerate()
            .map(|(i, child)| finish(child, &format!("shard {i}/3")))
            .collect::<Vec<String>>()
    });
    let stderr = waits.await.unwrap();
    // Only the coordinator says what it changes on the shared server and cleans it up.
    assert!(
        stderr[0].contains("administers the shared server")
            && stderr[0].contains(
                "cleaned up the shared server: removed 9 rules, 18 stored \
                                   versions, 2 test devices, 24 inventory entries"
            ),
        "{}",
        stderr[0]
    );
    for other in &stderr[1..] {
        assert!(!other.contains("shared server"), "{other}");
    }

    let merged_path = dir.path().join("merged.json");
    let out = Command::new(SIM)
        .arg("merge")
        .args(&paths)
        .arg("--report")
        .arg(&merged_path)
        .arg("--html")
        .arg(dir.path().join("merged.html"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("PASS: 24 of 24"), "{summary}");
    assert!(summary.contains("common clock: virtual 0 at"), "{summary}");

    let merged = read(&merged_path);
    let whole = read(&whole_path);
    assert_eq!(merged.verdicts, whole.verdicts);
    assert_eq!(merged.requests, whole.requests);
    assert_eq!(merged.arrivals_per_minute, whole.arrivals_per_minute);
    assert_eq!(merged.curve(), whole.curve());
    assert_eq!(merged.bytes_downloaded, whole.bytes_downloaded);
    assert_eq!(merged.start_unix_ms, start_at_ms);

    // Each shard measured its own start against virtual zero; only shard 0 administered.
    let clock: Vec<_> = merged.clock.iter().map(|c| c.shard.as_str()).collect();
    assert_eq!(clock, ["0/3", "1/3", "2/3"]);
    assert!(merged.clock[0].coordinator && !merged.clock[1].coordinator);
    assert!(merged.clock[0].start_offset_ms < 0, "{:?}", merged.clock);
    assert_eq!(merged.clock[0].late_events, 0);
    let late = &merged.clock[2];
    assert!(late.start_offset_ms >= 400, "{late:?}");
    assert!(
        late.late_devices > 0 && late.late_events >= late.late_devices,
        "{late:?}"
    );
    assert!(summary.contains("shard 2/3 started"), "{summary}");
    let page = std::fs::read_to_string(dir.path().join("merged.html")).unwrap();
    assert!(page.contains(r#"id="clock""#) && page.contains("shard 2/3 started"));

    // The shared server was administered once: exactly the admin requests of the single run
    // (three shards administering would have tripled them, the clean-up included), and once
    // every shard's last check was in, cleaned up: no rule, test device or inventory entry
    // left (the coordinator's clean-up counted every device's entry, above).
    assert_eq!(
        shared.control().hits("admin"),
        single.control().hits("admin")
    );
    assert!(shared.control().hits("admin") > 0);
    for server in [&shared, &single] {
        assert!(server.control().rules().is_empty());
        assert!(server.control().test_devices().is_empty());
        assert!(server.control().inventory().is_empty());
    }
    assert_eq!(
        shared.control().hits("check"),
        single.control().hits("check")
    );
    let checks: u64 = merged.requests["check-internal"].values().sum();
    assert_eq!(shared.control().hits("check"), checks);

    // The storm as the server saw it: all 24 devices' first checks within one second of wall
    // time (5 virtual minutes are 0.5 s), though the shards started 1.5 s apart and more.
    // The audit lines are buffered until the server's flush tick.
    shared.control().flush().await.unwrap();
    let first = first_checks(&dir.path().join("shared/data"));
    assert_eq!(first.len(), 24, "{first:?}");
    let (lo, hi) = (
        first.values().min().copied().unwrap(),
        first.values().max().copied().unwrap(),
    );
    assert!(hi - lo <= 1, "first checks from {lo} to {hi}: {first:?}");
    assert!(
        lo >= start_at,
        "no check before virtual zero: {lo} < {start_at}"
    );

    shared.shutdown().await.unwrap();
    single.shutdown().await.unwrap();
}

/// Sharing a server needs the common clock when the scenario changes it: without one the
/// coordinator's approval would land at an unrelated moment for the other shards.
#[test]
fn a_shared_server_with_admin_phases_needs_start_at_and_a_paced_scale() {
    for extra in [&["--time-scale", "1200"][..], &["--start-at", "+1s"][..]] {
        let out = Command::new(SIM)
            .args([
                "run",
                "--scenario",
                "rollout",
                "--devices",
                "4",
                "--no-progress",
            ])
            .args(["--server", "http://127.0.0.1:9", "--shard", "1/2"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("one --start-at and a paced --time-scale"),
            "{err}"
        );
    }
    let out = Command::new(SIM)
        .args([
            "run",
            "--scenario",
            "steady",
            "--devices",
            "4",
            "--no-progress",
        ])
        .args(["--shard", "0/2", "--admin-shard", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--admin-shard 2"));
}
