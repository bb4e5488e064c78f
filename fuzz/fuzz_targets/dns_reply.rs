//! Fuzzes the agent's DNS reply reader (discovery's only untrusted input before TLS). The id
//! is taken from the input so the fuzzer gets past the id check; the question is the fixed name
//! the seeds ask for. The body is `ucupdate_agent::dns::message::check_reply`, which a proptest
//! in the agent runs on stable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ucupdate_agent::dns::message::check_reply;

fuzz_target!(|data: &[u8]| check_reply(data));
