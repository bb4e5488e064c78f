//! Property tests: whatever bytes arrive from the network, the acceptor and the client
//! answer with a value, never a panic, and never accept.

// They drive the acceptor, which the device build leaves out.
#![cfg(feature = "acceptor")]

use std::sync::Arc;

use proptest::prelude::*;
use ucupdate_ntlm::{AcceptStep, Acceptor, Client, Credentials, UserDb};

fn acceptor() -> Acceptor {
    let mut db = UserDb::default();
    db.insert(Some("CORP"), "alice", "secret");
    Acceptor::new(Arc::new(db), [9; 8], 1, "CORP")
}

/// A valid Type 1 with room for flipped bytes, so fuzzing reaches past the signature check.
fn with_signature(ty: u8, mut rest: Vec<u8>) -> Vec<u8> {
    let mut token = b"NTLMSSP\0".to_vec();
    token.extend_from_slice(&[ty, 0, 0, 0]);
    token.append(&mut rest);
    token
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn acceptor_first_token_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = acceptor().step(&bytes);
    }

    #[test]
    fn acceptor_type3_never_panics_nor_accepts(
        ty in 1u8..=3,
        rest in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut acc = acceptor();
        let mut client = Client::new(Credentials::parse_user("alice", "secret"), "WS");
        let first = acc.step(&client.negotiate());
        prop_assert!(matches!(first, AcceptStep::Challenge(_)));
        let step = acc.step(&with_signature(ty, rest));
        prop_assert!(matches!(step, AcceptStep::Rejected(_)), "{:?}", step);
    }

    #[test]
    fn client_authenticate_never_panics(
        raw in proptest::collection::vec(any::<u8>(), 0..300),
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        for token in [raw.clone(), with_signature(2, rest.clone())] {
            let mut client = Client::new(Credentials::parse_user("CORP\\alice", "secret"), "WS");
            client.negotiate();
            let _ = client.authenticate(&token, [1; 8], 2);
        }
    }

    #[test]
    fn a_mutated_type3_is_never_accepted_with_a_changed_user_or_proof(
        index in 0usize..400,
        xor in 1u8..=255,
    ) {
        let mut acc = acceptor();
        let mut client = Client::new(Credentials::parse_user("CORP\\alice", "secret"), "WS");
        let AcceptStep::Challenge(t2) = acc.step(&client.negotiate()) else {
            return Err(TestCaseError::fail("no challenge"));
        };
        let mut t3 = client.authenticate(&t2, [3; 8], 4).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let index = index % t3.len();
        t3[index] ^= xor;
        // Every byte of our Type 3 is covered by the proof or the MIC, except the flag
        // bits and the version, which the MIC covers too: no single change gets in.
        let step = acc.step(&t3);
        prop_assert!(matches!(step, AcceptStep::Rejected(_)), "byte {} ^ {:#x}: {:?}", index, xor, step);
    }
}
