//! Starting and stopping a server in-process: [`ServerConfig`] -> [`start`] ->
//! [`RunningServer`], plus [`Control`], the handle the simulator and tests script the server
//! with (publish, approve, restore, reset, test devices, inventory, metrics).
//!
//! The shutdown signal is a `watch` channel handed to every listener; [`RunningServer::shutdown`]
//! sets it, waits for the listeners and their in-flight requests, and flushes the state database.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use ucupdate_ntlm::UserDb;
use ucupdate_protocol::{AuditFormat, FileName, FirmwareVersion, HttpUrl, UpdateKey};

use crate::app::{self, App, Site};
use crate::audit::AuditLog;
use crate::catalog::CatalogSigner;
use crate::http::conn;
use crate::http::Limits;
use crate::lock::{DataLock, LockError};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::model::{BaseUrls, InventoryEntry, Rule, TestDevice};
use crate::quota::{QuotaError, Quotas};
use crate::state::{RuleRecord, State, StateError};
use crate::tls::{self, TlsError, TlsSource};
use crate::token::{AdminToken, TokenError};
use crate::{package, store, workers};

/// Everything a server needs. [`ServerConfig::loopback`] gives all four listeners on
/// `127.0.0.1` with OS-chosen ports and a generated certificate.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// State file, update store, logs and audit logs live here.
    pub data_dir: PathBuf,
    /// Internal plain HTTP listener (the port-80 path of real phones).
    pub internal: Option<SocketAddr>,
    /// Internal HTTPS listener (anonymous).
    pub internal_tls: Option<SocketAddr>,
    /// External HTTPS listener (NTLM).
    pub external: Option<SocketAddr>,
    /// Admin API and `/metrics` (bearer token, Host and Origin checks: see `http::admin_guard`;
    /// still plain HTTP, so keep it on loopback or a trusted network).
    pub admin: Option<SocketAddr>,
    /// The admin token's file (default `DATA/admin.token`; created 0600 if missing).
    pub admin_token_file: Option<PathBuf>,
    /// Names (`name` or `name:port`) the admin listener answers to besides its own address
    /// and `localhost:PORT`.
    pub admin_hosts: Vec<String>,
    /// NTLM users of the external listener.
    pub users: UserDb,
    pub tls: TlsSource,
    /// Where to write the PEM clients should trust (default `DATA/ca.pem`).
    pub ca_out: Option<PathBuf>,
    /// `BaseURL` root in check replies (default: the internal listener, plain if enabled).
    pub public_internal_url: Option<HttpUrl>,
    /// `ExternalBaseURL` root in check replies (default: the external listener).
    pub public_external_url: Option<HttpUrl>,
    /// The audit-log file's server name and the NTLM target name.
    pub server_name: String,
    /// The pool named in rule identities, `service:WebServer:<pool>/<id>` (default: the
    /// server name).
    pub pool_fqdn: Option<String>,
    /// The store URLs check replies name: R2's `DeviceUpdateFiles_Int/_Ext` (default) or
    /// Lync's `RequestHandler/Files`, `RequestHandlerExt/Files`. Both are always served.
    pub store_layout: crate::layout::StoreLayout,
    /// The audit log's form: CSV with a header row (default) or OCS R2's `;` form.
    pub audit_format: AuditFormat,
    pub deploy_roundtable_on_import: bool,
    /// Accept device types other than `UCPhone` and `RoundTable` in checks (default: 400).
    pub accept_unknown_device_types: bool,
    /// The wire dialect the device endpoints speak (docs/PROTOCOL.md §11): checks arrive at
    /// its path too and are read through its request template, replies are written in it.
    /// `None`: the built-in `ucupdate`.
    pub dialect: Option<Arc<ucupdate_protocol::dialect::Dialect>>,
    pub limits: Limits,
    /// How often inventory changes from checks are written to the database.
    pub flush_interval: Duration,
    /// Log and inventory caps, retention periods and the cleanup period.
    pub quotas: Quotas,
    /// Device-update settings to set at start, over the stored ones (`serve` flags; unset
    /// fields keep the stored value, else the documented default).
    pub device_update: crate::settings::ConfigurationPatch,
    /// Signs `<image stem>.cat` for what is published through the admin API or [`Control`]
    /// when the version holds no catalog the server did not make (`serve --sign-cert`).
    pub catalog_signer: Option<Arc<CatalogSigner>>,
    /// Device listeners on their own threads (`serve --workers`): 0 serves them on the
    /// runtime that calls [`start`] (the simulator's and tests' in-process servers); N >= 1
    /// starts N threads, each a current-thread runtime with its own `SO_REUSEPORT` listener
    /// per device address (`crate::workers`). The admin listener and the background ticks stay
    /// on the caller's runtime either way.
    pub workers: usize,
}

impl ServerConfig {
    /// The pool in rule identities: [`ServerConfig::pool_fqdn`], else the server name.
    pub fn pool_fqdn(&self) -> String {
        self.pool_fqdn
            .clone()
            .unwrap_or_else(|| self.server_name.clone())
    }

    /// All listeners on `127.0.0.1:0`, a generated certificate, no users.
    pub fn loopback(data_dir: impl Into<PathBuf>) -> Self {
        let any = Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
        ServerConfig {
            data_dir: data_dir.into(),
            internal: any,
            internal_tls: any,
            external: any,
            admin: any,
            admin_token_file: None,
            admin_hosts: Vec::new(),
            users: UserDb::default(),
            tls: TlsSource::default(),
            ca_out: None,
            public_internal_url: None,
            public_external_url: None,
            server_name: "ucupdate".to_owned(),
            pool_fqdn: None,
            audit_format: AuditFormat::default(),
            store_layout: Default::default(),
            deploy_roundtable_on_import: false,
            accept_unknown_device_types: false,
            dialect: None,
            limits: Limits::default(),
            flush_interval: Duration::from_secs(1),
            quotas: Quotas::default(),
            device_update: Default::default(),
            catalog_signer: None,
            workers: 0,
        }
    }
}

/// Why a server could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Binding a listener or writing the CA file failed.
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Package(#[from] package::PackageError),
    /// A quota setting is out of range.
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// A device-update setting is out of range.
    #[error(transparent)]
    Settings(crate::settings::ConfigError),
    /// Another process holds the data directory.
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

/// A started server.
pub struct RunningServer {
    internal: Option<SocketAddr>,
    internal_tls: Option<SocketAddr>,
    external: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    ca_pem: String,
    control: Control,
    admin_token: AdminToken,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The listeners in memory ([`RunningServer::in_memory`]) and what shutdown waits on.
    memory: (crate::memory::InMemory, crate::memory::Drain),
    /// Released only after the last state write of [`RunningServer::shutdown`].
    lock: Arc<DataLock>,
}

/// Accept-queue length of every listener. Tokio's `TcpListener::bind` leaves the kernel at 128:
/// a fleet powering on at once (a boot storm, or the simulator with 256 connections in flight)
/// overflowed it, and the dropped SYNs came back as 1 s client-side retransmits (seen as a
/// 1 s p99 in `ucupdate-sim` while `wrk`, which does not time connects, saw nothing).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr`; with `reuse_port`, other sockets of this process may bind it too (the
/// workers' listeners, `crate::workers`).
pub(crate) fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        #[cfg(unix)]
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds every configured listener, then serves until [`RunningServer::shutdown`].
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let opening = config.clone();
    // The lock comes first: a second server on this directory stops here, before it binds
    // anything or rewrites `ca.pem` under the first one's clients.
    let opened = tokio::task::spawn_blocking(move || app::open_data(&opening))
        .await
        .map_err(|e| ServerError::Task(e.to_string()))??;
    let state = opened.state.clone();
    let lock = opened.lock.clone();
    let admin_token = opened.token.clone();

    let workers = config.workers;
    let bind = |addr: Option<SocketAddr>, what: &'static str, device: bool| async move {
        match addr {
            Some(a) => listen(a, device && workers > 1)
                .map(Some)
                .map_err(|e| ServerError::Io {
                    what: format!("bind {what} listener {a}"),
                    error: e,
                }),
            None => Ok(None),
        }
    };
    let internal = bind(config.internal, "internal", true).await?;
    let internal_tls = bind(config.internal_tls, "internal TLS", true).await?;
    let external = bind(config.external, "external", true).await?;
    let admin = bind(config.admin, "admin", false).await?;
    let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let (internal_addr, internal_tls_addr, external_addr, admin_addr) = (
        local(&internal),
        local(&internal_tls),
        local(&external),
        local(&admin),
    );

    let needs_tls = internal_tls.is_some() || external.is_some();
    let (acceptor, ca_pem) = if needs_tls {
        let material = tls::load(&config.tls)?;
        let ca_path = config
            .ca_out
            .clone()
            .unwrap_or_else(|| config.data_dir.join("ca.pem"));
        store::write_atomic(&ca_path, material.ca_pem.as_bytes()).map_err(|e| ServerError::Io {
            what: format!("write {}", ca_path.display()),
            error: e,
        })?;
        (Some(TlsAcceptor::from(material.config)), material.ca_pem)
    } else {
        (None, String::new())
    };

    let bases = BaseUrls {
        internal: config
            .public_internal_url
            .clone()
            .or_else(|| internal_addr.map(|a| url_of(false, a)))
            .or_else(|| internal_tls_addr.map(|a| url_of(true, a))),
        external: config
            .public_external_url
            .clone()
            .or_else(|| external_addr.map(|a| url_of(true, a))),
        layout: config.store_layout,
    };
    let app = App::with_data(&config, opened, bases);

    let (shutdown, rx) = watch::channel(false);
    let memory = crate::memory::InMemory::new(
        app.clone(),
        [
            (internal_addr, Site::Internal, None),
            (internal_tls_addr, Site::Internal, acceptor.clone()),
            (external_addr, Site::External, acceptor.clone()),
            (admin_addr, Site::Admin, None),
        ],
        rx.clone(),
    );
    let mut tasks = Vec::new();
    let mut device_sites = Vec::new();
    let mut spawn = |listener: Option<TcpListener>, site: Site, tls: Option<TlsAcceptor>| {
        if let Some(listener) = listener {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, ?site, tls = tls.is_some(), workers, "listening");
            }
            if workers > 0 && site != Site::Admin {
                device_sites.push(workers::DeviceSite {
                    listener,
                    site,
                    tls,
                });
                return;
            }
            tasks.push(tokio::spawn(conn::run(
                listener,
                site,
                tls,
                app.clone(),
                rx.clone(),
                None,
            )));
        }
    };
    spawn(internal, Site::Internal, None);
    spawn(internal_tls, Site::Internal, acceptor.clone());
    spawn(external, Site::External, acceptor.clone());
    spawn(admin, Site::Admin, None);
    if !device_sites.is_empty() {
        let started = workers::start(workers, device_sites, &app, &rx);
        tasks.extend(started.map_err(|e| ServerError::Io {
            what: format!("start {workers} device workers"),
            error: e,
        })?);
    }
    tasks.push(tokio::spawn(flusher(
        state.clone(),
        app.control().audit,
        config.flush_interval,
        rx.clone(),
    )));
    tasks.push(tokio::spawn(cleaner(
        app.clone(),
        config.quotas.cleanup_interval,
        rx,
    )));

    Ok(RunningServer {
        internal: internal_addr,
        internal_tls: internal_tls_addr,
        external: external_addr,
        admin: admin_addr,
        ca_pem,
        control: app.control(),
        admin_token,
        shutdown,
        tasks,
        memory,
        lock,
    })
}

fn url_of(https: bool, addr: SocketAddr) -> HttpUrl {
    let ip = if addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    HttpUrl {
        https,
        host: ip.to_string(),
        port: addr.port(),
        path: "/".to_owned(),
    }
}

/// Writes inventory changes from checks in batches, so a check never waits for fsync, and the
/// audit lines buffered since the last tick (`crate::audit`).
async fn flusher(
    state: Arc<State>,
    audit: Arc<AuditLog>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = every.max(Duration::from_millis(10));
    // The first write is one period after start: nothing has changed before then.
    let mut tick = tokio::time::interval_at(crate::clock::tokio_now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = conn::shutdown_signalled(&mut shutdown) => break,
        }
        let (s, a) = (state.clone(), audit.clone());
        let flushed = tokio::task::spawn_blocking(move || {
            if let Err(e) = a.flush() {
                tracing::error!(error = %e, "cannot write the audit log");
            }
            s.flush()
        });
        match flushed.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the state database"),
            Err(e) => tracing::error!(error = %e, "state flush task failed"),
        }
    }
}

/// Deletes logs and audit files past their retention: once at start (before it looks at the
/// shutdown signal, so a server that starts at all has cleaned up), then every `every`. The
/// time is the clock module's; `App::cleanup` is the same work with an injected time.
async fn cleaner(app: App, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let every = every.max(Duration::from_secs(1));
    loop {
        let run = app.clone();
        match tokio::task::spawn_blocking(move || run.cleanup(crate::clock::unix_secs())).await {
            Ok(Ok(done)) if done != crate::app::Cleanup::default() => {
                tracing::info!(?done, "deleted logs past their retention");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "log cleanup failed"),
            Err(e) => tracing::error!(error = %e, "log cleanup task failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = conn::shutdown_signalled(&mut shutdown) => break,
        }
    }
}

impl RunningServer {
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal
    }

    pub fn internal_tls_addr(&self) -> Option<SocketAddr> {
        self.internal_tls
    }

    pub fn external_addr(&self) -> Option<SocketAddr> {
        self.external
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// `http://127.0.0.1:<port>/RequestHandler/ucdevice.upx`.
    pub fn internal_url(&self) -> Option<HttpUrl> {
        self.internal
            .map(|a| url_of(false, a).with_path(ucupdate_protocol::wire::INTERNAL_HANDLER_PATH))
    }

    /// `https://127.0.0.1:<port>/RequestHandler/ucdevice.upx`.
    pub fn internal_tls_url(&self) -> Option<HttpUrl> {
        self.internal_tls
            .map(|a| url_of(true, a).with_path(ucupdate_protocol::wire::INTERNAL_HANDLER_PATH))
    }

    /// `https://127.0.0.1:<port>/RequestHandlerExt/ucdevice.upx`.
    pub fn external_url(&self) -> Option<HttpUrl> {
        self.external
            .map(|a| url_of(true, a).with_path(ucupdate_protocol::wire::EXTERNAL_HANDLER_PATH))
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn admin_url(&self) -> Option<HttpUrl> {
        self.admin.map(|a| url_of(false, a))
    }

    /// The PEM that clients should trust (empty when no TLS listener is configured).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// The admin API's bearer token.
    pub fn admin_token(&self) -> &AdminToken {
        &self.admin_token
    }

    /// Connections to this server's listeners without sockets (`crate::memory`).
    pub fn in_memory(&self) -> crate::memory::InMemory {
        self.memory.0.clone()
    }

    /// Stops accepting, lets in-flight requests finish, and writes the pending state.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            task.await.map_err(|e| ServerError::Task(e.to_string()))?;
        }
        self.memory.1.wait().await;
        let (state, audit) = (self.control.state.clone(), self.control.audit.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = audit.flush() {
                tracing::error!(error = %e, "cannot write the audit log");
            }
            state.persist()
        })
        .await
        .map_err(|e| ServerError::Task(e.to_string()))??;
        drop(self.lock);
        Ok(())
    }
}

/// Scripting handle for a running server (cheap to clone). Changes are on disk when the
/// returned future resolves.
#[derive(Debug, Clone)]
pub struct Control {
    pub(crate) state: Arc<State>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) catalog_signer: Option<Arc<CatalogSigner>>,
    pub(crate) audit: Arc<AuditLog>,
}

impl Control {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&State) -> Result<T, ServerError> + Send + 'static,
    ) -> Result<T, ServerError> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || f(&state))
            .await
            .map_err(|e| ServerError::Task(e.to_string()))?
    }

    /// Stores `files` as `version` of `key` (replacing that version's file list) and makes it
    /// pending, or approved for a RoundTable with deploy-on-import. With a catalog signer and
    /// no `.cat` among `files`, the server signs one ([`crate::catalog::resign_version`]).
    pub async fn publish(
        &self,
        key: &UpdateKey,
        version: FirmwareVersion,
        files: Vec<(FileName, Vec<u8>)>,
    ) -> Result<Rule, ServerError> {
        let key = key.clone();
        let signer = self.catalog_signer.clone();
        let mut files = files;
        if crate::roundtable::lacks_rtconfig(&key, files.iter().map(|(n, _)| n)) {
            files.push((
                crate::roundtable::name(),
                crate::roundtable::GENERIC_RTCONFIG.to_vec(),
            ));
        }
        self.blocking(move |state| {
            let mut metas = Vec::new();
            for (name, bytes) in files {
                let dir = store::version_dir(state.data_dir(), &key, version);
                metas.push(
                    store::store_file(state.data_dir(), &key, version, name, &mut &bytes[..])
                        .map_err(|e| StateError::io(&dir, e))?,
                );
            }
            let rule = state.import_version(key.clone(), version, metas)?;
            match signer {
                Some(signer) => {
                    crate::catalog::resign_version(state, &signer, &key, version)?;
                    Ok(state.read(|m| m.rules.get(&key).cloned()).unwrap_or(rule))
                }
                None => Ok(rule),
            }
        })
        .await
    }

    /// Imports a package directory or cabinet.
    pub async fn import(
        &self,
        path: impl Into<PathBuf>,
    ) -> Result<Vec<package::Imported>, ServerError> {
        let path = path.into();
        let signer = self.catalog_signer.clone();
        self.blocking(move |state| {
            let limits = package::ImportLimits::default();
            Ok(package::import_path_signed(
                state,
                &path,
                &limits,
                signer.as_deref(),
            )?)
        })
        .await
    }

    pub async fn approve(&self, key: &UpdateKey) -> Result<Rule, ServerError> {
        let key = key.clone();
        self.blocking(move |state| Ok(state.approve(&key)?)).await
    }

    pub async fn restore(&self, key: &UpdateKey) -> Result<Rule, ServerError> {
        let key = key.clone();
        self.blocking(move |state| Ok(state.restore(&key)?)).await
    }

    pub async fn reset(&self, key: &UpdateKey) -> Result<Rule, ServerError> {
        let key = key.clone();
        self.blocking(move |state| Ok(state.reset(&key)?)).await
    }

    pub async fn add_test_device(&self, device: TestDevice) -> Result<bool, ServerError> {
        self.blocking(move |state| Ok(state.add_test_device(device)?))
            .await
    }

    pub async fn remove_test_device(&self, device: TestDevice) -> Result<bool, ServerError> {
        self.blocking(move |state| Ok(state.remove_test_device(&device)?))
            .await
    }

    pub fn rules(&self) -> Vec<RuleRecord> {
        self.state.rules()
    }

    pub fn rule(&self, key: &UpdateKey) -> Option<Rule> {
        self.state.read(|m| m.rules.get(key).cloned())
    }

    pub fn test_devices(&self) -> Vec<TestDevice> {
        self.state.test_devices()
    }

    pub fn inventory(&self) -> Vec<InventoryEntry> {
        self.state.inventory()
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Requests to `endpoint` (`check`, `log_upload`, `files`, `auth`, `admin`, ...), any status.
    pub fn hits(&self, endpoint: &str) -> u64 {
        self.metrics.snapshot().hits(endpoint)
    }

    /// Writes pending inventory changes and the buffered audit lines now.
    pub async fn flush(&self) -> Result<(), ServerError> {
        let audit = self.audit.clone();
        self.blocking(move |state| {
            audit.flush().map_err(|error| ServerError::Io {
                what: "audit log".into(),
                error,
            })?;
            Ok(state.flush()?)
        })
        .await
    }
}
