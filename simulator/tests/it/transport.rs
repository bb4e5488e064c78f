//! `--transport`: the embedded server is reached through in-memory pipes by default and over
//! loopback TCP on request, with the same run for a seed either way; a remote server cannot be
//! reached in memory. (NTLM and TLS over the pipes: `scenarios.rs`'s external run, which is on
//! the embedded default.)

use ucupdate_simulator::engine::RunOutcome;
use ucupdate_simulator::fleet::FleetSpec;
use ucupdate_simulator::profile::Mix;
use ucupdate_simulator::runner::{self, RunSpec, Server};
use ucupdate_simulator::scenario::Scenario;
use ucupdate_simulator::transport::Transport;

async fn run(name: &str, devices: u64, seed: u64, transport: Option<Transport>) -> RunOutcome {
    let scenario = Scenario::load(name).unwrap();
    let fleet = FleetSpec {
        devices,
        mix: Mix::default_fleet(),
        external_share: scenario.fleet.external_share,
        signed_in_share: scenario.fleet.signed_in_share,
        test_devices: scenario.fleet.test_devices.min(devices / 10),
        seed,
    };
    let mut spec = RunSpec::embedded(scenario, fleet);
    spec.collect_digests = true;
    spec.transport = transport;
    runner::run(spec).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_gives_the_same_run_over_memory_and_tcp() {
    let memory = run("rollout", 60, 11, None).await;
    let tcp = run("rollout", 60, 11, Some(Transport::Tcp)).await;
    let (m, t) = (&memory.report, &tcp.report);
    assert_eq!(m.transport, "memory", "the embedded default");
    assert_eq!(t.transport, "tcp");
    assert!(
        m.in_memory_connections >= m.total_requests(),
        "every request went through a pipe: {} connections, {} requests",
        m.in_memory_connections,
        m.total_requests()
    );
    assert_eq!(t.in_memory_connections, 0, "none with --transport tcp");
    assert!(t.passed() && m.passed());
    assert_eq!(memory.digests.len(), 60);
    assert_eq!(
        memory.digests, tcp.digests,
        "same per-device event sequences"
    );
    assert_eq!(m.verdicts, t.verdicts);
    assert_eq!(m.requests, t.requests);
    assert_eq!(m.bytes_downloaded, t.bytes_downloaded);
    assert_eq!(m.curve(), t.curve());
}

#[tokio::test]
async fn a_remote_server_is_not_reached_in_memory() {
    let scenario = Scenario::load("steady").unwrap();
    let fleet = FleetSpec {
        devices: 1,
        mix: Mix::default_fleet(),
        external_share: 0.0,
        signed_in_share: 0.0,
        test_devices: 0,
        seed: 1,
    };
    let mut spec = RunSpec::embedded(scenario, fleet);
    spec.server = Server::Remote {
        internal: "http://127.0.0.1:9/RequestHandler/ucdevice.upx"
            .parse()
            .unwrap(),
        external: None,
        admin: None,
        ca_pem: None,
    };
    spec.transport = Some(Transport::Memory);
    let e = runner::run(spec).await.err().expect("refused");
    assert!(
        e.to_string()
            .contains("--transport memory needs the embedded server"),
        "{e}"
    );
}
