//! The `ucupdate-agent` binary end to end: `run --config agent.toml --exit-on-reboot
//! --log-format json --ca FILE` against the in-process stub's external (HTTPS + NTLM) listener,
//! with the user and password from the config. Checks that the daemon exits for the restart
//! with the new version current, that every log line is JSON, and that the password appears in
//! none of them even at `RUST_LOG=trace`.

use std::time::Duration;

use crate::driver_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_updates_over_ntlm_and_never_logs_the_password() {
    let stub = Stub::start().await;
    stub.approve("2.0.0.0").await;
    let dev = Dev::new();
    let dir = dev.dir.path();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, stub.server.ca_pem()).unwrap();
    let password = dir.join("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    // A password file others can read is refused (docs/AGENT.md).
    std::fs::set_permissions(
        &password,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"
[device]
brand = "Polycom"
model = "CX700"
mac = "{MAC}"
initial_version = "1.0.0.0"
user = 'CONTOSO\alice'
password_file = "{password}"
[machine]
external_server_url = "{external}"
outside_firewall = true
power_on_jitter = "0s"
sign_in_jitter = "0s"
idle_before_restart = "200ms"
[hooks]
reboot_cmd = 'echo "$UCUPDATE_VERSION" > "{marker}"'
[trust]
catalog_roots = "{roots}"
[agent]
seed = 3
"#,
            roots = write_catalog_roots(dir).display(),
            state = dev.state_dir().display(),
            password = password.display(),
            external = stub.server.external_url().unwrap(),
            marker = dir.join("rebooted").display(),
        ),
    )
    .unwrap();

    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ucupdate-agent"))
        .args([
            "run",
            "--exit-on-reboot",
            "--log-format",
            "json",
            "--config",
        ])
        .arg(&config)
        .arg("--ca")
        .arg(&ca)
        .env("RUST_LOG", "trace")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("the agent did not exit")
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{logs}");
    assert_eq!(
        std::fs::read_to_string(dir.join("rebooted")).unwrap(),
        "2.0.0.0\n"
    );
    assert_eq!(dev.state().current_version, v("2.0.0.0"));
    assert!(stub.server.control().metrics().ntlm_successes >= 1);

    let mut lines = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.get("level").is_some(), "{line}");
        lines += 1;
    }
    assert!(lines > 10, "{logs}");
    assert!(logs.contains("reboot hook ran"), "{logs}");
    assert!(!logs.contains(PASSWORD), "the password was logged");
}
