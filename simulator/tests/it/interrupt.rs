//! SIGINT and SIGTERM, sent to the real binary with kill(1): the first stops the fleet, writes
//! the summary and every requested report marked interrupted, and exits 130 / 143; a second
//! one exits at once, without the reports. No sleeps: the test waits for the binary's own
//! lines on stderr (the start line, the "stopping" line) before each signal, and the runs are
//! paced (`--time-scale`) so that they are still running when the signal arrives.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SIM: &str = env!("CARGO_BIN_EXE_ucupdate-sim");

/// Spawns the simulator with stderr piped; its lines arrive on the returned channel.
pub fn spawn(args: &[&str], dir: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(SIM)
        .arg("run")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a stderr line containing `needle` (a generous bound only against a hang).
pub fn wait_for(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?} on stderr: {e}"),
        }
    }
}

pub fn kill(signal: &str, child: &Child) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn interrupted_run_writes_everything(signal: &str, code: i32) {
    let short = signal.trim_start_matches("SIG");
    let dir = tempfile::tempdir().unwrap();
    // Three virtual days at 3600: 72 s of wall time, far longer than the test waits.
    let (mut child, lines) = spawn(
        &[
            "--scenario",
            "rollout",
            "--devices",
            "20",
            "--time-scale",
            "3600",
            "--no-progress",
            "--report",
            "r.json",
            "--html",
            "r.html",
            "--junit",
            "r.xml",
        ],
        dir.path(),
    );
    wait_for(&lines, "running scenario rollout");
    kill(short, &child);
    wait_for(
        &lines,
        &format!("{signal}: stopping the fleet and writing the reports"),
    );
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(code), "{stdout}");
    assert!(
        stdout.contains(&format!("INTERRUPTED by {signal} at virtual")),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL"),
        "an interrupted run does not pass: {stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(report["interrupted"]["signal"], signal);
    let at = report["interrupted"]["at_virtual_ms"].as_u64().unwrap();
    assert!(at < 72 * 3_600_000, "stopped before the end: {at}");
    assert_eq!(report["passed"], false);
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    assert!(html.contains(&format!(
        "id=\"interrupted\" class=\"FAIL\">Interrupted by {signal}"
    )));
    let junit = std::fs::read_to_string(dir.path().join("r.xml")).unwrap();
    assert!(
        junit.contains(&format!("<failure message=\"interrupted by {signal}")),
        "{junit}"
    );

    // The interrupted report is still a valid report.
    let out = crate::schema::validate(&[dir.path().join("r.json")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn sigint_stops_the_fleet_writes_every_report_and_exits_130() {
    interrupted_run_writes_everything("SIGINT", 130);
}

#[test]
fn sigterm_stops_the_fleet_writes_every_report_and_exits_143() {
    interrupted_run_writes_everything("SIGTERM", 143);
}

/// After the first SIGINT the run waits for its requests in flight, here a server that never
/// answers (each request would wait out its 10-minute timeout): the second SIGINT quits at
/// once, exit 130, and no report is written.
#[test]
fn a_second_sigint_quits_at_once_without_the_reports() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (got_request, requests) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut byte = [0u8; 1];
            // The pre-flight only connects; a device's check sends a request.
            if stream.read(&mut byte).unwrap_or(0) == 1 {
                let _ = got_request.send(());
            }
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let server = format!("http://127.0.0.1:{port}");
    let (mut child, lines) = spawn(
        &[
            "--scenario",
            "boot-storm",
            "--devices",
            "3",
            "--time-scale",
            "3600",
            "--no-progress",
            "--request-timeout",
            "10m",
            "--server",
            &server,
            "--report",
            "r.json",
        ],
        dir.path(),
    );
    wait_for(&lines, "running scenario boot-storm");
    requests
        .recv_timeout(Duration::from_secs(120))
        .expect("a check reached the server");
    kill("INT", &child);
    wait_for(&lines, "SIGINT: stopping the fleet");
    kill("INT", &child);
    wait_for(&lines, "SIGINT again: quitting without the reports");
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(!dir.path().join("r.json").exists());
}
