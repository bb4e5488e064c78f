//! Unit tests of `perform` (kept apart so the module itself reads in one sitting).

use super::*;

#[test]
fn a_finished_kind_leaves_the_others_in_flight() {
    let mut f = InFlight::new();
    let download = f.start(Kind::Download);
    let log = f.start(Kind::UploadLog);
    assert!(f.finish(log));
    assert!(f.is_busy(Kind::Download) && f.awaiting_network());
    assert!(f.finish(download));
    assert!(!f.awaiting_network());
    assert!(!f.finish(download), "an answer finishes its start once");
}

#[test]
fn a_restart_supersedes_the_earlier_start() {
    let mut f = InFlight::new();
    let first = f.start(Kind::Check);
    let second = f.start(Kind::Check);
    assert!(!f.finish(first));
    assert!(f.is_busy(Kind::Check));
    assert!(f.finish(second));
}

#[test]
fn power_loss_makes_every_ticket_stale() {
    let mut f = InFlight::new();
    let check = f.start(Kind::Check);
    let resolve = f.start(Kind::Resolve);
    f.cancel_all();
    assert!(!f.finish(check) && !f.finish(resolve));
    assert!(!f.awaiting_network());
    let again = f.start(Kind::Check);
    assert!(f.finish(again));
}

#[test]
fn resolve_and_install_are_not_network_waits() {
    let mut f = InFlight::new();
    f.start(Kind::Resolve);
    f.start(Kind::Install);
    assert!(!f.awaiting_network());
    assert_eq!(std::mem::size_of::<InFlight>(), 6);
}

/// A device with no user, no logs and nowhere to stage.
struct Bare;

impl Context for Bare {
    fn client(&self) -> Client {
        Client::with_settings(net::ClientSettings::default())
    }
    fn identity(&self) -> DeviceIdentity {
        DeviceIdentity {
            device_type: "UCPhone".parse().unwrap(),
            brand: "Polycom".parse().unwrap(),
            model: "CX700".parse().unwrap(),
            revision: "A".parse().unwrap(),
            locale: "ENU".parse().unwrap(),
            mac: Some("00-04-F2-00-01-76".parse().unwrap()),
            serial: None,
        }
    }
    fn module(&self, version: FirmwareVersion) -> InstalledModule {
        InstalledModule {
            update_type: "CPE".parse().unwrap(),
            file_name: FileName::new("CPE.nbt").unwrap(),
            version,
            timestamp: None,
        }
    }
    fn credentials(&self) -> Option<Credentials> {
        None
    }
    fn staging(&self, _: FirmwareVersion, _: &FileName) -> Option<PathBuf> {
        None
    }
    fn logs(&self) -> Vec<Log> {
        Vec::new()
    }
}

/// Bare, but staging into `dir` with a total download deadline.
struct Staging {
    dir: PathBuf,
    deadline: Option<Duration>,
}

impl Context for Staging {
    fn client(&self) -> Client {
        Bare.client()
    }
    fn identity(&self) -> DeviceIdentity {
        Bare.identity()
    }
    fn module(&self, version: FirmwareVersion) -> InstalledModule {
        Bare.module(version)
    }
    fn credentials(&self) -> Option<Credentials> {
        None
    }
    fn download_deadline(&self) -> Option<Duration> {
        self.deadline
    }
    fn staging(&self, version: FirmwareVersion, file: &FileName) -> Option<PathBuf> {
        Some(self.dir.join(version.to_string()).join(file.as_str()))
    }
    fn logs(&self) -> Vec<Log> {
        Vec::new()
    }
}

fn download_action(url: &str, size: u64) -> Action {
    Action::Download {
        url: url.parse().unwrap(),
        version: FirmwareVersion::new(3, 5, 6907, 35),
        file: OfferedFile {
            kind: ucupdate_protocol::FileKind::Image,
            file_name: FileName::new("CPE.nbt").unwrap(),
            size: Some(size),
            sha256: None,
        },
        resume_from: 0,
        external: false,
        catalog_for: None,
        expect_sha1: None,
    }
}

async fn run_in(ctx: &Staging, action: Action) -> Done {
    match start(action, ctx) {
        Work::Request { call, .. } => call.await,
        Work::Local(action) => panic!("{action} is network work"),
    }
}

#[tokio::test]
async fn a_download_the_staging_file_system_cannot_hold_is_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Staging {
        dir: dir.path().to_owned(),
        deadline: None,
    };
    // Port 9 on loopback: a request would fail to connect, so "no space" proves none left.
    let done = run_in(&ctx, download_action("http://127.0.0.1:9/CPE.nbt", 1 << 62)).await;
    let error = done.error.expect("refused");
    assert_eq!(error.class(), net::ErrorClass::Io, "{error}");
    assert!(error.to_string().contains("free space"), "{error}");
    let staged = dir.path().join("3.5.6907.35").join("CPE.nbt");
    assert!(!staged.exists(), "nothing was written");
}

#[tokio::test]
async fn a_symlink_planted_in_staging_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(staging.join("3.5.6907.35")).unwrap();
    std::os::unix::fs::symlink(&victim, staging.join("3.5.6907.35").join("CPE.nbt")).unwrap();
    let ctx = Staging {
        dir: staging,
        deadline: None,
    };
    let done = run_in(&ctx, download_action("http://127.0.0.1:9/CPE.nbt", 10)).await;
    let error = done.error.expect("refused");
    assert_eq!(error.class(), net::ErrorClass::Io, "{error}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
}

#[tokio::test]
async fn a_body_that_never_ends_is_cut_at_the_total_deadline() {
    use tokio::io::AsyncWriteExt;
    // Declares a megabyte, sends a little, then holds the connection open: the per-phase
    // timeouts (30 s idle) would wait; the total deadline does not.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&[0u8; 100]).await.unwrap();
        std::future::pending::<()>().await;
    });
    let dir = tempfile::tempdir().unwrap();
    let ctx = Staging {
        dir: dir.path().to_owned(),
        deadline: Some(Duration::from_millis(300)),
    };
    let done = run_in(
        &ctx,
        download_action(&format!("http://{addr}/CPE.nbt"), 1 << 20),
    )
    .await;
    server.abort();
    match done.error {
        Some(NetError::Partial { cause, .. }) => assert!(
            matches!(
                *cause,
                NetError::Timeout {
                    phase: net::TimeoutPhase::Total
                }
            ),
            "{cause}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        done.event,
        Event::DownloadDone(Err(crate::machine::DownloadFailure {
            class: crate::machine::FailureClass::Timeout,
            ..
        }))
    ));
}

/// A signed-in user on the external path; `plain`: the lab override.
struct SignedIn {
    plain: bool,
}

impl Context for SignedIn {
    fn client(&self) -> Client {
        Bare.client()
    }
    fn identity(&self) -> DeviceIdentity {
        Bare.identity()
    }
    fn module(&self, version: FirmwareVersion) -> InstalledModule {
        Bare.module(version)
    }
    fn credentials(&self) -> Option<Credentials> {
        Some(Credentials::parse_user("CONTOSO\\alice", "Secret1!"))
    }
    fn plain_http_credentials(&self) -> bool {
        self.plain
    }
    fn staging(&self, _: FirmwareVersion, _: &FileName) -> Option<PathBuf> {
        None
    }
    fn logs(&self) -> Vec<Log> {
        Vec::new()
    }
}

/// An `http://` server that answers every request `401 WWW-Authenticate: NTLM` and keeps
/// the request heads it saw.
async fn ntlm_wall() -> (HttpUrl, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut have = 0;
                loop {
                    let Ok(n) = socket.read(&mut buf[have..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    have += n;
                    let text = String::from_utf8_lossy(&buf[..have]).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let head = text[..end].to_owned();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if have < end + 4 + length {
                        continue;
                    }
                    seen.lock().unwrap().push(head);
                    let reply = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n";
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                    have = 0;
                }
            });
        }
    });
    let url = format!("http://{addr}/RequestHandlerExt/ucdevice.upx")
        .parse()
        .unwrap();
    (url, heads)
}

fn external_check(url: HttpUrl) -> Action {
    Action::Check {
        url,
        external: true,
        user: Some("CONTOSO\\alice".into()),
        current_version: FirmwareVersion::new(1, 0, 522, 101),
    }
}

#[tokio::test]
async fn credentials_are_never_sent_over_plain_http() {
    let authorized = |heads: &[String]| {
        heads
            .iter()
            .any(|h| h.to_ascii_lowercase().contains("\nauthorization: ntlm"))
    };
    let (url, heads) = ntlm_wall().await;
    let done = match start(external_check(url), &SignedIn { plain: false }) {
        Work::Request { call, .. } => call.await,
        Work::Local(a) => panic!("{a}"),
    };
    assert_eq!(
        done.event,
        Event::CheckDone(Err(crate::machine::FailureClass::Unauthorized))
    );
    let seen = heads.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        !authorized(&seen),
        "an NTLM message went in clear: {seen:?}"
    );
    // The lab override: the same exchange does send NTLM (so the check above can see it).
    let (url, heads) = ntlm_wall().await;
    if let Work::Request { call, .. } = start(external_check(url), &SignedIn { plain: true }) {
        call.await;
    }
    assert!(authorized(&heads.lock().unwrap()));
}

async fn run(action: Action) -> (Kind, Done) {
    match start(action, &Bare) {
        Work::Request { kind, call } => (kind, call.await),
        Work::Local(action) => panic!("{action} is network work"),
    }
}

#[tokio::test]
async fn a_refused_check_answers_check_done_with_the_connect_class() {
    // A port that was just free: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url: HttpUrl = format!("http://127.0.0.1:{port}/RequestHandler/ucdevice.upx")
        .parse()
        .unwrap();
    let (kind, done) = run(Action::Check {
        url,
        external: false,
        user: None,
        current_version: FirmwareVersion::new(1, 0, 522, 101),
    })
    .await;
    assert_eq!(kind, Kind::Check);
    assert_eq!(
        done.event,
        Event::CheckDone(Err(crate::machine::FailureClass::Connect))
    );
    assert_eq!(
        done.error.map(|e| e.class()),
        Some(net::ErrorClass::Connect)
    );
}

#[tokio::test]
async fn an_upload_with_no_logs_sends_nothing_and_succeeds() {
    // Port 9 (discard) on loopback: a request would fail, so success means none was sent.
    let url: HttpUrl = "http://127.0.0.1:9/x".parse().unwrap();
    let (kind, done) = run(Action::UploadLog {
        url,
        external: true,
    })
    .await;
    assert_eq!(kind, Kind::UploadLog);
    assert_eq!(done.event, Event::LogUploaded(Ok(())));
    assert!(done.error.is_none());
    assert!(matches!(
        start(Action::Reboot, &Bare),
        Work::Local(Action::Reboot)
    ));
}

#[test]
fn every_answered_action_has_a_kind_named_like_it() {
    let url: HttpUrl = "http://h/x".parse().unwrap();
    let version = FirmwareVersion::new(1, 0, 522, 101);
    let actions = [
        Action::Resolve { name: "n".into() },
        Action::Check {
            url: url.clone(),
            external: false,
            user: None,
            current_version: version,
        },
        Action::Install {
            version,
            files: Vec::new(),
        },
        Action::UploadLog {
            url,
            external: false,
        },
    ];
    let kinds: Vec<Kind> = actions.iter().filter_map(Kind::of).collect();
    assert_eq!(kinds.len(), actions.len());
    for (kind, action) in kinds.iter().zip(&actions) {
        assert_eq!(kind.as_str(), action.name());
    }
    assert_eq!(Kind::of(&Action::Reboot), None);
}
