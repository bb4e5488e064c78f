//! `ucupdate-conformance`: the conformance suite alone, for CI images that need no simulator.
//! The same flags, output and exit codes as `ucupdate-sim conformance` (both are
//! [`ucupdate_conformance::cli`]): 0 every selected check passed or skipped, 1 a check failed,
//! 2 the run could not be carried out.

use std::process::ExitCode;

use clap::Parser;
use ucupdate_conformance::cli;

/// Check that a Device Update server behaves like the service devices expect: a table on
/// stdout, JUnit XML for CI, exit code 1 on any failed check (see docs/CONFORMANCE.md).
#[derive(Parser)]
#[command(name = "ucupdate-conformance", version)]
struct Cli {
    #[command(flatten)]
    args: cli::Args,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UCUPDATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour only on a terminal, never with NO_COLOR set (no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(&cli.args, "ucupdate-conformance")) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from(e));
            ExitCode::from(2)
        }
    }
}
