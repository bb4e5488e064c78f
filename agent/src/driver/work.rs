//! What the driver brings to the shared performer ([`crate::perform`]): the firmware's identity
//! and logs, the discovered route, the signed-in user's credentials, the state dir's staging;
//! and the one piece of work it does itself, the install (re-verify, then the hook).

use std::path::PathBuf;
use std::sync::Arc;

use ucupdate_protocol::log_names::log_name;
use ucupdate_protocol::{
    DeviceIdentity, FileKind, FileName, FirmwareVersion, InstalledModule, LogType, OfferedFile,
};

use super::{files, staged_path, Running};
use crate::device::{Device, DeviceError, InstallJob, SignIn};
use crate::machine::FailureClass;
use crate::net::{self, Client};
use crate::perform;

impl<D: Device> Running<D> {
    pub(super) fn install_job(
        &self,
        version: ucupdate_protocol::FirmwareVersion,
        files: &[OfferedFile],
    ) -> InstallJob {
        let dir = &self.config.state_dir;
        let paths: Vec<PathBuf> = files
            .iter()
            .map(|f| staged_path(dir, version, &f.file_name))
            .collect();
        let staged = |kind| {
            files
                .iter()
                .find(|f| f.kind == kind)
                .map(|f| staged_path(dir, version, &f.file_name))
        };
        InstallJob {
            version,
            current_version: self.machine.persisted().current_version,
            staging_dir: files::staging_dir(dir, version),
            files: paths,
            image: staged(FileKind::Image),
            rtconfig: staged(FileKind::RoundTableConfig),
        }
    }
}

/// Re-verifies every staged file, then runs the install hook. Bytes that no longer match the
/// offer never reach the hook.
pub(super) async fn install<D: Device>(
    device: Arc<D>,
    job: InstallJob,
    files: Vec<OfferedFile>,
) -> Result<(), FailureClass> {
    for (path, file) in job.files.iter().zip(&files) {
        if let Err(e) = files::verify(path.clone(), file.clone()).await {
            tracing::error!(file = %file.file_name, error = %e, "staged file does not verify; not installing");
            return Err(FailureClass::HashMismatch);
        }
    }
    match device.install(job).await {
        Ok(()) => Ok(()),
        Err(DeviceError::HookTimeout { .. }) => Err(FailureClass::Timeout),
        Err(e) => {
            tracing::error!(error = %e, "install failed");
            Err(FailureClass::Io)
        }
    }
}

/// What the driver's device brings to [`perform`]: the firmware's identity and logs, the
/// discovered route, the signed-in user, the state dir's staging.
impl<D: Device> perform::Context for Running<D> {
    fn client(&self) -> Client {
        self.client.clone()
    }

    fn identity(&self) -> DeviceIdentity {
        self.identity.clone()
    }

    fn module(&self, version: FirmwareVersion) -> InstalledModule {
        self.device.module(version)
    }

    fn credentials(&self) -> Option<net::Credentials> {
        self.sign_in.as_ref().and_then(SignIn::credentials)
    }

    /// `[machine] download_timeout`, less 5 %: the cut lands just before the machine's
    /// watchdog for the same download, so the machine hears how many bytes were kept.
    fn download_deadline(&self) -> Option<std::time::Duration> {
        let total = self.config.machine.download_timeout;
        Some(total.saturating_sub(total / 20))
    }

    fn plain_http_credentials(&self) -> bool {
        self.config.allow_plain_http_credentials
    }

    fn catalog_check(&self) -> perform::CatalogCheck {
        self.config.catalog_check.clone()
    }

    fn dialect(&self) -> Option<std::sync::Arc<ucupdate_protocol::dialect::Dialect>> {
        self.config.dialect.clone()
    }

    fn staging(&self, version: FirmwareVersion, file: &FileName) -> Option<PathBuf> {
        Some(staged_path(&self.config.state_dir, version, file))
    }

    fn logs(&self) -> Vec<perform::Log> {
        let identity = self.device.identity();
        let Some(folder) = perform::device_segment(&identity) else {
            return Vec::new(); // the performer says why (no MAC or serial number)
        };
        named_logs(
            self.device.logs(),
            &identity.device_type.to_string(),
            folder.as_str(),
            &self.machine.persisted().current_version.to_string(),
            crate::clock::unix_millis() / 1000,
        )
    }
}

/// The device's logs under the service's documented names (`ucupdate_protocol::log_names`),
/// not their local file names: `<type>_<id>-<YYYYMMDD>-CELOG<HHMMSS>_<n>.clg` for CELogs (`n`
/// counting the upload's CELogs from 1), `<serial>-<YYYY-MM-DDHHMMSS>-WATSON-<version>.kdmp`
/// for Watson dumps. `device` is the log folder (MAC or serial number).
fn named_logs(
    files: Vec<crate::device::LogFile>,
    device_type: &str,
    device: &str,
    version: &str,
    now_unix: u64,
) -> Vec<perform::Log> {
    let mut logs = Vec::new();
    let mut celogs = 0u32;
    for log in files {
        if matches!(log.log_type, LogType::CeLog) {
            celogs += 1;
        }
        let n = celogs.max(1);
        let text = log_name(log.log_type, device_type, device, version, now_unix, n);
        let Ok(name) = FileName::new(&text) else {
            tracing::warn!(path = %log.path.display(), name = %text, "log name not usable");
            continue;
        };
        logs.push(perform::Log {
            log_type: log.log_type,
            name,
            contents: perform::LogContents::File(log.path),
        });
    }
    logs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::LogFile;

    #[test]
    fn logs_are_uploaded_under_the_documented_names() {
        let file = |log_type, path: &str| LogFile {
            log_type,
            path: PathBuf::from(path),
        };
        let logs = named_logs(
            vec![
                file(LogType::CeLog, "/var/log/ui.log"),
                file(LogType::CeLog, "/var/log/sip.log"),
                file(LogType::Watson, "/var/crash/core"),
            ],
            "UCPhone",
            "00-04-F2-00-01-76",
            "1.0.522.101",
            1_764_057_912, // 2025-11-25 08:05:12 UTC
        );
        let names: Vec<String> = logs.iter().map(|l| l.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "UCPhone_0004F2000176-20251125-CELOG080512_1.clg",
                "UCPhone_0004F2000176-20251125-CELOG080512_2.clg",
                "0004F2000176-2025-11-25080512-WATSON-1.0.522.101.kdmp",
            ]
        );
        assert!(
            matches!(&logs[0].contents, perform::LogContents::File(p) if p.ends_with("ui.log"))
        );
    }
}
