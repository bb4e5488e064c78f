//! Restart persistence: rules, test devices, the file catalog and the inventory survive a
//! stop and a start on the same data directory, the audit log has one line per check, and
//! every change the admin API acknowledged survives a SIGKILL of the `ucupdate-server` process.

use std::time::Duration;

use ucupdate_protocol::AuditRecord;

use crate::common::*;

#[tokio::test]
async fn state_survives_a_restart() {
    let t = start().await;
    let control = t.server.control();
    control
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    control.approve(&key()).await.unwrap();
    control
        .publish(&key(), v("3.0.0.0"), files("v3"))
        .await
        .unwrap();
    control
        .add_test_device("serial:PCX-7".parse().unwrap())
        .await
        .unwrap();
    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
    assert_eq!(
        offered(&c.check("1.0.0.0", MAC).await),
        Some(("approved", "2.0.0.0".into()))
    );
    drop(c);
    let TestServer { server, dir } = t;
    server.shutdown().await.unwrap();

    let t = start_with(dir, |_| {}).await;
    let control = t.server.control();
    let rule = control.rule(&key()).unwrap();
    assert_eq!(
        (rule.pending, rule.approved),
        (Some(v("3.0.0.0")), Some(v("2.0.0.0")))
    );
    assert_eq!(
        control.test_devices(),
        vec!["serial:PCX-7".parse().unwrap()]
    );
    let inventory = control.inventory();
    assert_eq!(
        inventory.len(),
        1,
        "the check before the restart is in the inventory"
    );
    assert_eq!(inventory[0].device, MAC);
    assert_eq!(inventory[0].versions["CPE"], "1.0.0.0");
    assert_eq!(inventory[0].last_offer, "approved CPE 2.0.0.0");
    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
    assert_eq!(
        offered(&c.check("1.0.0.0", MAC).await),
        Some(("approved", "2.0.0.0".into()))
    );

    // The audit lines are buffered until the server's flush tick (or this).
    control.flush().await.unwrap();
    let audit_dir = t.dir.path().join("Logs/Server/Audit/imageUpdates");
    let files: Vec<_> = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let lines: Vec<AuditRecord> = ucupdate_protocol::audit::parse_log(&text).unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0].response.len(),
        1,
        "the offer is in Response Modules"
    );
    assert_eq!(lines[0].response[0].version.to_string(), "2.0.0.0");
    assert!(files[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("RequestHandlerAuditLog_ucupdate_"));
}

#[tokio::test]
async fn inventory_is_flushed_in_batches_not_per_check() {
    let t = start_with(tempfile::tempdir().unwrap(), |c| {
        c.flush_interval = Duration::from_secs(3600)
    })
    .await;
    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
    c.check("1.0.0.0", MAC).await;
    assert!(
        stored_inventory(t.dir.path()).is_empty(),
        "a check must not write the database itself"
    );
    t.server.control().flush().await.unwrap();
    assert_eq!(stored_inventory(t.dir.path()), vec![MAC.to_owned()]);
}

/// `ucupdate-server serve --init` on `data` with the internal and admin listeners on port 0;
/// the child and an admin connection to it (with the token from the file it names).
pub(crate) async fn serve(data: &std::path::Path) -> (std::process::Child, Conn) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ucupdate-server"))
        .args(["serve", "--init", "--data"])
        .arg(data)
        .args([
            "--internal",
            "127.0.0.1:0",
            "--internal-tls",
            "off",
            "--external",
            "off",
            "--admin",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (admin, token_file) = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok);
        let admin = lines
            .find_map(|line| {
                line.strip_prefix("admin ")
                    .map(|url| url.trim().parse::<ucupdate_protocol::HttpUrl>().unwrap())
            })
            .expect("the server prints its admin listener");
        let token = lines
            .find_map(|line| line.strip_prefix("admin-token ").map(str::to_owned))
            .expect("the server prints its admin token file");
        (admin, token)
    })
    .await
    .unwrap();
    let token = std::fs::read_to_string(token_file.trim()).unwrap();
    let addr = format!("127.0.0.1:{}", admin.port).parse().unwrap();
    (child, Conn::plain(addr).await.with_token(token.trim()))
}

/// Every change the admin API acknowledged is in the database before the answer: a SIGKILL
/// right after the answers loses none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_a_sigkill() {
    use http::{Method, StatusCode};
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut a) = serve(dir.path()).await;
    let rule = "UCPhone/Polycom/CX700/A/ENU/CPE";
    for version in ["3.0.0.1", "3.0.0.2"] {
        let put = a
            .send(
                Method::PUT,
                &format!("/admin/files/{rule}/{version}/CPE.nbt"),
                &[],
                version.to_owned(),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.text());
        let approve = a
            .send(
                Method::POST,
                &format!("/admin/rules/{rule}/approve"),
                &[],
                "",
            )
            .await;
        assert_eq!(approve.status, StatusCode::OK, "{}", approve.text());
    }
    let add = a
        .send(Method::PUT, &format!("/admin/test-devices/{MAC}"), &[], "")
        .await;
    assert_eq!(add.status, StatusCode::OK, "{}", add.text());
    // Power cut right after the last acknowledgement.
    child.kill().unwrap();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let (mut child, mut a) = serve(dir.path()).await;
    let rules = a.get("/admin/rules", &[]).await;
    assert_eq!(rules.status, StatusCode::OK);
    let rules: serde_json::Value = serde_json::from_slice(&rules.body).unwrap();
    assert_eq!(rules[0]["key"], rule);
    assert_eq!(rules[0]["approved"], "3.0.0.2", "{rules}");
    assert_eq!(rules[0]["restore"], "3.0.0.1", "{rules}");
    let devices = a.get("/admin/test-devices", &[]).await;
    assert!(devices.text().contains(MAC), "{}", devices.text());
    let versions = a.get("/admin/versions", &[]).await.text();
    assert!(
        versions.contains("3.0.0.1") && versions.contains("3.0.0.2"),
        "{versions}"
    );
    child.kill().unwrap();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
}
