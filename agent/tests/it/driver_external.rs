//! The real driver outside the firewall against the stub's external (HTTPS + NTLM) listener:
//! a user signed in through the CLI binary gets the update with NTLM on checks and downloads;
//! with nobody signed in the server's 401 ends each attempt and, over two simulated days, the
//! server sees only the regular daily checks (no retry storm, no credential loop).

use std::time::Duration;

use crate::driver_support::*;
use ucupdate_agent::driver::RunOutcome;
use ucupdate_agent::machine::MachineConfig;

fn external(stub: &Stub) -> MachineConfig {
    MachineConfig {
        external_server_url: Some(stub.server.external_url().unwrap().to_string()),
        outside_firewall: Some(true),
        ..quick_machine()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_update_with_a_signed_in_user_uses_ntlm() {
    let stub = Stub::start().await;
    stub.approve("2.0.0.0").await;
    let dev = Dev::new();
    let run = spawn(
        driver_config(&stub, &dev, external(&stub)),
        dev.device("1.0.0.0", true),
    );
    // Power-on with nobody signed in: denied, and no update.
    run.wait_for(|s| s.last_outcome.as_deref() == Some("denied: no user signed in"))
        .await;
    assert_eq!(stub.server.control().metrics().ntlm_successes, 0);

    // Sign in the way a test bench does, with the password in a file.
    let password_file = dev.dir.path().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    // A password file others can read is refused (docs/AGENT.md).
    std::fs::set_permissions(
        &password_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ucupdate-agent"))
        .arg("--state-dir")
        .arg(dev.state_dir())
        .args(["sign-in", USER, "--password-file"])
        .arg(&password_file)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(PASSWORD));

    let outcome = run.finished().await;
    assert_eq!(
        outcome,
        RunOutcome::Rebooted {
            version: v("2.0.0.0")
        }
    );
    let metrics = stub.server.control().metrics();
    // The check and each of the three files authenticated.
    assert!(metrics.ntlm_successes >= 4, "{metrics:?}");
    assert_eq!(metrics.ntlm_failures, 0);
    assert_eq!(dev.state().current_version, v("2.0.0.0"));
    assert_eq!(dev.reboots(), "2.0.0.0\n");
    let inventory = stub.server.control().inventory();
    assert_eq!(inventory[0].last_user.as_deref(), Some(USER));
}

#[tokio::test(start_paused = true)]
async fn external_without_a_user_is_denied_without_a_retry_storm() {
    let stub = Stub::start_with(|c| c.flush_interval = Duration::from_secs(3600)).await;
    stub.approve("2.0.0.0").await;
    let dev = Dev::new();
    let machine = MachineConfig {
        // The production timing: daily checks, minutes of back-off.
        power_on_jitter: Duration::ZERO,
        ..external(&stub)
    };
    let machine = MachineConfig {
        backoff_base: MachineConfig::default().backoff_base,
        backoff_cap: MachineConfig::default().backoff_cap,
        ..machine
    };
    let run = spawn(
        driver_config(&stub, &dev, machine),
        dev.device("1.0.0.0", false),
    );
    // Two simulated days.
    tokio::time::sleep(Duration::from_secs(50 * 3600)).await;
    let status = run.handle.status();
    assert_eq!(
        status.last_outcome.as_deref(),
        Some("denied: no user signed in")
    );
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.phase, "idle");
    // Power-on, then one regular check a day (22.8 h .. 25.2 h apart).
    // Refused before the handler, the stub counts these under `auth`.
    let checks = stub.hits("auth") + stub.hits("check");
    assert!((2..=3).contains(&checks), "{checks} checks in 50 h");
    let metrics = stub.server.control().metrics();
    assert_eq!(metrics.ntlm_failures + metrics.ntlm_successes, 0);
    assert_eq!(stub.hits("files"), 0);
    run.shutdown().await;
    assert_eq!(dev.state().current_version, v("1.0.0.0"));
}
