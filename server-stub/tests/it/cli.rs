//! The `ucupdate-server` binary: offline commands on a data directory, and `serve` with
//! port 0 printing its URLs, serving a check, and stopping cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use ucupdate_server_stub::PackageEntry;

use crate::common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ucupdate-server"))
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn offline_commands_work_on_the_state_file() {
    let data = tempfile::tempdir().unwrap();
    let pkg = tempfile::tempdir().unwrap();
    let cab = pkg.path().join("UCUpdates.cab");
    ucupdate_server_stub::package::write_cab(
        &cab,
        &[PackageEntry {
            key: key(),
            version: v("2.0.0.0"),
            files: files("cli"),
        }],
    )
    .unwrap();
    let d = data.path().to_str().unwrap();

    let (ok, out, err) = run(&["import", "--data", d, cab.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("UCPhone/Polycom/CX700/A/ENU/CPE 2.0.0.0 (3 files): pending 2.0.0.0"),
        "{out}"
    );

    let (ok, out, _) = run(&["rules", "list", "--data", d]);
    assert!(ok && out.contains("pending 2.0.0.0 approved -"), "{out}");
    let (ok, out, _) = run(&[
        "rules",
        "approve",
        "--data",
        d,
        "UCPhone/Polycom/CX700/A/ENU/CPE",
    ]);
    assert!(ok && out.contains("approved 2.0.0.0"), "{out}");
    let (ok, _, err) = run(&[
        "rules",
        "approve",
        "--data",
        d,
        "UCPhone/Polycom/CX700/A/ENU/CPE",
    ]);
    assert!(!ok && err.contains("no pending version"), "{err}");
    let (ok, _, err) = run(&[
        "rules",
        "reset",
        "--data",
        d,
        "UCPhone/Polycom/CX700/A/ENU/CPE",
    ]);
    assert!(!ok && err.contains("no pending version"), "{err}");
    let (ok, _, err) = run(&["rules", "reset", "--data", d, "not/a/key"]);
    assert!(!ok && err.contains("DeviceType/Brand"), "{err}");
    let (ok, out, _) = run(&["rules", "list", "--json", "--data", d]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok);
    assert_eq!(json[0]["approved"], "2.0.0.0");

    assert!(run(&["test-devices", "add", "--data", d, "0004f2000176"]).0);
    assert!(run(&["test-devices", "add", "--data", d, "PCX-1"]).0);
    for lookalike in ["zz-zz", "00-04-F2-00-01"] {
        let (ok, _, err) = run(&["test-devices", "add", "--data", d, lookalike]);
        assert!(
            !ok && err.contains("invalid MAC address"),
            "{lookalike}: {err}"
        );
    }
    let (_, out, _) = run(&["test-devices", "list", "--data", d]);
    assert_eq!(
        out,
        format!("global/mac-{MAC}\tMACAddress\t{MAC}\nglobal/serial-PCX-1\tSerialNumber\tPCX-1\n")
    );
    assert!(run(&["test-devices", "remove", "--data", d, "00:04:f2:00:01:76"]).0);
    let (ok, _, err) = run(&["test-devices", "remove", "--data", d, MAC]);
    assert!(!ok && err.contains("not a test device"), "{err}");

    let (ok, out, _) = run(&["inventory", "--data", d]);
    assert!(ok && out.starts_with("DEVICE\t"), "{out}");
    let (_, help, _) = run(&["serve", "--help"]);
    for flag in [
        "--internal",
        "--internal-tls",
        "--external",
        "--admin",
        "--users",
        "--cert",
        "--key",
        "--public-internal-url",
        "--public-external-url",
        "--log-format",
        "--tls-name",
        "--ca-out",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

/// `--workers` is one thread per unit: a number past any machine's cores is refused before
/// anything starts, with the bound in the message.
#[test]
fn serve_refuses_an_absurd_worker_count() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("srv");
    let (ok, _out, err) = run(&[
        "serve",
        "--init",
        "--data",
        dir.to_str().unwrap(),
        "--workers",
        "100000",
    ]);
    assert!(!ok);
    assert!(err.contains("--workers") && err.contains("1024"), "{err}");
    assert!(!dir.exists(), "nothing was initialised");
}

/// A world-readable users file (every device account's password) was accepted.
#[test]
fn serve_refuses_a_users_file_others_may_read() {
    let data = tempfile::tempdir().unwrap();
    let users = data.path().join("users.txt");
    std::fs::write(&users, "CONTOSO\\alice:Secret1!\n").unwrap();
    for mode in [0o644, 0o640] {
        std::fs::set_permissions(&users, std::fs::Permissions::from_mode(mode)).unwrap();
        let (ok, out, err) = run(&[
            "serve",
            "--init",
            "--data",
            data.path().join("srv").to_str().unwrap(),
            "--users",
            users.to_str().unwrap(),
            "--internal",
            "127.0.0.1:0",
            "--internal-tls",
            "off",
            "--external",
            "off",
            "--admin",
            "off",
        ]);
        assert!(!ok, "served with a users file of mode {mode:o}: {out}");
        assert!(
            err.contains("users file") && err.contains(&format!("mode {mode:04o}")),
            "{err}"
        );
        assert!(err.contains("chmod 600"), "{err}");
    }
}

/// A listener address in use was reported as `Address already in use (os error 98): Address
/// already in use (os error 98)`.
#[test]
fn an_address_in_use_is_reported_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(&[
        "serve",
        "--init",
        "--data",
        data.path().join("srv").to_str().unwrap(),
        "--internal",
        &addr,
        "--internal-tls",
        "off",
        "--external",
        "off",
        "--admin",
        "off",
    ]);
    assert!(!ok, "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains(&addr), "{err}");
    assert_eq!(last.matches("Address already in use").count(), 1, "{err}");
}

#[tokio::test]
async fn serve_prints_urls_serves_and_stops_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let users = data.path().join("users.txt");
    std::fs::write(&users, "CONTOSO\\alice:Secret1!\n").unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut child = bin()
        .args([
            "serve",
            "--init",
            "--data",
            data.path().to_str().unwrap(),
            "--users",
            users.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .args([
            "--internal",
            "127.0.0.1:0",
            "--internal-tls",
            "off",
            "--external",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(5)
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(
        lines[0].starts_with("internal http://127.0.0.1:"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("external https://127.0.0.1:"),
        "{lines:?}"
    );
    assert!(lines[3].starts_with("ca "), "{lines:?}");
    // The token file's path is printed, never the token.
    let token_file = lines[4]
        .strip_prefix("admin-token ")
        .expect("admin-token line");
    assert_eq!(
        std::path::Path::new(token_file),
        data.path().join("admin.token")
    );
    let token = std::fs::read_to_string(token_file).unwrap();
    assert!(!lines.concat().contains(token.trim()), "{lines:?}");
    let url: ucupdate_protocol::HttpUrl = lines[0].split_once(' ').unwrap().1.parse().unwrap();
    let addr = format!("127.0.0.1:{}", url.port).parse().unwrap();
    let mut c = Conn::plain(addr).await;
    assert_eq!(offered(&c.check("1.0.0.0", MAC).await), None);
    drop(c);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        stored_inventory(data.path()),
        vec![MAC.to_owned()],
        "inventory flushed at shutdown"
    );
}

/// Log lines written to a file kept ANSI colour codes: colour is for a terminal only.
#[tokio::test]
async fn logs_written_to_a_file_carry_no_colour_codes() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("server.log");
    let mut child = bin()
        .args(["serve", "--init", "--data"])
        .arg(data.path().join("srv"))
        .args(["--internal", "127.0.0.1:0", "--internal-tls", "off"])
        .args(["--external", "off", "--admin", "off"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // The URLs are printed once the listeners are up; the start-up log lines precede them.
    let first = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().next().unwrap().unwrap()
    })
    .await
    .unwrap();
    assert!(first.starts_with("internal "), "{first}");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("INFO"), "no log lines to look at: {text:?}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
}

/// The cmdlet model through the CLI: `rules show|remove` by identity, id or key, restore as
/// uninstall, `files clear`, `logs clear --days-back`, and named test devices.
#[test]
fn cmdlet_commands_on_the_state_file() {
    let data = tempfile::tempdir().unwrap();
    let pkg = tempfile::tempdir().unwrap();
    let cab = pkg.path().join("UCUpdates.cab");
    let entry = |version: &str| PackageEntry {
        key: key(),
        version: v(version),
        files: files(version),
    };
    ucupdate_server_stub::package::write_cab(&cab, &[entry("2.0.0.0")]).unwrap();
    let d = data.path().to_str().unwrap();
    assert!(run(&["import", "--data", d, cab.to_str().unwrap()]).0);
    let id = ucupdate_server_stub::model::rule_ref::rule_id(&key());
    let identity = format!("service:WebServer:pool01.contoso.com/{id}");

    let (ok, out, err) = run(&[
        "rules",
        "list",
        "--data",
        d,
        "--pool-fqdn",
        "pool01.contoso.com",
    ]);
    assert!(ok && out.contains(&identity), "{out}{err}");
    let (ok, out, err) = run(&[
        "rules",
        "show",
        "--data",
        d,
        "--pool-fqdn",
        "pool01.contoso.com",
        &identity,
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("Identity        : {identity}\n")),
        "{out}"
    );
    assert!(out.contains("PendingVersion  : 2.0.0.0\n"), "{out}");
    assert!(out.contains("ApprovedVersion : \n"), "{out}");
    let (ok, out, _) = run(&["rules", "show", "--data", d, "--json", &id]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok);
    assert_eq!(json["identity"], format!("service:WebServer:ucupdate/{id}"));
    let (ok, _, err) = run(&["rules", "show", "--data", d, &identity]);
    assert!(
        !ok && err.contains("pool01.contoso.com"),
        "another pool: {err}"
    );

    // Approve by id, then restore with no restore version: uninstalled.
    assert!(run(&["rules", "approve", "--data", d, &id]).0);
    let (ok, out, err) = run(&[
        "rules",
        "restore",
        "--data",
        d,
        ucupdate_server_stub::testing::UPDATE_KEY,
    ]);
    assert!(
        ok && out.contains("pending - approved - restore -"),
        "{out}{err}"
    );
    let (ok, _, err) = run(&["rules", "restore", "--data", d, &id]);
    // Once: the verb, then the key and the reason (not `restore K: K: ...`).
    assert!(!ok, "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "ucupdate-server: restore: {}: no restore version and nothing approved",
            ucupdate_server_stub::testing::UPDATE_KEY
        )
    );

    // Remove, then files clear takes the version no rule refers to any more.
    let (ok, out, err) = run(&["rules", "remove", "--data", d, &id]);
    assert!(ok && out.contains("removed"), "{out}{err}");
    let (ok, _, err) = run(&["rules", "show", "--data", d, &id]);
    assert!(!ok && err.contains("no rule"), "{err}");
    let version = data
        .path()
        .join("store/UCPhone/Polycom/CX700/A/ENU/2.0.0.0");
    assert!(version.exists());
    let (ok, out, err) = run(&["files", "clear", "--data", d]);
    assert!(ok && out.contains("2.0.0.0: deleted"), "{out}{err}");
    assert!(!version.exists());

    // logs clear: an old audit file goes, today's (none here) and younger ones stay.
    let audit = data.path().join(ucupdate_server_stub::audit::AUDIT_DIR);
    std::fs::create_dir_all(&audit).unwrap();
    std::fs::write(
        audit.join("RequestHandlerAuditLog_ucupdate_20200101.log"),
        "x",
    )
    .unwrap();
    let (ok, out, err) = run(&["logs", "clear", "--data", d, "--days-back", "30"]);
    assert!(ok && out.contains("1 audit files deleted"), "{out}{err}");
    assert_eq!(std::fs::read_dir(&audit).unwrap().count(), 0);

    // Named test devices.
    let (ok, out, err) = run(&[
        "test-devices",
        "add",
        "--data",
        d,
        "--name",
        "Lab1",
        "--site",
        "Redmond",
        "--mac",
        "00:04:f2:00:01:76",
    ]);
    assert!(ok && out.contains("site:Redmond/Lab1: added"), "{out}{err}");
    let (ok, _, err) = run(&[
        "test-devices",
        "add",
        "--data",
        d,
        "--name",
        "lab1",
        "--site",
        "redmond",
        "--serial",
        "PCX-1",
    ]);
    assert!(!ok && err.contains("exists already"), "{err}");
    assert!(
        run(&[
            "test-devices",
            "add",
            "--data",
            d,
            "--name",
            "Desk",
            "--serial",
            "PCX-1"
        ])
        .0
    );
    for bad in [
        "zz-zz",
        "PCX-1",
        "00-04-F2-00-01",
        "0004f200017",
        "00_04_f2_00_01_76",
    ] {
        let (ok, _, err) = run(&[
            "test-devices",
            "add",
            "--data",
            d,
            "--name",
            "Bad",
            "--mac",
            bad,
        ]);
        assert!(!ok && err.contains("invalid MAC address"), "{bad}: {err}");
    }
    let (ok, _, err) = run(&["test-devices", "add", "--data", d, "--name", "NoId"]);
    assert!(!ok, "a name needs --mac or --serial: {err}");
    let (_, out, _) = run(&["test-devices", "list", "--data", d]);
    assert_eq!(
        out,
        format!("global/Desk\tSerialNumber\tPCX-1\nsite:Redmond/Lab1\tMACAddress\t{MAC}\n")
    );
    let (ok, _, err) = run(&[
        "test-devices",
        "set",
        "--data",
        d,
        "site:Redmond/Lab1",
        "--mac",
        "0004F2000177",
    ]);
    assert!(ok, "{err}");
    let (_, out, _) = run(&["test-devices", "list", "--data", d, "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[1]["identifier"], OTHER_MAC);
    assert!(run(&["test-devices", "remove", "--data", d, "site:Redmond/Lab1"]).0);
    let (ok, _, err) = run(&["test-devices", "remove", "--data", d, "site:Redmond/Lab1"]);
    assert!(!ok && err.contains("no test device"), "{err}");
    let (ok, _, err) = run(&["test-devices", "set", "--data", d, "global/Desk"]);
    assert!(!ok, "set needs --mac or --serial: {err}");
}
