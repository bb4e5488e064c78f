//! The conformance crate's one integration-test binary: the suite against an in-process
//! `ucupdate-server` on 127.0.0.1, green as it is and red with exactly the right check named
//! behind a faulty proxy ([`suite`], [`proxy`]), and the `ucupdate-conformance` binary as a CI
//! pipeline runs it ([`cli`]).

mod cli;
mod proxy;
mod suite;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use tokio::net::TcpListener;
use ucupdate_protocol::HttpUrl;
use ucupdate_server_stub::{RunningServer, ServerConfig, UserDb};

/// The stub's one NTLM user (`DOMAIN\user`) and password.
pub const USER: &str = "CONTOSO\\alice";
pub const PASSWORD: &str = "Secret1!";

/// A stub on `dir` with every listener on 127.0.0.1 and [`USER`]; `tune` adjusts the config.
pub async fn stub(dir: &Path, tune: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut config = ServerConfig::loopback(dir);
    config.users = UserDb::parse(&format!("{USER}:{PASSWORD}\n")).expect("valid user line");
    tune(&mut config);
    ucupdate_server_stub::start(config)
        .await
        .expect("the stub starts")
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
