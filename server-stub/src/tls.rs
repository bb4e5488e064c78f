//! TLS for the internal HTTPS and external listeners: rustls with the ring provider, ALPN
//! `http/1.1` only (NTLM authenticates a connection and cannot survive HTTP/2).
//!
//! The certificate comes from PEM files, or is generated at start: a throw-away CA and a leaf
//! for `localhost`, `127.0.0.1`, `::1` and any extra names, signed by that CA. The CA (or the
//! given certificate chain) is what clients are told to trust.

use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Generate a CA and a leaf at start for the loopback names plus these.
    SelfSigned { extra_names: Vec<String> },
    /// A PEM certificate chain (leaf first) and its PEM private key.
    Files { cert: PathBuf, key: PathBuf },
}

impl Default for TlsSource {
    fn default() -> Self {
        TlsSource::SelfSigned {
            extra_names: Vec::new(),
        }
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}: no certificate in the PEM file")]
    NoCertificate(PathBuf),
    #[error("{0}: no private key in the PEM file")]
    NoKey(PathBuf),
    #[error("certificate generation failed: {0}")]
    Generate(rcgen::Error),
    #[error("rustls refused the certificate or key: {0}")]
    Rustls(rustls::Error),
}

/// A ready server configuration and the PEM that clients should trust.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub config: Arc<rustls::ServerConfig>,
    pub ca_pem: String,
}

/// The names every generated certificate carries.
pub const LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

pub fn load(source: &TlsSource) -> Result<TlsMaterial, TlsError> {
    let (chain, key, ca_pem) = match source {
        TlsSource::SelfSigned { extra_names } => generate(extra_names)?,
        TlsSource::Files { cert, key } => read_files(cert, key)?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        config: Arc::new(config),
        ca_pem,
    })
}

type Material = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String);

fn generate(extra_names: &[String]) -> Result<Material, TlsError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ucupdate-server throw-away CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names: Vec<String> = LOOPBACK_NAMES.iter().map(|n| n.to_string()).collect();
    for name in extra_names {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut leaf_params = CertificateParams::new(names)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "ucupdate-server");
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    Ok((
        vec![leaf.der().clone(), ca_cert.der().clone()],
        key,
        ca_cert.pem(),
    ))
}

fn read_files(cert: &PathBuf, key: &PathBuf) -> Result<Material, TlsError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| TlsError::Io {
            path: path.clone(),
            error: e,
        })
    };
    let cert_pem = read(cert)?;
    let chain = rustls_pemfile::certs(&mut BufReader::new(&cert_pem[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Io {
            path: cert.clone(),
            error: e,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.clone()));
    }
    let key_pem = read(key)?;
    let key_der = rustls_pemfile::private_key(&mut BufReader::new(&key_pem[..]))
        .map_err(|e| TlsError::Io {
            path: key.clone(),
            error: e,
        })?
        .ok_or_else(|| TlsError::NoKey(key.clone()))?;
    Ok((
        chain,
        key_der,
        String::from_utf8_lossy(&cert_pem).into_owned(),
    ))
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<rcgen::Error> for TlsError {
    fn from(error: rcgen::Error) -> Self {
        TlsError::Generate(error)
    }
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<rustls::Error> for TlsError {
    fn from(error: rustls::Error) -> Self {
        TlsError::Rustls(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_offers_http11_only() {
        let m = load(&TlsSource::SelfSigned {
            extra_names: vec!["pool01.contoso.com".into()],
        })
        .unwrap();
        assert_eq!(m.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(m.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn pem_files_load_and_missing_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        let m = load(&TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
        .unwrap();
        assert_eq!(m.ca_pem, ck.cert.pem());
        std::fs::write(&key, "nothing").unwrap();
        assert!(matches!(
            load(&TlsSource::Files { cert, key }),
            Err(TlsError::NoKey(_))
        ));
    }
}
