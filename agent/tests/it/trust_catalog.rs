//! The catalog attacks of issue 12 against the REAL `ucupdate-agent` binary and the hostile
//! Python server (`peers/hostile_server.py`): an offer with no catalog, a catalog signed by
//! another CA, by an expired or a non-code-signing certificate, one that does not list the
//! image, an image swapped after its catalog was signed, and no trust anchors at all. Each ends
//! with nothing installed, nothing left in staging, the server never asked for the image when
//! the catalog already said no, and the reason (with its System-Information-style code) in
//! `ucupdate-agent status`. The last case is the control: a good catalog installs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use ucupdate_agent::driver::StatusReport;
use ucupdate_protocol::catalog::{Member, MemberDigest};
use ucupdate_protocol::{FileKind, FileName, OfferedFile};
use ucupdate_server_stub::catalog::{throwaway_signer, CatalogSigner, LeafOptions};
use ucupdate_server_stub::testing::{catalog_ca_pem, catalog_signer, CATALOG_SIGNING_TIME};

use crate::trust_hostile::{bare_offer, Hostile};

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

/// Runs the binary against `server` with `roots` as `[trust] catalog_roots` until its
/// `status.json` shows an outcome for the check (or it exits for the reboot), then kills it.
async fn run_agent(dir: &Path, server: &Hostile, roots: Option<&str>) -> StatusReport {
    let trust = match roots {
        Some(pem) => {
            std::fs::write(dir.join("roots.pem"), pem).unwrap();
            format!("[trust]\ncatalog_roots = \"{}/roots.pem\"\n", dir.display())
        }
        None => String::new(),
    };
    let d = dir.display();
    let toml = format!(
        r#"state_dir = "{d}/state"
[device]
brand = "Polycom"
model = "CX700"
mac = "00-04-F2-00-01-76"
initial_version = "1.0.0.0"
[machine]
server_url = "{url}"
outside_firewall = false
power_on_jitter = "0s"
idle_before_restart = "100ms"
max_download_attempts = 1
[hooks]
install_cmd = 'cat "$UCUPDATE_IMAGE" >> {d}/installed'
reboot_cmd = 'echo "$UCUPDATE_VERSION" >> {d}/rebooted'
{trust}[agent]
exit_on_reboot = true
control_socket = false
activity_poll = "50ms"
seed = 1
"#,
        url = server.check_url(),
    );
    std::fs::write(dir.join("agent.toml"), toml).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ucupdate-agent"))
        .args(["run", "--config"])
        .arg(dir.join("agent.toml"))
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status_file = dir.join("state/status.json");
    let read = || -> Option<StatusReport> {
        serde_json::from_slice(&std::fs::read(&status_file).ok()?).ok()
    };
    // Polls the file the daemon writes after every step; the timeout only bounds a hang.
    let poll = async {
        loop {
            if let Some(s) = read().filter(|s| s.last_outcome.is_some() && s.phase == "idle") {
                child.kill().await.unwrap();
                return s;
            }
            if let Ok(Some(exit)) = child.try_wait() {
                let mut err = String::new();
                use tokio::io::AsyncReadExt;
                let _ = child.stderr.take().unwrap().read_to_string(&mut err).await;
                return read()
                    .unwrap_or_else(|| panic!("the agent exited ({exit}) with no status:\n{err}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), poll)
        .await
        .expect("no outcome in status.json")
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
