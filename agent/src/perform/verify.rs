//! The checks the performer makes on a finished download before the machine hears of it: the
//! offer's catalog is verified against the device's anchors ([`CatalogCheck`]) and answered
//! with the digest it lists for the image, and an image a legacy catalog lists by SHA-1 only
//! is held to that SHA-1. Both read what was just written (the staged file, or the bytes a
//! simulated device kept in memory); the decisions themselves are [`crate::trust`]'s.

use std::path::PathBuf;
use std::sync::Arc;

use ucupdate_protocol::catalog::{CatalogError, MAX_CATALOG_BYTES};
use ucupdate_protocol::FileName;

use crate::machine::CatalogVerdict;
use crate::net;
use crate::trust::{CatalogTrust, Refusal};

/// How a device checks the catalogs it downloads.
#[derive(Debug, Clone)]
pub enum CatalogCheck {
    /// Verify against these anchors.
    Verify(Arc<CatalogTrust>),
    /// No anchors are configured: every catalog is refused (the agent says so at start).
    NoAnchors,
    /// Do not verify (`ucupdate-sim --trust none`, whose devices also stop requiring one).
    Skip,
}

/// The verdict on the catalog just downloaded, for the image `image`.
pub(super) async fn catalog(
    check: CatalogCheck,
    done: &net::DownloadedFile,
    staged: Option<PathBuf>,
    image: &FileName,
    now_unix_secs: u64,
) -> CatalogVerdict {
    let trust = match check {
        CatalogCheck::Skip => return CatalogVerdict::NotChecked,
        CatalogCheck::NoAnchors => return refused(Refusal::NoAnchors, image),
        CatalogCheck::Verify(trust) => trust,
    };
    let too_large = || {
        Refusal::Malformed(CatalogError::TooLarge {
            len: usize::try_from(done.size).unwrap_or(usize::MAX),
            cap: MAX_CATALOG_BYTES,
        })
    };
    if done.size > MAX_CATALOG_BYTES as u64 {
        return refused(too_large(), image);
    }
    let bytes = match staged {
        None => done.body.clone(),
        Some(path) => match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the staged catalog");
                return refused(
                    Refusal::Malformed(CatalogError::BadDer {
                        what: "catalog",
                        reason: "unreadable",
                    }),
                    image,
                );
            }
        },
    };
    if bytes.len() as u64 != done.size {
        return refused(too_large(), image);
    }
    match trust.image_digest(&bytes, image.as_str(), now_unix_secs) {
        Ok(listed) => {
            tracing::info!(%image, "catalog verified; the image is held to its digest");
            CatalogVerdict::Listed(listed)
        }
        Err(refusal) => refused(refusal, image),
    }
}

fn refused(refusal: Refusal, image: &FileName) -> CatalogVerdict {
    tracing::warn!(%image, code = format_args!("0x{:x}", refusal.code()), reason = %refusal, "update refused: its catalog does not vouch for it");
    CatalogVerdict::Refused(refusal)
}

/// Whether the staged file's SHA-1 is `want`; a mismatch removes the file. A device without
/// staging cannot check, and says no.
pub(super) async fn sha1_matches(staged: Option<PathBuf>, want: [u8; 20]) -> bool {
    let Some(path) = staged else {
        return false;
    };
    let hashed = tokio::task::spawn_blocking(move || {
        let got = crate::digest::of_file(&path, &crate::digest::SHA1);
        let ok = got.as_ref().is_ok_and(|(_, d)| d.as_ref() == want);
        if !ok {
            tracing::warn!(path = %path.display(), "SHA-1 does not match the catalog; file removed");
            let _ = std::fs::remove_file(&path);
        }
        ok
    })
    .await;
    hashed.unwrap_or(false)
}
