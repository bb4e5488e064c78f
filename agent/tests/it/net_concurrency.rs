//! The simulator's shape of use: one shared `Client` (one rustls config), hundreds of
//! concurrent NTLM checks over TLS in one process. Every handshake must stay on its own
//! connection even under load, which is what reqwest's pool failed to do.

use std::collections::HashMap;

use crate::net_support::*;
use ucupdate_agent::net::{self, Credentials};
use ucupdate_protocol::wire::EXTERNAL_HANDLER_PATH;
use ucupdate_protocol::{CheckRequest, CheckResponse};

const DEVICES: usize = 300;

fn no_update(_: &Req) -> http::Response<TestBody> {
    respond(200, CheckResponse::NoUpdate.encode())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_concurrent_ntlm_checks_each_stay_on_one_connection() {
    let pki = Pki::new();
    let server = TestServer::tls(&pki, ntlm_handler(false, no_update)).await;
    let client = pki.client();
    let url = server.url(EXTERNAL_HANDLER_PATH);
    let request = CheckRequest::decode(
        br#"<DeviceUpdateRequest><DeviceType>UCPhone</DeviceType><Brand>Polycom</Brand>
        <Model>CX700</Model><Revision>A</Revision><Locale>ENU</Locale>
        <Modules><Module FileName="CPE.nbt" Version="1.0.522.101"/></Modules>
        </DeviceUpdateRequest>"#,
    )
    .unwrap();
    let creds = Credentials::parse_user("CORP\\alice", "correct horse");
    let mut tasks = Vec::new();
    for _ in 0..DEVICES {
        let (client, url, request, creds) =
            (client.clone(), url.clone(), request.clone(), creds.clone());
        tasks.push(tokio::spawn(async move {
            net::check_with_stats(&client, &url, &request, Some(&creds)).await
        }));
    }
    for task in tasks {
        let (result, stats) = task.await.unwrap();
        assert_eq!(result.unwrap(), CheckResponse::NoUpdate);
        assert_eq!((stats.connections, stats.requests), (1, 3));
    }
    // Per connection: anonymous, Type 1, Type 3, and nothing else.
    let mut per_conn: HashMap<usize, Vec<Option<String>>> = HashMap::new();
    for req in server.seen() {
        per_conn
            .entry(req.conn)
            .or_default()
            .push(req.header("authorization").map(str::to_owned));
    }
    assert_eq!(per_conn.len(), DEVICES);
    for auths in per_conn.values() {
        assert_eq!(auths.len(), 3);
        assert!(auths[0].is_none() && auths[1].is_some() && auths[2].is_some());
    }
}
