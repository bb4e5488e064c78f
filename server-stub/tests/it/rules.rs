//! Every rule transition, in memory through `App::call`: what a normal and a test device are
//! offered after publish, approve, restore and reset, driven through `Control` and the admin
//! API, and that an offered file's SHA-256 and size match what the file URL serves.

use http::{Method, StatusCode};
use sha2::{Digest, Sha256};
use ucupdate_protocol::CheckResponse;
use ucupdate_server_stub::{Site, TestDevice};

use crate::common::*;

#[tokio::test]
async fn every_rule_transition_through_control() {
    let t = app();
    let control = t.control();
    let mut c = t.conn(Site::Internal);

    // Nothing imported: nothing offered.
    assert_eq!(offered(&c.check("1.0.0.0", MAC).await), None);

    // Publish: pending. Only a test device gets it.
    control
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    assert_eq!(offered(&c.check("1.0.0.0", MAC).await), None);
    control.add_test_device(MAC.parse().unwrap()).await.unwrap();
    assert_eq!(
        offered(&c.check("1.0.0.0", MAC).await),
        Some(("pending", "2.0.0.0".into()))
    );
    assert_eq!(offered(&c.check("1.0.0.0", OTHER_MAC).await), None);

    // Approve: everyone, older included; not the device already on it.
    control.approve(&key()).await.unwrap();
    assert_eq!(
        offered(&c.check("1.0.0.0", OTHER_MAC).await),
        Some(("approved", "2.0.0.0".into()))
    );
    assert_eq!(
        offered(&c.check("9.0.0.0", OTHER_MAC).await),
        Some(("approved", "2.0.0.0".into()))
    );
    assert_eq!(offered(&c.check("2.0.0.0", OTHER_MAC).await), None);

    // A second version: pending for test devices, approved 2.0 for the rest.
    control
        .publish(&key(), v("3.0.0.0"), files("v3"))
        .await
        .unwrap();
    assert_eq!(
        offered(&c.check("2.0.0.0", MAC).await),
        Some(("pending", "3.0.0.0".into()))
    );
    assert_eq!(offered(&c.check("2.0.0.0", OTHER_MAC).await), None);

    // Reset cancels pending: the test device falls back to approved.
    control.reset(&key()).await.unwrap();
    assert_eq!(
        offered(&c.check("3.0.0.0", MAC).await),
        Some(("approved", "2.0.0.0".into()))
    );

    // Publish again, approve: 2.0 becomes the restore version.
    control
        .publish(&key(), v("3.0.0.0"), files("v3"))
        .await
        .unwrap();
    let rule = control.approve(&key()).await.unwrap();
    assert_eq!(
        (rule.approved, rule.restore),
        (Some(v("3.0.0.0")), Some(v("2.0.0.0")))
    );
    assert_eq!(
        offered(&c.check("2.0.0.0", OTHER_MAC).await),
        Some(("approved", "3.0.0.0".into()))
    );

    // Restore: everyone goes back to 2.0.
    control.restore(&key()).await.unwrap();
    assert_eq!(
        offered(&c.check("3.0.0.0", OTHER_MAC).await),
        Some(("restore", "2.0.0.0".into()))
    );
    // A second restore has no restore version: the update is uninstalled, nobody is offered
    // anything for the key (the devices keep what they run), and a third has nothing to undo.
    let rule = control.restore(&key()).await.unwrap();
    assert_eq!((rule.approved, rule.restore), (None, None));
    assert_eq!(offered(&c.check("3.0.0.0", OTHER_MAC).await), None);
    assert_eq!(offered(&c.check("2.0.0.0", MAC).await), None);
    assert!(control.restore(&key()).await.is_err());
    control
        .publish(&key(), v("3.0.0.0"), files("v3"))
        .await
        .unwrap();
    control.approve(&key()).await.unwrap();

    // Removing the test device: it is treated like the rest again.
    control
        .remove_test_device(MAC.parse::<TestDevice>().unwrap())
        .await
        .unwrap();
    assert_eq!(
        offered(&c.check("2.0.0.0", MAC).await),
        Some(("approved", "3.0.0.0".into()))
    );
    assert_eq!(control.hits("check"), 15);
}

#[tokio::test]
async fn offered_files_download_with_matching_hash_and_size() {
    let t = app();
    let control = t.control();
    control
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    control.approve(&key()).await.unwrap();
    let mut c = t.conn(Site::Internal);
    let CheckResponse::Update(offer) = c.check("1.0.0.0", MAC).await else {
        panic!("no offer")
    };
    assert!(
        offer
            .base_url
            .starts_with(&format!("{INTERNAL_BASE}DeviceUpdateFiles_Int/")),
        "{}",
        offer.base_url
    );
    assert!(
        offer
            .external_base_url
            .starts_with(&format!("{EXTERNAL_BASE}DeviceUpdateFiles_Ext/")),
        "{}",
        offer.external_base_url
    );
    assert_eq!(offer.files.len(), 3);
    for file in &offer.files {
        let path = format!("{}/{}", path_of(&offer.base_url), file.file_name);
        let reply = c.get(&path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(Some(reply.body.len() as u64), file.size);
        let digest: [u8; 32] = Sha256::digest(&reply.body).into();
        assert_eq!(Some(digest), file.sha256.map(|d| d.0));
    }
}

#[tokio::test]
async fn admin_api_drives_the_rules() {
    let t = app();
    let mut a = t.admin();
    let mut c = t.conn(Site::Internal);

    // Publish one file through the admin API: the version becomes pending.
    let put = a
        .send(
            Method::PUT,
            "/admin/files/UCPhone/Polycom/CX700/A/ENU/CPE/2.0.0.0/CPE.nbt",
            &[],
            &b"image"[..],
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    assert!(
        put.text().contains("\"pending\": \"2.0.0.0\""),
        "{}",
        put.text()
    );

    let add = a
        .send(Method::PUT, &format!("/admin/test-devices/{MAC}"), &[], "")
        .await;
    assert_eq!(add.status, StatusCode::OK, "{}", add.text());
    assert_eq!(
        offered(&c.check("1.0.0.0", MAC).await),
        Some(("pending", "2.0.0.0".into()))
    );
    let list = a.get("/admin/test-devices", &[]).await;
    assert!(list.text().contains(MAC));
    for lookalike in ["zz-zz", "00-04-F2-00-01"] {
        let bad = a
            .send(
                Method::PUT,
                &format!("/admin/test-devices/{lookalike}"),
                &[],
                "",
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{lookalike}");
        assert!(bad.text().contains("invalid MAC address"), "{}", bad.text());
    }
    let list = a.get("/admin/test-devices", &[]).await;
    assert!(!list.text().contains("zz"), "{}", list.text());

    let rule_path = "/admin/rules/UCPhone/Polycom/CX700/A/ENU/CPE";
    assert_eq!(
        a.send(Method::POST, &format!("{rule_path}/approve"), &[], "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        offered(&c.check("1.0.0.0", OTHER_MAC).await),
        Some(("approved", "2.0.0.0".into()))
    );
    // Nothing pending now: approve and reset are refused with 409 (reset works on pending
    // versions only).
    for action in ["approve", "reset"] {
        let r = a
            .send(Method::POST, &format!("{rule_path}/{action}"), &[], "")
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{action}: {}", r.text());
    }
    let unknown = a
        .send(
            Method::POST,
            "/admin/rules/UCPhone/Polycom/CX600/A/ENU/CPE/approve",
            &[],
            "",
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let rules = a.get("/admin/rules", &[]).await;
    let rules: serde_json::Value = serde_json::from_slice(&rules.body).unwrap();
    assert_eq!(rules[0]["key"], "UCPhone/Polycom/CX700/A/ENU/CPE");
    assert_eq!(rules[0]["approved"], "2.0.0.0");

    let inventory: serde_json::Value =
        serde_json::from_slice(&a.get("/admin/inventory", &[]).await.body).unwrap();
    let devices: Vec<&str> = inventory
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["device"].as_str().unwrap())
        .collect();
    assert_eq!(devices, vec![MAC, OTHER_MAC]);

    let del = a
        .send(
            Method::DELETE,
            &format!("/admin/test-devices/{MAC}"),
            &[],
            "",
        )
        .await;
    assert_eq!(del.status, StatusCode::OK);
    assert!(t.control().test_devices().is_empty());

    let metrics = a.get("/metrics", &[]).await;
    assert!(
        metrics
            .text()
            .contains("ucupdate_requests_total{endpoint=\"check\",status=\"200\"} 2"),
        "{}",
        metrics.text()
    );
}

#[tokio::test]
async fn import_through_the_admin_api_and_roundtable_deploy_on_import() {
    let t = app_with(tempfile::tempdir().unwrap(), |c| {
        c.deploy_roundtable_on_import = true
    });
    let pkg = tempfile::tempdir().unwrap();
    let rt_key: ucupdate_protocol::UpdateKey = "RoundTable/Microsoft/RoundTable/A/ENU/RoundTable"
        .parse()
        .unwrap();
    ucupdate_server_stub::package::write_cab(
        &pkg.path().join("UCUpdates.cab"),
        &[
            ucupdate_server_stub::PackageEntry {
                key: key(),
                version: v("2.0.0.0"),
                files: files("cab"),
            },
            ucupdate_server_stub::PackageEntry {
                key: rt_key.clone(),
                version: v("1.5.0.0"),
                files: vec![(
                    ucupdate_protocol::FileName::new("RTConfig.xml").unwrap(),
                    b"<RTConfig/>".to_vec(),
                )],
            },
        ],
    )
    .unwrap();
    let mut a = t.admin();
    let body = serde_json::json!({ "path": pkg.path().join("UCUpdates.cab") }).to_string();
    let r = a.send(Method::POST, "/admin/import", &[], body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let control = t.control();
    assert_eq!(control.rule(&key()).unwrap().pending, Some(v("2.0.0.0")));
    assert_eq!(
        control.rule(&rt_key).unwrap().approved,
        Some(v("1.5.0.0")),
        "RoundTable deploys on import"
    );
    let missing = a
        .send(
            Method::POST,
            "/admin/import",
            &[],
            r#"{"path": "/nonexistent/pkg"}"#,
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
}
