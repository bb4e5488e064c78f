//! The stub standing in for a pool of the made-up foreign dialect (`ucupdate-server serve
//! --dialect peers/foreign.toml`), checked by peers that share no code with it: the Python
//! phone (`peers/foreign_client.py`) gets the approved offer and downloads it, or "no update"
//! when it runs that version, and bodies that are not a check in the dialect get a clear 400;
//! then a 200-device `ucupdate-sim run --dialect` fleet against the same stub ends on the
//! version it approved. The real binaries of this build run (as in `quickstart`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ucupdate_server_stub::testing::{files, key, start_peer, v, Peer, UPDATE_KEY};
use ucupdate_server_stub::PackageEntry;

/// `target/<profile>/`, where cargo puts the workspace's binaries.
pub(crate) fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|d| d.parent()).unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (`cargo test --workspace` does)",
        path.display()
    );
    path
}

pub(crate) fn peers() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn server(args: &[&str]) -> Output {
    Command::new(bin("ucupdate-server"))
        .args(args)
        .output()
        .unwrap()
}

/// A data directory where `version` of the tests' update key is approved.
fn approved(dir: &Path, version: &str) {
    let cab = dir.join("pkg.cab");
    ucupdate_server_stub::package::write_cab(
        &cab,
        &[PackageEntry {
            key: key(),
            version: v(version),
            files: files("dialect"),
        }],
    )
    .unwrap();
    let data = dir.join("srv").display().to_string();
    let import = server(&["import", "--data", &data, cab.to_str().unwrap()]);
    assert!(import.status.success(), "{}", text(&import));
    let approve = server(&["rules", "approve", "--data", &data, UPDATE_KEY]);
    assert!(approve.status.success(), "{}", text(&approve));
}

/// `ucupdate-server serve --dialect DIALECT` on `dir/srv`; returns it and its internal port.
fn serve(dir: &Path, dialect: &str) -> (Peer, u16) {
    let mut cmd = Command::new(bin("ucupdate-server"));
    cmd.args(["serve", "--data"])
        .arg(dir.join("srv"))
        .args(["--dialect", dialect, "--internal", "127.0.0.1:0"])
        .args([
            "--internal-tls",
            "off",
            "--external",
            "off",
            "--admin",
            "off",
        ])
        .stderr(Stdio::null());
    start_peer(
        &mut cmd,
        |line| {
            let rest = line.strip_prefix("internal http://127.0.0.1:")?;
            rest.split('/').next()?.parse().ok()
        },
        "ucupdate-server serve",
    )
}

fn phone(port: u16, extra: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(peers().join("foreign_client.py"))
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)))
}

/// One raw HTTP/1.1 POST: the status and the body of the answer.
fn post(port: u16, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply[9..12].parse().unwrap();
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

#[test]
fn the_stub_stands_in_for_a_pool_of_the_foreign_dialect() {
    let dir = tempfile::tempdir().unwrap();
    approved(dir.path(), "1.0.523.0");
    let dialect = peers().join("foreign.toml").display().to_string();
    let (_stub, port) = serve(dir.path(), &dialect);

    let got = phone(port, &["--download"]);
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["offer"], "1.0.523.0", "{got}");
    assert!(
        got["base_url"]
            .as_str()
            .unwrap()
            .ends_with("/UCPhone/Polycom/CX700/A/ENU/1.0.523.0/CPE"),
        "{got}"
    );
    assert_eq!(got["image"], "CPE.nbt");
    assert_eq!(got["downloaded"], files("dialect")[0].1.len(), "{got}");
    let current = phone(
        port,
        &["--version", "1.0.523.0", "--mac", "00:04:f2:00:01:77"],
    );
    assert_eq!(current["status"], 200, "{current}");
    assert_eq!(current["offer"], serde_json::Value::Null, "{current}");

    // Bodies that are not a check in the dialect: a clear 400, and the stub keeps serving.
    let ours = ucupdate_protocol::CheckRequest {
        identity: ucupdate_server_stub::testing::identity("00-04-F2-00-01-78"),
        modules: vec![ucupdate_protocol::wire::InstalledModule {
            update_type: "CPE".parse().unwrap(),
            file_name: ucupdate_protocol::FileName::new("CPE.nbt").unwrap(),
            version: v("1.0.522.101"),
            timestamp: None,
        }],
        user: None,
    }
    .encode();
    for (path, body, reason) in [
        (
            "/fw/check.asmx",
            ours.as_str(),
            "does not fit the dialect's template",
        ),
        (
            "/RequestHandler/ucdevice.upx",
            ours.as_str(),
            "does not fit",
        ),
        ("/fw/check.asmx", "<soap:Envelope", "not a check"),
        ("/fw/check.asmx", "", "not a check"),
    ] {
        let (status, answer) = post(port, path, "text/xml", body);
        assert_eq!(status, 400, "{path} {body:?}: {answer}");
        assert!(answer.contains(reason), "{path} {body:?}: {answer}");
    }
    let again = phone(port, &["--mac", "00:04:f2:00:01:79"]);
    assert_eq!(again["offer"], "1.0.523.0", "{again}");

    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../simulator/tests/it/dialect/foreign-pool.toml");
    let report = dir.path().join("report.json");
    let run = Command::new(bin("ucupdate-sim"))
        .args(["run", "--scenario"])
        .arg(&scenario)
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .args(["--dialect", &dialect, "--trust", "none", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["devices"], 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");
}
