//! `ucupdate-agent`: the device side of the Device Update Service. `run` is the daemon (a TOML
//! config plus flags for its key fields); `status`, `check-now`, `sign-in`, `sign-out` and
//! `activity` talk to the running daemon over its control socket (`status` falls back to the
//! state directory when the daemon is down). See `docs/AGENT.md`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use ucupdate_agent::device::read_password;
use ucupdate_agent::driver::config::DEFAULT_STATE_DIR;
use ucupdate_agent::driver::{
    read_offline_status, send_command, AgentConfig, Command as DriverCommand, ControlError, Driver,
    RunOutcome, StatusReport,
};

mod cli;

use cli::{Cli, Command, Global, LogFormat, Parsed, RunArgs};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os().skip(1)) {
        Parsed::Run(cli) => cli,
        Parsed::Print { text, code: 0 } => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Parsed::Print { text, code } => {
            eprintln!("{text}");
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ucupdate-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command {
        Command::Run(args) => runtime.block_on(daemon(&cli.global, *args)),
        Command::VerifyCatalog {
            roots,
            allow_sha1,
            catalog,
            files,
        } => verify_catalog(&roots, allow_sha1, &catalog, &files),
        other => runtime.block_on(client(&cli.global, other)),
    }
}

fn load_config(global: &Global) -> anyhow::Result<AgentConfig> {
    let path = global
        .config
        .as_deref()
        .context("`run` needs --config FILE (see agent.example.toml)")?;
    let mut config = AgentConfig::load(path)?;
    if let Some(dir) = &global.state_dir {
        config.state_dir = dir.clone();
    }
    Ok(config)
}

/// The state dir the client commands talk to: the flag, else the config's, else the default.
fn state_dir(global: &Global) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &global.state_dir {
        return Ok(dir.clone());
    }
    match &global.config {
        Some(path) => Ok(AgentConfig::load(path)?.state_dir),
        None => Ok(PathBuf::from(DEFAULT_STATE_DIR)),
    }
}

/// `RUST_LOG` as `level` or `target=level,...` lists (no span filters: `Targets` needs no regex
/// engine, which keeps the device binary smaller).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| text.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    // Colour only on a terminal, only when the build has the ANSI writer, and never with
    // NO_COLOR set (no-color.org).
    let ansi = cfg!(feature = "colour")
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}

async fn daemon(global: &Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    let mut config = load_config(global)?;
    if let Some(url) = args.server {
        config.machine.server_url = Some(url);
    }
    if let Some(url) = args.external_server {
        config.machine.external_server_url = Some(url);
    }
    if let Some(domain) = args.domain {
        config.machine.dhcp_domain = Some(domain);
    }
    if let Some(ns) = args.dns_server {
        config.dns.nameserver = Some(ns);
    }
    if let Some(ca) = args.ca {
        config.tls.ca_bundle = Some(ca);
    }
    if args.exit_on_reboot {
        config.agent.exit_on_reboot = true;
    }
    let device = config.device()?;
    let driver = Driver::new(config.driver_config()?, device);
    let handle = driver.handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        handle.send(DriverCommand::Shutdown);
    });
    match driver.run().await? {
        RunOutcome::Rebooted { version } => {
            tracing::info!(%version, "exiting for the restart");
            Ok(ExitCode::SUCCESS)
        }
        RunOutcome::Shutdown => Ok(ExitCode::SUCCESS),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn client(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    let dir = state_dir(global)?;
    match command {
        Command::Run(_) | Command::VerifyCatalog { .. } => unreachable!("handled by run()"),
        Command::Status { json } => status(&dir, json).await,
        Command::CheckNow => simple(&dir, "check-now").await,
        Command::SignOut => simple(&dir, "sign-out").await,
        Command::Activity => simple(&dir, "activity").await,
        Command::SignIn {
            user,
            password_file,
            internal_url,
            external_url,
        } => {
            if user.split_whitespace().count() != 1 {
                bail!("the user name must be one word (DOMAIN\\user or user@domain)");
            }
            let password = match password_file.as_deref() {
                None => String::new(),
                Some(p) if p == Path::new("-") => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the password from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
                Some(p) => read_password(p)?.expose().to_owned(),
            };
            let url = |u: &Option<String>| u.clone().unwrap_or_else(|| "-".into());
            let first = format!(
                "sign-in {user} {} {}",
                url(&internal_url),
                url(&external_url)
            );
            send_command(&dir, &[&first, &password]).await?;
            println!("signed in as {user}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `verify-catalog`: the install's decision, offline. Prints one line per file; exit 1 when
/// any file is refused.
fn verify_catalog(
    roots: &Path,
    allow_sha1: bool,
    catalog: &Path,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    use ucupdate_agent::digest;
    use ucupdate_agent::trust::{
        verify_catalog, CatalogClock, CatalogPolicy, ImageDigests, TrustAnchors,
    };
    let pem = std::fs::read(roots).with_context(|| format!("--roots {}", roots.display()))?;
    let anchors = TrustAnchors::from_pem(&pem).with_context(|| roots.display().to_string())?;
    let bytes = std::fs::read(catalog).with_context(|| catalog.display().to_string())?;
    let policy = CatalogPolicy {
        allow_sha1_catalogs: allow_sha1,
    };
    let verified = match verify_catalog(&bytes, &anchors, CatalogClock::Untrusted, policy) {
        Ok(v) => v,
        Err(refusal) => {
            println!(
                "{}: refused (0x{:x}): {refusal}",
                catalog.display(),
                refusal.code()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut all = true;
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: no file name", file.display()))?;
        let (_, sha256) =
            digest::of_file(file, &digest::SHA256).with_context(|| file.display().to_string())?;
        let sha1 = if allow_sha1 {
            let (_, d) =
                digest::of_file(file, &digest::SHA1).with_context(|| file.display().to_string())?;
            d.as_ref().try_into().ok()
        } else {
            None
        };
        let digests = ImageDigests {
            sha256: sha256
                .as_ref()
                .try_into()
                .context("a SHA-256 is 32 bytes")?,
            sha1,
        };
        match verified.verify_file(name, digests) {
            Ok(()) => println!("{}: ok", file.display()),
            Err(refusal) => {
                all = false;
                println!(
                    "{}: refused (0x{:x}): {refusal}",
                    file.display(),
                    refusal.code()
                );
            }
        }
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn simple(dir: &Path, verb: &str) -> anyhow::Result<ExitCode> {
    send_command(dir, &[verb]).await?;
    println!("ok");
    Ok(ExitCode::SUCCESS)
}

async fn status(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let report = match send_command(dir, &["status"]).await {
        Ok(text) => serde_json::from_str::<StatusReport>(&text)
            .context("the agent sent an unreadable status")?,
        Err(ControlError::NotRunning { .. }) => match read_offline_status(dir) {
            Ok(Some(report)) => report,
            Ok(None) => bail!("no agent is running and {} holds no state", dir.display()),
            Err(e) => bail!("{e}"),
        },
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}
