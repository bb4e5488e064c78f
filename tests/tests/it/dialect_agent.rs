//! The real `ucupdate-agent` binary updating itself against the Python pool of the made-up
//! foreign dialect (`peers/foreign_server.py`, no Rust in it) with `[protocol] dialect =
//! "peers/foreign.toml"`: it checks in the pool's SOAP format, reads the pool's offer, downloads
//! the catalog and the image the pool serves from a folder, verifies the catalog against the
//! tests' CA, installs, and ends on the offered version.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use ucupdate_server_stub::testing::{
    catalog_ca_pem, catalog_signer, python_peer, CATALOG_SIGNING_TIME,
};

use crate::dialect_stub::{bin, peers, text};

const OFFER: &str = "1.0.522.200";

#[test]
fn the_agent_updates_itself_against_the_foreign_pool() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // What the pool serves: a signed catalog listing the image, where its offer points.
    let image = b"foreign-dialect image ".repeat(20_000);
    let catalog = catalog_signer()
        .signer
        .sign_files(&[("CPE.nbt", &image[..])], CATALOG_SIGNING_TIME)
        .unwrap();
    let store = d.join(format!(
        "files/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/{OFFER}/CPE"
    ));
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("CPE.nbt"), &image).unwrap();
    std::fs::write(store.join("CPE.cat"), &catalog).unwrap();
    std::fs::write(d.join("ca.pem"), catalog_ca_pem()).unwrap();

    let files = d.join("files");
    let (_pool, port) = python_peer(
        "foreign_server.py",
        [
            OsStr::new("--offer"),
            OsStr::new(OFFER),
            OsStr::new("--files"),
            files.as_os_str(),
        ],
        "the Python pool",
    );

    let config = d.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"
[device]
brand = "Polycom"
model = "CX700"
mac = "00-04-F2-00-AB-CD"
initial_version = "1.0.522.0"
[machine]
power_on_jitter = "0s"
idle_before_restart = "1s"
[trust]
catalog_roots = "{ca}"
[hooks]
install_cmd = "echo installing $UCUPDATE_VERSION"
reboot_cmd = "echo would reboot into $UCUPDATE_VERSION"
[protocol]
dialect = "{dialect}"
"#,
            state = d.join("state").display(),
            ca = d.join("ca.pem").display(),
            dialect = peers().join("foreign.toml").display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.join("agent.log")).unwrap();
    let mut agent = Command::new(bin("ucupdate-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .args(["--server", &format!("127.0.0.1:{port}"), "--exit-on-reboot"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // `--exit-on-reboot`: the agent ends on its own once the update is installed.
    let status = agent.wait().unwrap();
    let log = std::fs::read_to_string(d.join("agent.log")).unwrap_or_default();
    assert!(status.success(), "{log}");
    let shown = Command::new(bin("ucupdate-agent"))
        .args(["--config"])
        .arg(&config)
        .arg("status")
        .output()
        .unwrap();
    let shown_text = text(&shown);
    assert!(
        shown_text
            .lines()
            .any(|l| l.starts_with("Version:") && l.trim_end().ends_with(OFFER)),
        "{shown_text}\n{log}"
    );
    // The pool saw the check in its own format and served both files.
    let stats: serde_json::Value = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        serde_json::from_str(reply.split_once("\r\n\r\n").unwrap().1).unwrap()
    };
    assert_eq!(stats["bad"], 0, "{stats}");
    assert!(stats["offers"].as_u64() >= Some(1), "{stats}");
    assert!(stats["downloads"].as_u64() >= Some(2), "{stats}");
}
