//! Signing Microsoft catalogs (`.cat`) for published updates: `ucupdate-server catalog create`,
//! and a throwaway CA + code-signing leaf for the simulator's embedded server and tests.
//!
//! The catalog layout is the protocol crate's ([`ucupdate_protocol::catalog`]); this module only
//! adds the private key. Keys: ECDSA P-256 (rcgen's default, what the throwaway CA makes) or
//! RSA (PKCS#8 or PKCS#1 PEM, 2048 bits and up), both with SHA-256, the pairs `osslsigncode`
//! and Windows accept for Authenticode. The signature covers the signed attributes, whose
//! messageDigest is SHA-256 over the CTL's inner octets, as `osslsigncode` and signtool sign.

use std::io::BufReader;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use thiserror::Error;
use ucupdate_protocol::catalog::{
    self, cert_issuer_and_serial, oid, DigestAlgorithm, Member, MemberDigest, SignedAttributes,
    SignerInfo, TrustList,
};
use ucupdate_protocol::{FileKind, FileName, FirmwareVersion, UpdateKey};

use crate::model::FileMeta;
use crate::state::{State, StateError};
use crate::store;

/// Why a catalog could not be signed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CatalogSignError {
    /// The certificate PEM holds no certificate, or the first one is not X.509-shaped.
    #[error("no usable certificate in the certificate PEM")]
    NoCertificate,
    /// The key PEM holds no private key this signer supports.
    #[error("unsupported private key: {0}")]
    Key(String),
    /// The private key does not belong to the first certificate.
    #[error("the private key does not match the signing certificate")]
    KeyMismatch,
    /// PEM that cannot be read.
    #[error("bad PEM: {0}")]
    Pem(std::io::Error),
    /// The signing operation failed.
    #[error("signing failed")]
    Sign,
    /// Certificate generation failed (throwaway CA).
    #[error("certificate generation: {0}")]
    Generate(rcgen::Error),
}

enum Key {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A code-signing certificate chain (leaf first) and its private key.
pub struct CatalogSigner {
    key: Key,
    chain: Vec<Vec<u8>>,
    issuer: Vec<u8>,
    serial: Vec<u8>,
    rng: SystemRandom,
}

impl std::fmt::Debug for CatalogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogSigner")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl CatalogSigner {
    /// The signer from PEM: `cert_pem` holds the signing certificate first, then any
    /// intermediates (all are embedded in the catalog); `key_pem` the signing certificate's key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CatalogSignError> {
        let chain: Vec<Vec<u8>> = rustls_pemfile::certs(&mut BufReader::new(cert_pem))
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<_, _>>()?;
        let key = rustls_pemfile::private_key(&mut BufReader::new(key_pem))?
            .ok_or_else(|| CatalogSignError::Key("no private key in the key PEM".into()))?;
        Self::from_der(chain, &key)
    }

    fn from_der(chain: Vec<Vec<u8>>, key: &PrivateKeyDer<'_>) -> Result<Self, CatalogSignError> {
        let leaf = chain.first().ok_or(CatalogSignError::NoCertificate)?;
        let (issuer, serial) =
            cert_issuer_and_serial(leaf).ok_or(CatalogSignError::NoCertificate)?;
        let (issuer, serial) = (issuer.to_vec(), serial.to_vec());
        let rng = SystemRandom::new();
        let key =
            match key {
                PrivateKeyDer::Pkcs8(der) => {
                    let der = der.secret_pkcs8_der();
                    match EcdsaKeyPair::from_pkcs8(
                        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                        der,
                        &rng,
                    ) {
                        Ok(k) => Key::Ecdsa(k),
                        Err(_) => Key::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|e| {
                            CatalogSignError::Key(format!("neither ECDSA P-256 nor RSA: {e}"))
                        })?),
                    }
                }
                PrivateKeyDer::Pkcs1(der) => Key::Rsa(
                    RsaKeyPair::from_der(der.secret_pkcs1_der())
                        .map_err(|e| CatalogSignError::Key(format!("RSA: {e}")))?,
                ),
                _ => return Err(CatalogSignError::Key(
                    "SEC1 EC keys are not supported: convert with `openssl pkcs8 -topk8 -nocrypt`"
                        .into(),
                )),
            };
        // The public key's bytes sit inside the certificate's SubjectPublicKeyInfo: a cheap
        // check that catches the wrong --key before a device refuses the catalog.
        let public = match &key {
            Key::Ecdsa(k) => k.public_key().as_ref().to_vec(),
            Key::Rsa(k) => k.public_key().as_ref().to_vec(),
        };
        if !leaf.windows(public.len()).any(|w| w == public) {
            return Err(CatalogSignError::KeyMismatch);
        }
        Ok(CatalogSigner {
            key,
            chain,
            issuer,
            serial,
            rng,
        })
    }

    /// A catalog listing `files` (file name, contents) with their SHA-256, signed at
    /// `signing_time` (seconds since the Unix epoch).
    pub fn sign_files<N: AsRef<str>, B: AsRef<[u8]>>(
        &self,
        files: &[(N, B)],
        signing_time: u64,
    ) -> Result<Vec<u8>, CatalogSignError> {
        let members = files
            .iter()
            .map(|(name, bytes)| {
                let digest = ring::digest::digest(&ring::digest::SHA256, bytes.as_ref());
                let mut value = [0u8; 32];
                value.copy_from_slice(digest.as_ref());
                Member::new(name.as_ref(), MemberDigest::sha256(value))
            })
            .collect();
        self.sign_members(members, signing_time)
    }

    /// A catalog of the given members (any digests, e.g. SHA-1 ones for tests), signed at
    /// `signing_time`.
    pub fn sign_members(
        &self,
        members: Vec<Member>,
        signing_time: u64,
    ) -> Result<Vec<u8>, CatalogSignError> {
        let ctl = catalog::encode_trust_list(&trust_list(members, signing_time));
        // The messageDigest covers the CTL's inner octets: skip its tag and length.
        let inner = ctl_inner(&ctl).ok_or(CatalogSignError::Sign)?;
        let content_digest = ring::digest::digest(&ring::digest::SHA256, inner);
        let attrs = catalog::signed_attributes(content_digest.as_ref(), signing_time);
        let (signature_algorithm, signature) = match &self.key {
            Key::Ecdsa(k) => (oid::ECDSA_WITH_SHA256, self.fixed_length_ecdsa(k, &attrs)?),
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &self.rng, &attrs, &mut sig)
                    .map_err(|_| CatalogSignError::Sign)?;
                (oid::RSA_ENCRYPTION, sig)
            }
        };
        let signer = SignerInfo {
            issuer: self.issuer.clone(),
            serial: self.serial.clone(),
            digest_algorithm: DigestAlgorithm::Sha256,
            signed_attributes: Some(SignedAttributes {
                der: attrs,
                content_type: Some(oid::CTL.to_vec()),
                message_digest: Some(content_digest.as_ref().to_vec()),
                signing_time: Some(signing_time),
            }),
            signature_algorithm: signature_algorithm.to_vec(),
            signature,
        };
        Ok(catalog::encode_signed(&ctl, &self.chain, &signer))
    }
}

impl CatalogSigner {
    /// An ECDSA signature of the longest DER length (72 bytes for P-256: both integers with a
    /// leading zero), signing again until one is: a DER signature's length varies with its
    /// random nonce, and a catalog whose size is a function of its inputs keeps the
    /// simulator's runs reproducible (a download's modelled time follows its size). About
    /// four signatures on average, microseconds each.
    fn fixed_length_ecdsa(
        &self,
        key: &EcdsaKeyPair,
        msg: &[u8],
    ) -> Result<Vec<u8>, CatalogSignError> {
        const LONGEST: usize = 72;
        for _ in 0..256 {
            let sig = key
                .sign(&self.rng, msg)
                .map_err(|_| CatalogSignError::Sign)?;
            if sig.as_ref().len() == LONGEST {
                return Ok(sig.as_ref().to_vec());
            }
        }
        Err(CatalogSignError::Sign)
    }

    /// Whether `catalog` carries this signer's certificate first, i.e. this server made it. A
    /// catalog it did not make is the vendor's and is never replaced ([`resign_version`]).
    pub fn made(&self, catalog: &[u8]) -> bool {
        catalog::decode(catalog)
            .ok()
            .and_then(|c| {
                c.certificates
                    .first()
                    .map(|c| c.as_slice() == self.chain[0].as_slice())
            })
            .unwrap_or(false)
    }
}

/// The catalog a server signs for one version's files (`(name, SHA-256)`): every file that is
/// not itself a catalog, under `<image stem>.cat` (the first `.nbt`, else the first file),
/// the name devices look for. `None` when there is nothing to list.
pub fn version_catalog(
    signer: &CatalogSigner,
    files: &[(FileName, [u8; 32])],
    signing_time: u64,
) -> Result<Option<(FileName, Vec<u8>)>, CatalogSignError> {
    let listed: Vec<_> = files
        .iter()
        .filter(|(n, _)| FileKind::of(n) != FileKind::Catalog)
        .collect();
    let Some(named) = listed
        .iter()
        .find(|(n, _)| FileKind::of(n) == FileKind::Image)
        .or(listed.first())
    else {
        return Ok(None);
    };
    let name = FileName::new(&format!("{}.cat", named.0.stem()))
        .map_err(|e| CatalogSignError::Key(format!("catalog name: {e}")))?;
    let members = listed
        .iter()
        .map(|(n, d)| Member::new(n.as_str(), MemberDigest::sha256(*d)))
        .collect();
    Ok(Some((name, signer.sign_members(members, signing_time)?)))
}

/// Signs (again) the stored version `key` `version` after a publish: its catalog is replaced
/// unless one the server did not make is stored (the vendor's: what a real device verifies).
/// Returns the catalog stored, if any.
pub fn resign_version(
    state: &State,
    signer: &CatalogSigner,
    key: &UpdateKey,
    version: FirmwareVersion,
) -> Result<Option<FileMeta>, StateError> {
    let metas = state
        .read(|m| m.catalog.get(&(key.clone(), version)).cloned())
        .unwrap_or_default();
    let dir = store::version_dir(state.data_dir(), key, version);
    for meta in metas
        .iter()
        .filter(|m| FileKind::of(&m.name) == FileKind::Catalog)
    {
        let path = dir.join(meta.name.as_str());
        let bytes = std::fs::read(&path).map_err(|e| StateError::io(&path, e))?;
        if !signer.made(&bytes) {
            tracing::info!(%key, %version, catalog = %meta.name, "kept the vendor's catalog");
            return Ok(None);
        }
    }
    let files: Vec<_> = metas.iter().map(|m| (m.name.clone(), m.sha256.0)).collect();
    let signed = version_catalog(signer, &files, crate::clock::unix_secs())
        .map_err(|e| StateError::Invalid(format!("signing the catalog of {key} {version}: {e}")))?;
    let Some((name, bytes)) = signed else {
        return Ok(None);
    };
    let meta = store::store_file(state.data_dir(), key, version, name, &mut &bytes[..])
        .map_err(|e| StateError::io(&dir, e))?;
    state.publish_meta(key, version, meta.clone())?;
    tracing::info!(%key, %version, catalog = %meta.name, "signed the catalog");
    Ok(Some(meta))
}

/// The CTL for `members`; the list identifier is derived from the members and the time, so the
/// same inputs give the same catalog (makecat uses a random GUID; nothing reads it).
fn trust_list(members: Vec<Member>, this_update: u64) -> TrustList {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&this_update.to_be_bytes());
    for m in &members {
        ctx.update(&m.tag);
    }
    let all_sha256 = members.iter().all(|m| {
        m.digest
            .as_ref()
            .is_some_and(|d| d.algorithm() == DigestAlgorithm::Sha256)
    });
    TrustList {
        list_identifier: Some(ctx.finish().as_ref()[..16].to_vec()),
        this_update,
        member_algorithm: if all_sha256 {
            oid::CATALOG_LIST_MEMBER2.to_vec()
        } else {
            oid::CATALOG_LIST_MEMBER.to_vec()
        },
        members,
    }
}

fn ctl_inner(ctl: &[u8]) -> Option<&[u8]> {
    let tlv = catalog::der::single(ctl, "CTL").ok()?;
    Some(tlv.content)
}

/// What a throwaway signing leaf looks like (tests make expired or non-code-signing ones).
#[derive(Debug, Clone, Copy)]
pub struct LeafOptions {
    /// `(year, month, day)` UTC.
    pub not_before: (i32, u8, u8),
    /// `(year, month, day)` UTC.
    pub not_after: (i32, u8, u8),
    /// Carry the code-signing extended key usage (1.3.6.1.5.5.7.3.3).
    pub code_signing: bool,
}

impl Default for LeafOptions {
    fn default() -> Self {
        LeafOptions {
            not_before: (2020, 1, 1),
            not_after: (2099, 12, 31),
            code_signing: true,
        }
    }
}

/// A throwaway CA and a code-signing leaf it issued, as PEM, plus the ready signer.
#[derive(Debug)]
pub struct ThrowawaySigner {
    /// The CA certificate: the trust anchor a device needs (`[trust] catalog_roots`).
    pub ca_pem: String,
    /// The leaf certificate.
    pub cert_pem: String,
    /// The leaf's private key, PKCS#8.
    pub key_pem: String,
    pub signer: CatalogSigner,
}

/// Makes a fresh CA (ECDSA P-256) and a leaf per `options`; nothing is written to disk.
pub fn throwaway_signer(options: LeafOptions) -> Result<ThrowawaySigner, CatalogSignError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ucupdate throwaway catalog CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = date_time_ymd(2000, 1, 1);
    ca_params.not_after = date_time_ymd(2199, 12, 31);
    let ca_key = KeyPair::generate()?;
    ca_params.serial_number = Some(fixed_length_serial(&ca_key));
    let ca_cert = longest(|| ca_params.self_signed(&ca_key))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf_params = CertificateParams::new(Vec::<String>::new())?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "ucupdate catalog signer");
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if options.code_signing {
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    } else {
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    }
    let (y, m, d) = options.not_before;
    leaf_params.not_before = date_time_ymd(y, m, d);
    let (y, m, d) = options.not_after;
    leaf_params.not_after = date_time_ymd(y, m, d);
    let leaf_key = KeyPair::generate()?;
    leaf_params.serial_number = Some(fixed_length_serial(&leaf_key));
    let leaf = longest(|| leaf_params.signed_by(&leaf_key, &issuer))?;
    let key_pem = leaf_key.serialize_pem();
    let signer = CatalogSigner::from_pem(leaf.pem().as_bytes(), key_pem.as_bytes())?;
    Ok(ThrowawaySigner {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf.pem(),
        key_pem,
        signer,
    })
}

/// A 16-byte serial derived from the key, with its top bits set so its DER is always 16 bytes
/// (rcgen's default drops leading zero bytes, so one certificate in about 128 came out a byte
/// shorter, and with it every catalog that embeds it: sharded runs then disagreed on bytes).
fn fixed_length_serial(key: &KeyPair) -> rcgen::SerialNumber {
    let hash = ring::digest::digest(&ring::digest::SHA256, key.public_key_raw());
    let mut serial = hash.as_ref()[..16].to_vec();
    serial[0] = (serial[0] & 0x7f) | 0x40;
    rcgen::SerialNumber::from_slice(&serial)
}

/// A certificate whose ECDSA P-256 signature has the longest DER form (72 bytes), made again
/// until it has: the throwaway certificates then have the same size in every process, and so
/// do the catalogs that embed them (the simulator's sharded runs must serve the same bytes).
fn longest(
    mut make: impl FnMut() -> Result<rcgen::Certificate, rcgen::Error>,
) -> Result<rcgen::Certificate, CatalogSignError> {
    // The certificate ends with BIT STRING(73 bytes: 0 unused bits, SEQUENCE(70 bytes: two
    // 33-byte INTEGERs)).
    const TAIL: [u8; 5] = [0x03, 0x49, 0x00, 0x30, 0x46];
    for _ in 0..256 {
        let cert = make()?;
        let der = cert.der();
        if der.len() > 75 && der[der.len() - 75..der.len() - 70] == TAIL {
            return Ok(cert);
        }
    }
    Err(CatalogSignError::Sign)
}

/// `catalog create`: a catalog of `files` (read from disk, listed under their base names),
/// signed now. Returns the catalog's bytes.
pub fn create_from_paths(
    signer: &CatalogSigner,
    files: &[std::path::PathBuf],
) -> Result<Vec<u8>, CreateError> {
    let mut entries = Vec::with_capacity(files.len());
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| CreateError::Name(path.clone()))?
            .to_string();
        if entries
            .iter()
            .any(|(n, _): &(String, Vec<u8>)| n.eq_ignore_ascii_case(&name))
        {
            return Err(CreateError::Duplicate(name));
        }
        let bytes = std::fs::read(path).map_err(|e| CreateError::Io(path.clone(), e))?;
        entries.push((name, bytes));
    }
    Ok(signer.sign_files(&entries, crate::clock::unix_secs())?)
}

/// Why `catalog create` failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CreateError {
    #[error("{0}: not a file name in UTF-8")]
    Name(std::path::PathBuf),
    #[error("two files named {0:?} (names are compared case-insensitively, as Windows does)")]
    Duplicate(String),
    #[error("read {0}: {1}")]
    Io(std::path::PathBuf, std::io::Error),
    #[error(transparent)]
    Sign(#[from] CatalogSignError),
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<std::io::Error> for CatalogSignError {
    fn from(error: std::io::Error) -> Self {
        CatalogSignError::Pem(error)
    }
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<rcgen::Error> for CatalogSignError {
    fn from(error: rcgen::Error) -> Self {
        CatalogSignError::Generate(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throwaway_signer_writes_a_catalog_the_codec_reads_back() {
        let t = throwaway_signer(LeafOptions::default()).unwrap();
        let bytes = t
            .signer
            .sign_files(&[("ucupdate.bin", b"image".as_slice())], 1_750_000_000)
            .unwrap();
        let cat = catalog::decode(&bytes).unwrap();
        assert_eq!(cat.certificates.len(), 1);
        assert_eq!(cat.signers.len(), 1);
        let member = &cat.trust_list.members[0];
        assert_eq!(member.file_name.as_deref(), Some("ucupdate.bin"));
        let want = ring::digest::digest(&ring::digest::SHA256, b"image");
        assert_eq!(member.digest.as_ref().unwrap().value(), want.as_ref());
        let attrs = cat.signers[0].signed_attributes.as_ref().unwrap();
        let content = ring::digest::digest(&ring::digest::SHA256, &cat.signed_content);
        assert_eq!(attrs.message_digest.as_deref(), Some(content.as_ref()));
        assert_eq!(attrs.signing_time, Some(1_750_000_000));
    }

    /// Sizes that depend only on the inputs: the simulator's sharded processes must serve the
    /// same number of bytes (each process makes its own throwaway CA).
    #[test]
    fn throwaway_certificates_and_their_catalogs_have_one_size() {
        let a = throwaway_signer(LeafOptions::default()).unwrap();
        let b = throwaway_signer(LeafOptions::default()).unwrap();
        assert_eq!(a.ca_pem.len(), b.ca_pem.len());
        assert_eq!(a.cert_pem.len(), b.cert_pem.len());
        let files = [("CPE.nbt", b"image".as_slice())];
        let sizes: std::collections::HashSet<usize> = (0..16)
            .flat_map(|_| [&a, &b])
            .map(|t| t.signer.sign_files(&files, 1_750_000_000).unwrap().len())
            .collect();
        assert_eq!(sizes.len(), 1, "{sizes:?}");
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let a = throwaway_signer(LeafOptions::default()).unwrap();
        let b = throwaway_signer(LeafOptions::default()).unwrap();
        let err = CatalogSigner::from_pem(a.cert_pem.as_bytes(), b.key_pem.as_bytes());
        assert!(matches!(err, Err(CatalogSignError::KeyMismatch)));
    }

    #[test]
    fn duplicate_file_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("x/A.bin"), dir.path().join("y/a.BIN"));
        for p in [&a, &b] {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"1").unwrap();
        }
        let t = throwaway_signer(LeafOptions::default()).unwrap();
        let err = create_from_paths(&t.signer, &[a, b]);
        assert!(matches!(err, Err(CreateError::Duplicate(_))));
    }
}
