//! Support for the `driver_*` integration tests: the real server stub in-process on loopback,
//! a [`HookDevice`] whose hooks are small shell commands writing into the test's directory, and
//! a driver configured with short durations so a whole update takes well under a second of
//! waiting (or paused time where no child process runs).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use ucupdate_agent::device::{DeviceConfig, HookDevice, HooksConfig};
use ucupdate_agent::driver::{Driver, DriverConfig, DriverHandle, RunOutcome, StatusReport};
use ucupdate_agent::machine::{MachineConfig, PersistedState};
use ucupdate_agent::net::{Client, ClientSettings, TlsOptions};
use ucupdate_agent::perform::CatalogCheck;
use ucupdate_agent::trust::{CatalogPolicy, CatalogTrust, TrustAnchors};
// The update key, versions, published files, NTLM user and device MAC every crate's tests share.
pub use ucupdate_server_stub::testing::{files, key, v, MAC, PASSWORD, USER};
use ucupdate_server_stub::{testing, RunningServer, ServerConfig};

pub struct Stub {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
}

impl Stub {
    pub async fn start() -> Stub {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut ServerConfig)) -> Stub {
        let dir = tempfile::tempdir().unwrap();
        let server = testing::start(dir.path(), tune).await;
        Stub { server, dir }
    }

    /// Publishes `version` with [`files`] and approves it.
    pub async fn approve(&self, version: &str) {
        let control = self.server.control();
        control
            .publish(&key(), v(version), files(version))
            .await
            .unwrap();
        control.approve(&key()).await.unwrap();
    }

    pub fn hits(&self, endpoint: &str) -> u64 {
        self.server.control().hits(endpoint)
    }

    /// The stored copy of a published file (what the stub serves).
    pub fn stored(&self, version: &str, file: &str) -> PathBuf {
        ucupdate_server_stub::store::version_dir(self.dir.path(), &key(), v(version)).join(file)
    }
}

/// A device's directory: the agent's state dir plus what the hooks write.
pub struct Dev {
    pub dir: tempfile::TempDir,
}

impl Dev {
    pub fn new() -> Dev {
        Dev {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// One line per install: `<version> <image bytes> <current version>`.
    pub fn installs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("installs.log")).unwrap_or_default()
    }

    /// The reboot hook's marker: the version current after the restart.
    pub fn reboots(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("reboots.log")).unwrap_or_default()
    }

    pub fn activity_file(&self) -> PathBuf {
        self.dir.path().join("activity")
    }

    pub fn state(&self) -> PersistedState {
        let text = std::fs::read_to_string(self.state_dir().join("state.json")).unwrap();
        PersistedState::decode(&text).unwrap()
    }

    /// Hooks that record what they were given; `None` runs no child process (paused time).
    pub fn hooks(&self, with_commands: bool) -> HooksConfig {
        if !with_commands {
            return HooksConfig::default();
        }
        let d = self.dir.path().display();
        HooksConfig {
            install_cmd: Some(format!(
                "echo \"$2 $(wc -c < \"$UCUPDATE_IMAGE\") $UCUPDATE_CURRENT_VERSION\" >> {d}/installs.log"
            )),
            reboot_cmd: Some(format!("echo \"$UCUPDATE_VERSION\" >> {d}/reboots.log")),
            hook_timeout: Duration::from_secs(30),
        }
    }

    pub fn device(&self, initial: &str, with_commands: bool) -> HookDevice {
        self.device_with(initial, with_commands, "")
    }

    /// [`Dev::device`] with more `[device]` lines.
    pub fn device_with(&self, initial: &str, with_commands: bool, extra: &str) -> HookDevice {
        let config: DeviceConfig = toml::from_str(&format!(
            "brand = \"Polycom\"\nmodel = \"CX700\"\nmac = \"{MAC}\"\ninitial_version = \"{initial}\"\n\
             activity_file = \"{}\"\n{extra}",
            self.activity_file().display()
        ))
        .unwrap();
        HookDevice::new(&config, self.hooks(with_commands))
            .unwrap()
            .with_state_dir(self.state_dir())
    }
}

/// A machine that checks at once and waits only briefly (real time stays short).
pub fn quick_machine() -> MachineConfig {
    MachineConfig {
        power_on_jitter: Duration::ZERO,
        sign_in_jitter: Duration::ZERO,
        idle_before_restart: Duration::from_millis(200),
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(2),
        ..MachineConfig::default()
    }
}

pub fn client_for(stub: &Stub) -> Client {
    let tls = TlsOptions::with_ca_pem(stub.server.ca_pem().as_bytes().to_vec())
        .build()
        .unwrap();
    Client::with_settings(ClientSettings {
        tls: Some(tls),
        ..ClientSettings::default()
    })
}

pub fn driver_config(stub: &Stub, dev: &Dev, machine: MachineConfig) -> DriverConfig {
    let mut config = DriverConfig::new(dev.state_dir(), machine, client_for(stub));
    config.catalog_check = fixture_catalogs();
    config.exit_on_reboot = true;
    config.seed = Some(7);
    // Discovery is not wanted unless a test asks: no host resolv.conf or leases.
    config.resolv_conf = dev.dir.path().join("no-resolv.conf");
    config.lease_paths = Vec::new();
    config
}

/// Verifies catalogs against the CA that signs the fixtures' ([`files`]).
pub fn fixture_catalogs() -> CatalogCheck {
    CatalogCheck::Verify(std::sync::Arc::new(CatalogTrust {
        anchors: TrustAnchors::from_pem(testing::catalog_ca_pem().as_bytes()).unwrap(),
        policy: CatalogPolicy::default(),
        trusted_clock: false,
        memo: None,
    }))
}

/// Writes the fixtures' catalog CA into `dir` for a TOML `[trust] catalog_roots`.
pub fn write_catalog_roots(dir: &Path) -> PathBuf {
    let path = dir.join("catalog-roots.pem");
    std::fs::write(&path, testing::catalog_ca_pem()).unwrap();
    path
}

/// An internal machine config pointing at the stub's plain-HTTP listener.
pub fn internal(stub: &Stub) -> MachineConfig {
    MachineConfig {
        server_url: Some(stub.server.internal_url().unwrap().to_string()),
        outside_firewall: Some(false),
        ..quick_machine()
    }
}

/// A running driver: its handle and its task.
pub struct Running {
    pub handle: DriverHandle,
    pub task: tokio::task::JoinHandle<RunOutcome>,
}

pub fn spawn(config: DriverConfig, device: HookDevice) -> Running {
    let driver = Driver::new(config, device);
    let handle = driver.handle();
    let task = tokio::spawn(async move { driver.run().await.unwrap() });
    Running { handle, task }
}

impl Running {
    /// Waits (bounded, as a guard against a hang, never as timing) for the driver to stop.
    pub async fn finished(self) -> RunOutcome {
        tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .expect("driver did not stop")
            .unwrap()
    }

    pub async fn wait_for(&self, pred: impl FnMut(&StatusReport) -> bool) -> StatusReport {
        tokio::time::timeout(Duration::from_secs(120), self.handle.wait_for(pred))
            .await
            .expect("status never reached")
    }

    pub async fn shutdown(self) -> RunOutcome {
        self.handle.send(ucupdate_agent::driver::Command::Shutdown);
        self.finished().await
    }
}

/// Runs one full update (check, download, install hook, reboot hook) and returns once the
/// driver exited for the restart.
pub async fn update_once(stub: &Stub, dev: &Dev, machine: MachineConfig, initial: &str) {
    let run = spawn(driver_config(stub, dev, machine), dev.device(initial, true));
    let outcome = run.finished().await;
    assert!(
        matches!(outcome, RunOutcome::Rebooted { .. }),
        "{outcome:?}"
    );
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
