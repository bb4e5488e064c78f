//! Exit code 2 for setup mistakes, found before or at the end of the first phase, each with a
//! message that names the mistake: they must not look like a fleet of failed devices (exit 1).
//! Real loopback sockets: a port nothing listens on, and a plain HTTP peer that refuses every
//! request with 404.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Output};

const SIM: &str = env!("CARGO_BIN_EXE_ucupdate-sim");

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

/// A loopback HTTP peer that answers every request `404 Not Found` (a web server, but not a
/// Device Update server), one thread per connection; lives as long as the test process.
pub fn refusing_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    port
}

fn sim(args: &[&str]) -> Output {
    Command::new(SIM)
        .args(["run", "--no-progress"])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn assert_setup_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    assert!(
        !stdout.contains("FAIL"),
        "no fleet verdict for a setup error: {stdout}"
    );
}

#[test]
fn a_server_nothing_listens_on_is_unreachable_before_the_run() {
    let server = format!("http://127.0.0.1:{}", closed_port());
    let out = sim(&[
        "--scenario",
        "boot-storm",
        "--devices",
        "5",
        "--server",
        &server,
    ]);
    assert_setup_error(&out, "server unreachable: connecting to http://127.0.0.1:");
}

#[test]
fn a_server_that_refuses_every_check_stops_the_run_after_the_first_phase() {
    let server = format!("http://127.0.0.1:{}", refusing_server());
    let out = sim(&[
        "--scenario",
        "boot-storm",
        "--devices",
        "5",
        "--server",
        &server,
    ]);
    assert_setup_error(&out, "refused every check before the first phase ended");
    assert!(String::from_utf8_lossy(&out.stderr).contains("check-internal 404="));
}

#[test]
fn devices_outside_the_firewall_need_an_external_url() {
    let server = format!("http://127.0.0.1:{}", refusing_server());
    let out = sim(&[
        "--scenario",
        "steady",
        "--devices",
        "5",
        "--server",
        &server,
    ]);
    // steady has no devices outside: the same server gets past this check (and is refused).
    assert_setup_error(&out, "refused every check");
    let out = sim(&[
        "--scenario",
        "steady",
        "--devices",
        "5",
        "--external-share",
        "1",
        "--server",
        &server,
    ]);
    assert_setup_error(&out, "5 of the 5 devices are outside the firewall");
    assert_setup_error(&out, "--external-server");
}

#[test]
fn a_scenario_that_changes_the_server_needs_its_admin_api() {
    let server = format!("http://127.0.0.1:{}", refusing_server());
    let out = sim(&[
        "--scenario",
        "rollout",
        "--devices",
        "5",
        "--server",
        &server,
    ]);
    assert_setup_error(&out, "no admin API was given: give --admin URL");
}

#[test]
fn zero_devices_and_an_unknown_trace_device_are_refused() {
    assert_setup_error(
        &sim(&["--scenario", "steady", "--devices", "0"]),
        "a run needs at least one device",
    );
    assert_setup_error(
        &sim(&[
            "--scenario",
            "steady",
            "--devices",
            "5",
            "--trace-device",
            "5",
        ]),
        "--trace-device 5: no such device (the fleet has devices 0 to 4)",
    );
    assert_setup_error(
        &sim(&[
            "--scenario",
            "steady",
            "--devices",
            "8",
            "--shard",
            "1/4",
            "--trace-device",
            "2",
        ]),
        "--trace-device 2 is not in shard 1/4 (it is in shard 2/4)",
    );
    assert_setup_error(
        &sim(&["--scenario", "steady", "--devices", "3", "--shard", "5/8"]),
        "shard 5/8 of 3 devices holds no device",
    );
}
