//! The firmware boundary: what the agent needs from the device it runs on, as the [`Device`]
//! trait (identity and installed module, the running version, user activity and calls, the
//! signed-in user, the install and reboot hooks, device logs), and [`HookDevice`], the Linux
//! implementation made of configuration plus shell commands, so that a firmware team integrates
//! the agent without writing Rust.
//!
//! [`HookDevice`] reads activity from files the UI touches (an activity file whose mtime is the
//! last touch; a call file that exists while a call is up) and runs the hooks with
//! `/bin/sh -c` through `tokio::process`, passing the staged files and versions as environment
//! variables (see `docs/AGENT.md`). Passwords are held in [`Secret`], whose `Debug` is redacted,
//! and never reach a hook's environment or a log line.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use ucupdate_ntlm::Credentials;
use ucupdate_protocol::{
    DeviceIdentity, FileName, FirmwareVersion, InstalledModule, LogType, PathSegment,
};

use crate::machine::config::duration_text;

/// Why a device operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A `[device]` or `[hooks]` field is invalid.
    #[error("device configuration: {0}")]
    Config(String),
    /// A file the device configuration names could not be read.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The hook command could not be started.
    #[error("{hook} hook: cannot start /bin/sh: {error}")]
    Spawn {
        hook: &'static str,
        error: std::io::Error,
    },
    /// The hook command exited unsuccessfully.
    #[error("{hook} hook exited with {status}")]
    HookFailed { hook: &'static str, status: String },
    /// The hook command ran longer than `hook_timeout` and was killed.
    #[error("{hook} hook timed out after {after:?} and was killed")]
    HookTimeout { hook: &'static str, after: Duration },
}

/// A password. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The clear text, for the NTLM computation only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A signed-in user: the name as typed (`CONTOSO\alice`, `alice@contoso.com`) and, when known,
/// the password NTLM needs on the external path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub user: String,
    pub password: Option<Secret>,
}

impl SignIn {
    /// The NTLM credentials, when a password is known.
    pub fn credentials(&self) -> Option<Credentials> {
        self.password
            .as_ref()
            .map(|p| Credentials::parse_user(&self.user, p.expose()))
    }
}

/// What the device says about its user right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// When someone last touched the device (Unix ms), if known.
    pub last_unix_ms: Option<u64>,
    /// A call is up: never install during one.
    pub in_call: bool,
}

/// The staged update the install hook is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallJob {
    pub version: FirmwareVersion,
    /// The version running now (it becomes the fallback).
    pub current_version: FirmwareVersion,
    /// `state_dir/staging/<version>`.
    pub staging_dir: PathBuf,
    /// Every staged file, verified, image first.
    pub files: Vec<PathBuf>,
    /// The image among `files`, if the offer had one.
    pub image: Option<PathBuf>,
    /// A RoundTable's offered `RTConfig.xml` (`FileKind::RoundTableConfig`) among `files`.
    pub rtconfig: Option<PathBuf>,
}

/// The restart the reboot hook performs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebootJob {
    /// The version that is current after the restart.
    pub version: FirmwareVersion,
    /// The version kept as the fallback.
    pub fallback_version: Option<FirmwareVersion>,
}

/// A device log file to upload when the machine asks for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub log_type: LogType,
    pub path: PathBuf,
}

/// Everything the agent needs from the firmware. The driver calls the synchronous methods from
/// its loop (they must be quick: a file stat, a field read) and spawns the hooks.
pub trait Device: Send + Sync + 'static {
    /// Type, brand, model, revision, locale, MAC and serial number sent with every check.
    fn identity(&self) -> DeviceIdentity;

    /// The installed module the update is for; its `version` is the agent's current version
    /// (the driver fills it from the persisted state).
    fn module(&self, version: FirmwareVersion) -> InstalledModule;

    /// The version the firmware reports it runs, if it can tell (a bootloader that fell back
    /// to the previous image). `None` trusts the agent's state file.
    fn running_version(&self) -> Option<FirmwareVersion> {
        None
    }

    /// The version to assume when there is no state file yet (first boot).
    fn factory_version(&self) -> FirmwareVersion;

    /// The user signed in at power-on, if any (configured, or remembered by the firmware).
    fn initial_sign_in(&self) -> Option<SignIn> {
        None
    }

    /// Last touch and call state. Polled while an update waits for the device to be idle.
    fn activity(&self) -> Activity {
        Activity::default()
    }

    /// Installs the verified staged files. `Ok` means the new image will run after the reboot.
    fn install(&self, job: InstallJob) -> impl Future<Output = Result<(), DeviceError>> + Send;

    /// Restarts the device (or asks its supervisor to). Returning at all means the restart is
    /// still to come; the agent stops making progress on its own until it does.
    fn reboot(&self, job: RebootJob) -> impl Future<Output = Result<(), DeviceError>> + Send;

    /// Device logs to upload (`log_upload` in `[machine]` says when).
    fn logs(&self) -> Vec<LogFile> {
        Vec::new()
    }
}

/// `[device]` of the agent's TOML: identity, the module, activity signals and the user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// `UCPhone` or `RoundTable`.
    #[serde(default = "default_device_type")]
    pub device_type: String,
    pub brand: String,
    pub model: String,
    #[serde(default = "default_revision")]
    pub revision: String,
    #[serde(default = "default_locale")]
    pub locale: String,
    /// Any of `00-04-F2-00-01-76`, `00:04:f2:00:01:76`, `0004f2000176`.
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
    /// The update type of the module (`CPE` for phones, `RoundTable`...).
    #[serde(default = "default_update_type")]
    pub update_type: String,
    /// The module's file name as reported in checks (`CPE.nbt`).
    #[serde(default = "default_module_file")]
    pub module_file: String,
    /// The version before the first update (used only when there is no state file).
    pub initial_version: String,
    /// A file holding the version the firmware runs; when it disagrees with the state file
    /// (a bootloader fell back) the firmware wins.
    #[serde(default)]
    pub version_file: Option<PathBuf>,
    /// Its mtime is the last time someone touched the device (the UI `touch`es it).
    #[serde(default)]
    pub activity_file: Option<PathBuf>,
    /// Exists while a call is up.
    #[serde(default)]
    pub call_file: Option<PathBuf>,
    /// The user signed in at start (`CONTOSO\alice`); `ucupdate-agent sign-in` overrides it.
    #[serde(default)]
    pub user: Option<String>,
    /// A file holding that user's password (first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Device log files uploaded when `[machine] log_upload` asks (CELog).
    #[serde(default)]
    pub log_files: Vec<PathBuf>,
}

fn default_device_type() -> String {
    "UCPhone".into()
}
fn default_revision() -> String {
    "A".into()
}
fn default_locale() -> String {
    "ENU".into()
}
fn default_update_type() -> String {
    "CPE".into()
}
fn default_module_file() -> String {
    "CPE.nbt".into()
}

/// `[hooks]` of the agent's TOML: shell commands run with `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// Installs the staged files (see `docs/AGENT.md` for its environment). Without one the
    /// install is a no-op that succeeds (a device whose bootloader reads the staging directory).
    #[serde(default)]
    pub install_cmd: Option<String>,
    /// Restarts the device. Without one the agent only logs that a restart is due.
    #[serde(default)]
    pub reboot_cmd: Option<String>,
    /// A hook running longer is killed and counts as failed.
    #[serde(default = "default_hook_timeout", with = "duration_text")]
    pub hook_timeout: Duration,
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            install_cmd: None,
            reboot_cmd: None,
            hook_timeout: default_hook_timeout(),
        }
    }
}

/// The Linux device: configuration plus hook commands.
#[derive(Debug, Clone)]
pub struct HookDevice {
    identity: DeviceIdentity,
    update_type: PathSegment,
    module_file: FileName,
    initial_version: FirmwareVersion,
    version_file: Option<PathBuf>,
    activity_file: Option<PathBuf>,
    call_file: Option<PathBuf>,
    sign_in: Option<SignIn>,
    log_files: Vec<PathBuf>,
    hooks: HooksConfig,
    /// Passed to hooks as `UCUPDATE_STATE_DIR`.
    state_dir: Option<PathBuf>,
}

fn bad(field: &str, e: impl fmt::Display) -> DeviceError {
    DeviceError::Config(format!("`{field}`: {e}"))
}

fn blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl HookDevice {
    /// Validates the configuration and reads the password file, if any.
    pub fn new(device: &DeviceConfig, hooks: HooksConfig) -> Result<HookDevice, DeviceError> {
        let seg = |field: &str, v: &str| PathSegment::new(v.trim()).map_err(|e| bad(field, e));
        let identity = DeviceIdentity {
            device_type: device
                .device_type
                .trim()
                .parse()
                .map_err(|e| bad("device_type", e))?,
            brand: seg("brand", &device.brand)?,
            model: seg("model", &device.model)?,
            revision: seg("revision", &device.revision)?,
            locale: seg("locale", &device.locale)?,
            mac: blank(&device.mac)
                .map(str::parse)
                .transpose()
                .map_err(|e| bad("mac", e))?,
            serial: blank(&device.serial)
                .map(str::parse)
                .transpose()
                .map_err(|e| bad("serial", e))?,
        };
        let password = match &device.password_file {
            Some(path) => Some(read_password(path)?),
            None => None,
        };
        let sign_in = blank(&device.user).map(|user| SignIn {
            user: user.to_owned(),
            password,
        });
        Ok(HookDevice {
            identity,
            update_type: seg("update_type", &device.update_type)?,
            module_file: FileName::new(device.module_file.trim())
                .map_err(|e| bad("module_file", e))?,
            initial_version: device
                .initial_version
                .trim()
                .parse()
                .map_err(|e| bad("initial_version", e))?,
            version_file: device.version_file.clone(),
            activity_file: device.activity_file.clone(),
            call_file: device.call_file.clone(),
            sign_in,
            log_files: device.log_files.clone(),
            hooks,
            state_dir: None,
        })
    }

    /// Tells hooks where the agent keeps its state (`UCUPDATE_STATE_DIR`).
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> HookDevice {
        self.state_dir = Some(dir.into());
        self
    }

    async fn run_hook(
        &self,
        hook: &'static str,
        cmd: &str,
        args: &[&str],
        env: Vec<(&'static str, String)>,
    ) -> Result<(), DeviceError> {
        let mut command = tokio::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(cmd)
            .arg(format!("ucupdate-{hook}"))
            .args(args)
            .env("UCUPDATE_HOOK", hook)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A hook that outlives its timeout (or the agent) must not keep flashing.
            .kill_on_drop(true);
        if let Some(dir) = &self.state_dir {
            command.env("UCUPDATE_STATE_DIR", dir);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        tracing::info!(hook, "running hook");
        let child = command.spawn().map_err(|source| DeviceError::Spawn {
            hook,
            error: source,
        })?;
        let after = self.hooks.hook_timeout;
        let output = match tokio::time::timeout(after, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(source)) => {
                return Err(DeviceError::Spawn {
                    hook,
                    error: source,
                })
            }
            Err(_) => return Err(DeviceError::HookTimeout { hook, after }),
        };
        for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            let text = text.trim();
            if !text.is_empty() {
                tracing::info!(hook, stream, output = %tail(text, 2000), "hook output");
            }
        }
        if output.status.success() {
            Ok(())
        } else {
            Err(DeviceError::HookFailed {
                hook,
                status: output.status.to_string(),
            })
        }
    }
}

/// The last `max` bytes of `text` (on a char boundary): a chatty hook must not flood the log.
fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The first line of a password file (a trailing newline is not part of the password).
/// A file that group or others can read is refused: the password would not be the user's
/// secret any more, and a device that used it anyway would teach people to leave it so.
pub fn read_password(path: &Path) -> Result<Secret, DeviceError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| DeviceError::Io {
        path: path.to_owned(),
        error: source,
    };
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(DeviceError::Config(format!(
            "password file {} is readable or writable by group or others (mode {:o}); \
             `chmod 600` it",
            path.display(),
            mode & 0o777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    Ok(Secret::new(text.lines().next().unwrap_or("")))
}

fn mtime_unix_ms(path: &Path) -> Option<u64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let ms = modified.duration_since(UNIX_EPOCH).ok()?.as_millis();
    u64::try_from(ms).ok()
}

impl Device for HookDevice {
    fn identity(&self) -> DeviceIdentity {
        self.identity.clone()
    }

    fn module(&self, version: FirmwareVersion) -> InstalledModule {
        InstalledModule {
            update_type: self.update_type.clone(),
            file_name: self.module_file.clone(),
            version,
            timestamp: None,
        }
    }

    fn running_version(&self) -> Option<FirmwareVersion> {
        let path = self.version_file.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        match text.trim().parse() {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "version file unreadable; trusting the state file");
                None
            }
        }
    }

    fn factory_version(&self) -> FirmwareVersion {
        self.initial_version
    }

    fn initial_sign_in(&self) -> Option<SignIn> {
        self.sign_in.clone()
    }

    fn activity(&self) -> Activity {
        Activity {
            last_unix_ms: self.activity_file.as_deref().and_then(mtime_unix_ms),
            in_call: self.call_file.as_deref().is_some_and(Path::exists),
        }
    }

    async fn install(&self, job: InstallJob) -> Result<(), DeviceError> {
        let Some(cmd) = self.hooks.install_cmd.clone() else {
            tracing::info!(version = %job.version, "no install_cmd configured; staged files left in place");
            return Ok(());
        };
        let files = job
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let dir = job.staging_dir.display().to_string();
        let version = job.version.to_string();
        let env = vec![
            ("UCUPDATE_VERSION", version.clone()),
            ("UCUPDATE_CURRENT_VERSION", job.current_version.to_string()),
            ("UCUPDATE_STAGING_DIR", dir.clone()),
            ("UCUPDATE_FILES", files),
            (
                "UCUPDATE_IMAGE",
                job.image
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            (
                "UCUPDATE_RTCONFIG",
                job.rtconfig
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
        ];
        self.run_hook("install", &cmd, &[&dir, &version], env).await
    }

    async fn reboot(&self, job: RebootJob) -> Result<(), DeviceError> {
        let Some(cmd) = self.hooks.reboot_cmd.clone() else {
            tracing::warn!(version = %job.version, "no reboot_cmd configured; restart the device to run the new version");
            return Ok(());
        };
        let version = job.version.to_string();
        let fallback = job
            .fallback_version
            .map(|v| v.to_string())
            .unwrap_or_default();
        let env = vec![
            ("UCUPDATE_VERSION", version.clone()),
            ("UCUPDATE_FALLBACK_VERSION", fallback),
        ];
        self.run_hook("reboot", &cmd, &[&version], env).await
    }

    fn logs(&self) -> Vec<LogFile> {
        self.log_files
            .iter()
            .map(|path| LogFile {
                log_type: LogType::CeLog,
                path: path.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "hunter2\n").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = read_password(&path).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{mode:o}: {err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password(&path).unwrap().expose(), "hunter2");
    }

    fn config() -> DeviceConfig {
        toml::from_str(
            "brand = \"Polycom\"\nmodel = \"CX700\"\nmac = \"00:04:f2:00:01:76\"\n\
             initial_version = \"1.0.522.101\"\nuser = \"CONTOSO\\\\alice\"\n",
        )
        .unwrap()
    }

    #[test]
    fn identity_from_config_with_defaults() {
        let dev = HookDevice::new(&config(), HooksConfig::default()).unwrap();
        let id = dev.identity();
        assert_eq!(id.device_type.as_str(), "UCPhone");
        assert_eq!(id.mac.unwrap().to_string(), "00-04-F2-00-01-76");
        assert_eq!(id.serial, None);
        let m = dev.module("1.2.3.4".parse().unwrap());
        assert_eq!(
            (m.update_type.as_str(), m.file_name.as_str()),
            ("CPE", "CPE.nbt")
        );
        let sign_in = dev.initial_sign_in().unwrap();
        assert_eq!(sign_in.user, "CONTOSO\\alice");
        assert!(sign_in.credentials().is_none(), "no password file: no NTLM");
    }

    #[test]
    fn bad_fields_are_named() {
        let mut c = config();
        c.mac = Some("nope".into());
        let err = HookDevice::new(&c, HooksConfig::default()).unwrap_err();
        assert!(err.to_string().contains("`mac`"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let s = SignIn {
            user: "bob".into(),
            password: Some(Secret::new("hunter2")),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.credentials().unwrap().password, "hunter2");
    }

    #[tokio::test]
    async fn hooks_get_the_staged_files_and_fail_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let hooks = HooksConfig {
            install_cmd: Some(format!(
                "printf '%s|%s|%s|%s|%s' \"$1\" \"$2\" \"$UCUPDATE_IMAGE\" \"$UCUPDATE_CURRENT_VERSION\" \"$UCUPDATE_RTCONFIG\" > {}",
                out.display()
            )),
            reboot_cmd: Some("exit 3".into()),
            hook_timeout: Duration::from_secs(20),
        };
        let dev = HookDevice::new(&config(), hooks).unwrap();
        let job = InstallJob {
            version: "2.0.0.0".parse().unwrap(),
            current_version: "1.0.0.0".parse().unwrap(),
            staging_dir: "/s/2.0.0.0".into(),
            files: vec![
                "/s/2.0.0.0/CPE.nbt".into(),
                "/s/2.0.0.0/RTConfig.xml".into(),
            ],
            image: Some("/s/2.0.0.0/CPE.nbt".into()),
            rtconfig: Some("/s/2.0.0.0/RTConfig.xml".into()),
        };
        dev.install(job).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "/s/2.0.0.0|2.0.0.0|/s/2.0.0.0/CPE.nbt|1.0.0.0|/s/2.0.0.0/RTConfig.xml"
        );
        let err = dev
            .reboot(RebootJob {
                version: "2.0.0.0".parse().unwrap(),
                fallback_version: None,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, DeviceError::HookFailed { hook: "reboot", .. }),
            "{err}"
        );
    }

    #[test]
    fn activity_reads_mtime_and_call_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config();
        c.activity_file = Some(dir.path().join("touched"));
        c.call_file = Some(dir.path().join("call"));
        let dev = HookDevice::new(&c, HooksConfig::default()).unwrap();
        assert_eq!(dev.activity(), Activity::default());
        std::fs::write(dir.path().join("touched"), "").unwrap();
        std::fs::write(dir.path().join("call"), "").unwrap();
        let a = dev.activity();
        assert!(a.last_unix_ms.unwrap() > 1_577_836_800_000);
        assert!(a.in_call);
    }
}
