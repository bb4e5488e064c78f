//! The command line of `ucupdate-agent`, parsed with `lexopt` rather than clap: the device
//! binary has a 2 MiB budget on armv7 and clap was about 110 KB of it (docs/CROSS.md), for
//! six subcommands and a dozen flags. The help texts below are the whole user interface, so
//! they say what each flag does and which config key it overrides. Usage errors exit 2, as
//! clap's did.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use lexopt::prelude::*;
use ucupdate_protocol::wire::{EXTERNAL_HANDLER_PATH, INTERNAL_HANDLER_PATH};
use ucupdate_protocol::HttpUrl;

/// Options every subcommand takes.
#[derive(Debug, Default)]
pub struct Global {
    /// `--config FILE` (or `UCUPDATE_AGENT_CONFIG`).
    pub config: Option<PathBuf>,
    /// `--state-dir DIR`.
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug)]
pub enum Command {
    Run(Box<RunArgs>),
    Status {
        json: bool,
    },
    CheckNow,
    SignIn {
        user: String,
        password_file: Option<PathBuf>,
        internal_url: Option<String>,
        external_url: Option<String>,
    },
    SignOut,
    Activity,
    /// Offline: does `catalog` (verified against `roots`) vouch for each of `files`?
    VerifyCatalog {
        roots: PathBuf,
        allow_sha1: bool,
        catalog: PathBuf,
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Default)]
pub struct RunArgs {
    pub server: Option<String>,
    pub external_server: Option<String>,
    pub domain: Option<String>,
    pub dns_server: Option<SocketAddr>,
    pub ca: Option<PathBuf>,
    pub exit_on_reboot: bool,
    pub log_format: LogFormat,
}

#[derive(Debug)]
pub struct Cli {
    pub global: Global,
    pub command: Command,
}

/// What parsing ended in: a command to run, or text to print and an exit code.
#[derive(Debug)]
pub enum Parsed {
    Run(Cli),
    /// `--help` / `--version` (exit 0), or a usage error (exit 2).
    Print {
        text: String,
        code: u8,
    },
}

const ABOUT: &str =
    "The device side of the OCS 2007 R2 / Lync Device Update Service: discovery, checks,\n\
downloads, catalog verification, idle wait, install and reboot hooks (docs/AGENT.md).";

const GLOBAL_HELP: &str =
    "  -c, --config <FILE>    The agent's TOML configuration (see agent.example.toml)\n\
\x20                        [env: UCUPDATE_AGENT_CONFIG]\n\
\x20     --state-dir <DIR>  State directory (state.json, status.json, staging/, control.sock);\n\
\x20                        overrides the config's `state_dir` [default: /var/lib/ucupdate-agent]\n\
\x20 -h, --help             Print help";

const COMMANDS: [(&str, &str); 7] = [
    ("run", "Run the agent daemon"),
    (
        "status",
        "Show the current version, the last update, the server, the last check and its outcome",
    ),
    (
        "check-now",
        "Ask the running daemon to check for an update now",
    ),
    (
        "sign-in",
        "Sign a user in; outside the firewall checks and downloads then use NTLM as this user",
    ),
    (
        "sign-out",
        "Sign the user out: external checks are denied again",
    ),
    (
        "activity",
        "Report user activity (restarts the idle wait before an install)",
    ),
    (
        "verify-catalog",
        "Check offline that a signed .cat catalog vouches for files, as an update's install does",
    ),
];

fn top_help() -> String {
    let mut text = format!("{ABOUT}\n\nUsage: ucupdate-agent [OPTIONS] <COMMAND>\n\nCommands:\n");
    for (name, about) in COMMANDS {
        text.push_str(&format!("  {name:<10} {about}\n"));
    }
    text.push_str(&format!(
        "\nOptions:\n{GLOBAL_HELP}\n  -V, --version          Print version\n\n\
         `ucupdate-agent <COMMAND> --help` describes a command."
    ));
    text
}

fn command_help(name: &str) -> String {
    let about = COMMANDS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, a)| a);
    let (usage, options) = match name {
        "run" => (
            "run [OPTIONS]",
            "      --server <URL>           Internal check URL, e.g. http://pool.contoso.com/RequestHandler/ucdevice.upx;\n\
             \x20                              http://host:port or host:port means its /RequestHandler/ucdevice.upx\n\
             \x20                              ([machine] server_url; skips discovery, as a RoundTable is configured)\n\
             \x20     --external-server <URL>  External check URL ([machine] external_server_url); https://host:port\n\
             \x20                              means its /RequestHandlerExt/ucdevice.upx\n\
             \x20     --domain <DOMAIN>        The DHCP domain to discover ucupdates-r2.<domain> in ([machine] dhcp_domain)\n\
             \x20     --dns-server <IP:PORT>   Ask this DNS server for discovery instead of resolv.conf ([dns] nameserver)\n\
             \x20     --ca <FILE>              PEM bundle of the CAs to trust ([tls] ca_bundle); verification is always on\n\
             \x20     --exit-on-reboot         Exit after the reboot hook so a supervisor restarts the agent\n\
             \x20                              ([agent] exit_on_reboot)\n\
             \x20     --log-format <FORMAT>    Log format on standard error: text or json (filter with RUST_LOG,\n\
             \x20                              default info) [default: text]\n",
        ),
        "status" => (
            "status [OPTIONS]",
            "      --json                   Print JSON (the daemon's StatusReport)\n",
        ),
        "sign-in" => (
            "sign-in [OPTIONS] <USER>",
            "  <USER>                       DOMAIN\\user, user@domain or user\n\
             \x20     --password-file <FILE>   File whose first line is the password (- reads standard input);\n\
             \x20                              without it the user is known but cannot authenticate\n\
             \x20     --internal-url <URL>     Provisioned internal check URL (what in-band provisioning carries)\n\
             \x20     --external-url <URL>     Provisioned external check URL\n",
        ),
        "verify-catalog" => (
            "verify-catalog --roots <PEM> [--allow-sha1] <CATALOG> <FILE>...",
            "      --roots <PEM>            The trust anchors ([trust] catalog_roots)\n\
             \x20     --allow-sha1             Accept files listed by SHA-1 only ([trust] allow_sha1_catalogs)\n\
             \x20 <CATALOG> <FILE>...          The .cat file, then the files it must list (by base name)\n",
        ),
        _ => ("", ""),
    };
    let usage = if usage.is_empty() {
        format!("{name} [OPTIONS]")
    } else {
        usage.to_owned()
    };
    format!("{about}\n\nUsage: ucupdate-agent {usage}\n\nOptions:\n{options}{GLOBAL_HELP}")
}

fn usage_error(message: impl std::fmt::Display, help_for: Option<&str>) -> Parsed {
    let hint = match help_for {
        Some(name) => format!("ucupdate-agent {name} --help"),
        None => "ucupdate-agent --help".to_owned(),
    };
    Parsed::Print {
        text: format!("error: {message}\n\nFor more information, try '{hint}'."),
        code: 2,
    }
}

/// One command-line item, owned (so the parser can be asked for the option's value).
enum Opt {
    Short(char),
    Long(String),
    Value(OsString),
}

impl Opt {
    fn unexpected(self) -> lexopt::Error {
        match self {
            Opt::Short(c) => lexopt::Error::UnexpectedOption(format!("-{c}")),
            Opt::Long(l) => lexopt::Error::UnexpectedOption(format!("--{l}")),
            Opt::Value(v) => lexopt::Error::UnexpectedArgument(v),
        }
    }
}

/// Why parsing stops early without an error.
enum Stop {
    Help,
    Version,
    Error(lexopt::Error),
}

impl From<lexopt::Error> for Stop {
    fn from(e: lexopt::Error) -> Self {
        Stop::Error(e)
    }
}

/// Everything parsed so far.
#[derive(Default)]
struct State {
    global: Global,
    name: Option<String>,
    run: RunArgs,
    json: bool,
    user: Option<String>,
    password_file: Option<PathBuf>,
    internal_url: Option<String>,
    external_url: Option<String>,
    roots: Option<PathBuf>,
    allow_sha1: bool,
    positional: Vec<PathBuf>,
}

fn string(parser: &mut lexopt::Parser) -> Result<String, Stop> {
    Ok(parser.value()?.string()?)
}

/// A check-handler flag, read as every binary reads one (`HttpUrl::handler`): a bad value is a
/// usage error naming the flag, before any config file is read.
fn handler(flag: &str, parser: &mut lexopt::Parser, path: &str) -> Result<String, Stop> {
    let text = string(parser)?;
    match HttpUrl::handler(&text, path) {
        Ok(url) => Ok(url.to_string()),
        Err(e) => Err(Stop::Error(lexopt::Error::Custom(
            format!("invalid value for {flag}: {e}").into(),
        ))),
    }
}

impl State {
    /// Takes one item; global options are accepted before and after the command.
    fn take(&mut self, arg: Opt, parser: &mut lexopt::Parser) -> Result<(), Stop> {
        let cmd = self.name.as_deref();
        let long = |name: &str, arg: &Opt| matches!(arg, Opt::Long(l) if l == name);
        match arg {
            Opt::Short('c') => self.global.config = Some(parser.value()?.into()),
            ref a if long("config", a) => self.global.config = Some(parser.value()?.into()),
            ref a if long("state-dir", a) => self.global.state_dir = Some(parser.value()?.into()),
            Opt::Short('h') => return Err(Stop::Help),
            ref a if long("help", a) => return Err(Stop::Help),
            Opt::Short('V') if cmd.is_none() => return Err(Stop::Version),
            ref a if cmd.is_none() && long("version", a) => return Err(Stop::Version),
            Opt::Value(v) if cmd.is_none() => self.name = Some(v.string()?),
            ref a if cmd == Some("run") && long("server", a) => {
                self.run.server = Some(handler("--server", parser, INTERNAL_HANDLER_PATH)?)
            }
            ref a if cmd == Some("run") && long("external-server", a) => {
                self.run.external_server =
                    Some(handler("--external-server", parser, EXTERNAL_HANDLER_PATH)?)
            }
            ref a if cmd == Some("run") && long("domain", a) => {
                self.run.domain = Some(string(parser)?)
            }
            ref a if cmd == Some("run") && long("dns-server", a) => {
                self.run.dns_server = Some(parser.value()?.parse()?)
            }
            ref a if cmd == Some("run") && long("ca", a) => {
                self.run.ca = Some(parser.value()?.into())
            }
            ref a if cmd == Some("run") && long("exit-on-reboot", a) => {
                self.run.exit_on_reboot = true
            }
            ref a if cmd == Some("run") && long("log-format", a) => {
                self.run.log_format = match string(parser)?.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    other => {
                        return Err(Stop::Error(lexopt::Error::Custom(
                            format!("invalid value '{other}' for --log-format: text or json")
                                .into(),
                        )))
                    }
                }
            }
            ref a if cmd == Some("status") && long("json", a) => self.json = true,
            ref a if cmd == Some("sign-in") && long("password-file", a) => {
                self.password_file = Some(parser.value()?.into())
            }
            ref a if cmd == Some("sign-in") && long("internal-url", a) => {
                self.internal_url = Some(string(parser)?)
            }
            ref a if cmd == Some("sign-in") && long("external-url", a) => {
                self.external_url = Some(string(parser)?)
            }
            Opt::Value(v) if cmd == Some("sign-in") && self.user.is_none() => {
                self.user = Some(v.string()?)
            }
            ref a if cmd == Some("verify-catalog") && long("roots", a) => {
                self.roots = Some(parser.value()?.into())
            }
            ref a if cmd == Some("verify-catalog") && long("allow-sha1", a) => {
                self.allow_sha1 = true
            }
            Opt::Value(v) if cmd == Some("verify-catalog") => self.positional.push(v.into()),
            other => return Err(Stop::Error(other.unexpected())),
        }
        Ok(())
    }
}

/// Parses `args` (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Parsed {
    let mut parser = lexopt::Parser::from_args(args);
    let mut state = State::default();
    loop {
        // Owned, so the borrow of the parser ends before an option's value is read.
        let arg = match parser.next() {
            Ok(Some(Short(c))) => Opt::Short(c),
            Ok(Some(Long(l))) => Opt::Long(l.to_owned()),
            Ok(Some(Value(v))) => Opt::Value(v),
            Ok(None) => break,
            Err(e) => return usage_error(e, state.name.as_deref()),
        };
        match state.take(arg, &mut parser) {
            Ok(()) => {}
            Err(Stop::Help) => {
                let text = match state.name.as_deref() {
                    Some(n) if COMMANDS.iter().any(|(c, _)| *c == n) => command_help(n),
                    _ => top_help(),
                };
                return Parsed::Print { text, code: 0 };
            }
            Err(Stop::Version) => {
                return Parsed::Print {
                    text: format!("ucupdate-agent {}", env!("CARGO_PKG_VERSION")),
                    code: 0,
                };
            }
            Err(Stop::Error(e)) => return usage_error(e, state.name.as_deref()),
        }
    }
    let mut global = state.global;
    if global.config.is_none() {
        global.config = std::env::var_os("UCUPDATE_AGENT_CONFIG").map(PathBuf::from);
    }
    let command = match state.name.as_deref() {
        None => {
            return Parsed::Print {
                text: top_help(),
                code: 2,
            }
        }
        Some("help") => {
            return Parsed::Print {
                text: top_help(),
                code: 0,
            }
        }
        Some("run") => Command::Run(Box::new(state.run)),
        Some("status") => Command::Status { json: state.json },
        Some("check-now") => Command::CheckNow,
        Some("sign-out") => Command::SignOut,
        Some("activity") => Command::Activity,
        Some("sign-in") => match state.user {
            Some(user) => Command::SignIn {
                user,
                password_file: state.password_file,
                internal_url: state.internal_url,
                external_url: state.external_url,
            },
            None => return usage_error("sign-in needs <USER>", Some("sign-in")),
        },
        Some("verify-catalog") => {
            let mut positional = state.positional.into_iter();
            match (state.roots, positional.next()) {
                (Some(roots), Some(catalog)) if positional.len() > 0 => Command::VerifyCatalog {
                    roots,
                    allow_sha1: state.allow_sha1,
                    catalog,
                    files: positional.collect(),
                },
                _ => {
                    return usage_error(
                        "verify-catalog needs --roots <PEM>, <CATALOG> and at least one <FILE>",
                        Some("verify-catalog"),
                    )
                }
            }
        }
        Some(other) => return usage_error(format!("unrecognized subcommand '{other}'"), None),
    };
    Parsed::Run(Cli { global, command })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Parsed {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        for args in [
            &["run", "--config", "a.toml", "--state-dir", "/s"][..],
            &["--config", "a.toml", "run", "--state-dir=/s"],
            &["-c", "a.toml", "--state-dir", "/s", "run"],
        ] {
            let Parsed::Run(cli) = parse_str(args) else {
                panic!("{args:?}")
            };
            assert_eq!(cli.global.config, Some(PathBuf::from("a.toml")));
            assert_eq!(cli.global.state_dir, Some(PathBuf::from("/s")));
            assert!(matches!(cli.command, Command::Run(_)));
        }
    }

    #[test]
    fn server_without_a_path_means_the_check_handler() {
        for (text, want) in [
            (
                "http://127.0.0.1:28080",
                "http://127.0.0.1:28080/RequestHandler/ucdevice.upx",
            ),
            (
                "127.0.0.1:28080",
                "http://127.0.0.1:28080/RequestHandler/ucdevice.upx",
            ),
        ] {
            let Parsed::Run(cli) = parse_str(&["run", "--server", text]) else {
                panic!("{text}")
            };
            let Command::Run(run) = cli.command else {
                panic!("{text}")
            };
            assert_eq!(run.server.as_deref(), Some(want));
        }
    }

    #[test]
    fn run_flags_and_sign_in_arguments() {
        let Parsed::Run(cli) = parse_str(&[
            "run",
            "--server",
            "http://p/RequestHandler/ucdevice.upx",
            "--dns-server",
            "127.0.0.1:5353",
            "--exit-on-reboot",
            "--log-format",
            "json",
        ]) else {
            panic!()
        };
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert_eq!(
            run.server.as_deref(),
            Some("http://p:80/RequestHandler/ucdevice.upx")
        );
        assert_eq!(run.dns_server, Some("127.0.0.1:5353".parse().unwrap()));
        assert!(run.exit_on_reboot);
        assert_eq!(run.log_format, LogFormat::Json);
        let Parsed::Run(cli) = parse_str(&["sign-in", "CONTOSO\\alice", "--password-file", "-"])
        else {
            panic!()
        };
        assert!(matches!(
            cli.command,
            Command::SignIn { ref user, ref password_file, .. }
                if user == "CONTOSO\\alice" && password_file.as_deref() == Some(std::path::Path::new("-"))
        ));
    }

    #[test]
    fn help_version_and_usage_errors() {
        for (args, code, needle) in [
            (&["--help"][..], 0, "Commands:"),
            (&["run", "--help"], 0, "--exit-on-reboot"),
            (&["sign-in", "-h"], 0, "--password-file"),
            (&["--version"], 0, "ucupdate-agent "),
            (&[], 2, "Usage:"),
            (&["frobnicate"], 2, "unrecognized subcommand"),
            (&["status", "--server", "x"], 2, "--server"),
            (&["run", "--log-format", "xml"], 2, "text or json"),
            (&["run", "--dns-server", "nope"], 2, "error:"),
            (
                &["run", "--server", "ftp://x"],
                2,
                "invalid value for --server",
            ),
            (
                &["run", "--external-server", "h:bad"],
                2,
                "--external-server",
            ),
            (&["sign-in"], 2, "needs <USER>"),
            (
                &["verify-catalog", "--roots", "r.pem", "x.cat"],
                2,
                "at least one <FILE>",
            ),
            (&["verify-catalog", "--help"], 0, "--allow-sha1"),
        ] {
            match parse_str(args) {
                Parsed::Print { text, code: got } => {
                    assert_eq!(got, code, "{args:?}: {text}");
                    assert!(text.contains(needle), "{args:?}: {text}");
                }
                Parsed::Run(cli) => panic!("{args:?} parsed: {cli:?}"),
            }
        }
    }
}
