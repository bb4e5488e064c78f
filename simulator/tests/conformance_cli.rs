//! `ucupdate-sim conformance` as a CI pipeline runs it: green against the server stub with a
//! JUnit file, and exit 1 with the failed check named in the JUnit file against a server that
//! answers every check with 500.

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use ucupdate_server_stub::{ServerConfig, UserDb};

const SIM: &str = env!("CARGO_BIN_EXE_ucupdate-sim");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn green_against_the_stub_with_junit() {
    let data = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::loopback(data.path().join("srv"));
    let mut users = UserDb::default();
    users.insert(Some("CONTOSO"), "alice", "S3cret!");
    config.users = users;
    let server = ucupdate_server_stub::start(config).await.unwrap();
    let ca = data.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let password = data.path().join("pw");
    std::fs::write(&password, "S3cret!\n").unwrap();
    let junit = data.path().join("junit.xml");
    let output = tokio::process::Command::new(SIM)
        .arg("conformance")
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
        .arg("--ca")
        .arg(&ca)
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
    let output = tokio::process::Command::new(SIM)
        .args([
            "conformance",
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
