//! The fleet's server-certificate verifier: rustls' own WebPKI verifier, with the chain check
//! remembered per distinct chain. Every virtual device shares one TLS config; a million devices
//! meeting the same server would verify the same chain a million times, which costs the load
//! generator an ECDSA verification and a certificate parse per handshake and the server
//! nothing (docs/BENCHMARKS.md §2). What stays per handshake is what proves the server holds
//! the key *now*: the handshake signature (TLS 1.3 CertificateVerify, TLS 1.2
//! ServerKeyExchange) is verified every time, by the inner verifier.
//!
//! A chain is remembered for [`REMEMBER_SECS`] of the time rustls passes in (so an expiry is
//! still noticed within that) and only once the inner verifier accepted it; a chain it refused
//! is asked again each time, so a refusal is never hidden.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// How long an accepted chain is taken as verified, seconds.
pub const REMEMBER_SECS: u64 = 60;
/// Distinct chains remembered at once (a run meets one or two servers).
const ENTRIES: usize = 8;

struct Entry {
    /// The end-entity certificate, the intermediates, and the name, as the handshake sent them.
    chain: Vec<u8>,
    verified_at: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct ChainCache {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chain of {} bytes at {}",
            self.chain.len(),
            self.verified_at
        )
    }
}

impl ChainCache {
    /// Verifies against `roots`, as the agent's own config does.
    pub fn new(roots: RootCertStore) -> Result<ChainCache, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ChainCache {
            inner,
            seen: Mutex::new(Vec::new()),
        })
    }

    /// `config` with this verifier in place of its own.
    pub fn install(self, config: &rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
        let mut config = config.clone();
        config.dangerous().set_certificate_verifier(Arc::new(self));
        Arc::new(config)
    }
}

fn key(end_entity: &[u8], intermediates: &[CertificateDer<'_>], name: &ServerName<'_>) -> Vec<u8> {
    let mut key = Vec::with_capacity(end_entity.len() + 64);
    for part in std::iter::once(end_entity).chain(intermediates.iter().map(|c| c.as_ref())) {
        key.extend_from_slice(&(part.len() as u32).to_be_bytes());
        key.extend_from_slice(part);
    }
    key.extend_from_slice(name.to_str().as_bytes());
    key
}

impl ServerCertVerifier for ChainCache {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let key = key(end_entity, intermediates, server_name);
        let secs = now.as_secs();
        let fresh =
            |e: &Entry| e.chain == key && secs.saturating_sub(e.verified_at) < REMEMBER_SECS;
        if self.seen.lock().is_ok_and(|seen| seen.iter().any(fresh)) {
            return Ok(ServerCertVerified::assertion());
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.retain(|e| e.chain != key);
            if seen.len() >= ENTRIES {
                seen.remove(0);
            }
            seen.push(Entry {
                chain: key,
                verified_at: secs,
            });
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{date_time_ymd, BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    /// A CA, a leaf for `a.example` it signed that expires at the start of 2030, and a
    /// look-alike leaf for the same name that nobody trusted.
    fn pki() -> (
        RootCertStore,
        CertificateDer<'static>,
        CertificateDer<'static>,
    ) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        leaf.not_before = date_time_ymd(2020, 1, 1);
        leaf.not_after = date_time_ymd(2030, 1, 1);
        let leaf_key = KeyPair::generate().unwrap();
        let good = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let evil_key = KeyPair::generate().unwrap();
        let evil = leaf.self_signed(&evil_key).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        (roots, good.der().clone(), evil.der().clone())
    }

    /// 2030-01-01T00:00:00Z, when the leaf expires.
    const EXPIRY: u64 = 1_893_456_000;

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs))
    }

    #[test]
    fn a_chain_is_remembered_for_a_minute_and_a_refusal_never() {
        let (roots, good, evil) = pki();
        let cache = ChainCache::new(roots).unwrap();
        let name = ServerName::try_from("a.example").unwrap();
        let verify = |cert: &CertificateDer<'_>, name: &ServerName<'_>, secs: u64| {
            cache
                .verify_server_cert(cert, &[], name, &[], at(secs))
                .is_ok()
        };
        // Untrusted: refused, and refused again (a refusal is not remembered).
        assert!(!verify(&evil, &name, EXPIRY - 30));
        assert!(!verify(&evil, &name, EXPIRY - 29));
        // Trusted and valid, 30 s before it expires: verified and remembered.
        assert!(verify(&good, &name, EXPIRY - 30));
        // 10 s after its expiry the remembered answer still holds (the cost of remembering,
        // bounded by REMEMBER_SECS)...
        assert!(verify(&good, &name, EXPIRY + 10));
        // ...and once the minute is over the chain is verified again, and now refused.
        assert!(!verify(&good, &name, EXPIRY - 30 + REMEMBER_SECS));
        // The name is part of what is remembered.
        let other = ServerName::try_from("b.example").unwrap();
        assert!(verify(&good, &name, EXPIRY - 100));
        assert!(!verify(&good, &other, EXPIRY - 99));
    }

    #[test]
    fn the_key_separates_chains_and_names() {
        let a = CertificateDer::from(vec![1u8, 2, 3]);
        let b = CertificateDer::from(vec![1u8, 2]);
        let c = CertificateDer::from(vec![3u8]);
        let name = ServerName::try_from("a.example").unwrap();
        let other = ServerName::try_from("b.example").unwrap();
        // Lengths are part of the key: [1,2,3] + [] differs from [1,2] + [3].
        assert_ne!(key(&a, &[], &name), key(&b, &[c], &name));
        assert_ne!(key(&a, &[], &name), key(&a, &[], &other));
        assert_eq!(key(&a, &[], &name), key(&a, &[], &name));
    }
}
