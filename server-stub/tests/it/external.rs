//! The external listener end to end over real TLS: NTLM with the project's own client (right
//! password -> 200 and remembered on that TCP connection only; a Type 3 on another connection
//! -> 401), and the same against `curl`. The other NTLM refusals (wrong password, anonymous,
//! unknown user, replayed and garbage tokens) are tested in memory in `hostile.rs`.

use http::StatusCode;
use ucupdate_ntlm::{Client, Credentials};
use ucupdate_protocol::wire::EXTERNAL_HANDLER_PATH;
use ucupdate_protocol::CheckResponse;

use crate::common::*;

async fn external(t: &TestServer) -> Conn {
    Conn::tls(t.server.external_addr().unwrap(), t.server.ca_pem()).await
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

/// The listener gives each TCP connection its own NTLM state: a Type 3 answered to one
/// connection's challenge is refused on another, and the first connection can still use it.
/// (The other refusals are in `hostile.rs`, in memory.)
#[tokio::test]
async fn a_type3_is_bound_to_the_tcp_connection_of_its_challenge() {
    let t = start().await;
    let body = check_body("1.0.0.0", MAC);
    let mut first = external(&t).await;
    let mut client = Client::new(
        Credentials::parse_user("CONTOSO\\alice", "Secret1!"),
        "PHONE1",
    );
    let type2 = negotiate(&mut first, &mut client).await;
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
    assert_eq!(stray.header("www-authenticate").as_deref(), Some("NTLM"));
    let own = first
        .send(
            http::Method::POST,
            EXTERNAL_HANDLER_PATH,
            &[("authorization", &type3)],
            body,
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text());
    let m = t.server.control().metrics();
    assert_eq!((m.ntlm_failures, m.ntlm_successes), (1, 1), "{m:?}");
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
