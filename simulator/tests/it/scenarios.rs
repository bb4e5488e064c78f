//! Every built-in scenario runs against the embedded server stub with its verdicts checked, and
//! a run is reproducible from its seed. Real sockets, real HTTP, the agent's own machine.

use ucupdate_simulator::engine::RunOutcome;
use ucupdate_simulator::fleet::{FleetSpec, Shard};
use ucupdate_simulator::profile::Mix;
use ucupdate_simulator::runner::{self, RunSpec};
use ucupdate_simulator::scenario::Scenario;

fn fleet(scenario: &Scenario, devices: u64, seed: u64) -> FleetSpec {
    FleetSpec {
        devices,
        mix: Mix::default_fleet(),
        external_share: scenario.fleet.external_share,
        signed_in_share: scenario.fleet.signed_in_share,
        test_devices: scenario.fleet.test_devices.min(devices / 10),
        seed,
    }
}

async fn run(name: &str, devices: u64, seed: u64, digests: bool) -> RunOutcome {
    let scenario = Scenario::load(name).unwrap();
    let fleet = fleet(&scenario, devices, seed);
    let mut spec = RunSpec::embedded(scenario, fleet);
    spec.collect_digests = digests;
    runner::run(spec).await.unwrap()
}

async fn assert_passes(name: &str, devices: u64) -> RunOutcome {
    let outcome = run(name, devices, 7, false).await;
    let r = &outcome.report;
    assert!(
        r.passed(),
        "{name}: {}",
        ucupdate_simulator::report::text::render(r)
    );
    assert_eq!(r.verdicts.passed, devices);
    assert!(
        r.total_requests() >= devices,
        "{name}: every device checked"
    );
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_every_device_polls_and_stays() {
    let r = assert_passes("steady", 120).await.report;
    // Powered on over a day, then every 24 h: at least two checks each, no downloads.
    assert!(r.requests["check-internal"]["200"] >= 240);
    assert!(!r.requests.contains_key("download"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_storm_checks_once_each_spread_by_jitter() {
    let r = assert_passes("boot-storm", 150).await.report;
    let (peak, _, _) = r.bunching();
    // 150 devices in a 5-minute window plus up to 10 minutes of power-on jitter: no minute
    // holds a third of them.
    assert!(peak < 50, "peak {peak} per minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_wave_adds_a_check_per_device() {
    let r = assert_passes("sign-in-wave", 100).await.report;
    assert!(r.requests["check-internal"]["200"] >= 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_converges_and_serves_the_image() {
    let r = assert_passes("rollout", 120).await.report;
    let downloads = r.requests["download"]["200"];
    assert!(
        downloads >= 120,
        "image and catalog for every device: {downloads}"
    );
    assert!(r.bytes_downloaded >= 120 * 65_536);
    // Curve: at the end every device runs the target version.
    let (_, on_target, on_initial) = *r.curve().last().unwrap();
    assert_eq!((on_target, on_initial), (120, 0));
    assert!(r.convergence_at(1.0).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_every_device() {
    let r = assert_passes("rollback", 100).await.report;
    let (_, on_target, on_initial) = *r.curve().last().unwrap();
    assert_eq!((on_target, on_initial), (0, 100));
    let peak_on_target = r.curve().iter().map(|&(_, t, _)| t).max().unwrap();
    assert_eq!(
        peak_on_target, 100,
        "everyone ran the update before the restore"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_devices_update_over_ntlm_or_are_denied() {
    let r = assert_passes("external", 80).await.report;
    let external = &r.requests["check-external"];
    assert!(
        external.get("401").copied().unwrap_or(0) > 0,
        "devices without a user are denied: {external:?}"
    );
    assert!(
        external.get("200").copied().unwrap_or(0) > 0,
        "devices with a user get through: {external:?}"
    );
    assert!(
        !r.requests.contains_key("check-internal"),
        "outside devices never use the internal URL"
    );
    // The embedded default reaches the stub through in-memory pipes: TLS and NTLM ran over them.
    assert_eq!(r.transport, "memory");
    assert!(
        r.tls_handshake_ms.count > 0,
        "TLS handshakes over the pipes"
    );
    assert!(r.in_memory_connections >= r.total_requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_fixes_every_device_sequence() {
    let a = run("rollout", 60, 11, true).await;
    let b = run("rollout", 60, 11, true).await;
    assert_eq!(a.digests.len(), 60);
    let differ: Vec<u64> = a
        .digests
        .iter()
        .zip(&b.digests)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.0)
        .collect();
    assert!(
        differ.is_empty(),
        "same seed, same server: same per-device event sequences; differ: {differ:?}"
    );
    assert_eq!(a.report.verdicts, b.report.verdicts);
    assert_eq!(a.report.requests, b.report.requests);
    let c = run("rollout", 60, 12, true).await;
    let same = a
        .digests
        .iter()
        .zip(&c.digests)
        .filter(|(x, y)| x == y)
        .count();
    assert!(
        same < 6,
        "another seed changes almost every device ({same} equal)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_explains_one_device() {
    let scenario = Scenario::load("rollout").unwrap();
    let fleet = fleet(&scenario, 30, 3);
    let mut spec = RunSpec::embedded(scenario, fleet);
    spec.trace_device = Some(12);
    let outcome = runner::run(spec).await.unwrap();
    let text = outcome.trace.join("\n");
    for needle in [
        "power-on (boot 0)",
        "action check",
        "event  check-done",
        "action download",
        "action install",
        "action reboot",
        "power-on (boot 1)",
        "scenario phase approve",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_in_process_merge_to_the_whole_fleet() {
    let whole = run("rollout", 40, 5, false).await.report;
    let mut parts = Vec::new();
    for i in 0..4 {
        let scenario = Scenario::load("rollout").unwrap();
        let fleet = fleet(&scenario, 40, 5);
        let mut spec = RunSpec::embedded(scenario, fleet);
        spec.shard = Shard { index: i, count: 4 };
        parts.push(runner::run(spec).await.unwrap().report);
    }
    let merged = ucupdate_simulator::report::Report::merge(parts, false).unwrap();
    assert_eq!(merged.devices, whole.devices);
    assert_eq!(merged.requests, whole.requests);
    assert_eq!(merged.verdicts, whole.verdicts);
    assert_eq!(merged.curve(), whole.curve());
    assert_eq!(merged.arrivals_per_minute, whole.arrivals_per_minute);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_converges_through_injected_faults() {
    // A third of all requests meet a fault of every kind until 30 h; the devices must back off,
    // never take a corrupted image, and all end on the approved version once the faults clear.
    let toml = r#"
        name = "faulty-rollout"
        description = "rollout through faults"
        duration = "3d"
        [fleet]
        signed_in_share = 0.5
        image_size = 65536
        [faults]
        rate = 0.34
        kinds = ["reset-mid-response", "truncate", "stall-response", "stall-request",
                 "server-error503", "unauthorized401", "corrupt-body", "refuse-connect"]
        until = "30h"
        [[phase]]
        at = "0s"
        action = "power-on"
        window = "30m"
        [[phase]]
        at = "1h"
        action = "publish"
        [[phase]]
        at = "2h"
        action = "approve"
        [expect]
        final = "target"
        min_checks = 2
    "#;
    let scenario = Scenario::parse("faulty-rollout", toml).unwrap();
    let fleet = fleet(&scenario, 60, 21);
    let mut spec = RunSpec::embedded(scenario, fleet);
    spec.timeouts.response_head = std::time::Duration::from_millis(500);
    spec.timeouts.body_idle = std::time::Duration::from_millis(500);
    let r = runner::run(spec).await.unwrap().report;
    assert!(
        r.passed(),
        "{}",
        ucupdate_simulator::report::text::render(&r)
    );
    for kind in [
        "reset-mid-response",
        "stall-response",
        "server-error503",
        "corrupt-body",
        "refuse-connect",
    ] {
        assert!(
            r.faults_injected.get(kind).copied().unwrap_or(0) > 0,
            "{kind} never injected: {:?}",
            r.faults_injected
        );
    }
    for class in ["http5xx", "timeout", "hash_mismatch"] {
        assert!(
            r.errors.get(class).copied().unwrap_or(0) > 0,
            "no {class} errors seen: {:?}",
            r.errors
        );
    }
    // Back-off: a third of the checks fail, yet no virtual hour holds more check arrivals than
    // the machine's cap (6 per device per hour) allows for the fleet: no retry storm.
    let worst_hour = r
        .arrivals_per_minute
        .windows(60)
        .map(|w| w.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    assert!(
        worst_hour <= 60 * 6,
        "{worst_hour} checks in one virtual hour from 60 devices"
    );
    assert!(worst_hour > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_every_check_is_a_setup_error_not_failed_verdicts() {
    // A web server that is not a Device Update server: every check gets a 404. Devices staying
    // on their version would be no success, and a fleet of failed verdicts would hide the
    // mistake: the run stops when the first phase is over, with a setup error.
    let port = crate::setup::refusing_server();
    let scenario = Scenario::load("boot-storm").unwrap();
    let fleet = fleet(&scenario, 20, 4);
    let mut spec = RunSpec::embedded(scenario, fleet);
    spec.server = ucupdate_simulator::runner::Server::Remote {
        internal: format!("http://127.0.0.1:{port}/RequestHandler/ucdevice.upx")
            .parse()
            .unwrap(),
        external: None,
        admin: None,
        ca_pem: None,
    };
    let err = runner::run(spec).await.err().expect("a setup error");
    let text = format!("{err:#}");
    assert!(text.contains("refused every check"), "{text}");
    assert!(text.contains("check-internal 404="), "{text}");
}

/// A log upload that finishes while a slow download is still out does not cut the download:
/// one "request in flight" flag per device would be cleared by the upload, re-arm the
/// machine's download watchdog and make it refuse the download's late answer. With per-kind
/// tracking the download still completes: one request per file, and no answer the machine did
/// not expect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_upload_that_finishes_first_does_not_cut_a_slow_download() {
    let text = r#"
        name = "slow-download-beside-a-log-upload"
        description = "A log upload after the check, beside a download ten times slower."
        duration = "1d"

        [fleet]
        devices = 20
        signed_in_share = 0.0
        image_size = 65536
        # 655 s of virtual transfer per image: far beyond the 5 min watchdog below, which only
        # a device whose engine forgot the download is in flight lets fire.
        bandwidth = 100

        [agent]
        log_upload = "after-check"
        download_timeout = "5m"

        [[phase]]
        at = "0s"
        action = "power-on"
        window = "10m"

        [[phase]]
        at = "0s"
        action = "publish"

        [[phase]]
        at = "0s"
        action = "approve"

        [expect]
        final = "target"
        min_checks = 1
    "#;
    let scenario = Scenario::parse("slow-download-beside-a-log-upload", text).unwrap();
    let devices = 20;
    let fleet = fleet(&scenario, devices, 5);
    // A RoundTable update also carries its RTConfig.xml (the stub adds a generic one).
    let rt = ucupdate_simulator::profile::index_of("RoundTable").unwrap();
    let roundtables = (0..devices)
        .filter(|&i| ucupdate_simulator::fleet::DeviceSpec::derive(i, &fleet).profile == rt)
        .count() as u64;
    let spec = RunSpec::embedded(scenario.clone(), fleet);
    let r = runner::run(spec).await.unwrap().report;
    assert!(
        r.passed(),
        "{}",
        ucupdate_simulator::report::text::render(&r)
    );
    assert!(
        r.requests["log-upload"].values().sum::<u64>() >= devices,
        "every device uploaded its log beside the download: {:?}",
        r.requests
    );
    assert_eq!(
        r.errors.get("machine-unexpected-event"),
        None,
        "no download answer arrived after the machine gave up on it"
    );
    let downloads: u64 = r.requests["download"].values().sum();
    assert_eq!(
        downloads,
        2 * devices + roundtables,
        "image and catalog once per device (and a RoundTable's RTConfig.xml), no retry after \
         a false timeout"
    );
}

/// `--admin` against a separate stub: every publish and approve carries the bearer token (the
/// rollout converges), and a wrong token stops the run at its first change with the 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_stub_is_driven_through_its_admin_api_with_its_token() {
    use ucupdate_simulator::embedded::HttpAdmin;
    use ucupdate_simulator::runner::Server;
    let dir = tempfile::tempdir().unwrap();
    let mut config = ucupdate_server_stub::ServerConfig::loopback(dir.path());
    config.internal_tls = None;
    config.external = None;
    let server = ucupdate_server_stub::start(config).await.unwrap();
    let scenario = Scenario::load("rollout").unwrap();
    let remote = |token: &str| Server::Remote {
        internal: server.internal_url().unwrap(),
        external: None,
        admin: Some(HttpAdmin {
            base: server.admin_url().unwrap(),
            token: token.to_owned(),
        }),
        ca_pem: None,
    };

    let mut spec = RunSpec::embedded(scenario.clone(), fleet(&scenario, 20, 3));
    spec.server = remote("not-the-token");
    let err = runner::run(spec)
        .await
        .err()
        .expect("a wrong token must fail");
    assert!(format!("{err:#}").contains("401"), "{err:#}");

    let mut spec = RunSpec::embedded(scenario.clone(), fleet(&scenario, 20, 3));
    spec.server = remote(server.admin_token().secret());
    let r = runner::run(spec).await.unwrap().report;
    assert!(
        r.passed(),
        "{}",
        ucupdate_simulator::report::text::render(&r)
    );
    server.shutdown().await.unwrap();
}

/// A scenario whose faults refuse every request for the first hour is a fault scenario, not a
/// setup error: the run goes on, and the devices get their checks answered once it clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_that_refuse_everything_at_first_are_not_a_setup_error() {
    let toml = r#"
        name = "outage-at-boot"
        description = "every request refused for the first hour"
        duration = "1d"
        [faults]
        rate = 1.0
        kinds = ["refuse-connect"]
        until = "1h"
        [[phase]]
        at = "0s"
        action = "power-on"
        window = "5m"
        [expect]
        min_checks = 1
    "#;
    let scenario = Scenario::parse("outage-at-boot", toml).unwrap();
    let fleet = fleet(&scenario, 20, 8);
    let r = runner::run(RunSpec::embedded(scenario, fleet))
        .await
        .unwrap()
        .report;
    assert!(
        r.errors.values().sum::<u64>() >= 20,
        "every first check refused: {:?}",
        r.errors
    );
    assert!(
        r.passed(),
        "{}",
        ucupdate_simulator::report::text::render(&r)
    );
}

/// The simulated devices run the agent's catalog verifier: given roots that did not sign the
/// embedded server's catalogs, no device installs the rollout, and the failures say why; with
/// `--trust none` they install without verifying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_devices_refuse_catalogs_their_roots_did_not_sign() {
    use ucupdate_simulator::runner::CatalogTrustChoice;
    let foreign = ucupdate_server_stub::catalog::throwaway_signer(Default::default()).unwrap();
    let scenario = Scenario::load("rollout").unwrap();
    let mut spec = RunSpec::embedded(scenario.clone(), fleet(&scenario, 20, 4));
    spec.catalog_trust = CatalogTrustChoice::Roots(foreign.ca_pem.into_bytes());
    let r = runner::run(spec).await.unwrap().report;
    assert_eq!(
        r.verdicts.passed,
        0,
        "{}",
        ucupdate_simulator::report::text::render(&r)
    );
    let reasons = format!("{:?}", r.verdicts.failures);
    assert!(
        reasons.contains("catalog signer is not trusted"),
        "{reasons}"
    );

    let mut spec = RunSpec::embedded(scenario.clone(), fleet(&scenario, 20, 4));
    spec.catalog_trust = CatalogTrustChoice::None;
    let r = runner::run(spec).await.unwrap().report;
    assert!(
        r.passed(),
        "{}",
        ucupdate_simulator::report::text::render(&r)
    );
}

/// The `bad_signature` publish fault: every device downloads the catalog, refuses it as a bad
/// signature and stays on what it runs (the expectation); with the expectation inverted the
/// verdict names the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_catalog_signature_is_refused_by_every_device_and_named() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/scenarios/bad-signature.toml"
    );
    let scenario = Scenario::load(path).unwrap();
    let r = runner::run(RunSpec::embedded(scenario.clone(), fleet(&scenario, 30, 2)))
        .await
        .unwrap()
        .report;
    assert!(
        r.passed(),
        "{}",
        ucupdate_simulator::report::text::render(&r)
    );
    assert!(r.total_requests() > 60, "the devices kept checking");

    let mut expecting_target = scenario;
    expecting_target.expect.final_version = ucupdate_simulator::scenario::FinalVersion::Target;
    let r = runner::run(RunSpec::embedded(
        expecting_target.clone(),
        fleet(&expecting_target, 30, 2),
    ))
    .await
    .unwrap()
    .report;
    assert_eq!(r.verdicts.passed, 0);
    let reasons = format!("{:?}", r.verdicts.failures);
    assert!(
        reasons.contains("update refused (0x3): bad catalog signature"),
        "{reasons}"
    );
}
