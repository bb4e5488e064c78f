//! Replays the fuzz corpus of the protocol's decoders under `cargo test`: every saved input
//! (including the crashes the fuzzer found, kept there as regressions) must either be refused or
//! survive a round trip through our own writer. The fuzzer explores; this keeps what it found.

use std::path::{Path, PathBuf};

use ucupdate_protocol::{CheckRequest, CheckResponse, Provisioning};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} is empty", dir.display());
    inputs
}

/// Decodes every input of `target`; returns how many were accepted after checking each round trip.
fn replay<T: PartialEq + std::fmt::Debug>(
    target: &str,
    decode: impl Fn(&[u8]) -> Option<T>,
    encode: impl Fn(&T) -> String,
) -> usize {
    let mut accepted = 0;
    for (path, bytes) in corpus(target) {
        let Some(value) = decode(&bytes) else {
            continue;
        };
        let again = decode(encode(&value).as_bytes())
            .unwrap_or_else(|| panic!("{}: our own encoding was refused", path.display()));
        assert_eq!(
            again,
            value,
            "{}: round trip changed the value",
            path.display()
        );
        accepted += 1;
    }
    accepted
}

#[test]
fn check_response_corpus_round_trips_or_is_refused() {
    let accepted = replay(
        "check_response",
        |b| CheckResponse::decode(b).ok(),
        CheckResponse::encode,
    );
    assert!(accepted > 0, "no corpus response decoded at all");
}

#[test]
fn check_request_corpus_round_trips_or_is_refused() {
    let accepted = replay(
        "check_request",
        |b| CheckRequest::decode(b).ok(),
        CheckRequest::encode,
    );
    assert!(accepted > 0, "no corpus request decoded at all");
}

#[test]
fn provisioning_corpus_round_trips_or_is_refused() {
    let accepted = replay(
        "provisioning",
        |b| Provisioning::decode(b).ok(),
        Provisioning::encode,
    );
    assert!(
        accepted > 0,
        "no corpus provisioning document decoded at all"
    );
}

#[test]
fn the_u_ffff_crash_is_refused_with_a_clear_error() {
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus/check_response/crash-u+ffff-in-base-url.xml"),
    )
    .unwrap();
    let err = CheckResponse::decode(&bytes).unwrap_err().to_string();
    assert!(err.contains("U+FFFF"), "{err}");
}
