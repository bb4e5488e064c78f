//! The real driver against the in-process server stub over loopback, inside the firewall:
//! a whole update through the install and reboot hooks and the restart that follows, the
//! status screen (control socket, CLI binary, state dir), no update and `check-now`, a rollback
//! to an older approved version, a corrupted stored file that never reaches the install hook,
//! the idle wait restarted by activity (paused time), a reboot hook that returned, log names, a
//! RoundTable install hook given its RTConfig.xml, and the example config file.

use std::time::Duration;

use crate::driver_support::*;
use ucupdate_agent::driver::{
    read_offline_status, send_command, AgentConfig, Command, RunOutcome, StatusReport,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_update_installs_reboots_and_is_current_after_restart() {
    let stub = Stub::start().await;
    stub.approve("2.0.0.0").await;
    let dev = Dev::new();

    update_once(&stub, &dev, internal(&stub), "1.0.0.0").await;

    // The install hook saw the verified image and the running version; the reboot hook the new one.
    let image_len = files("2.0.0.0")[0].1.len();
    assert_eq!(dev.installs(), format!("2.0.0.0 {image_len} 1.0.0.0\n"));
    assert_eq!(dev.reboots(), "2.0.0.0\n");
    let state = dev.state();
    assert_eq!(state.current_version, v("2.0.0.0"));
    assert_eq!(state.fallback_version, Some(v("1.0.0.0")));
    assert!(state.install.is_none() && state.download.is_none());
    let updated = state.last_update_unix_ms.expect("update date recorded");
    let staged = dev.state_dir().join("staging/2.0.0.0/CPE.nbt");
    assert_eq!(read(&staged), files("2.0.0.0")[0].1);

    // The restart: the new version is current, the check reports it, nothing is installed again.
    let run = spawn(
        driver_config(&stub, &dev, internal(&stub)),
        dev.device("1.0.0.0", true),
    );
    let status = run
        .wait_for(|s| s.last_outcome.as_deref() == Some("no update"))
        .await;
    assert_eq!(status.current_version, "2.0.0.0");
    assert_eq!(status.fallback_version.as_deref(), Some("1.0.0.0"));
    assert_eq!(status.last_update_unix_ms, Some(updated));
    let seen = stub.server.control().inventory();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].versions.get("CPE").map(String::as_str),
        Some("2.0.0.0"),
        "{seen:?}"
    );

    // The status screen over the control socket, then through the CLI binary.
    let json = send_command(&dev.state_dir(), &["status"]).await.unwrap();
    let report: StatusReport = serde_json::from_str(&json).unwrap();
    assert!(report.running);
    assert_eq!(report.current_version, "2.0.0.0");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ucupdate-agent"))
        .arg("--state-dir")
        .arg(dev.state_dir())
        .arg("status")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("Version:             2.0.0.0\n"), "{text}");
    assert!(text.contains("Last outcome:        no update"), "{text}");
    assert!(text.contains("Agent:               running"), "{text}");
    let date = ucupdate_agent::driver::format_unix_ms(updated);
    assert!(
        text.contains(&format!("Last Update:         {date}")),
        "{text}"
    );

    assert_eq!(run.shutdown().await, RunOutcome::Shutdown);
    assert_eq!(dev.installs().lines().count(), 1);

    // With the daemon down, `status` reads the state dir.
    let offline = read_offline_status(&dev.state_dir()).unwrap().unwrap();
    assert!(!offline.running);
    assert_eq!(offline.current_version, "2.0.0.0");
    assert_eq!(offline.last_outcome.as_deref(), Some("no update"));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ucupdate-agent"))
        .arg("--state-dir")
        .arg(dev.state_dir())
        .arg("status")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not running") && text.contains("2.0.0.0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_update_then_check_now_over_the_control_socket() {
    let stub = Stub::start().await;
    let dev = Dev::new();
    let run = spawn(
        driver_config(&stub, &dev, internal(&stub)),
        dev.device("1.0.0.0", true),
    );
    let status = run
        .wait_for(|s| s.last_outcome.as_deref() == Some("no update"))
        .await;
    assert_eq!(status.phase, "idle");
    assert_eq!(stub.hits("check"), 1);
    let first_check = status.last_check_unix_ms.unwrap();

    // The CLI's check-now goes through the socket; the machine checks once more, at once.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ucupdate-agent"))
        .arg("--state-dir")
        .arg(dev.state_dir())
        .arg("check-now")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    run.wait_for(|s| s.last_check_unix_ms > Some(first_check))
        .await;
    assert_eq!(stub.hits("check"), 2);
    assert_eq!(stub.hits("files"), 0);
    run.shutdown().await;
    assert_eq!(dev.installs(), "");
    assert_eq!(dev.state().current_version, v("1.0.0.0"));
}

/// Issue 18: after a reboot hook that returned (no real restart), `check-now` printed `ok` and
/// did nothing; the agent stayed "rebooting". Now the request ends the wait: the device checks
/// at once, reporting the new version, and the hook is not run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_now_after_a_reboot_hook_that_returned_checks_with_the_new_version() {
    let stub = Stub::start().await;
    stub.approve("2.0.0.0").await;
    let dev = Dev::new();
    let mut config = driver_config(&stub, &dev, internal(&stub));
    config.exit_on_reboot = false;
    let run = spawn(config, dev.device("1.0.0.0", true));
    run.wait_for(|s| s.phase == "rebooting").await;
    assert_eq!(stub.hits("check"), 1);

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ucupdate-agent"))
        .arg("--state-dir")
        .arg(dev.state_dir())
        .arg("check-now")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = run
        .wait_for(|s| s.phase == "idle" && s.last_outcome.as_deref() == Some("no update"))
        .await;
    assert_eq!(status.current_version, "2.0.0.0");
    assert_eq!(stub.hits("check"), 2);
    let seen = stub.server.control().inventory();
    assert_eq!(
        seen[0].versions.get("CPE").map(String::as_str),
        Some("2.0.0.0"),
        "{seen:?}"
    );
    run.shutdown().await;
    assert_eq!(dev.reboots(), "2.0.0.0\n", "the reboot hook ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_installs_the_restored_older_version() {
    let stub = Stub::start().await;
    stub.approve("2.0.0.0").await;
    stub.approve("3.0.0.0").await;
    let dev = Dev::new();
    update_once(&stub, &dev, internal(&stub), "1.0.0.0").await;
    assert_eq!(dev.state().current_version, v("3.0.0.0"));

    // The administrator restores: the approved version is 2.0.0.0 again, older than 3.0.0.0.
    let rule = stub.server.control().restore(&key()).await.unwrap();
    assert_eq!(rule.approved, Some(v("2.0.0.0")), "{rule:?}");
    update_once(&stub, &dev, internal(&stub), "1.0.0.0").await;

    let state = dev.state();
    assert_eq!(state.current_version, v("2.0.0.0"));
    assert_eq!(state.fallback_version, Some(v("3.0.0.0")));
    let image_3 = files("3.0.0.0")[0].1.len();
    let image_2 = files("2.0.0.0")[0].1.len();
    assert_eq!(
        dev.installs(),
        format!("3.0.0.0 {image_3} 1.0.0.0\n2.0.0.0 {image_2} 3.0.0.0\n")
    );
    assert_eq!(dev.reboots(), "3.0.0.0\n2.0.0.0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_bytes_never_reach_the_install_hook() {
    let stub = Stub::start().await;
    stub.approve("2.0.0.0").await;
    // Same size, different bytes: only the SHA-256 the stub advertised can tell.
    let stored = stub.stored("2.0.0.0", "CPE.nbt");
    let mut bytes = read(&stored);
    bytes[1000] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();

    let dev = Dev::new();
    let machine = ucupdate_agent::machine::MachineConfig {
        max_download_attempts: 2,
        ..internal(&stub)
    };
    let run = spawn(
        driver_config(&stub, &dev, machine),
        dev.device("1.0.0.0", true),
    );
    // Two attempts, each discarded, then the offer is given up until the next regular check.
    let status = run
        .wait_for(|s| s.phase == "idle" && s.last_error.as_deref() == Some("hash-mismatch"))
        .await;
    assert_eq!(status.current_version, "1.0.0.0");
    assert_eq!(status.target_version, None);
    assert!(stub.hits("files") >= 2, "{}", stub.hits("files"));
    run.shutdown().await;
    assert_eq!(dev.installs(), "", "the install hook must never run");
    assert_eq!(dev.reboots(), "");
    let state = dev.state();
    assert!(state.install.is_none());
    assert!(!dev.state_dir().join("staging/2.0.0.0/CPE.nbt").exists());
}

/// Paused time, no child process: the install waits for five idle minutes, and a touch of the
/// activity file at minute 4 pushes it back.
#[tokio::test(start_paused = true)]
async fn activity_restarts_the_idle_wait() {
    let stub = Stub::start().await;
    stub.approve("2.0.0.0").await;
    let dev = Dev::new();
    let machine = ucupdate_agent::machine::MachineConfig {
        idle_before_restart: Duration::from_secs(300),
        ..internal(&stub)
    };
    let mut config = driver_config(&stub, &dev, machine);
    config.activity_poll = Duration::from_secs(10);
    let run = spawn(config, dev.device("1.0.0.0", false));
    let guard = Duration::from_secs(86_400);
    let waiting = tokio::time::timeout(guard, run.handle.wait_for(|s| s.phase == "waiting-idle"))
        .await
        .unwrap();
    assert_eq!(waiting.target_version.as_deref(), Some("2.0.0.0"));

    tokio::time::sleep(Duration::from_secs(240)).await;
    std::fs::write(dev.activity_file(), "touched").unwrap();
    // The file is read within one poll; at minute 8 (4 after the touch) it still waits.
    tokio::time::sleep(Duration::from_secs(240)).await;
    assert_eq!(run.handle.status().phase, "waiting-idle");
    run.handle.send(Command::Activity);
    tokio::time::sleep(Duration::from_secs(290)).await;
    assert_eq!(run.handle.status().phase, "waiting-idle");

    let outcome = tokio::time::timeout(guard, run.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome,
        RunOutcome::Rebooted {
            version: v("2.0.0.0")
        }
    );
    assert_eq!(dev.state().current_version, v("2.0.0.0"));
}

/// Paused time: while the call file exists nothing is installed, however long the device idles.
#[tokio::test(start_paused = true)]
async fn a_call_holds_the_install_until_it_ends() {
    let stub = Stub::start().await;
    stub.approve("2.0.0.0").await;
    let dev = Dev::new();
    let call = dev.dir.path().join("in-call");
    std::fs::write(&call, "").unwrap();
    let machine = ucupdate_agent::machine::MachineConfig {
        idle_before_restart: Duration::from_secs(300),
        ..internal(&stub)
    };
    let mut config = driver_config(&stub, &dev, machine);
    config.activity_poll = Duration::from_secs(10);
    let device = dev.device_with(
        "1.0.0.0",
        false,
        &format!("call_file = \"{}\"\n", call.display()),
    );
    let run = spawn(config, device);
    let guard = Duration::from_secs(86_400);
    tokio::time::timeout(guard, run.handle.wait_for(|s| s.phase == "waiting-idle"))
        .await
        .unwrap();
    // A two-hour call: still waiting at its end.
    tokio::time::sleep(Duration::from_secs(7200)).await;
    assert_eq!(run.handle.status().phase, "waiting-idle");
    assert_eq!(dev.state().current_version, v("1.0.0.0"));

    std::fs::remove_file(&call).unwrap();
    let outcome = tokio::time::timeout(guard, run.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome,
        RunOutcome::Rebooted {
            version: v("2.0.0.0")
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_logs_are_uploaded_after_a_check_when_configured() {
    let stub = Stub::start().await;
    let dev = Dev::new();
    // A local name the service does not know: the agent names the upload the documented way.
    let log = dev.dir.path().join("ui.log");
    let mut contents = b"head that does not fit\n".to_vec();
    contents.extend(std::iter::repeat_n(b'x', 1_024_000));
    std::fs::write(&log, &contents).unwrap();
    let machine = ucupdate_agent::machine::MachineConfig {
        log_upload: ucupdate_agent::machine::LogPolicy::AfterCheck,
        ..internal(&stub)
    };
    let device = dev.device_with(
        "1.0.0.0",
        false,
        &format!("log_files = [\"{}\"]\n", log.display()),
    );
    let run = spawn(driver_config(&stub, &dev, machine), device);
    run.wait_for(|s| s.last_outcome.as_deref() == Some("no update"))
        .await;
    let celogs = stub
        .dir
        .path()
        .join(ucupdate_server_stub::logs::CLIENT_LOG_DIR)
        .join("CELog");
    // The upload runs beside the check; the stub's counter says when it is done.
    tokio::time::timeout(Duration::from_secs(60), async {
        while stub.hits("log_upload") == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("no log upload");
    run.shutdown().await;
    let names: Vec<String> = std::fs::read_dir(&celogs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    // `UCPhone_0004F2000176-YYYYMMDD-CELOGHHMMSS_1.clg`
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    assert!(
        name.len() == 47
            && name.starts_with("UCPhone_0004F2000176-")
            && digits(&name[21..29])
            && &name[29..35] == "-CELOG"
            && digits(&name[35..41])
            && name.ends_with("_1.clg"),
        "{name}"
    );
    let uploaded = read(&celogs.join(name));
    // Only the tail fits the server's limit; the head is what is dropped.
    assert_eq!(uploaded.len(), 1_024_000);
    assert_eq!(uploaded[..], contents[contents.len() - 1_024_000..]);
}

/// The example shipped `reboot_cmd = "/sbin/reboot"`: run as-is as root on a workstation it
/// rebooted the machine after an update. As shipped, its hooks do nothing; the real commands
/// are there, commented, for an integrator to take.
#[test]
fn the_example_config_is_safe_to_run_as_is() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/agent.example.toml");
    let config = AgentConfig::load(std::path::Path::new(path)).unwrap();
    assert_eq!(
        config.hooks.install_cmd, None,
        "install_cmd runs a real installer"
    );
    assert_eq!(
        config.hooks.reboot_cmd, None,
        "reboot_cmd reboots the machine"
    );
    let text = std::fs::read_to_string(path).unwrap();
    // No live string value anywhere in the file names a command that stops the machine.
    let value: toml::Value = toml::from_str(&text).unwrap();
    let mut strings = Vec::new();
    collect_strings(&value, &mut strings);
    for s in strings {
        for word in [
            "reboot",
            "shutdown",
            "poweroff",
            "halt",
            "systemctl",
            "/sbin/",
        ] {
            assert!(!s.contains(word), "a live setting runs {word:?}: {s}");
        }
    }
    assert!(
        text.contains("# reboot_cmd = \"/sbin/reboot\""),
        "the real shape stays documented"
    );
}

fn collect_strings(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        toml::Value::Table(t) => t.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

#[test]
fn the_example_config_parses_and_builds() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/agent.example.toml");
    let config = AgentConfig::load(std::path::Path::new(path)).unwrap();
    assert_eq!(config.device.brand, "Polycom");
    assert_eq!(config.machine.idle_before_restart, Duration::from_secs(300));
    assert_eq!(config.machine.poll_interval, Duration::from_secs(86_400));
    config.machine.validate().unwrap();
    let device = config.device().unwrap();
    use ucupdate_agent::device::Device;
    assert_eq!(device.identity().model.as_str(), "CX700");
    assert_eq!(device.factory_version(), v("1.0.522.101"));
    let driver = config.driver_config().unwrap();
    assert!(driver.control_socket && !driver.exit_on_reboot);
    // Unknown keys are refused, so a typo cannot silently fall back to a default.
    let typo = std::fs::read_to_string(path)
        .unwrap()
        .replace("idle_before_restart", "idle_before_reboot");
    assert!(AgentConfig::from_toml(&typo).is_err());
}

/// Issue 14: a RoundTable's offer carries `RTConfig.xml` (the stub adds its generic one); the
/// install hook finds it in `UCUPDATE_RTCONFIG`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roundtable_install_hook_gets_the_offered_rtconfig() {
    use ucupdate_agent::device::{DeviceConfig, HookDevice, HooksConfig};
    let stub = Stub::start().await;
    let rt_key: ucupdate_protocol::UpdateKey = "RoundTable/Microsoft/RoundTable/A/ENU/RoundTable"
        .parse()
        .unwrap();
    let image = b"rt image 2".repeat(1000);
    let catalog = ucupdate_server_stub::testing::catalog_signer()
        .signer
        .sign_files(
            &[("RoundTable.nbt", &image[..])],
            ucupdate_server_stub::testing::CATALOG_SIGNING_TIME,
        )
        .unwrap();
    let name = |n: &str| ucupdate_protocol::FileName::new(n).unwrap();
    let control = stub.server.control();
    control
        .publish(
            &rt_key,
            v("2.0.0.0"),
            vec![
                (name("RoundTable.nbt"), image),
                (name("RoundTable.cat"), catalog),
            ],
        )
        .await
        .unwrap();
    control.approve(&rt_key).await.unwrap();

    let dev = Dev::new();
    let out = dev.dir.path().join("rtconfig.seen");
    let config: DeviceConfig = toml::from_str(
        "device_type = \"RoundTable\"\nbrand = \"Microsoft\"\nmodel = \"RoundTable\"\n\
         update_type = \"RoundTable\"\nmodule_file = \"RoundTable.nbt\"\n\
         mac = \"00-04-F2-00-01-76\"\ninitial_version = \"1.0.0.0\"\n",
    )
    .unwrap();
    let hooks = HooksConfig {
        install_cmd: Some(format!(
            "{{ basename \"$UCUPDATE_RTCONFIG\"; cat \"$UCUPDATE_RTCONFIG\"; }} > {}",
            out.display()
        )),
        reboot_cmd: None,
        hook_timeout: Duration::from_secs(30),
    };
    let device = HookDevice::new(&config, hooks)
        .unwrap()
        .with_state_dir(dev.state_dir());
    let run = spawn(driver_config(&stub, &dev, internal(&stub)), device);
    let outcome = run.finished().await;
    assert!(
        matches!(outcome, RunOutcome::Rebooted { .. }),
        "{outcome:?}"
    );
    let seen = std::fs::read_to_string(&out).unwrap();
    assert!(seen.starts_with("RTConfig.xml\n"), "{seen}");
    assert!(seen.contains("<RTConfig"), "{seen}");
}
