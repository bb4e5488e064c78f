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

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use ucupdate_protocol::wire::MAX_MESSAGE_BYTES;
use ucupdate_protocol::StoreKind;

pub use crate::http::Body;

use crate::audit::AuditLog;
use crate::http::auth::{self, ConnAuth};
use crate::http::{admin, device, read_capped, Ctx};
use crate::logs::LogStore;
use crate::metrics::Metrics;
use crate::model::BaseUrls;
use crate::server::{Control, ServerConfig, ServerError};
use crate::state::{State, StateOptions};

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
    auth: ConnAuth,
}

impl ConnState {
    pub fn new(site: Site, peer: SocketAddr) -> Self {
        ConnState {
            site,
            peer,
            auth: ConnAuth::default(),
        }
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
    /// Opens (or creates) `config.data_dir` without binding anything. Blocking: it reads the
    /// state database. Check replies name `config.public_internal_url` / `public_external_url`
    /// (no base URL when unset); the listener addresses in `config` are ignored.
    pub fn open(config: &ServerConfig) -> Result<App, ServerError> {
        let (state, logs) = open_storage(config)?;
        let bases = BaseUrls {
            internal: config.public_internal_url.clone(),
            external: config.public_external_url.clone(),
        };
        Ok(App::with_state(config, Arc::new(state), logs, bases))
    }

    pub(crate) fn with_state(
        config: &ServerConfig,
        state: Arc<State>,
        logs: LogStore,
        bases: BaseUrls,
    ) -> App {
        App {
            ctx: Arc::new(Ctx {
                state,
                metrics: Arc::new(Metrics::default()),
                audit: AuditLog::new(config.data_dir.join("audit"), &config.server_name),
                logs,
                quotas: config.quotas,
                bases,
                limits: config.limits,
                users: Arc::new(config.users.clone()),
                server_name: config.server_name.clone(),
                accept_unknown_device_types: config.accept_unknown_device_types,
                open_device_connections: AtomicUsize::new(0),
            }),
        }
    }

    pub(crate) fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// The scripting handle on this app's state and metrics.
    pub fn control(&self) -> Control {
        Control {
            state: self.ctx.state.clone(),
            metrics: self.ctx.metrics.clone(),
        }
    }

    /// Answers one request of `conn`, and counts it in the metrics. Never fails: every problem
    /// is a 4xx or 5xx response. A body that errors mid-read is answered 400.
    pub async fn call<B>(&self, req: Request<B>, conn: &mut ConnState) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let ctx = &self.ctx;
        let peer = conn.peer;
        let (endpoint, response) = match conn.site {
            Site::Internal => device::route(ctx, StoreKind::Internal, req, peer, None).await,
            Site::Admin => admin::route(ctx, req).await,
            Site::External => match auth::gate(ctx, &mut conn.auth, &req) {
                Ok(user) => device::route(ctx, StoreKind::External, req, peer, Some(user)).await,
                Err(refusal) => {
                    // Read (a bounded amount of) the body so the connection stays usable for
                    // the next leg of the handshake.
                    let _ = read_capped(req.into_body(), MAX_MESSAGE_BYTES).await;
                    ("auth", *refusal)
                }
            },
        };
        ctx.metrics.request(endpoint, response.status().as_u16());
        if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(%peer, endpoint, "request failed");
        }
        response
    }

    /// Deletes the device logs and audit files past their retention at `now_unix` (blocking).
    /// The server's cleanup task calls it every `quotas.cleanup_interval` with the clock's
    /// time; tests call it with any time they like.
    pub fn cleanup(&self, now_unix: u64) -> std::io::Result<Cleanup> {
        let logs = self.ctx.logs.cleanup(now_unix)?;
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

/// What one [`App::cleanup`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleanup {
    pub log_files: u64,
    pub log_bytes: u64,
    pub audit_files: u64,
}

/// Opens the state (database) and the log store of `config.data_dir` (blocking).
pub(crate) fn open_storage(config: &ServerConfig) -> Result<(State, LogStore), ServerError> {
    config.quotas.validate()?;
    let options = StateOptions {
        deploy_roundtable_on_import: config.deploy_roundtable_on_import,
    };
    let state = State::open(&config.data_dir, options)?;
    let logs = LogStore::open(&config.data_dir, config.quotas).map_err(|e| ServerError::Io {
        what: format!("read {}", config.data_dir.join("logs").display()),
        source: e,
    })?;
    Ok((state, logs))
}
