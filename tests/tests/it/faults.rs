//! Network faults between a device and the server: the agent's real `net` client and
//! real `Machine`, driven by hand on machine time, talk to a real in-process stub through the
//! fault-injecting proxy of `ucupdate_simulator::faults` (or a real DNS responder, or a TLS
//! listener with the wrong certificate). For every fault the test checks four things:
//!
//! 1. the device reports the right error class (the `net` class and the machine's class);
//! 2. it backs off: no one-hour window of machine time holds more than
//!    [`MAX_REQUESTS_PER_HOUR`] requests (docs/AGENT-MACHINE.md, "Back-off and the per-hour cap");
//! 3. it never installs an image that is not byte-for-byte the published one (the install step
//!    compares the staged files with what was published);
//! 4. once the fault clears, it converges to the approved version.
//!
//! The device performs its network actions with the agent's own performer
//! (`ucupdate_agent::perform`, awaited inline), so it sends exactly what the daemon and the
//! simulator send; only DNS and the install step are the harness's (`faults/rig.rs`).
//!
//! Machine time moves only when the harness jumps it to the machine's next deadline, so a
//! simulated day takes as long as its few real requests. The network calls themselves run in
//! real time: paused tokio time would jump straight to the client's 30 s timeouts whenever the
//! runtime waits on a socket served by another thread. Stalls are bounded by short client and
//! server timeouts instead (hundreds of milliseconds).

mod rig;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use ucupdate_agent::bridge;
use ucupdate_agent::dns::{Discovery, DnsSettings};
use ucupdate_agent::machine::{FailureClass, Machine, MachineConfig};
use ucupdate_agent::net::{self, Client, ErrorClass};
use ucupdate_agent::trust::Origin;
use ucupdate_protocol::HttpUrl;
use ucupdate_server_stub::testing::{key, v};
use ucupdate_simulator::faults::FaultKind;

use rig::*;

#[tokio::test]
async fn connection_reset_mid_check() {
    proxied(
        FaultKind::ResetMidResponse,
        Route::Check,
        &[ErrorClass::Transport],
        FailureClass::Connect,
        |_| {},
        None,
        false,
    )
    .await;
}

#[tokio::test]
async fn connection_reset_mid_download_resumes_once_cleared() {
    let (rig, dev) = proxied(
        FaultKind::ResetMidResponse,
        Route::Download,
        &[ErrorClass::Transport],
        FailureClass::Connect,
        |_| {},
        None,
        false,
    )
    .await;
    assert!(
        dev.resumes > 0,
        "the kept half of the image was resumed with a Range"
    );
    drop(rig);
}

#[tokio::test]
async fn truncated_check_body() {
    proxied(
        FaultKind::Truncate,
        Route::Check,
        &[ErrorClass::Transport],
        FailureClass::Connect,
        |_| {},
        None,
        false,
    )
    .await;
}

#[tokio::test]
async fn truncated_download_body() {
    let (_rig, dev) = proxied(
        FaultKind::Truncate,
        Route::Download,
        &[ErrorClass::Transport],
        FailureClass::Connect,
        |_| {},
        None,
        false,
    )
    .await;
    assert!(dev.resumes > 0, "the truncated download was resumed");
}

#[tokio::test]
async fn stalled_server_response_times_out() {
    proxied(
        FaultKind::StallResponse,
        Route::Check,
        &[ErrorClass::Timeout],
        FailureClass::Timeout,
        |_| {},
        Some(short_timeouts()),
        false,
    )
    .await;
}

#[tokio::test]
async fn stalled_download_times_out() {
    proxied(
        FaultKind::StallResponse,
        Route::Download,
        &[ErrorClass::Timeout],
        FailureClass::Timeout,
        |_| {},
        Some(short_timeouts()),
        false,
    )
    .await;
}

/// Slow-loris toward the server: half a request head; the stub's header timeout closes the
/// connection and the device sees it end without an answer.
#[tokio::test]
async fn stalled_request_is_closed_by_the_server_header_timeout() {
    let timeouts = net::Timeouts {
        response_head: Duration::from_secs(5),
        ..short_timeouts()
    };
    proxied(
        FaultKind::StallRequest,
        Route::Check,
        &[ErrorClass::Transport],
        FailureClass::Connect,
        |c| c.limits.header_read_timeout = Duration::from_millis(300),
        Some(timeouts),
        false,
    )
    .await;
}

#[tokio::test]
async fn a_503_storm_is_backed_off() {
    let (rig, dev) = proxied(
        FaultKind::ServerError503,
        Route::Check,
        &[ErrorClass::Http5xx],
        FailureClass::Server5xx,
        |_| {},
        None,
        false,
    )
    .await;
    // Every failed check met a 503: the proxy answered exactly as often as the device asked
    // during the fault (the requests after it cleared reached the stub).
    assert_eq!(
        rig.injected(FaultKind::ServerError503) as usize,
        dev.net_errors.len()
    );
}

#[tokio::test]
async fn a_503_storm_on_downloads_is_backed_off() {
    proxied(
        FaultKind::ServerError503,
        Route::Download,
        &[ErrorClass::Http5xx],
        FailureClass::Server5xx,
        |_| {},
        None,
        false,
    )
    .await;
}

/// A server that answers every NTLM leg with a bare `401 NTLM`: the device with credentials
/// must not loop on it.
#[tokio::test]
async fn a_401_loop_is_backed_off() {
    let (rig, dev) = proxied(
        FaultKind::Unauthorized401,
        Route::Check,
        &[ErrorClass::Unauthorized, ErrorClass::Protocol],
        bridge::failure_class(ErrorClass::Unauthorized),
        |_| {},
        None,
        true,
    )
    .await;
    // At most three requests per check (anonymous, Type 1, Type 3), never more.
    let per_check = rig.injected(FaultKind::Unauthorized401) as usize;
    assert!(per_check <= 3 * dev.net_errors.len(), "{per_check} 401s");
}

#[tokio::test]
async fn refused_connections_are_backed_off() {
    proxied(
        FaultKind::RefuseConnect,
        Route::Check,
        &[ErrorClass::Transport, ErrorClass::Connect],
        FailureClass::Connect,
        |_| {},
        None,
        false,
    )
    .await;
}

/// A download whose body differs from the advertised SHA-256 (one byte flipped in transit).
#[tokio::test]
async fn a_corrupted_download_is_never_installed() {
    let (_rig, dev) = proxied(
        FaultKind::CorruptBody,
        Route::Download,
        &[ErrorClass::HashMismatch],
        FailureClass::HashMismatch,
        |_| {},
        None,
        false,
    )
    .await;
    // After a mismatch the kept bytes are dropped: nothing corrupt is resumed from.
    assert_eq!(dev.resumes, 0);
}

/// The server serves a different file than the one it advertised (its store was changed
/// behind its back): same size, other bytes.
#[tokio::test]
async fn a_different_file_than_advertised_is_never_installed() {
    let rig = Rig::plain().await;
    let stored =
        ucupdate_server_stub::store::version_dir(rig._dir.path(), &key(), v(NEW)).join("CPE.nbt");
    let original = std::fs::read(&stored).unwrap();
    let mut other = original.clone();
    other.reverse();
    std::fs::write(&stored, &other).unwrap();
    let mut dev = Device::internal(
        &rig.check_url,
        &rig.file_origins,
        client(rig.stub.ca_pem(), None),
    );
    dev.assert_fault_phase(3, &[ErrorClass::HashMismatch], FailureClass::HashMismatch)
        .await;
    std::fs::write(&stored, &original).unwrap();
    dev.assert_converges().await;
}

/// A UDP DNS responder: NXDOMAIN, silence, or an A record for 127.0.0.1.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dns {
    NxDomain,
    Silent,
    Answer,
}

async fn dns_server(mode: Arc<std::sync::Mutex<Dns>>) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let mode = *mode.lock().unwrap();
            if n < 12 || mode == Dns::Silent {
                continue;
            }
            let query = &buf[..n];
            // The question ends after its QNAME labels and QTYPE/QCLASS.
            let mut i = 12;
            while i < n && query[i] != 0 {
                i += usize::from(query[i]) + 1;
            }
            let qend = (i + 5).min(n);
            let qtype = u16::from_be_bytes([query[qend - 4], query[qend - 3]]);
            let mut reply = query[..qend].to_vec();
            reply[2] = 0x80 | (query[2] & 0x01) | 0x04; // QR, AA, RD
            let answer = mode == Dns::Answer && qtype == 1;
            reply[3] = if mode == Dns::NxDomain { 0x83 } else { 0x80 }; // RA + rcode
            reply[6..8].copy_from_slice(&(u16::from(answer)).to_be_bytes());
            reply[8..12].copy_from_slice(&[0, 0, 0, 0]);
            if answer {
                reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
            }
            let _ = socket.send_to(&reply, peer).await;
        }
    });
    addr
}

async fn dns_fault(mode: Dns, net: &[ErrorClass], machine: FailureClass) {
    let rig = Rig::plain().await;
    let state = Arc::new(std::sync::Mutex::new(mode));
    let nameserver = dns_server(state.clone()).await;
    let config = MachineConfig {
        dhcp_domain: Some("corp.example".into()),
        discovery_port: rig.check_url.port,
        outside_firewall: Some(false),
        // The stub names its files by address, not under the discovered domain.
        offer_policy: allowing(&[Origin::of(&rig.check_url)]),
        ..MachineConfig::default()
    };
    let mut dev = Device::new(config, client(rig.stub.ca_pem(), None));
    let settings = DnsSettings {
        timeout: Duration::from_millis(200),
        retries: 1,
    };
    dev.discovery = Some(Discovery::with_nameserver(nameserver, &settings).unwrap());
    dev.assert_fault_phase(3, net, machine).await;
    *state.lock().unwrap() = Dns::Answer;
    dev.assert_converges().await;
}

#[tokio::test]
async fn dns_nxdomain_is_backed_off() {
    dns_fault(Dns::NxDomain, &[ErrorClass::Dns], FailureClass::Dns).await;
}

#[tokio::test]
async fn dns_timeout_is_backed_off() {
    dns_fault(
        Dns::Silent,
        &[ErrorClass::Dns, ErrorClass::Timeout],
        bridge::failure_class(ErrorClass::Timeout),
    )
    .await;
}

/// The stub's HTTPS listener presents a certificate for `localhost`/`127.0.0.1`; the device
/// asks for another name (pinned to the same address), or trusts another CA.
async fn tls_fault(wrong_name: bool) {
    let rig = Rig::plain().await;
    let tls = rig.stub.internal_tls_url().unwrap();
    let other = Rig::plain().await;
    let (url, bad_client): (HttpUrl, Client) = if wrong_name {
        let url = format!("https://updates.contoso.invalid:{}{}", tls.port, tls.path)
            .parse()
            .unwrap();
        let c = client(rig.stub.ca_pem(), None).with_override(
            "updates.contoso.invalid",
            vec![IpAddr::from(Ipv4Addr::LOCALHOST)],
        );
        (url, c)
    } else {
        (tls.clone(), client(other.stub.ca_pem(), None))
    };
    // The check goes over HTTPS, the stub offers its files over its plain listener.
    let plain = [Origin::of(&rig.stub.internal_url().unwrap())];
    let mut dev = Device::internal(&url, &plain, bad_client);
    dev.assert_fault_phase(3, &[ErrorClass::Tls], FailureClass::Tls)
        .await;
    assert!(
        rig.stub.control().hits("check") == 0,
        "no check got through TLS"
    );
    // The fault clears: the right certificate (the listener's own name, the right CA).
    dev.client = client(rig.stub.ca_pem(), None).with_override(
        "updates.contoso.invalid",
        vec![IpAddr::from(Ipv4Addr::LOCALHOST)],
    );
    if wrong_name {
        // The operator fixes the certificate's name: here, the device is pointed at the name
        // the certificate carries (the machine reads its URL from the config at power-on).
        let config = MachineConfig {
            server_url: Some(tls.to_string()),
            outside_firewall: Some(false),
            power_on_jitter: Duration::ZERO,
            idle_before_restart: Duration::from_secs(60),
            offer_policy: allowing(&plain),
            ..MachineConfig::default()
        };
        let state = dev.machine.persisted().clone();
        dev.machine = Machine::new(Arc::new(config), state, 12, dev.now);
    }
    dev.assert_converges().await;
}

#[tokio::test]
async fn tls_certificate_for_another_name_is_refused() {
    tls_fault(true).await;
}

#[tokio::test]
async fn tls_certificate_from_an_untrusted_ca_is_refused() {
    tls_fault(false).await;
}
