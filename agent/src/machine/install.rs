//! The install half of the cycle: every file verified becomes an install marker on disk, the
//! wait for an idle device, the install itself, and its answer (the new version becomes current
//! only once the install is confirmed).

use ucupdate_protocol::FirmwareVersion;

use super::{Action, FailureClass, InstallMarker, Instant, Machine, State, Update};

impl Machine {
    /// Every file is verified: the marker goes to disk before anything may install it.
    pub(super) fn staged(&mut self, now: Instant, update: Update) {
        let Update { version, files, .. } = update;
        let staged = Box::new(InstallMarker { version, files });
        self.persisted.download = None;
        self.persisted.install = Some(staged.clone());
        self.persist();
        self.state = State::WaitingIdle { since: now, staged };
    }

    pub(super) fn install(&mut self, now: Instant, staged: Box<InstallMarker>) {
        self.outbox.push_back(Action::Install {
            version: staged.version,
            files: staged.files.clone(),
        });
        self.state = State::Installing {
            deadline: now + self.config.install_timeout,
            staged,
        };
    }

    pub(super) fn install_done(
        &mut self,
        now: Instant,
        version: FirmwareVersion,
        result: Result<(), FailureClass>,
    ) {
        // Either way the marker is spent: a success makes its version current, a failure
        // leaves the next regular check to start over.
        self.persisted.install = None;
        match result {
            Ok(()) => {
                // Only now, with the install confirmed, does the new version become current.
                let previous = self.persisted.current_version;
                self.persisted.current_version = version;
                self.persisted.fallback_version = Some(previous);
                self.persisted.last_update_unix_ms = self.wall(now);
                self.persisted.download = None;
                self.persist();
                self.outbox.push_back(Action::Reboot);
                self.state = State::Rebooting {
                    at: now + self.config.install_timeout,
                };
            }
            Err(class) => {
                // A local failure (hook, flash, staged bytes that no longer verify). Retrying
                // within minutes would re-download the image each time; the next regular check
                // starts the whole update again from verified bytes.
                self.persist();
                self.last_error = Some(class);
                self.go_idle(now);
            }
        }
    }
}
