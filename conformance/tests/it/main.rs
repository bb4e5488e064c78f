//! The conformance crate's one integration-test binary: the suite against an in-process
//! `ucupdate-server` on 127.0.0.1, green as it is and red with exactly the right check named
//! behind a faulty proxy ([`suite`], [`proxy`]), and the `ucupdate-conformance` binary as a CI
//! pipeline runs it ([`cli`]).

mod cli;
mod proxy;
mod suite;

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;
use ucupdate_protocol::HttpUrl;
// The stub on a temp dir with its one NTLM user: the workspace's shared fixtures.
pub use ucupdate_server_stub::testing::{start as stub, PASSWORD, USER};

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
