//! The socket-free core of the server: [`App`] answers one `http::Request`, with any body type,
//! for one connection's [`ConnState`]. Everything a request can do (checks, log uploads, file
//! downloads, NTLM, the admin API, `/metrics`) happens here; the listeners in `http::conn` only
//! add what needs a socket (TLS, the connection cap, header and idle timeouts, shutdown).
//!
//! Tests and the fuzz target call it directly:
//!
//! ```no_run
//! # async fn demo(config: ucupdate_server_stub::ServerConfig) {
//! use http_body_util::Full;
//! use ucupdate_server_stub::{App, ConnState, Site};
//! let app = App::open(&config).unwrap();
//! let mut conn = ConnState::new(Site::Internal, "127.0.0.1:5000".parse().unwrap());
//! let request = http::Request::get("/nowhere").body(Full::new(bytes::Bytes::new())).unwrap();
//! let response = app.call(request, &mut conn).await;
//! assert_eq!(response.status(), 404);
//! # }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use ucupdate_protocol::wire::MAX_MESSAGE_BYTES;
use ucupdate_protocol::StoreKind;

pub use crate::http::Body;

use crate::audit::AuditLog;
use crate::http::auth::{self, ConnAuth};
use crate::http::{admin, body_guard, device, read_capped, text, Ctx};
use crate::lock::DataLock;
use crate::logs::LogStore;
use crate::metrics::Metrics;
use crate::model::BaseUrls;
use crate::server::{Control, ServerConfig, ServerError};
use crate::state::{State, StateOptions};
use crate::token::{AdminToken, TOKEN_FILE};

/// Which site a connection reached: what it may ask for and how it authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// `/RequestHandler/...` and `/DeviceUpdateFiles_Int/...`, anonymous (plain or TLS).
    Internal,
    /// `/RequestHandlerExt/...` and `/DeviceUpdateFiles_Ext/...`, NTLM per connection.
    External,
    /// The admin API and `/metrics` (not counted against the device connection cap).
    Admin,
}

/// What the server knows about one connection: its site, its peer, and its NTLM state
/// (NTLM authenticates a connection, not a request). Create one per connection and pass it to
/// every [`App::call`] of that connection; a new `ConnState` is a new, anonymous connection.
#[derive(Debug)]
pub struct ConnState {
    site: Site,
    peer: SocketAddr,
    /// The listener's address (the admin API's `Host` check); `None` in memory.
    local: Option<SocketAddr>,
    auth: ConnAuth,
}

impl ConnState {
    pub fn new(site: Site, peer: SocketAddr) -> Self {
        ConnState {
            site,
            peer,
            local: None,
            auth: ConnAuth::default(),
        }
    }

    /// The same, accepted by the listener bound at `local`.
    pub fn with_local(mut self, local: SocketAddr) -> Self {
        self.local = Some(local);
        self
    }

    pub fn site(&self) -> Site {
        self.site
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// The request handlers of one server (cheap to clone). [`crate::start`] wraps one in
/// listeners; tests and fuzzers use [`App::open`] and [`App::call`] without sockets.
#[derive(Clone)]
pub struct App {
    ctx: Arc<Ctx>,
}

impl App {
    /// Opens (or creates) `config.data_dir` without binding anything, and holds its lock
    /// ([`DataLock`]) while this app or a clone lives. Blocking: it reads the state database.
    /// Check replies name `config.public_internal_url` / `public_external_url` (no base URL
    /// when unset); the listener addresses in `config` are ignored.
    pub fn open(config: &ServerConfig) -> Result<App, ServerError> {
        let opened = open_data(config)?;
        let bases = BaseUrls {
            internal: config.public_internal_url.clone(),
            external: config.public_external_url.clone(),
            layout: config.store_layout,
        };
        Ok(App::with_data(config, opened, bases))
    }

    pub(crate) fn with_data(config: &ServerConfig, opened: OpenedData, bases: BaseUrls) -> App {
        App {
            ctx: Arc::new(Ctx {
                state: opened.state,
                metrics: Arc::new(Metrics::default()),
                audit: Arc::new(AuditLog::new(
                    &config.data_dir,
                    &config.server_name,
                    config.audit_format,
                )),
                logs: opened.logs,
                quotas: config.quotas,
                settings: std::sync::RwLock::new(opened.settings),
                bases,
                limits: config.limits,
                users: Arc::new(config.users.clone()),
                server_name: config.server_name.clone(),
                pool_fqdn: config.pool_fqdn(),
                accept_unknown_device_types: config.accept_unknown_device_types,
                dialect: config.dialect.clone(),
                open_device_connections: AtomicUsize::new(0),
                per_client: Mutex::new(HashMap::new()),
                admin_token: opened.token,
                admin_hosts: config.admin_hosts.clone(),
                catalog_signer: config.catalog_signer.clone(),
                _lock: opened.lock,
            }),
        }
    }

    pub(crate) fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// The admin API's bearer token (what `DATA/admin.token` holds).
    pub fn admin_token(&self) -> &AdminToken {
        &self.ctx.admin_token
    }

    /// The scripting handle on this app's state and metrics.
    pub fn control(&self) -> Control {
        Control {
            state: self.ctx.state.clone(),
            metrics: self.ctx.metrics.clone(),
            catalog_signer: self.ctx.catalog_signer.clone(),
            audit: self.ctx.audit.clone(),
        }
    }

    /// Answers one request of `conn`, and counts it in the metrics. Never fails: every problem
    /// is a 4xx or 5xx response. A body that errors mid-read is answered 400; a device body
    /// that arrives too slowly ([`crate::Limits::body_deadline`]) 408 with `Connection: close`.
    pub async fn call<B>(&self, req: Request<B>, conn: &mut ConnState) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let ctx = &self.ctx;
        let peer = conn.peer;
        let started = crate::clock::tokio_now();
        let share = match conn.site {
            Site::Admin => {
                let (endpoint, response) = admin::route(ctx, req, conn.local).await;
                return self.counted(endpoint, response, peer, started);
            }
            Site::Internal => StoreKind::Internal,
            Site::External => StoreKind::External,
        };
        // Device bodies only: admin uploads (token-holders, up to a GiB) may be slow.
        let (parts, body) = req.into_parts();
        let (body, expired) = body_guard::Guarded::new(body, &ctx.limits);
        let req = Request::from_parts(parts, body);
        let (endpoint, mut response) = match share {
            StoreKind::Internal => device::route(ctx, share, req, peer, None).await,
            StoreKind::External => match auth::gate(ctx, &mut conn.auth, &req) {
                Ok(user) => device::route(ctx, share, req, peer, Some(user)).await,
                Err(refusal) => {
                    // Read (a bounded amount of) the body so the connection stays usable for
                    // the next leg of the handshake.
                    let _ = read_capped(req.into_body(), MAX_MESSAGE_BYTES).await;
                    ("auth", *refusal)
                }
            },
        };
        if expired.is_set() {
            tracing::warn!(%peer, endpoint, "request body too slow: 408 and close");
            response = text(StatusCode::REQUEST_TIMEOUT, "request body too slow");
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        self.counted(endpoint, response, peer, started)
    }

    fn counted(
        &self,
        endpoint: &'static str,
        response: Response<Body>,
        peer: SocketAddr,
        started: tokio::time::Instant,
    ) -> Response<Body> {
        self.ctx.metrics.request_timed(
            endpoint,
            response.status().as_u16(),
            Some(started.elapsed()),
        );
        if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(%peer, endpoint, "request failed");
        }
        response
    }

    /// Deletes the device logs and audit files past their retention at `now_unix` (blocking).
    /// The server's cleanup task calls it every `quotas.cleanup_interval` with the clock's
    /// time; tests call it with any time they like.
    pub fn cleanup(&self, now_unix: u64) -> std::io::Result<Cleanup> {
        let retention = self.ctx.settings().log_retention_secs();
        let logs = self.ctx.logs.cleanup(now_unix, retention)?;
        let audit_files = self
            .ctx
            .audit
            .cleanup(now_unix, self.ctx.quotas.audit_retention_secs())?;
        Ok(Cleanup {
            log_files: logs.files,
            log_bytes: logs.bytes,
            audit_files,
        })
    }
}

impl App {
    /// Clear-CsDeviceUpdateLog: deletes the device logs uploaded more than `days_back` days
    /// before `now_unix`, and the audit files of the days before that (blocking).
    pub fn clear_logs(&self, days_back: u32, now_unix: u64) -> std::io::Result<Cleanup> {
        clear_logs(&self.ctx, days_back, now_unix)
    }
}

/// `logs clear` of the offline CLI: [`App::clear_logs`] on a data directory no server runs
/// on (the caller holds its lock), at the clock's time (blocking).
pub fn clear_logs_offline(data_dir: &std::path::Path, days_back: u32) -> std::io::Result<Cleanup> {
    let back = u64::from(days_back) * crate::quota::DAY_SECS;
    let now = crate::clock::unix_secs();
    let logs = LogStore::open(data_dir, crate::quota::Quotas::default())?
        .delete_before(now.saturating_sub(back))?;
    let audit_files = AuditLog::new(data_dir, "", Default::default()).cleanup(now, back)?;
    Ok(Cleanup {
        log_files: logs.files,
        log_bytes: logs.bytes,
        audit_files,
    })
}

/// [`App::clear_logs`] (also the admin API's `POST /admin/logs/clear`).
pub(crate) fn clear_logs(ctx: &Ctx, days_back: u32, now_unix: u64) -> std::io::Result<Cleanup> {
    let back = u64::from(days_back) * crate::quota::DAY_SECS;
    let logs = ctx.logs.delete_before(now_unix.saturating_sub(back))?;
    let audit_files = ctx.audit.cleanup(now_unix, back)?;
    Ok(Cleanup {
        log_files: logs.files,
        log_bytes: logs.bytes,
        audit_files,
    })
}

/// What one [`App::cleanup`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cleanup {
    pub log_files: u64,
    pub log_bytes: u64,
    pub audit_files: u64,
}

/// A data directory opened for serving: its lock (taken first, so a second process never gets
/// as far as reading or writing anything), its state, its device logs and the admin token.
pub(crate) struct OpenedData {
    pub lock: Arc<DataLock>,
    /// The stored settings with the config's patch applied.
    pub settings: crate::settings::DeviceUpdateConfiguration,
    pub state: Arc<State>,
    pub logs: LogStore,
    pub token: AdminToken,
}

pub(crate) fn open_data(config: &ServerConfig) -> Result<OpenedData, ServerError> {
    config.quotas.validate()?;
    let lock = Arc::new(DataLock::acquire(&config.data_dir)?);
    let options = StateOptions {
        deploy_roundtable_on_import: config.deploy_roundtable_on_import,
    };
    let state = Arc::new(State::open(&config.data_dir, options)?);
    let settings = state
        .device_update_configuration()?
        .apply(&config.device_update)
        .map_err(ServerError::Settings)?;
    let logs = LogStore::open(&config.data_dir, config.quotas).map_err(|e| ServerError::Io {
        what: format!("read {}", config.data_dir.join("logs").display()),
        error: e,
    })?;
    let token_file = config
        .admin_token_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(TOKEN_FILE));
    let token = AdminToken::load_or_create(&token_file)?;
    Ok(OpenedData {
        lock,
        settings,
        state,
        logs,
        token,
    })
}
