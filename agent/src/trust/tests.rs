//! Verifier tests: every refusal from a real signed catalog (throwaway CAs from the server
//! stub's signer), properties over mutated catalogs, and the osslsigncode peer (`#[ignore]`:
//! the CI's interop stage installs it and runs `cargo test -- --ignored`).

use super::*;
use proptest::prelude::*;
use ucupdate_protocol::catalog::{self, Member, MemberDigest};
use ucupdate_server_stub::catalog::{throwaway_signer, LeafOptions, ThrowawaySigner};

const SIGNED_AT: u64 = 1_750_000_000; // 2025-06-15
const IMAGE: &[u8] = b"firmware image 1.0.0.1";
const NAME: &str = "ucupdate.bin";

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().try_into().unwrap()
}

fn sha1(bytes: &[u8]) -> [u8; 20] {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    d.as_ref().try_into().unwrap()
}

fn signer(options: LeafOptions) -> ThrowawaySigner {
    throwaway_signer(options).unwrap()
}

fn anchors(t: &ThrowawaySigner) -> TrustAnchors {
    TrustAnchors::from_pem(t.ca_pem.as_bytes()).unwrap()
}

fn signed(t: &ThrowawaySigner) -> Vec<u8> {
    t.signer.sign_files(&[(NAME, IMAGE)], SIGNED_AT).unwrap()
}

fn verify(bytes: &[u8], t: &ThrowawaySigner) -> Result<VerifiedCatalog, Refusal> {
    verify_catalog(
        bytes,
        &anchors(t),
        CatalogClock::Untrusted,
        CatalogPolicy::default(),
    )
}

fn flip_at(bytes: &[u8], needle: &[u8]) -> Vec<u8> {
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in catalog");
    let mut out = bytes.to_vec();
    out[at + needle.len() / 2] ^= 0x01;
    out
}

#[test]
fn a_catalog_from_the_trusted_ca_lists_the_image() {
    let t = signer(LeafOptions::default());
    let cat = verify(&signed(&t), &t).unwrap();
    assert_eq!(cat.signing_time(), Some(SIGNED_AT));
    assert_eq!(cat.file_names().collect::<Vec<_>>(), vec![NAME]);
    cat.verify_file(NAME, sha256(IMAGE)).unwrap();
    // File names compare as Windows compares them.
    cat.verify_file("UCUPDATE.BIN", sha256(IMAGE)).unwrap();
}

#[test]
fn a_catalog_signed_by_another_ca_is_refused() {
    let (t, other) = (
        signer(LeafOptions::default()),
        signer(LeafOptions::default()),
    );
    let err = verify(&signed(&t), &other).unwrap_err();
    assert!(matches!(err, Refusal::UnknownSigner(_)), "{err}");
    assert_eq!(err.code(), 0x2);
}

#[test]
fn an_expired_signer_is_refused_but_its_catalogs_from_before_stay_valid() {
    let t = signer(LeafOptions {
        not_before: (2020, 1, 1),
        not_after: (2021, 1, 1),
        code_signing: true,
    });
    let err = verify(&signed(&t), &t).unwrap_err();
    assert!(matches!(err, Refusal::Expired(_)), "{err}");
    assert_eq!(err.code(), 0x2);

    // Signed in mid-2020, while the certificate was valid: still good in 2026.
    let old = t
        .signer
        .sign_files(&[(NAME, IMAGE)], 1_593_000_000)
        .unwrap();
    let now = CatalogClock::Trusted(1_780_000_000);
    verify_catalog(&old, &anchors(&t), now, CatalogPolicy::default()).unwrap();
}

#[test]
fn a_signing_time_ahead_of_a_trusted_clock_is_refused() {
    let t = signer(LeafOptions::default());
    let bytes = signed(&t);
    let now = SIGNED_AT - MAX_FUTURE_SKEW_SECS - 1;
    let err = verify_catalog(
        &bytes,
        &anchors(&t),
        CatalogClock::Trusted(now),
        Default::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Refusal::Expired(_)), "{err}");
    // Within the skew it passes: clocks drift.
    let now = SIGNED_AT - MAX_FUTURE_SKEW_SECS + 1;
    verify_catalog(
        &bytes,
        &anchors(&t),
        CatalogClock::Trusted(now),
        Default::default(),
    )
    .unwrap();
}

#[test]
fn a_signer_without_the_code_signing_usage_is_refused() {
    let t = signer(LeafOptions {
        code_signing: false,
        ..LeafOptions::default()
    });
    let err = verify(&signed(&t), &t).unwrap_err();
    assert_eq!(err, Refusal::NotCodeSigning);
    assert_eq!(err.code(), 0x2);
}

#[test]
fn an_image_not_listed_or_with_another_digest_is_refused() {
    let t = signer(LeafOptions::default());
    let cat = verify(&signed(&t), &t).unwrap();
    let err = cat.verify_file("other.bin", sha256(IMAGE)).unwrap_err();
    assert_eq!(err, Refusal::NotInCatalog("other.bin".into()));
    assert_eq!(err.code(), 0x4);
    let err = cat.verify_file(NAME, sha256(b"PWNED")).unwrap_err();
    assert_eq!(err, Refusal::DigestMismatch(NAME.into()));
    assert_eq!(err.code(), 0x5);
}

#[test]
fn tampered_content_attributes_or_signature_are_refused() {
    let t = signer(LeafOptions::default());
    let bytes = signed(&t);

    // A member digest changed inside the CTL: the messageDigest no longer matches.
    let content = flip_at(&bytes, &sha256(IMAGE));
    let err = verify(&content, &t).unwrap_err();
    assert!(matches!(err, Refusal::BadSignature(_)), "{err}");
    assert_eq!(err.code(), 0x3);

    // The signingTime changed: the signature over the attributes no longer verifies.
    let time = catalog::der::encode_time(SIGNED_AT);
    let attrs = bytes.windows(time.len()).rposition(|w| w == time).unwrap();
    let mut attr_tampered = bytes.clone();
    attr_tampered[attrs + 13] ^= 0x01; // the last digit of the seconds
    let err = verify(&attr_tampered, &t).unwrap_err();
    assert!(matches!(err, Refusal::BadSignature(_)), "{err}");

    // The signature itself (the last bytes of the file).
    let mut sig = bytes.clone();
    let last = sig.len() - 1;
    sig[last] ^= 0x01;
    let err = verify(&sig, &t).unwrap_err();
    assert!(matches!(err, Refusal::BadSignature(_)), "{err}");
}

#[test]
fn sha1_members_need_the_setting_and_the_sha1() {
    let t = signer(LeafOptions::default());
    let bytes = t
        .signer
        .sign_members(
            vec![Member::new(NAME, MemberDigest::sha1(sha1(IMAGE)))],
            SIGNED_AT,
        )
        .unwrap();
    let cat = verify(&bytes, &t).unwrap();
    let err = cat.verify_file(NAME, sha256(IMAGE)).unwrap_err();
    assert_eq!(err, Refusal::Sha1NotAllowed(NAME.into()));
    assert_eq!(err.code(), 0x6);

    let policy = CatalogPolicy {
        allow_sha1_catalogs: true,
    };
    let cat = verify_catalog(&bytes, &anchors(&t), CatalogClock::Untrusted, policy).unwrap();
    let both = ImageDigests {
        sha256: sha256(IMAGE),
        sha1: Some(sha1(IMAGE)),
    };
    cat.verify_file(NAME, both).unwrap();
    let wrong = ImageDigests {
        sha1: Some(sha1(b"PWNED")),
        ..both
    };
    assert_eq!(
        cat.verify_file(NAME, wrong),
        Err(Refusal::DigestMismatch(NAME.into()))
    );
}

#[test]
fn in_a_mixed_catalog_the_sha256_member_decides() {
    let t = signer(LeafOptions::default());
    let bytes = t
        .signer
        .sign_members(
            vec![
                Member::new(NAME, MemberDigest::sha1(sha1(IMAGE))),
                Member::new(NAME, MemberDigest::sha256(sha256(IMAGE))),
            ],
            SIGNED_AT,
        )
        .unwrap();
    let cat = verify(&bytes, &t).unwrap();
    cat.verify_file(NAME, sha256(IMAGE)).unwrap();
    assert!(cat.verify_file(NAME, sha256(b"x")).is_err());
}

#[test]
fn unsigned_or_garbage_catalogs_are_refused() {
    let t = signer(LeafOptions::default());
    let ctl = catalog::encode_trust_list(&catalog::TrustList {
        list_identifier: None,
        this_update: SIGNED_AT,
        member_algorithm: catalog::oid::CATALOG_LIST_MEMBER2.to_vec(),
        members: vec![Member::new(NAME, MemberDigest::sha256(sha256(IMAGE)))],
    });
    let err = verify(&catalog::encode_unsigned(&ctl), &t).unwrap_err();
    assert_eq!(err, Refusal::BadSignature("the catalog is not signed"));
    let err = verify(b"PWNED", &t).unwrap_err();
    assert!(matches!(err, Refusal::Malformed(_)));
    assert_eq!(err.code(), 0x1);
}

#[test]
fn an_empty_anchor_bundle_is_an_error_not_trust_everything() {
    assert!(matches!(
        TrustAnchors::from_pem(b""),
        Err(AnchorError::Empty)
    ));
    let t = signer(LeafOptions::default());
    assert_eq!(anchors(&t).len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_are_refused_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let t = FIXTURE.with(|f| f.0.ca_pem.clone());
        let anchors = TrustAnchors::from_pem(t.as_bytes()).unwrap();
        prop_assert!(
            verify_catalog(&bytes, &anchors, CatalogClock::Untrusted, Default::default()).is_err()
        );
    }

    #[test]
    fn a_one_byte_change_never_lists_anything_new(at in any::<usize>(), xor in 1u8..=255) {
        FIXTURE.with(|(t, bytes)| {
            let mut bytes = bytes.clone();
            let i = at % bytes.len();
            bytes[i] ^= xor;
            if let Ok(cat) = verify(&bytes, t) {
                // Only bytes the signature does not cover (e.g. SignedData.digestAlgorithms)
                // may change and still verify: then the members are exactly the signed ones.
                prop_assert_eq!(cat.file_names().collect::<Vec<_>>(), vec![NAME]);
                prop_assert!(cat.verify_file(NAME, sha256(IMAGE)).is_ok());
                prop_assert!(cat.verify_file(NAME, sha256(b"PWNED")).is_err());
            }
            Ok(())
        })?;
    }
}

thread_local! {
    static FIXTURE: (ThrowawaySigner, Vec<u8>) = {
        let t = signer(LeafOptions::default());
        let bytes = signed(&t);
        (t, bytes)
    };
}

/// The osslsigncode peer (Debian `osslsigncode`, plus `openssl` for an RSA certificate).
mod osslsigncode {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn run(cmd: &mut Command) -> std::process::Output {
        let out = cmd
            .output()
            .expect("run the peer (is osslsigncode installed?)");
        assert!(
            out.status.success(),
            "{cmd:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn unsigned_catalog(dir: &Path) -> std::path::PathBuf {
        let ctl = catalog::encode_trust_list(&catalog::TrustList {
            list_identifier: Some(vec![0x42; 16]),
            this_update: SIGNED_AT,
            member_algorithm: catalog::oid::CATALOG_LIST_MEMBER2.to_vec(),
            members: vec![
                Member::new(NAME, MemberDigest::sha256(sha256(IMAGE))),
                Member::new("legacy.bin", MemberDigest::sha1(sha1(b"legacy"))),
            ],
        });
        let path = dir.join("unsigned.cat");
        std::fs::write(&path, catalog::encode_unsigned(&ctl)).unwrap();
        path
    }

    fn sign_and_verify(dir: &Path, cert: &Path, key: &Path, ca_pem: &[u8]) {
        let unsigned = unsigned_catalog(dir);
        let out = dir.join("signed.cat");
        run(Command::new("osslsigncode")
            .arg("sign")
            .arg("-certs")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .args(["-h", "sha256", "-time", &SIGNED_AT.to_string(), "-in"])
            .arg(&unsigned)
            .arg("-out")
            .arg(&out));
        let bytes = std::fs::read(&out).unwrap();
        // What osslsigncode's messageDigest covers: the CTL's inner octets, not the whole
        // SEQUENCE (the claim docs/PROTOCOL.md makes, checked against the peer).
        let decoded = catalog::decode(&bytes).unwrap();
        let attrs = decoded.signers[0].signed_attributes.clone().unwrap();
        let digest = attrs.message_digest.unwrap();
        assert_eq!(digest, sha256(&decoded.signed_content));
        let whole = catalog::der::tlv(catalog::der::tag::SEQUENCE, &decoded.signed_content);
        assert_ne!(digest, sha256(&whole));
        assert_eq!(attrs.signing_time, Some(SIGNED_AT));
        let anchors = TrustAnchors::from_pem(ca_pem).unwrap();
        let cat = verify_catalog(
            &bytes,
            &anchors,
            CatalogClock::Untrusted,
            Default::default(),
        )
        .unwrap();
        cat.verify_file(NAME, sha256(IMAGE)).unwrap();
        assert!(matches!(
            cat.verify_file("legacy.bin", sha256(b"legacy")),
            Err(Refusal::Sha1NotAllowed(_))
        ));
        // And osslsigncode's output, tampered, is refused here.
        let tampered = flip_at(&bytes, &sha256(IMAGE));
        assert!(matches!(
            verify_catalog(
                &tampered,
                &anchors,
                CatalogClock::Untrusted,
                Default::default()
            ),
            Err(Refusal::BadSignature(_))
        ));
    }

    #[test]
    #[ignore = "needs osslsigncode (CI interop stage)"]
    fn osslsigncode_signs_our_unsigned_catalog_with_an_ecdsa_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let t = signer(LeafOptions::default());
        let (cert, key) = (dir.path().join("leaf.pem"), dir.path().join("leaf.key"));
        std::fs::write(&cert, &t.cert_pem).unwrap();
        std::fs::write(&key, &t.key_pem).unwrap();
        sign_and_verify(dir.path(), &cert, &key, t.ca_pem.as_bytes());
    }

    #[test]
    #[ignore = "needs osslsigncode and openssl (CI interop stage)"]
    fn osslsigncode_signs_our_unsigned_catalog_with_an_openssl_rsa_chain() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ext = d.join("ext.cnf");
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=codeSigning\n",
        )
        .unwrap();
        run(Command::new("openssl").current_dir(d).args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "36500",
            "-subj",
            "/CN=interop CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]));
        run(Command::new("openssl").current_dir(d).args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=interop signer",
        ]));
        // `openssl ca` can backdate the leaf, so that the fixed signing time falls inside its
        // validity (the anchor's own dates are not checked: it is trusted as configured).
        std::fs::write(d.join("index.txt"), "").unwrap();
        std::fs::write(d.join("serial"), "01\n").unwrap();
        std::fs::write(
            d.join("ca.cnf"),
            "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n\
             serial = serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n",
        )
        .unwrap();
        run(Command::new("openssl").current_dir(d).args([
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-in",
            "leaf.csr",
            "-out",
            "leaf.pem",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20991231000000Z",
            "-extfile",
            "ext.cnf",
            "-notext",
        ]));
        let ca = std::fs::read(d.join("ca.pem")).unwrap();
        sign_and_verify(d, &d.join("leaf.pem"), &d.join("leaf.key"), &ca);
    }
}

fn trust_with_memo(t: &ThrowawaySigner, trusted_clock: bool) -> CatalogTrust {
    CatalogTrust {
        anchors: anchors(t),
        policy: CatalogPolicy::default(),
        trusted_clock,
        memo: Some(std::sync::Arc::new(CatalogMemo::new())),
    }
}

/// A fleet's shared memo answers as a device without one would: the same digest for the
/// listed image, the same refusal for an unlisted name, for a catalog one byte away from a
/// remembered one, and for one from another CA; only exact bytes are answered from memory.
#[test]
fn the_memo_answers_as_verification_does() {
    let (t, other) = (
        signer(LeafOptions::default()),
        signer(LeafOptions::default()),
    );
    let fleet = trust_with_memo(&t, false);
    let device = CatalogTrust {
        memo: None,
        ..trust_with_memo(&t, false)
    };
    let good = signed(&t);
    let flipped = flip_at(&good, &sha256(IMAGE));
    let foreign = signed(&other);
    let memo = fleet.memo.clone().unwrap();
    for round in 0..2 {
        for (bytes, image) in [
            (&good, NAME),
            (&good, "other.bin"),
            (&flipped, NAME),
            (&foreign, NAME),
        ] {
            let remembered = fleet.image_digest(bytes, image, SIGNED_AT);
            assert_eq!(
                remembered,
                device.image_digest(bytes, image, SIGNED_AT),
                "round {round}, {image}"
            );
            assert!(
                remembered.is_ok() == (bytes == &good && image == NAME),
                "round {round}, {image}: {remembered:?}"
            );
        }
        // The first round verified three distinct catalogs once each (the second name came
        // from memory); the second round is all memory.
        assert_eq!(memo.hits(), [1, 5][round]);
    }
}

/// With a trusted clock the verdict depends on the time of the check (a signingTime in the
/// device's future is refused), so nothing is taken from the memo.
#[test]
fn a_trusted_clock_verifies_every_time() {
    let t = signer(LeafOptions::default());
    let fleet = trust_with_memo(&t, true);
    let good = signed(&t);
    assert!(fleet.image_digest(&good, NAME, SIGNED_AT).is_ok());
    let before = SIGNED_AT - MAX_FUTURE_SKEW_SECS - 1;
    assert!(fleet.image_digest(&good, NAME, before).is_err());
    assert!(fleet.image_digest(&good, NAME, SIGNED_AT).is_ok());
    assert_eq!(fleet.memo.as_ref().unwrap().hits(), 0);
}
