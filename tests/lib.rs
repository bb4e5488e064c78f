//! The cross-crate tests of the workspace live in `tests/it/` (one binary: `faults`, `hostile`,
//! `interop`). This library holds nothing of its own: the fixtures they share with the other
//! crates' tests (update key, files, the NTLM user, a loopback stub on a temp dir) are in
//! `ucupdate_server_stub::testing`, and the faulty proxies in `ucupdate_simulator::faults`.
