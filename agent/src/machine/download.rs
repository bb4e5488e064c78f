//! The download half of the cycle: an accepted offer becomes an `Update` (image first,
//! resuming where the persisted record and the offer agree), each file is fetched and checked
//! in turn, and failures resume, back off or give the offer up.

use ucupdate_protocol::{FileKind, HttpUrl, Offer};

use super::{
    Action, CheckOutcome, DownloadFailure, DownloadedFile, FailureClass, Instant, Machine,
    MachineError, PartialDownload, Phase, Retry, Route, State, Update,
};
use crate::trust::{check_offer, OfferRefusal, Origin};

impl Machine {
    pub(super) fn start_update(&mut self, now: Instant, offer: Offer, external: bool) {
        let Offer {
            base_url,
            external_base_url,
            version,
            mut files,
            ..
        } = offer;
        // Download from the side the check went through; a blank base on that side (the
        // server's settings not populated) falls back to the other.
        let (preferred, other) = if external {
            (
                (external_base_url.as_str(), true),
                (base_url.as_str(), false),
            )
        } else {
            (
                (base_url.as_str(), false),
                (external_base_url.as_str(), true),
            )
        };
        let chosen = [preferred, other]
            .into_iter()
            .find(|(text, _)| !text.trim().is_empty());
        let parsed =
            chosen.and_then(|(text, ext)| text.trim().parse::<HttpUrl>().ok().map(|u| (u, ext)));
        let Some((base, external)) = parsed.filter(|_| !files.is_empty()) else {
            self.fail(now, FailureClass::Protocol, Retry::Check);
            return;
        };
        // The rules of `trust::offer`, against the endpoint this check went to (the route has
        // not moved since: only a sign-in changes it, and the check was sent on it).
        let verdict = match self.route() {
            Route::Check { url, external } => {
                let discovered = !external && matches!(self.internal_source(), Some(Err(_)));
                let domain = self.config.discovery_domain().filter(|_| discovered);
                check_offer(&self.config.offer_policy, &url, domain, &base, &files)
            }
            _ => Err(OfferRefusal::ForeignOrigin),
        };
        if let Err(reason) = verdict {
            self.refuse_offer(now, reason);
            return;
        }
        // Credentials go only to configured origins: the configured (or provisioned) external
        // URL's, or one `allowed_file_origins` lists. Never to a host the reply merely names.
        let origin = Origin::of(&base);
        let external = external
            && (self
                .config
                .offer_policy
                .allowed_file_origins
                .contains(&origin)
                || self
                    .external_source()
                    .and_then(|text| text.parse::<HttpUrl>().ok())
                    .is_some_and(|ext| Origin::of(&ext) == origin));
        files.sort_by_key(|f| f.kind != FileKind::Image);
        // Resume only where the record and the offer agree on the file at that position;
        // anything else starts over (and `Install` re-verifies every file regardless).
        let (next, resume_from) = match self.persisted.download.as_deref() {
            Some(p) if p.version == version => {
                let index = usize::try_from(p.completed).unwrap_or(usize::MAX);
                match files.get(index) {
                    Some(f) if f.file_name == p.file => (index, p.bytes),
                    _ => (0, 0),
                }
            }
            _ => (0, 0),
        };
        let update = Box::new(Update {
            version,
            base,
            external,
            files,
            next,
            resume_from,
            attempts: 0,
        });
        self.download_next(now, update);
    }

    /// An offer that broke a download rule: counted once in the status and dropped until the
    /// next regular check (never retried in a back-off loop). A half download of an earlier
    /// offer is forgotten, so the driver removes its bytes.
    fn refuse_offer(&mut self, now: Instant, reason: OfferRefusal) {
        self.last_outcome = Some(CheckOutcome::Refused(reason));
        if self.persisted.download.take().is_some() {
            self.persist();
        }
        self.go_idle(now);
    }

    pub(super) fn download_next(&mut self, now: Instant, u: Box<Update>) {
        let Some(file) = u.files.get(u.next).cloned() else {
            self.staged(now, *u);
            return;
        };
        let url = u.base.join(file.file_name.as_str());
        let record = PartialDownload {
            version: u.version,
            url: url.to_string(),
            file: file.file_name.clone(),
            completed: u32::try_from(u.next).unwrap_or(u32::MAX),
            bytes: u.resume_from,
        };
        let action = Action::Download {
            url,
            version: u.version,
            file,
            resume_from: u.resume_from,
            external: u.external,
        };
        if self.persisted.download.as_deref() != Some(&record) {
            self.persisted.download = Some(Box::new(record));
            self.persist();
        }
        self.outbox.push_back(action);
        self.state = State::Downloading {
            deadline: now + self.config.download_timeout,
            update: u,
        };
    }

    /// The answer to the `Download` in flight. A completion for another file than the one
    /// asked for is refused and leaves the download as it was.
    pub(super) fn download_done(
        &mut self,
        now: Instant,
        deadline: Instant,
        mut u: Box<Update>,
        result: Result<DownloadedFile, DownloadFailure>,
    ) -> Result<(), MachineError> {
        let done = match result {
            Ok(done) => done,
            Err(failure) => {
                self.download_failed(now, failure.class, failure.bytes_kept, u);
                return Ok(());
            }
        };
        let Some(expected) = u.files.get(u.next) else {
            self.state = State::Downloading {
                deadline,
                update: u,
            };
            return Err(MachineError::Unexpected {
                event: "download-done",
                phase: Phase::Downloading,
            });
        };
        if done.file_name != expected.file_name {
            let refused = MachineError::WrongFile {
                expected: expected.file_name.clone(),
                got: done.file_name,
            };
            self.state = State::Downloading {
                deadline,
                update: u,
            };
            return Err(refused);
        }
        if expected.size.is_some_and(|size| size != done.size) {
            self.download_failed(now, FailureClass::HashMismatch, 0, u);
            return Ok(());
        }
        u.next += 1;
        u.resume_from = 0;
        u.attempts = 0;
        self.failures = 0;
        self.last_error = None;
        self.download_next(now, u);
        Ok(())
    }

    pub(super) fn download_failed(
        &mut self,
        now: Instant,
        class: FailureClass,
        bytes_kept: u64,
        mut u: Box<Update>,
    ) {
        u.attempts = u.attempts.saturating_add(1);
        // Bytes that failed verification are worthless; anything else is resumed.
        u.resume_from = if class == FailureClass::HashMismatch {
            0
        } else {
            bytes_kept
        };
        if let Some(p) = self.persisted.download.as_deref_mut() {
            if p.bytes != u.resume_from {
                p.bytes = u.resume_from;
                self.persist();
            }
        }
        if class == FailureClass::Unauthorized && u.external && self.user.is_none() {
            self.last_outcome = Some(CheckOutcome::DeniedNoUser);
            self.last_error = Some(class);
            self.go_idle(now);
        } else if u.attempts >= self.config.max_download_attempts.max(1) {
            // Give this offer up until the next regular check (which may resume it): a broken
            // file on the server must not be fetched every hour forever.
            self.last_error = Some(class);
            self.go_idle(now);
        } else {
            self.fail(now, class, Retry::Download(u));
        }
    }
}
