//! Fuzzes the capture readers of `ucupdate-sim dialect learn|check`
//! (`ucupdate_simulator::capture`): a pcap or pcapng file (TCP reassembly, HTTP/1.1 framing)
//! or a HAR export, as a user hands it over from a phone's network. The first byte picks pcap
//! (its magic number is put in front), pcapng or HAR; the second the TCP port. Nothing may
//! panic; what is read must then be learnable or refused, through the dialect code, without a
//! panic either.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ucupdate_protocol::dialect::learn::{learn, Hints};

fuzz_target!(|data: &[u8]| {
    let [mode, port, rest @ ..] = data else {
        return;
    };
    let mut bytes = match mode % 3 {
        0 => vec![0xd4, 0xc3, 0xb2, 0xa1],
        1 => vec![0x0a, 0x0d, 0x0d, 0x0a],
        _ => Vec::new(),
    };
    bytes.extend_from_slice(rest);
    let port = if port % 2 == 0 { 80 } else { 18080 };
    if let Ok(capture) = ucupdate_simulator::capture::read_bytes(&bytes, port) {
        if let Ok(learned) = learn("fuzz", &capture.exchange, &Hints::default()) {
            let _ = ucupdate_protocol::dialect::check::check(&learned.dialect, &capture.exchange);
        }
    }
});
