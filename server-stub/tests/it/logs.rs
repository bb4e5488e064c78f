//! Device log upload on the check handler: stored per device and type, size cap, allowed
//! extensions, and no way out of the log folder.

use http::{Method, StatusCode};
use ucupdate_protocol::wire::{INTERNAL_HANDLER_PATH, MAX_LOG_BYTES};

use crate::common::*;

fn upload(query: &str) -> String {
    format!("{INTERNAL_HANDLER_PATH}?{query}")
}

#[tokio::test]
async fn logs_are_stored_per_device_and_checked() {
    let t = start().await;
    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
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

    for (query, why) in [
        (
            "action=logupload&type=CELog&file=evil.exe&device=PCX-1",
            "extension",
        ),
        (
            "action=logupload&type=Config&file=a.txt&device=PCX-1",
            "log type",
        ),
        (
            "action=logupload&type=CELog&file=..%2F..%2Fstate.json&device=PCX-1",
            "traversal in file",
        ),
        (
            "action=logupload&type=CELog&file=a.txt&device=..",
            "traversal in device",
        ),
        ("action=logupload&type=CELog&device=PCX-1", "missing file"),
    ] {
        let r = c.send(Method::POST, &upload(query), &octet, "x").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.text());
    }

    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
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
    assert_eq!(t.server.control().metrics().count("log_upload", 400), 5);
}
