//! Restart persistence: rules, test devices, the file catalog and the inventory survive a
//! stop and a start on the same data directory, and the audit log has one line per check.

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

    let audit_dir = t.dir.path().join("audit");
    let files: Vec<_> = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let lines: Vec<AuditRecord> = text
        .lines()
        .map(|l| AuditRecord::parse_line(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].outcome, "approved CPE 2.0.0.0");
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
    let state_file = t.dir.path().join("state.json");
    let mut c = Conn::plain(t.server.internal_addr().unwrap()).await;
    c.check("1.0.0.0", MAC).await;
    let before = std::fs::read_to_string(&state_file).unwrap_or_default();
    assert!(
        !before.contains(MAC),
        "a check must not write the state file itself"
    );
    t.server.control().flush().await.unwrap();
    assert!(std::fs::read_to_string(&state_file).unwrap().contains(MAC));
}
