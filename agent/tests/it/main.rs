//! The agent's integration tests, one binary (a clean `cargo test` links one executable per
//! crate, not one per file). Each module is a suite:
//! - `net_*`: the HTTP(S) client over real loopback sockets and TLS (`net_support`: canned servers);
//! - `dns_discovery`: discovery against a real in-process DNS server;
//! - `driver_*`: the real driver and the `ucupdate-agent` binary against the in-process server
//!   stub (`driver_support`: the stub, hook devices, status polling);
//! - `cli_errors`: error messages of the binary as a user sees them;
//! - `power_cut`: the real binary SIGKILLed at seeded instants through a whole update;
//! - `trust_hostile`: the download rules against `peers/hostile_server.py`, a hostile server;
//! - `trust_catalog`: the catalog attacks against the real binary and the same hostile server.

mod cli_errors;
mod dns_discovery;
mod driver_cli;
mod driver_external;
mod driver_lifecycle;
mod driver_network;
mod driver_support;
mod net_check;
mod net_concurrency;
mod net_download;
mod net_ntlm;
mod net_support;
mod power_cut;
mod trust_catalog;
mod trust_hostile;
