//! The agent's HTTP(S) client, shared by the driver and the fleet simulator.
//!
//! Every call opens its own **pinned** connection (our `TcpStream`, TLS via tokio-rustls,
//! hyper's connection-level HTTP/1.1 client) and keeps every request of the call on it: that is
//! what NTLM needs, and what a pooled client (reqwest) does not guarantee. The [`Client`] holds
//! only fleet-wide state (an `Arc`'d rustls config, timeouts); thousands of calls can run at
//! once in one process.
//!
//! # Layout
//! - [`client`]: [`Client`], [`ClientSettings`], [`Timeouts`], [`RequestShaping`],
//!   [`RequestStats`].
//! - [`tls`]: [`TlsOptions`] -> the shared `Arc<rustls::ClientConfig>`.
//! - [`error`]: [`NetError`] and its [`ErrorClass`].
//! - [`check`]: [`check()`] and [`upload_log`] (each with a `*_with_stats` twin).
//! - [`download`]: [`download()`] and [`download_to`] (resume, SHA-256, verification).
//! - `file_sink`: the File sink's writer thread (write-back started as it goes).
//! - `exchange`: one request with optional NTLM (anonymous, then Type 1/2/3 on one connection).
//! - `conn`: one pinned connection with its timeouts.
//! - `shaping`: the simulator's per-device latency and rate cap.
//! - [`connector`] (feature `connector`, the simulator's): connections opened in memory.
//!
//! See `docs/AGENT-NET.md` for the error classes, timeouts and TLS options.

pub mod check;
pub mod client;
mod conn;
#[cfg(feature = "connector")]
pub mod connector;
pub mod download;
pub mod error;
mod exchange;
mod file_sink;
mod shaping;
pub mod tls;

pub use check::{
    check, check_in_dialect_with_stats, check_with_stats, upload_log, upload_log_with_stats,
};
pub use client::{Client, ClientSettings, RequestShaping, RequestStats, Timeouts};
#[cfg(feature = "connector")]
pub use connector::{Connector, ConnectorHook};
pub use download::{download, download_to, DownloadSink, DownloadedFile};
pub use error::{AuthStage, ErrorClass, NetError, TimeoutPhase};
pub use tls::TlsOptions;
pub use ucupdate_ntlm::Credentials;
