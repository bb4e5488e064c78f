//! Interop with peers nobody on this project wrote, each run for real: `curl --ntlm` against
//! the stub's external listener, the agent's NTLM client against pyspnego's acceptor (behind
//! `peers/ntlm_server.py`), the agent's discovery against dnsmasq, and cabinets built by
//! Debian's gcab imported by the stub and served to a device. Each test is `#[ignore]`d with
//! the tool it needs, so `cargo test --workspace` passes on a bare machine; `.ci/run` installs
//! the tools and runs them with `-- --ignored`.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ucupdate_agent::dns::{Discovery, DnsError, DnsSettings};
use ucupdate_agent::net::{self, AuthStage, ClientSettings, Credentials, NetError};
use ucupdate_protocol::wire::{EXTERNAL_HANDLER_PATH, INTERNAL_HANDLER_PATH};
use ucupdate_protocol::{
    CheckRequest, CheckResponse, DeviceIdentity, FileKind, FileName, HttpUrl, InstalledModule,
    Offer, OfferStatus, OfferedFile, PathSegment,
};
use ucupdate_server_stub::testing::{start as stub, start_peer, v, Peer, PASSWORD, USER};
use ucupdate_server_stub::TestDevice;

fn seg(s: &str) -> PathSegment {
    PathSegment::new(s).unwrap()
}

fn cx700(mac: &str) -> DeviceIdentity {
    ucupdate_server_stub::testing::identity(mac)
}

fn check_request(mac: &str, version: &str) -> CheckRequest {
    CheckRequest {
        identity: cx700(mac),
        modules: vec![InstalledModule {
            update_type: seg("CPE"),
            file_name: FileName::new("CPE.nbt").unwrap(),
            version: v(version),
            timestamp: None,
        }],
        user: None,
    }
}

/// Deterministic bytes that do not compress to nothing (so MSZIP blocks really work).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// curl --ntlm
// ---------------------------------------------------------------------------------------------

/// curl sends no MIC: an acceptor that trusted the MIC alone would let any password in here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs curl"]
async fn curl_ntlm_against_the_stub_external_listener() {
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let ca = dir.path().join("ca.pem");
    assert!(ca.exists(), "the stub writes the CA clients should trust");
    let body = dir.path().join("check.xml");
    std::fs::write(
        &body,
        check_request("00-04-F2-00-01-76", "1.0.522.101").encode(),
    )
    .unwrap();
    let url = server.external_url().unwrap().to_string();
    let curl = |auth: Option<String>, out: PathBuf| {
        let (ca, body, url) = (ca.clone(), body.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new("curl");
            cmd.args(["-sS", "-o"])
                .arg(&out)
                .args(["-w", "%{http_code}"]);
            if let Some(user) = auth {
                cmd.arg("--ntlm").arg("-u").arg(user);
            }
            let output = cmd
                .arg("--cacert")
                .arg(&ca)
                .args([
                    "-H",
                    "Content-Type: text/xml; charset=utf-8",
                    "--data-binary",
                ])
                .arg(format!("@{}", body.display()))
                .arg(&url)
                .output()
                .expect("curl runs");
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
    };
    let out = dir.path().join("reply.xml");
    assert_eq!(
        curl(None, out.clone()).await.unwrap(),
        "401",
        "no credentials"
    );
    assert_eq!(
        curl(Some(format!("{USER}:wrong-{PASSWORD}")), out.clone())
            .await
            .unwrap(),
        "401",
        "wrong password"
    );
    assert_eq!(
        curl(Some(format!("{USER}:{PASSWORD}")), out.clone())
            .await
            .unwrap(),
        "200",
        "right password"
    );
    let reply = std::fs::read(&out).unwrap();
    assert_eq!(
        CheckResponse::decode(&reply).unwrap(),
        CheckResponse::NoUpdate
    );
    let metrics = server.control().metrics();
    assert_eq!(metrics.count("check", 200), 1, "{metrics:?}");
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The agent's NTLM client against pyspnego
// ---------------------------------------------------------------------------------------------

/// Starts `peers/ntlm_server.py` serving `canned`, with pyspnego's user file holding alice.
fn pyspnego_server(dir: &Path, canned: &str) -> (Peer, u16) {
    let users = dir.join("ntlm-users");
    // pyspnego's format: DOMAIN:USER:PASSWORD.
    let (domain, user) = USER.split_once('\\').unwrap();
    std::fs::write(&users, format!("{domain}:{user}:{PASSWORD}\n")).unwrap();
    let response = dir.join("canned.xml");
    std::fs::write(&response, canned).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/ntlm_server.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(&response).env("NTLM_USER_FILE", &users);
    start_peer(
        &mut cmd,
        |line| line.strip_prefix("PORT ")?.parse().ok(),
        "ntlm_server.py: is pyspnego installed?",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 pyspnego"]
async fn agent_ntlm_client_against_pyspnego_acceptor() {
    let dir = tempfile::tempdir().unwrap();
    let canned = CheckResponse::Update(Offer {
        base_url:
            "http://pool.example/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.200/CPE"
                .into(),
        external_base_url:
            "https://ext.example/DeviceUpdateFiles_Ext/UCPhone/Polycom/CX700/A/ENU/1.0.522.200/CPE"
                .into(),
        update_type: seg("CPE"),
        version: v("1.0.522.200"),
        timestamp: None,
        status: OfferStatus::Approved,
        files: vec![OfferedFile {
            kind: FileKind::Image,
            file_name: FileName::new("CPE.nbt").unwrap(),
            size: Some(1_048_576),
            sha256: None,
        }],
    });
    let (_peer, port) = pyspnego_server(dir.path(), &canned.encode());
    let url: HttpUrl = format!("http://127.0.0.1:{port}/RequestHandlerExt/ucdevice.upx")
        .parse()
        .unwrap();
    let client = net::Client::with_settings(ClientSettings::default());
    let request = check_request("00-04-F2-00-01-76", "1.0.522.101");

    let right = Credentials::parse_user(USER, PASSWORD);
    let (result, stats) = net::check_with_stats(&client, &url, &request, Some(&right)).await;
    assert_eq!(result.unwrap(), canned);
    assert_eq!(
        (stats.connections, stats.requests, stats.status),
        (1, 3, Some(200)),
        "anonymous, Type 1 and Type 3 on one kept-alive connection"
    );

    let wrong = Credentials::parse_user(USER, "not-the-password");
    let (result, stats) = net::check_with_stats(&client, &url, &request, Some(&wrong)).await;
    assert!(
        matches!(
            result,
            Err(NetError::Unauthorized {
                stage: AuthStage::Authenticate,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(stats.requests, 3, "no retry loop on a wrong password");

    let result = net::check(&client, &url, &request, None).await;
    assert!(
        matches!(
            result,
            Err(NetError::Unauthorized {
                stage: AuthStage::Anonymous,
                ntlm_offered: true
            })
        ),
        "{result:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Discovery against dnsmasq
// ---------------------------------------------------------------------------------------------

/// Starts dnsmasq on a free loopback port and waits for its "started" line. dnsmasq binds the
/// port for UDP *and* TCP, and another test may take it between our probe and dnsmasq's bind:
/// a port free for both is picked, and an "in use" start is retried on another port.
fn dnsmasq() -> (Peer, SocketAddr) {
    let mut failures = Vec::new();
    for _ in 0..10 {
        let port = free_udp_and_tcp_port();
        match start_dnsmasq(port) {
            Ok(peer) => return (peer, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
            Err(seen) if seen.iter().any(|l| l.contains("Address already in use")) => {
                failures.push(seen)
            }
            Err(seen) => panic!("dnsmasq did not start: {seen:?}"),
        }
    }
    panic!("dnsmasq found no free port in 10 tries: {failures:?}")
}

fn free_udp_and_tcp_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

fn start_dnsmasq(port: u16) -> Result<Peer, Vec<String>> {
    let mut child = Command::new("dnsmasq")
        .args([
            "--keep-in-foreground",
            &format!("--port={port}"),
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--log-facility=-",
            "--pid-file=",
            "--address=/ucupdates-r2.corp.example/127.0.0.1",
            // An empty address: NXDOMAIN for the name (a domain with no update service).
            "--address=/ucupdates-r2.gone.example/",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("dnsmasq runs");
    let stderr = child.stderr.take().unwrap();
    let peer = Peer(child);
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("started") => break,
            Some(Ok(line)) => seen.push(line),
            _ => return Err(seen),
        }
    }
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dnsmasq"]
async fn agent_discovery_against_dnsmasq_then_a_check() {
    let (_dns, addr) = dnsmasq();
    let discovery = Discovery::with_nameserver(addr, &DnsSettings::default()).unwrap();
    let found = discovery.discover("corp.example").await.unwrap();
    assert_eq!(found.name, "ucupdates-r2.corp.example");
    assert_eq!(found.addrs, [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let gone = discovery.discover("gone.example").await;
    assert!(matches!(gone, Err(DnsError::NotFound { .. })), "{gone:?}");

    // What a device does next: check at http://ucupdates-r2.<domain>/..., reaching the stub.
    let dir = tempfile::tempdir().unwrap();
    let server = stub(dir.path(), |_| {}).await;
    let port = server.internal_addr().unwrap().port();
    let url: HttpUrl = format!("http://{}:{port}{INTERNAL_HANDLER_PATH}", found.name)
        .parse()
        .unwrap();
    let client = net::Client::with_settings(ClientSettings::default())
        .with_override(&found.name, found.addrs);
    let reply = net::check(
        &client,
        &url,
        &check_request("00-04-F2-00-01-76", "1.0.0.1"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(reply, CheckResponse::NoUpdate);
    assert_eq!(server.control().metrics().count("check", 200), 1);
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Cabinets built by gcab
// ---------------------------------------------------------------------------------------------

/// Builds `pkg.cab` with gcab in `dir`: `updateInfo.xml` plus an image and a catalog, either in
/// the vendor layout (members under `UCPhone\Polycom\...`, named by `source`) or flat (`-n`).
fn gcab_package(dir: &Path, version: &str, image: &[u8], flat: bool) -> PathBuf {
    let src = dir.join("src");
    let nested = format!("UCPhone/Polycom/CX700/A/ENU/CPE/{version}");
    let folder = if flat { src.clone() } else { src.join(&nested) };
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("CPE.nbt"), image).unwrap();
    std::fs::write(folder.join("CPE.cat"), format!("catalog {version}")).unwrap();
    let source = |name: &str| {
        if flat {
            String::new()
        } else {
            format!(" source=\"{nested}/{name}\"")
        }
    };
    let info = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Updates><Updates>\
         <Update version=\"{version}\" DeviceType=\"UCPhone\" Brand=\"Polycom\" Model=\"CX700\" \
         Revision=\"A\" Locale=\"ENU\" UpdateType=\"CPE\">\
         <File name=\"CPE.nbt\"{}/><File name=\"CPE.cat\"{}/></Update></Updates></Updates>\n",
        source("CPE.nbt"),
        source("CPE.cat"),
    );
    std::fs::write(src.join("updateInfo.xml"), info).unwrap();
    let cab = dir.join("pkg.cab");
    let mut cmd = Command::new("gcab");
    cmd.current_dir(&src).arg("-c").arg("-z");
    if flat {
        cmd.arg("-n");
    }
    cmd.arg(&cab).arg("updateInfo.xml");
    if flat {
        cmd.args(["CPE.nbt", "CPE.cat"]);
    } else {
        cmd.arg(format!("{nested}/CPE.nbt"))
            .arg(format!("{nested}/CPE.cat"));
    }
    let status = cmd.status().expect("gcab runs");
    assert!(status.success(), "gcab failed: {status}");
    // gcab's own listing: vendor cabinets name members with backslashes.
    let listing = Command::new("gcab").arg("-t").arg(&cab).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let expected = if flat {
        "CPE.nbt".to_owned()
    } else {
        format!("{}\\CPE.nbt", nested.replace('/', "\\"))
    };
    assert!(listing.lines().any(|l| l.trim() == expected), "{listing}");
    cab
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs gcab"]
async fn gcab_cabinets_are_imported_and_served_to_a_test_device() {
    const TEST_MAC: &str = "00-04-F2-00-02-01";
    const REGULAR_MAC: &str = "00-04-F2-00-02-02";
    for (flat, version) in [(false, "1.0.600.1"), (true, "1.0.600.2")] {
        let dir = tempfile::tempdir().unwrap();
        let image = pseudo_random(300_001, u64::from(flat) + 7);
        let cab = gcab_package(dir.path(), version, &image, flat);
        let server = stub(&dir.path().join("data"), |_| {}).await;
        let control = server.control();
        let imported = control.import(&cab).await.unwrap();
        assert_eq!(imported.len(), 1, "flat={flat}");
        assert_eq!(
            (imported[0].version, imported[0].files),
            (v(version), 2),
            "flat={flat}"
        );
        control
            .add_test_device(TestDevice::Mac(TEST_MAC.parse().unwrap()))
            .await
            .unwrap();

        let client = net::Client::with_settings(ClientSettings::default());
        let url = server.internal_url().unwrap();
        // Imported means pending: a regular device is offered nothing yet.
        let regular = net::check(
            &client,
            &url,
            &check_request(REGULAR_MAC, "1.0.522.101"),
            None,
        )
        .await
        .unwrap();
        assert_eq!(regular, CheckResponse::NoUpdate, "flat={flat}");
        let CheckResponse::Update(offer) =
            net::check(&client, &url, &check_request(TEST_MAC, "1.0.522.101"), None)
                .await
                .unwrap()
        else {
            panic!("the test device was offered nothing (flat={flat})");
        };
        assert_eq!(
            (offer.version, offer.status),
            (v(version), OfferStatus::Pending)
        );
        let file = offer.image().cloned().unwrap();
        assert_eq!(file.size, Some(image.len() as u64));
        let base: HttpUrl = offer.base_url.parse().unwrap();
        let dest = dir.path().join("downloaded.nbt");
        let done = net::download(
            &client,
            &base.join(file.file_name.as_str()),
            &file,
            &dest,
            0,
            None,
        )
        .await
        .unwrap();
        assert_eq!(done.size, image.len() as u64);
        let mut on_disk = Vec::new();
        std::fs::File::open(&dest)
            .unwrap()
            .read_to_end(&mut on_disk)
            .unwrap();
        assert!(
            on_disk == image,
            "the served image differs from what gcab packed"
        );
        server.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// nginx as the TLS-terminating edge in front of the external listener
// ---------------------------------------------------------------------------------------------

/// A free loopback TCP port (nginx binds it a moment later; a collision fails loudly).
fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts nginx with two edges in front of the stub's external listener `upstream`, both
/// terminating TLS with a certificate for 127.0.0.1 and verifying the stub's certificate:
/// - `http_port`: an HTTP reverse proxy with a kept-alive upstream pool (the usual edge
///   config: `proxy_http_version 1.1`, `Connection ""`, `keepalive`);
/// - `stream_port`: a TCP (stream) proxy, so each client connection has its own upstream one.
fn nginx(
    dir: &Path,
    upstream: SocketAddr,
    stub_ca: &str,
    http_port: u16,
    stream_port: u16,
) -> Nginx {
    let edge =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::write(dir.join("edge.pem"), edge.cert.pem()).unwrap();
    std::fs::write(dir.join("edge.key"), edge.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("stub-ca.pem"), stub_ca).unwrap();
    let d = dir.display();
    // The stub's certificate names localhost and 127.0.0.1; nginx verifies host names only.
    let upstream_tls = format!(
        "proxy_ssl_trusted_certificate {d}/stub-ca.pem; proxy_ssl_verify on; \
         proxy_ssl_name localhost; proxy_ssl_session_reuse on;"
    );
    let conf = format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/t-body; proxy_temp_path {d}/t-proxy;
    fastcgi_temp_path {d}/t-fcgi; uwsgi_temp_path {d}/t-uwsgi; scgi_temp_path {d}/t-scgi;
    upstream ucupdate_external {{ server {upstream}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{http_port} ssl;
        ssl_certificate {d}/edge.pem; ssl_certificate_key {d}/edge.key;
        location / {{
            proxy_pass https://ucupdate_external;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $http_host;
            {upstream_tls}
        }}
    }}
}}
stream {{
    server {{
        listen 127.0.0.1:{stream_port} ssl;
        ssl_certificate {d}/edge.pem; ssl_certificate_key {d}/edge.key;
        proxy_pass {upstream};
        proxy_ssl on;
        {upstream_tls}
    }}
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-e", "stderr", "-g", "daemon off; user root;"])
        .stdin(Stdio::null())
        // Workers inherit these: a test harness pipe held by a worker would never close.
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx runs");
    let stderr = child.stderr.take().unwrap();
    let peer = Nginx(Peer(child));
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    // The listeners are open before the master starts its worker.
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("start worker process ") => break,
            Some(Ok(line)) => seen.push(line),
            _ => panic!("nginx did not start: {seen:#?}"),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    peer
}

/// nginx's master, stopped with SIGTERM so that it takes its worker down with it (a SIGKILL
/// would orphan the worker, still listening).
struct Nginx(Peer);

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.0 .0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.0 .0.wait();
    }
}

/// NTLM through nginx. Through the stream (TCP) edge every external check of the suite passes.
/// Through the HTTP edge with a kept-alive upstream, the handshake completes, but nginx (open
/// source) shares upstream connections between clients: after one device signs in, a fresh
/// client's requests ride on its authenticated upstream connection. The suite names exactly
/// that (`external-type3-fresh-connection-refused`), and an anonymous client indeed gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx (nginx-light, libnginx-mod-stream)"]
async fn nginx_edge_in_front_of_the_external_listener() {
    use ucupdate_conformance::{self as conformance, Options, Outcome};

    let dir = tempfile::tempdir().unwrap();
    let (http_port, stream_port) = (free_port(), free_port());
    let stream_root: HttpUrl = format!("https://127.0.0.1:{stream_port}/").parse().unwrap();
    let root = stream_root.clone();
    // Offers name the stream edge, so external downloads go through nginx too.
    let server = stub(&dir.path().join("data"), move |c| {
        c.public_external_url = Some(root)
    })
    .await;
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    let _nginx = nginx(
        &nginx_dir,
        server.external_addr().unwrap(),
        server.ca_pem(),
        http_port,
        stream_port,
    );
    let edge_ca = std::fs::read_to_string(nginx_dir.join("edge.pem")).unwrap();

    let mut options = Options::new(server.internal_url().unwrap());
    options.admin = server.admin_url();
    options.admin_token = Some(server.admin_token().secret().to_owned());
    options.user = Some(USER.into());
    options.password = Some(PASSWORD.into());
    options.ca_pem = Some(format!("{edge_ca}{}", server.ca_pem()).into_bytes());
    let external_names: Vec<String> = conformance::catalogue()
        .iter()
        .map(|(n, _)| n.to_string())
        .filter(|n| n.starts_with("external-"))
        .collect();
    options.only = external_names.clone();
    let failed = |results: &[conformance::CheckResult]| -> Vec<&'static str> {
        results
            .iter()
            .filter(|r| r.outcome == Outcome::Fail)
            .map(|r| r.name)
            .collect()
    };

    // The stream edge: one upstream connection per client connection.
    options.external_target = Some(stream_root.with_path(EXTERNAL_HANDLER_PATH));
    let results = conformance::run(&options).await;
    let table = conformance::render_table(&results);
    assert_eq!(results.len(), external_names.len(), "{table}");
    assert!(failed(&results).is_empty(), "{table}");
    assert!(
        results.iter().all(|r| r.outcome == Outcome::Pass),
        "{table}"
    );

    // The HTTP edge with a kept-alive upstream pool.
    let http_url: HttpUrl = format!("https://127.0.0.1:{http_port}{EXTERNAL_HANDLER_PATH}")
        .parse()
        .unwrap();
    options.external_target = Some(http_url.clone());
    let results = conformance::run(&options).await;
    let table = conformance::render_table(&results);
    assert_eq!(
        failed(&results),
        ["external-type3-fresh-connection-refused"],
        "{table}"
    );
    // The handshake itself passes through on the kept-alive upstream (one client connection),
    // and it leaks: an anonymous client now reuses the signed-in upstream connection.
    let tls = net::TlsOptions::with_ca_pem(edge_ca.into_bytes())
        .build()
        .unwrap();
    let client = net::Client::new(tls);
    let request = check_request("00-04-F2-00-01-76", "1.0.522.101");
    let creds = Credentials::parse_user(USER, PASSWORD);
    let (result, stats) = net::check_with_stats(&client, &http_url, &request, Some(&creds)).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(stats.connections, 1);
    let anonymous = net::check(&client, &http_url, &request, None).await;
    assert!(
        anonymous.is_ok(),
        "expected nginx's shared upstream to let an anonymous client in: {anonymous:?}"
    );
    server.shutdown().await.unwrap();
}
