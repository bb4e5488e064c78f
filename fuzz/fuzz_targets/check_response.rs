//! Fuzzes the check-response decoder (what a device reads from a possibly hostile server).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ucupdate_protocol::CheckResponse;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = CheckResponse::decode(data) {
        let again = CheckResponse::decode(response.encode().as_bytes()).expect("re-decode");
        assert_eq!(again, response);
    }
});
