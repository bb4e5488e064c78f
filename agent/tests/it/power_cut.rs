//! Power cuts: the REAL `ucupdate-agent` binary is SIGKILLed (with its whole process
//! group, hooks included, as a power cut would) at seeded random instants spread over a whole
//! update — check, download, verification, the idle wait, the install hook, the state writes —
//! and restarted every time, against an in-process stub serving a 4 MiB image through a paced
//! loopback forwarder (so a download takes about two seconds and kills land inside it).
//!
//! After every kill: `state.json` decodes, and the install hook (which checks the staged image's
//! SHA-256 against the published one before "installing") has never seen unverified bytes.
//! Across the run: ranged resumes happened (the stub answered 206), and every round ended with
//! the target version current and the reboot hook run.
//!
//! The binary is this package's own (`CARGO_BIN_EXE_ucupdate-agent`): cargo builds it before
//! the test runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Child;
use ucupdate_agent::hash::{splitmix64, SPLITMIX_GAMMA};
use ucupdate_agent::machine::PersistedState;
use ucupdate_protocol::{FileName, FirmwareVersion, UpdateKey};
use ucupdate_server_stub::ServerConfig;

const OLD: &str = "1.0.522.101";
const NEW: &str = "1.0.522.300";
const IMAGE_BYTES: usize = 4 << 20;
/// Download pace of the forwarder: 16 KiB every 8 ms, about 2 MB/s.
const PACE_CHUNK: usize = 16 * 1024;
const PACE_GAP: Duration = Duration::from_millis(8);
const MIN_KILLS: usize = 50;

fn key() -> UpdateKey {
    "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap()
}

fn image() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..IMAGE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The seeded kill delays: a splitmix64 stream (the crate's one generator function).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let out = splitmix64(self.0);
        self.0 = self.0.wrapping_add(SPLITMIX_GAMMA);
        out
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Forwards `listener` to `upstream`, pacing the answers (a slow link) so a download can be cut.
fn paced_forwarder(listener: TcpListener, upstream: SocketAddr) {
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    let _ = sw.shutdown().await;
                };
                let down = async move {
                    let mut buf = vec![0u8; PACE_CHUNK];
                    loop {
                        match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if cw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                        // Bandwidth shaping, not test timing.
                        tokio::time::sleep(PACE_GAP).await;
                    }
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
}

struct Device {
    dir: PathBuf,
    config: PathBuf,
}

impl Device {
    fn new(root: &Path, round: usize, check_url: &str, digest: &str) -> Device {
        let dir = root.join(format!("round-{round}"));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        // The install hook is the device's firmware writer: it refuses (and records) an image
        // whose SHA-256 is not the published one, and takes a little while, so kills land in it.
        let install = format!(
            "echo start >> {d}/hook.log; \
             h=$(sha256sum \"$UCUPDATE_IMAGE\" | cut -d' ' -f1); \
             if [ \"$h\" != \"{digest}\" ]; then echo \"$UCUPDATE_VERSION $h\" >> {d}/violations; exit 1; fi; \
             sleep 0.3; echo \"$UCUPDATE_VERSION\" >> {d}/installs.log"
        );
        let reboot = format!("echo \"$UCUPDATE_VERSION\" >> {d}/reboots.log");
        std::fs::write(
            dir.join("catalog-roots.pem"),
            ucupdate_server_stub::testing::catalog_ca_pem(),
        )
        .unwrap();
        let toml = format!(
            r#"state_dir = "{d}/state"
[device]
brand = "Polycom"
model = "CX700"
mac = "00-04-F2-00-01-{round:02X}"
initial_version = "{OLD}"
[machine]
server_url = "{check_url}"
outside_firewall = false
power_on_jitter = "0s"
idle_before_restart = "300ms"
backoff_base = "1s"
backoff_cap = "2s"
[hooks]
install_cmd = {install:?}
reboot_cmd = {reboot:?}
hook_timeout = "30s"
[trust]
catalog_roots = "{d}/catalog-roots.pem"
[agent]
exit_on_reboot = true
control_socket = false
activity_poll = "100ms"
seed = {round}
"#
        );
        let config = dir.join("agent.toml");
        std::fs::write(&config, toml).unwrap();
        Device { dir, config }
    }

    fn start(&self, bin: &Path) -> Child {
        tokio::process::Command::new(bin)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("agent.log")).unwrap())
            // Its own process group: the power cut takes the hooks with it.
            .process_group(0)
            .spawn()
            .expect("agent starts")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// The state file must always decode (it is absent only before the first write).
    fn state(&self) -> Option<PersistedState> {
        let path = self.dir.join("state/state.json");
        let text = std::fs::read_to_string(&path).ok()?;
        Some(
            PersistedState::decode(&text)
                .unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display())),
        )
    }

    fn phase(&self) -> String {
        let text = self.read("state/status.json");
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["phase"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "starting".into())
    }
}

async fn power_cut(child: &mut Child) {
    // SIGKILL to the whole group (agent and any hook it runs); by process id, never by name.
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
    }
    let _ = child.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_fifty_points_never_installs_unverified_bytes_and_ends_on_target() {
    let bin = Path::new(env!("CARGO_BIN_EXE_ucupdate-agent"));
    let data = tempfile::tempdir().unwrap();
    // The stub advertises the paced forwarder as its BaseURL, so downloads cross it: bind the
    // forwarder first, start it once the stub's address is known.
    let pace_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let pace_addr = pace_listener.local_addr().unwrap();
    let mut config = ServerConfig::loopback(data.path().join("srv"));
    config.public_internal_url = Some(format!("http://{pace_addr}/").parse().unwrap());
    let stub = ucupdate_server_stub::start(config).await.unwrap();
    let image = image();
    let digest = hex(&Sha256::digest(&image));
    let catalog = ucupdate_server_stub::testing::catalog_signer()
        .signer
        .sign_files(
            &[("CPE.nbt", &image[..])],
            ucupdate_server_stub::testing::CATALOG_SIGNING_TIME,
        )
        .unwrap();
    let control = stub.control();
    let new: FirmwareVersion = NEW.parse().unwrap();
    control
        .publish(
            &key(),
            new,
            vec![
                (FileName::new("CPE.nbt").unwrap(), image),
                (FileName::new("CPE.cat").unwrap(), catalog),
            ],
        )
        .await
        .unwrap();
    control.approve(&key()).await.unwrap();
    let direct = stub.internal_url().unwrap();
    let upstream: SocketAddr = format!("{}:{}", direct.host, direct.port).parse().unwrap();
    paced_forwarder(pace_listener, upstream);
    let check_url = format!("http://{pace_addr}/RequestHandler/ucdevice.upx");

    let mut rng = Rng(0x5eed_0008);
    let mut kills: Vec<String> = Vec::new();
    let mut rounds = 0;
    let count = |kills: &[String], phases: &[&str]| {
        kills
            .iter()
            .filter(|k| phases.contains(&k.as_str()))
            .count()
    };
    const EARLY: &[&str] = &["starting", "idle", "checking"];
    const LATE: &[&str] = &["waiting-idle", "installing", "install-hook", "rebooting"];
    let spread = |kills: &[String]| {
        count(kills, EARLY) > 0 && count(kills, &["downloading"]) > 0 && count(kills, LATE) > 0
    };
    while (kills.len() < MIN_KILLS || !spread(&kills)) && rounds < 40 {
        rounds += 1;
        let dev = Device::new(data.path(), rounds, &check_url, &digest);
        let mut finished = false;
        for _restart in 0..25 {
            // status.json is the driver's, rewritten on every phase change: without one the kill
            // came before the first (process start, reading the state, the power-on check).
            let _ = std::fs::remove_file(dev.dir.join("state/status.json"));
            let mut child = dev.start(bin);
            // A whole update takes about 3 s here; kill anywhere in [0, 3.5 s), or in the first
            // 600 ms, or in the first 60 ms (start-up, state read, check and the first state
            // writes take only milliseconds).
            let window = [60, 600, 3_500][rng.below(3) as usize];
            let delay = Duration::from_millis(rng.below(window));
            let exited = wait_or_timeout(&mut child, delay).await;
            if let Some(status) = exited {
                assert!(status.success(), "agent failed: {}", dev.read("agent.log"));
                finished = true;
                break;
            }
            let hook_running = dev.read("hook.log").lines().count()
                > dev.read("installs.log").lines().count() + dev.read("violations").lines().count();
            let phase = if hook_running {
                "install-hook".into()
            } else {
                dev.phase()
            };
            power_cut(&mut child).await;
            kills.push(phase);
            assert_eq!(
                dev.read("violations"),
                "",
                "unverified bytes reached the install hook"
            );
            // Cut between the write that makes the new version current and the reboot hook:
            // the power cut was the reboot.
            if dev.state().is_some_and(|s| s.current_version == new) {
                finished = true;
                break;
            }
        }
        if !finished {
            // Let one start run undisturbed to the end (bounded).
            let mut child = dev.start(bin);
            for _ in 0..300 {
                if wait_or_timeout(&mut child, Duration::from_millis(200))
                    .await
                    .is_some()
                    || dev.state().is_some_and(|s| s.current_version == new)
                {
                    break;
                }
            }
            power_cut(&mut child).await;
        }
        let state = dev.state().expect("a state file");
        assert_eq!(
            state.current_version,
            new,
            "round {rounds} ends on the target: status {}\nlog {}",
            dev.read("state/status.json"),
            dev.read("agent.log")
        );
        let reboots = dev.read("reboots.log");
        assert!(reboots.lines().all(|l| l == NEW), "{reboots}");
        assert_eq!(dev.read("violations"), "");
    }
    assert!(
        kills.len() >= MIN_KILLS,
        "{} kills in {rounds} rounds",
        kills.len()
    );
    eprintln!("{} kills over {rounds} rounds: {kills:?}", kills.len());
    // Spread: kills landed early (start-up, check), in the download, and in the idle wait or
    // the install.
    assert!(spread(&kills), "{kills:?}");
    // A cut download resumed with a Range rather than starting over.
    let metrics = control.metrics();
    let partial = metrics
        .requests
        .iter()
        .filter(|((endpoint, status), _)| endpoint == "files" && *status == 206)
        .map(|(_, n)| *n)
        .sum::<u64>();
    assert!(partial > 0, "no ranged resume: {:?}", metrics.requests);
    stub.shutdown().await.unwrap();
}

/// Waits for the child to exit, at most `limit` (the kill instant); `None` if still running.
async fn wait_or_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    tokio::time::timeout(limit, child.wait())
        .await
        .ok()
        .map(|r| r.expect("wait"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
