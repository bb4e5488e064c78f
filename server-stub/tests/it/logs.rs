//! Device log upload on the check handler, in memory: stored per device and type, up to the
//! size cap. The refusals (extensions, log types, traversal, oversized and cut-off bodies) are
//! in `hostile.rs`.

use http::{Method, StatusCode};
use ucupdate_protocol::wire::{INTERNAL_HANDLER_PATH, MAX_LOG_BYTES};
use ucupdate_server_stub::Site;

use crate::common::*;

fn upload(query: &str) -> String {
    format!("{INTERNAL_HANDLER_PATH}?{query}")
}

#[tokio::test]
async fn logs_are_stored_per_device_and_type() {
    let t = app();
    let mut c = t.conn(Site::Internal);
    let octet = [("content-type", "application/octet-stream")];

    let name = "UCPhone_0004f2000176-20261125-CELOG101500_1.clg";
    let ok = c
        .send(
            Method::POST,
            &upload(&format!(
                "action=logupload&type=CELog&file={name}&device=0004f2000176"
            )),
            &octet,
            "log line\n",
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let stored = t.dir.path().join("logs").join(MAC).join("CELog").join(name);
    assert_eq!(std::fs::read(stored).unwrap(), b"log line\n");

    let watson = c
        .send(
            Method::POST,
            &upload("action=logupload&type=Watson&file=crash.dmp&device=PCX-1"),
            &octet,
            "dump",
        )
        .await;
    assert_eq!(watson.status, StatusCode::OK);
    assert!(t.dir.path().join("logs/PCX-1/Watson/crash.dmp").exists());

    // A log of exactly the cap is accepted, on a new connection.
    let mut c = t.conn(Site::Internal);
    let max = vec![b'y'; MAX_LOG_BYTES as usize];
    let r = c
        .send(
            Method::POST,
            &upload("action=logupload&type=CELog&file=max.txt&device=PCX-1"),
            &octet,
            max,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a log of exactly the cap is accepted"
    );
    let stored = std::fs::read(t.dir.path().join("logs/PCX-1/CELog/max.txt")).unwrap();
    assert_eq!(stored.len(), MAX_LOG_BYTES as usize);
    assert_eq!(t.control().metrics().count("log_upload", 200), 3);
}
