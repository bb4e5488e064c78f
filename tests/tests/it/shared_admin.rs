//! `ucupdate-sim run --admin` against a shared server, end to end with this build's binaries: a
//! real `ucupdate-server` process on loopback holds a real model's approved rule, a real test
//! device and its own stored version; a simulated rollback (publish, approve, restore) is run
//! against it through its admin API. Afterwards, read back with curl: the real rule, test
//! device and version are exactly as they were, and nothing of the run is left (no probe
//! rule, version, test device or inventory entry). The notice of what the run would change
//! was printed before it, and what it cleaned up after.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `target/<profile>/`, where cargo puts the workspace's binaries.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|d| d.parent()).unwrap().to_owned()
}

/// The server process; killed when the test ends, however it ends.
struct Server {
    child: Child,
    internal: String,
    admin: String,
    token: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path) -> Server {
    let mut child = Command::new(bin_dir().join("ucupdate-server"))
        .args(["serve", "--init", "--data"])
        .arg(data)
        .args(["--internal", "127.0.0.1:0", "--internal-tls", "off"])
        .args(["--external", "off", "--admin", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut internal, mut admin) = (None, None);
    while internal.is_none() || admin.is_none() {
        let line = lines.next().expect("the server printed its URLs").unwrap();
        if let Some(url) = line.strip_prefix("internal ") {
            internal = Some(url.to_owned());
        } else if let Some(url) = line.strip_prefix("admin ") {
            admin = Some(url.trim_end_matches('/').to_owned());
        }
    }
    // Keep reading: a closed pipe would end the server at its next line.
    std::thread::spawn(move || lines.for_each(drop));
    Server {
        child,
        internal: internal.unwrap(),
        admin: admin.unwrap(),
        token: data.join("admin.token"),
    }
}

/// One admin request with curl; the reply's body (curl fails the test on an HTTP error).
fn curl(server: &Server, method: &str, path: &str, body: Option<(&str, &[u8])>) -> String {
    let token = std::fs::read_to_string(&server.token).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "-X", method])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", token.trim()));
    match body {
        Some((content_type, bytes)) => {
            let file = server.token.with_file_name("curl-body");
            std::fs::write(&file, bytes).unwrap();
            cmd.arg("-H")
                .arg(format!("Content-Type: {content_type}"))
                .arg("--data-binary")
                .arg(format!("@{}", file.display()));
        }
        None if method != "GET" => {
            cmd.args(["-H", "Content-Type: application/json"]);
        }
        None => {}
    }
    let out = cmd.arg(format!("{}{path}", server.admin)).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "curl {method} {path}: {text}");
    text
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

const REAL: &str = "UCPhone/Polycom/CX700/A/ENU/CPE";

/// What is on the shared server before: a real model's approved rule (the version the
/// incident moved), a lab phone as test device. Returns the rules, test devices and versions
/// as the admin API lists them.
fn real_world(server: &Server) -> (String, String, String) {
    curl(
        server,
        "PUT",
        &format!("/admin/files/{REAL}/1.0.524.0/CPE.nbt"),
        Some(("application/octet-stream", b"the real image")),
    );
    curl(
        server,
        "POST",
        &format!("/admin/rules/{REAL}/approve"),
        None,
    );
    curl(server, "PUT", "/admin/test-devices/00-04-F2-00-01-76", None);
    (
        curl(server, "GET", "/admin/rules", None),
        curl(server, "GET", "/admin/test-devices", None),
        curl(server, "GET", "/admin/versions", None),
    )
}

fn tools_present() -> bool {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED: curl is not installed");
        return false;
    }
    for name in ["ucupdate-server", "ucupdate-sim"] {
        assert!(
            bin_dir().join(name).exists(),
            "{name} is missing: build the workspace's binaries first (`cargo test --workspace` does)"
        );
    }
    true
}

/// A run stopped by SIGINT after its set-up (the start line comes after it) still removes
/// what it added. The run is paced so that it is still going when the signal arrives; the
/// test waits for the binary's own start line, not for a time.
#[test]
fn an_interrupted_run_cleans_up_the_shared_server_too() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("data"));
    let before = real_world(&server);
    // Three virtual days at 3600: 72 s of wall time, far longer than the test waits.
    let mut child = Command::new(bin_dir().join("ucupdate-sim"))
        .args([
            "run",
            "--scenario",
            "rollout",
            "--no-progress",
            "--trust",
            "none",
        ])
        .args([
            "--devices",
            "10",
            "--test-devices",
            "2",
            "--time-scale",
            "3600",
        ])
        .args(["--server", &server.internal, "--admin", &server.admin])
        .arg("--admin-token-file")
        .arg(&server.token)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        stderr.push_str(&line);
        stderr.push('\n');
        if line.contains("running scenario rollout") {
            break;
        }
    }
    let rules = json(&curl(&server, "GET", "/admin/rules", None));
    assert!(rules.as_array().unwrap().len() > 1, "set up: {rules}");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for line in lines {
        stderr.push_str(&line.unwrap());
        stderr.push('\n');
    }
    assert_eq!(child.wait().unwrap().code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("cleaned up the shared server: removed 9 rules"),
        "{stderr}"
    );
    let after = (
        curl(&server, "GET", "/admin/rules", None),
        curl(&server, "GET", "/admin/test-devices", None),
        curl(&server, "GET", "/admin/versions", None),
    );
    assert_eq!(after, before);
    let inventory = json(&curl(&server, "GET", "/admin/inventory", None));
    assert_eq!(inventory, serde_json::json!([]));
}

#[test]
fn a_simulated_rollout_against_a_shared_server_changes_no_real_rule_and_leaves_nothing() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("data"));
    let (rules_before, devices_before, versions_before) = real_world(&server);
    let real = REAL;

    // The scenario publishes, approves and restores every profile the mix uses, CX700 among
    // them, with three test devices.
    let out = Command::new(bin_dir().join("ucupdate-sim"))
        .args([
            "run",
            "--scenario",
            "rollback",
            "--no-progress",
            "--trust",
            "none",
        ])
        .args(["--devices", "30", "--mix", "CX700=50,RoundTable=50"])
        .args(["--test-devices", "3", "--server", &server.internal])
        .args(["--admin", &server.admin, "--admin-token-file"])
        .arg(&server.token)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("PASS: 30 of 30"), "{stdout}");
    // The summary (and the JSON report's `shared_server`) keeps what the clean-up did.
    assert!(
        stdout.contains("shared server: removed 2 rules, 4 stored versions, 3 test devices"),
        "{stdout}"
    );

    // Said before it changed anything: the probe rules with their versions, the test devices,
    // the inventory, what stays.
    let notice = stderr
        .find("administers the shared server")
        .expect("a notice of what the run changes");
    let running = stderr.find("running scenario rollback").unwrap();
    assert!(notice < running, "the notice comes first: {stderr}");
    for claim in [
        "under its own probe models (brand ucupdate-sim); no other rule is touched",
        "UCPhone/ucupdate-sim/CX700/A/ENU/CPE (1.0.522.101, 1.0.523.0)",
        "RoundTable/ucupdate-sim/RoundTable/A/ENU/RoundTable (3.5.6907.35, 3.5.6908.0)",
        "adds and at the end removes 3 test devices: 02-5C-00-00-00-00 to 02-5C-00-00-00-02",
        "at the end removes the inventory entries of those models",
        "leaves the audit log of the run's checks",
        "cleaned up the shared server: removed 2 rules, 4 stored versions, 3 test devices, 30 \
         inventory entries; left: the audit log",
    ] {
        assert!(stderr.contains(claim), "{claim:?} not in:\n{stderr}");
    }

    // The real rule, test device and version are untouched; nothing of the run is left.
    assert_eq!(curl(&server, "GET", "/admin/rules", None), rules_before);
    let rules = json(&rules_before);
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules}");
    assert_eq!(rules[0]["key"], real);
    assert_eq!(rules[0]["approved"], "1.0.524.0");
    assert_eq!(rules[0]["restore"], serde_json::Value::Null);
    assert_eq!(
        curl(&server, "GET", "/admin/test-devices", None),
        devices_before
    );
    assert_eq!(
        curl(&server, "GET", "/admin/versions", None),
        versions_before
    );
    let inventory = json(&curl(&server, "GET", "/admin/inventory", None));
    assert_eq!(
        inventory,
        serde_json::json!([]),
        "no entry of the run is left"
    );

    // A scenario that changes nothing does not administer the server, --admin or not: it
    // used to publish and approve every real model's initial version.
    let out = Command::new(bin_dir().join("ucupdate-sim"))
        .args([
            "run",
            "--scenario",
            "steady",
            "--no-progress",
            "--trust",
            "none",
        ])
        .args(["--devices", "3", "--mix", "CX700=100", "--duration", "1h"])
        .args(["--server", &server.internal, "--admin", &server.admin])
        .arg("--admin-token-file")
        .arg(&server.token)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("scenario steady changes nothing on the server: --admin is not used"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("administers the shared server"),
        "{stderr}"
    );
    assert_eq!(curl(&server, "GET", "/admin/rules", None), rules_before);
    assert_eq!(
        curl(&server, "GET", "/admin/versions", None),
        versions_before
    );
}
