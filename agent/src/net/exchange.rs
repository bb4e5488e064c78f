//! One logical request with optional NTLM: send it anonymously; on `401 WWW-Authenticate: NTLM`
//! with credentials at hand, run Type 1 -> Type 2 -> Type 3 on ONE connection and send the
//! request again with the Type 3. Every path ends after at most three requests: a 401 to the
//! Type 3 is final, never a loop.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use ucupdate_ntlm::Credentials;
use ucupdate_protocol::HttpUrl;

use super::client::Client;
use super::conn::{self, Conn};
use super::error::{AuthStage, NetError};
use super::RequestStats;
use crate::clock;

/// A 401 page larger than this is not read through; the connection is given up instead.
const MAX_DRAIN_BYTES: u64 = 64 * 1024;

/// What to send, independent of the authentication round it goes out in.
pub(crate) struct RequestSpec<'a> {
    pub method: Method,
    pub url: &'a HttpUrl,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl RequestSpec<'_> {
    /// The request for one round. The Type 1 round carries no body (as curl and browsers do):
    /// the server answers it with a challenge whatever it holds.
    fn build(
        &self,
        client: &Client,
        authorization: Option<&str>,
        with_body: bool,
        last: bool,
    ) -> Result<Request<Full<Bytes>>, NetError> {
        let body = if with_body {
            self.body.clone()
        } else {
            Bytes::new()
        };
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.url.path.as_str())
            .header(header::HOST, conn::host_header(self.url))
            .header(header::USER_AGENT, client.settings.user_agent.as_str());
        if self.method != Method::GET || !body.is_empty() {
            builder = builder.header(header::CONTENT_LENGTH, body.len());
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        // The last request a connection carries asks the server to close it: the side that
        // closes first keeps the TIME_WAIT, and a client that holds one per request makes the
        // kernel search past thousands of them for each new local port (15 % of a simulated
        // fleet's CPU over HTTP; against a remote server it runs out of ports). A dialect
        // that names its own `Connection` header keeps it.
        if last
            && !self
                .headers
                .iter()
                .any(|(name, _)| name == header::CONNECTION)
        {
            builder = builder.header(header::CONNECTION, "close");
        }
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder
            .body(Full::new(body))
            .map_err(|e| NetError::Config(format!("building request: {e}")))
    }
}

/// The response head of the final round and the connection its body arrives on.
pub(crate) struct Exchanged {
    pub response: Response<Incoming>,
    /// Kept alive until the body is read: dropping it closes the socket.
    pub _conn: Conn,
}

/// Whether a 401 offers NTLM, and the Type 2 token if the header carries one.
fn ntlm_challenge(
    response: &Response<Incoming>,
) -> (bool, Option<Result<Vec<u8>, ucupdate_ntlm::NtlmError>>) {
    let mut offered = false;
    for value in response.headers().get_all(header::WWW_AUTHENTICATE) {
        let Ok(text) = value.to_str() else { continue };
        let text = text.trim();
        let scheme = text.split_whitespace().next().unwrap_or("");
        if scheme.eq_ignore_ascii_case("NTLM") {
            offered = true;
            if text.len() > scheme.len() {
                return (true, Some(ucupdate_ntlm::from_header(text)));
            }
        }
    }
    (offered, None)
}

/// Whether the server lets this connection carry another request. Read from the head rather
/// than from hyper's state, which learns of the close only after its task runs again.
fn keeps_alive(response: &Response<Incoming>) -> bool {
    let says_close = response
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| {
            v.to_str()
                .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
                .unwrap_or(false)
        });
    !says_close && response.version() != http::Version::HTTP_10
}

pub(crate) async fn exchange(
    client: &Client,
    spec: &RequestSpec<'_>,
    auth: Option<&Credentials>,
    started: tokio::time::Instant,
    stats: &mut RequestStats,
) -> Result<Exchanged, NetError> {
    let mut conn = Conn::open(client, spec.url, stats).await?;
    let mut response = conn
        // Without credentials no NTLM round can follow on this connection.
        .send(
            client,
            spec.build(client, None, true, auth.is_none())?,
            started,
            stats,
        )
        .await?;
    if response.status() != StatusCode::UNAUTHORIZED {
        return Ok(Exchanged {
            response,
            _conn: conn,
        });
    }
    let (ntlm_offered, _) = ntlm_challenge(&response);
    let Some(credentials) = auth.filter(|_| ntlm_offered) else {
        tracing::debug!(url = %spec.url, ntlm_offered, "401 and no way to authenticate");
        return Err(NetError::Unauthorized {
            stage: AuthStage::Anonymous,
            ntlm_offered,
        });
    };

    // The anonymous round may be answered with `Connection: close`; NTLM only has to hold
    // from Type 1 on, so a fresh connection is fine here (but not later).
    let reusable = keeps_alive(&response);
    conn::drain(client, response.body_mut(), MAX_DRAIN_BYTES).await?;
    drop(response);
    if !reusable || !conn.is_open() {
        conn = Conn::open(client, spec.url, stats).await?;
    }

    let mut ntlm = ucupdate_ntlm::Client::new(credentials.clone(), &client.settings.workstation);
    let type1 = ucupdate_ntlm::to_header(&ntlm.negotiate());
    tracing::debug!(url = %spec.url, user = %credentials.user, "NTLM negotiate");
    let mut response = conn
        .send(
            client,
            spec.build(client, Some(&type1), false, false)?,
            started,
            stats,
        )
        .await?;
    if response.status() != StatusCode::UNAUTHORIZED {
        // A server that lets the negotiate through has no more to ask; hand back its answer.
        return Ok(Exchanged {
            response,
            _conn: conn,
        });
    }
    let type2 = match ntlm_challenge(&response) {
        (_, Some(token)) => token?,
        (ntlm_offered, None) => {
            return Err(NetError::Unauthorized {
                stage: AuthStage::Negotiate,
                ntlm_offered,
            })
        }
    };
    let reusable = keeps_alive(&response);
    conn::drain(client, response.body_mut(), MAX_DRAIN_BYTES).await?;
    drop(response);
    if !reusable || !conn.is_open() {
        return Err(NetError::Unexpected(
            "server closed the connection in the middle of NTLM".into(),
        ));
    }

    let type3 = ntlm.authenticate(
        &type2,
        super::tls::random_8()?,
        ucupdate_ntlm::filetime_from_unix_millis(clock::unix_millis()),
    )?;
    let type3 = ucupdate_ntlm::to_header(&type3);
    let response = conn
        .send(
            client,
            spec.build(client, Some(&type3), true, true)?,
            started,
            stats,
        )
        .await?;
    if response.status() == StatusCode::UNAUTHORIZED {
        tracing::info!(url = %spec.url, user = %credentials.user, "NTLM credentials refused");
        return Err(NetError::Unauthorized {
            stage: AuthStage::Authenticate,
            ntlm_offered: true,
        });
    }
    Ok(Exchanged {
        response,
        _conn: conn,
    })
}
