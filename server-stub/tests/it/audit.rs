//! The audit log as administrators' tools read it: the default CSV file parses with Python's
//! `csv.DictReader` by the column names a public community report script uses, quoted fields
//! included; the decision (offer or none) is in the metrics, not in a column.

use std::process::Command;

use ucupdate_protocol::CheckRequest;
use ucupdate_server_stub::audit::AUDIT_DIR;
use ucupdate_server_stub::Site;

use crate::common::*;

#[tokio::test]
async fn csv_audit_log_reads_with_python_csv_by_header_names() {
    let t = app();
    let control = t.control();
    control
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    control.approve(&key()).await.unwrap();
    let mut request = CheckRequest::decode(check_body("1.0.0.0", MAC).as_bytes()).unwrap();
    // A comma and quotes: the field must come back whole through RFC 4180 quoting.
    request.user = Some("CONTOSO\\bob, the \"tester\"".to_owned());
    let mut c = t.conn(Site::Internal);
    let reply = c
        .post(
            ucupdate_protocol::wire::INTERNAL_HANDLER_PATH,
            request.encode(),
        )
        .await;
    assert_eq!(
        offered(&reply.check()),
        Some(("approved", "2.0.0.0".into()))
    );
    c.check("2.0.0.0", MAC).await;
    let metrics = control.metrics();
    assert_eq!(metrics.decisions.get("approved"), Some(&1));
    assert_eq!(metrics.decisions.get("none"), Some(&1));

    // The audit lines are buffered until the server's flush tick (or this).
    control.flush().await.unwrap();
    let dir = t.dir.path().join(AUDIT_DIR);
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/audit_csv.py");
    let out = match Command::new("python3").arg(script).arg(&file).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED: python3 is not installed, the CSV audit log was not read by Python"
            );
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
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    let mac: ucupdate_protocol::MacAddress = MAC.parse().unwrap();
    for row in &rows {
        assert_eq!(row["User Host Address"], PEER.split(':').next().unwrap());
        assert_eq!(row["Mac Address"], mac.to_string());
        assert_eq!(row["Vendor"], "Polycom");
        assert_eq!(row["Model"], "CX700");
        assert_eq!(row["Revision"], "A");
        assert!(row["Logging DateTime"].as_str().unwrap().len() == 19);
    }
    assert_eq!(rows[0]["User ID"], "CONTOSO\\bob, the \"tester\"");
    assert_eq!(rows[0]["Request Modules"], "CPE.nbt;1.0.0.0;");
    let response = rows[0]["Response Modules"].as_str().unwrap();
    assert!(response.ends_with(";2.0.0.0;"), "{response}");
    assert_eq!(
        rows[1]["Response Modules"], "",
        "no update, no response module"
    );
    assert_eq!(rows[1]["User ID"], "");
}
