//! Client <-> Acceptor handshakes through the public API only: who gets in, who does not,
//! and that replayed, misordered or mangled tokens are refused without panicking.

// They drive the acceptor, which the device build leaves out.
#![cfg(feature = "acceptor")]

use std::sync::Arc;

use ucupdate_ntlm::{
    from_header, message_type, to_header, AcceptStep, Acceptor, Client, Credentials, RejectReason,
    UserDb,
};

const NOW: u64 = 133_500_000_000_000_000;

fn users() -> Arc<UserDb> {
    let db = UserDb::parse("# device accounts\nCORP\\alice:s3cret\n\nbob:hunter2\n")
        .unwrap_or_else(|e| panic!("{e}"));
    Arc::new(db)
}

/// One full handshake, carried through the HTTP header encoding as the listener will.
fn handshake(spec: &str, password: &str, challenge: [u8; 8]) -> (AcceptStep, Vec<u8>) {
    let mut client = Client::new(Credentials::parse_user(spec, password), "PHONE-01");
    let mut acceptor = Acceptor::new(users(), challenge, NOW, "CORP");
    let t1 = from_header(&to_header(&client.negotiate())).unwrap_or_else(|e| panic!("{e}"));
    let AcceptStep::Challenge(t2) = acceptor.step(&t1) else {
        panic!("Type 1 not answered with a challenge");
    };
    let t3 = client
        .authenticate(&t2, [0x42; 8], NOW + 5)
        .unwrap_or_else(|e| panic!("{e}"));
    (acceptor.step(&t3), t3)
}

#[test]
fn right_password_with_domain_is_accepted() {
    let (step, _) = handshake("CORP\\alice", "s3cret", [1; 8]);
    assert_eq!(
        step,
        AcceptStep::Accepted {
            domain: "CORP".into(),
            user: "alice".into()
        }
    );
}

#[test]
fn right_password_without_domain_is_accepted() {
    let (step, _) = handshake("bob", "hunter2", [2; 8]);
    assert_eq!(
        step,
        AcceptStep::Accepted {
            domain: String::new(),
            user: "bob".into()
        }
    );
    // A file entry with a domain also accepts a client that names none, or a UPN.
    assert!(matches!(
        handshake("alice", "s3cret", [3; 8]).0,
        AcceptStep::Accepted { .. }
    ));
    assert!(matches!(
        handshake("ALICE@corp.example", "s3cret", [3; 8]).0,
        AcceptStep::Accepted { .. }
    ));
}

#[test]
fn the_accepted_identity_is_the_user_files_spelling() {
    for spec in ["corp\\ALICE", "Alice@corp.example", "ALICE"] {
        assert_eq!(
            handshake(spec, "s3cret", [3; 8]).0,
            AcceptStep::Accepted {
                domain: "CORP".into(),
                user: "alice".into()
            },
            "{spec}"
        );
    }
    assert_eq!(
        handshake("BOB", "hunter2", [3; 8]).0,
        AcceptStep::Accepted {
            domain: String::new(),
            user: "bob".into()
        }
    );
}

#[test]
fn a_foreign_domain_is_refused_even_with_the_right_password() {
    // Once accepted and logged as `EVILDOM\ALICE` and `attacker.example\alice`.
    for spec in [
        "EVILDOM\\ALICE",
        "alice@attacker.example",
        "EVILDOM\\bob",
        "bob@evil.example",
    ] {
        let password = if spec.contains("bob") {
            "hunter2"
        } else {
            "s3cret"
        };
        assert_eq!(
            handshake(spec, password, [4; 8]).0,
            AcceptStep::Rejected(RejectReason::ForeignDomain),
            "{spec}"
        );
    }
    // An account listed without a domain takes the server's own (the acceptor's target).
    assert!(matches!(
        handshake("CORP\\bob", "hunter2", [4; 8]).0,
        AcceptStep::Accepted { .. }
    ));
}

#[test]
fn wrong_password_is_a_bad_proof() {
    let (step, _) = handshake("CORP\\alice", "hunter2", [4; 8]);
    assert_eq!(step, AcceptStep::Rejected(RejectReason::BadProof));
}

#[test]
fn unknown_user_is_refused() {
    let (step, _) = handshake("CORP\\mallory", "s3cret", [5; 8]);
    assert_eq!(step, AcceptStep::Rejected(RejectReason::UnknownUser));
}

#[test]
fn type3_without_type1_is_unexpected() {
    let (_, t3) = handshake("bob", "hunter2", [6; 8]);
    let mut fresh = Acceptor::new(users(), [6; 8], NOW, "CORP");
    assert_eq!(
        fresh.step(&t3),
        AcceptStep::Rejected(RejectReason::UnexpectedMessage)
    );
}

#[test]
fn replayed_type3_on_a_new_challenge_is_rejected() {
    let (step, t3) = handshake("bob", "hunter2", [7; 8]);
    assert!(matches!(step, AcceptStep::Accepted { .. }));
    let mut other = Acceptor::new(users(), [8; 8], NOW, "CORP");
    let mut probe = Client::new(Credentials::parse_user("bob", "x"), "EVE");
    assert!(matches!(
        other.step(&probe.negotiate()),
        AcceptStep::Challenge(_)
    ));
    assert_eq!(
        other.step(&t3),
        AcceptStep::Rejected(RejectReason::BadProof)
    );
}

#[test]
fn an_acceptor_is_spent_after_one_handshake() {
    let mut client = Client::new(Credentials::parse_user("bob", "hunter2"), "PHONE");
    let mut acceptor = Acceptor::new(users(), [9; 8], NOW, "CORP");
    let t1 = client.negotiate();
    let AcceptStep::Challenge(t2) = acceptor.step(&t1) else {
        panic!("expected a challenge");
    };
    // A second Type 1 would reuse the challenge: refused, and the handshake is over.
    assert_eq!(
        acceptor.step(&t1),
        AcceptStep::Rejected(RejectReason::UnexpectedMessage)
    );
    let t3 = client
        .authenticate(&t2, [1; 8], NOW)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        acceptor.step(&t3),
        AcceptStep::Rejected(RejectReason::UnexpectedMessage)
    );
}

#[test]
fn a_type2_sent_to_the_acceptor_is_unexpected() {
    let mut server = Acceptor::new(users(), [1; 8], NOW, "CORP");
    let AcceptStep::Challenge(t2) =
        server.step(&Client::new(Credentials::parse_user("bob", "hunter2"), "PHONE").negotiate())
    else {
        panic!("expected a challenge");
    };
    let mut other = Acceptor::new(users(), [1; 8], NOW, "CORP");
    assert_eq!(
        other.step(&t2),
        AcceptStep::Rejected(RejectReason::UnexpectedMessage)
    );
}

#[test]
fn garbage_and_truncated_tokens_are_malformed() {
    let mut client = Client::new(Credentials::parse_user("bob", "hunter2"), "PHONE");
    let t1 = client.negotiate();
    for token in [
        &b""[..],
        b"hello",
        b"NTLMSSP\0",
        b"NTLMSSP\0\x01\0\0",
        &t1[..14],
    ] {
        let mut acceptor = Acceptor::new(users(), [1; 8], NOW, "CORP");
        assert_eq!(
            acceptor.step(token),
            AcceptStep::Rejected(RejectReason::Malformed),
            "token {token:?}"
        );
    }

    let mut acceptor = Acceptor::new(users(), [1; 8], NOW, "CORP");
    let AcceptStep::Challenge(t2) = acceptor.step(&t1) else {
        panic!("expected a challenge");
    };
    let t3 = client
        .authenticate(&t2, [1; 8], NOW)
        .unwrap_or_else(|e| panic!("{e}"));
    for len in 12..t3.len() {
        let mut acceptor = Acceptor::new(users(), [1; 8], NOW, "CORP");
        acceptor.step(&t1);
        let step = acceptor.step(&t3[..len]);
        assert!(
            matches!(step, AcceptStep::Rejected(RejectReason::Malformed)),
            "prefix of {len} bytes gave {step:?}"
        );
    }
}

#[test]
fn the_client_takes_the_servers_timestamp_and_is_deterministic() {
    let (_, a) = handshake("bob", "hunter2", [1; 8]);
    let (_, b) = handshake("bob", "hunter2", [1; 8]);
    assert_eq!(a, b, "same inputs, same Type 3: nothing hidden is random");
    // NOW (the server's MsvAvTimestamp), not the client's NOW + 5, sits in the blob.
    let stamp = NOW.to_le_bytes();
    assert!(a.windows(8).any(|w| w == stamp));
    assert!(!a.windows(8).any(|w| w == (NOW + 5).to_le_bytes()));
}

#[test]
fn message_types_are_recognised() {
    let mut client = Client::new(Credentials::parse_user("bob", "hunter2"), "PHONE");
    let t1 = client.negotiate();
    assert_eq!(message_type(&t1), Some(1));
    let mut acceptor = Acceptor::new(users(), [1; 8], NOW, "CORP");
    let AcceptStep::Challenge(t2) = acceptor.step(&t1) else {
        panic!("expected a challenge");
    };
    assert_eq!(message_type(&t2), Some(2));
    let t3 = client
        .authenticate(&t2, [1; 8], NOW)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(message_type(&t3), Some(3));
    assert_eq!(message_type(b"NTLMSSP\0\x04\0\0\0"), None);
    assert_eq!(message_type(b"NTLMSSP\0\x01\0"), None);
    assert_eq!(message_type(b"HTTP/1.1"), None);
}
