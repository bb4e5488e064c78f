//! What a client can make the `ucupdate-server` binary write into its log, checked with a client
//! nobody on this project wrote: `openssl s_client` sending an IP address as the TLS server name,
//! which RFC 6066 forbids and wrk does anyway. rustls ignores such a name and goes on, but it
//! logged a WARN for every such connection, so any client could fill the server's log one line
//! per connection. The default filter now keeps those complaints out
//! (`server-stub/src/cli/logging.rs`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use ucupdate_server_stub::testing::Peer;

use crate::dialect_stub::bin;

#[test]
#[ignore = "needs openssl"]
fn an_ip_address_as_server_name_is_not_logged_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    // Killed when the test ends, however it ends.
    let mut server = Peer(
        Command::new(bin("ucupdate-server"))
            .args(["serve", "--init", "--data"])
            .arg(dir.path().join("srv"))
            .args(["--internal", "off", "--internal-tls", "127.0.0.1:0"])
            .args(["--external", "off", "--admin", "off"])
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let authority = loop {
        let line = lines.next().expect("the server printed its URLs").unwrap();
        if let Some(url) = line.strip_prefix("internal-tls https://") {
            break url.split('/').next().unwrap().to_owned();
        }
    };
    // Keep reading: a closed pipe would end the server at its next line.
    std::thread::spawn(move || lines.for_each(drop));

    for _ in 0..3 {
        let mut client = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &authority,
                "-servername",
                "127.0.0.1",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl runs");
        // openssl ends when its input does.
        drop(client.stdin.take());
        let out = client.wait_with_output().unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        // The handshake went through: rustls read the ClientHello (where it used to complain)
        // and answered it.
        assert!(shown.contains("New, TLSv1.3"), "openssl: {shown}");
    }
    drop(server);

    let logged = std::fs::read_to_string(&log).unwrap();
    // The log is the server's: its own lines are there.
    assert!(logged.contains("listening"), "{logged}");
    assert!(!logged.contains("Illegal SNI"), "{logged}");
    assert!(!logged.contains("rustls"), "{logged}");
}
