//! Fuzzes the in-band provisioning reader.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ucupdate_protocol::Provisioning;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Provisioning::decode(data) {
        assert_eq!(Provisioning::decode(p.encode().as_bytes()).expect("re-decode"), p);
    }
});
