//! Device log upload on the check handler, in memory: stored per type under the documented
//! names (`Logs/Client/<type>/`, kept when the upload carries one for its device, made
//! otherwise), up to the size cap; the device-update settings enforced on uploads. The refusals (extensions, log types, traversal, oversized and cut-off bodies) are
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

    // An upload already named the service's way, for its own device, keeps its name.
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
    assert_eq!(ok.text(), format!("log stored as {name}\n"));
    let logs = t
        .dir
        .path()
        .join(ucupdate_server_stub::logs::CLIENT_LOG_DIR);
    assert_eq!(
        std::fs::read(logs.join("CELog").join(name)).unwrap(),
        b"log line\n"
    );

    // Any other name is replaced by the documented one: Watson
    // `<serial>-<YYYY-MM-DDHHMMSS>-WATSON-<version>.kdmp`, the version from the device's last
    // check (none here: 0.0.0.0).
    let watson = c
        .send(
            Method::POST,
            &upload("action=logupload&type=Watson&file=crash.dmp&device=PCX-1"),
            &octet,
            "dump",
        )
        .await;
    assert_eq!(watson.status, StatusCode::OK);
    let stored = stored_as(&watson);
    assert!(is_watson_name(&stored, "PCX-1", "0.0.0.0"), "{stored}");
    assert_eq!(
        std::fs::read(logs.join("Watson").join(&stored)).unwrap(),
        b"dump"
    );
    // After a check the inventory knows the device's type and version.
    c.check("1.0.522.101", MAC).await;
    let named = c
        .send(
            Method::POST,
            &upload(&format!(
                "action=logupload&type=Watson&file=crash.dmp&device={MAC}"
            )),
            &octet,
            "dump",
        )
        .await;
    assert!(
        is_watson_name(&stored_as(&named), "0004F2000176", "1.0.522.101"),
        "{}",
        named.text()
    );
    // Someone else's documented name is not kept: CELog `<type>_<id>-<date>-CELOG<time>_<n>`.
    let other = c
        .send(
            Method::POST,
            &upload(&format!(
                "action=logupload&type=CELog&file={name}&device=PCX-1"
            )),
            &octet,
            "x",
        )
        .await;
    let stored = stored_as(&other);
    assert!(
        stored.starts_with("UCPhone_PCX-1-") && stored.ends_with("_1.clg"),
        "{stored}"
    );
    assert!(
        logs.join("CELog").join(name).exists(),
        "the other device's file is untouched"
    );

    // A log of exactly the cap is accepted, on a new connection.
    let mut c = t.conn(Site::Internal);
    let max = vec![b'y'; MAX_LOG_BYTES as usize];
    let r = c
        .send(
            Method::POST,
            &upload("action=logupload&type=CELog&file=max.txt&device=RT-1"),
            &octet,
            max,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a log of exactly the cap is accepted"
    );
    let made = stored_as(&r);
    assert!(
        made.starts_with("UCPhone_RT-1-") && made.ends_with("_1.clg"),
        "{made}"
    );
    let stored = std::fs::read(logs.join("CELog").join(made)).unwrap();
    assert_eq!(stored.len(), MAX_LOG_BYTES as usize);
    assert_eq!(t.control().metrics().count("log_upload", 200), 5);
}

/// The name a log was stored under, from the upload's answer.
fn stored_as(reply: &Reply) -> String {
    reply
        .text()
        .trim_end()
        .strip_prefix("log stored as ")
        .unwrap_or_else(|| panic!("{}", reply.text()))
        .to_owned()
}

/// `<id>-YYYY-MM-DDHHMMSS-WATSON-<version>.kdmp`.
fn is_watson_name(name: &str, id: &str, version: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(&format!("{id}-"))
        .and_then(|r| r.strip_suffix(&format!("-WATSON-{version}.kdmp")))
    else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 16
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// `Get/Set-CsDeviceUpdateConfiguration` through the admin API: the documented defaults,
/// ranges refused, and a change enforced on the next upload (types, extensions, size) and
/// kept by the database across a restart, under the flags given at start.
#[tokio::test]
async fn the_device_update_configuration_is_shown_changed_and_enforced() {
    let t = app();
    let mut a = t.admin();
    let mut c = t.conn(Site::Internal);
    let octet = [("content-type", "application/octet-stream")];
    let up = |kind: &str, file: &str| {
        upload(&format!(
            "action=logupload&type={kind}&file={file}&device=PCX-1"
        ))
    };

    let got = a.get("/admin/configuration", &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    let got: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(got["MaxLogFileSize"], 1_024_000);
    assert_eq!(got["MaxLogCacheLimit"], 512_000);
    assert_eq!(got["LogFlushInterval"], 300);
    assert_eq!(got["LogCleanUpInterval"], 10);
    assert_eq!(got["LogCleanUpTimeOfDay"], serde_json::Value::Null);
    assert_eq!(
        got["ValidLogFileTypes"],
        serde_json::json!(["Watson", "Config", "Diaglog", "CELog"])
    );
    assert_eq!(got["ValidLogFileExtensions"].as_array().unwrap().len(), 12);
    assert_eq!(
        c.send(Method::POST, &up("Watson", "a.dmp"), &octet, "x")
            .await
            .status,
        200
    );

    for bad in [
        r#"{"LogFlushInterval": 59}"#,
        r#"{"LogFlushInterval": 3601}"#,
        r#"{"LogCleanUpInterval": 0}"#,
        r#"{"LogCleanUpInterval": 366}"#,
        r#"{"MaxLogFileSize": 1024001}"#,
        r#"{"LogCleanUpTimeOfDay": "25:00"}"#,
        r#"{"ValidLogFileTypes": ["Crash"]}"#,
        r#"{"ValidLogFileExtensions": ["txt"]}"#,
        r#"{"Unknown": 1}"#,
    ] {
        let r = a.send(Method::PUT, "/admin/configuration", &[], bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
    }
    let r = a
        .send(
            Method::PUT,
            "/admin/configuration",
            &[],
            r#"{"ValidLogFileTypes": ["CELog"], "ValidLogFileExtensions": [".clg", ".txt"],
                "MaxLogFileSize": 100, "LogFlushInterval": 60, "LogCleanUpTimeOfDay": "03:30"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(r["MaxLogFileSize"], 100);
    assert_eq!(r["LogCleanUpInterval"], 10, "unset fields keep their value");

    let watson = c
        .send(Method::POST, &up("Watson", "b.dmp"), &octet, "x")
        .await;
    assert_eq!(watson.status, StatusCode::BAD_REQUEST);
    assert!(
        watson.text().contains("ValidLogFileTypes"),
        "{}",
        watson.text()
    );
    let dmp = c
        .send(Method::POST, &up("CELog", "b.dmp"), &octet, "x")
        .await;
    assert_eq!(dmp.status, StatusCode::BAD_REQUEST);
    assert!(
        dmp.text().contains("ValidLogFileExtensions"),
        "{}",
        dmp.text()
    );
    let big = c
        .send(Method::POST, &up("CELog", "b.txt"), &octet, vec![b'x'; 101])
        .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    let ok = c
        .send(Method::POST, &up("CELog", "b.TXT"), &octet, vec![b'x'; 100])
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());

    // Stored: a restart keeps the change; a flag given at start wins over the stored value.
    drop((a, c));
    let dir = t.dir;
    drop(t.app);
    let again = app_with(dir, |c| c.device_update.max_log_file_size = Some(200));
    let got = again.admin().get("/admin/configuration", &[]).await;
    let got: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(got["ValidLogFileTypes"], serde_json::json!(["CELog"]));
    assert_eq!(got["LogCleanUpTimeOfDay"], "03:30");
    assert_eq!(got["MaxLogFileSize"], 200);
    // A flag out of range stops the start.
    let dir = again.dir;
    drop(again.app);
    let mut config = ucupdate_server_stub::testing::loopback_config(dir.path());
    config.device_update.log_flush_interval_secs = Some(30);
    let err = ucupdate_server_stub::App::open(&config).err().unwrap();
    assert!(err.to_string().contains("LogFlushInterval"), "{err}");
}

/// Every documented `ValidLogFileTypes` entry can be uploaded, `Config` and `Diaglog` too (the
/// protocol once knew only CELog and Watson and refused them at parse), and the documented
/// `.clg1` extension is accepted. Types without a documented file name keep the device's.
#[tokio::test]
async fn config_and_diaglog_uploads_are_stored_under_their_type() {
    let t = app();
    let mut c = t.conn(Site::Internal);
    let octet = [("content-type", "application/octet-stream")];
    let logs = t
        .dir
        .path()
        .join(ucupdate_server_stub::logs::CLIENT_LOG_DIR);
    for (kind, file) in [("Config", "phone-config.xml"), ("Diaglog", "diag.clg1")] {
        let r = c
            .send(
                Method::POST,
                &upload(&format!(
                    "action=logupload&type={kind}&file={file}&device=PCX-1"
                )),
                &octet,
                "contents",
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{kind}: {}", r.text());
        assert_eq!(r.text(), format!("log stored as {file}\n"));
        assert_eq!(
            std::fs::read(logs.join(kind).join(file)).unwrap(),
            b"contents"
        );
    }
    // A second upload of the same name does not overwrite the first.
    let again = c
        .send(
            Method::POST,
            &upload("action=logupload&type=Config&file=phone-config.xml&device=PCX-1"),
            &octet,
            "newer",
        )
        .await;
    assert_eq!(again.text(), "log stored as phone-config_2.xml\n");
}
