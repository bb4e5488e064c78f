//! The simulator's integration tests, one binary (a clean `cargo test` links one executable per
//! crate, not one per file):
//! - `scenarios`: every built-in scenario against the embedded stub, verdicts checked, and
//!   reproducibility from the seed;
//! - `clock`: `--start-at`: a late process joins in progress, an early one waits;
//! - `cli`: the binary's output options (`--report -`);
//! - `dialect`: `dialect learn|check` and `run --dialect` against the foreign dialect's Python
//!   pool and phone;
//! - `shards`: four `ucupdate-sim` shard processes merged give the one-process report;
//! - `setup`: exit code 2 for setup mistakes (unreachable or refusing server, missing URLs);
//! - `schema`: every shape of JSON report validates against `docs/report.schema.json`;
//! - `interrupt`: SIGINT / SIGTERM to the binary write every report, marked interrupted;
//! - `job`: the Kubernetes Indexed Job's flow: shard processes started apart with one
//!   `--start-at` against one shared stub, merged, equal a single-process run;
//! - `live`: `--metrics` serves the run's numbers for Prometheus while it runs;
//! - `transport`: `--transport memory|tcp`, the same run for a seed over either.

mod cli;
mod clock;
mod dialect;
mod interrupt;
mod job;
mod live;
mod scenarios;
mod schema;
mod setup;
mod shards;
mod transport;
