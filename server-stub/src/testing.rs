//! Fixtures every crate's tests share when they run against this stub: the one update key the
//! tests publish under ([`UPDATE_KEY`], [`key`]) and the device that checks under it
//! ([`identity`]), version parsing ([`v`]), a tagged set of
//! published files ([`files`]), the one NTLM user ([`USER`] / [`PASSWORD`], [`users`]), and a
//! loopback stub on a caller's directory ([`loopback_config`], [`start`]). Before this module
//! the agent, conformance, cross-crate and stub tests each carried a copy, and the copies had
//! started to drift.
//!
//! Compiled only with the `testing` cargo feature, so the fixtures (and their panics on bad
//! input: they are for tests) stay out of the library's ordinary API. The agent, conformance,
//! simulator and tests crates enable it in their dev-dependencies; the stub's own integration
//! tests get it through a dev-dependency of this crate on itself with the feature on (cargo
//! unifies the two into one build of the library), so a plain `cargo test -p
//! ucupdate-server-stub` needs no `--features` flag. (`required-features` on the test target
//! would instead skip the tests silently without that flag.)

use std::path::Path;

use ucupdate_ntlm::UserDb;
use ucupdate_protocol::{DeviceIdentity, FileName, FirmwareVersion, UpdateKey};

use crate::{RunningServer, ServerConfig};

/// The update key the tests publish, approve and check under.
pub const UPDATE_KEY: &str = "UCPhone/Polycom/CX700/A/ENU/CPE";

/// The MAC address of the tests' one device.
pub const MAC: &str = "00-04-F2-00-01-76";

/// The stub's one NTLM user (`DOMAIN\user`) and its password.
pub const USER: &str = "CONTOSO\\alice";
pub const PASSWORD: &str = "Secret1!";

/// [`UPDATE_KEY`], parsed.
pub fn key() -> UpdateKey {
    UPDATE_KEY
        .parse()
        .expect("UPDATE_KEY is a valid update key")
}

/// The device of [`UPDATE_KEY`] (a Polycom CX700, revision A, English) with MAC `mac`.
pub fn identity(mac: &str) -> DeviceIdentity {
    let segment = |text: &str| text.parse().expect("a valid path segment");
    DeviceIdentity {
        device_type: "UCPhone".parse().expect("a valid device type"),
        brand: segment("Polycom"),
        model: segment("CX700"),
        revision: segment("A"),
        locale: segment("ENU"),
        mac: Some(mac.parse().expect("a valid MAC address")),
        serial: None,
    }
}

/// A firmware version from its text (`"1.0.522.101"`); panics on a malformed one.
pub fn v(text: &str) -> FirmwareVersion {
    text.parse().expect("a valid firmware version")
}

/// The files of one published version, each naming `tag`: an image (about 300 KiB, big enough
/// to be cut mid-way and to span several reads), a catalog and a description.
pub fn files(tag: &str) -> Vec<(FileName, Vec<u8>)> {
    let name = |n: &str| FileName::new(n).expect("a valid file name");
    vec![
        (
            name("CPE.nbt"),
            format!("image {tag} ").repeat(30_000).into_bytes(),
        ),
        (name("CPE.cat"), format!("catalog {tag}").into_bytes()),
        (
            name("CPE.xml"),
            format!("<Description>{tag}</Description>").into_bytes(),
        ),
    ]
}

/// A user database holding [`USER`] with [`PASSWORD`].
pub fn users() -> UserDb {
    UserDb::parse(&format!("{USER}:{PASSWORD}\n")).expect("a valid user line")
}

/// [`ServerConfig::loopback`] on `dir` (every listener on 127.0.0.1, ports chosen by the OS)
/// with [`users`].
pub fn loopback_config(dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::loopback(dir);
    config.users = users();
    config
}

/// A running stub on [`loopback_config`]`(dir)`, after `tune` has adjusted the config.
pub async fn start(dir: &Path, tune: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut config = loopback_config(dir);
    tune(&mut config);
    crate::start(config).await.expect("the stub starts")
}
