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
pub mod offer;

pub use catalog::{
    verify_catalog, AnchorError, CatalogClock, CatalogPolicy, ImageDigests, Refusal, TrustAnchors,
    VerifiedCatalog, MAX_FUTURE_SKEW_SECS,
};
pub use offer::{check_offer, OfferPolicy, OfferRefusal, Origin};

#[cfg(test)]
mod tests;
