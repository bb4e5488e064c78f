//! Shared pieces of the cross-crate tests (`tests/*.rs`): an in-process `ucupdate-server` with
//! one NTLM user. (The faulty proxy the conformance tests put in front of it lives with them,
//! in `conformance/tests/it/proxy.rs`.)

use std::path::Path;

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
