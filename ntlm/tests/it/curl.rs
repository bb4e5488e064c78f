//! Interoperability with curl's NTLM (`curl --ntlm`), the client that sends no MIC and an
//! OEM-only Type 1: the two cases sspi got wrong. A tiny HTTP/1.1 loop over a loopback socket
//! carries the tokens, one `Acceptor` per connection as the listener will do it. Ignored by
//! default because it needs a `curl` binary; run with `-- --ignored`.

// They drive the acceptor, which the device build leaves out.
#![cfg(feature = "acceptor")]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;

use ucupdate_ntlm::{from_header, to_header, AcceptStep, Acceptor, UserDb};

/// Serves one connection: 401 until an acceptor accepts, then 200 with the user's name.
fn serve(stream: TcpStream, users: Arc<UserDb>, challenge: [u8; 8]) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut acceptor = Acceptor::new(users, challenge, 133_000_000_000_000_000, "CORP");
    loop {
        let mut authorization = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("authorization") {
                    authorization = Some(value.trim().to_string());
                }
            }
        }
        let step = authorization
            .as_deref()
            .and_then(|v| from_header(v).ok())
            .map(|token| acceptor.step(&token));
        let rejected = matches!(step, Some(AcceptStep::Rejected(_)));
        let response = match step {
            Some(AcceptStep::Challenge(t2)) => format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {}\r\nContent-Length: 0\r\n\r\n",
                to_header(&t2)
            ),
            Some(AcceptStep::Accepted { user, .. }) => format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{user}",
                user.len()
            ),
            // The reason goes in the body so the test can tell a wrong password from a
            // message this acceptor failed to understand.
            Some(AcceptStep::Rejected(reason)) => {
                let reason = reason.to_string();
                format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{reason}",
                    reason.len()
                )
            }
            None => {
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n"
                    .to_string()
            }
        };
        out.write_all(response.as_bytes())?;
        if rejected {
            return Ok(());
        }
    }
}

/// Runs curl against a fresh listener; returns the final status code and body.
fn curl(user_pass: &str) -> (String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let users = Arc::new(UserDb::parse("CORP\\alice:s3cret\n").unwrap_or_else(|e| panic!("{e}")));
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let _ = serve(stream, users.clone(), [i as u8; 8]);
        }
    });
    let out = Command::new("curl")
        .args(["-s", "--ntlm", "-u", user_pass, "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

#[test]
#[ignore = "needs curl"]
fn curl_is_accepted_with_the_right_password_and_refused_with_a_wrong_one() {
    assert_eq!(curl("CORP\\alice:s3cret"), ("200".into(), "alice".into()));
    assert_eq!(curl("alice:s3cret"), ("200".into(), "alice".into()));
    // The user file's spelling, not curl's.
    assert_eq!(curl("corp\\ALICE:s3cret"), ("200".into(), "alice".into()));
    // The right password under a domain that is not alice's: once accepted as EVILDOM\alice.
    for spec in ["EVILDOM\\alice:s3cret", "alice@attacker.example:s3cret"] {
        assert_eq!(
            curl(spec),
            ("401".into(), "domain does not belong to the account".into()),
            "{spec}"
        );
    }
    assert_eq!(
        curl("CORP\\alice:WRONG"),
        ("401".into(), "bad NTLMv2 proof (wrong password)".into())
    );
    assert_eq!(
        curl("CORP\\bob:s3cret"),
        ("401".into(), "unknown user".into())
    );
}
