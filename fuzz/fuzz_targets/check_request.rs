//! Fuzzes the check-request decoder: it must never panic, and whatever it accepts must survive
//! an encode/decode round trip unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ucupdate_protocol::CheckRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = CheckRequest::decode(data) {
        let again = CheckRequest::decode(request.encode().as_bytes()).expect("re-decode");
        assert_eq!(again, request);
    }
});
