//! The update check and log upload over real loopback sockets and real TLS: canned replies,
//! status classes, trust failures, TLS resumption and the per-request timeouts (paused time).

use std::time::Duration;

use crate::net_support::*;
use bytes::Bytes;
use ucupdate_agent::clock;
use ucupdate_agent::net::{self, ErrorClass, NetError, TimeoutPhase, Timeouts, TlsOptions};
use ucupdate_protocol::wire::{CONTENT_TYPE_XML, INTERNAL_HANDLER_PATH};
use ucupdate_protocol::{CheckRequest, CheckResponse, FileName, LogType, LogUpload, PathSegment};

pub fn sample_request() -> CheckRequest {
    CheckRequest::decode(
        br#"<DeviceUpdateRequest><DeviceType>UCPhone</DeviceType><Brand>Polycom</Brand>
        <Model>CX700</Model><Revision>A</Revision><Locale>ENU</Locale>
        <MacAddress>00-04-F2-00-01-76</MacAddress><SerialNumber></SerialNumber>
        <Modules><Module UpdateType="CPE" FileName="CPE.nbt" Version="1.0.522.101"/></Modules>
        </DeviceUpdateRequest>"#,
    )
    .unwrap()
}

pub fn offer_xml() -> String {
    r#"<DeviceUpdateResponse><Downloads>1</Downloads>
    <BaseURL>http://pool01/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.200/CPE</BaseURL>
    <ExternalBaseURL></ExternalBaseURL>
    <Update UpdateType="CPE" Version="1.0.522.200" Status="approved"><File Kind="image" FileName="CPE.nbt" Size="10"/></Update>
    </DeviceUpdateResponse>"#
        .to_owned()
}

fn canned(req: &Req, _: &mut ConnState) -> http::Response<TestBody> {
    if req.method != http::Method::POST || req.header("content-type") != Some(CONTENT_TYPE_XML) {
        return respond(400, "bad request");
    }
    match CheckRequest::decode(&req.body) {
        Ok(_) => respond(200, offer_xml()),
        Err(_) => respond(400, "bad body"),
    }
}

/// A check without credentials is the only request its connection carries (no NTLM round can
/// follow), so it asks the server to close: the side that closes first keeps the TIME_WAIT,
/// and a fleet holding one per check made the kernel's port search 15 % of its CPU.
#[tokio::test]
async fn an_anonymous_check_asks_the_server_to_close() {
    let pki = Pki::new();
    let server = TestServer::plain(handler(canned)).await;
    let got = net::check(
        &pki.client(),
        &server.url(INTERNAL_HANDLER_PATH),
        &sample_request(),
        None,
    )
    .await;
    assert!(matches!(got, Ok(CheckResponse::Update(_))), "{got:?}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("connection"), Some("close"));
}

#[tokio::test]
async fn check_over_tls_gets_the_canned_offer() {
    let pki = Pki::new();
    let server = TestServer::tls(&pki, handler(canned)).await;
    let client = pki.client();
    let (result, stats) = net::check_with_stats(
        &client,
        &server.url(INTERNAL_HANDLER_PATH),
        &sample_request(),
        None,
    )
    .await;
    let CheckResponse::Update(offer) = result.unwrap() else {
        panic!("expected an offer")
    };
    assert_eq!(offer.version.to_string(), "1.0.522.200");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, INTERNAL_HANDLER_PATH);
    assert_eq!(
        CheckRequest::decode(&seen[0].body).unwrap(),
        sample_request()
    );
    assert_eq!(
        (stats.connections, stats.requests, stats.status),
        (1, 1, Some(200))
    );
    assert!(stats.tls_handshake.is_some());
    assert!(stats.bytes_sent > 100 && stats.bytes_received > 100);
}

#[tokio::test]
async fn check_over_plain_http_reads_no_update() {
    let server = TestServer::plain(handler(|_, _| {
        respond(200, CheckResponse::NoUpdate.encode())
    }))
    .await;
    let client = Pki::new().client();
    let got = net::check(
        &client,
        &server.url(INTERNAL_HANDLER_PATH),
        &sample_request(),
        None,
    )
    .await;
    assert_eq!(got.unwrap(), CheckResponse::NoUpdate);
    let stats = net::check_with_stats(&client, &server.url("/"), &sample_request(), None)
        .await
        .1;
    assert_eq!(stats.tls_handshake, None);
}

#[tokio::test]
async fn statuses_and_bodies_map_to_classes() {
    let server = TestServer::plain(handler(|req, _| match req.path.as_str() {
        "/500" => respond(503, "busy"),
        "/404" => respond(404, "nope"),
        "/401" => {
            let mut r = respond(401, "who are you");
            r.headers_mut()
                .insert("www-authenticate", "NTLM".parse().unwrap());
            r
        }
        "/junk" => respond(200, "<html>not xml"),
        "/big" => respond(
            200,
            vec![b' '; ucupdate_protocol::wire::MAX_MESSAGE_BYTES + 1],
        ),
        _ => respond(200, CheckResponse::NoUpdate.encode()),
    }))
    .await;
    let client = Pki::new().client();
    let req = sample_request();
    let class = |path: &'static str| {
        let (client, url, req) = (client.clone(), server.url(path), req.clone());
        async move { net::check(&client, &url, &req, None).await.unwrap_err() }
    };
    assert_eq!(class("/500").await.class(), ErrorClass::Http5xx);
    assert_eq!(class("/404").await.class(), ErrorClass::Http4xx);
    let unauthorized = class("/401").await;
    assert_eq!(unauthorized.class(), ErrorClass::Unauthorized);
    assert!(matches!(
        unauthorized,
        NetError::Unauthorized {
            ntlm_offered: true,
            ..
        }
    ));
    assert_eq!(class("/junk").await.class(), ErrorClass::Protocol);
    assert!(matches!(class("/big").await, NetError::TooLarge { .. }));
}

#[tokio::test]
async fn untrusted_certificate_is_a_tls_error() {
    let server = TestServer::tls(&Pki::new(), handler(canned)).await;
    let other_ca = Pki::new().client();
    let err = net::check(
        &other_ca,
        &server.url(INTERNAL_HANDLER_PATH),
        &sample_request(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Tls, "{err}");
}

#[tokio::test]
async fn refused_connection_and_unknown_host_have_their_classes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = Pki::new().client();
    let url = format!("http://127.0.0.1:{port}/").parse().unwrap();
    let err = net::check(&client, &url, &sample_request(), None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Connect);
    let url = "http://no-such-host.invalid/".parse().unwrap();
    let err = net::check(&client, &url, &sample_request(), None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Dns);
    let no_tls = ucupdate_agent::net::Client::with_settings(Default::default());
    let url = "https://127.0.0.1:1/".parse().unwrap();
    let err = net::check(&no_tls, &url, &sample_request(), None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Config);
}

#[tokio::test]
async fn tls_sessions_resume_when_enabled_only() {
    let pki = Pki::new();
    let server = TestServer::tls(&pki, handler(canned)).await;
    let url = server.url(INTERNAL_HANDLER_PATH);
    for resumption in [true, false] {
        let client = pki.client_with(|s| {
            let mut opts = TlsOptions::with_ca_pem(pki.ca_pem.as_bytes().to_vec());
            opts.resumption = resumption;
            s.tls = Some(opts.build().unwrap());
        });
        let first = net::check_with_stats(&client, &url, &sample_request(), None).await;
        assert!(first.0.is_ok());
        assert!(!first.1.tls_resumed);
        let second = net::check_with_stats(&client, &url, &sample_request(), None).await;
        assert!(second.0.is_ok());
        assert_eq!(second.1.tls_resumed, resumption);
    }
}

#[tokio::test]
async fn log_upload_posts_the_file_with_the_query() {
    let server = TestServer::plain(handler(|_, _| respond(200, ""))).await;
    let client = Pki::new().client();
    let upload = LogUpload::new(
        LogType::CeLog,
        FileName::new("UCPhone_0004F2000176-20260101-CELOG101010_1.clg").unwrap(),
        PathSegment::new("00-04-F2-00-01-76").unwrap(),
    )
    .unwrap();
    let body = Bytes::from_static(b"log line\n");
    let (status, _) = net::upload_log_with_stats(
        &client,
        &server.url(INTERNAL_HANDLER_PATH),
        &upload,
        body.clone(),
        None,
    )
    .await;
    assert_eq!(status.unwrap(), 200);
    let seen = server.seen();
    let (path, query) = seen[0].path.split_once('?').unwrap();
    assert_eq!(path, INTERNAL_HANDLER_PATH);
    assert_eq!(LogUpload::from_query(query).unwrap(), Some(upload.clone()));
    assert_eq!(seen[0].body, body);
    let too_big = Bytes::from(vec![
        0u8;
        ucupdate_protocol::wire::MAX_LOG_BYTES as usize + 1
    ]);
    let err = net::upload_log(
        &client,
        &server.url(INTERNAL_HANDLER_PATH),
        &upload,
        too_big,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Protocol);
    assert_eq!(server.seen().len(), 1, "an oversized log is never sent");
}

// ---------------------------------------------------------------------------------------------
// Timeouts, on paused time: each wait runs out after exactly its configured duration.
// ---------------------------------------------------------------------------------------------

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(7),
        tls_handshake: Duration::from_secs(11),
        response_head: Duration::from_secs(13),
        body_idle: Duration::from_secs(17),
    }
}

#[tokio::test(start_paused = true)]
async fn silent_server_times_out_waiting_for_the_head() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and reads, never answers.
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s);
        }
    });
    let client = Pki::new().client_with(|s| s.timeouts = timeouts());
    let url = format!("http://127.0.0.1:{port}/").parse().unwrap();
    let start = clock::monotonic();
    let err = net::check(&client, &url, &sample_request(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Timeout {
                phase: TimeoutPhase::ResponseHead
            }
        ),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert_eq!(clock::elapsed(start), Duration::from_secs(13));

    // The same server, spoken to in TLS, never finishes a handshake.
    let url = format!("https://{HOST}:{port}/").parse().unwrap();
    let start = clock::monotonic();
    let err = net::check(&client, &url, &sample_request(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Timeout {
                phase: TimeoutPhase::TlsHandshake
            }
        ),
        "{err}"
    );
    assert_eq!(clock::elapsed(start), Duration::from_secs(11));
}

#[tokio::test(start_paused = true)]
async fn stalled_body_times_out_after_idle() {
    let server = TestServer::plain(handler(|_, _| {
        let mut r =
            http::Response::new(TestBody::Stall(Some(Bytes::from_static(b"<DeviceUpdate"))));
        r.headers_mut()
            .insert("content-length", "1000".parse().unwrap());
        r
    }))
    .await;
    let client = Pki::new().client_with(|s| s.timeouts = timeouts());
    let start = clock::monotonic();
    let err = net::check(&client, &server.url("/"), &sample_request(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Timeout {
                phase: TimeoutPhase::BodyIdle
            }
        ),
        "{err}"
    );
    assert_eq!(clock::elapsed(start), Duration::from_secs(17));
}

#[tokio::test(start_paused = true)]
async fn shaping_adds_latency_per_connection_and_request() {
    let server = TestServer::plain(handler(|_, _| {
        respond(200, CheckResponse::NoUpdate.encode())
    }))
    .await;
    let client = Pki::new().client().shaped(net::RequestShaping {
        bytes_per_sec: None,
        added_latency: Duration::from_millis(150),
    });
    let (result, stats) =
        net::check_with_stats(&client, &server.url("/"), &sample_request(), None).await;
    assert!(result.is_ok());
    // Once before connecting, once before the request.
    assert_eq!(stats.total, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn the_rate_cap_paces_an_upload_too() {
    let server = TestServer::plain(handler(|_, _| respond(200, ""))).await;
    let client = Pki::new().client().shaped(net::RequestShaping {
        bytes_per_sec: std::num::NonZeroU64::new(1000),
        added_latency: Duration::ZERO,
    });
    let upload = LogUpload::new(
        LogType::Watson,
        FileName::new("crash.dmp").unwrap(),
        PathSegment::new("00-04-F2-00-01-76").unwrap(),
    )
    .unwrap();
    let (status, stats) = net::upload_log_with_stats(
        &client,
        &server.url(INTERNAL_HANDLER_PATH),
        &upload,
        Bytes::from(vec![7u8; 5000]),
        None,
    )
    .await;
    assert_eq!(status.unwrap(), 200);
    assert_eq!(
        (stats.bytes_sent, stats.total),
        (5000, Duration::from_secs(5))
    );
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a connect hangs.
async fn black_hole(
    ip: std::net::Ipv4Addr,
    port: u16,
) -> (tokio::net::TcpListener, tokio::net::TcpStream) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((ip, port).into()).unwrap();
    let listener = socket.listen(0).unwrap();
    let filler = tokio::net::TcpStream::connect((ip, port)).await.unwrap();
    (listener, filler)
}

#[tokio::test(start_paused = true)]
async fn a_hanging_address_gets_its_share_of_the_connect_timeout_then_the_next_is_tried() {
    let good = TestServer::plain(handler(|_, _| {
        respond(200, CheckResponse::NoUpdate.encode())
    }))
    .await;
    let port = good.addr.port();
    let dead_ip = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let _hole = black_hole(dead_ip, port).await;
    let pki = Pki::new();
    let client = pki.client_with(|s| {
        s.timeouts = timeouts();
        s.resolve_overrides.insert(
            HOST.to_owned(),
            vec![dead_ip.into(), std::net::Ipv4Addr::LOCALHOST.into()],
        );
    });
    let url = format!("http://{HOST}:{port}/").parse().unwrap();
    let (result, stats) = net::check_with_stats(&client, &url, &sample_request(), None).await;
    assert_eq!(result.unwrap(), CheckResponse::NoUpdate);
    // Seven seconds for two addresses: the dead one is given up after three and a half.
    assert_eq!(stats.connect_time, Duration::from_millis(3500));

    // Only the dead address: the whole budget, then a connect timeout.
    let client = pki.client_with(|s| {
        s.timeouts = timeouts();
        s.resolve_overrides
            .insert(HOST.to_owned(), vec![dead_ip.into()]);
    });
    let start = clock::monotonic();
    let err = net::check(&client, &url, &sample_request(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Timeout {
                phase: TimeoutPhase::Connect
            }
        ),
        "{err}"
    );
    assert_eq!(clock::elapsed(start), Duration::from_secs(7));
}
