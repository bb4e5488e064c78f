//! The device side of the Device Update Service.
//!
//! # Layout
//! - [`machine`]: the sans-IO update state machine (events and `now` in; actions and the next
//!   deadline out). No tokio, no sockets, no clock reads: the simulator drives up to millions of it.
//! - [`net`]: the HTTP(S) client: pinned connections, NTLM, the check POST, ranged streaming
//!   downloads with SHA-256, log upload. Shared by the driver and the simulator.
//! - [`dns`]: discovery of `ucupdates-r2.<domain>` and the DHCP / resolv.conf domain.
//! - [`persist`]: atomic state and file writes (write-temp, fsync, rename).
//! - [`device`]: the firmware boundary (`Device` trait) and its Linux hook-command implementation.
//! - [`driver`]: the tokio loop that runs the machine against the real world.
//! - [`perform`]: the I/O half of the lifecycle: a network action -> one future -> its
//!   completion event, and [`perform::InFlight`], the per-kind tracking of work in flight.
//!   Shared by the driver, the simulator and the fault tests.
//! - [`bridge`]: net results -> machine events (the result half of [`perform`]).
//! - [`trust`]: pure verdicts on what to install: the signed `.cat` catalog verifier.
//! - [`clock`]: the one place this crate reads the wall clock.
//! - [`hash`]: FNV-1a and splitmix64, the workspace's one copy of each.
//! - [`digest`]: SHA-256 (and legacy SHA-1) of files and bytes, through ring.

pub mod bridge;
pub mod clock;
pub mod device;
pub mod digest;
pub mod dns;
pub mod driver;
pub mod hash;
pub mod machine;
pub mod net;
pub mod perform;
pub mod persist;
pub mod trust;
