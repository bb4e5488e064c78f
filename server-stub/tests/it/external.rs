//! The external listener end to end over real TLS: NTLM with the project's own client
//! (right password -> 200 and remembered on that connection only; wrong password, anonymous,
//! a Type 3 on a fresh connection and garbage tokens -> 401), and the same against `curl`.

use http::StatusCode;
use ucupdate_ntlm::{Client, Credentials};
use ucupdate_protocol::wire::EXTERNAL_HANDLER_PATH;
use ucupdate_protocol::CheckResponse;

use crate::common::*;

const FILETIME: u64 = 134_000_000_000_000_000;

async fn external(t: &TestServer) -> Conn {
    Conn::tls(t.server.external_addr().unwrap(), t.server.ca_pem()).await
}

/// Runs Type 1 / Type 2 / Type 3 on `c` with `password`; returns the reply to the Type 3.
async fn login(c: &mut Conn, user: &str, password: &str, body: &str) -> Reply {
    let mut client = Client::new(Credentials::parse_user(user, password), "PHONE1");
    let type1 = ucupdate_ntlm::to_header(&client.negotiate());
    let challenge = c
        .send(
            http::Method::POST,
            EXTERNAL_HANDLER_PATH,
            &[("authorization", &type1)],
            "",
        )
        .await;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    let www = challenge.header("www-authenticate").unwrap();
    let type2 = ucupdate_ntlm::from_header(&www).unwrap();
    assert_eq!(ucupdate_ntlm::message_type(&type2), Some(2));
    let type3 = client.authenticate(&type2, [9; 8], FILETIME).unwrap();
    let type3 = ucupdate_ntlm::to_header(&type3);
    c.send(
        http::Method::POST,
        EXTERNAL_HANDLER_PATH,
        &[("authorization", &type3)],
        body.to_owned(),
    )
    .await
}

#[tokio::test]
async fn ntlm_success_is_remembered_for_that_connection_only() {
    let t = start().await;
    let control = t.server.control();
    control
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    control.approve(&key()).await.unwrap();
    let mut c = external(&t).await;
    let ok = login(
        &mut c,
        "CONTOSO\\alice",
        "Secret1!",
        &check_body("1.0.0.0", MAC),
    )
    .await;
    let CheckResponse::Update(offer) = ok.check() else {
        panic!("no offer")
    };
    assert!(offer.external_base_url.contains("/DeviceUpdateFiles_Ext/"));

    // Same connection, no Authorization: still alice.
    let again = c
        .post(EXTERNAL_HANDLER_PATH, check_body("1.0.0.0", MAC))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let file = format!("{}/CPE.nbt", path_of(&offer.external_base_url));
    let download = c.get(&file, &[("range", "bytes=0-4")]).await;
    assert_eq!(
        (download.status, &download.body[..]),
        (StatusCode::PARTIAL_CONTENT, &b"image"[..])
    );

    // A new connection starts anonymous.
    let mut fresh = external(&t).await;
    let anon = fresh.get(&file, &[]).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.header("www-authenticate").as_deref(), Some("NTLM"));

    // The NTLM user is the inventory's last user when the request names none.
    let inventory = control.inventory();
    assert_eq!(inventory[0].last_user.as_deref(), Some("CONTOSO\\alice"));
    assert_eq!(control.metrics().ntlm_successes, 1);
}

/// alice's password under another domain was accepted and logged as `EVILDOM\ALICE`.
#[tokio::test]
async fn a_foreign_domain_is_refused_and_the_user_files_spelling_is_recorded() {
    let t = start().await;
    let body = check_body("1.0.0.0", MAC);
    for spec in ["EVILDOM\\ALICE", "alice@attacker.example"] {
        let mut c = external(&t).await;
        let refused = login(&mut c, spec, "Secret1!", &body).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{spec}");
    }
    assert!(t.server.control().inventory().is_empty());
    let mut c = external(&t).await;
    let ok = login(&mut c, "contoso\\ALICE", "Secret1!", &body).await;
    assert_eq!(ok.status, StatusCode::OK);
    let inventory = t.server.control().inventory();
    assert_eq!(inventory[0].last_user.as_deref(), Some("CONTOSO\\alice"));
}

#[tokio::test]
async fn refusals_get_401_and_nothing_else() {
    let t = start().await;
    t.server
        .control()
        .publish(&key(), v("2.0.0.0"), files("v2"))
        .await
        .unwrap();
    t.server.control().approve(&key()).await.unwrap();
    let body = check_body("1.0.0.0", MAC);

    // Anonymous.
    let mut c = external(&t).await;
    let anon = c.post(EXTERNAL_HANDLER_PATH, body.clone()).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.header("www-authenticate").as_deref(), Some("NTLM"));
    assert!(!anon.text().contains("DeviceUpdateResponse"));

    // Wrong password, then the right one on the same connection with a new handshake.
    let wrong = login(&mut c, "CONTOSO\\alice", "WRONG", &body).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!wrong.text().contains("DeviceUpdateResponse"));
    let after = c.post(EXTERNAL_HANDLER_PATH, body.clone()).await;
    assert_eq!(
        after.status,
        StatusCode::UNAUTHORIZED,
        "a failed login must not authenticate the connection"
    );
    assert_eq!(
        login(&mut c, "CONTOSO\\alice", "Secret1!", &body)
            .await
            .status,
        StatusCode::OK
    );

    // Unknown user.
    let mut c = external(&t).await;
    assert_eq!(
        login(&mut c, "CONTOSO\\mallory", "Secret1!", &body)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // A Type 3 computed on one connection, sent on a fresh one.
    let mut first = external(&t).await;
    let mut client = Client::new(
        Credentials::parse_user("CONTOSO\\alice", "Secret1!"),
        "PHONE1",
    );
    let type1 = ucupdate_ntlm::to_header(&client.negotiate());
    let challenge = first
        .send(
            http::Method::POST,
            EXTERNAL_HANDLER_PATH,
            &[("authorization", &type1)],
            "",
        )
        .await;
    let type2 = ucupdate_ntlm::from_header(&challenge.header("www-authenticate").unwrap()).unwrap();
    let type3 = ucupdate_ntlm::to_header(&client.authenticate(&type2, [3; 8], FILETIME).unwrap());
    let mut second = external(&t).await;
    let stray = second
        .send(
            http::Method::POST,
            EXTERNAL_HANDLER_PATH,
            &[("authorization", &type3)],
            body.clone(),
        )
        .await;
    assert_eq!(stray.status, StatusCode::UNAUTHORIZED);

    // Garbage tokens.
    for token in [
        "NTLM !!!not base64!!!",
        "NTLM AAAAAAAA",
        "NTLM",
        "Basic YWxpY2U6U2VjcmV0MSE=",
        "NTLM TlRMTVNTUAAFAAAA",
    ] {
        let mut c = external(&t).await;
        let r = c
            .send(
                http::Method::POST,
                EXTERNAL_HANDLER_PATH,
                &[("authorization", token)],
                body.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{token}");
        // The connection still works for a proper handshake.
        assert_eq!(
            login(&mut c, "bob", "hunter2", &body).await.status,
            StatusCode::OK,
            "{token}"
        );
    }
    let m = t.server.control().metrics();
    assert_eq!(m.ntlm_failures, 8, "anonymous legs are not failures: {m:?}");
    assert_eq!(m.count("check", 200), 6);
}

/// `curl --ntlm` is an independent client: curl sends no MIC, so this is the case where an
/// acceptor that only checks the MIC would let any password in.
#[tokio::test]
#[ignore = "needs curl"]
async fn curl_ntlm_wrong_password_is_refused_and_right_one_accepted() {
    let t = start().await;
    let ca = t.dir.path().join("ca.pem");
    assert!(ca.exists(), "the CA is written to DATA/ca.pem");
    let url = t.server.external_url().unwrap().to_string();
    let body = t.dir.path().join("check.xml");
    std::fs::write(&body, check_body("1.0.0.0", MAC)).unwrap();
    let run = |user: &'static str, password: &'static str| {
        let (ca, url, body) = (ca.clone(), url.clone(), body.clone());
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--ntlm",
                    "-u",
                ])
                .arg(format!("{user}:{password}"))
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
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    assert_eq!(run("CONTOSO\\alice", "WRONG").await.unwrap(), "401");
    // The right password under a domain that is not alice's.
    assert_eq!(run("EVILDOM\\alice", "Secret1!").await.unwrap(), "401");
    assert_eq!(run("CONTOSO\\alice", "Secret1!").await.unwrap(), "200");
    assert_eq!(t.server.control().metrics().count("check", 200), 1);
}
