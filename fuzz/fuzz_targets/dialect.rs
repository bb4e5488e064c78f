//! Fuzzes the wire-dialect engine (`ucupdate_protocol::dialect`): a dialect file is read from
//! a user's disk and a reply through it comes from a possibly hostile server. The first byte
//! picks what the rest is: a dialect file (read, then used to read a reply and a check of
//! itself and to write a reply), a reply read through the built-in dialect, or a check read
//! through the built-in and the foreign test dialects (as `serve --dialect` reads one). Nothing may
//! panic; what decodes must be what the wire format's own decoder says for the built-in one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ucupdate_protocol::dialect::Dialect;
use ucupdate_protocol::CheckResponse;

fn foreign() -> Dialect {
    Dialect::from_toml(include_str!("../../tests/peers/foreign.toml")).expect("the test dialect")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 3 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        if let Ok(dialect) = Dialect::from_toml(text) {
            let _ = dialect.decode_reply(text.as_bytes());
            let _ = dialect.decode_request(text.as_bytes());
            let _ = dialect.encode_reply(&CheckResponse::NoUpdate);
        }
    } else if mode % 3 == 2 {
        // A check a stub of the dialect reads: what it reads, rendered again, reads the same.
        for dialect in [Dialect::builtin(), foreign()] {
            if let Ok(request) = dialect.decode_request(rest) {
                let again = dialect.encode_request(&request);
                assert_eq!(dialect.decode_request(again.as_bytes()), Ok(request));
            }
        }
    } else {
        let builtin = Dialect::builtin();
        if let (Ok(ours), Ok(wire)) = (builtin.decode_reply(rest), CheckResponse::decode(rest)) {
            assert_eq!(
                ours, wire,
                "the built-in dialect reads a reply as the wire format does"
            );
        }
    }
});
