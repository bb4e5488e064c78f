//! A minimal but faithful Device Update Service (OCS 2007 R2 / Lync) for tests, demos and load
//! tests: update rules, test devices, an update store, log upload, an audit log and a device
//! inventory, served over plain HTTP, HTTPS and NTLM-protected HTTPS, plus a loopback admin API.
//!
//! # Layout
//! - [`model`]: rules, test devices, catalog and inventory as plain data, and the pure
//!   decision function ([`model::Model::decide`]).
//! - [`state`]: the model behind a lock, stored by [`db`] in `DATA/state.sqlite` (a JSON
//!   `state.json` of earlier versions is migrated on the first start).
//! - [`quota`]: the caps and retention periods ([`Quotas`]); [`logs`]: device logs under them.
//! - [`settings`]: the service's `CsDeviceUpdateConfiguration` (log types, extensions, sizes,
//!   intervals), stored in the database when changed through the admin API.
//! - [`layout`]: the store's URL roots, R2's `DeviceUpdateFiles_Int/_Ext` and Lync's
//!   `RequestHandler(Ext)/Files` (both served; `--store-layout` picks the offered one).
//! - [`store`]: update files on disk (`DATA/store/...`), hashed once when stored.
//! - [`package`]: vendor-style packages (`updateInfo.xml` + files, directory or `.cab`).
//! - [`roundtable`]: the generic `RTConfig.xml` every RoundTable update carries.
//! - [`catalog`]: signing `.cat` catalogs (`catalog create`, throwaway CA for the simulator).
//! - [`audit`]: the daily request-handler audit log, deleted after its retention.
//! - [`disk`]: regular files only when reading packages, 0600/0700 when writing, private secrets.
//! - [`metrics`]: counters and the Prometheus text format.
//! - [`tls`]: rustls configuration, generated or from PEM files.
//! - [`lock`]: the data directory's exclusive lock (`DATA/server.lock`, one process at a time).
//! - [`token`]: the admin API's bearer token (`DATA/admin.token`, 0600).
//! - [`app`]: the socket-free core, [`App::call`] answers one `http::Request` of one
//!   connection ([`ConnState`]: its [`Site`], peer and NTLM state). Tests and fuzzers use it.
//! - `http`: what [`App`] dispatches to (device endpoints, files, NTLM, admin API, body and
//!   response helpers) and the listeners around it (`http::conn`: TLS, caps, timeouts).
//! - [`server`]: [`ServerConfig`], [`start`] (an [`App`] behind listeners), [`RunningServer`],
//!   [`Control`].
//! - `workers`: the per-core device listeners (`ServerConfig::workers`): a current-thread
//!   runtime per thread, `SO_REUSEPORT` listeners.
//! - [`memory`]: [`memory::InMemory`], connections to a running server's listeners over an
//!   in-memory pipe instead of a socket (the simulator's embedded server).
//! - [`testing`] (feature `testing`): the fixtures the workspace's tests share (update key,
//!   files, NTLM user, a loopback stub on a temp dir).
//! - `clock`: the one module that reads a clock.

pub mod app;
pub mod audit;
pub mod catalog;
mod clock;
pub mod db;
pub mod disk;
mod http;
pub mod layout;
pub mod lock;
pub mod logs;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod package;
pub mod quota;
pub mod roundtable;
pub mod server;
pub mod settings;
pub mod state;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod token;
mod workers;

pub use app::{App, Cleanup, ConnState, Site};
pub use http::Limits;
pub use lock::{DataLock, LockError};
pub use metrics::MetricsSnapshot;
pub use model::{InventoryEntry, Rule, RuleError, TestDevice};
pub use package::{PackageEntry, PackageError};
pub use quota::Quotas;
pub use server::{start, Control, RunningServer, ServerConfig, ServerError};
pub use state::{RuleRecord, State, StateError, StateOptions};
pub use tls::{TlsMaterial, TlsSource};
pub use token::{AdminToken, TokenError};
pub use ucupdate_ntlm::UserDb;
