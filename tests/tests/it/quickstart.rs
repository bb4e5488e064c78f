//! `docs/QUICKSTART.md`, run as written: every `sh` block after the first (which builds the
//! release binaries) goes, in order, into one `bash -euo pipefail` script in an empty
//! directory, with this build's binaries first on `PATH` and a free `PORT`. The page's
//! claims are then checked on what the script printed: the import and approval, a fleet that
//! passed, and an agent that updated and is in the inventory. A change to a flag, a default or
//! a message that the page relies on fails here.

use std::path::PathBuf;
use std::process::Command;

const PAGE: &str = include_str!("../../../docs/QUICKSTART.md");

/// The `sh` blocks of the page, in order.
fn sh_blocks(page: &str) -> Vec<&str> {
    page.split("```sh\n")
        .skip(1)
        .map(|rest| rest.split_once("```").map_or(rest, |(block, _)| block))
        .collect()
}

/// `target/<profile>/`, where cargo puts the workspace's binaries (this test runs from
/// `target/<profile>/deps/`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|d| d.parent()).unwrap().to_owned()
}

#[test]
fn the_first_hour_walkthrough_runs_as_written() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: openssl is not installed (the walkthrough makes its CA with it)");
        return;
    }
    let bins = bin_dir();
    for name in ["ucupdate-server", "ucupdate-sim", "ucupdate-agent"] {
        assert!(
            bins.join(name).exists(),
            "{} is missing: build the workspace's binaries first (`cargo test --workspace` does)",
            bins.join(name).display()
        );
    }
    let blocks = sh_blocks(PAGE);
    assert!(blocks[0].contains("cargo build"), "the first block builds");
    let script = format!("set -euo pipefail\n{}", blocks[1..].join("\n"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        bins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("PORT", port.to_string())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let work = dir.path().join("first-hour");
    let agent_log = std::fs::read_to_string(work.join("agent.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "the walkthrough failed:\n{stdout}\n{stderr}\nagent.log:\n{agent_log}"
    );
    for claim in [
        "UCPhone/Polycom/CX700/A/ENU/CPE pending - approved 1.0.522.101",
        "PASS: 20 of 20 devices met expectations",
        "Version:             1.0.522.101",
        "Last Update Status:  0x0/200",
        "00-04-F2-00-AB-CD\tUCPhone\tPolycom/CX700\tCPE=1.0.522.0\t",
        "\tapproved CPE 1.0.522.101\n",
    ] {
        assert!(stdout.contains(claim), "missing {claim:?} in:\n{stdout}");
    }
    // What the page tells the reader they will see.
    assert!(PAGE.contains("`Version: 1.0.522.101`"));
    assert!(work.join("fleet.json").exists());
}
