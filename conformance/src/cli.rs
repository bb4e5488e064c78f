//! The command line of the suite, owned here once and used twice: the standalone
//! `ucupdate-conformance` binary flattens [`Args`] into its parser, and `ucupdate-sim
//! conformance` takes the same [`Args`] as its subcommand; both call [`run`]. So the two take
//! the same flags, print the same table and JUnit file and end with the same exit codes:
//! 0 every selected check passed or skipped, 1 a check failed, 2 the run could not be carried
//! out (a [`CliError`], or a usage error clap reports).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ucupdate_protocol::wire::{EXTERNAL_HANDLER_PATH, INTERNAL_HANDLER_PATH};
use ucupdate_protocol::{FirmwareVersion, HttpUrl, ProtocolError, UpdateKey};

use crate::{catalogue, junit_xml, render_table, unknown_names, Options, Outcome, ProbeDevice};

/// The suite name in the JUnit file, whichever binary wrote it.
pub const JUNIT_SUITE: &str = "ucupdate-conformance";

/// The suite's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Internal check URL (`http://pool/RequestHandler/ucdevice.upx`, or `http://host:port` or
    /// `host:port`: the handler on it).
    #[arg(long, required_unless_present = "list")]
    pub target: Option<String>,
    /// The wire dialect of the probes' checks: a file from `ucupdate-sim dialect learn`, or
    /// `ucupdate` (the built-in one) [default: ucupdate]. The external checks stay built-in.
    #[arg(long, value_name = "NAME.toml|ucupdate")]
    pub dialect: Option<String>,
    /// External check URL (`https://edge/RequestHandlerExt/ucdevice.upx`); enables the NTLM checks.
    #[arg(long)]
    pub external_target: Option<String>,
    /// The external user, `DOMAIN\user` or `user@domain`.
    #[arg(long)]
    pub user: Option<String>,
    /// File holding the user's password (first line).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Admin API of a `ucupdate-server`: enables the rule-transition checks.
    #[arg(long, requires = "admin_token_file")]
    pub admin: Option<String>,
    /// The admin API's bearer token file (the server's DATA/admin.token).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// PEM bundle of CAs to trust for https targets [default: web roots].
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// PEM bundle of the catalog signers' roots (what a device has as `[trust]
    /// catalog_roots`): enables the checks that the offered `.cat` verifies and lists the image.
    #[arg(long, value_name = "PEM")]
    pub trust: Option<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Run only these checks (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip these checks (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// The probe's rule key, DeviceType/Brand/Model/Revision/Locale/UpdateType (against a pool
    /// without admin access: a model whose update is approved there).
    #[arg(long)]
    pub probe_key: Option<String>,
    /// The firmware version the probe claims to run.
    #[arg(long)]
    pub probe_version: Option<String>,
    /// List the checks with their descriptions and exit.
    #[arg(long)]
    pub list: bool,
}

/// Why a run could not be carried out (exit code 2). The message names the flag; the cause
/// is the [`std::error::Error::source`], so `{:#}` of an `anyhow` error prints both.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Neither `--target` nor `--list` (clap refuses this first; kept for callers that build
    /// [`Args`] by hand).
    #[error("--target is required")]
    MissingTarget,
    /// A flag's value does not parse.
    #[error("{flag} {value}")]
    BadValue {
        flag: &'static str,
        value: String,
        #[source]
        source: ProtocolError,
    },
    /// A file a flag names cannot be read.
    #[error("{flag} {}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `--dialect` names a file that is not a dialect.
    #[error("--dialect {spec}")]
    Dialect {
        spec: String,
        #[source]
        source: ucupdate_protocol::dialect::DialectError,
    },
    /// The JUnit file cannot be written.
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `--trust` names a file that gives no trust anchors.
    #[error("--trust {}", path.display())]
    Trust {
        path: PathBuf,
        #[source]
        source: ucupdate_agent::trust::AnchorError,
    },
    /// `--only` or `--skip` names checks the catalogue does not hold: a typo in CI must not
    /// silently skip a check.
    #[error("unknown check name(s): {} (see `{program} --list`)", names.join(", "))]
    UnknownChecks { names: Vec<String>, program: String },
}

/// Runs the suite as `args` say: the table (or, with `--list`, the catalogue) on stdout, the
/// JUnit file if asked for. `program` is how the user invoked the suite (`ucupdate-conformance`,
/// `ucupdate-sim conformance`), for the hint after an unknown check name.
pub async fn run(args: &Args, program: &str) -> Result<ExitCode, CliError> {
    if args.list {
        for (name, description) in catalogue() {
            println!("{name:<36} {description}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let options = options(args, program)?;
    let results = crate::run(&options).await;
    print!("{}", render_table(&results));
    if let Some(path) = &args.junit {
        std::fs::write(path, junit_xml(&results, JUNIT_SUITE)).map_err(|source| {
            CliError::Write {
                path: path.clone(),
                source,
            }
        })?;
    }
    let failed = results.iter().any(|r| r.outcome == Outcome::Fail);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The suite's [`Options`] from the flags, with the files they name read and the check names
/// checked against the catalogue.
pub fn options(args: &Args, program: &str) -> Result<Options, CliError> {
    let target = args.target.as_deref().ok_or(CliError::MissingTarget)?;
    let password = match &args.password_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
                flag: "--password-file",
                path: path.clone(),
                source,
            })?;
            Some(text.lines().next().unwrap_or_default().to_owned())
        }
        None => None,
    };
    let mut device = ProbeDevice::default();
    if let Some(key) = &args.probe_key {
        let key: UpdateKey = parse("--probe-key", key)?;
        device.identity.device_type = key.device_type;
        device.identity.brand = key.brand;
        device.identity.model = key.model;
        device.identity.revision = key.revision;
        device.identity.locale = key.locale;
        device.update_type = key.update_type;
    }
    if let Some(v) = &args.probe_version {
        device.version = parse::<FirmwareVersion>("--probe-version", v)?;
    }
    let options = Options {
        target: handler_url("--target", target, INTERNAL_HANDLER_PATH)?,
        external_target: args
            .external_target
            .as_deref()
            .map(|s| handler_url("--external-target", s, EXTERNAL_HANDLER_PATH))
            .transpose()?,
        user: args.user.clone(),
        password,
        admin: args
            .admin
            .as_deref()
            .map(|u| parse::<HttpUrl>("--admin", u))
            .transpose()?,
        admin_token: args
            .admin_token_file
            .as_deref()
            .map(|p| read("--admin-token-file", p))
            .transpose()?
            .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned()),
        ca_pem: args.ca.as_deref().map(|p| read("--ca", p)).transpose()?,
        trust: args.trust.as_deref().map(trust).transpose()?,
        only: args.only.clone(),
        skip: args.skip.clone(),
        device,
        dialect: args
            .dialect
            .as_deref()
            .map(load_dialect)
            .transpose()?
            .map(std::sync::Arc::new),
    };
    let unknown = unknown_names(&options);
    if !unknown.is_empty() {
        return Err(CliError::UnknownChecks {
            names: unknown,
            program: program.to_owned(),
        });
    }
    Ok(options)
}

fn parse<T: std::str::FromStr<Err = ProtocolError>>(
    flag: &'static str,
    value: &str,
) -> Result<T, CliError> {
    value.parse().map_err(|source| CliError::BadValue {
        flag,
        value: value.to_owned(),
        source,
    })
}

fn trust(path: &Path) -> Result<ucupdate_agent::trust::TrustAnchors, CliError> {
    let pem = read("--trust", path)?;
    ucupdate_agent::trust::TrustAnchors::from_pem(&pem).map_err(|source| CliError::Trust {
        path: path.to_owned(),
        source,
    })
}

/// A `--dialect` value: `ucupdate` (or `builtin`), or a dialect file (the one reader of the
/// flag, for `ucupdate-sim run` too).
pub fn load_dialect(spec: &str) -> Result<ucupdate_protocol::dialect::Dialect, CliError> {
    use ucupdate_protocol::dialect::{Dialect, BUILTIN};
    if spec == BUILTIN || spec == "builtin" {
        return Ok(Dialect::builtin());
    }
    let bytes = read("--dialect", Path::new(spec))?;
    Dialect::from_toml(&String::from_utf8_lossy(&bytes)).map_err(|source| CliError::Dialect {
        spec: spec.to_owned(),
        source,
    })
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

/// A handler URL from a flag, as every binary reads one (`HttpUrl::handler`).
fn handler_url(flag: &'static str, text: &str, path: &str) -> Result<HttpUrl, CliError> {
    HttpUrl::handler(text, path).map_err(|source| CliError::BadValue {
        flag,
        value: text.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(argv: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("test").chain(argv.iter().copied()))
            .map(|c| c.args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_bare_host_gets_the_handler_paths() {
        let options = options(
            &args(&[
                "--target",
                "http://pool:8080",
                "--external-target",
                "https://edge",
                "--only",
                "check-accepted,range-requests",
                "--only",
                "nbt-content-type",
            ]),
            "test",
        )
        .unwrap();
        assert_eq!(
            options.target.to_string(),
            "http://pool:8080/RequestHandler/ucdevice.upx"
        );
        assert_eq!(
            options.external_target.map(|u| u.to_string()).as_deref(),
            Some("https://edge:443/RequestHandlerExt/ucdevice.upx")
        );
        assert_eq!(
            options.only,
            ["check-accepted", "range-requests", "nbt-content-type"]
        );
    }

    #[test]
    fn the_probe_flags_set_the_probe_identity_and_version() {
        let options = options(
            &args(&[
                "--target",
                "http://pool/RequestHandler/ucdevice.upx",
                "--probe-key",
                "UCPhone/Polycom/CX700/A/ENU/CPE",
                "--probe-version",
                "1.0.522.101",
            ]),
            "test",
        )
        .unwrap();
        assert_eq!(options.device.identity.model.as_str(), "CX700");
        assert_eq!(options.device.version, FirmwareVersion::new(1, 0, 522, 101));
        // What the flags do not name stays the default probe's.
        assert_eq!(
            options.device.identity.mac,
            ProbeDevice::default().identity.mac
        );
    }

    #[test]
    fn errors_name_the_flag_and_keep_the_cause() {
        let err = options(&args(&["--target", "ftp://pool"]), "test").unwrap_err();
        assert!(matches!(
            err,
            CliError::BadValue {
                flag: "--target",
                ..
            }
        ));
        assert!(std::error::Error::source(&err).is_some());

        let err = options(
            &args(&["--target", "http://pool", "--skip", "nope,range-requests"]),
            "ucupdate-conformance",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown check name(s): nope (see `ucupdate-conformance --list`)"
        );

        let missing = PathBuf::from("/nonexistent/ucupdate-conformance/ca.pem");
        let err = options(
            &args(&[
                "--target",
                "http://pool",
                "--ca",
                "/nonexistent/ucupdate-conformance/ca.pem",
            ]),
            "test",
        )
        .unwrap_err();
        assert!(
            matches!(&err, CliError::Read { flag: "--ca", path, .. } if *path == missing),
            "{err:?}"
        );
    }

    #[test]
    fn target_is_required_unless_listing() {
        assert!(Cli::try_parse_from(["test"]).is_err());
        assert!(args(&["--list"]).list);
    }
}
