//! The download half of the cycle: an accepted offer becomes an `Update` (catalog first, then
//! the image, resuming where the persisted record and the offer agree), each file is fetched
//! and checked in turn, and failures resume, back off or give the offer up.
//!
//! The catalog goes first so that the image is held to the digest a signed catalog lists for
//! it: an offer whose catalog does not verify is refused before its (large) image is fetched,
//! and an image the catalog does not vouch for fails its download. On a resume the catalog is
//! fetched and verified again (it is small) before the download jumps back to where it was.

use ucupdate_protocol::{FileKind, HttpUrl, Offer, Sha256Digest};

use super::{
    Action, CatalogVerdict, CheckOutcome, DownloadFailure, DownloadedFile, FailureClass, Instant,
    Machine, MachineError, PartialDownload, Phase, Retry, Route, State, Update,
};
use crate::trust::{check_offer, ListedDigest, OfferRefusal, Origin, RefusalKind};

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
        // An offer must carry the image it updates to: without one there is nothing to
        // install, and nothing for a catalog to vouch for (it was refused as "no anchors").
        let has_image = files.iter().any(|f| f.kind == FileKind::Image);
        let Some((base, external)) = parsed.filter(|_| has_image) else {
            self.fail(now, FailureClass::Protocol, Retry::Check);
            return;
        };
        let policy = &self.config.offer_policy;
        if policy.min_version.is_some_and(|floor| version < floor) {
            self.refuse_offer(now, OfferRefusal::BelowFloor);
            return;
        }
        let has_catalog = files.iter().any(|f| f.kind == FileKind::Catalog);
        if policy.require_catalog && !has_catalog {
            self.refuse_untrusted(now, RefusalKind::Unsigned);
            return;
        }
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
        // Catalog, image, then the rest in the offer's order (a stable sort).
        files.sort_by_key(|f| match f.kind {
            FileKind::Catalog => 0,
            FileKind::Image => 1,
            _ => 2,
        });
        // Resume only where the record and the offer agree on the file at that position;
        // anything else starts over (and `Install` re-verifies every file regardless). Past
        // the catalog, it is verified again first and the download then jumps to the record.
        let resume = match self.persisted.download.as_deref() {
            Some(p) if p.version == version => {
                let index = usize::try_from(p.completed).unwrap_or(usize::MAX);
                match files.get(index) {
                    Some(f) if f.file_name == p.file => Some((index, p.bytes)),
                    _ => None,
                }
            }
            _ => None,
        };
        let (next, resume_from, resume_at) = match resume {
            Some((index, bytes)) if !has_catalog || index == 0 => (index, bytes, None),
            Some((index, bytes)) => (0, 0, Some((index, bytes))),
            None => (0, 0, None),
        };
        let update = Box::new(Update {
            version,
            base,
            external,
            files,
            next,
            resume_from,
            attempts: 0,
            resume_at,
            image_sha1: None,
            held_by_catalog: false,
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

    /// An offer whose catalog does not vouch for it: like [`Self::refuse_offer`], with the
    /// catalog's reason (and its System-Information-style code) in the status.
    fn refuse_untrusted(&mut self, now: Instant, reason: RefusalKind) {
        self.last_outcome = Some(CheckOutcome::Untrusted(reason));
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
        let catalog_for = (file.kind == FileKind::Catalog && u.next == 0)
            .then(|| u.files.iter().find(|f| f.kind == FileKind::Image))
            .flatten()
            .map(|image| image.file_name.clone());
        let expect_sha1 = (file.kind == FileKind::Image)
            .then_some(u.image_sha1)
            .flatten();
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
            catalog_for,
            expect_sha1,
        };
        // Re-verifying the catalog of a resumed download must not overwrite the record of
        // where the download was (a second power cut would lose it).
        if u.resume_at.is_none() && self.persisted.download.as_deref() != Some(&record) {
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
        let kind = expected.kind;
        if kind == FileKind::Image && u.image_sha1.is_some() {
            // Held to a SHA-1 listing: keep the SHA-256 the driver computed, so the install's
            // re-verification has a digest to hold the staged bytes to.
            let index = u.next;
            u.files[index].sha256 = done.sha256;
        }
        if u.next == 0 && kind == FileKind::Catalog {
            if let Err(kind) = self.apply_catalog(&mut u, done.catalog) {
                self.refuse_untrusted(now, kind);
                return Ok(());
            }
        }
        u.next += 1;
        u.resume_from = 0;
        if let Some((index, bytes)) = u.resume_at.take() {
            u.next = index;
            u.resume_from = bytes;
        }
        // The catalog's request counts against the image's attempts: a server whose image
        // keeps failing then sees the check, the catalog and at most `max_download_attempts - 1`
        // image requests before the offer is given up, the same bound as before catalogs
        // came first (docs/AGENT-MACHINE.md: at most 6 requests in any hour).
        u.attempts = u32::from(kind == FileKind::Catalog);
        self.failures = 0;
        self.last_error = None;
        self.download_next(now, u);
        Ok(())
    }

    /// Holds the image to what the verified catalog lists for it.
    fn apply_catalog(&self, u: &mut Update, verdict: CatalogVerdict) -> Result<(), RefusalKind> {
        let listed = match verdict {
            CatalogVerdict::Listed(listed) => listed,
            CatalogVerdict::Refused(refusal) => return Err(refusal.kind()),
            CatalogVerdict::NotChecked if self.config.offer_policy.require_catalog => {
                return Err(RefusalKind::NoAnchors)
            }
            CatalogVerdict::NotChecked => return Ok(()),
        };
        let Some(image) = u.files.iter_mut().find(|f| f.kind == FileKind::Image) else {
            return Ok(());
        };
        match listed {
            ListedDigest::Sha256(digest) => {
                let digest = Sha256Digest(digest);
                // The reply's own digest (our extension) must agree with the signed one.
                if image.sha256.is_some_and(|offered| offered != digest) {
                    return Err(RefusalKind::DigestMismatch);
                }
                image.sha256 = Some(digest);
            }
            ListedDigest::Sha1(digest) => u.image_sha1 = Some(digest),
        }
        u.held_by_catalog = true;
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
            let image = u
                .files
                .get(u.next)
                .is_some_and(|f| f.kind == FileKind::Image);
            if class == FailureClass::HashMismatch && image && u.held_by_catalog {
                self.last_outcome = Some(CheckOutcome::Untrusted(RefusalKind::DigestMismatch));
            }
            self.go_idle(now);
        } else {
            self.fail(now, class, Retry::Download(u));
        }
    }
}
