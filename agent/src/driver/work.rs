//! What the driver brings to the shared performer ([`crate::perform`]): the firmware's identity
//! and logs, the discovered route, the signed-in user's credentials, the state dir's staging;
//! and the one piece of work it does itself, the install (re-verify, then the hook).

use std::path::PathBuf;
use std::sync::Arc;

use ucupdate_protocol::{
    DeviceIdentity, FileKind, FileName, FirmwareVersion, InstalledModule, OfferedFile,
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
        let image = files
            .iter()
            .find(|f| f.kind == FileKind::Image)
            .map(|f| staged_path(dir, version, &f.file_name));
        InstallJob {
            version,
            current_version: self.machine.persisted().current_version,
            staging_dir: files::staging_dir(dir, version),
            files: paths,
            image,
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
        let mut logs = Vec::new();
        for log in self.device.logs() {
            let name = log
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| FileName::new(n).ok());
            let Some(name) = name else {
                tracing::warn!(path = %log.path.display(), "log file name not usable");
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
}
