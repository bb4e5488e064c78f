//! `ucupdate-sim`: run a fleet of virtual devices against a Device Update server, merge shard
//! reports, list scenarios and profiles. Exit codes: 0 every expectation and threshold met, 1 a
//! scenario's expectations or a threshold failed (or a partial merge), 2 a setup error (the
//! run could not be carried out), 130 / 143 interrupted by SIGINT / SIGTERM.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ucupdate_agent::net::Timeouts;
use ucupdate_protocol::wire::{EXTERNAL_HANDLER_PATH, INTERNAL_HANDLER_PATH};
use ucupdate_protocol::HttpUrl;
use ucupdate_simulator::embedded::HttpAdmin;
use ucupdate_simulator::engine::{ProgressSink, TimeScale};
use ucupdate_simulator::fleet::{DeviceSpec, FleetSpec, Shard};
use ucupdate_simulator::profile::{self, Mix};
use ucupdate_simulator::report::outputs::Outputs;
use ucupdate_simulator::report::Report;
use ucupdate_simulator::runner::{self, CatalogTrustChoice, RunSpec, Server};
use ucupdate_simulator::scenario::{self, Scenario, BUILT_IN};
use ucupdate_simulator::{clock, duration, progress};

/// The default log filter: the simulator's own warnings, and only errors from the agent code
/// the devices run (see `init_logging`).
const DEFAULT_LOG_FILTER: &str = "warn,ucupdate_agent=error";

/// mimalloc instead of glibc's malloc. A fleet allocates and frees small blocks at every request
/// (hyper's buffers, the check's XML both ways, the embedded stub's side of each connection), and
/// glibc's malloc, free and bin consolidation were 19 % of the CPU of a compressed week. With
/// mimalloc the week of 100,000 devices takes 15-27 % less CPU and wall time and peaks lower
/// (321-327 against 405-417 MiB), and a fleet of 10M devices holds 477 B per device against 498
/// (1M: 499 against 509). Small runs pay a fixed cost instead: a week of 10,000 devices peaks at
/// 128-195 MiB against 97-102 MiB (docs/BENCHMARKS.md §3b, sixth round).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Fleets of virtual Communicator Phone Edition and RoundTable devices against a Device Update
/// server. With no --server, a server stub runs in-process.
#[derive(Parser)]
#[command(name = "ucupdate-sim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario (the default: 1000 mixed devices through `rollout` on the embedded server).
    Run(Box<RunArgs>),
    /// Merge shard reports (JSON from `run --report`) into the report of the whole fleet.
    Merge(MergeArgs),
    /// List the built-in scenarios.
    Scenarios,
    /// List the device profiles a fleet mix can name.
    Profiles,
    /// Print the simulated users (`DOMAIN\user:password`), for a remote server's --users file.
    Users(UsersArgs),
    /// Check that a Device Update server behaves like the service devices expect: a table on
    /// stdout, JUnit XML for CI, exit code 1 on any failed check (see docs/CONFORMANCE.md).
    Conformance(ucupdate_conformance::cli::Args),
    /// Learn a wire dialect from a captured check, or check one against a capture.
    Dialect(ucupdate_simulator::dialect_cmd::DialectArgs),
}

#[derive(Args, Clone)]
struct FleetArgs {
    /// Devices in the whole fleet [default: the scenario's, 1000 for the built-ins].
    #[arg(long)]
    devices: Option<u64>,
    /// Seed of every device's identity, jitter and activity: same seed, same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fleet mix as NAME=PERCENT,... (see `ucupdate-sim profiles`) [default: the scenario's].
    #[arg(long)]
    mix: Option<String>,
    /// Share of devices outside the firewall (external URL, NTLM) [default: the scenario's].
    #[arg(long)]
    external_share: Option<f64>,
    /// Share of devices with a signed-in user [default: the scenario's].
    #[arg(long)]
    signed_in_share: Option<f64>,
    /// Devices with the lowest global indices that are test devices [default: the scenario's].
    #[arg(long)]
    test_devices: Option<u64>,
    /// `DOMAIN` of the simulated users.
    #[arg(long, default_value = "SIMCORP")]
    user_domain: String,
    /// Secret the simulated users' passwords derive from.
    #[arg(long, default_value = "ucupdate-sim")]
    password_secret: String,
}

#[derive(Args)]
struct RunArgs {
    /// A built-in scenario name or a scenario TOML file.
    #[arg(long, default_value = "rollout")]
    scenario: String,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Internal check URL of the server under test (`http://pool/RequestHandler/ucdevice.upx`,
    /// or just `http://host:port` or `host:port`: the handler on it). Absent: the embedded
    /// server stub.
    #[arg(long)]
    server: Option<String>,
    /// External check URL (`https://edge/RequestHandlerExt/ucdevice.upx`).
    #[arg(long)]
    external_server: Option<String>,
    /// Admin API of a remote `ucupdate-server` (for scenarios that publish/approve/restore).
    #[arg(long, requires = "admin_token_file")]
    admin: Option<String>,
    /// That server's admin token file (its DATA/admin.token, or its --admin-token-file).
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// PEM bundle of CAs to trust for the server's certificate [default: web roots].
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The roots simulated devices verify catalogs against (PEM), or `none` to neither verify
    /// nor require catalogs [default: the embedded server's throwaway CA; against --server,
    /// no verification, with a warning].
    #[arg(long, value_name = "PEM|none")]
    trust: Option<String>,
    /// The wire dialect devices check in: a dialect file (`ucupdate-sim dialect learn`) or
    /// `ucupdate`, the built-in one [default: ucupdate].
    #[arg(long, value_name = "NAME.toml|ucupdate")]
    dialect: Option<String>,
    /// Keep the embedded server's data here instead of a temporary directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Virtual seconds per wall second (3600: a 24 h poll period lasts 24 s), or `max`.
    #[arg(long, default_value = "max")]
    time_scale: String,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Threads that run requests and the embedded server: `1` runs everything on one thread,
    /// the least CPU per check; more spread over the cores [default: one per core].
    #[arg(long, value_name = "N")]
    threads: Option<std::num::NonZeroUsize>,
    /// How devices reach the server: `memory` (in-memory pipes to the embedded server, no
    /// sockets) or `tcp` (loopback TCP, the kernel's path) [default: memory for the embedded
    /// server, tcp with --server].
    #[arg(long, value_enum)]
    transport: Option<ucupdate_simulator::transport::Transport>,
    /// Run only shard I of N (global indices I, I+N, ...); merge the reports with `merge`.
    #[arg(long)]
    shard: Option<String>,
    #[command(flatten)]
    outputs: OutputArgs,
    /// Print this device's timeline (virtual time, phase, event or action).
    #[arg(long)]
    trace_device: Option<u64>,
    /// The DHCP domain devices discover `ucupdates-r2.<domain>` in.
    #[arg(long, default_value = "sim.example")]
    domain: String,
    /// Turn TLS session resumption off (every connection a full handshake).
    #[arg(long)]
    no_tls_resumption: bool,
    /// No live progress (the bar on a terminal, the plain lines elsewhere).
    #[arg(long)]
    no_progress: bool,
    /// Off a terminal, print a plain progress line this often (wall time).
    #[arg(long, default_value = "10s", value_parser = scenario::duration_arg)]
    progress_interval: std::time::Duration,
    /// Serve the run's live numbers for Prometheus at http://ADDR/metrics (e.g. 127.0.0.1:9464;
    /// port 0 picks one, printed on stderr).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Warn (console and reports) when the engine's p99 lag behind its schedule passes this.
    #[arg(long, default_value = "100ms", value_parser = scenario::duration_arg)]
    lag_warning: std::time::Duration,
    /// Wall-clock limit on each request's response head and body gaps (connect and TLS
    /// handshake: at most 10 s): what a stalled server costs each device.
    #[arg(long, default_value = "30s", value_parser = scenario::duration_arg)]
    request_timeout: std::time::Duration,
    /// The wall instant of virtual time zero, the same for every shard of a fleet (their
    /// common clock): RFC 3339 (`2026-12-01T10:00:00Z`), `+DURATION` from now (`+2m`), or Unix
    /// seconds. A shard that starts early waits for it; one that starts late serves what is
    /// already past at once (reported as late). `--start-epoch` is its old name. [default: now,
    /// and the run's own start paces it; with --shard, 00:00 UTC today dates the devices]
    #[arg(long, alias = "start-epoch", value_name = "INSTANT")]
    start_at: Option<String>,
    /// The shard that administers a shared server (publish, approve, restore, reset) at the
    /// phases' virtual times on the common clock; the others run devices only.
    #[arg(long, default_value_t = 0, value_name = "N")]
    admin_shard: u64,
    /// A pass/fail limit on the report, k6-style, on top of the scenario's [thresholds]:
    /// `check-internal.p99<500ms`, `errors.rate<1%`, `devices.failed==0` (repeatable).
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<String>,
    /// Stop the run as soon as a threshold fails on the data so far (checked every 200 ms
    /// once the first phase is over); the run then fails (exit 1).
    #[arg(long)]
    abort_on_fail: bool,
    /// Shorter scenario: override its virtual duration (e.g. `12h`).
    #[arg(long, value_parser = scenario::duration_arg)]
    duration: Option<std::time::Duration>,
}

#[derive(Args)]
struct MergeArgs {
    /// Shard reports (JSON).
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    #[command(flatten)]
    outputs: OutputArgs,
    /// Merge even with shards missing: the result is marked partial and fails (exit 1).
    #[arg(long)]
    allow_partial: bool,
}

#[derive(Args)]
struct OutputArgs {
    /// Write the JSON report here (`-`: standard output, and the summary goes to stderr);
    /// its schema is docs/report.schema.json.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the self-contained HTML report here (`-`: standard output).
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write JUnit XML here: the verdicts and each threshold as a test case (`-`: stdout).
    #[arg(long)]
    junit: Option<PathBuf>,
}

impl OutputArgs {
    fn to_outputs(&self) -> Outputs {
        Outputs {
            json: self.report.clone(),
            html: self.html.clone(),
            junit: self.junit.clone(),
        }
    }
}

#[derive(Args)]
struct UsersArgs {
    /// A built-in scenario name or file (its fleet defaults apply).
    #[arg(long, default_value = "external")]
    scenario: String,
    #[command(flatten)]
    fleet: FleetArgs,
}

fn main() -> ExitCode {
    // The devices' own warnings (a SHA-256 mismatch, a refused connection) are what injected
    // faults cause by the thousand: the report counts them by class, so by default they are
    // not logged one by one (`UCUPDATE_LOG=warn` shows them).
    let filter = tracing_subscriber::EnvFilter::try_from_env("UCUPDATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    // Colour only on a terminal, never with NO_COLOR set (no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    let cli = Cli::parse();
    let command = match cli.command {
        Some(c) => c,
        None => match Cli::parse_from(["ucupdate-sim", "run"]).command {
            Some(c) => c,
            None => return ExitCode::from(2),
        },
    };
    let threads = match &command {
        Command::Run(args) => args.threads,
        _ => None,
    };
    let runtime = match ucupdate_simulator::threads::runtime(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(args) => run(*args).await,
        Command::Merge(args) => merge(args),
        Command::Scenarios => {
            for (name, toml) in BUILT_IN {
                let s = Scenario::parse(name, toml)?;
                println!(
                    "{name:<14} {} ({} virtual, {} devices)",
                    s.description,
                    duration::format_duration(s.duration),
                    s.fleet.devices
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Profiles => {
            for p in profile::all() {
                println!(
                    "{:<14} {:<34} starts on {}, updates to {}",
                    p.name,
                    p.key.to_string(),
                    p.initial,
                    p.target()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Conformance(args) => {
            Ok(ucupdate_conformance::cli::run(&args, "ucupdate-sim conformance").await?)
        }
        Command::Dialect(args) => {
            ucupdate_simulator::dialect_cmd::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Users(args) => {
            let scenario = Scenario::load(&args.scenario)?;
            let fleet = fleet_spec(&args.fleet, &scenario)?;
            for index in 0..fleet.devices {
                let spec = DeviceSpec::derive(index, &fleet);
                if spec.external && spec.signed_in {
                    println!(
                        "{}:{}",
                        spec.user(&args.fleet.user_domain),
                        spec.password(&args.fleet.password_secret)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn fleet_spec(args: &FleetArgs, scenario: &Scenario) -> Result<FleetSpec> {
    let mix = match args.mix.as_deref().or(scenario.fleet.mix.as_deref()) {
        Some(text) => text.parse::<Mix>()?,
        None => Mix::default_fleet(),
    };
    let share = |v: Option<f64>, default: f64, what: &str| -> Result<f64> {
        let v = v.unwrap_or(default);
        if !(0.0..=1.0).contains(&v) {
            bail!("{what} must be between 0 and 1");
        }
        Ok(v)
    };
    Ok(FleetSpec {
        devices: args.devices.unwrap_or(scenario.fleet.devices),
        mix,
        external_share: share(
            args.external_share,
            scenario.fleet.external_share,
            "--external-share",
        )?,
        signed_in_share: share(
            args.signed_in_share,
            scenario.fleet.signed_in_share,
            "--signed-in-share",
        )?,
        test_devices: args.test_devices.unwrap_or(scenario.fleet.test_devices),
        seed: args.seed,
    })
}

/// A handler URL from a flag, as every binary reads one (`HttpUrl::handler`).
fn handler_url(flag: &str, text: &str, path: &str) -> Result<HttpUrl> {
    HttpUrl::handler(text, path).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let outputs = args.outputs.to_outputs();
    outputs.check()?;
    let thresholds = ucupdate_simulator::thresholds::parse_all(&args.thresholds)?;
    let mut scenario = Scenario::load(&args.scenario)?;
    if let Some(d) = args.duration {
        scenario.duration = d;
        scenario.phases.retain(|p| p.at <= d);
    }
    let fleet = fleet_spec(&args.fleet, &scenario)?;
    let shard = match &args.shard {
        Some(s) => s.parse::<Shard>().map_err(anyhow::Error::msg)?,
        None => Shard::WHOLE,
    };
    let time_scale: TimeScale = args.time_scale.parse().map_err(anyhow::Error::msg)?;
    let start_at = args
        .start_at
        .as_deref()
        .map(|text| ucupdate_simulator::start::parse_start_at(text, clock::unix_millis()))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if let Some(ms) = start_at {
        let now = clock::unix_millis();
        let (by, side) = if ms >= now {
            (ms - now, "from now: this process waits for it")
        } else {
            (now - ms, "ago: this process joins the schedule in progress")
        };
        eprintln!(
            "ucupdate-sim: virtual time 0 is {} (--start-at), {:.3} s {side}",
            ucupdate_simulator::start::format_rfc3339(ms),
            by as f64 / 1000.0
        );
    }
    let ca = match &args.ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("--ca {}", path.display()))?)
        }
        None => None,
    };

    let server = match &args.server {
        None => Server::Embedded {
            data_dir: args.data_dir.clone(),
        },
        Some(server) => Server::Remote {
            internal: handler_url("--server", server, INTERNAL_HANDLER_PATH)?,
            external: args
                .external_server
                .as_deref()
                .map(|s| handler_url("--external-server", s, EXTERNAL_HANDLER_PATH))
                .transpose()?,
            admin: match (&args.admin, &args.admin_token_file) {
                (Some(u), Some(file)) => Some(HttpAdmin {
                    base: u.parse().with_context(|| format!("--admin {u}"))?,
                    token: std::fs::read_to_string(file)
                        .with_context(|| format!("--admin-token-file {}", file.display()))?
                        .trim()
                        .to_owned(),
                }),
                _ => None,
            },
            ca_pem: ca,
        },
    };

    let terminal = std::io::stderr().is_terminal();
    let progress: ProgressSink = progress::sink(progress::Options {
        start_line: progress::start_line(
            &scenario.name,
            shard.len(fleet.devices),
            &format!("{}/{}", shard.index, shard.count),
            time_scale,
        ),
        bar: !args.no_progress && terminal,
        interval: (!args.no_progress && !terminal).then_some(args.progress_interval),
        lag_warning: args.lag_warning,
    });
    let progress = match args.metrics {
        None => progress,
        Some(addr) => {
            let latest = ucupdate_simulator::live::Latest::default();
            let bound = ucupdate_simulator::live::serve(addr, latest.clone())
                .await
                .with_context(|| format!("--metrics {addr}"))?;
            eprintln!("ucupdate-sim: metrics on http://{bound}/metrics");
            let mut inner = progress;
            Box::new(move |p: &ucupdate_simulator::engine::Progress| {
                if let Ok(mut slot) = latest.lock() {
                    *slot = Some(p.clone());
                }
                inner(p);
            })
        }
    };
    let (stop, signals) = tokio::sync::watch::channel(None);
    listen_for_signals(stop)?;

    let catalog_trust = match args.trust.as_deref() {
        None => CatalogTrustChoice::Default,
        Some("none") => CatalogTrustChoice::None,
        Some(path) => CatalogTrustChoice::Roots(
            std::fs::read(path).with_context(|| format!("--trust {path}"))?,
        ),
    };
    let spec = RunSpec {
        catalog_trust,
        dialect: match args.dialect.as_deref() {
            None => None,
            Some(d) => Some(std::sync::Arc::new(ucupdate_simulator::dialect_cmd::load(
                d,
            )?)),
        },
        shard,
        time_scale,
        max_in_flight: args.max_in_flight,
        server,
        transport: args.transport,
        trace_device: args.trace_device,
        user_domain: args.fleet.user_domain.clone(),
        password_secret: args.fleet.password_secret.clone(),
        dhcp_domain: args.domain.clone(),
        tls_resumption: !args.no_tls_resumption,
        timeouts: Timeouts {
            connect: args.request_timeout.min(std::time::Duration::from_secs(10)),
            tls_handshake: args.request_timeout.min(std::time::Duration::from_secs(10)),
            response_head: args.request_timeout,
            body_idle: args.request_timeout,
        },
        start_unix_ms: match (start_at, args.shard.is_some()) {
            (Some(ms), _) => ms,
            // Without a common clock shard processes still agree on the day their devices
            // date their updates from (each paces from its own start).
            (None, true) => clock::unix_millis() / 86_400_000 * 86_400_000,
            (None, false) => clock::unix_millis(),
        },
        common_clock: start_at.is_some(),
        admin_shard: args.admin_shard,
        progress: Some(progress),
        thresholds,
        stop: Some(signals),
        lag_bound: args.lag_warning,
        abort_on_fail: args.abort_on_fail,
        notices: Some(std::sync::Arc::new(|text: &str| {
            eprintln!("ucupdate-sim: {text}")
        })),
        ..RunSpec::embedded(scenario, fleet)
    };
    let outcome = runner::run(spec).await?;
    if let Some(index) = args.trace_device {
        println!("timeline of device {index}:");
        for line in &outcome.trace {
            println!("{line}");
        }
        println!();
    }
    outputs.write(&outcome.report)?;
    if let Some(i) = &outcome.report.interrupted {
        return Ok(ExitCode::from(signal_exit_code(&i.signal)));
    }
    Ok(if outcome.report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// 128 + the signal's number, as a shell reports a process the signal ended.
fn signal_exit_code(signal: &str) -> u8 {
    if signal == "SIGTERM" {
        143
    } else {
        130
    }
}

/// The first SIGINT or SIGTERM asks the run to stop (the fleet stops, the reports are written,
/// marked interrupted); a second one exits at once.
fn listen_for_signals(stop: tokio::sync::watch::Sender<Option<&'static str>>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        let mut next = async || {
            tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            }
        };
        let first = next().await;
        eprintln!("ucupdate-sim: {first}: stopping the fleet and writing the reports (send it again to quit at once)");
        let _ = stop.send(Some(first));
        let second = next().await;
        eprintln!("ucupdate-sim: {second} again: quitting without the reports");
        std::process::exit(i32::from(signal_exit_code(second)));
    });
    Ok(())
}

fn merge(args: MergeArgs) -> Result<ExitCode> {
    let mut reports = Vec::new();
    for path in &args.reports {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let report: Report =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        reports.push(report);
    }
    let merged = Report::merge(reports, args.allow_partial)?;
    args.outputs.to_outputs().write(&merged)?;
    Ok(if merged.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// The subcommand is a thin shell over `ucupdate_conformance::cli`: exactly the standalone
    /// binary's flags, with the same help and defaults.
    #[test]
    fn conformance_takes_exactly_the_standalone_flags() {
        let describe = |command: &clap::Command| -> Vec<String> {
            let mut args: Vec<String> = command
                .get_arguments()
                .filter(|a| a.get_long().is_some())
                .map(|a| {
                    format!(
                        "--{} {:?} {:?} required={}",
                        a.get_long().unwrap_or_default(),
                        a.get_help().map(ToString::to_string),
                        a.get_value_delimiter(),
                        a.is_required_set()
                    )
                })
                .collect();
            args.sort();
            args
        };
        let sim = Cli::command();
        let sub = sim
            .find_subcommand("conformance")
            .expect("the conformance subcommand");
        let standalone = <ucupdate_conformance::cli::Args as clap::Args>::augment_args(
            clap::Command::new("ucupdate-conformance"),
        );
        let flags = describe(&standalone);
        assert!(
            flags.iter().any(|f| f.starts_with("--probe-key ")),
            "{flags:?}"
        );
        assert_eq!(describe(sub), flags);
    }

    #[test]
    fn conformance_flags_parse_through_the_subcommand() {
        let cli = Cli::try_parse_from([
            "ucupdate-sim",
            "conformance",
            "--target",
            "http://pool",
            "--only",
            "check-accepted,range-requests",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Some(Command::Conformance(args)) = cli.command else {
            panic!("not the conformance subcommand");
        };
        assert_eq!(args.target.as_deref(), Some("http://pool"));
        assert_eq!(args.only, ["check-accepted", "range-requests"]);
        assert!(Cli::try_parse_from(["ucupdate-sim", "conformance"]).is_err());
    }
}
