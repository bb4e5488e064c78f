//! Unit tests of the suite's pieces, and one full run against an in-process `ucupdate-server`
//! (real sockets on 127.0.0.1, real TLS, real NTLM): every check passes there. The runs that
//! must fail against broken servers live in the integration tests (`tests/it/suite.rs`).

use std::time::Duration;

use ucupdate_protocol::{CheckRequest, FirmwareVersion};
use ucupdate_server_stub::{ServerConfig, UserDb};

use super::checks::{self, inject_unknown, newer, older, probe_bytes};
use super::*;

fn v(text: &str) -> FirmwareVersion {
    text.parse().unwrap()
}

#[test]
fn version_neighbours_follow_the_total_order() {
    assert_eq!(newer(v("1.0.0.1")), Some(v("1.0.0.2")));
    assert_eq!(newer(v("1.0.0.4294967295")), Some(v("1.0.1.0")));
    assert_eq!(
        newer(v("4294967295.4294967295.4294967295.4294967295")),
        None
    );
    assert_eq!(older(v("1.0.0.1")), Some(v("1.0.0.0")));
    assert_eq!(
        older(v("1.0.0.0")),
        Some(v("0.4294967295.4294967295.4294967295"))
    );
    assert_eq!(older(v("0.0.0.0")), None);
    for text in ["1.0.100.1", "0.0.1.0", "7.7.7.7"] {
        let x = v(text);
        assert!(older(x).unwrap() < x && x < newer(x).unwrap());
        assert_eq!(newer(older(x).unwrap()), Some(x));
    }
}

#[test]
fn unknown_elements_are_injected_and_our_decoder_still_reads_the_request() {
    let probe = ProbeDevice::default();
    let request = CheckRequest {
        identity: probe.identity.clone(),
        modules: vec![ucupdate_protocol::InstalledModule {
            update_type: probe.update_type.clone(),
            file_name: probe.image.clone(),
            version: probe.version,
            timestamp: None,
        }],
        user: None,
    };
    let text = inject_unknown(&request.encode()).unwrap();
    assert!(text.contains("<FutureField") && text.contains("FutureAttribute=\"1\""));
    assert!(text.contains("<VendorExtension/></DeviceUpdateRequest>"));
    assert_eq!(CheckRequest::decode(text.as_bytes()).unwrap(), request);
}

/// In another dialect the unknown element goes in its own namespace inside the root.
#[test]
fn unknown_elements_in_another_dialect() {
    let body = "<?xml version=\"1.0\"?>\n<s:Envelope xmlns:s=\"urn:s\"><s:Body><x:Check xmlns:x=\"urn:x\" x:v=\"1\"/></s:Body></s:Envelope>\n";
    let text = inject_unknown(body).unwrap();
    assert!(
        text.contains("<FutureField xmlns=\"urn:ucupdate:future\" Kind=\"x\"><Nested>value</Nested></FutureField></s:Envelope>"),
        "{text}"
    );
    ucupdate_protocol::xml::parse(text.as_bytes(), ucupdate_protocol::xml::Limits::MESSAGE)
        .unwrap();
}

#[test]
fn a_probe_spec_names_a_real_model() {
    let probe: ProbeDevice = "UCPhone/Polycom/CX700/A/ENU/CPE@1.0.522.101,mac=0004f2000176"
        .parse()
        .unwrap();
    assert_eq!(probe.identity.model.as_str(), "CX700");
    assert_eq!(probe.identity.mac.unwrap().to_string(), "00-04-F2-00-01-76");
    assert_eq!(
        probe.identity.serial,
        ProbeDevice::default().identity.serial
    );
    assert_eq!(
        (probe.image.as_str(), probe.version),
        ("CPE.nbt", v("1.0.522.101"))
    );
    let probe: ProbeDevice =
        "RoundTable/Microsoft/RT/A/ENU/RoundTable@1.0.0.5,serial=RT-1,image=rt.nbt"
            .parse()
            .unwrap();
    assert_eq!(
        (
            probe.image.as_str(),
            probe.identity.serial.unwrap().as_str()
        ),
        ("rt.nbt", "RT-1")
    );
    for bad in [
        "UCPhone/Polycom/CX700/A/ENU/CPE",
        "UCPhone/Polycom/CX700/A/ENU@1.0.0.1",
        "UCPhone/Polycom/CX700/A/ENU/CPE@1.0.x.1",
        "UCPhone/Polycom/CX700/A/ENU/CPE@1.0.0.1,mac=zz",
        "UCPhone/Polycom/CX700/A/ENU/CPE@1.0.0.1,colour=red",
    ] {
        assert!(bad.parse::<ProbeDevice>().is_err(), "{bad}");
    }
}

#[test]
fn probe_bytes_are_stable_and_differ_per_version() {
    let a = probe_bytes(v("1.0.0.1"), 1001);
    assert_eq!(a.len(), 1001);
    assert_eq!(a, probe_bytes(v("1.0.0.1"), 1001));
    assert_ne!(a, probe_bytes(v("1.0.0.2"), 1001));
}

#[test]
fn the_catalogue_has_unique_kebab_case_names_and_descriptions() {
    let list = catalogue();
    assert!(list.len() >= 20);
    let mut names: Vec<_> = list.iter().map(|(n, _)| *n).collect();
    for (name, description) in &list {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{name}"
        );
        assert!(
            !description.is_empty() && !description.contains('\n'),
            "{name}"
        );
    }
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), list.len());
    let mut options = Options::new(
        "http://127.0.0.1:1/RequestHandler/ucdevice.upx"
            .parse()
            .unwrap(),
    );
    options.only = vec!["check-accepted".into(), "no-such-check".into()];
    options.skip = vec!["range-requests".into(), "typo".into()];
    assert_eq!(unknown_names(&options), ["no-such-check", "typo"]);
    options.password = Some("hunter2".into());
    let shown = format!("{options:?}");
    assert!(
        shown.contains("<redacted>") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[test]
fn the_traversal_check_follows_the_offered_store_root() {
    use crate::checks::hostile_store_root as root;
    assert_eq!(
        root("/DeviceUpdateFiles_Int/UCPhone/Polycom"),
        "/DeviceUpdateFiles_Int"
    );
    assert_eq!(
        root("/RequestHandler/Files/UCPhone/Polycom"),
        "/RequestHandler/Files"
    );
    assert_eq!(
        root("/pool/requesthandler/files/UCPhone"),
        "/RequestHandler/Files"
    );
    assert_eq!(
        root("/RequestHandler/ucdevice.upx"),
        "/DeviceUpdateFiles_Int"
    );
}

#[test]
fn the_backslash_and_dot_paths_can_be_sent_as_written() {
    // The traversal check sends these raw; the http crate must not refuse them client-side.
    for path in [
        "/DeviceUpdateFiles_Int/..\\..\\windows\\win.ini",
        "/DeviceUpdateFiles_Int/../../etc/passwd",
        "/DeviceUpdateFiles_Int/%2e%2e/x",
    ] {
        let uri: http::Uri = path.parse().unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(uri.path(), path);
    }
}

fn result(name: &'static str, outcome: Outcome, detail: &str) -> CheckResult {
    CheckResult {
        name,
        description: "what it asserts",
        outcome,
        detail: detail.into(),
        duration: Duration::from_millis(12),
    }
}

#[test]
fn table_lists_every_check_and_counts_outcomes() {
    let results = [
        result("check-accepted", Outcome::Pass, "200"),
        result(
            "nbt-content-type",
            Outcome::Fail,
            "served as\n\"text/plain\"",
        ),
        result(
            "external-anonymous-401",
            Outcome::Skip,
            "needs --external-target",
        ),
    ];
    let table = render_table(&results);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("RESULT  CHECK"));
    assert!(
        lines[2].starts_with("FAIL    nbt-content-type ")
            && lines[2].ends_with("served as \"text/plain\"")
    );
    assert!(table.contains("3 checks: 1 passed, 1 failed, 1 skipped"));
}

#[test]
fn junit_escapes_what_servers_send() {
    let results = [
        result("check-accepted", Outcome::Pass, "ok <&>"),
        result(
            "nbt-content-type",
            Outcome::Fail,
            "got \"a\" & 'b' \u{1}\u{7} <x>",
        ),
        result("approve-transition", Outcome::Skip, "needs --admin"),
    ];
    let xml = junit_xml(&results, "conf \"suite\"");
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    assert!(xml.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""));
    assert!(xml.contains("name=\"conf &quot;suite&quot;\""));
    assert!(xml.contains(
        "<failure message=\"got &quot;a&quot; &amp; &apos;b&apos; \u{fffd}\u{fffd} &lt;x&gt;\""
    ));
    assert!(xml.contains("<skipped message=\"needs --admin\"/>"));
    assert!(!xml.contains('\u{1}'));
}

/// The whole suite against the stub, with admin and external site: every check passes, and a
/// second run over the same server state passes too (the admin setup is repeatable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_passes_against_the_stub_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::loopback(dir.path());
    config.users = UserDb::parse("CONTOSO\\alice:Secret1!\n").unwrap();
    let signer = ucupdate_server_stub::catalog::throwaway_signer(Default::default()).unwrap();
    config.catalog_signer = Some(std::sync::Arc::new(signer.signer));
    let server = ucupdate_server_stub::start(config).await.unwrap();
    let mut options = Options::new(server.internal_url().unwrap());
    options.trust =
        Some(ucupdate_agent::trust::TrustAnchors::from_pem(signer.ca_pem.as_bytes()).unwrap());
    options.external_target = server.external_url();
    options.user = Some("CONTOSO\\alice".into());
    options.password = Some("Secret1!".into());
    options.admin = server.admin_url();
    options.admin_token = Some(server.admin_token().secret().to_owned());
    options.ca_pem = Some(server.ca_pem().as_bytes().to_vec());
    for round in 0..2 {
        let results = run(&options).await;
        assert_eq!(results.len(), checks::CHECKS.len());
        let bad: Vec<_> = results
            .iter()
            .filter(|r| r.outcome != Outcome::Pass)
            .collect();
        assert!(bad.is_empty(), "round {round}:\n{}", render_table(&results));
    }
    server.shutdown().await.unwrap();
}

/// With no admin, no external site and a probe the server knows nothing of, the checks that
/// need them skip with a reason, and the rest still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_admin_or_external_the_dependent_checks_skip_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let server = ucupdate_server_stub::start(ServerConfig::loopback(dir.path()))
        .await
        .unwrap();
    let mut options = Options::new(server.internal_url().unwrap());
    options.skip = vec!["oversized-body-refused".into()];
    let results = run(&options).await;
    assert!(results.iter().all(|r| r.name != "oversized-body-refused"));
    for r in &results {
        match r.name {
            "check-accepted"
            | "unknown-elements-tolerated"
            | "malformed-body-refused"
            | "path-traversal-refused" => assert_eq!(r.outcome, Outcome::Pass, "{r:?}"),
            _ => {
                assert_eq!(r.outcome, Outcome::Skip, "{r:?}");
                assert!(
                    r.detail.starts_with("needs") || r.detail.contains("offers nothing"),
                    "{r:?}"
                );
            }
        }
    }
    server.shutdown().await.unwrap();
}

/// The CLI (or a test harness) may spawn a run on a multi-threaded runtime.
#[test]
fn a_run_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let options = Options::new(
        "http://127.0.0.1:1/RequestHandler/ucdevice.upx"
            .parse()
            .unwrap(),
    );
    let future = run(&options);
    assert_send(&future);
}
