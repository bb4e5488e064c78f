//! A minimal but faithful Device Update Service (OCS 2007 R2 / Lync) for tests, demos and load
//! tests: update rules, test devices, an update store, log upload, an audit log and a device
//! inventory, served over plain HTTP, HTTPS and NTLM-protected HTTPS.
//!
//! # Layout
//! - [`model`]: rules, test devices, catalog and inventory as plain data, and the pure
//!   decision function ([`model::Model::decide`]).
//! - [`state`]: the model behind a lock, persisted atomically to `DATA/state.json`.
//! - [`store`]: update files on disk (`DATA/store/...`), hashed once when stored.
//! - `clock`: the one module that reads a clock.

mod clock;
pub mod model;
pub mod state;
pub mod store;
