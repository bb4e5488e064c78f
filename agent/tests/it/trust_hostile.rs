//! The download rules of issue 12 (rules 3-6) against the REAL `ucupdate-agent` binary and a
//! hostile server that nobody on the agent side wrote: `peers/hostile_server.py` (Python's
//! http.server) answers the check with a crafted offer, serves the files a test hands it (a
//! catalog signed by the fixtures' CA that lists the offered image, so the download gets as far
//! as the image) and answers any other file request with an endless body. Each attack ends with
//! nothing installed and the reason in `status.json`. [`run_binary`] is the harness
//! `trust_catalog` (the catalog attacks) shares.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use ucupdate_protocol::{
    CheckResponse, FileKind, FileName, Offer, OfferStatus, OfferedFile, PathSegment, Sha256Digest,
};

use std::path::Path;
use std::time::Duration;

use crate::driver_support::*;
use ucupdate_agent::driver::StatusReport;

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

/// Runs the binary against `server` with `roots` as `[trust] catalog_roots` (and `trust_extra`
/// lines in `[trust]`) until its `status.json` shows an outcome for the check and the agent is
/// idle (or it exits for the reboot), then kills it.
pub async fn run_binary(
    dir: &Path,
    server: &Hostile,
    roots: Option<&str>,
    trust_extra: &str,
) -> StatusReport {
    let mut trust = format!("[trust]\n{trust_extra}\n");
    if let Some(pem) = roots {
        std::fs::write(dir.join("roots.pem"), pem).unwrap();
        trust.push_str(&format!(
            "catalog_roots = \"{}/roots.pem\"\n",
            dir.display()
        ));
    }
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

fn staged(dir: &Path) -> PathBuf {
    dir.join("state/staging/2.0.0.0/CPE.nbt")
}

fn refused(s: &StatusReport) -> &str {
    s.last_outcome.as_deref().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_on_a_foreign_origin_are_never_fetched() {
    // Issue 12: `BaseURL=http://127.0.0.1:18081/evil` made the agent download from there.
    let server = Hostile::start(offer("http://127.0.0.1:{FILE_PORT}/evil", 1000)).await;
    let dir = tempfile::tempdir().unwrap();
    let status = run_binary(dir.path(), &server, Some(testing_ca()), "").await;
    assert_eq!(refused(&status), "offer refused: file origin not allowed");
    assert_eq!(status.phase, "idle", "not retried in a back-off loop");
    assert_eq!(server.hits(), "", "no request reached the foreign origin");
    assert!(!dir.path().join("installed").exists());
    assert!(!staged(dir.path()).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_listed_in_allowed_file_origins_is_fetched() {
    let server = Hostile::start(offer("http://127.0.0.1:{FILE_PORT}/evil", 1000)).await;
    let dir = tempfile::tempdir().unwrap();
    let allowed = format!(
        "allowed_file_origins = [\"http://127.0.0.1:{}\"]",
        server.file_port
    );
    run_binary(dir.path(), &server, Some(testing_ca()), &allowed).await;
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
    let dir = tempfile::tempdir().unwrap();
    let status = run_binary(dir.path(), &server, Some(testing_ca()), "").await;
    assert_eq!(
        refused(&status),
        "offer refused: file larger than max_file_bytes"
    );
    assert_eq!(server.hits(), "");
    assert!(!staged(dir.path()).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_is_cut_at_the_declared_size_and_removed() {
    let server = Hostile::start(offer("http://127.0.0.1:{CHECK_PORT}/files", 1000)).await;
    let dir = tempfile::tempdir().unwrap();
    let status = run_binary(dir.path(), &server, Some(testing_ca()), "").await;
    assert_eq!(server.file_hits().lines().count(), 1, "{}", server.hits());
    assert_eq!(
        status.phase, "idle",
        "given up until the next poll: {status:?}"
    );
    assert!(status.last_error.is_some(), "{status:?}");
    assert!(
        !staged(dir.path()).exists(),
        "the bytes of a refused file are removed"
    );
    assert!(!dir.path().join("installed").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_in_staging_is_not_followed() {
    // Issue 12: a pre-planted symlink in `staging/` made the download overwrite another file.
    let server = Hostile::start(offer("http://127.0.0.1:{CHECK_PORT}/files", 1000)).await;
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::create_dir_all(staged(dir.path()).parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, staged(dir.path())).unwrap();
    let status = run_binary(dir.path(), &server, Some(testing_ca()), "").await;
    assert_eq!(status.last_error.as_deref(), Some("io"), "{status:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(server.file_hits(), "", "refused before the request");
    assert!(!dir.path().join("installed").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_dir_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = Hostile::start(offer("http://127.0.0.1:{FILE_PORT}/evil", 1000)).await;
    let dir = tempfile::tempdir().unwrap();
    run_binary(dir.path(), &server, Some(testing_ca()), "").await;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let state = dir.path().join("state");
    assert_eq!(mode(state.clone()), 0o700);
    assert_eq!(mode(state.join("staging")), 0o700);
    assert_eq!(mode(state.join("state.json")), 0o600);
    assert_eq!(mode(state.join("status.json")), 0o600);
}

/// Issue 12: with an `http://` external URL the user's NTLM Type 3 went in clear. The binary
/// now refuses such a configuration at start, before any request.
#[test]
fn an_http_external_url_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("password"), "secret\n").unwrap();
    std::fs::set_permissions(
        dir.path().join("password"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let toml = format!(
        "state_dir = \"{d}/state\"\n[device]\nbrand = \"Polycom\"\nmodel = \"CX700\"\n\
         mac = \"00-04-F2-00-01-76\"\ninitial_version = \"1.0.0.0\"\nuser = 'CONTOSO\\alice'\npassword_file = \"{d}/password\"\n\
         [machine]\nexternal_server_url = \"http://ext.contoso.com/RequestHandlerExt/ucdevice.upx\"\n"
    );
    std::fs::write(dir.path().join("agent.toml"), toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ucupdate-agent"))
        .args(["run", "--config"])
        .arg(dir.path().join("agent.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("credentials would go in clear"), "{err}");
    assert!(
        !dir.path().join("state/status.json").exists(),
        "nothing ran"
    );
}

fn testing_ca() -> &'static str {
    ucupdate_server_stub::testing::catalog_ca_pem()
}
