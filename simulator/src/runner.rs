//! One call that runs a scenario end to end: start the embedded server (or connect to a remote
//! one), build the fleet's shared client, run the engine, stop the server. The CLI and the
//! tests both go through here, so what the tests check is what users run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use ucupdate_agent::perform::CatalogCheck;
use ucupdate_agent::trust::{CatalogPolicy, CatalogTrust, TrustAnchors};
use ucupdate_protocol::HttpUrl;

use crate::admin::Admin;
use crate::embedded::{self, ControlAdmin, HttpAdmin};
use crate::engine::{Engine, FaultRouting, ProgressSink, RunConfig, RunOutcome, Target, TimeScale};
use crate::faults::FaultProxies;
use crate::fleet::{FleetSpec, Shard};
use crate::scenario::{Faults, Scenario};

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
    pub fleet: FleetSpec,
    pub shard: Shard,
    pub time_scale: TimeScale,
    pub max_in_flight: usize,
    pub server: Server,
    pub trace_device: Option<u64>,
    pub user_domain: String,
    pub password_secret: String,
    pub dhcp_domain: String,
    pub tls_resumption: bool,
    /// Wall-clock limits of each request (a stalled server costs this much per device).
    pub timeouts: ucupdate_agent::net::Timeouts,
    pub start_unix_ms: u64,
    pub collect_digests: bool,
    pub progress: Option<ProgressSink>,
}

impl RunSpec {
    /// The defaults the CLI uses, for `scenario` with `devices` devices on the embedded server.
    pub fn embedded(scenario: Scenario, fleet: FleetSpec) -> RunSpec {
        RunSpec {
            scenario,
            catalog_trust: CatalogTrustChoice::Default,
            fleet,
            shard: Shard::WHOLE,
            time_scale: TimeScale::Max,
            max_in_flight: 256,
            server: Server::Embedded { data_dir: None },
            trace_device: None,
            user_domain: "SIMCORP".into(),
            password_secret: "ucupdate-sim".into(),
            dhcp_domain: "sim.example".into(),
            tls_resumption: true,
            timeouts: ucupdate_agent::net::Timeouts::default(),
            start_unix_ms: 1_795_600_000_000,
            collect_digests: false,
            progress: None,
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

pub async fn run(spec: RunSpec) -> anyhow::Result<RunOutcome> {
    let mut embedded = None;
    let mut embedded_ca = None;
    let (target, admin, ca_pem): (Target, Option<Arc<dyn Admin>>, Option<Vec<u8>>) =
        match spec.server {
            Server::Embedded { data_dir } => {
                let e = embedded::start(
                    &spec.fleet,
                    &spec.user_domain,
                    &spec.password_secret,
                    data_dir,
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
                    .await?
                    .map(|a| a.ip())
                    .collect();
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
    let client = embedded::client(
        &target,
        &spec.dhcp_domain,
        ca_pem.as_deref(),
        spec.tls_resumption,
        spec.timeouts,
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
    let config = RunConfig {
        catalog,
        scenario: spec.scenario,
        fleet: spec.fleet,
        shard: spec.shard,
        time_scale: spec.time_scale,
        max_in_flight: spec.max_in_flight,
        target,
        client,
        admin,
        trace_device: spec.trace_device,
        user_domain: spec.user_domain,
        password_secret: spec.password_secret,
        dhcp_domain: spec.dhcp_domain,
        start_unix_ms: spec.start_unix_ms,
        collect_digests: spec.collect_digests,
        progress: spec.progress,
        faults,
    };
    let outcome = Engine::new(config).run().await;
    for p in proxies {
        if let Ok(p) = Arc::try_unwrap(p) {
            p.shutdown().await;
        }
    }
    if let Some(e) = embedded {
        e.server.shutdown().await?;
    }
    Ok(outcome?)
}
