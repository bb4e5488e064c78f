//! The catalog verifier: a `.cat` file's bytes, the device's trust anchors and its idea of the
//! time in; a [`VerifiedCatalog`] (whose members can then be matched against an image) or a
//! [`Refusal`] out.
//!
//! The checks, in order (the first failure is the verdict):
//! 1. the bytes decode as a catalog ([`ucupdate_protocol::catalog`]) -> else `Malformed`;
//! 2. exactly one signer, with signed attributes whose contentType is szOID_CTL and whose
//!    messageDigest equals the SHA-256/384/512 of the CTL's inner octets -> else `BadSignature`;
//! 3. the signer's certificate is in the catalog (IssuerAndSerialNumber) -> else
//!    `UnknownSigner`, and its key verifies the signature over the signed attributes' DER
//!    (RSA PKCS#1 v1.5 or ECDSA P-256/P-384, via webpki and ring) -> else `BadSignature`;
//! 4. the certificate chains to one of the anchors (the catalog's other certificates may serve
//!    as intermediates) -> else `UnknownSigner`, carries the code-signing EKU
//!    (1.3.6.1.5.5.7.3.3) -> else `NotCodeSigning`, and is valid at the validation time ->
//!    else `Expired`.
//!
//! # Which time
//! The validation time is the catalog's signingTime signed attribute: a catalog signed while
//! its certificate was valid stays installable after the certificate expires, as vendors'
//! catalogs must (a phone may sit in a box for years). A device with no trustworthy clock
//! ([`CatalogClock::Untrusted`]: no RTC battery, no NTP yet) decides on signingTime alone.
//! With a trustworthy clock ([`CatalogClock::Trusted`]) the signingTime must also not lie more
//! than [`MAX_FUTURE_SKEW_SECS`] in the future, and a catalog without signingTime is checked at
//! `now`; without either, it is refused (`Expired`: validity cannot be established).
//!
//! signingTime is the signer's own claim (there is no countersigned timestamp here), so a
//! leaked key could backdate a catalog into its certificate's lifetime: that is what removing
//! the anchor and the anti-rollback floor are for. SHA-1 signer digests are refused (webpki has
//! no RSA-SHA1); SHA-1 *member* digests only with [`CatalogPolicy::allow_sha1_catalogs`].

use std::time::Duration;

use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use thiserror::Error;
use ucupdate_protocol::catalog::{
    self, cert_issuer_and_serial, oid, CatalogError, DigestAlgorithm, Member,
};
use webpki::{EndEntityCert, KeyUsage};

/// A signingTime further than this ahead of a trusted clock is refused.
pub const MAX_FUTURE_SKEW_SECS: u64 = 24 * 3600;

/// The device's trust anchors for catalogs (`[trust] catalog_roots`, a PEM bundle).
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    anchors: Vec<TrustAnchor<'static>>,
}

/// Why a PEM bundle gives no trust anchors.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AnchorError {
    #[error("the bundle holds no certificate")]
    Empty,
    #[error("bad PEM: {0}")]
    Pem(std::io::Error),
    #[error("certificate {index} in the bundle is not usable as a trust anchor: {reason}")]
    BadCertificate { index: usize, reason: String },
}

impl TrustAnchors {
    /// Every certificate in `pem` becomes an anchor; an empty bundle is an error, never
    /// "trust everything".
    pub fn from_pem(pem: &[u8]) -> Result<Self, AnchorError> {
        let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(pem))
            .collect::<Result<Vec<_>, _>>()?;
        let der: Vec<Vec<u8>> = certs.iter().map(|c| c.to_vec()).collect();
        Self::from_der(&der)
    }

    /// Anchors from DER certificates (the fuzz target feeds a catalog's own certificates).
    pub fn from_der(certs: &[Vec<u8>]) -> Result<Self, AnchorError> {
        if certs.is_empty() {
            return Err(AnchorError::Empty);
        }
        let anchors = certs
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let der = CertificateDer::from(c.as_slice());
                webpki::anchor_from_trusted_cert(&der)
                    .map(|a| a.to_owned())
                    .map_err(|e| AnchorError::BadCertificate {
                        index,
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustAnchors { anchors })
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

/// What the device knows about the time (see the module docs, "Which time").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogClock {
    /// A clock the device trusts (NTP-synchronised, or an RTC set by an administrator), in
    /// seconds since the Unix epoch.
    Trusted(u64),
    /// No trustworthy clock: the catalog's signingTime decides alone.
    Untrusted,
}

/// The device's catalog settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatalogPolicy {
    /// Accept SHA-1 member digests (older vendor catalogs). Off by default.
    pub allow_sha1_catalogs: bool,
}

/// Why an update is refused. [`Refusal::code`] is what `ucupdate-agent status` shows, in the
/// style of the phone's System Information screen.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The catalog's signature or messageDigest does not verify (tampered, unsigned, or an
    /// unsupported algorithm).
    #[error("bad catalog signature: {0}")]
    BadSignature(&'static str),
    /// The signer's certificate is absent or does not chain to a configured anchor.
    #[error("catalog signer is not trusted: {0}")]
    UnknownSigner(String),
    /// The signer's certificate lacks the code-signing extended key usage.
    #[error("catalog signer is not a code-signing certificate")]
    NotCodeSigning,
    /// The signer's certificate was not valid at the validation time.
    #[error("catalog signer certificate not valid at the signing time: {0}")]
    Expired(String),
    /// No member of the catalog has the image's file name.
    #[error("image {0:?} is not listed in the catalog")]
    NotInCatalog(String),
    /// The catalog lists the file name with another digest.
    #[error("image {0:?} does not match the digest in the catalog")]
    DigestMismatch(String),
    /// The catalog lists the file only with SHA-1 and `allow_sha1_catalogs` is off.
    #[error("image {0:?} is listed with SHA-1 only and allow_sha1_catalogs is off")]
    Sha1NotAllowed(String),
    /// The catalog does not decode.
    #[error("malformed catalog: {0}")]
    Malformed(CatalogError),
    /// The offer carries no catalog at all.
    #[error("the offer has no catalog")]
    Unsigned,
    /// The device has no trust anchors (`[trust] catalog_roots`), so nothing can verify.
    #[error("no catalog trust anchors are configured")]
    NoAnchors,
}

/// A [`Refusal`] without its detail: what the machine keeps for the status (small and `Copy`;
/// the detail goes to the log when the refusal happens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RefusalKind {
    #[error("bad catalog signature")]
    BadSignature,
    #[error("catalog signer is not trusted")]
    UnknownSigner,
    #[error("catalog signer is not a code-signing certificate")]
    NotCodeSigning,
    #[error("catalog signer certificate expired at the signing time")]
    Expired,
    #[error("image not listed in the catalog")]
    NotInCatalog,
    #[error("image does not match the catalog")]
    DigestMismatch,
    #[error("image listed with SHA-1 only")]
    Sha1NotAllowed,
    #[error("malformed catalog")]
    Malformed,
    #[error("unsigned: the offer has no catalog")]
    Unsigned,
    #[error("no catalog trust anchors configured")]
    NoAnchors,
}

impl RefusalKind {
    /// See [`Refusal::code`].
    pub fn code(self) -> u32 {
        match self {
            RefusalKind::Malformed => 0x1,
            RefusalKind::UnknownSigner
            | RefusalKind::NotCodeSigning
            | RefusalKind::Expired
            | RefusalKind::NoAnchors => 0x2,
            RefusalKind::BadSignature | RefusalKind::Unsigned => 0x3,
            RefusalKind::NotInCatalog => 0x4,
            RefusalKind::DigestMismatch => 0x5,
            RefusalKind::Sha1NotAllowed => 0x6,
        }
    }
}

impl Refusal {
    /// The System-Information-style code: `0x2` is the phone's "certificate validation
    /// failed" (UnknownSigner, NotCodeSigning, Expired, and no anchors at all); the others are
    /// this project's: `0x1` malformed, `0x3` bad signature or unsigned, `0x4` not in catalog,
    /// `0x5` digest mismatch, `0x6` SHA-1 not allowed.
    pub fn code(&self) -> u32 {
        self.kind().code()
    }

    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::BadSignature(_) => RefusalKind::BadSignature,
            Refusal::UnknownSigner(_) => RefusalKind::UnknownSigner,
            Refusal::NotCodeSigning => RefusalKind::NotCodeSigning,
            Refusal::Expired(_) => RefusalKind::Expired,
            Refusal::NotInCatalog(_) => RefusalKind::NotInCatalog,
            Refusal::DigestMismatch(_) => RefusalKind::DigestMismatch,
            Refusal::Sha1NotAllowed(_) => RefusalKind::Sha1NotAllowed,
            Refusal::Malformed(_) => RefusalKind::Malformed,
            Refusal::Unsigned => RefusalKind::Unsigned,
            Refusal::NoAnchors => RefusalKind::NoAnchors,
        }
    }
}

/// A catalog whose signature and signer checked out: its members can be trusted.
#[derive(Debug, Clone)]
pub struct VerifiedCatalog {
    members: Vec<Member>,
    signing_time: Option<u64>,
    policy: CatalogPolicy,
}

/// What a catalog lists for one file (see [`VerifiedCatalog::listed_digest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListedDigest {
    Sha256([u8; 32]),
    /// Only with `allow_sha1_catalogs`.
    Sha1([u8; 20]),
}

/// An image's digests: SHA-256 always; SHA-1 only needed for SHA-1-only catalogs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageDigests {
    pub sha256: [u8; 32],
    pub sha1: Option<[u8; 20]>,
}

impl From<[u8; 32]> for ImageDigests {
    fn from(sha256: [u8; 32]) -> Self {
        ImageDigests { sha256, sha1: None }
    }
}

impl From<&[u8; 32]> for ImageDigests {
    fn from(sha256: &[u8; 32]) -> Self {
        ImageDigests::from(*sha256)
    }
}

impl VerifiedCatalog {
    /// Whether the image `file_name` (compared ASCII-case-insensitively, as Windows does) with
    /// these digests is listed, by the rules of [`VerifiedCatalog::listed_digest`].
    pub fn verify_file(
        &self,
        file_name: &str,
        digests: impl Into<ImageDigests>,
    ) -> Result<(), Refusal> {
        let digests = digests.into();
        let listed = match self.listed_digest(file_name)? {
            ListedDigest::Sha256(d) => d == digests.sha256,
            ListedDigest::Sha1(d) => digests.sha1 == Some(d),
        };
        listed
            .then_some(())
            .ok_or_else(|| Refusal::DigestMismatch(file_name.to_string()))
    }

    /// The digest the catalog lists for `file_name`, before the file is fetched: the device
    /// downloads the catalog first and then holds the image to this digest, so an image the
    /// catalog does not vouch for is never pulled in whole. A SHA-256 member decides when there
    /// is one (two different SHA-256 digests under one name are refused as ambiguous); SHA-1
    /// members count only with `allow_sha1_catalogs`.
    pub fn listed_digest(&self, file_name: &str) -> Result<ListedDigest, Refusal> {
        let mut named = self
            .members
            .iter()
            .filter(|m| {
                m.file_name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(file_name))
            })
            .filter_map(|m| m.digest.as_ref())
            .peekable();
        if named.peek().is_none() {
            return Err(Refusal::NotInCatalog(file_name.to_string()));
        }
        let (mut sha256, mut sha1) = (None::<&[u8]>, None::<&[u8]>);
        for d in named {
            let slot = if d.is_sha1() { &mut sha1 } else { &mut sha256 };
            match slot {
                Some(seen) if *seen != d.value() => {
                    return Err(Refusal::DigestMismatch(file_name.to_string()))
                }
                _ => *slot = Some(d.value()),
            }
        }
        let mismatch = || Refusal::DigestMismatch(file_name.to_string());
        match (sha256, sha1) {
            (Some(d), _) => d
                .try_into()
                .map(ListedDigest::Sha256)
                .map_err(|_| mismatch()),
            (None, Some(d)) if self.policy.allow_sha1_catalogs => {
                d.try_into().map(ListedDigest::Sha1).map_err(|_| mismatch())
            }
            _ => Err(Refusal::Sha1NotAllowed(file_name.to_string())),
        }
    }

    /// The catalog's signingTime, if it has one (seconds since the Unix epoch).
    pub fn signing_time(&self) -> Option<u64> {
        self.signing_time
    }

    /// The file names the catalog lists.
    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().filter_map(|m| m.file_name.as_deref())
    }
}

/// Verifies a catalog's signature and signer (see the module docs for the rules).
pub fn verify_catalog(
    bytes: &[u8],
    anchors: &TrustAnchors,
    clock: CatalogClock,
    policy: CatalogPolicy,
) -> Result<VerifiedCatalog, Refusal> {
    let cat = catalog::decode(bytes).map_err(Refusal::Malformed)?;
    let [signer] = cat.signers.as_slice() else {
        return Err(Refusal::BadSignature(if cat.signers.is_empty() {
            "the catalog is not signed"
        } else {
            "more than one signer"
        }));
    };
    let attrs = signer
        .signed_attributes
        .as_ref()
        .ok_or(Refusal::BadSignature("no signed attributes"))?;
    if attrs.content_type.as_deref() != Some(oid::CTL) {
        return Err(Refusal::BadSignature(
            "contentType attribute is not szOID_CTL",
        ));
    }
    let digest_alg = match signer.digest_algorithm {
        DigestAlgorithm::Sha256 => &ring::digest::SHA256,
        DigestAlgorithm::Sha384 => &ring::digest::SHA384,
        DigestAlgorithm::Sha512 => &ring::digest::SHA512,
        DigestAlgorithm::Sha1 => return Err(Refusal::BadSignature("SHA-1 signer digest")),
    };
    let content_digest = ring::digest::digest(digest_alg, &cat.signed_content);
    if attrs.message_digest.as_deref() != Some(content_digest.as_ref()) {
        return Err(Refusal::BadSignature(
            "messageDigest does not match the catalog content",
        ));
    }

    let position = cat
        .certificates
        .iter()
        .position(|c| {
            cert_issuer_and_serial(c)
                .is_some_and(|(i, s)| i == signer.issuer.as_slice() && s == signer.serial)
        })
        .ok_or_else(|| Refusal::UnknownSigner("signer certificate not in the catalog".into()))?;
    let leaf_der = CertificateDer::from(cat.certificates[position].as_slice());
    let leaf = EndEntityCert::try_from(&leaf_der)
        .map_err(|e| Refusal::UnknownSigner(format!("signer certificate: {e}")))?;
    let candidates = signature_algorithms(&signer.signature_algorithm, signer.digest_algorithm)?;
    if !candidates.iter().any(|alg| {
        leaf.verify_signature(*alg, &attrs.der, &signer.signature)
            .is_ok()
    }) {
        return Err(Refusal::BadSignature(
            "the signature over the signed attributes does not verify",
        ));
    }

    let at = match (attrs.signing_time, clock) {
        (Some(t), CatalogClock::Trusted(now)) if t > now.saturating_add(MAX_FUTURE_SKEW_SECS) => {
            return Err(Refusal::Expired(format!(
                "signingTime {t} is in the future of the device clock {now}"
            )))
        }
        (Some(t), _) => t,
        (None, CatalogClock::Trusted(now)) => now,
        (None, CatalogClock::Untrusted) => {
            return Err(Refusal::Expired(
                "no signingTime and no trustworthy clock".into(),
            ))
        }
    };
    let intermediates: Vec<CertificateDer<'_>> = cat
        .certificates
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != position)
        .map(|(_, c)| CertificateDer::from(c.as_slice()))
        .collect();
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors.anchors,
        &intermediates,
        UnixTime::since_unix_epoch(Duration::from_secs(at)),
        KeyUsage::required(oid::EKU_CODE_SIGNING),
        None,
        None,
    )
    .map_err(chain_refusal)?;

    Ok(VerifiedCatalog {
        members: cat.trust_list.members,
        signing_time: attrs.signing_time,
        policy,
    })
}

/// The webpki algorithms that can check a signer's (signature algorithm, digest) pair; more
/// than one when only the key type is named (ECDSA over P-256 or P-384).
fn signature_algorithms(
    signature_algorithm: &[u8],
    digest: DigestAlgorithm,
) -> Result<Vec<&'static dyn rustls::pki_types::SignatureVerificationAlgorithm>, Refusal> {
    use webpki::ring as alg;
    let rsa = matches!(
        signature_algorithm,
        oid::RSA_ENCRYPTION | oid::SHA256_WITH_RSA | oid::SHA384_WITH_RSA | oid::SHA512_WITH_RSA
    );
    let ecdsa = matches!(
        signature_algorithm,
        oid::EC_PUBLIC_KEY | oid::ECDSA_WITH_SHA256 | oid::ECDSA_WITH_SHA384
    );
    Ok(match (rsa, ecdsa, digest) {
        (true, _, DigestAlgorithm::Sha256) => vec![alg::RSA_PKCS1_2048_8192_SHA256],
        (true, _, DigestAlgorithm::Sha384) => vec![alg::RSA_PKCS1_2048_8192_SHA384],
        (true, _, DigestAlgorithm::Sha512) => vec![alg::RSA_PKCS1_2048_8192_SHA512],
        (_, true, DigestAlgorithm::Sha256) => {
            vec![alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256]
        }
        (_, true, DigestAlgorithm::Sha384) => {
            vec![alg::ECDSA_P384_SHA384, alg::ECDSA_P256_SHA384]
        }
        _ => return Err(Refusal::BadSignature("unsupported signature algorithm")),
    })
}

fn chain_refusal(e: webpki::Error) -> Refusal {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } | E::CertNotValidYet { .. } | E::InvalidCertValidity => {
            Refusal::Expired(e.to_string())
        }
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => Refusal::NotCodeSigning,
        #[allow(deprecated)] // older webpki releases report the EKU without context
        E::RequiredEkuNotFound => Refusal::NotCodeSigning,
        other => Refusal::UnknownSigner(other.to_string()),
    }
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<std::io::Error> for AnchorError {
    fn from(error: std::io::Error) -> Self {
        AnchorError::Pem(error)
    }
}
