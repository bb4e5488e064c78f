//! What the device trusts before it installs anything: pure checks, bytes in and a verdict out,
//! no I/O and no clock reads (time is an argument), so the agent and the simulated devices run
//! the same code.
//!
//! - [`catalog`]: the signed `.cat` catalog of an update: signature (ring, through webpki), the
//!   signer's chain to the configured anchors, the code-signing EKU, validity at the signing
//!   time, and the image's SHA-256 under its file name. [`Refusal`] names why not, with a
//!   System-Information-style [`Refusal::code`].
//! - [`offer`]: where an offer's files may come from and how large they may be, decided before
//!   the first byte ([`check_offer`], [`OfferRefusal`]).

pub mod catalog;
mod memo;
pub mod offer;

use std::sync::Arc;

pub use catalog::{
    verify_catalog, AnchorError, CatalogClock, CatalogPolicy, ImageDigests, ListedDigest, Refusal,
    RefusalKind, TrustAnchors, VerifiedCatalog, MAX_FUTURE_SKEW_SECS,
};
pub use memo::CatalogMemo;
pub use offer::{check_offer, OfferPolicy, OfferRefusal, Origin};

/// How one device decides on catalogs: its anchors (`[trust] catalog_roots`), its policy, and
/// whether its clock may be believed (`[trust] trusted_clock`; see [`catalog`], "Which time").
#[derive(Debug, Clone)]
pub struct CatalogTrust {
    pub anchors: TrustAnchors,
    pub policy: CatalogPolicy,
    pub trusted_clock: bool,
    /// Verdicts shared by the devices of one simulated fleet ([`CatalogMemo`]); `None` on a
    /// device, which verifies every catalog it downloads.
    pub memo: Option<Arc<CatalogMemo>>,
}

impl CatalogTrust {
    /// Verifies the catalog `bytes` and returns the digest it lists for `image`: what the
    /// image download is then held to.
    pub fn image_digest(
        &self,
        bytes: &[u8],
        image: &str,
        now_unix_secs: u64,
    ) -> Result<ListedDigest, Refusal> {
        if self.trusted_clock {
            let clock = CatalogClock::Trusted(now_unix_secs);
            return verify_catalog(bytes, &self.anchors, clock, self.policy)?.listed_digest(image);
        }
        let verify = || verify_catalog(bytes, &self.anchors, CatalogClock::Untrusted, self.policy);
        match &self.memo {
            None => verify()?.listed_digest(image),
            Some(memo) => match memo.verdict(bytes, verify).as_ref() {
                Ok(catalog) => catalog.listed_digest(image),
                Err(refusal) => Err(refusal.clone()),
            },
        }
    }
}

#[cfg(test)]
mod tests;
