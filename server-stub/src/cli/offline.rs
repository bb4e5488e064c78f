//! The offline commands of `ucupdate-server` on a data directory: `rules`, `test-devices`,
//! `files clear`, `logs clear` and `inventory` (the Lync cmdlets' counterparts, mapped in
//! docs/SERVER.md). Each opens the state with the directory's lock held ([`open`]), so a
//! change while a server runs is refused, naming the server's pid and the admin API to use.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{ArgGroup, Args, Subcommand};
use ucupdate_server_stub::model::devices::{parse_mac, parse_serial, TestDeviceId};
use ucupdate_server_stub::model::rule_ref::RuleRef;
use ucupdate_server_stub::state::RuleView;
use ucupdate_server_stub::{DataLock, LockError, State, StateOptions, TestDevice};

#[derive(Args, Debug)]
pub struct DataArg {
    /// The data directory (state.sqlite, store/, logs/, Logs/).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
}

/// A rule, named by key, identity or id.
#[derive(Args, Debug)]
pub struct RuleArgs {
    #[command(flatten)]
    data: DataArg,
    #[command(flatten)]
    pool: PoolArg,
    /// UCPhone/Polycom/CX700/A/ENU/CPE, service:WebServer:<pool>/<id>, or <id>.
    rule: RuleRef,
}

#[derive(Args, Debug)]
pub struct PoolArg {
    /// The pool in rule identities (serve's --pool-fqdn; default its --server-name default).
    #[arg(long, value_name = "FQDN", default_value = "ucupdate")]
    pool_fqdn: String,
}

#[derive(Subcommand, Debug)]
pub enum RulesAction {
    /// List every rule with its identity and its pending, approved and restore versions.
    List {
        #[command(flatten)]
        data: DataArg,
        #[command(flatten)]
        pool: PoolArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one rule (Get-CsDeviceUpdateRule -Identity).
    Show {
        #[command(flatten)]
        rule: RuleArgs,
        /// Print JSON instead of the cmdlet's list.
        #[arg(long)]
        json: bool,
    },
    /// Pending becomes approved; the previous approved becomes the restore version.
    Approve(RuleArgs),
    /// Roll back to the restore version; with none, uninstall (nothing approved).
    Restore(RuleArgs),
    /// Cancel the pending version (test devices fall back to the approved one).
    Reset(RuleArgs),
    /// Remove the rule (its files stay until `files clear`).
    Remove(RuleArgs),
}

/// MAC or serial number of a named test device.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("identifier").args(["mac", "serial"])))]
pub struct IdentifierArgs {
    /// Six hex pairs, run together or split by `-` or `:` (IdentifierType MACAddress).
    #[arg(long, value_name = "MAC")]
    mac: Option<String>,
    /// Letters, digits, `-`, `_` (IdentifierType SerialNumber).
    #[arg(long, value_name = "SERIAL")]
    serial: Option<String>,
}

impl IdentifierArgs {
    fn device(&self) -> anyhow::Result<Option<TestDevice>> {
        Ok(match (&self.mac, &self.serial) {
            (Some(mac), _) => Some(parse_mac(mac)?),
            (None, Some(serial)) => Some(parse_serial(serial)?),
            (None, None) => None,
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum TestDevicesAction {
    /// New-CsTestDevice: `--name NAME [--site SITE] --mac MAC | --serial SERIAL`. The old form,
    /// a bare MAC or serial number, adds it under a generated global name.
    Add {
        #[command(flatten)]
        data: DataArg,
        /// The test device's name (its identity is global/NAME, or site:SITE/NAME).
        #[arg(
            long,
            value_name = "NAME",
            conflicts_with = "device",
            requires = "identifier"
        )]
        name: Option<String>,
        /// The site it is defined at (default: global).
        #[arg(long, value_name = "SITE", requires = "name")]
        site: Option<String>,
        #[command(flatten)]
        identifier: IdentifierArgs,
        /// The old unnamed form: MAC, mac:MAC, SERIAL or serial:SERIAL.
        #[arg(required_unless_present = "name", conflicts_with = "identifier")]
        device: Option<TestDevice>,
    },
    /// Set-CsTestDevice: give IDENTITY a new MAC or serial number.
    Set {
        #[command(flatten)]
        data: DataArg,
        /// global/NAME or site:SITE/NAME.
        identity: TestDeviceId,
        #[command(flatten)]
        identifier: IdentifierArgs,
    },
    /// Remove-CsTestDevice by identity (global/NAME, site:SITE/NAME); a bare MAC or serial
    /// removes every test device naming it.
    Remove {
        #[command(flatten)]
        data: DataArg,
        /// An identity, or a MAC or serial number.
        target: String,
    },
    /// Get-CsTestDevice: list them (identity, identifier type, identifier).
    List {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum FilesAction {
    /// Clear-CsDeviceUpdateFile: delete the stored versions no rule refers to.
    Clear {
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum LogsAction {
    /// Clear-CsDeviceUpdateLog: delete device logs and audit files older than N days.
    Clear {
        #[command(flatten)]
        data: DataArg,
        /// Keep what is younger than this many days (0: everything but today's audit file).
        #[arg(long, value_name = "N")]
        days_back: u32,
    },
}

/// The state of `dir` for an offline command, with the directory's lock held while it lives.
pub struct Offline {
    state: State,
    _lock: DataLock,
}

impl std::ops::Deref for Offline {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

pub fn open(dir: &Path, options: StateOptions) -> anyhow::Result<Offline> {
    let lock = match DataLock::acquire(dir) {
        Ok(lock) => lock,
        Err(e @ LockError::Held { .. }) => bail!(
            "{e}: stop that server first, or make the change through its admin API \
             (see docs/SERVER.md: POST /admin/rules/..., POST /admin/test-devices/..., \
             POST /admin/import, POST /admin/files/clear, GET /admin/inventory)"
        ),
        Err(e) => return Err(e.into()),
    };
    let state = State::open(dir, options)
        .with_context(|| format!("open data directory {}", dir.display()))?;
    Ok(Offline { state, _lock: lock })
}

pub fn describe(rule: &ucupdate_server_stub::Rule) -> String {
    let show = |v: Option<ucupdate_protocol::FirmwareVersion>| {
        v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned())
    };
    format!(
        "pending {} approved {}{} restore {}",
        show(rule.pending),
        show(rule.approved),
        if rule.rolled_back {
            " (rolled back)"
        } else {
            ""
        },
        show(rule.restore)
    )
}

/// A rule as Get-CsDeviceUpdateRule prints one.
fn show_rule(v: &RuleView) -> String {
    let show = |v: Option<ucupdate_protocol::FirmwareVersion>| v.map(|v| v.to_string());
    let k = &v.key;
    let rows = [
        ("Identity", Some(v.identity.clone())),
        ("DeviceType", Some(k.device_type.to_string())),
        ("Brand", Some(k.brand.to_string())),
        ("Model", Some(k.model.to_string())),
        ("Revision", Some(k.revision.to_string())),
        ("Locale", Some(k.locale.to_string())),
        ("UpdateType", Some(k.update_type.to_string())),
        ("ApprovedVersion", show(v.rule.approved)),
        ("PendingVersion", show(v.rule.pending)),
        ("RestoreVersion", show(v.rule.restore)),
    ];
    rows.iter()
        .map(|(name, value)| format!("{name:<15} : {}\n", value.as_deref().unwrap_or("")))
        .collect()
}

pub fn rules(action: RulesAction) -> anyhow::Result<ExitCode> {
    let (args, verb) = match action {
        RulesAction::List { data, pool, json } => {
            let state = open(&data.data, StateOptions::default())?;
            let rules: Vec<RuleView> = state
                .rules()
                .iter()
                .map(|r| r.view(&pool.pool_fqdn))
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rules)?);
            } else {
                for r in rules {
                    println!("{} {} {}", r.key, describe(&r.rule), r.identity);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        RulesAction::Show { rule, json } => {
            let state = open(&rule.data.data, StateOptions::default())?;
            let view = state.rule_view(&rule.rule, &rule.pool.pool_fqdn)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", show_rule(&view));
            }
            return Ok(ExitCode::SUCCESS);
        }
        RulesAction::Approve(a) => (a, "approve"),
        RulesAction::Restore(a) => (a, "restore"),
        RulesAction::Reset(a) => (a, "reset"),
        RulesAction::Remove(a) => (a, "remove"),
    };
    let state = open(&args.data.data, StateOptions::default())?;
    let key = state.resolve(&args.rule, &args.pool.pool_fqdn)?;
    let rule = match verb {
        "approve" => state.approve(&key),
        "restore" => state.restore(&key),
        "reset" => state.reset(&key),
        _ => state.remove_rule(&key),
    }
    // The rule error names the key already.
    .with_context(|| verb.to_owned())?;
    match verb {
        "remove" => println!("{key}: removed (was {})", describe(&rule)),
        _ => println!("{key} {}", describe(&rule)),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn test_devices(action: TestDevicesAction) -> anyhow::Result<ExitCode> {
    match action {
        TestDevicesAction::Add {
            data,
            name,
            site,
            identifier,
            device,
        } => {
            let named = match name {
                Some(name) => Some((
                    TestDeviceId::new(site.as_deref(), &name)?,
                    identifier.device()?,
                )),
                None => None,
            };
            let state = open(&data.data, StateOptions::default())?;
            match (named, device) {
                (Some((id, Some(device))), _) => {
                    state.add_named_test_device(id.clone(), device)?;
                    println!("{id}: added");
                }
                (None, Some(device)) => {
                    let added = state.add_test_device(device.clone())?;
                    println!(
                        "{device}: {}",
                        if added {
                            "added"
                        } else {
                            "already a test device"
                        }
                    );
                }
                _ => bail!("give --name NAME with --mac MAC or --serial SERIAL"),
            }
        }
        TestDevicesAction::Set {
            data,
            identity,
            identifier,
        } => {
            let Some(device) = identifier.device()? else {
                bail!("give --mac MAC or --serial SERIAL");
            };
            let state = open(&data.data, StateOptions::default())?;
            state.set_named_test_device(&identity, device)?;
            println!("{identity}: set");
        }
        TestDevicesAction::Remove { data, target } => {
            let state = open(&data.data, StateOptions::default())?;
            if target.contains('/') {
                let id: TestDeviceId = target.parse()?;
                state.remove_named_test_device(&id)?;
            } else {
                let device: TestDevice = target.parse()?;
                if !state.remove_test_device(&device)? {
                    bail!("{device} is not a test device");
                }
            }
            println!("{target}: removed");
        }
        TestDevicesAction::List { data, json } => {
            let state = open(&data.data, StateOptions::default())?;
            let views: Vec<_> = state
                .named_test_devices()
                .iter()
                .map(|t| t.view())
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                for v in views {
                    println!("{}\t{}\t{}", v.identity, v.identifier_type, v.identifier);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn files(action: FilesAction) -> anyhow::Result<ExitCode> {
    let FilesAction::Clear { data } = action;
    let state = open(&data.data, StateOptions::default())?;
    let gone = state.clear_files()?;
    for (key, version) in &gone {
        println!("{key} {version}: deleted");
    }
    println!("{} versions deleted", gone.len());
    Ok(ExitCode::SUCCESS)
}

pub fn logs(action: LogsAction) -> anyhow::Result<ExitCode> {
    let LogsAction::Clear { data, days_back } = action;
    // The lock, so a running server's logs are cleared through its API, not under it.
    let _state = open(&data.data, StateOptions::default())?;
    let done = ucupdate_server_stub::app::clear_logs_offline(&data.data, days_back)
        .context("clear the logs")?;
    println!(
        "{} device logs ({} bytes) and {} audit files deleted",
        done.log_files, done.log_bytes, done.audit_files
    );
    Ok(ExitCode::SUCCESS)
}
