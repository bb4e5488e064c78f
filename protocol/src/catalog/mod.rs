//! Microsoft catalog files (`.cat`), the signed list of an update's files: the types, the DER
//! decoder and the encoder. No cryptography here: signature checks live in the agent's `trust`
//! module, which feeds this codec's exact byte ranges to `ring`/`webpki`.
//!
//! A catalog, as vendors ship it (see docs/PROTOCOL.md, "Catalogs"):
//!
//! ```text
//! ContentInfo { signedData,                                  -- PKCS#7 v1.5, not CMS
//!   [0] SignedData { version 1, digestAlgorithms,
//!         contentInfo { szOID_CTL 1.3.6.1.4.1.311.10.1,
//!                       [0] CertificateTrustList }          -- no OCTET STRING wrapper
//!         [0] certificates, signerInfos } }
//! CertificateTrustList { subjectUsage { szOID_CATALOG_LIST }, listIdentifier, thisUpdate,
//!   subjectAlgorithm, trustedSubjects: one per file {
//!     subjectIdentifier (hash tag), attributes {
//!       CAT_NAMEVALUE  "File" = file name,
//!       SPC_INDIRECT_DATA { type, DigestInfo { algorithm, digest } },
//!       CAT_MEMBERINFO / anything else: skipped } } }
//! ```
//!
//! The signature's messageDigest covers the CTL SEQUENCE's *contents* (its inner octets, without
//! tag and length), as Authenticode does and as `osslsigncode` signs and checks them; that range
//! is [`Catalog::signed_content`].
//!
//! Parse, don't validate: [`decode`] returns typed values or a [`CatalogError`]; it is bounded
//! ([`MAX_CATALOG_BYTES`], [`MAX_MEMBERS`], [`MAX_CERTIFICATES`], [`MAX_SIGNERS`]) and never
//! panics (property-tested and fuzzed).

mod decode;
pub mod der;
mod encode;

pub use decode::{cert_issuer_and_serial, decode};
pub use encode::{encode_signed, encode_trust_list, encode_unsigned, signed_attributes};

use thiserror::Error;

/// Larger catalogs are refused before parsing. Device update catalogs list a handful of files;
/// Windows driver catalogs with thousands of members stay under a few MiB.
pub const MAX_CATALOG_BYTES: usize = 8 * 1024 * 1024;
/// At most this many members (files) in one catalog.
pub const MAX_MEMBERS: usize = 20_000;
/// At most this many certificates in the SignedData.
pub const MAX_CERTIFICATES: usize = 16;
/// At most this many SignerInfos (catalogs carry one).
pub const MAX_SIGNERS: usize = 4;
/// At most this many attributes on one member, and values in one attribute.
pub const MAX_ATTRIBUTES: usize = 32;
/// A member's file name is at most this many UTF-16 units (Windows' MAX_PATH).
pub const MAX_FILE_NAME: usize = 260;

/// The OIDs the codec reads and writes, as DER content octets.
pub mod oid {
    /// pkcs7-signedData 1.2.840.113549.1.7.2
    pub const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    /// szOID_CTL 1.3.6.1.4.1.311.10.1
    pub const CTL: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0x37, 10, 1];
    /// szOID_CATALOG_LIST 1.3.6.1.4.1.311.12.1.1
    pub const CATALOG_LIST: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0x37, 12, 1, 1];
    /// szOID_CATALOG_LIST_MEMBER 1.3.6.1.4.1.311.12.1.2 (v1 catalogs, SHA-1 members)
    pub const CATALOG_LIST_MEMBER: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0x37, 12, 1, 2];
    /// szOID_CATALOG_LIST_MEMBER2 1.3.6.1.4.1.311.12.1.3 (v2 catalogs, SHA-256 members)
    pub const CATALOG_LIST_MEMBER2: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0x37, 12, 1, 3];
    /// CAT_NAMEVALUE_OBJID 1.3.6.1.4.1.311.12.2.1
    pub const CAT_NAMEVALUE: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0x37, 12, 2, 1];
    /// CAT_MEMBERINFO_OBJID 1.3.6.1.4.1.311.12.2.2
    pub const CAT_MEMBERINFO: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0x37, 12, 2, 2];
    /// SPC_INDIRECT_DATA_OBJID 1.3.6.1.4.1.311.2.1.4
    pub const SPC_INDIRECT_DATA: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0x37, 2, 1, 4];
    /// SPC_CAB_DATA_OBJID 1.3.6.1.4.1.311.2.1.25, the indirect-data type of flat files
    pub const SPC_CAB_DATA: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0x37, 2, 1, 25];
    /// id-sha1 1.3.14.3.2.26
    pub const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    /// id-sha256 2.16.840.1.101.3.4.2.1
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    /// id-sha384 2.16.840.1.101.3.4.2.2
    pub const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    /// id-sha512 2.16.840.1.101.3.4.2.3
    pub const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    /// PKCS#9 contentType 1.2.840.113549.1.9.3
    pub const CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
    /// PKCS#9 messageDigest 1.2.840.113549.1.9.4
    pub const MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
    /// PKCS#9 signingTime 1.2.840.113549.1.9.5
    pub const SIGNING_TIME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05];
    /// rsaEncryption 1.2.840.113549.1.1.1 (what OpenSSL writes for PKCS#1 v1.5 signers)
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// sha256WithRSAEncryption 1.2.840.113549.1.1.11
    pub const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    /// sha384WithRSAEncryption 1.2.840.113549.1.1.12
    pub const SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    /// sha512WithRSAEncryption 1.2.840.113549.1.1.13
    pub const SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    /// id-ecPublicKey 1.2.840.10045.2.1 (some signers name the key, not the signature)
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// ecdsa-with-SHA256 1.2.840.10045.4.3.2
    pub const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    /// ecdsa-with-SHA384 1.2.840.10045.4.3.3
    pub const ECDSA_WITH_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    /// id-kp-codeSigning 1.3.6.1.5.5.7.3.3
    pub const EKU_CODE_SIGNING: &[u8] = &[0x2b, 6, 1, 5, 5, 7, 3, 3];
}

/// The subject GUID of a flat (non-PE, non-CAB) file, written in CAT_MEMBERINFO.
pub const FLAT_FILE_SUBJECT_GUID: &str = "{DE351A42-8E59-11D0-8C47-00C04FC295EE}";
/// The name/value tag that carries a member's file name.
pub const FILE_NAME_TAG: &str = "File";
/// CRYPTCAT_ATTR_AUTHENTICATED | NAMEASCII | DATAASCII, the flags makecat writes on "File".
pub const NAME_VALUE_FLAGS: u64 = 0x1001_0001;

/// Why bytes are not a catalog this codec accepts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The file is larger than [`MAX_CATALOG_BYTES`].
    #[error("catalog of {len} bytes exceeds the {cap}-byte cap")]
    TooLarge { len: usize, cap: usize },
    /// Not well-formed DER.
    #[error("bad DER in {what}: {reason}")]
    BadDer {
        what: &'static str,
        reason: &'static str,
    },
    /// A value with another tag where the schema wants `expected`.
    #[error("in {what}: expected tag {expected:#04x}, found {found:02x?}")]
    UnexpectedTag {
        what: &'static str,
        expected: u8,
        found: Option<u8>,
    },
    /// Bytes after the end of a structure.
    #[error("trailing bytes after {what}")]
    TrailingData { what: &'static str },
    /// An OID other than the one this position must hold.
    #[error("{what}: unexpected OID {found}")]
    WrongOid { what: &'static str, found: String },
    /// A digest algorithm other than SHA-1/SHA-256 (members) or SHA-256/384/512 (signers).
    #[error("unsupported digest algorithm {0}")]
    UnsupportedDigest(String),
    /// A digest whose length does not match its algorithm.
    #[error("{what}: a {algorithm:?} digest of {len} bytes")]
    DigestLength {
        what: &'static str,
        algorithm: DigestAlgorithm,
        len: usize,
    },
    /// A count cap was exceeded.
    #[error("more than {cap} {what}")]
    TooMany { what: &'static str, cap: usize },
    /// An attribute that must appear once appears again, or with several values.
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// A member's file name is empty, too long, not UTF-16, or not a single path component.
    #[error("bad member file name: {0}")]
    BadFileName(&'static str),
}

/// The digest algorithms a catalog may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// Older (v1) vendor catalogs; accepted only with `allow_sha1_catalogs`.
    Sha1,
    Sha256,
    /// Signer digests only.
    Sha384,
    /// Signer digests only.
    Sha512,
}

impl DigestAlgorithm {
    pub fn from_oid(content: &[u8]) -> Result<Self, CatalogError> {
        match content {
            oid::SHA1 => Ok(DigestAlgorithm::Sha1),
            oid::SHA256 => Ok(DigestAlgorithm::Sha256),
            oid::SHA384 => Ok(DigestAlgorithm::Sha384),
            oid::SHA512 => Ok(DigestAlgorithm::Sha512),
            other => Err(CatalogError::UnsupportedDigest(der::oid_to_string(other))),
        }
    }

    pub fn oid(self) -> &'static [u8] {
        match self {
            DigestAlgorithm::Sha1 => oid::SHA1,
            DigestAlgorithm::Sha256 => oid::SHA256,
            DigestAlgorithm::Sha384 => oid::SHA384,
            DigestAlgorithm::Sha512 => oid::SHA512,
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha1 => 20,
            DigestAlgorithm::Sha256 => 32,
            DigestAlgorithm::Sha384 => 48,
            DigestAlgorithm::Sha512 => 64,
        }
    }
}

/// A member's digest, its length checked against its algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberDigest {
    algorithm: DigestAlgorithm,
    value: Vec<u8>,
}

impl MemberDigest {
    /// Members carry SHA-1 or SHA-256 digests only.
    pub fn new(algorithm: DigestAlgorithm, value: Vec<u8>) -> Result<Self, CatalogError> {
        if !matches!(algorithm, DigestAlgorithm::Sha1 | DigestAlgorithm::Sha256) {
            return Err(CatalogError::UnsupportedDigest(der::oid_to_string(
                algorithm.oid(),
            )));
        }
        if value.len() != algorithm.digest_len() {
            return Err(CatalogError::DigestLength {
                what: "member digest",
                algorithm,
                len: value.len(),
            });
        }
        Ok(MemberDigest { algorithm, value })
    }

    pub fn sha256(value: [u8; 32]) -> Self {
        MemberDigest {
            algorithm: DigestAlgorithm::Sha256,
            value: value.to_vec(),
        }
    }

    pub fn sha1(value: [u8; 20]) -> Self {
        MemberDigest {
            algorithm: DigestAlgorithm::Sha1,
            value: value.to_vec(),
        }
    }

    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// SHA-1 members are parsed but flagged: the verifier accepts them only when told to.
    pub fn is_sha1(&self) -> bool {
        self.algorithm == DigestAlgorithm::Sha1
    }

    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

/// One file listed in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The subject identifier ("reference tag"); makecat writes the digest as upper-case hex in
    /// UTF-16LE with a terminating NUL. Kept opaque: the digest comes from the indirect data.
    pub tag: Vec<u8>,
    /// The "File" name/value attribute, if the member has one.
    pub file_name: Option<String>,
    /// From SPC_INDIRECT_DATA's DigestInfo or, failing that, a hex hash tag.
    pub digest: Option<MemberDigest>,
}

impl Member {
    /// A member the way makecat writes one for a flat file.
    pub fn new(file_name: &str, digest: MemberDigest) -> Self {
        let hex: String = digest.value().iter().map(|b| format!("{b:02X}")).collect();
        let tag = hex
            .encode_utf16()
            .chain(std::iter::once(0))
            .flat_map(u16::to_le_bytes)
            .collect();
        Member {
            tag,
            file_name: Some(file_name.to_string()),
            digest: Some(digest),
        }
    }
}

/// The certificate trust list: what the signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustList {
    pub list_identifier: Option<Vec<u8>>,
    /// `thisUpdate`, seconds since the Unix epoch (informational: validity uses signingTime).
    pub this_update: u64,
    /// `subjectAlgorithm` (CATALOG_LIST_MEMBER or CATALOG_LIST_MEMBER2), as OID content octets.
    pub member_algorithm: Vec<u8>,
    pub members: Vec<Member>,
}

/// The signed attributes of one signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAttributes {
    /// The attributes re-encoded as the `SET OF` DER the signature covers (tag 0x31).
    pub der: Vec<u8>,
    pub content_type: Option<Vec<u8>>,
    pub message_digest: Option<Vec<u8>>,
    /// signingTime, seconds since the Unix epoch.
    pub signing_time: Option<u64>,
}

/// One PKCS#7 SignerInfo (IssuerAndSerialNumber form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerInfo {
    /// The issuer Name, raw DER.
    pub issuer: Vec<u8>,
    /// The serial number, INTEGER content octets.
    pub serial: Vec<u8>,
    pub digest_algorithm: DigestAlgorithm,
    pub signed_attributes: Option<SignedAttributes>,
    /// digestEncryptionAlgorithm, OID content octets.
    pub signature_algorithm: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A decoded catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    pub trust_list: TrustList,
    /// The CTL SEQUENCE's inner octets: what the messageDigest attribute covers.
    pub signed_content: Vec<u8>,
    /// The SignedData's certificates, raw DER, in file order.
    pub certificates: Vec<Vec<u8>>,
    /// Empty for an unsigned catalog (what `makecat` writes before `signtool` signs it).
    pub signers: Vec<SignerInfo>,
}

#[cfg(test)]
mod tests;
