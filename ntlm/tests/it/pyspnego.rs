//! Interoperability with an independent NTLM implementation, pyspnego (`pip install pyspnego`):
//! its client against our [`Acceptor`], and our [`Client`] against its acceptor. Tokens cross
//! the process boundary as hex lines on stdin/stdout. Ignored by default because it needs
//! python3 with pyspnego; run with `cargo test -p ucupdate-ntlm -- --ignored`.

// They drive the acceptor, which the device build leaves out.
#![cfg(feature = "acceptor")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use ucupdate_ntlm::{AcceptStep, Acceptor, Client, Credentials, RejectReason, UserDb};

const PY_CLIENT: &str = r#"
import sys, spnego
c = spnego.client(sys.argv[1], sys.argv[2], protocol="ntlm")
print(c.step().hex(), flush=True)
t2 = bytes.fromhex(sys.stdin.readline().strip())
print(c.step(t2).hex(), flush=True)
"#;

const PY_SERVER: &str = r#"
import sys, spnego
s = spnego.server(protocol="ntlm")
for line in sys.stdin:
    try:
        out = s.step(bytes.fromhex(line.strip()))
    except Exception as e:
        print("ERR " + type(e).__name__, flush=True)
        break
    if s.complete:
        print("OK " + str(s.client_principal), flush=True)
        break
    print(out.hex(), flush=True)
"#;

struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(script: &str, args: &[&str], env: &[(&str, &str)]) -> Peer {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("python3: {e}"));
        let stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        let stdout = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout")));
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, token: &[u8]) {
        let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(self.stdin, "{hex}").unwrap_or_else(|e| panic!("write: {e}"));
        self.stdin.flush().unwrap_or_else(|e| panic!("flush: {e}"));
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("read: {e}"));
        line.trim().to_string()
    }

    fn token(&mut self) -> Vec<u8> {
        let line = self.line();
        (0..line.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(line.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("python sent {line:?}: {e}"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.wait();
    }
}

fn pyspnego_client_against_our_acceptor(spec: &str, password: &str, flip_mic: bool) -> AcceptStep {
    let mut db = UserDb::default();
    db.insert(Some("CORP"), "alice", "s3cret");
    let mut acceptor = Acceptor::new(Arc::new(db), [0x5a; 8], 133_000_000_000_000_000, "CORP");
    let mut py = Peer::spawn(PY_CLIENT, &[spec, password], &[]);
    let AcceptStep::Challenge(t2) = acceptor.step(&py.token()) else {
        panic!("pyspnego's Type 1 was not answered with a challenge");
    };
    py.send(&t2);
    let mut t3 = py.token();
    if flip_mic {
        // pyspnego negotiates KEY_EXCH and sends a MIC at byte 72: this proves both the RC4
        // session-key path and the MIC check run against a real peer.
        if let Some(b) = t3.get_mut(72) {
            *b ^= 1;
        }
    }
    acceptor.step(&t3)
}

#[test]
#[ignore = "needs python3 pyspnego"]
fn pyspnego_client_is_accepted_with_the_right_password_only() {
    assert_eq!(
        pyspnego_client_against_our_acceptor("CORP\\alice", "s3cret", false),
        AcceptStep::Accepted {
            domain: "CORP".into(),
            user: "alice".into()
        }
    );
    assert_eq!(
        pyspnego_client_against_our_acceptor("CORP\\alice", "wrong", false),
        AcceptStep::Rejected(RejectReason::BadProof)
    );
    assert_eq!(
        pyspnego_client_against_our_acceptor("CORP\\alice", "s3cret", true),
        AcceptStep::Rejected(RejectReason::MicMismatch)
    );
}

fn our_client_against_pyspnego_acceptor(password: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ntlm-pyspnego-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("users");
    std::fs::write(&file, "CORP:alice:s3cret\n").unwrap_or_else(|e| panic!("{e}"));
    let path = file.to_string_lossy().into_owned();
    let mut py = Peer::spawn(PY_SERVER, &[], &[("NTLM_USER_FILE", &path)]);
    let mut client = Client::new(Credentials::parse_user("CORP\\alice", password), "PHONE");
    py.send(&client.negotiate());
    let t2 = py.token();
    let t3 = client
        .authenticate(&t2, [0x11; 8], 133_000_000_000_000_000)
        .unwrap_or_else(|e| panic!("{e}"));
    py.send(&t3);
    py.line()
}

#[test]
#[ignore = "needs python3 pyspnego"]
fn our_client_is_accepted_by_pyspnego_with_the_right_password_only() {
    let ok = our_client_against_pyspnego_acceptor("s3cret");
    assert!(ok.starts_with("OK "), "{ok}");
    assert!(ok.to_lowercase().contains("alice"), "{ok}");
    let bad = our_client_against_pyspnego_acceptor("wrong");
    assert!(bad.starts_with("ERR "), "{bad}");
}
