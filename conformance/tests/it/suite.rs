//! The conformance suite (`ucupdate_conformance`) against real servers on
//! 127.0.0.1: all green against `ucupdate-server` (admin, external NTLM site over TLS), and red
//! with exactly the right check named against deliberately broken configurations built with a
//! faulty reverse proxy in front of the stub. The JUnit output is checked with quick-xml.

use quick_xml::events::Event;
use ucupdate_agent::trust::TrustAnchors;
use ucupdate_conformance::{self as conformance, CheckResult, Options, Outcome};
use ucupdate_protocol::wire::{EXTERNAL_HANDLER_PATH, INTERNAL_HANDLER_PATH};
use ucupdate_server_stub::RunningServer;

use crate::proxy::{spawn_proxy, Fault};
use crate::{bind_loopback, catalog_ca, catalog_signer, http_url, stub, PASSWORD, USER};

/// Options for the whole suite against `server`: admin, external site, the user, its CA.
fn full_options(server: &RunningServer) -> Options {
    let mut options = Options::new(server.internal_url().expect("internal listener"));
    options.external_target = server.external_url();
    options.user = Some(USER.into());
    options.password = Some(PASSWORD.into());
    options.admin = server.admin_url();
    options.admin_token = Some(server.admin_token().secret().to_owned());
    options.ca_pem = Some(server.ca_pem().as_bytes().to_vec());
    options.trust = Some(TrustAnchors::from_pem(catalog_ca().as_bytes()).unwrap());
    options
}

fn names(results: &[CheckResult], outcome: Outcome) -> Vec<&'static str> {
    results
        .iter()
        .filter(|r| r.outcome == outcome)
        .map(|r| r.name)
        .collect()
}

fn result<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
    results
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no result for {name}"))
}

/// The suite with the internal site behind a proxy with `fault` (offers point at the proxy
/// too, so downloads go through it); everything else as in [`full_options`].
async fn run_behind_faulty_internal(fault: Fault) -> Vec<CheckResult> {
    let dir = tempfile::tempdir().unwrap();
    let listener = bind_loopback().await;
    let proxy_root = http_url(listener.local_addr().unwrap());
    let root = proxy_root.clone();
    let server = stub(dir.path(), move |c| c.public_internal_url = Some(root)).await;
    let _proxy = spawn_proxy(listener, server.internal_addr().unwrap(), fault);
    let mut options = full_options(&server);
    options.target = proxy_root.with_path(INTERNAL_HANDLER_PATH);
    let results = conformance::run(&options).await;
    server.shutdown().await.unwrap();
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_suite_is_green_against_the_stub() {
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let results = conformance::run(&full_options(&server)).await;
    let table = conformance::render_table(&results);
    assert_eq!(results.len(), conformance::catalogue().len(), "{table}");
    assert_eq!(
        names(&results, Outcome::Pass).len(),
        results.len(),
        "{table}"
    );
    // The device side really moved through the transitions: the stub saw the admin calls.
    assert!(server.control().hits("admin") >= 8, "{table}");
    server.shutdown().await.unwrap();
}

/// A stub that offers Lync's store URLs (`/RequestHandler/Files`): the suite follows them
/// (downloads, ranges, hashes, traversal under that root) and stays green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_follows_the_lync_store_layout() {
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |c| {
        c.store_layout = ucupdate_server_stub::layout::StoreLayout::Lync
    })
    .await;
    let results = conformance::run(&full_options(&server)).await;
    let table = conformance::render_table(&results);
    assert_eq!(
        names(&results, Outcome::Pass).len(),
        results.len(),
        "{table}"
    );
    let traversal = result(&results, "path-traversal-refused");
    assert!(
        traversal
            .detail
            .contains("under /RequestHandler/Files refused"),
        "{table}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbt_served_as_text_plain_fails_nbt_content_type_and_nothing_else() {
    let results = run_behind_faulty_internal(Fault::NbtContentType(Some("text/plain"))).await;
    let table = conformance::render_table(&results);
    assert_eq!(
        names(&results, Outcome::Fail),
        ["nbt-content-type"],
        "{table}"
    );
    assert!(
        result(&results, "nbt-content-type")
            .detail
            .contains("\"text/plain\""),
        "{table}"
    );
    // Downloads themselves still work through the proxy: the other checks saw them.
    assert_eq!(
        result(&results, "size-and-hash-match").outcome,
        Outcome::Pass,
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbt_without_content_type_fails_nbt_content_type_and_nothing_else() {
    let results = run_behind_faulty_internal(Fault::NbtContentType(None)).await;
    let table = conformance::render_table(&results);
    assert_eq!(
        names(&results, Outcome::Fail),
        ["nbt-content-type"],
        "{table}"
    );
    assert!(
        result(&results, "nbt-content-type")
            .detail
            .contains("no Content-Type"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ignoring_ranges_fails_range_requests_and_nothing_else() {
    let results = run_behind_faulty_internal(Fault::IgnoreRange).await;
    let table = conformance::render_table(&results);
    assert_eq!(
        names(&results, Outcome::Fail),
        ["range-requests"],
        "{table}"
    );
    assert!(
        result(&results, "range-requests").detail.contains("200 OK"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_differs_from_its_offered_hash_fails_size_and_hash_match_and_nothing_else() {
    let results = run_behind_faulty_internal(Fault::CorruptNbt).await;
    let table = conformance::render_table(&results);
    // The signed catalog catches the corrupted image too: the bytes served are not the ones
    // the catalog lists.
    assert_eq!(
        names(&results, Outcome::Fail),
        ["size-and-hash-match", "catalog-lists-image"],
        "{table}"
    );
    assert!(
        result(&results, "size-and-hash-match")
            .detail
            .contains("CPE.nbt: SHA-256 mismatch"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_external_site_fails_the_ntlm_checks() {
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let listener = bind_loopback().await;
    let proxy = spawn_proxy(
        listener,
        server.internal_addr().unwrap(),
        Fault::AnonymousExternal,
    );
    let mut options = full_options(&server);
    options.external_target = Some(http_url(proxy.addr).with_path(EXTERNAL_HANDLER_PATH));
    let results = conformance::run(&options).await;
    let table = conformance::render_table(&results);
    assert_eq!(
        names(&results, Outcome::Fail),
        [
            "external-anonymous-401",
            "external-wrong-password-401",
            "external-ntlm-same-connection",
            "external-type3-fresh-connection-refused",
        ],
        "{table}"
    );
    let anonymous = result(&results, "external-anonymous-401");
    assert!(anonymous.detail.contains("got 200 OK"), "{table}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_and_skip_select_checks_and_a_lone_transition_does_its_own_setup() {
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let mut options = full_options(&server);
    options.only = vec!["restore-transition".into(), "check-accepted".into()];
    options.skip = vec!["check-accepted".into()];
    let results = conformance::run(&options).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].name, "restore-transition");
    assert_eq!(results[0].outcome, Outcome::Pass, "{:?}", results[0]);
    server.shutdown().await.unwrap();
}

/// What a CI system reads out of the JUnit file: per testcase its name and whether it holds a
/// `failure` or a `skipped` element, plus the suite's counters.
#[derive(Debug, Default)]
struct Junit {
    cases: Vec<(String, Option<&'static str>)>,
    tests: Option<String>,
    failures: Option<String>,
}

fn parse_junit(xml: &str) -> Junit {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Junit::default();
    let attr = |e: &quick_xml::events::BytesStart<'_>, name: &str| {
        e.try_get_attribute(name)
            .unwrap()
            .map(|a| a.unescape_value().unwrap().into_owned())
    };
    loop {
        match reader
            .read_event()
            .unwrap_or_else(|e| panic!("bad JUnit XML: {e}\n{xml}"))
        {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"testsuite" => {
                    out.tests = attr(&e, "tests");
                    out.failures = attr(&e, "failures");
                }
                b"testcase" => out.cases.push((attr(&e, "name").unwrap(), None)),
                b"failure" => out.cases.last_mut().unwrap().1 = Some("failure"),
                b"skipped" => out.cases.last_mut().unwrap().1 = Some("skipped"),
                _ => {}
            },
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junit_of_a_failing_run_parses_and_names_the_failing_check() {
    let results = run_behind_faulty_internal(Fault::NbtContentType(Some("text/plain"))).await;
    let junit = parse_junit(&conformance::junit_xml(&results, "ucupdate <conformance>"));
    assert_eq!(junit.cases.len(), results.len());
    assert_eq!(
        junit.tests.as_deref(),
        Some(results.len().to_string().as_str())
    );
    assert_eq!(junit.failures.as_deref(), Some("1"));
    let failed: Vec<_> = junit
        .cases
        .iter()
        .filter(|(_, kind)| *kind == Some("failure"))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(failed, ["nbt-content-type"]);

    // A run with skips: each skip is a <skipped> element.
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let options = Options::new(server.internal_url().unwrap());
    let results = conformance::run(&options).await;
    let junit = parse_junit(&conformance::junit_xml(&results, "bare"));
    let skipped = junit
        .cases
        .iter()
        .filter(|(_, k)| *k == Some("skipped"))
        .count();
    assert_eq!(skipped, names(&results, Outcome::Skip).len());
    assert!(skipped > 0);
    server.shutdown().await.unwrap();
}

/// The internal site over HTTPS works the same; without the stub's CA the suite fails on
/// certificate trust, naming it, instead of hanging or passing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_internal_target_is_green_and_an_untrusted_certificate_fails_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let mut options = full_options(&server);
    options.target = server.internal_tls_url().unwrap();
    let results = conformance::run(&options).await;
    let table = conformance::render_table(&results);
    assert_eq!(
        names(&results, Outcome::Pass).len(),
        results.len(),
        "{table}"
    );

    options.ca_pem = None;
    options.only = vec!["check-accepted".into(), "external-anonymous-401".into()];
    let results = conformance::run(&options).await;
    let table = conformance::render_table(&results);
    assert_eq!(
        names(&results, Outcome::Fail),
        ["check-accepted", "external-anonymous-401"],
        "{table}"
    );
    assert!(results.iter().all(|r| r.detail.contains("TLS")), "{table}");
    server.shutdown().await.unwrap();
}

/// The pool case: no admin API, but the server already holds an approved update for the
/// probed model. The suite learns the approved version from the offer; only the rule checks
/// skip, each saying it needs --admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_admin_the_suite_learns_the_approved_version_from_a_real_rule() {
    use ucupdate_conformance::ProbeDevice;
    use ucupdate_protocol::FileName;

    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let key = ucupdate_server_stub::testing::key();
    // No catalog: the stub signs one, as `import --sign-cert` does for such a package.
    let files = vec![(FileName::new("CPE.nbt").unwrap(), vec![0x5a; 70_000])];
    let control = server.control();
    control
        .publish(&key, "1.0.522.200".parse().unwrap(), files)
        .await
        .unwrap();
    control.approve(&key).await.unwrap();

    let mut options = full_options(&server);
    options.admin = None;
    options.device = "UCPhone/Polycom/CX700/A/ENU/CPE@1.0.522.101,mac=00-04-F2-00-01-76"
        .parse::<ProbeDevice>()
        .unwrap();
    let results = conformance::run(&options).await;
    let table = conformance::render_table(&results);
    assert_eq!(
        names(&results, Outcome::Skip),
        [
            "test-device-gets-pending",
            "regular-device-gets-approved",
            "approve-transition",
            "restore-transition",
            "reset-transition",
        ],
        "{table}"
    );
    assert!(names(&results, Outcome::Fail).is_empty(), "{table}");
    assert!(
        result(&results, "offer-when-ahead")
            .detail
            .contains("1.0.522.201 is offered 1.0.522.200"),
        "{table}"
    );
    assert!(
        results
            .iter()
            .filter(|r| r.outcome == Outcome::Skip)
            .all(|r| r.detail.starts_with("needs --admin")),
        "{table}"
    );
    server.shutdown().await.unwrap();
}

/// A pool whose catalogs another CA signed (or a `--trust` that is not the vendor's): the
/// catalog does not verify (code 0x2, the phone's certificate-validation failure), and the
/// check that needs a verified catalog fails with it; nothing else does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_signed_by_another_ca_fails_catalog_verifies() {
    use ucupdate_server_stub::catalog::{throwaway_signer, LeafOptions};
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let mut options = full_options(&server);
    let other = throwaway_signer(LeafOptions::default()).unwrap();
    options.trust = Some(TrustAnchors::from_pem(other.ca_pem.as_bytes()).unwrap());
    let results = conformance::run(&options).await;
    let table = conformance::render_table(&results);
    assert_eq!(
        names(&results, Outcome::Fail),
        ["catalog-verifies", "catalog-lists-image"],
        "{table}"
    );
    let detail = &result(&results, "catalog-verifies").detail;
    assert!(detail.contains("code 0x2"), "{table}");
    assert_eq!(
        result(&results, "catalog-offered").outcome,
        Outcome::Pass,
        "{table}"
    );
    server.shutdown().await.unwrap();
}

/// A catalog the trusted CA signed that lists the image with another digest (an image swapped
/// after signing): it verifies, and catalog-lists-image fails naming the digest mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_listing_another_digest_fails_catalog_lists_image() {
    use ucupdate_conformance::ProbeDevice;
    use ucupdate_protocol::{FileName, UpdateKey};
    let dir = tempfile::tempdir().unwrap();
    // A server that does not sign: the catalog published below is the only one.
    let server = stub(dir.path(), |c| c.catalog_signer = None).await;
    let key: UpdateKey = "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap();
    let catalog = catalog_signer()
        .sign_files(&[("CPE.nbt", b"the image that was signed")], 1_780_000_000)
        .unwrap();
    let files = vec![
        (FileName::new("CPE.nbt").unwrap(), vec![0x5a; 70_000]),
        (FileName::new("CPE.cat").unwrap(), catalog),
    ];
    let control = server.control();
    control
        .publish(&key, "1.0.522.200".parse().unwrap(), files)
        .await
        .unwrap();
    control.approve(&key).await.unwrap();
    let mut options = full_options(&server);
    options.admin = None;
    options.device = "UCPhone/Polycom/CX700/A/ENU/CPE@1.0.522.101,mac=00-04-F2-00-01-76"
        .parse::<ProbeDevice>()
        .unwrap();
    let results = conformance::run(&options).await;
    let table = conformance::render_table(&results);
    assert_eq!(
        names(&results, Outcome::Fail),
        ["catalog-lists-image"],
        "{table}"
    );
    let detail = &result(&results, "catalog-lists-image").detail;
    assert!(detail.contains("code 0x5"), "{table}");
    assert!(detail.contains("does not match the digest"), "{table}");
    server.shutdown().await.unwrap();
}

/// Without --trust the catalog checks skip, saying what they need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trust_the_catalog_checks_skip_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let mut options = full_options(&server);
    options.trust = None;
    options.only = vec![
        "catalog-offered".into(),
        "catalog-verifies".into(),
        "catalog-lists-image".into(),
    ];
    let results = conformance::run(&options).await;
    assert_eq!(results.len(), 3);
    for r in &results {
        assert_eq!(r.outcome, Outcome::Skip, "{r:?}");
        assert!(r.detail.starts_with("needs --trust"), "{r:?}");
    }
    server.shutdown().await.unwrap();
}

/// A server that does not sign what its admin publishes (the suite publishes no placeholder
/// with --trust): the offer has no catalog, and catalog-offered names that first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_without_a_catalog_fails_catalog_offered() {
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |c| c.catalog_signer = None).await;
    let results = conformance::run(&full_options(&server)).await;
    let table = conformance::render_table(&results);
    assert_eq!(
        names(&results, Outcome::Fail),
        ["catalog-offered", "catalog-verifies", "catalog-lists-image"],
        "{table}"
    );
    assert!(
        result(&results, "catalog-offered")
            .detail
            .contains("names no .cat catalog"),
        "{table}"
    );
    server.shutdown().await.unwrap();
}
