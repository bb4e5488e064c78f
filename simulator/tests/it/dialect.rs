//! `ucupdate-sim dialect learn|check` and `run --dialect` against the made-up foreign dialect's
//! Python pool and phone (`tests/peers/foreign_*.py`, no Rust in them): a HAR and a folder of
//! the Python phone's exchange teach a dialect with no credential in it, `check` shows it
//! reproduces the capture, and a 200-device fleet checking in it against the Python pool ends
//! on the version the pool offers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ucupdate_server_stub::testing::{python_peer, Peer};

const SIM: &str = env!("CARGO_BIN_EXE_ucupdate-sim");

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers")
}

fn foreign_server(offer: &str) -> (Peer, u16) {
    python_peer("foreign_server.py", ["--offer", offer], "the Python pool")
}

fn sim(args: &[&str]) -> Output {
    Command::new(SIM).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn learn_from_the_python_phone_then_a_fleet_updates_against_the_python_pool() {
    let (_pool, port) = foreign_server("1.0.523.0");
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).display().to_string();
    let server = format!("http://127.0.0.1:{port}");
    let phone = Command::new("python3")
        .arg(peers().join("foreign_client.py"))
        .args(["--server", &server, "--download", "--auth", "NTLM c2VjcmV0"])
        .args(["--har", &d("check.har"), "--save-dir", &d("bodies")])
        .output()
        .unwrap();
    assert!(phone.status.success(), "{}", text(&phone));

    let learned = sim(&["dialect", "learn", &d("check.har"), "-o", &d("pool.toml")]);
    assert!(learned.status.success(), "{}", text(&learned));
    let out = text(&learned);
    assert!(
        out.contains("left out headers: Authorization, Cookie"),
        "{out}"
    );
    assert!(out.contains("equals the capture byte for byte"), "{out}");
    let toml = std::fs::read_to_string(d("pool.toml")).unwrap();
    assert!(
        !toml.contains("c2VjcmV0") && !toml.contains("secret-cookie"),
        "{toml}"
    );
    assert!(
        toml.contains("<fw:Hardware>{{mac}}</fw:Hardware>"),
        "{toml}"
    );

    // The folder of the same exchange teaches the same request and reply.
    let from_folder = sim(&[
        "dialect",
        "learn",
        &d("bodies"),
        "-o",
        &d("folder.toml"),
        "--name",
        "pool",
    ]);
    assert!(from_folder.status.success(), "{}", text(&from_folder));
    assert_eq!(std::fs::read_to_string(d("folder.toml")).unwrap(), toml);

    let checked = sim(&["dialect", "check", &d("pool.toml"), &d("check.har")]);
    assert!(checked.status.success(), "{}", text(&checked));
    assert!(
        text(&checked).contains("reply: offers CPE 1.0.523.0 [CPE.nbt (image), CPE.cat (catalog)]"),
        "{}",
        text(&checked)
    );
    // Our own format does not fit this capture, and says so.
    let ours = sim(&["dialect", "check", "ucupdate", &d("check.har")]);
    assert!(!ours.status.success());
    assert!(
        text(&ours).contains("does not fit the dialect's template"),
        "{}",
        text(&ours)
    );

    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/dialect/foreign-pool.toml");
    let run = sim(&[
        "run",
        "--scenario",
        scenario.to_str().unwrap(),
        "--server",
        &server,
        "--dialect",
        &d("pool.toml"),
        "--trust",
        "none",
        "--report",
        &d("report.json"),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d("report.json")).unwrap()).unwrap();
    assert_eq!(report["devices"], 200, "{report}");
    assert_eq!(report["passed"], true);

    // The conformance suite in the same dialect: every check that needs no admin API, no
    // external site and no catalog roots passes (the pool gives no sizes or hashes to match).
    let suite = sim(&[
        "conformance",
        "--target",
        &server,
        "--dialect",
        &d("pool.toml"),
        "--probe-key",
        "UCPhone/Polycom/CX700/A/ENU/CPE",
        "--probe-version",
        "1.0.522.101",
    ]);
    assert!(suite.status.success(), "{}", text(&suite));
    assert!(
        text(&suite).contains("26 checks: 12 passed, 0 failed, 14 skipped"),
        "{}",
        text(&suite)
    );
}

#[test]
fn a_check_listing_several_modules_teaches_the_module_section() {
    let (_pool, port) = foreign_server("1.0.523.0");
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).display().to_string();
    let phone = Command::new("python3")
        .arg(peers().join("foreign_client.py"))
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .args([
            "--part",
            "UCUpdater.nbt:1.0.0.7",
            "--part",
            "Lang.bin:1.0.522.101",
        ])
        .args(["--har", &d("check.har")])
        .output()
        .unwrap();
    assert!(phone.status.success(), "{}", text(&phone));
    let learned = sim(&["dialect", "learn", &d("check.har"), "-o", &d("pool.toml")]);
    assert!(learned.status.success(), "{}", text(&learned));
    assert!(
        text(&learned).contains("the check lists 3 modules: learned as a repeated section"),
        "{}",
        text(&learned)
    );
    let toml = std::fs::read_to_string(d("pool.toml")).unwrap();
    assert!(
        toml.contains("{{#modules}}      <fw:Part><fw:Name>{{file_name}}</fw:Name><fw:Rev>{{version}}</fw:Rev><fw:Stamp>{{timestamp}}</fw:Stamp></fw:Part>\n{{/modules}}"),
        "{toml}"
    );
    assert!(!toml.contains("UCUpdater"), "{toml}");
    let checked = sim(&["dialect", "check", &d("pool.toml"), &d("check.har")]);
    assert!(checked.status.success(), "{}", text(&checked));
    assert!(
        text(&checked).contains("equals the capture byte for byte"),
        "{}",
        text(&checked)
    );
}

#[test]
fn captures_that_cannot_teach_give_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).display().to_string();
    let har =
        |entries: &str| format!("{{\"log\":{{\"version\":\"1.2\",\"entries\":[{entries}]}}}}");
    let https = r#"{"request":{"method":"CONNECT","url":"https://pool.contoso.com:443/","headers":[]},"response":{"status":200,"content":{}}}"#;
    std::fs::write(d("https.har"), har(https)).unwrap();
    let get = r#"{"request":{"method":"GET","url":"http://pool/","headers":[]},"response":{"status":200,"content":{"text":"hi"}}}"#;
    std::fs::write(d("nocheck.har"), har(get)).unwrap();
    let cut = r#"{"request":{"method":"POST","url":"http://pool/fw","headers":[],"postData":{"text":"<a>1.0.0.1</a>"}},"response":{"status":0,"content":{}}}"#;
    std::fs::write(d("cut.har"), har(cut)).unwrap();
    std::fs::write(d("check.pcap"), [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]).unwrap();
    std::fs::write(d("tls.pcap"), tls_only_pcap()).unwrap();
    std::fs::write(d("junk.har"), "{ not json").unwrap();
    for (file, expected) in [
        ("https.har", "every request in it is HTTPS"),
        ("nocheck.har", "no update check in this capture"),
        ("cut.har", "has no reply"),
        ("check.pcap", "pcap"),
        ("tls.pcap", "only encrypted traffic (port 443)"),
        ("junk.har", "not a HAR file"),
    ] {
        let out = sim(&["dialect", "learn", &d(file), "-o", &d("x.toml")]);
        assert_eq!(out.status.code(), Some(2), "{file}: {}", text(&out));
        assert!(text(&out).contains(expected), "{file}: {}", text(&out));
        assert!(
            !Path::new(&d("x.toml")).exists(),
            "{file}: no dialect is written"
        );
    }
}

/// `dialect/check.pcap`: a real `tcpdump -i lo -s 0 -w` capture of `foreign_client.py
/// --download --auth ...` checking against `foreign_server.py --port 18080` (the check, its
/// reply and the download GET).
fn pcap_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/dialect/check.pcap")
}

#[test]
fn learn_from_a_tcpdump_capture_with_tcp_reassembly() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).display().to_string();
    let pcap = pcap_fixture().display().to_string();
    let out = sim(&[
        "dialect",
        "learn",
        &pcap,
        "--port",
        "18080",
        "-o",
        &d("pool.toml"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("equals the capture byte for byte"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("download seen: GET /DeviceUpdateFiles_Int/"),
        "{}",
        text(&out)
    );
    let toml = std::fs::read_to_string(d("pool.toml")).unwrap();
    assert!(
        !toml.contains("c2VjcmV0") && !toml.contains("secret-cookie"),
        "{toml}"
    );
    assert!(!text(&out).contains("cut off"), "{}", text(&out));
    let checked = sim(&[
        "dialect",
        "check",
        &d("pool.toml"),
        &pcap,
        "--port",
        "18080",
    ]);
    assert!(checked.status.success(), "{}", text(&checked));
    assert!(
        text(&checked).contains("reply: offers CPE 1.0.522.200"),
        "{}",
        text(&checked)
    );

    // The default port (80) holds nothing in this capture; cut-off captures say so.
    let wrong_port = sim(&["dialect", "learn", &pcap, "-o", &d("x.toml")]);
    assert!(
        text(&wrong_port).contains("no TCP traffic to port 80"),
        "{}",
        text(&wrong_port)
    );
    let bytes = std::fs::read(pcap_fixture()).unwrap();
    for (cut, expected) in [
        (900, "the check's body is cut off"),
        (1500, "has no reply"),
        (1900, "the reply's body is cut off"),
    ] {
        std::fs::write(d("cut.pcap"), &bytes[..cut]).unwrap();
        let out = sim(&[
            "dialect",
            "learn",
            &d("cut.pcap"),
            "--port",
            "18080",
            "-o",
            &d("x.toml"),
        ]);
        assert_eq!(out.status.code(), Some(2), "{cut}: {}", text(&out));
        assert!(text(&out).contains(expected), "{cut}: {}", text(&out));
    }
    assert!(!Path::new(&d("x.toml")).exists());
}

/// A pcap of one TCP segment from port 50000 to 443 (what an HTTPS-only capture holds).
fn tls_only_pcap() -> Vec<u8> {
    let mut packet = Vec::new();
    packet.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x08, 0x00]); // Ethernet, IPv4
    let tcp_len = 20 + 5;
    let total = (20 + tcp_len) as u16;
    packet.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    packet.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
    packet.extend_from_slice(&[
        0xc3, 0x50, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    packet.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x00]); // a TLS record header
    let mut file = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    file.extend_from_slice(&65535u32.to_le_bytes());
    file.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    file.extend_from_slice(&[0; 8]); // ts
    file.extend_from_slice(&(packet.len() as u32).to_le_bytes());
    file.extend_from_slice(&(packet.len() as u32).to_le_bytes());
    file.extend_from_slice(&packet);
    file
}
