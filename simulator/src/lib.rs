//! Fleets of virtual Phone Edition and RoundTable devices, each driven by the agent's own
//! state machine, against a Device Update server — with compressed time, scenarios, per-device
//! verdicts, latency histograms and reports that merge across shards.
//!
//! # Layout
//! - [`profile`]: device models and fleet mixes.
//! - [`fleet`]: each device's identity derived from its global index and the seed; shards.
//! - [`scenario`]: scenarios as data (TOML), the built-ins in `scenarios/`.
//! - [`engine`]: the run loop, the virtual clock and its queues, the virtual devices, the glue to
//!   the agent's performer, metrics, phases and verdicts (one file each).
//! - [`admin`]: how a run publishes / approves / restores on the server.
//! - [`chain_cache`]: the fleet's TLS verifier, the server chain checked once per distinct
//!   chain (the handshake signature every time).
//! - [`embedded`]: the in-process server stub a run uses when no server is given.
//! - [`report`]: the mergeable report and its text, JSON and HTML forms.
//! - [`runner`]: one call from a scenario to a report (server, client, engine).
//! - [`shared`]: administering a shared server: probe models, the notice, the clean-up.
//! - [`threads`]: `--threads`, the runtime requests run on (one thread, or one worker per core).
//! - [`thresholds`]: k6-style pass/fail limits on a report's metrics.
//! - [`progress`]: what a run says on stderr while it runs (start line, bar or plain lines).
//! - [`live`]: `--metrics ADDR`, the run's live numbers for Prometheus.
//! - [`clock`]: the one place the wall clock is read.
//! - [`start`]: `--start-at`, the shards' common clock: virtual zero on the wall clock.
//! - [`capture`], [`dialect_cmd`]: `ucupdate-sim dialect learn|check`, a wire dialect from a
//!   captured exchange (the dialect itself is `ucupdate_protocol::dialect`).
//!
//! The conformance suite (`ucupdate-sim conformance`) is its own crate, `ucupdate-conformance`.

pub mod admin;
pub mod capture;
pub mod chain_cache;
pub mod clock;
pub mod dialect_cmd;
pub mod duration;
pub mod embedded;
pub mod engine;
pub mod faults;
pub mod fleet;
pub mod live;
pub mod profile;
pub mod progress;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod shared;
pub mod start;
pub mod threads;
pub mod thresholds;
pub mod transport;
