//! Fuzzes the NTLM acceptor and client with hostile tokens: neither may panic, and no token
//! that did not come from someone who knows the password may be accepted. The first byte
//! picks the stage: a first token, a token after a valid Type 1, or a Type 2 for the client.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use ucupdate_ntlm::{AcceptStep, Acceptor, Client, Credentials, UserDb};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, token)) = data.split_first() else {
        return;
    };
    let mut users = UserDb::default();
    users.insert(Some("CORP"), "alice", "secret");
    let mut acceptor = Acceptor::new(Arc::new(users), [7; 8], 1, "CORP");
    let mut client = Client::new(Credentials::parse_user("CORP\\alice", "secret"), "WS");
    match mode % 3 {
        0 => {
            let _ = acceptor.step(token);
        }
        1 => {
            assert!(matches!(
                acceptor.step(&client.negotiate()),
                AcceptStep::Challenge(_)
            ));
            let step = acceptor.step(token);
            assert!(
                matches!(step, AcceptStep::Rejected(_)),
                "forged token accepted: {step:?}"
            );
        }
        _ => {
            client.negotiate();
            let _ = client.authenticate(token, [3; 8], 5);
        }
    }
});
