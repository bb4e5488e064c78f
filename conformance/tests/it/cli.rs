//! The `ucupdate-conformance` binary as a CI pipeline runs it: green against the server stub
//! with a JUnit file, exit 1 with the failed check named in the JUnit file against a server
//! that answers every check with 500, exit 2 (and nothing run) on a check name it does not
//! know, and `--list` printing the catalogue. `ucupdate-sim conformance` is the same code
//! (`ucupdate_conformance::cli`); the simulator's own tests check that it takes these flags.

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use ucupdate_server_stub::{ServerConfig, UserDb};

const BIN: &str = env!("CARGO_BIN_EXE_ucupdate-conformance");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn green_against_the_stub_with_junit() {
    let data = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::loopback(data.path().join("srv"));
    let mut users = UserDb::default();
    users.insert(Some("CONTOSO"), "alice", "S3cret!");
    config.users = users;
    config.catalog_signer = Some(crate::catalog_signer());
    let server = ucupdate_server_stub::start(config).await.unwrap();
    let ca = data.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let trust = data.path().join("catalog-ca.pem");
    std::fs::write(&trust, crate::catalog_ca()).unwrap();
    let password = data.path().join("pw");
    std::fs::write(&password, "S3cret!\n").unwrap();
    let junit = data.path().join("junit.xml");
    let output = tokio::process::Command::new(BIN)
        .args(["--target", &server.internal_url().unwrap().to_string()])
        .args([
            "--external-target",
            &server.external_url().unwrap().to_string(),
        ])
        .args([
            "--user",
            "CONTOSO\\alice",
            "--admin",
            &server.admin_url().unwrap().to_string(),
        ])
        .arg("--password-file")
        .arg(&password)
        .arg("--admin-token-file")
        .arg(server.admin_token().path())
        .arg("--ca")
        .arg(&ca)
        .arg("--trust")
        .arg(&trust)
        .arg("--junit")
        .arg(&junit)
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("0 failed, 0 skipped"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("failures=\"0\"") && xml.contains("name=\"nbt-content-type\""),
        "{xml}"
    );
    assert!(
        !xml.contains("S3cret!") && !stdout.contains("S3cret!"),
        "the password leaked"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_server_fails_with_the_check_named() {
    // A server that answers everything with 500 and keeps serving.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = stream.read(&mut buf).await;
                let body = "broken";
                let reply = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let output = tokio::process::Command::new(BIN)
        .args([
            "--target",
            &format!("http://{addr}"),
            "--only",
            "check-accepted,unknown-elements-tolerated",
        ])
        .arg("--junit")
        .arg(&junit)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL    check-accepted"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"2\""), "{xml}");
    assert!(xml.contains("<failure"), "{xml}");
    server.abort();
}

#[test]
fn list_prints_the_catalogue_in_order() {
    let output = std::process::Command::new(BIN)
        .arg("--list")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let catalogue = ucupdate_conformance::catalogue();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), catalogue.len(), "{stdout}");
    for (line, (name, description)) in lines.iter().zip(&catalogue) {
        assert_eq!(*line, format!("{name:<36} {description}"));
    }
}

/// A typo in a CI pipeline's `--skip` must not silently skip a check: exit 2 before any
/// check runs (the target does not even listen), naming the bad name and how to list them.
#[test]
fn an_unknown_check_name_is_a_usage_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let output = std::process::Command::new(BIN)
        .args([
            "--target",
            &target,
            "--skip",
            "range-requests,no-such-check",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "{:?}", output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "error: unknown check name(s): no-such-check (see `ucupdate-conformance --list`)"
        ),
        "{stderr}"
    );
}

/// Usage errors exit 2 with the flag named: a missing --target (clap's own), a target that
/// is not a URL, a CA file that does not exist (with the OS's reason after the flag).
#[test]
fn bad_flags_exit_2_and_name_the_flag() {
    let run = |args: &[&str]| {
        let output = std::process::Command::new(BIN).args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--target"), "{stderr}");

    let (code, stderr) = run(&["--target", "ftp://pool"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: --target ftp://pool: invalid URL"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("missing.pem");
    let (code, stderr) = run(&["--target", "http://pool", "--ca", ca.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: --ca {}: ", ca.display())),
        "{stderr}"
    );
}
