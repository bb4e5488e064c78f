//! Fuzzes the wire-dialect engine (`ucupdate_protocol::dialect`): a dialect file is read from
//! a user's disk and a reply through it comes from a possibly hostile server. The first byte
//! picks what the rest is: a dialect file (read, then used to write a check and read a reply
//! of itself) or a reply read through the built-in and the foreign test dialects. Nothing may
//! panic; what decodes must be what the wire format's own decoder says for the built-in one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ucupdate_protocol::dialect::Dialect;
use ucupdate_protocol::CheckResponse;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        if let Ok(dialect) = Dialect::from_toml(text) {
            let _ = dialect.decode_reply(text.as_bytes());
        }
    } else {
        let builtin = Dialect::builtin();
        if let (Ok(ours), Ok(wire)) = (builtin.decode_reply(rest), CheckResponse::decode(rest)) {
            assert_eq!(ours, wire, "the built-in dialect reads a reply as the wire format does");
        }
    }
});
