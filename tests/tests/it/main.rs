//! The workspace's cross-crate tests, one binary (a clean `cargo test` links one executable per
//! crate, not one per file). Each module is a suite:
//! - `dialect`: the protocol crate's dialect code against the made-up foreign dialect's
//!   Python pool and phone (`peers/foreign_*.py`);
//! - `dialect_agent`: the real agent updating itself against that Python pool;
//! - `dialect_stub`: the stub standing in for a pool of that dialect (`serve --dialect`), for
//!   the Python phone and a simulated fleet;
//! - `faults`: network faults between the agent's real client and machine and a real stub
//!   (fault proxies, DNS, wrong certificates): error class, back-off cap, no bad install,
//!   convergence;
//! - `hostile`: hostile input that needs more than the stub (no password in either end's logs, a
//!   burst far over the connection cap);
//! - `interop`: peers nobody on this project wrote (curl, pyspnego, dnsmasq, gcab, nginx), each
//!   `#[ignore]`d with the tool it needs; `.ci/run` runs them with `-- --ignored`;
//! - `quickstart`: `docs/QUICKSTART.md` run step by step against this build's binaries;
//! - `shared_admin`: `ucupdate-sim run --admin` against a real `ucupdate-server` process leaves
//!   its real rules as they were and nothing of the run behind;
//! - `stub_logs`: what a client can make the `ucupdate-server` binary log (`openssl s_client`
//!   with an IP address as the server name: nothing per connection).
//!
//! The fixtures they share with the other crates' tests (update key, files, the NTLM user, a
//! loopback stub) come from `ucupdate_server_stub::testing`.

mod dialect;
mod dialect_agent;
mod dialect_stub;
mod faults;
mod hostile;
mod interop;
mod quickstart;
mod shared_admin;
mod stub_logs;
