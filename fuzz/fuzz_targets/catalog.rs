//! Fuzzes the catalog codec and the verifier: decoding never panics, a decoded trust list
//! re-encodes to the same value, and verification (with the input's own certificates as
//! anchors, so the chain and signature paths run on attacker-chosen bytes) never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ucupdate_agent::trust::{verify_catalog, CatalogClock, CatalogPolicy, TrustAnchors};
use ucupdate_protocol::catalog;

fuzz_target!(|data: &[u8]| {
    let Ok(cat) = catalog::decode(data) else {
        return;
    };
    let ctl = catalog::encode_trust_list(&cat.trust_list);
    let again = catalog::decode(&catalog::encode_unsigned(&ctl)).expect("re-decode");
    assert_eq!(again.trust_list, cat.trust_list);
    if let Ok(anchors) = TrustAnchors::from_der(&cat.certificates) {
        for clock in [CatalogClock::Untrusted, CatalogClock::Trusted(1_750_000_000)] {
            if let Ok(v) = verify_catalog(data, &anchors, clock, CatalogPolicy::default()) {
                let _ = v.verify_file("ucupdate.bin", [0u8; 32]);
            }
        }
    }
});
