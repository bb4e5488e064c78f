//! The protocol crate's integration tests, one binary: golden fixtures under `tests/fixtures/`
//! (`golden`), property tests (`roundtrip`) and a replay of the fuzz corpus (`fuzz_corpus`).

mod fuzz_corpus;
mod golden;
mod roundtrip;
