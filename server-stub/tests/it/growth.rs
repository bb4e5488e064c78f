//! What anonymous clients can make the server keep is bounded, in memory: the log
//! quotas (per file, per device, total: 413 / 507 and nothing partial left), log and audit
//! retention driven by `App::cleanup(now)` with an injected time (and the cleanup task's
//! first run at start), the cap on modules per check, the inventory cap (oldest-seen
//! forgotten, also in the database), and the migration of a `state.json` written by the
//! previous version into the database.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use http::{Method, StatusCode};
use ucupdate_protocol::wire::{INTERNAL_HANDLER_PATH, MAX_LOG_BYTES};
use ucupdate_protocol::{AuditRecord, CheckRequest, FileName, InstalledModule, PathSegment};
use ucupdate_server_stub::{testing, Quotas, Site};

use crate::common::*;

const DAY: u64 = 86_400;

/// The documented CELog name the tests' short names (`a.txt`) stand for: one per device and
/// short name, so that an upload under the same short name replaces the file.
fn ce_name(device: &str, file: &str) -> String {
    let n = file
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 1_000_000;
    let id = ucupdate_server_stub::logs::name_id(device);
    format!("UCPhone_{id}-20261125-CELOG094640_{n}.clg")
}

/// Where [`upload`] stores `file` of `device`.
fn stored(t: &TestApp, device: &str, file: &str) -> std::path::PathBuf {
    t.dir
        .path()
        .join(LOGS)
        .join("CELog")
        .join(ce_name(device, file))
}

const LOGS: &str = ucupdate_server_stub::logs::CLIENT_LOG_DIR;

fn upload_path(device: &str, file: &str) -> String {
    let file = ce_name(device, file);
    format!("{INTERNAL_HANDLER_PATH}?action=logupload&type=CELog&file={file}&device={device}")
}

async fn upload(c: &mut Conn, device: &str, file: &str, bytes: Vec<u8>) -> Reply {
    c.send(
        Method::POST,
        &upload_path(device, file),
        &[("content-type", "application/octet-stream")],
        bytes,
    )
    .await
}

fn with_quotas(tune: impl FnOnce(&mut Quotas)) -> TestApp {
    app_with(tempfile::tempdir().unwrap(), |c| tune(&mut c.quotas))
}

/// Every regular file under `dir` (empty when it does not exist).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn mtime(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The case: 30 x 1 MB logs under made-up device ids. The total quota stops them
/// (here 5 files' worth); each refusal is a 507 that leaves no file and no temp file behind.
#[tokio::test]
async fn made_up_devices_run_into_the_total_log_quota() {
    let t = with_quotas(|q| q.max_log_bytes_total = 5 * MAX_LOG_BYTES);
    let mut c = t.conn(Site::Internal);
    let mut statuses = Vec::new();
    for i in 0..30 {
        let r = upload(
            &mut c,
            &format!("FAKE-{i}"),
            "big.txt",
            vec![b'x'; MAX_LOG_BYTES as usize],
        )
        .await;
        if r.status != StatusCode::OK {
            assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{}", r.text());
            assert!(r.text().contains("quota"), "{}", r.text());
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 5);
    let stored = files_under(&t.dir.path().join(LOGS));
    assert_eq!(stored.len(), 5, "{stored:?}");
    let bytes: u64 = stored
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(bytes, 5 * MAX_LOG_BYTES);
    assert_eq!(t.control().metrics().count("log_upload", 507), 25);
}

#[tokio::test]
async fn one_device_runs_into_its_quota_and_a_replaced_file_is_not_counted_twice() {
    let t = with_quotas(|q| q.max_log_bytes_per_device = 2 * MAX_LOG_BYTES);
    let mut c = t.conn(Site::Internal);
    let big = || vec![b'y'; MAX_LOG_BYTES as usize];
    assert_eq!(upload(&mut c, "PCX-1", "a.txt", big()).await.status, 200);
    assert_eq!(upload(&mut c, "PCX-1", "b.txt", big()).await.status, 200);
    // The same name again replaces the file: the device stays at its quota, not over it.
    assert_eq!(upload(&mut c, "PCX-1", "b.txt", big()).await.status, 200);
    let over = upload(&mut c, "PCX-1", "c.txt", big()).await;
    assert_eq!(over.status, StatusCode::INSUFFICIENT_STORAGE);
    assert!(over.text().contains("PCX-1"), "{}", over.text());
    assert!(!stored(&t, "PCX-1", "c.txt").exists());
    // Another device still has its own quota.
    assert_eq!(upload(&mut c, "PCX-2", "a.txt", big()).await.status, 200);
    assert_eq!(files_under(&t.dir.path().join(LOGS)).len(), 3);
}

#[tokio::test]
async fn the_configured_max_log_file_size_is_enforced() {
    let t = app_with(tempfile::tempdir().unwrap(), |c| {
        c.device_update.max_log_file_size = Some(1000)
    });
    let mut c = t.conn(Site::Internal);
    assert_eq!(
        upload(&mut c, "PCX-1", "ok.txt", vec![b'z'; 1000])
            .await
            .status,
        200
    );
    let r = upload(&mut c, "PCX-1", "big.txt", vec![b'z'; 1001]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert!(!stored(&t, "PCX-1", "big.txt").exists());
}

/// Many tiny files cost at least a block each, so the quota also bounds the file count.
#[tokio::test]
async fn tiny_files_count_a_block_each() {
    let t = with_quotas(|q| q.max_log_bytes_total = 10 * 4096);
    let mut c = t.conn(Site::Internal);
    let mut ok = 0;
    for i in 0..20 {
        if upload(&mut c, &format!("D{i}"), "t.txt", b"x".to_vec())
            .await
            .status
            == StatusCode::OK
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 10);
}

/// `LogCleanUpInterval`: a log is deleted once it is 10 days old (the default), which frees
/// its quota; the clock is injected through `App::cleanup`.
#[tokio::test]
async fn logs_are_deleted_after_the_retention_and_free_their_quota() {
    let t = with_quotas(|q| q.max_log_bytes_total = MAX_LOG_BYTES);
    let mut c = t.conn(Site::Internal);
    let big = || vec![b'y'; MAX_LOG_BYTES as usize];
    assert_eq!(upload(&mut c, "PCX-1", "a.txt", big()).await.status, 200);
    assert_eq!(upload(&mut c, "PCX-2", "a.txt", big()).await.status, 507);
    let stored = stored(&t, "PCX-1", "a.txt");
    let uploaded = mtime(&stored);

    let kept = t.app.cleanup(uploaded + 10 * DAY - 1).unwrap();
    assert_eq!(kept.log_files, 0);
    assert!(stored.exists());

    let done = t.app.cleanup(uploaded + 10 * DAY).unwrap();
    assert_eq!((done.log_files, done.log_bytes), (1, MAX_LOG_BYTES));
    assert!(!stored.exists());
    assert!(
        !t.dir.path().join(LOGS).join("CELog").exists(),
        "empty directories go too"
    );
    assert_eq!(upload(&mut c, "PCX-2", "a.txt", big()).await.status, 200);
}

#[tokio::test]
async fn a_shorter_log_retention_is_honoured() {
    let t = app_with(tempfile::tempdir().unwrap(), |c| {
        c.device_update.log_clean_up_interval_days = Some(1)
    });
    let mut c = t.conn(Site::Internal);
    assert_eq!(
        upload(&mut c, "PCX-1", "a.txt", b"x".to_vec()).await.status,
        200
    );
    let uploaded = mtime(&stored(&t, "PCX-1", "a.txt"));
    assert_eq!(t.app.cleanup(uploaded + DAY).unwrap().log_files, 1);
}

/// The audit log has one file per day; files of days past the retention are deleted by the
/// same cleanup.
#[tokio::test]
async fn audit_files_are_rotated_by_day_and_deleted_after_the_retention() {
    let t = app();
    let mut c = t.conn(Site::Internal);
    c.check("1.0.0.0", MAC).await;
    // The audit lines are buffered until the server's flush tick (or this).
    t.app.control().flush().await.unwrap();
    let audit_dir = t.dir.path().join("Logs/Server/Audit/imageUpdates");
    let audit = files_under(&audit_dir);
    assert_eq!(audit.len(), 1);
    let text = std::fs::read_to_string(&audit[0]).unwrap();
    let at = ucupdate_protocol::audit::parse_log(&text).unwrap()[0].unix_secs;
    let today = at - at % DAY;
    // An older day's file, as the server wrote it 11 days ago.
    let old = audit_dir.join(AuditRecord::file_name("ucupdate", today - 11 * DAY));
    std::fs::write(&old, "old\r\n").unwrap();

    assert_eq!(t.app.cleanup(at).unwrap().audit_files, 1);
    assert!(!old.exists());
    assert!(audit[0].exists(), "today's file is kept");
    // Today's file goes when its day ended 10 days ago.
    assert_eq!(t.app.cleanup(today + 11 * DAY - 1).unwrap().audit_files, 0);
    assert_eq!(t.app.cleanup(today + 11 * DAY).unwrap().audit_files, 1);
}

/// The cleanup task runs once at start (then every `cleanup_interval`), with the clock
/// module's time: a log written 11 days ago is gone once the server has started and stopped.
/// These are in the earlier layout (`logs/<device>/<type>/`), which is still cleaned up.
#[tokio::test]
async fn the_cleanup_task_deletes_old_logs_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("logs/PCX-1/CELog/old.txt");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, "old").unwrap();
    let written = std::fs::metadata(&old).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(written - Duration::from_secs(11 * DAY))
        .unwrap();
    let fresh = dir.path().join("logs/PCX-1/CELog/fresh.txt");
    std::fs::write(&fresh, "new").unwrap();
    let t = start_with(dir, |c| {
        c.internal_tls = None;
        c.external = None;
    })
    .await;
    let TestServer { server, dir } = t;
    server.shutdown().await.unwrap();
    assert!(!old.exists(), "the task deleted the old log");
    assert!(fresh.exists());
    drop(dir);
}

fn check_with_modules(mac: &str, n: usize) -> String {
    CheckRequest {
        identity: testing::identity(mac),
        modules: (0..n)
            .map(|i| InstalledModule {
                update_type: PathSegment::new(&format!("M{i}")).unwrap(),
                file_name: FileName::new(&format!("M{i}.nbt")).unwrap(),
                version: v("1.0.0.0"),
                timestamp: None,
            })
            .collect(),
        user: None,
    }
    .encode()
}

/// The other case: 550 modules per check from made-up devices. Refused with 400
/// before anything is recorded: no inventory entry, no audit line.
#[tokio::test]
async fn a_check_with_too_many_modules_is_refused_and_leaves_no_trace() {
    let t = app();
    let mut c = t.conn(Site::Internal);
    let max = Quotas::default().max_modules_per_check;
    for n in [550, max + 1] {
        let r = c
            .post(INTERNAL_HANDLER_PATH, check_with_modules(MAC, n))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{n}: {}", r.text());
        assert!(r.text().contains("modules"), "{}", r.text());
    }
    assert!(t.control().inventory().is_empty());
    assert!(files_under(&t.dir.path().join("audit")).is_empty());
    let r = c
        .post(INTERNAL_HANDLER_PATH, check_with_modules(MAC, max))
        .await;
    r.check();
    assert_eq!(t.control().inventory()[0].versions.len(), max);
}

/// 400 made-up devices against a cap of 50: the inventory keeps the 50 seen last, in memory
/// and in the database.
#[tokio::test]
async fn the_inventory_forgets_the_oldest_seen_device_at_its_cap() {
    let t = with_quotas(|q| q.max_inventory_entries = 50);
    let mut c = t.conn(Site::Internal);
    let mac = |i: usize| format!("02-00-00-00-{:02X}-{:02X}", i / 256, i % 256);
    for i in 0..400 {
        c.check("1.0.0.0", &mac(i)).await;
    }
    t.control().flush().await.unwrap();
    let mut expect: Vec<String> = (350..400).map(mac).collect();
    expect.sort();
    let mut held: Vec<String> = t
        .control()
        .inventory()
        .into_iter()
        .map(|e| e.device)
        .collect();
    held.sort();
    assert_eq!(held.len(), 50);
    assert!(held.iter().all(|d| expect.contains(d)), "{held:?}");
    assert_eq!(stored_inventory(t.dir.path()).len(), 50);
}

/// A data directory of the previous version (`state.json`, here the golden file that
/// version wrote) is migrated into the database on the first start and set aside; the next
/// start reads the database.
#[tokio::test]
async fn a_state_json_of_the_previous_version_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("state.json"),
        include_bytes!("../fixtures/state-v1.json"),
    )
    .unwrap();
    for start in ["first", "second"] {
        let mut config = ucupdate_server_stub::ServerConfig::loopback(dir.path());
        config.public_internal_url = Some(INTERNAL_BASE.parse().unwrap());
        let app = ucupdate_server_stub::App::open(&config).unwrap();
        // The catalog came along: the approved version is offered with its size and hash.
        let mut c = Conn::Mem {
            app: app.clone(),
            state: ucupdate_server_stub::ConnState::new(Site::Internal, PEER.parse().unwrap()),
            token: None,
        };
        let ucupdate_protocol::CheckResponse::Update(offer) = c.check("1.0.0.0", OTHER_MAC).await
        else {
            panic!("{start}: no offer")
        };
        assert_eq!(offer.version, v("2.0.0.0"));
        assert_eq!(offer.files[0].size, Some(5000), "{start}");
        let control = app.control();
        let rules = control.rules();
        assert_eq!(rules.len(), 2, "{start}");
        let cx700 = control.rule(&key()).unwrap();
        assert_eq!(
            (cx700.pending, cx700.approved, cx700.restore),
            (
                Some(v("3.5.6907.35")),
                Some(v("2.0.0.0")),
                Some(v("1.0.522.101"))
            ),
            "{start}"
        );
        assert_eq!(control.test_devices().len(), 2, "{start}");
        let inventory = control.inventory();
        let old = inventory
            .iter()
            .find(|e| e.device == "00-0D-3A-11-22-33")
            .expect("the migrated inventory entry");
        assert_eq!(old.last_user.as_deref(), Some("sip:alice@contoso.com"));
        assert!(!dir.path().join("state.json").exists(), "{start}");
        assert!(dir.path().join("state.json.migrated").exists(), "{start}");
        assert!(dir.path().join("state.sqlite").exists(), "{start}");
    }
    assert!(stored_inventory(dir.path()).contains(&"00-0D-3A-11-22-33".to_owned()));
}

/// Twenty uploads at once against room for five: the check and the write share one lock, so
/// exactly five are stored; and a restart counts what is on disk, so the quota still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_and_a_restart_do_not_overshoot_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let quota = |c: &mut ucupdate_server_stub::ServerConfig| {
        c.quotas.max_log_bytes_total = 5 * MAX_LOG_BYTES;
    };
    let t = app_with(dir, quota);
    let uploads = (0..20).map(|i| {
        let mut c = t.conn(Site::Internal);
        tokio::spawn(async move {
            upload(
                &mut c,
                &format!("RACE-{i}"),
                "big.txt",
                vec![b'r'; MAX_LOG_BYTES as usize],
            )
            .await
            .status
        })
    });
    let mut ok = 0;
    for u in uploads.collect::<Vec<_>>() {
        if u.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(files_under(&t.dir.path().join(LOGS)).len(), 5);
    let TestApp { app, dir } = t;
    drop(app);
    let t = app_with(dir, quota);
    let mut c = t.conn(Site::Internal);
    let r = upload(&mut c, "LATE", "a.txt", b"x".to_vec()).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{}", r.text());
}

/// Eight uploads of one file name at once shared one temp name (`.{name}.{pid}.tmp`) and 2-4
/// of them failed with 500. Each write now has its own temp file: every upload is answered
/// 200, and what is stored is exactly one of the uploads, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_uploads_of_one_file_name_all_succeed_and_one_whole_upload_is_kept() {
    let t = with_quotas(|_| {});
    let uploads = (0..8u8).map(|i| {
        let mut c = t.conn(Site::Internal);
        tokio::spawn(async move {
            let body = vec![b'a' + i; 200_000];
            upload(&mut c, "0004F2000176", "same.txt", body)
                .await
                .status
        })
    });
    for u in uploads.collect::<Vec<_>>() {
        assert_eq!(u.await.unwrap(), StatusCode::OK);
    }
    let stored = files_under(&t.dir.path().join(LOGS));
    assert_eq!(stored.len(), 1, "{stored:?}");
    let bytes = std::fs::read(&stored[0]).unwrap();
    assert_eq!(bytes.len(), 200_000);
    assert!(bytes.iter().all(|b| *b == bytes[0]), "a mix of two uploads");
    let leftovers: Vec<_> = files_under(t.dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

/// `LogCleanUpInterval` is 1-365 days in the service; the command line refuses the rest.
#[test]
fn a_retention_outside_one_to_365_days_is_refused_by_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    for days in ["0", "366"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ucupdate-server"))
            .args(["serve", "--data"])
            .arg(dir.path())
            .args(["--log-retention-days", days])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{days}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--log-retention-days"), "{err}");
    }
}
