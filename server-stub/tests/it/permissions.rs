//! What the server writes on a shared host is its owner's only: state, the audit log, device
//! logs, the CA, store files and their directories (device logs, the audit log and state were
//! world-readable).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use http::{Method, StatusCode};
use ucupdate_protocol::wire::INTERNAL_HANDLER_PATH;

use crate::common::*;

/// Every file and directory under `dir` whose mode lets group or others in.
fn shared(dir: &Path, found: &mut Vec<String>, seen: &mut usize) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        *seen += 1;
        if mode & 0o077 != 0 {
            found.push(format!("{} {mode:o}", path.display()));
        }
        if meta.is_dir() {
            shared(&path, found, seen);
        }
    }
}

#[tokio::test]
async fn everything_the_server_writes_is_0600_in_0700_directories() {
    let t = start().await;
    let control = t.server.control();
    control
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
    let check = c
        .post(INTERNAL_HANDLER_PATH, check_body("1.0.0.0", MAC))
        .await;
    assert_eq!(check.status, StatusCode::OK);
    let upload = c
        .send(
            Method::POST,
            &format!(
                "{INTERNAL_HANDLER_PATH}?action=logupload&type=CELog&file=a.clg&device=0004f2000176"
            ),
            &[("content-type", "application/octet-stream")],
            "log line\n",
        )
        .await;
    assert_eq!(upload.status, StatusCode::OK, "{}", upload.text());
    let data = t.dir.path().to_owned();
    t.server.shutdown().await.unwrap();

    for written in [
        "state.sqlite",
        "ca.pem",
        "Logs/Client/CELog",
        "Logs/Server/Audit/imageUpdates",
        "store",
    ] {
        assert!(data.join(written).exists(), "{written} was not written");
    }
    let (mut found, mut seen) = (Vec::new(), 0);
    shared(&data, &mut found, &mut seen);
    assert!(seen > 10, "only {seen} entries");
    assert!(found.is_empty(), "open to group or others: {found:#?}");
}
