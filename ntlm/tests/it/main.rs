//! The NTLM crate's integration tests, one binary: handshakes through the public API
//! (`handshake`), property tests (`no_panic`), and the independent peers curl and pyspnego
//! (`curl`, `pyspnego`: `#[ignore]`d, run by CI's interop stage once the peers are installed).

mod curl;
mod handshake;
mod no_panic;
mod pyspnego;
