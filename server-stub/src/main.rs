//! `ucupdate-server`: the command line of the server stub. `serve` runs the listeners; the
//! other commands (`import`, `rules`, `test-devices`, `files`, `logs`, `inventory`; most in
//! `cli/offline.rs`) work offline on a data
//! directory's state database. Both take the directory's lock (`DATA/server.lock`), so an offline
//! change while a server runs is refused, naming the server's pid and the admin API to use
//! instead, rather than printed as done and lost at the server's next write.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use ucupdate_protocol::HttpUrl;
use ucupdate_server_stub::package::ImportLimits;
use ucupdate_server_stub::{
    disk, package, Limits, Quotas, ServerConfig, StateOptions, TlsSource, UserDb,
};

/// mimalloc instead of the system allocator: a keep-alive check allocates a few dozen small
/// blocks (hyper's buffers, the XML tree, the reply), and glibc's malloc and free were 7-10 %
/// of the stub's CPU per check (docs/BENCHMARKS.md §4, third round).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "cli/offline.rs"]
mod offline;
use offline::{describe, open, DataArg, FilesAction, LogsAction, RulesAction, TestDevicesAction};
#[path = "cli/logging.rs"]
mod logging;
use logging::{init_logging, LogFormat};

/// A minimal but faithful OCS 2007 R2 / Lync Device Update Service, for tests, demos and
/// load tests.
#[derive(Parser, Debug)]
#[command(name = "ucupdate-server", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the internal (HTTP and HTTPS), external (HTTPS + NTLM) and admin listeners.
    Serve(Box<ServeArgs>),
    /// Import a vendor-style package (a .cab or a directory with updateInfo.xml); every
    /// version in it becomes pending.
    Import {
        #[command(flatten)]
        data: DataArg,
        /// Approve RoundTable updates on import (the R2 rule).
        #[arg(long)]
        deploy_roundtable_on_import: bool,
        /// Largest file in the package, uncompressed, in bytes.
        #[arg(long, value_name = "BYTES", default_value_t = ImportLimits::DEFAULT.max_file_bytes)]
        max_file_bytes: u64,
        /// Largest sum of the package's files, uncompressed, in bytes.
        #[arg(long, value_name = "BYTES", default_value_t = ImportLimits::DEFAULT.max_package_bytes)]
        max_package_bytes: u64,
        /// Most cabinet members, and most files listed in updateInfo.xml.
        #[arg(long, value_name = "N", default_value_t = ImportLimits::DEFAULT.max_entries)]
        max_entries: usize,
        #[command(flatten)]
        sign: SignArgs,
        /// The package: FILE.cab or a directory.
        package: PathBuf,
    },
    /// List or change update rules.
    Rules {
        #[command(subcommand)]
        action: RulesAction,
    },
    /// Named test devices (they are offered pending versions): add, set, remove, list.
    TestDevices {
        #[command(subcommand)]
        action: TestDevicesAction,
    },
    /// Stored update files: `clear` deletes what no rule refers to.
    Files {
        #[command(subcommand)]
        action: FilesAction,
    },
    /// Device and audit logs: `clear --days-back N`.
    Logs {
        #[command(subcommand)]
        action: LogsAction,
    },
    /// Write signed `.cat` catalogs (Microsoft catalog format; see docs/PROTOCOL.md).
    Catalog {
        #[command(subcommand)]
        action: CatalogAction,
    },
    /// Show the device inventory (last seen version, model, user, check time).
    Inventory {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CatalogAction {
    /// Sign a catalog listing FILE... (SHA-256, under their base names).
    Create {
        /// The code-signing certificate (PEM), then any intermediates.
        #[arg(long, value_name = "PEM")]
        cert: PathBuf,
        /// Its private key (PEM: PKCS#8 ECDSA P-256 or RSA, or PKCS#1 RSA).
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
        /// Where to write the catalog (NAME.cat).
        #[arg(short = 'o', long = "out", value_name = "NAME.cat")]
        out: PathBuf,
        /// The files to list.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// The key that signs catalogs for updates that carry none (docs/SERVER.md, "Signing").
#[derive(Args, Debug)]
struct SignArgs {
    /// Code-signing certificate (PEM, then any intermediates): sign `<image stem>.cat` for
    /// every update without a catalog. A package's own catalog is always kept.
    #[arg(long, value_name = "PEM", requires = "sign_key")]
    sign_cert: Option<PathBuf>,
    /// The signing certificate's private key (PEM; ECDSA P-256 PKCS#8 or RSA).
    #[arg(long, value_name = "PEM", requires = "sign_cert")]
    sign_key: Option<PathBuf>,
}

impl SignArgs {
    fn signer(&self) -> anyhow::Result<Option<ucupdate_server_stub::catalog::CatalogSigner>> {
        let (Some(cert), Some(key)) = (&self.sign_cert, &self.sign_key) else {
            return Ok(None);
        };
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("read {}", p.display()));
        ucupdate_server_stub::catalog::CatalogSigner::from_pem(&read(cert)?, &read(key)?)
            .map(Some)
            .context("load the catalog signing certificate and key")
    }
}

/// A listen address, or `off` to disable that listener.
#[derive(Clone, Copy, Debug)]
struct Listen(Option<SocketAddr>);

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(Listen(None));
        }
        text.parse()
            .map(|a| Listen(Some(a)))
            .map_err(|e| format!("{text:?}: {e} (expected IP:PORT or off)"))
    }
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    data: DataArg,
    /// Internal plain-HTTP listener (anonymous), or `off`. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    internal: Listen,
    /// Internal HTTPS listener (anonymous), or `off`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    internal_tls: Listen,
    /// External HTTPS listener (NTLM required), or `off`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4443")]
    external: Listen,
    /// Admin API and /metrics (bearer token, plain HTTP: keep it on loopback), or `off`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9080")]
    admin: Listen,
    /// The admin API's bearer token file (default DIR/admin.token; created 0600 if missing).
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// A name (NAME or NAME:PORT) the admin listener answers to besides its address and
    /// localhost:PORT (repeatable). Other Host headers get 421.
    #[arg(long = "admin-host", value_name = "NAME")]
    admin_hosts: Vec<String>,
    /// Create the data directory if it is missing or empty (without it, serve refuses one:
    /// a typo in --data must not start an empty server).
    #[arg(long)]
    init: bool,
    /// NTLM users of the external listener: `DOMAIN\user:password` or `user:password` lines.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// PEM certificate chain for the TLS listeners (default: generate one at start).
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Extra DNS names or IPs for the generated certificate (besides localhost, 127.0.0.1, ::1).
    #[arg(long = "tls-name", value_name = "NAME", conflicts_with = "cert")]
    tls_names: Vec<String>,
    /// Where to write the PEM that clients should trust (default DIR/ca.pem).
    #[arg(long, value_name = "FILE")]
    ca_out: Option<PathBuf>,
    /// BaseURL root in check replies, e.g. http://pool01.contoso.com (default: the
    /// internal listener, plain HTTP if enabled).
    #[arg(long, value_name = "URL")]
    public_internal_url: Option<HttpUrl>,
    /// ExternalBaseURL root in check replies (default: the external listener).
    #[arg(long, value_name = "URL")]
    public_external_url: Option<HttpUrl>,
    /// Server name in audit-log file names and the NTLM target name.
    #[arg(long, value_name = "NAME", default_value = "ucupdate")]
    server_name: String,
    /// The pool in rule identities, service:WebServer:<pool>/<id> (default: --server-name).
    #[arg(long, value_name = "FQDN")]
    pool_fqdn: Option<String>,
    /// Store URLs in check replies: r2 (/DeviceUpdateFiles_Int, _Ext) or lync
    /// (/RequestHandler/Files, /RequestHandlerExt/Files). Both are always served.
    #[arg(long, value_name = "LAYOUT", default_value = "r2")]
    store_layout: ucupdate_server_stub::layout::StoreLayout,
    /// Audit-log form: csv (header row, Lync and later) or r2 (OCS 2007 R2's `;` fields).
    #[arg(long, value_name = "FORM", default_value = "csv")]
    audit_format: ucupdate_protocol::AuditFormat,
    /// Approve RoundTable updates on import (the R2 rule).
    #[arg(long)]
    deploy_roundtable_on_import: bool,
    /// Sign catalogs for what the admin API publishes and imports.
    #[command(flatten)]
    sign: SignArgs,
    /// Accept device types other than UCPhone and RoundTable in checks (default: 400).
    #[arg(long)]
    accept_unknown_device_types: bool,
    /// The wire dialect of checks and replies: a dialect file (`ucupdate-sim dialect learn`),
    /// so the stub stands in for a pool of that dialect, or `ucupdate` (the built-in one).
    #[arg(long, value_name = "NAME.toml|ucupdate", default_value = "ucupdate")]
    dialect: String,
    /// Seconds a client has to send a request header (and finish a TLS handshake).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a connection may stay silent before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    idle_timeout: u64,
    /// Open device connections beyond this get a 503.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,
    /// Open device connections from one client address beyond this get a 503 (default: half
    /// of --max-connections).
    #[arg(long, value_name = "N")]
    max_connections_per_client: Option<usize>,
    /// Seconds a device request's whole body may take after its head (then 408 and close).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    body_timeout: u64,
    /// Minimum average rate of a device request body, bytes/s, after --body-rate-grace
    /// (0: none).
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    body_min_rate: u64,
    /// Seconds a device request body may start slower than --body-min-rate.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    body_rate_grace: u64,
    /// Largest file the admin publish endpoint accepts, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    max_publish_bytes: u64,
    /// Threads serving the device listeners, each its own event loop and `SO_REUSEPORT`
    /// listener per address (default: one per CPU); 0 serves them on one multi-thread runtime.
    /// At most 1024: a typo of a few more digits would otherwise start that many threads.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=1024))]
    workers: Option<u16>,
    /// Milliseconds between batched writes of inventory changes to the state database.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    flush_interval_ms: u64,
    /// Log format on stderr (filter with RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    quotas: QuotaArgs,
}

/// Caps and retention (docs/SERVER.md "Quotas and retention"); unset means the default.
#[derive(Args, Debug)]
struct QuotaArgs {
    /// Largest device log file in bytes (MaxLogFileSize, at most 1024000) [default: stored,
    /// else 1024000].
    #[arg(long, value_name = "BYTES")]
    max_log_file_size: Option<u64>,
    /// A log type devices may upload (ValidLogFileTypes; repeat for each: Watson, Config,
    /// Diaglog, CELog) [default: stored, else all four].
    #[arg(long = "valid-log-file-type", value_name = "TYPE")]
    valid_log_file_types: Vec<String>,
    /// A file extension devices may upload, with the dot (ValidLogFileExtensions; repeat)
    /// [default: stored, else .dmp .clg .clg1 .clg2 .bak .kdmp .dat .bin .cat .xml .txt .hex].
    #[arg(long = "valid-log-file-extension", value_name = ".EXT")]
    valid_log_file_extensions: Vec<String>,
    /// MaxLogCacheLimit, bytes (shown; the stub writes each upload at once) [default: 512000].
    #[arg(long, value_name = "BYTES")]
    max_log_cache_limit: Option<u64>,
    /// LogFlushInterval, seconds, 60-3600 (shown; no log cache to flush) [default: 300].
    #[arg(long, value_name = "SECS")]
    log_flush_interval: Option<u64>,
    /// LogCleanUpTimeOfDay, HH:MM (shown; the cleanup runs every --cleanup-interval).
    #[arg(long, value_name = "HH:MM")]
    log_clean_up_time_of_day: Option<String>,
    /// Bytes of logs kept per device id; beyond it uploads get 507 [default: 10240000].
    #[arg(long, value_name = "BYTES")]
    log_quota_per_device: Option<u64>,
    /// Bytes of logs kept for all devices; beyond it uploads get 507 [default: 512000000].
    #[arg(long, value_name = "BYTES")]
    log_quota_total: Option<u64>,
    /// Days a device log is kept (LogCleanUpInterval, 1-365) [default: stored, else 10].
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=365))]
    log_retention_days: Option<u32>,
    /// Days an audit-log file is kept after its day (1-365) [default: 10].
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=365))]
    audit_retention_days: Option<u32>,
    /// Modules a check may list; more is refused with 400 [default: 32].
    #[arg(long, value_name = "N")]
    max_modules_per_check: Option<usize>,
    /// Devices the inventory remembers; beyond it the one seen longest ago is forgotten
    /// [default: 100000].
    #[arg(long, value_name = "N")]
    max_inventory_entries: Option<usize>,
    /// Seconds between runs of the log and audit cleanup [default: 3600].
    #[arg(long, value_name = "SECS")]
    cleanup_interval: Option<u64>,
}

impl QuotaArgs {
    /// The device-update settings the flags set (the rest keep their stored value).
    fn device_update(&self) -> ucupdate_server_stub::settings::ConfigurationPatch {
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        ucupdate_server_stub::settings::ConfigurationPatch {
            valid_log_file_types: list(&self.valid_log_file_types),
            valid_log_file_extensions: list(&self.valid_log_file_extensions),
            max_log_file_size: self.max_log_file_size,
            max_log_cache_limit: self.max_log_cache_limit,
            log_flush_interval_secs: self.log_flush_interval,
            log_clean_up_interval_days: self.log_retention_days,
            log_clean_up_time_of_day: self.log_clean_up_time_of_day.clone(),
        }
    }

    fn quotas(&self) -> Quotas {
        let d = Quotas::default();
        Quotas {
            max_log_bytes_per_device: self
                .log_quota_per_device
                .unwrap_or(d.max_log_bytes_per_device),
            max_log_bytes_total: self.log_quota_total.unwrap_or(d.max_log_bytes_total),
            audit_retention_days: self.audit_retention_days.unwrap_or(d.audit_retention_days),
            max_modules_per_check: self
                .max_modules_per_check
                .unwrap_or(d.max_modules_per_check),
            max_inventory_entries: self
                .max_inventory_entries
                .unwrap_or(d.max_inventory_entries),
            cleanup_interval: self
                .cleanup_interval
                .map_or(d.cleanup_interval, Duration::from_secs),
        }
    }
}

fn catalog(action: CatalogAction) -> anyhow::Result<ExitCode> {
    use ucupdate_server_stub::catalog::{create_from_paths, CatalogSigner};
    match action {
        CatalogAction::Create {
            cert,
            key,
            out,
            files,
        } => {
            let read = |p: &Path| std::fs::read(p).with_context(|| format!("read {}", p.display()));
            let signer = CatalogSigner::from_pem(&read(&cert)?, &read(&key)?)
                .context("load the signing certificate and key")?;
            let bytes = create_from_paths(&signer, &files)?;
            std::fs::write(&out, &bytes).with_context(|| format!("write {}", out.display()))?;
            println!(
                "{}: {} files, {} bytes",
                out.display(),
                files.len(),
                bytes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ucupdate-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Import {
            data,
            deploy_roundtable_on_import,
            max_file_bytes,
            max_package_bytes,
            max_entries,
            sign,
            package: path,
        } => {
            let signer = sign.signer()?;
            let options = StateOptions {
                deploy_roundtable_on_import,
            };
            let limits = ImportLimits {
                max_file_bytes,
                max_package_bytes,
                max_entries,
            };
            let state = open(&data.data, options)?;
            let imported = package::import_path_signed(&state, &path, &limits, signer.as_ref())
                .with_context(|| format!("import {}", path.display()))?;
            for i in imported {
                println!(
                    "{} {} ({} files): {}",
                    i.key,
                    i.version,
                    i.files,
                    describe(&i.rule)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Catalog { action } => catalog(action),
        Command::Rules { action } => offline::rules(action),
        Command::TestDevices { action } => offline::test_devices(action),
        Command::Files { action } => offline::files(action),
        Command::Logs { action } => offline::logs(action),
        Command::Inventory { data, json } => {
            let state = open(&data.data, StateOptions::default())?;
            let inventory = state.inventory();
            if json {
                println!("{}", serde_json::to_string_pretty(&inventory)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "DEVICE\tTYPE\tBRAND/MODEL\tVERSIONS\tLAST USER\tLAST CHECK (UTC)\tLAST OFFER"
            );
            for e in inventory {
                let versions: Vec<String> =
                    e.versions.iter().map(|(t, v)| format!("{t}={v}")).collect();
                println!(
                    "{}\t{}\t{}/{}\t{}\t{}\t{}\t{}",
                    e.device,
                    e.device_type,
                    e.brand,
                    e.model,
                    versions.join(","),
                    e.last_user.as_deref().unwrap_or("-"),
                    ucupdate_protocol::audit::format_time(e.last_check_unix),
                    e.last_offer
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Refuses a missing or empty data directory unless `--init`.
fn check_data_dir(dir: &Path, init: bool) -> anyhow::Result<()> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(e).with_context(|| format!("read data directory {}", dir.display())),
    };
    if empty && !init {
        bail!(
            "data directory {} is missing or empty: give --init to start a new one",
            dir.display()
        );
    }
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    check_data_dir(&args.data.data, args.init)?;
    let users = match &args.users {
        Some(path) => {
            // Every device account's password: refused if others on the host may read it.
            let text = disk::read_private(path)
                .with_context(|| format!("users file {}", path.display()))?;
            UserDb::parse(&text).with_context(|| format!("users file {}", path.display()))?
        }
        None => UserDb::default(),
    };
    if args.external.0.is_some() && users.is_empty() {
        tracing::warn!("the external listener has no users (--users): every login will fail");
    }
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => TlsSource::SelfSigned {
            extra_names: args.tls_names.clone(),
        },
    };
    let config = ServerConfig {
        data_dir: args.data.data.clone(),
        internal: args.internal.0,
        internal_tls: args.internal_tls.0,
        external: args.external.0,
        admin: args.admin.0,
        admin_token_file: args.admin_token_file.clone(),
        admin_hosts: args.admin_hosts.clone(),
        users,
        tls,
        ca_out: args.ca_out.clone(),
        public_internal_url: args.public_internal_url.clone(),
        public_external_url: args.public_external_url.clone(),
        server_name: args.server_name.clone(),
        pool_fqdn: args.pool_fqdn.clone(),
        store_layout: args.store_layout,
        audit_format: args.audit_format,
        deploy_roundtable_on_import: args.deploy_roundtable_on_import,
        accept_unknown_device_types: args.accept_unknown_device_types,
        dialect: (args.dialect != ucupdate_protocol::dialect::BUILTIN)
            .then(|| {
                let text = std::fs::read_to_string(&args.dialect)?;
                anyhow::Ok(std::sync::Arc::new(
                    ucupdate_protocol::dialect::Dialect::from_toml(&text)?,
                ))
            })
            .transpose()
            .with_context(|| format!("--dialect {}", args.dialect))?,
        limits: Limits {
            header_read_timeout: Duration::from_secs(args.header_timeout.max(1)),
            idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
            max_connections: args.max_connections,
            max_connections_per_client: args.max_connections_per_client,
            body_deadline: Duration::from_secs(args.body_timeout.max(1)),
            body_min_rate: args.body_min_rate,
            body_rate_grace: Duration::from_secs(args.body_rate_grace),
            max_publish_bytes: args.max_publish_bytes,
        },
        flush_interval: Duration::from_millis(args.flush_interval_ms.max(10)),
        quotas: args.quotas.quotas(),
        device_update: args.quotas.device_update(),
        catalog_signer: args.sign.signer()?.map(std::sync::Arc::new),
        workers: args.workers.map(usize::from).unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
    };
    // With workers the device listeners have their own threads; this runtime keeps only the
    // admin API, the flush and cleanup ticks and the signals, which one thread carries.
    let runtime = if config.workers > 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .context("start the tokio runtime")?;
    runtime.block_on(async move {
        // Handlers go in before the listeners' URLs are printed: a supervisor that reads them
        // and sends SIGTERM at once must get a clean shutdown, not the default action.
        let stop = Stop::install();
        let server = ucupdate_server_stub::start(config).await?;
        // One line per listener on stdout, so scripts can use port 0 and read the ports.
        let lines = [
            ("internal", server.internal_url()),
            ("internal-tls", server.internal_tls_url()),
            ("external", server.external_url()),
            ("admin", server.admin_url()),
        ];
        for (name, url) in lines {
            if let Some(url) = url {
                println!("{name} {url}");
            }
        }

        if !server.ca_pem().is_empty() {
            let ca = args
                .ca_out
                .clone()
                .unwrap_or_else(|| args.data.data.join("ca.pem"));
            println!("ca {}", ca.display());
        }
        if server.admin_addr().is_some() {
            // The path only: the token stays in its 0600 file, out of logs and terminals.
            println!("admin-token {}", server.admin_token().path().display());
        }
        stop.wait().await;
        tracing::info!("shutting down");
        server.shutdown().await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// SIGTERM and SIGINT (Ctrl-C), registered when created.
struct Stop {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Stop {
    fn install() -> Stop {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signals = signal(SignalKind::terminate())
                .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
                .ok();
            Stop { signals }
        }
        #[cfg(not(unix))]
        {
            Stop {}
        }
    }

    async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = self.signals {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
