//! `ucupdate-sim dialect learn|check|show`: a wire dialect from one captured exchange, and the
//! proof that it reproduces the capture (see docs/PROTOCOL.md, "Dialects").

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ucupdate_protocol::dialect::check::{check, CheckReport};
use ucupdate_protocol::dialect::learn::{learn, Exchange, Hints};
use ucupdate_protocol::dialect::Dialect;

use crate::capture;

#[derive(Args)]
pub struct DialectArgs {
    #[command(subcommand)]
    pub command: DialectCommand,
}

#[derive(Subcommand)]
pub enum DialectCommand {
    /// Learn a dialect from a capture (pcap/pcapng, HAR 1.2, or a folder with request.xml,
    /// reply.xml and optionally request.http) and write it as TOML.
    Learn(LearnArgs),
    /// Show that a dialect reproduces a capture byte for byte outside its placeholders, and
    /// what it reads from the captured reply.
    Check {
        /// The dialect file (or `ucupdate`, the built-in one).
        dialect: String,
        capture: PathBuf,
        /// The TCP port of the HTTP traffic in a pcap capture.
        #[arg(long, default_value_t = 80)]
        port: u16,
    },
    /// Print the built-in dialect's file (a starting point for a hand-written one).
    Show,
}

#[derive(Args)]
pub struct LearnArgs {
    pub capture: PathBuf,
    /// The TCP port of the HTTP traffic in a pcap capture.
    #[arg(long, default_value_t = 80)]
    pub port: u16,
    /// Where to write the dialect.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// The dialect's name [default: the output file's stem].
    #[arg(long)]
    pub name: Option<String>,
    /// The device's MAC, when the check holds more than one.
    #[arg(long)]
    pub mac: Option<String>,
    /// The module's running version (a value or the element/attribute name it is at), when
    /// the check holds more than one version or the same one twice.
    #[arg(long)]
    pub version: Option<String>,
    /// The device's model (a value or the element/attribute name it is at).
    #[arg(long)]
    pub model: Option<String>,
}

/// Reads `--dialect NAME.toml|ucupdate`.
pub fn load(spec: &str) -> Result<Dialect> {
    Ok(ucupdate_conformance::cli::load_dialect(spec)?)
}

pub fn run(args: &DialectArgs) -> Result<()> {
    match &args.command {
        DialectCommand::Show => {
            print!("{}", Dialect::builtin_toml());
            Ok(())
        }
        DialectCommand::Learn(a) => learn_cmd(a),
        DialectCommand::Check {
            dialect,
            capture,
            port,
        } => {
            let dialect = load(dialect)?;
            let capture = read_capture(capture, *port)?;
            let report = check(&dialect, &capture)?;
            print_report(&report, &capture);
            if !report.identical {
                bail!("the dialect does not reproduce the captured check");
            }
            report
                .offers
                .as_ref()
                .map_err(|e| anyhow::anyhow!("the dialect cannot read the captured reply: {e}"))?;
            Ok(())
        }
    }
}

fn read_capture(path: &Path, port: u16) -> Result<Exchange> {
    let capture =
        capture::read(path, port).with_context(|| format!("capture {}", path.display()))?;
    for note in &capture.notes {
        eprintln!("note: {note}");
    }
    Ok(capture.exchange)
}

fn learn_cmd(a: &LearnArgs) -> Result<()> {
    let exchange = read_capture(&a.capture, a.port)?;
    let name = a.name.clone().unwrap_or_else(|| {
        a.output
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "learned".into())
    });
    let hints = Hints {
        mac: a.mac.clone(),
        version: a.version.clone(),
        model: a.model.clone(),
    };
    let learned = learn(&name, &exchange, &hints)?;
    // Never write a dialect that does not reproduce its own capture.
    let report = check(&learned.dialect, &exchange)?;
    if !report.identical {
        bail!(
            "the learned dialect does not reproduce the capture (differs at byte {:?}); pass --mac/--version/--model",
            report.first_difference
        );
    }
    std::fs::write(&a.output, &learned.toml)
        .with_context(|| format!("writing {}", a.output.display()))?;
    println!("wrote dialect `{name}` to {}", a.output.display());
    for (placeholder, value, field) in &learned.placeholders {
        println!("  {{{{{placeholder}}}}} = {value:?}  (at `{field}`)");
    }
    if !learned.stripped_headers.is_empty() {
        println!(
            "  left out headers: {}",
            learned.stripped_headers.join(", ")
        );
    }
    for note in &learned.notes {
        println!("  note: {note}");
    }
    print_report(&report, &exchange);
    Ok(())
}

fn print_report(report: &CheckReport, exchange: &Exchange) {
    match report.first_difference {
        None => println!(
            "check: the re-encoded check equals the capture byte for byte ({} bytes, {} placeholders)",
            exchange.request.len(),
            report.values.len()
        ),
        Some(at) => {
            let show = |b: &[u8]| String::from_utf8_lossy(&b[at.min(b.len())..(at + 40).min(b.len())]).into_owned();
            println!("check: DIFFERS at byte {at}: capture has {:?}", show(&exchange.request));
        }
    }
    match &report.offers {
        Ok(offers) if offers.is_empty() => println!("reply: no update"),
        Ok(offers) => {
            for o in offers {
                let files: Vec<String> = o
                    .files
                    .iter()
                    .map(|f| format!("{} ({})", f.file_name, f.kind.as_str()))
                    .collect();
                println!(
                    "reply: offers {} {} [{}] from {}{}",
                    o.update_type,
                    o.version,
                    files.join(", "),
                    o.base_url,
                    if o.external_base_url.is_empty() {
                        String::new()
                    } else {
                        format!(" / {}", o.external_base_url)
                    }
                );
            }
        }
        Err(e) => println!("reply: NOT UNDERSTOOD: {e}"),
    }
}
