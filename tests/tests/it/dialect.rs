//! The protocol crate's dialect code against the made-up foreign dialect's Python peers
//! (`peers/foreign_server.py`, `peers/foreign_client.py`), which share no code with it: the
//! Python phone's check is byte for byte what the dialect renders for the same device, and the
//! Python pool accepts the dialect's check and answers with offers the dialect reads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use ucupdate_protocol::dialect::Dialect;
use ucupdate_protocol::wire::{CheckRequest, CheckResponse};
use ucupdate_server_stub::testing::python_peer;

fn peers() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))
}

fn foreign() -> Dialect {
    Dialect::from_toml(&std::fs::read_to_string(peers().join("foreign.toml")).unwrap()).unwrap()
}

/// Starts the Python pool; returns it and its port.
pub fn foreign_server(offer: &str) -> (impl Drop, u16) {
    python_peer("foreign_server.py", ["--offer", offer], "the Python pool")
}

fn request(mac: &str, version: &str) -> CheckRequest {
    let text = format!(
        "<DeviceUpdateRequest><DeviceType>UCPhone</DeviceType><Brand>Polycom</Brand>\
         <Model>CX700</Model><Revision>A</Revision><Locale>ENU</Locale>\
         <MacAddress>{mac}</MacAddress><SerialNumber>PCX700-0001</SerialNumber>\
         <LastSignedInUser>sip:alice@contoso.com</LastSignedInUser><Modules>\
         <Module FileName=\"CPE.nbt\" Version=\"{version}\" Timestamp=\"2009-06-01T10:00:00Z\"/>\
         </Modules></DeviceUpdateRequest>"
    );
    CheckRequest::decode(text.as_bytes()).unwrap()
}

/// One HTTP/1.1 POST with `Connection: close`, by hand: the point is the dialect, not a client.
fn post(port: u16, dialect: &Dialect, body: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        dialect.request.method,
        dialect.request.path,
        body.len()
    );
    for (k, v) in &dialect.request.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = std::str::from_utf8(&reply[9..12]).unwrap().parse().unwrap();
    (status, reply[split + 4..].to_vec())
}

#[test]
fn python_phone_sends_exactly_what_the_dialect_renders() {
    let (_server, port) = foreign_server("1.0.522.200");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(peers().join("foreign_client.py"))
        .arg("--server")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--save-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = std::fs::read_to_string(dir.path().join("request.xml")).unwrap();
    assert_eq!(
        foreign().encode_request(&request("00-04-F2-00-01-76", "1.0.522.101")),
        sent
    );
    let reply = std::fs::read(dir.path().join("reply.xml")).unwrap();
    let CheckResponse::Update(offer) = foreign().decode_reply(&reply).unwrap() else {
        panic!("no offer in {}", String::from_utf8_lossy(&reply));
    };
    assert_eq!(offer.version.to_string(), "1.0.522.200");
}

#[test]
fn python_pool_answers_the_dialects_checks() {
    let (_server, port) = foreign_server("1.0.522.200");
    let d = foreign();
    let old = d.encode_request(&request("00-04-F2-00-01-76", "1.0.522.101"));
    let (status, body) = post(port, &d, &old);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let CheckResponse::Update(offer) = d.decode_reply(&body).unwrap() else {
        panic!("no offer");
    };
    assert_eq!(offer.version.to_string(), "1.0.522.200");
    assert!(offer
        .base_url
        .ends_with("/UCPhone/Polycom/CX700/A/ENU/1.0.522.200/CPE"));
    let current = d.encode_request(&request("00-04-F2-00-01-77", "1.0.522.200"));
    let (status, body) = post(port, &d, &current);
    assert_eq!(status, 200);
    assert_eq!(d.decode_reply(&body).unwrap(), CheckResponse::NoUpdate);
    // Our own format is not the pool's: it refuses it, as a real pool would.
    let ours = Dialect::builtin();
    let (status, _) = post(
        port,
        &ours,
        &ours.encode_request(&request("00-04-F2-00-01-76", "1.0.522.101")),
    );
    assert_ne!(status, 200);
}
