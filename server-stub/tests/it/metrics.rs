//! `/metrics` as a Prometheus server reads it, over real loopback sockets: after a device's
//! check and an admin call, the request-duration histogram, the offers by status, the devices
//! per reported version and the device connections apart from admin ones are all there, and
//! the whole text parses with the official Python client's parser (`prometheus_client`, an
//! independent peer; the test is skipped with a message when it cannot be installed).

use crate::common::*;

fn python_parses(text: &str) -> Option<String> {
    let have = std::process::Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have {
        let _ = std::process::Command::new("python3")
            .args(["-m", "pip", "install", "-q", "prometheus_client"])
            .status();
    }
    let script =
        "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
                  fams = list(p(sys.stdin.read()))\n\
                  print(' '.join(sorted(f.name + ':' + f.type for f in fams)))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    use std::io::Write;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    if out.status.success() {
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("No module named"),
            "prometheus_client refused the exposition: {err}"
        );
        None
    }
}

#[tokio::test]
async fn metrics_show_durations_offers_devices_and_connections() {
    let t = start().await;
    t.server
        .control()
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    t.server.control().approve(&key()).await.unwrap();
    let mut device = Conn::plain(t.server.internal_addr().unwrap()).await;
    assert!(matches!(
        device.check("1.0.0.0", MAC).await,
        ucupdate_protocol::CheckResponse::Update(_)
    ));
    let mut admin = t.admin().await;
    let text = admin.get("/metrics", &[]).await.text();
    for needle in [
        "ucupdate_request_duration_seconds_count{endpoint=\"check\"} 1\n",
        "ucupdate_request_duration_seconds_bucket{endpoint=\"check\",le=\"+Inf\"} 1\n",
        "ucupdate_check_decisions_total{decision=\"approved\"} 1\n",
        "ucupdate_devices{update_type=\"CPE\",version=\"1.0.0.0\"} 1\n",
        "ucupdate_connections_total 1\n",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    assert!(
        !text.contains("ucupdate_admin_connections_total 0\n"),
        "the admin connection is counted apart:\n{text}"
    );
    match python_parses(&text) {
        Some(families) => {
            for family in [
                "ucupdate_request_duration_seconds:histogram",
                "ucupdate_devices:gauge",
                "ucupdate_connections:counter",
                "ucupdate_admin_connections:counter",
                "ucupdate_check_decisions:counter",
            ] {
                assert!(families.contains(family), "{family} not in {families}");
            }
        }
        None => eprintln!("prometheus_client not installable here: parser check skipped"),
    }
}
