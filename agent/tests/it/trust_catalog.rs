//! The catalog attacks of issue 12 against the REAL `ucupdate-agent` binary and the hostile
//! Python server (`peers/hostile_server.py`): an offer with no catalog, a catalog signed by
//! another CA, by an expired or a non-code-signing certificate, one that does not list the
//! image, an image swapped after its catalog was signed, and no trust anchors at all. Each ends
//! with nothing installed, nothing left in staging, the server never asked for the image when
//! the catalog already said no, and the reason (with its System-Information-style code) in
//! `ucupdate-agent status`. The last case is the control: a good catalog installs.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use ucupdate_agent::driver::StatusReport;
use ucupdate_protocol::catalog::{Member, MemberDigest};
use ucupdate_protocol::{FileKind, FileName, OfferedFile};
use ucupdate_server_stub::catalog::{throwaway_signer, CatalogSigner, LeafOptions};
use ucupdate_server_stub::testing::{catalog_ca_pem, catalog_signer, CATALOG_SIGNING_TIME};

use crate::trust_hostile::{bare_offer, run_binary, Hostile};

const IMAGE: &[u8] = b"the vendor's firmware image";

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn catalog(signer: &CatalogSigner, name: &str, digest: [u8; 32]) -> Vec<u8> {
    signer
        .sign_members(
            vec![Member::new(name, MemberDigest::sha256(digest))],
            CATALOG_SIGNING_TIME,
        )
        .unwrap()
}

/// A hostile server offering `IMAGE` (as a real pool does: no size, no digest of ours) with
/// `catalog` as `CPE.cat` (none when `None`), serving `served` as the image.
async fn server(catalog: Option<Vec<u8>>, served: &[u8]) -> Hostile {
    let mut offer = bare_offer("http://127.0.0.1:{CHECK_PORT}/files", None, None);
    let mut files = vec![("CPE.nbt".to_string(), served.to_vec())];
    if let Some(bytes) = catalog {
        offer.files.push(OfferedFile {
            kind: FileKind::Catalog,
            file_name: FileName::new("CPE.cat").unwrap(),
            size: None,
            sha256: None,
        });
        files.push(("CPE.cat".into(), bytes));
    }
    Hostile::serving(offer, files).await
}

async fn run_agent(dir: &Path, server: &Hostile, roots: Option<&str>) -> StatusReport {
    run_binary(dir, server, roots, "").await
}

/// Nothing installed or left in staging, and the outcome names `reason` with `code`.
fn assert_refused(dir: &Path, status: &StatusReport, code: u32, reason: &str) {
    let outcome = status.last_outcome.as_deref().unwrap();
    assert!(
        outcome.starts_with(&format!("update refused (0x{code:x}): {reason}")),
        "{outcome}"
    );
    assert_eq!(
        status.last_update_status.as_deref(),
        Some(format!("0x{code:x}/200").as_str())
    );
    assert_eq!(status.current_version, "1.0.0.0");
    assert!(
        !dir.join("installed").exists(),
        "nothing reached the install hook"
    );
    let staged = PathBuf::from(format!("{}/state/staging/2.0.0.0/CPE.nbt", dir.display()));
    assert!(!staged.exists(), "no image bytes left in staging");
}

fn image_fetched(server: &Hostile) -> bool {
    server.hits().contains("/files/CPE.nbt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_offer_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(None, IMAGE).await;
    let status = run_agent(dir.path(), &server, Some(catalog_ca_pem())).await;
    assert_refused(dir.path(), &status, 0x3, "unsigned");
    assert_eq!(server.hits(), "", "nothing was fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_signed_by_another_ca_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let other = throwaway_signer(LeafOptions::default()).unwrap();
    let server = server(
        Some(catalog(&other.signer, "CPE.nbt", sha256(IMAGE))),
        IMAGE,
    )
    .await;
    let status = run_agent(dir.path(), &server, Some(catalog_ca_pem())).await;
    assert_refused(dir.path(), &status, 0x2, "catalog signer is not trusted");
    assert!(!image_fetched(&server), "the image is never fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_non_code_signing_signers_install_nothing() {
    let expired = LeafOptions {
        not_before: (2020, 1, 1),
        not_after: (2021, 1, 1),
        ..LeafOptions::default()
    };
    let no_eku = LeafOptions {
        code_signing: false,
        ..LeafOptions::default()
    };
    for (options, reason) in [
        (expired, "catalog signer certificate expired"),
        (no_eku, "catalog signer is not a code-signing certificate"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let signer = throwaway_signer(options).unwrap();
        let server = server(
            Some(catalog(&signer.signer, "CPE.nbt", sha256(IMAGE))),
            IMAGE,
        )
        .await;
        let status = run_agent(dir.path(), &server, Some(&signer.ca_pem)).await;
        assert_refused(dir.path(), &status, 0x2, reason);
        assert!(!image_fetched(&server));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_the_catalog_does_not_list_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(&catalog_signer().signer, "OTHER.nbt", sha256(IMAGE));
    let server = server(Some(cat), IMAGE).await;
    let status = run_agent(dir.path(), &server, Some(catalog_ca_pem())).await;
    assert_refused(dir.path(), &status, 0x4, "image not listed in the catalog");
    assert!(!image_fetched(&server));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_swapped_after_its_catalog_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(&catalog_signer().signer, "CPE.nbt", sha256(IMAGE));
    let server = server(Some(cat), b"PWNED").await;
    let status = run_agent(dir.path(), &server, Some(catalog_ca_pem())).await;
    assert_refused(dir.path(), &status, 0x5, "image does not match the catalog");
    assert_eq!(status.last_error.as_deref(), Some("hash-mismatch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_trust_anchors_install_nothing_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(&catalog_signer().signer, "CPE.nbt", sha256(IMAGE));
    let server = server(Some(cat), IMAGE).await;
    let status = run_agent(dir.path(), &server, None).await;
    assert_refused(dir.path(), &status, 0x2, "no catalog trust anchors");
    assert!(!image_fetched(&server));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_catalog_installs_the_image_it_lists() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(&catalog_signer().signer, "CPE.nbt", sha256(IMAGE));
    let server = server(Some(cat), IMAGE).await;
    let status = run_agent(dir.path(), &server, Some(catalog_ca_pem())).await;
    assert_eq!(status.current_version, "2.0.0.0", "{status:?}");
    assert_eq!(std::fs::read(dir.path().join("installed")).unwrap(), IMAGE);
}

/// `ucupdate-agent verify-catalog`, the install's decision offline: the listed image passes, a
/// changed one and an unlisted one are refused with their codes, and a catalog from another CA
/// is refused as a whole.
#[test]
fn verify_catalog_offline_gives_the_install_decision() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("roots.pem"), catalog_ca_pem()).unwrap();
    std::fs::write(d.join("CPE.nbt"), IMAGE).unwrap();
    std::fs::create_dir(d.join("swapped")).unwrap();
    std::fs::write(d.join("swapped/CPE.nbt"), b"PWNED").unwrap();
    std::fs::write(d.join("other.bin"), b"x").unwrap();
    let cat = catalog(&catalog_signer().signer, "CPE.nbt", sha256(IMAGE));
    std::fs::write(d.join("CPE.cat"), &cat).unwrap();
    let other = throwaway_signer(LeafOptions::default()).unwrap();
    let foreign = catalog(&other.signer, "CPE.nbt", sha256(IMAGE));
    std::fs::write(d.join("foreign.cat"), foreign).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ucupdate-agent"))
            .arg("verify-catalog")
            .arg("--roots")
            .arg(d.join("roots.pem"))
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(
        run(&["CPE.cat", "CPE.nbt"]),
        (Some(0), "CPE.nbt: ok\n".into())
    );
    let (code, text) = run(&["CPE.cat", "swapped/CPE.nbt", "other.bin"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("swapped/CPE.nbt: refused (0x5)"), "{text}");
    assert!(text.contains("other.bin: refused (0x4)"), "{text}");
    let (code, text) = run(&["foreign.cat", "CPE.nbt"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("foreign.cat: refused (0x2)"), "{text}");
}
