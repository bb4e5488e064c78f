//! The protocol crate's integration tests, one binary: golden fixtures under `tests/fixtures/`
//! (`golden`) and property tests (`roundtrip`).

mod golden;
mod roundtrip;
