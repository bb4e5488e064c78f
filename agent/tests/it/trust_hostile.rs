//! The download rules of issue 12 (rules 3, 5 and 6) against a hostile server that nobody on
//! the agent side wrote: `peers/hostile_server.py` (Python's http.server) answers the check
//! with a crafted offer, serves the files a test hands it (a catalog signed by the fixtures' CA
//! that lists the offered image, so the download gets as far as the image) and answers any
//! other file request with an endless body. The real driver runs against it; each attack ends
//! with nothing installed and the reason in the status. `trust_catalog` does the catalog
//! attacks against the real binary.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use ucupdate_protocol::{
    CheckResponse, FileKind, FileName, Offer, OfferStatus, OfferedFile, PathSegment, Sha256Digest,
};

use crate::driver_support::*;
use ucupdate_agent::driver::{DriverConfig, StatusReport};
use ucupdate_agent::machine::MachineConfig;
use ucupdate_agent::net::{Client, ClientSettings};

/// The Python peer, killed on drop.
pub struct Hostile {
    _child: tokio::process::Child,
    pub check_port: u16,
    file_port: u16,
    hits: PathBuf,
    _dir: tempfile::TempDir,
}

impl Hostile {
    /// Serves `offer` (with `{CHECK_PORT}` / `{FILE_PORT}` in its base URL) to every check
    /// and a catalog for it signed by the fixtures' CA.
    async fn start(offer: Offer) -> Hostile {
        let catalog = fixture_catalog_listing(&offer);
        Self::serving(offer, vec![("CPE.cat".into(), catalog)]).await
    }

    /// Serves `offer` to every check and `files` (by base name) to file requests.
    pub async fn serving(offer: Offer, files: Vec<(String, Vec<u8>)>) -> Hostile {
        let dir = tempfile::tempdir().unwrap();
        let canned = dir.path().join("reply.xml");
        std::fs::write(&canned, CheckResponse::Update(offer).encode()).unwrap();
        let hits = dir.path().join("hits");
        let served = dir.path().join("files");
        std::fs::create_dir(&served).unwrap();
        for (name, bytes) in files {
            std::fs::write(served.join(name), bytes).unwrap();
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/hostile_server.py");
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .arg(&canned)
            .arg(&hits)
            .arg(&served)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await.unwrap();
        let ports: Vec<u16> = line
            .strip_prefix("PORTS ")
            .unwrap_or_else(|| panic!("hostile_server said {line:?}"))
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        Hostile {
            _child: child,
            check_port: ports[0],
            file_port: ports[1],
            hits,
            _dir: dir,
        }
    }

    pub fn hits(&self) -> String {
        std::fs::read_to_string(&self.hits).unwrap_or_default()
    }

    /// The hits that were not for the catalog.
    fn file_hits(&self) -> String {
        self.hits()
            .lines()
            .filter(|l| !l.ends_with("/CPE.cat"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    pub fn check_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/RequestHandler/ucdevice.upx",
            self.check_port
        )
    }

    fn machine(&self) -> MachineConfig {
        MachineConfig {
            server_url: Some(format!(
                "http://127.0.0.1:{}/RequestHandler/ucdevice.upx",
                self.check_port
            )),
            outside_firewall: Some(false),
            max_download_attempts: 1,
            ..quick_machine()
        }
    }
}

fn offer(base_url: &str, size: u64) -> Offer {
    let mut offer = bare_offer(base_url, Some(size), Some(Sha256Digest([7; 32])));
    offer.files.push(OfferedFile {
        kind: FileKind::Catalog,
        file_name: FileName::new("CPE.cat").unwrap(),
        size: None,
        sha256: None,
    });
    offer
}

/// An offer of version 2.0.0.0 with just an image `CPE.nbt` (no catalog).
pub fn bare_offer(base_url: &str, size: Option<u64>, sha256: Option<Sha256Digest>) -> Offer {
    Offer {
        base_url: base_url.into(),
        external_base_url: String::new(),
        update_type: PathSegment::new("CPE").unwrap(),
        version: v("2.0.0.0"),
        timestamp: None,
        status: OfferStatus::Approved,
        files: vec![OfferedFile {
            kind: FileKind::Image,
            file_name: FileName::new("CPE.nbt").unwrap(),
            size,
            sha256,
        }],
    }
}

/// A catalog signed by the fixtures' CA that lists the offer's image with its digest.
fn fixture_catalog_listing(offer: &Offer) -> Vec<u8> {
    use ucupdate_protocol::catalog::{Member, MemberDigest};
    let image = offer
        .files
        .iter()
        .find(|f| f.kind == FileKind::Image)
        .unwrap();
    let digest = image.sha256.unwrap().0;
    ucupdate_server_stub::testing::catalog_signer()
        .signer
        .sign_members(
            vec![Member::new(
                image.file_name.as_str(),
                MemberDigest::sha256(digest),
            )],
            ucupdate_server_stub::testing::CATALOG_SIGNING_TIME,
        )
        .unwrap()
}

fn config(dev: &Dev, machine: MachineConfig) -> DriverConfig {
    let mut config = DriverConfig::new(
        dev.state_dir(),
        machine,
        Client::with_settings(ClientSettings::default()),
    );
    config.seed = Some(7);
    config.catalog_check = fixture_catalogs();
    config.resolv_conf = dev.dir.path().join("no-resolv.conf");
    config.lease_paths = Vec::new();
    config
}

fn staged(dev: &Dev) -> PathBuf {
    dev.state_dir().join("staging/2.0.0.0/CPE.nbt")
}

/// Runs the driver until `done` holds for its status, then stops it.
async fn run_until(
    dev: &Dev,
    machine: MachineConfig,
    done: impl FnMut(&StatusReport) -> bool,
) -> StatusReport {
    let run = spawn(config(dev, machine), dev.device("1.0.0.0", true));
    let status = run.wait_for(done).await;
    run.shutdown().await;
    status
}

fn refused(s: &StatusReport) -> bool {
    s.last_outcome
        .as_deref()
        .is_some_and(|o| o.starts_with("offer refused"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_on_a_foreign_origin_are_never_fetched() {
    // Issue 12: `BaseURL=http://127.0.0.1:18081/evil` made the agent download from there.
    let server = Hostile::start(offer("http://127.0.0.1:{FILE_PORT}/evil", 1000)).await;
    let dev = Dev::new();
    let status = run_until(&dev, server.machine(), refused).await;
    assert_eq!(
        status.last_outcome.as_deref(),
        Some("offer refused: file origin not allowed")
    );
    assert_eq!(status.phase, "idle", "not retried in a back-off loop");
    assert_eq!(server.hits(), "", "no request reached the foreign origin");
    assert_eq!(dev.installs(), "");
    assert!(!staged(&dev).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_listed_in_allowed_file_origins_is_fetched() {
    let server = Hostile::start(offer("http://127.0.0.1:{FILE_PORT}/evil", 1000)).await;
    let dev = Dev::new();
    let mut machine = server.machine();
    machine.offer_policy.allowed_file_origins = vec![ucupdate_agent::trust::Origin::of(
        &format!("http://127.0.0.1:{}/", server.file_port)
            .parse()
            .unwrap(),
    )];
    run_until(&dev, machine, |s| s.last_error.is_some()).await;
    assert_eq!(
        server.hits(),
        format!(
            "GET {0} /evil/CPE.cat\nGET {0} /evil/CPE.nbt\n",
            server.file_port
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_declared_size_is_refused_before_the_first_byte() {
    // Issue 12: `Size=10^15` with an endless body filled 323 MB of staging in 12 s.
    let server = Hostile::start(offer(
        "http://127.0.0.1:{CHECK_PORT}/files",
        1_000_000_000_000_000,
    ))
    .await;
    let dev = Dev::new();
    let status = run_until(&dev, server.machine(), refused).await;
    assert_eq!(
        status.last_outcome.as_deref(),
        Some("offer refused: file larger than max_file_bytes")
    );
    assert_eq!(server.hits(), "");
    assert!(!staged(&dev).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_longer_than_declared_is_cut_and_removed() {
    let server = Hostile::start(offer("http://127.0.0.1:{CHECK_PORT}/files", 1000)).await;
    let dev = Dev::new();
    let status = run_until(&dev, server.machine(), |s| s.last_error.is_some()).await;
    assert_eq!(server.file_hits().lines().count(), 1, "{}", server.hits());
    assert_eq!(
        status.phase, "idle",
        "given up until the next poll: {status:?}"
    );
    assert!(
        !staged(&dev).exists(),
        "the bytes of a refused file are removed"
    );
    assert_eq!(dev.installs(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_in_staging_is_not_followed() {
    // Issue 12: a pre-planted symlink in `staging/` made the download overwrite another file.
    let server = Hostile::start(offer("http://127.0.0.1:{CHECK_PORT}/files", 1000)).await;
    let dev = Dev::new();
    let victim = dev.dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::create_dir_all(staged(&dev).parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, staged(&dev)).unwrap();
    let status = run_until(&dev, server.machine(), |s| s.last_error.is_some()).await;
    assert_eq!(status.last_error.as_deref(), Some("io"), "{status:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(server.file_hits(), "", "refused before the request");
    assert_eq!(dev.installs(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_dir_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = Hostile::start(offer("http://127.0.0.1:{FILE_PORT}/evil", 1000)).await;
    let dev = Dev::new();
    run_until(&dev, server.machine(), refused).await;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dev.state_dir()), 0o700);
    assert_eq!(mode(dev.state_dir().join("staging")), 0o700);
    assert_eq!(mode(dev.state_dir().join("state.json")), 0o600);
    assert_eq!(mode(dev.state_dir().join("status.json")), 0o600);
}
