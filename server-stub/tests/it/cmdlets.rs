//! The Lync cmdlet model through the admin API (in memory) and the CLI: rules named by
//! identity (`service:WebServer:<pool>/<id>`), id or key, shown one at a time and removed;
//! restore without a restore version uninstalls; reset touches pending versions only; stored
//! files no rule refers to cleared; device and audit logs cleared by age; named test devices
//! at global and site scope (New/Get/Set/Remove-CsTestDevice) with their MAC rules.

use http::{Method, StatusCode};
use ucupdate_server_stub::model::rule_ref::rule_id;
use ucupdate_server_stub::Site;

use crate::common::*;

const RULE: &str = "/admin/rules/UCPhone/Polycom/CX700/A/ENU/CPE";

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.text()))
}

#[tokio::test]
async fn rules_by_identity_id_or_key_one_at_a_time_and_removed() {
    let t = app_with(tempfile::tempdir().unwrap(), |c| {
        c.pool_fqdn = Some("pool01.contoso.com".into())
    });
    let control = t.control();
    control
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    let mut a = t.admin();
    let id = rule_id(&key());
    let identity = format!("service:WebServer:pool01.contoso.com/{id}");

    let all = json(&a.get("/admin/rules", &[]).await);
    assert_eq!(all[0]["identity"], identity.as_str());
    assert_eq!(all[0]["id"], id.as_str());
    for named in [identity.clone(), id.to_uppercase(), key().to_string()] {
        let one = a.get(&format!("/admin/rules/{named}"), &[]).await;
        assert_eq!(one.status, StatusCode::OK, "{named}: {}", one.text());
        let one = json(&one);
        assert_eq!(one["identity"], identity.as_str(), "{named}");
        assert_eq!(one["pending"], "2.0.0.0");
    }
    // Rules are per Web Services instance: another pool's identity names nothing here.
    let other = a
        .get(
            &format!("/admin/rules/service:WebServer:pool02.contoso.com/{id}"),
            &[],
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.text());
    let unknown = a
        .get("/admin/rules/00000000-0000-8000-8000-000000000000", &[])
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad = a.get("/admin/rules/not-a-rule", &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Approve by id.
    let r = a
        .send(Method::POST, &format!("/admin/rules/{id}/approve"), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(json(&r)["approved"], "2.0.0.0");
    let mut c = t.conn(Site::Internal);
    assert!(offered(&c.check("1.0.0.0", MAC).await).is_some());

    // Remove by identity: nothing is offered, the files stay until a files clear.
    let r = a
        .send(Method::DELETE, &format!("/admin/rules/{identity}"), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(a.get(RULE, &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(offered(&c.check("1.0.0.0", MAC).await), None);
    let version_dir = t
        .dir
        .path()
        .join("store/UCPhone/Polycom/CX700/A/ENU/2.0.0.0/CPE");
    assert!(version_dir.join("CPE.nbt").exists());
    assert!(a
        .get("/admin/versions", &[])
        .await
        .text()
        .contains("2.0.0.0"));
    let again = a.send(Method::DELETE, RULE, &[], "").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn restore_without_a_restore_version_uninstalls_and_reset_is_for_pending_only() {
    let t = app();
    let control = t.control();
    let mut a = t.admin();
    let mut c = t.conn(Site::Internal);
    control.add_test_device(MAC.parse().unwrap()).await.unwrap();
    control
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    control.approve(&key()).await.unwrap();
    control
        .publish(&key(), v("3.0.0.0"), files("v3"))
        .await
        .unwrap();
    assert_eq!(
        offered(&c.check("2.0.0.0", MAC).await),
        Some(("pending", "3.0.0.0".into()))
    );
    // Reset: the pending version goes, the approved one is untouched and the test device
    // falls back to it.
    let r = json(
        &a.send(Method::POST, &format!("{RULE}/reset"), &[], "")
            .await,
    );
    assert_eq!(
        (r["pending"].clone(), r["approved"].clone()),
        (serde_json::Value::Null, "2.0.0.0".into())
    );
    assert_eq!(
        offered(&c.check("3.0.0.0", MAC).await),
        Some(("approved", "2.0.0.0".into()))
    );
    // With nothing pending a reset is refused: it does not touch approved versions.
    let r = a
        .send(Method::POST, &format!("{RULE}/reset"), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(control.rule(&key()).unwrap().approved, Some(v("2.0.0.0")));

    // Restore with no restore version: uninstalled. Every device, test or not, whatever it
    // runs, is offered nothing for the key.
    let r = a
        .send(Method::POST, &format!("{RULE}/restore"), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = json(&r);
    assert_eq!(r["approved"], serde_json::Value::Null);
    for (running, mac) in [
        ("1.0.0.0", OTHER_MAC),
        ("9.0.0.0", OTHER_MAC),
        ("1.0.0.0", MAC),
    ] {
        assert_eq!(
            offered(&c.check(running, mac).await),
            None,
            "{running} {mac}"
        );
    }
    // Nothing left to uninstall.
    let r = a
        .send(Method::POST, &format!("{RULE}/restore"), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
}

#[tokio::test]
async fn files_clear_deletes_the_versions_no_rule_refers_to() {
    let t = app();
    let control = t.control();
    for version in ["1.0.0.0", "2.0.0.0", "3.0.0.0", "4.0.0.0"] {
        control
            .publish(&key(), v(version), files(version))
            .await
            .unwrap();
        if version != "4.0.0.0" {
            control.approve(&key()).await.unwrap();
        }
    }
    // Approved 3.0, restore 2.0, pending 4.0: 1.0 is no rule's any more.
    let store = t.dir.path().join("store/UCPhone/Polycom/CX700/A/ENU");
    assert!(store.join("1.0.0.0").exists());
    let mut a = t.admin();
    let r = a.send(Method::POST, "/admin/files/clear", &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = json(&r);
    assert_eq!(r["deleted"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["deleted"][0]["version"], "1.0.0.0");
    assert!(!store.join("1.0.0.0").exists());
    for kept in ["2.0.0.0", "3.0.0.0", "4.0.0.0"] {
        assert!(
            store.join(kept).join("CPE").join("CPE.nbt").exists(),
            "{kept}"
        );
    }
    let versions = a.get("/admin/versions", &[]).await.text();
    assert!(!versions.contains("1.0.0.0"), "{versions}");
    let gone = a
        .get(
            "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.0.0/CPE/CPE.nbt",
            &[],
        )
        .await;
    assert_ne!(gone.status, StatusCode::OK);
    // A removed rule's versions all go, and the empty folders with them.
    a.send(Method::DELETE, RULE, &[], "").await;
    let r = json(&a.send(Method::POST, "/admin/files/clear", &[], "").await);
    assert_eq!(r["deleted"].as_array().unwrap().len(), 3, "{r}");
    assert!(!t.dir.path().join("store/UCPhone").exists());
    let r = json(&a.send(Method::POST, "/admin/files/clear", &[], "").await);
    assert_eq!(r["deleted"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn logs_clear_deletes_device_and_audit_logs_older_than_n_days() {
    let t = app();
    let mut c = t.conn(Site::Internal);
    let up = c
        .send(
            Method::POST,
            &format!(
                "{}?action=logupload&type=Watson&file=crash.dmp&device=PCX-1",
                ucupdate_protocol::wire::INTERNAL_HANDLER_PATH
            ),
            &[("content-type", "application/octet-stream")],
            "dump",
        )
        .await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text());
    c.check("1.0.0.0", MAC).await;
    let audit = t.dir.path().join(ucupdate_server_stub::audit::AUDIT_DIR);
    let old_audit = audit.join("RequestHandlerAuditLog_ucupdate_20200101.log");
    std::fs::write(&old_audit, "old\r\n").unwrap();
    let today = std::fs::read_dir(&audit).unwrap().count();
    assert_eq!(today, 2);
    // "Now" is the upload's time (the log's modification time).
    let name = up.text().trim_end().replace("log stored as ", "");
    let log = t
        .dir
        .path()
        .join(ucupdate_server_stub::logs::CLIENT_LOG_DIR)
        .join("Watson")
        .join(name);
    let now = std::fs::metadata(&log)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;

    // Two days back keeps today's log and audit file; the 2020 audit file goes.
    let done = t.app.clear_logs(2, now).unwrap();
    assert_eq!((done.log_files, done.audit_files), (0, 1));
    assert!(!old_audit.exists());
    // Three days later, "two days back" takes the log and the audit file of today.
    let done = t.app.clear_logs(2, now + 3 * 86_400).unwrap();
    assert_eq!((done.log_files, done.audit_files), (1, 1));

    // The admin API: days_back 0 deletes every device log (today's audit file stays).
    let mut c = t.conn(Site::Internal);
    c.send(
        Method::POST,
        &format!(
            "{}?action=logupload&type=CELog&file=x.clg&device=PCX-1",
            ucupdate_protocol::wire::INTERNAL_HANDLER_PATH
        ),
        &[("content-type", "application/octet-stream")],
        "log",
    )
    .await;
    let mut a = t.admin();
    let r = a
        .send(
            Method::POST,
            "/admin/logs/clear",
            &[],
            r#"{"days_back": 0}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(json(&r)["log_files"], 1);
    let bad = a
        .send(Method::POST, "/admin/logs/clear", &[], r#"{"days": 1}"#)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn named_test_devices_at_global_and_site_scope() {
    let t = app();
    let control = t.control();
    control
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    let mut a = t.admin();
    let mut c = t.conn(Site::Internal);
    let lab = "/admin/test-devices/site:Redmond/Lab%20Phone";

    let r = a
        .send(Method::POST, lab, &[], r#"{"mac": "00:04:f2:00:01:76"}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = json(&r);
    assert_eq!(r["identity"], "site:Redmond/Lab Phone");
    assert_eq!(r["identifier_type"], "MACAddress");
    assert_eq!(r["identifier"], MAC);
    assert_eq!(
        offered(&c.check("1.0.0.0", MAC).await),
        Some(("pending", "2.0.0.0".into())),
        "a site-scoped test device counts on the stub's one site"
    );
    // New-CsTestDevice refuses an identity that exists (any case).
    let dup = a
        .send(
            Method::POST,
            "/admin/test-devices/SITE:redmond/lab%20phone",
            &[],
            r#"{"serial": "PCX-1"}"#,
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.text());
    let r = a
        .send(
            Method::POST,
            "/admin/test-devices/global/Desk",
            &[],
            r#"{"identifier_type": "SerialNumber", "identifier": "PCX-1"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let list = json(&a.get("/admin/test-devices", &[]).await);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["identity"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["global/Desk", "site:Redmond/Lab Phone"]);

    // Set: the lab device now names another MAC, so this one is an ordinary device again.
    let r = a
        .send(Method::PUT, lab, &[], r#"{"mac": "0004F2000177"}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(json(&r)["identifier"], OTHER_MAC);
    assert_eq!(offered(&c.check("1.0.0.0", MAC).await), None);
    assert_eq!(
        offered(&c.check("1.0.0.0", OTHER_MAC).await),
        Some(("pending", "2.0.0.0".into()))
    );
    let r = a
        .send(
            Method::PUT,
            "/admin/test-devices/global/Nobody",
            &[],
            r#"{"mac": "0004F2000177"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A MAC is six hex pairs; anything else is refused, never stored as a serial number.
    for bad in [
        r#"{"mac": "zz-zz"}"#,
        r#"{"mac": "00-04-F2-00-01"}"#,
        r#"{"mac": "PCX-1"}"#,
        r#"{"mac": "00-04-F2-00-01-7"}"#,
        r#"{"mac": "00.04.F2.00.01.76"}"#,
        r#"{"serial": "a b"}"#,
        r#"{"mac": "0004F2000176", "serial": "PCX-1"}"#,
        r#"{}"#,
    ] {
        let r = a
            .send(Method::POST, "/admin/test-devices/global/Bad", &[], bad)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
    }
    for bad_identity in ["moon:x/y", "global/a%2Fb", "site:/x", "global/"] {
        let r = a
            .send(
                Method::POST,
                &format!("/admin/test-devices/{bad_identity}"),
                &[],
                r#"{"mac": "0004F2000176"}"#,
            )
            .await;
        assert!(
            matches!(r.status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND),
            "{bad_identity}: {} {}",
            r.status,
            r.text()
        );
    }
    assert_eq!(control.test_devices().len(), 2);

    let r = a.send(Method::DELETE, lab, &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        a.send(Method::DELETE, lab, &[], "").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(a.get(lab, &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(offered(&c.check("1.0.0.0", OTHER_MAC).await), None);
    let desk = json(&a.get("/admin/test-devices/global/desk", &[]).await);
    assert_eq!(desk["identifier"], "PCX-1");
}

/// An outside peer: `tests/cmdlets.py`, urllib only, scripts the cmdlet model over a real
/// loopback socket the way an administrator's script would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_script_in_python_drives_the_cmdlet_model() {
    let t = start().await;
    let control = t.server.control();
    control
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cmdlets.py");
    let admin = t.server.admin_url().unwrap().to_string();
    let token = t.server.admin_token().path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(admin)
            .arg(token)
            .output()
    })
    .await
    .unwrap();
    let out = match run {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: python3 is not installed");
            return;
        }
        Err(e) => panic!("cannot run python3: {e}"),
    };
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: std::collections::HashMap<String, serde_json::Value> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    let status = |s: &str| steps[s]["status"].as_u64().unwrap();
    assert_eq!(status("new-test-device"), 200, "{stdout}");
    assert_eq!(status("new-bad-mac"), 400);
    assert_eq!(steps["get-test-device"]["body"]["identifier"], MAC);
    assert_eq!(
        steps["get-rule"]["body"]["identity"],
        format!("service:WebServer:ucupdate/{}", rule_id(&key()))
    );
    assert_eq!(status("approve"), 200);
    assert_eq!(steps["approve"]["body"]["approved"], "2.0.0.0");
    assert_eq!(steps["set-configuration"]["body"]["LogFlushInterval"], 600);
    assert_eq!(status("set-bad-configuration"), 400);
    assert_eq!(status("clear-files"), 200);
    // The effects are the server's, not the script's word for them.
    assert_eq!(control.rule(&key()).unwrap().approved, Some(v("2.0.0.0")));
    assert_eq!(control.test_devices(), vec![MAC.parse().unwrap()]);
    t.server.shutdown().await.unwrap();
}

/// An outside peer: `tests/admin_errors.py` (urllib only) provokes every kind of admin refusal
/// (unknown path, unknown rule, bad path, bad escape, bad JSON, no token, foreign Origin, no
/// Content-Type) and requires each to be JSON `{"error": ...}` as docs/SERVER.md says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_refusal_is_json_to_a_python_client() {
    let t = start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/admin_errors.py");
    let admin = t.server.admin_url().unwrap().to_string();
    let token = t.server.admin_token().path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(admin)
            .arg(token)
            .output()
    })
    .await
    .unwrap();
    let out = match run {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: python3 is not installed");
            return;
        }
        Err(e) => panic!("cannot run python3: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        11,
        "{stdout}"
    );
}

/// What a client that administered the stub under its own keys removes when it is done,
/// without touching anyone else's data: the inventory entries of its own models
/// (`DELETE /admin/inventory/<model>`), and the stored files of its own rule keys (a files clear
/// scoped by `{"key": ..}`).
#[tokio::test]
async fn a_client_removes_its_own_models_inventory_and_files_only() {
    let t = app();
    let control = t.control();
    let mut a = t.admin();
    let mut c = t.conn(Site::Internal);
    c.check("1.0.0.0", MAC).await;
    c.check("1.0.0.0", OTHER_MAC).await;
    assert_eq!(control.inventory().len(), 2);
    let other = a
        .send(
            Method::DELETE,
            "/admin/inventory/UCPhone/Polycom/CX600/A/ENU",
            &[],
            "",
        )
        .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text());
    assert_eq!(json(&other)["removed"], 0);
    assert_eq!(control.inventory().len(), 2, "another model's entries stay");
    let model = key().to_string();
    let model = model.rsplit_once('/').unwrap().0;
    let ours = a
        .send(
            Method::DELETE,
            &format!("/admin/inventory/{model}"),
            &[],
            "",
        )
        .await;
    assert_eq!(json(&ours)["removed"], 2, "{}", ours.text());
    assert!(control.inventory().is_empty());
    let short = a
        .send(Method::DELETE, "/admin/inventory/UCPhone/Polycom", &[], "")
        .await;
    assert_eq!(short.status, StatusCode::NOT_FOUND);

    // Two keys' versions left by removed rules; a scoped clear deletes one key's only.
    let mine = key();
    let theirs: ucupdate_protocol::UpdateKey = "UCPhone/Polycom/CX600/A/ENU/CPE".parse().unwrap();
    for k in [&mine, &theirs] {
        control.publish(k, v("2.0.0.0"), files("v2")).await.unwrap();
        let rule = format!("/admin/rules/{k}");
        assert_eq!(
            a.send(Method::DELETE, &rule, &[], "").await.status,
            StatusCode::OK
        );
    }
    let body = format!(r#"{{"key": "{mine}"}}"#);
    let r = a.send(Method::POST, "/admin/files/clear", &[], body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let deleted = json(&r)["deleted"].clone();
    assert_eq!(deleted.as_array().unwrap().len(), 1, "{deleted}");
    assert_eq!(deleted[0]["key"], mine.to_string());
    let versions = a.get("/admin/versions", &[]).await.text();
    assert!(
        versions.contains("CX600") && !versions.contains("CX700"),
        "{versions}"
    );
    let bad = a
        .send(
            Method::POST,
            "/admin/files/clear",
            &[],
            r#"{"key": "nope"}"#,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
}
