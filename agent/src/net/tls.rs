//! The shared rustls client configuration: ring provider, HTTP/1.1 only over ALPN (NTLM binds to
//! a connection and cannot survive HTTP/2), verification always on, trust anchors from a CA
//! bundle and/or the webpki roots, and switchable session resumption. Build it once and share
//! the `Arc` among every request (the simulator shares one among thousands of devices).

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use super::NetError;

/// How to build the shared [`rustls::ClientConfig`].
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// PEM text of extra CA certificates to trust (a corporate CA, a test CA).
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// Also trust the Mozilla roots shipped in `webpki-roots`.
    pub webpki_roots: bool,
    /// Keep TLS sessions (tickets / session ids) for faster reconnects.
    pub resumption: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            ca_bundle_pem: None,
            webpki_roots: true,
            resumption: true,
        }
    }
}

impl TlsOptions {
    /// Trust only the CAs in `pem` (what a device in a private PKI and the tests use).
    pub fn with_ca_pem(pem: impl Into<Vec<u8>>) -> Self {
        TlsOptions {
            ca_bundle_pem: Some(pem.into()),
            webpki_roots: false,
            resumption: true,
        }
    }

    /// Trust only the CAs in the PEM file at `path`.
    pub fn with_ca_file(path: &std::path::Path) -> Result<Self, NetError> {
        let pem = std::fs::read(path).map_err(NetError::io("read CA bundle", path))?;
        Ok(Self::with_ca_pem(pem))
    }

    /// Builds the config. Fails when the bundle holds no certificate or nothing is trusted.
    pub fn build(&self) -> Result<Arc<rustls::ClientConfig>, NetError> {
        let roots = self.roots()?;
        let provider = Arc::new(provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| NetError::Config(format!("TLS versions: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = if self.resumption {
            Resumption::default()
        } else {
            Resumption::disabled()
        };
        Ok(Arc::new(config))
    }

    /// The trust anchors [`TlsOptions::build`] verifies servers against (the simulator builds
    /// its shared verifier from the same ones).
    pub fn roots(&self) -> Result<RootCertStore, NetError> {
        let mut roots = RootCertStore::empty();
        #[cfg(feature = "web-roots")]
        if self.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if let Some(pem) = &self.ca_bundle_pem {
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| NetError::Config(format!("CA bundle: {e}")))?;
            if certs.is_empty() {
                return Err(NetError::Config("CA bundle holds no certificate".into()));
            }
            let (_added, ignored) = roots.add_parsable_certificates(certs);
            if ignored > 0 {
                tracing::warn!(ignored, "CA bundle: some certificates could not be parsed");
            }
        }
        if roots.is_empty() {
            // A firmware build without the web roots (no `web-roots` feature) and no CA bundle
            // still speaks plain HTTP on the internal path; every https server fails
            // verification, which is the point.
            #[cfg(not(feature = "web-roots"))]
            tracing::warn!(
                "no CA bundle and no web roots in this build: https servers will fail verification"
            );
            #[cfg(feature = "web-roots")]
            return Err(NetError::Config(
                "no trust anchors: give a CA bundle or enable webpki roots".into(),
            ));
        }
        Ok(roots)
    }
}

/// ring's provider with every suite and group it ships, in the order a device prefers. rustls
/// lists AES-256-GCM-SHA384 and X25519 first; the agent offers AES-128-GCM-SHA256 first, and
/// first the key-exchange group that ring implements in assembly on the CPU it was built for,
/// at a security level no TLS profile distinguishes (Mozilla's "modern" profile also lists
/// AES-128 first):
/// - SHA-384 has no hardware path in ring (on x86_64 it ran as `sha512_block_data_order_nohw`,
///   7 % of a simulated fleet's CPU in full handshakes); SHA-256 uses the SHA extensions of
///   x86_64 and ARMv8, and its 32-bit words suit armv7;
/// - P-256 is assembly on x86_64 and aarch64, where X25519 is fiat-crypto (adx) or portable C:
///   on x86_64 a full handshake cost 8-12 % less client CPU with both changes (docs/BENCHMARKS.md
///   §2). On 32-bit ARM it is the other way round (X25519 has a NEON routine, P-256 is C), so
///   armv7 keeps X25519 first.
///
/// The server still chooses: a server without these gets the rest of the list.
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::{cipher_suite as suite, kx_group};
    // Written out rather than sorted: a sort is two generic instantiations, 12 KB of the armv7
    // binary. The test below holds the list to ring's set.
    let cipher_suites = vec![
        suite::TLS13_AES_128_GCM_SHA256,
        suite::TLS13_AES_256_GCM_SHA384,
        suite::TLS13_CHACHA20_POLY1305_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    let kx_groups = if cfg!(target_arch = "arm") {
        vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1]
    } else {
        vec![kx_group::SECP256R1, kx_group::X25519, kx_group::SECP384R1]
    };
    rustls::crypto::CryptoProvider {
        cipher_suites,
        kx_groups,
        ..rustls::crypto::ring::default_provider()
    }
}

/// Eight random bytes from the TLS provider's CSPRNG (the NTLM client challenge), so the agent
/// needs no second source of randomness.
pub(crate) fn random_8() -> Result<[u8; 8], NetError> {
    let mut out = [0u8; 8];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut out)
        .map_err(|_| NetError::Config("system random source failed".into()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_trust_is_refused() {
        let opts = TlsOptions {
            ca_bundle_pem: None,
            webpki_roots: false,
            resumption: false,
        };
        assert!(matches!(opts.build(), Err(NetError::Config(_))));
        let junk = TlsOptions::with_ca_pem(b"not a pem".to_vec());
        assert!(matches!(junk.build(), Err(NetError::Config(_))));
    }

    #[test]
    fn default_config_speaks_http1_only_and_resumes() {
        let config = TlsOptions::default().build().unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let off = TlsOptions {
            resumption: false,
            ..TlsOptions::default()
        }
        .build()
        .unwrap();
        // A disabled resumption keeps no session store; compare the debug forms as rustls
        // exposes no accessor.
        assert_ne!(
            format!("{:?}", config.resumption),
            format!("{:?}", off.resumption)
        );
    }

    #[test]
    fn the_cheaper_suite_and_group_come_first_and_none_is_dropped() {
        let ours = provider();
        let ring = rustls::crypto::ring::default_provider();
        let names = |p: &rustls::crypto::CryptoProvider| {
            let mut v: Vec<_> = p.cipher_suites.iter().map(|s| s.suite()).collect();
            v.sort_by_key(|s| u16::from(*s));
            v
        };
        assert_eq!(names(&ours), names(&ring));
        let groups = |p: &rustls::crypto::CryptoProvider| {
            let mut v: Vec<_> = p.kx_groups.iter().map(|g| u16::from(g.name())).collect();
            v.sort_unstable();
            v
        };
        assert_eq!(groups(&ours), groups(&ring));
        assert_eq!(
            ours.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        let group = if cfg!(target_arch = "arm") {
            rustls::NamedGroup::X25519
        } else {
            rustls::NamedGroup::secp256r1
        };
        assert_eq!(ours.kx_groups[0].name(), group);
        // TLS 1.3 suites still come before TLS 1.2 ones.
        let versions: Vec<bool> = ours
            .cipher_suites
            .iter()
            .map(|s| s.tls13().is_some())
            .collect();
        assert!(versions.windows(2).all(|w| w[0] >= w[1]), "{versions:?}");
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random_8().unwrap(), random_8().unwrap());
    }
}
