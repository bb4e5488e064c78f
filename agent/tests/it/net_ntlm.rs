//! NTLM on one pinned connection, against the real `ucupdate_ntlm::Acceptor` kept per
//! connection in a real TLS server: right password, wrong password (exactly three requests,
//! no loop), no credentials, a server that closes after the anonymous 401, and a download.

use crate::net_support::*;
use ucupdate_agent::net::{self, AuthStage, Credentials, ErrorClass, NetError};
use ucupdate_protocol::wire::EXTERNAL_HANDLER_PATH;
use ucupdate_protocol::{CheckRequest, CheckResponse, FileKind, FileName, OfferedFile};

fn sample_request() -> CheckRequest {
    CheckRequest::decode(
        br#"<DeviceUpdateRequest><DeviceType>UCPhone</DeviceType><Brand>Polycom</Brand>
        <Model>CX700</Model><Revision>A</Revision><Locale>ENU</Locale>
        <MacAddress>00-04-F2-00-01-76</MacAddress>
        <Modules><Module FileName="CPE.nbt" Version="1.0.522.101"/></Modules>
        </DeviceUpdateRequest>"#,
    )
    .unwrap()
}

fn no_update(_: &Req) -> http::Response<TestBody> {
    respond(200, CheckResponse::NoUpdate.encode())
}

fn alice(password: &str) -> Credentials {
    Credentials::parse_user("CORP\\alice", password)
}

#[tokio::test]
async fn right_password_authenticates_on_one_connection() {
    let pki = Pki::new();
    let server = TestServer::tls(&pki, ntlm_handler(false, no_update)).await;
    let (got, stats) = net::check_with_stats(
        &pki.client(),
        &server.url(EXTERNAL_HANDLER_PATH),
        &sample_request(),
        Some(&alice("correct horse")),
    )
    .await;
    assert_eq!(got.unwrap(), CheckResponse::NoUpdate);
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "anonymous, Type 1, Type 3");
    assert!(seen.iter().all(|r| r.conn == 0), "all on one connection");
    assert!(seen[0].header("authorization").is_none());
    // Only the last round asks the server to close: the handshake needs the connection.
    let close: Vec<_> = seen.iter().map(|r| r.header("connection")).collect();
    assert_eq!(close, [None, None, Some("close")]);
    assert_eq!(
        CheckRequest::decode(&seen[2].body).unwrap(),
        sample_request()
    );
    assert_eq!(
        (stats.connections, stats.requests, stats.status),
        (1, 3, Some(200))
    );
}

#[tokio::test]
async fn wrong_password_is_unauthorized_after_exactly_one_handshake() {
    let pki = Pki::new();
    let server = TestServer::tls(&pki, ntlm_handler(false, no_update)).await;
    let err = net::check(
        &pki.client(),
        &server.url(EXTERNAL_HANDLER_PATH),
        &sample_request(),
        Some(&alice("wrong")),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Unauthorized {
                stage: AuthStage::Authenticate,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Unauthorized);
    assert_eq!(server.seen().len(), 3, "no retry loop");
    let err = net::check(
        &pki.client(),
        &server.url(EXTERNAL_HANDLER_PATH),
        &sample_request(),
        Some(&Credentials::parse_user("CORP\\mallory", "x")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unauthorized);
}

#[tokio::test]
async fn without_credentials_the_first_401_ends_it() {
    let pki = Pki::new();
    let server = TestServer::tls(&pki, ntlm_handler(false, no_update)).await;
    let err = net::check(
        &pki.client(),
        &server.url(EXTERNAL_HANDLER_PATH),
        &sample_request(),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Unauthorized {
                stage: AuthStage::Anonymous,
                ntlm_offered: true
            }
        ),
        "{err}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_closed_anonymous_connection_is_replaced_before_type_1() {
    let pki = Pki::new();
    let server = TestServer::tls(&pki, ntlm_handler(true, no_update)).await;
    let (got, stats) = net::check_with_stats(
        &pki.client(),
        &server.url(EXTERNAL_HANDLER_PATH),
        &sample_request(),
        Some(&alice("correct horse")),
    )
    .await;
    assert_eq!(got.unwrap(), CheckResponse::NoUpdate);
    let conns: Vec<usize> = server.seen().iter().map(|r| r.conn).collect();
    assert_eq!(
        conns,
        vec![0, 1, 1],
        "Type 1 and Type 3 share the second connection"
    );
    assert_eq!(stats.connections, 2);
}

#[tokio::test]
async fn downloads_authenticate_the_same_way() {
    fn file(req: &Req) -> http::Response<TestBody> {
        serve_file(req, &file_bytes(5000))
    }
    let pki = Pki::new();
    let server = TestServer::tls(&pki, ntlm_handler(false, file)).await;
    let data = file_bytes(5000);
    let expected = OfferedFile {
        kind: FileKind::Image,
        file_name: FileName::new("CPE.nbt").unwrap(),
        size: Some(5000),
        sha256: Some(sha256(&data)),
    };
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("CPE.nbt");
    let url = server.url("/DeviceUpdateFiles_Ext/CPE.nbt");
    let got = net::download(
        &pki.client(),
        &url,
        &expected,
        &dest,
        0,
        Some(&alice("correct horse")),
    )
    .await
    .unwrap();
    assert_eq!(got.size, 5000);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let err = net::download(&pki.client(), &url, &expected, &dest, 0, None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unauthorized);
}

#[tokio::test]
async fn a_server_without_ntlm_or_without_a_challenge_ends_the_attempt() {
    let pki = Pki::new();
    // Offers only Basic: credentials are never sent.
    let basic = TestServer::tls(
        &pki,
        handler(|_, _| {
            let mut r = respond(401, "");
            r.headers_mut()
                .insert("www-authenticate", "Basic realm=\"x\"".parse().unwrap());
            r
        }),
    )
    .await;
    let err = net::check(
        &pki.client(),
        &basic.url("/"),
        &sample_request(),
        Some(&alice("correct horse")),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Unauthorized {
                stage: AuthStage::Anonymous,
                ntlm_offered: false
            }
        ),
        "{err}"
    );
    assert_eq!(basic.seen().len(), 1);
    assert!(basic.seen()[0].header("authorization").is_none());

    // Offers NTLM but answers the Type 1 with a bare `NTLM` again: no loop, two requests.
    let stubborn = TestServer::tls(&pki, handler(|_, _| challenge(None, false))).await;
    let err = net::check(
        &pki.client(),
        &stubborn.url("/"),
        &sample_request(),
        Some(&alice("correct horse")),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Unauthorized {
                stage: AuthStage::Negotiate,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(stubborn.seen().len(), 2);
}
