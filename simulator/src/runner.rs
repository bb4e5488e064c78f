//! One call that runs a scenario end to end: start the embedded server (or connect to a remote
//! one), build the fleet's shared client, run the engine, stop the server. The CLI and the
//! tests both go through here, so what the tests check is what users run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use ucupdate_agent::perform::CatalogCheck;
use ucupdate_agent::trust::{CatalogMemo, CatalogPolicy, CatalogTrust, TrustAnchors};
use ucupdate_protocol::HttpUrl;

use crate::admin::Admin;
use crate::clock;
use crate::embedded::{self, ControlAdmin, HttpAdmin};
use crate::engine::{
    Engine, FaultRouting, ProgressSink, RunConfig, RunOutcome, StopSignal, Target, TimeScale,
};
use crate::faults::FaultProxies;
use crate::fleet::{DeviceSpec, FleetSpec, Shard};
use crate::scenario::{Faults, Scenario};
use crate::shared::{cleanup_notice, Footprint};
use crate::thresholds::Threshold;
use crate::transport::{MemoryTransport, Transport};

/// Where the devices go.
pub enum Server {
    /// Start the server stub in-process on loopback (data in `data_dir`, or a temporary dir).
    Embedded { data_dir: Option<PathBuf> },
    /// A server that is already running.
    Remote {
        internal: HttpUrl,
        external: Option<HttpUrl>,
        /// The admin API and its token (`--admin`, `--admin-token-file`).
        admin: Option<HttpAdmin>,
        ca_pem: Option<Vec<u8>>,
    },
}

/// What the simulated devices verify catalogs against (`--trust`).
#[derive(Debug, Clone, Default)]
pub enum CatalogTrustChoice {
    /// The embedded server's throwaway CA; against a remote server, no verification (with a
    /// warning: give `--trust PEM` to verify).
    #[default]
    Default,
    /// `--trust none`: the devices neither verify nor require catalogs.
    None,
    /// `--trust PEM`: these roots.
    Roots(Vec<u8>),
}

pub struct RunSpec {
    pub scenario: Scenario,
    /// How the devices verify catalogs (`--trust`).
    pub catalog_trust: CatalogTrustChoice,
    /// The wire dialect devices check in (`--dialect`); `None`: the built-in `ucupdate`.
    pub dialect: Option<std::sync::Arc<ucupdate_protocol::dialect::Dialect>>,
    pub fleet: FleetSpec,
    pub shard: Shard,
    pub time_scale: TimeScale,
    pub max_in_flight: usize,
    pub server: Server,
    /// `--transport`; `None`: in-memory pipes to the embedded server, TCP to a remote one.
    pub transport: Option<Transport>,
    pub trace_device: Option<u64>,
    pub user_domain: String,
    pub password_secret: String,
    pub dhcp_domain: String,
    pub tls_resumption: bool,
    /// Wall-clock limits of each request (a stalled server costs this much per device).
    pub timeouts: ucupdate_agent::net::Timeouts,
    /// Unix ms at virtual time zero (`--start-at`).
    pub start_unix_ms: u64,
    /// Pace against `start_unix_ms` (the shards' common clock) instead of from this process's
    /// own start (`--start-at` given).
    pub common_clock: bool,
    /// The shard that administers a shared (remote) server (`--admin-shard`, 0 by default).
    pub admin_shard: u64,
    pub collect_digests: bool,
    pub progress: Option<ProgressSink>,
    /// Thresholds on top of the scenario's `[thresholds]` (`--threshold`).
    pub thresholds: Vec<Threshold>,
    /// Stops the fleet early (the CLI's SIGINT/SIGTERM handler).
    pub stop: Option<StopSignal>,
    /// The engine's p99 lag past which the reports warn that it could not keep up.
    pub lag_bound: std::time::Duration,
    /// Stop the run as soon as a threshold fails on the data so far (`--abort-on-fail`).
    pub abort_on_fail: bool,
    /// Where notices go (what a run will change on a shared server, what it cleaned up);
    /// `None`: the log, at info.
    pub notices: Option<NoticeSink>,
}

/// Receives the run's notices (the CLI prints them on stderr).
pub type NoticeSink = Arc<dyn Fn(&str) + Send + Sync>;

impl RunSpec {
    /// The defaults the CLI uses, for `scenario` with `devices` devices on the embedded server.
    pub fn embedded(scenario: Scenario, fleet: FleetSpec) -> RunSpec {
        RunSpec {
            scenario,
            catalog_trust: CatalogTrustChoice::Default,
            dialect: None,
            fleet,
            shard: Shard::WHOLE,
            time_scale: TimeScale::Max,
            max_in_flight: 256,
            server: Server::Embedded { data_dir: None },
            transport: None,
            trace_device: None,
            user_domain: "SIMCORP".into(),
            password_secret: "ucupdate-sim".into(),
            dhcp_domain: "sim.example".into(),
            tls_resumption: true,
            timeouts: ucupdate_agent::net::Timeouts::default(),
            start_unix_ms: 1_795_600_000_000,
            common_clock: false,
            admin_shard: 0,
            collect_digests: false,
            progress: None,
            thresholds: Vec::new(),
            stop: None,
            lag_bound: std::time::Duration::from_millis(100),
            abort_on_fail: false,
            notices: None,
        }
    }
}

/// Starts one set of fault proxies in front of each server listener the devices use.
async fn fault_routing(target: &Target, faults: &Faults) -> anyhow::Result<FaultRouting> {
    let mut proxies = HashMap::new();
    let kinds = &faults.plan.kinds;
    for url in std::iter::once(&target.internal).chain(target.external.as_ref()) {
        let addr = tokio::net::lookup_host(url.authority())
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{} resolves to nothing", url.host))?;
        proxies.insert(url.port, Arc::new(FaultProxies::start(addr, kinds).await?));
    }
    Ok(FaultRouting {
        plan: faults.plan.clone(),
        until_ms: faults
            .until
            .map(|d| d.as_millis() as u64)
            .unwrap_or(u64::MAX),
        proxies,
    })
}

/// How long after the common clock's end of the run the coordinator waits for the other
/// shards' last requests before it cleans a shared server up.
const SHARDS_GRACE_MS: u64 = 5000;

/// How long the pre-flight waits for a TCP connection to the server.
const PREFLIGHT_CONNECT: std::time::Duration = std::time::Duration::from_secs(5);

/// Setup mistakes found before the first device powers on (exit 2, not a fleet of failed
/// verdicts): a fleet with no devices, a traced device the run does not hold, devices outside
/// the firewall with no external URL to reach, a server nothing answers on, shards sharing a
/// server the scenario changes without a common clock. `shared`: a remote server, which the
/// shards share and only the coordinator (`admin_shard`) administers.
pub async fn preflight(
    spec: &RunSpec,
    target: &Target,
    has_admin: bool,
    shared: bool,
) -> anyhow::Result<()> {
    let coordinator = !shared || spec.shard.index == spec.admin_shard;
    let slots = spec.shard.len(spec.fleet.devices);
    if spec.fleet.devices == 0 {
        anyhow::bail!("--devices 0: a run needs at least one device");
    }
    if slots == 0 {
        anyhow::bail!(
            "shard {}/{} of {} devices holds no device",
            spec.shard.index,
            spec.shard.count,
            spec.fleet.devices
        );
    }
    if let Some(index) = spec.trace_device {
        if index >= spec.fleet.devices {
            anyhow::bail!(
                "--trace-device {index}: no such device (the fleet has devices 0 to {})",
                spec.fleet.devices - 1
            );
        }
        if index % spec.shard.count != spec.shard.index {
            anyhow::bail!(
                "--trace-device {index} is not in shard {}/{} (it is in shard {}/{})",
                spec.shard.index,
                spec.shard.count,
                index % spec.shard.count,
                spec.shard.count
            );
        }
    }
    if spec.admin_shard >= spec.shard.count {
        anyhow::bail!(
            "--admin-shard {}: the run has shards 0 to {}",
            spec.admin_shard,
            spec.shard.count - 1
        );
    }
    if let Some(phase) = spec.scenario.phases.iter().find(|p| p.action.is_admin()) {
        // Shards of a shared server: one coordinator changes it at the phase's virtual time,
        // which means something to the other shards only on one paced, common clock.
        if shared
            && spec.shard.count > 1
            && (!spec.common_clock || spec.time_scale == TimeScale::Max)
        {
            anyhow::bail!(
                "scenario {} changes the server ({} at {}) and the {} shards share it: give every shard one --start-at and a paced --time-scale, so that the coordinator (shard {}) makes each change at the same virtual instant for all of them",
                spec.scenario.name,
                phase.action.name(),
                crate::duration::format_duration(phase.at),
                spec.shard.count,
                spec.admin_shard
            );
        }
        if coordinator && !has_admin {
            anyhow::bail!(
                "scenario {} changes the server's rules ({} at {}) but no admin API was given: give --admin URL and --admin-token-file FILE, or run against the embedded server",
                spec.scenario.name,
                phase.action.name(),
                crate::duration::format_duration(phase.at)
            );
        }
    }
    if target.external.is_none() {
        let outside = (0..slots)
            .map(|slot| spec.shard.index + slot * spec.shard.count)
            .filter(|&index| DeviceSpec::derive(index, &spec.fleet).external)
            .count();
        if outside > 0 {
            anyhow::bail!(
                "{outside} of the {slots} devices are outside the firewall (scenario {}, external share {}) and the server has no external URL: give --external-server URL",
                spec.scenario.name,
                spec.fleet.external_share
            );
        }
    }
    for url in std::iter::once(&target.internal).chain(target.external.as_ref()) {
        let connect = tokio::net::TcpStream::connect(url.authority());
        match tokio::time::timeout(PREFLIGHT_CONNECT, connect).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => anyhow::bail!("server unreachable: connecting to {url}: {e}"),
            Err(_) => anyhow::bail!(
                "server unreachable: connecting to {url}: no answer within {} s",
                PREFLIGHT_CONNECT.as_secs()
            ),
        }
    }
    Ok(())
}

/// The devices' [`CatalogCheck`] for `choice`, given the embedded server's CA when there is one.
fn catalog_check(
    choice: &CatalogTrustChoice,
    embedded_ca: Option<&str>,
) -> anyhow::Result<CatalogCheck> {
    let anchors = |pem: &[u8]| -> anyhow::Result<CatalogCheck> {
        Ok(CatalogCheck::Verify(Arc::new(CatalogTrust {
            anchors: TrustAnchors::from_pem(pem).map_err(|e| anyhow::anyhow!("--trust: {e}"))?,
            policy: CatalogPolicy::default(),
            trusted_clock: false,
            // One verdict per distinct catalog for the whole fleet (the devices share
            // these anchors and have no trusted clock: trust/memo.rs).
            memo: Some(Arc::new(CatalogMemo::new())),
        })))
    };
    match (choice, embedded_ca) {
        (CatalogTrustChoice::Roots(pem), _) => anchors(pem),
        (CatalogTrustChoice::None, _) => Ok(CatalogCheck::Skip),
        (CatalogTrustChoice::Default, Some(ca)) => anchors(ca.as_bytes()),
        (CatalogTrustChoice::Default, None) => {
            tracing::warn!(
                "simulated devices do not verify catalogs against this server: give --trust PEM \
                 (its vendors' catalog roots) to verify, or --trust none to say so"
            );
            Ok(CatalogCheck::Skip)
        }
    }
}

pub async fn run(mut spec: RunSpec) -> anyhow::Result<RunOutcome> {
    let mut embedded = None;
    let mut embedded_ca = None;
    let server = std::mem::replace(&mut spec.server, Server::Embedded { data_dir: None });
    let notify = |text: &str| match &spec.notices {
        Some(sink) => sink(text),
        None => tracing::info!("{text}"),
    };
    if matches!(server, Server::Remote { .. }) && spec.transport == Some(Transport::Memory) {
        anyhow::bail!(
            "--transport memory needs the embedded server (no --server): a remote server is reached over TCP"
        );
    }
    let mut remote_admin = None;
    let (target, mut admin, ca_pem): (Target, Option<Arc<dyn Admin>>, Option<Vec<u8>>) =
        match server {
            Server::Embedded { data_dir } => {
                let e = embedded::start(
                    &spec.fleet,
                    &spec.user_domain,
                    &spec.password_secret,
                    data_dir,
                    spec.dialect.clone(),
                )
                .await?;
                let admin: Arc<dyn Admin> = Arc::new(ControlAdmin(e.server.control()));
                embedded_ca = Some(e.catalog_ca_pem().to_owned());
                let parts = (
                    e.target.clone(),
                    Some(admin),
                    Some(e.ca_pem.clone().into_bytes()),
                );
                embedded = Some(e);
                parts
            }
            Server::Remote {
                internal,
                external,
                admin,
                ca_pem,
            } => {
                let addrs = tokio::net::lookup_host(internal.authority())
                    .await
                    .map_err(|e| anyhow::anyhow!("server unreachable: resolving {internal}: {e}"))?
                    .map(|a| a.ip())
                    .collect();
                remote_admin = admin.clone();
                let admin = admin.map(|admin| Arc::new(admin) as Arc<dyn Admin>);
                (
                    Target {
                        label: internal.to_string(),
                        internal,
                        external,
                        addrs,
                    },
                    admin,
                    ca_pem,
                )
            }
        };
    // Against its own embedded server every shard administers it; a shared server has one
    // coordinator.
    let shared = embedded.is_none();
    let coordinator = !shared || spec.shard.index == spec.admin_shard;
    // A shared server is administered only by a scenario that changes it, and then under the
    // probe models: every shard decides this from the scenario alone, so all of them check as
    // the models the coordinator publishes.
    let administers = spec.scenario.phases.iter().any(|p| p.action.is_admin());
    let probe_models = shared && administers;
    if shared && !administers && admin.is_some() {
        notify(&format!(
            "scenario {} changes nothing on the server: --admin is not used (no rule, test device              or file is added)",
            spec.scenario.name
        ));
        admin = None;
        remote_admin = None;
    }
    if let Err(e) = preflight(&spec, &target, admin.is_some(), shared).await {
        if let Some(e) = embedded {
            e.server.shutdown().await?;
        }
        return Err(e);
    }
    let footprint = match &remote_admin {
        Some(http) if probe_models && coordinator => {
            let footprint = Footprint::of(&spec.fleet);
            notify(&footprint.notice(&spec.scenario.name, &http.base.to_string()));
            let earlier = footprint.clear(http).await;
            if let Some(refused) = &earlier.refused {
                // Only a remote server has a footprint: no embedded one to stop.
                anyhow::bail!("server admin failed: {refused}: nothing was changed");
            }
            if let Some(text) = cleanup_notice(&earlier, true) {
                notify(&text);
            }
            Some((footprint, http.clone()))
        }
        _ => None,
    };
    let mut stop = spec.stop.clone();
    let run_end_unix_ms = match spec.time_scale {
        TimeScale::Factor(scale) if spec.common_clock && spec.shard.count > 1 => Some(
            spec.start_unix_ms
                + (spec.scenario.duration.as_millis() as f64 / scale.max(f64::MIN_POSITIVE)) as u64,
        ),
        _ => None,
    };
    // The embedded server's listeners are reached in memory unless `--transport tcp`.
    let memory = match (&embedded, spec.transport) {
        (Some(e), None | Some(Transport::Memory)) => {
            Some(MemoryTransport::new(e.server.in_memory()))
        }
        _ => None,
    };
    let client = embedded::client(
        &target,
        &spec.dhcp_domain,
        ca_pem.as_deref(),
        spec.tls_resumption,
        spec.timeouts,
        memory.as_ref().map(MemoryTransport::hook),
    )?;
    let faults = match &spec.scenario.faults {
        Some(f) => Some(fault_routing(&target, f).await?),
        None => None,
    };
    let proxies: Vec<Arc<FaultProxies>> = faults
        .iter()
        .flat_map(|f| f.proxies.values().cloned())
        .collect();
    let catalog = catalog_check(&spec.catalog_trust, embedded_ca.as_deref())?;
    let mut thresholds = spec.scenario.thresholds()?;
    thresholds.extend(spec.thresholds);
    let config = RunConfig {
        catalog,
        dialect: spec.dialect,
        scenario: spec.scenario,
        fleet: spec.fleet,
        shard: spec.shard,
        time_scale: spec.time_scale,
        max_in_flight: spec.max_in_flight,
        target,
        client,
        admin,
        probe_models,
        trace_device: spec.trace_device,
        user_domain: spec.user_domain,
        password_secret: spec.password_secret,
        dhcp_domain: spec.dhcp_domain,
        start_unix_ms: spec.start_unix_ms,
        common_clock: spec.common_clock,
        coordinator,
        collect_digests: spec.collect_digests,
        progress: spec.progress,
        faults,
        stop: spec.stop,
        abort_on: if spec.abort_on_fail {
            thresholds.clone()
        } else {
            Vec::new()
        },
    };
    let outcome = Engine::new(config).run().await;
    let mut shared_server = None;
    if let Some((footprint, http)) = footprint {
        let interrupted = outcome
            .as_ref()
            .is_ok_and(|o| o.report.interrupted.is_some());
        if let Some(end) = run_end_unix_ms.filter(|_| !interrupted) {
            // The other shards run to the same virtual end on the common clock: clean up once
            // their last checks are in, so none of them lands on a removed rule's model and
            // adds its inventory entry back.
            let wait = (end + SHARDS_GRACE_MS).saturating_sub(clock::unix_millis());
            let sleep = tokio::time::sleep(std::time::Duration::from_millis(wait));
            // A signal meanwhile cleans up at once.
            let stopped = async {
                match stop.as_mut() {
                    Some(s) => drop(s.wait_for(Option::is_some).await),
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = stopped => {}
            }
        }
        let done = footprint.clear(&http).await;
        if let Some(text) = cleanup_notice(&done, false) {
            notify(&text);
        }
        shared_server = Some(crate::shared::closing(&done));
    }
    for p in proxies {
        if let Ok(p) = Arc::try_unwrap(p) {
            p.shutdown().await;
        }
    }
    if let Some(e) = embedded {
        e.server.shutdown().await?;
    }
    let mut outcome = outcome?;
    outcome.report.shared_server = shared_server;
    outcome.report.transport = match &memory {
        Some(_) => Transport::Memory,
        None => Transport::Tcp,
    }
    .as_str()
    .to_owned();
    outcome.report.in_memory_connections = memory.map_or(0, |m| m.opened());
    outcome.report.lag_bound_ms = spec.lag_bound.as_millis() as u64;
    outcome.report.apply_thresholds(&thresholds);
    Ok(outcome)
}
