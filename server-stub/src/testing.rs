//! Fixtures every crate's tests share when they run against this stub: the one update key the
//! tests publish under ([`UPDATE_KEY`], [`key`]) and the device that checks under it
//! ([`identity`]), version parsing ([`v`]), a tagged set of
//! published files ([`files`], whose catalog is signed by the tests' throwaway CA,
//! [`catalog_ca_pem`]: the anchor an agent under test needs), the one NTLM user ([`USER`] / [`PASSWORD`], [`users`]), and a
//! loopback stub on a caller's directory ([`loopback_config`], [`start`]), and peer processes
//! that announce their port ([`start_peer`], [`python_peer`] for `tests/peers/*.py`). Before this module
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
use std::sync::OnceLock;

use ucupdate_ntlm::UserDb;
use ucupdate_protocol::{DeviceIdentity, FileName, FirmwareVersion, UpdateKey};

use crate::catalog::{throwaway_signer, LeafOptions, ThrowawaySigner};
use crate::{RunningServer, ServerConfig};

/// When the fixtures' catalogs say they were signed: 2025-01-01T00:00:00Z, inside the signer's
/// validity (2020-2099), fixed so the same files give a catalog of the same meaning.
pub const CATALOG_SIGNING_TIME: u64 = 1_735_689_600;

/// The tests' catalog signer: a throwaway CA and code-signing leaf, made once per process.
pub fn catalog_signer() -> &'static ThrowawaySigner {
    static SIGNER: OnceLock<ThrowawaySigner> = OnceLock::new();
    SIGNER.get_or_init(|| throwaway_signer(LeafOptions::default()).expect("a throwaway signer"))
}

/// The CA that signs every [`files`] catalog (PEM): `[trust] catalog_roots` of an agent under
/// test.
pub fn catalog_ca_pem() -> &'static str {
    &catalog_signer().ca_pem
}

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
/// to be cut mid-way and to span several reads), its catalog (listing the image and the
/// description, signed by [`catalog_signer`]) and a description.
pub fn files(tag: &str) -> Vec<(FileName, Vec<u8>)> {
    let name = |n: &str| FileName::new(n).expect("a valid file name");
    let image = format!("image {tag} ").repeat(30_000).into_bytes();
    let description = format!("<Description>{tag}</Description>").into_bytes();
    let catalog = catalog_signer()
        .signer
        .sign_files(
            &[("CPE.nbt", &image[..]), ("CPE.xml", &description[..])],
            CATALOG_SIGNING_TIME,
        )
        .expect("the fixture catalog signs");
    vec![
        (name("CPE.nbt"), image),
        (name("CPE.cat"), catalog),
        (name("CPE.xml"), description),
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

/// A peer process (a Python server, a `ucupdate-server` binary) that the test owns: killed and
/// reaped when dropped, so a failing assertion leaves no listener behind.
pub struct Peer(pub std::process::Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` with its stdout piped and waits for the first line, on which the peer names
/// the port it bound (`port_in` takes it out of the line; `None`: the peer said something
/// else, and the test fails with that line and `hint`). The rest of stdout is left unread.
pub fn start_peer(
    cmd: &mut std::process::Command,
    port_in: impl Fn(&str) -> Option<u16>,
    hint: &str,
) -> (Peer, u16) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e} ({hint})"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let peer = Peer(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the peer's stdout reads");
    let port = port_in(line.trim()).unwrap_or_else(|| panic!("{cmd:?} said {line:?} ({hint})"));
    (peer, port)
}

/// `python3 SCRIPT ARGS...` from `tests/peers/`, which prints `PORT <n>` once it listens.
pub fn python_peer<S: AsRef<std::ffi::OsStr>>(
    script: &str,
    args: impl IntoIterator<Item = S>,
    hint: &str,
) -> (Peer, u16) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/peers")
        .join(script);
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(path).args(args);
    start_peer(
        &mut cmd,
        |line| line.strip_prefix("PORT ")?.parse().ok(),
        hint,
    )
}
