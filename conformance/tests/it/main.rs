//! The conformance crate's one integration-test binary: the suite against an in-process
//! `ucupdate-server` on 127.0.0.1, green as it is and red with exactly the right check named
//! behind a faulty proxy ([`suite`], [`proxy`]), and the `ucupdate-conformance` binary as a CI
//! pipeline runs it ([`cli`]).

mod cli;
mod proxy;
mod suite;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpListener;
use ucupdate_protocol::HttpUrl;
use ucupdate_server_stub::catalog::{throwaway_signer, CatalogSigner, LeafOptions};
use ucupdate_server_stub::{RunningServer, ServerConfig};
// The stub's one NTLM user: the workspace's shared fixtures.
pub use ucupdate_server_stub::testing::{PASSWORD, USER};

/// One throwaway catalog CA for the test binary: the stubs sign with its leaf, and
/// [`catalog_ca`] is the `--trust` the suite gets.
fn test_signer() -> &'static (Arc<CatalogSigner>, String) {
    static SIGNER: OnceLock<(Arc<CatalogSigner>, String)> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let t = throwaway_signer(LeafOptions::default()).expect("a throwaway catalog CA");
        (Arc::new(t.signer), t.ca_pem)
    })
}

/// The PEM of the CA whose leaf signs the stubs' catalogs.
pub fn catalog_ca() -> &'static str {
    &test_signer().1
}

/// The leaf that signs the stubs' catalogs (tests make catalogs of their own with it).
pub fn catalog_signer() -> Arc<CatalogSigner> {
    test_signer().0.clone()
}

/// The shared fixture stub ([`ucupdate_server_stub::testing::start`]) on `dir`, signing the
/// catalogs of what is published with [`catalog_signer`]; `tune` adjusts the config.
pub async fn stub(dir: &Path, tune: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    ucupdate_server_stub::testing::start(dir, |config| {
        config.catalog_signer = Some(catalog_signer());
        tune(config);
    })
    .await
}

/// A listener on 127.0.0.1 with an OS-chosen port.
pub async fn bind_loopback() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind 127.0.0.1:0")
}

/// `http://<addr>/`.
pub fn http_url(addr: SocketAddr) -> HttpUrl {
    format!("http://{addr}/").parse().expect("valid URL")
}
