//! NTLM on the external listener. NTLM authenticates a TCP connection, not a request, so the
//! state ([`ConnAuth`]) lives in the task serving one connection and dies with it: Type 1 ->
//! 401 with a Type 2, Type 3 on the same connection -> the user is remembered for the rest of
//! that connection only. A Type 3 without a preceding Type 1 on this connection, a wrong
//! password, a garbage token and an anonymous request all get 401 and nothing else.

use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use ucupdate_ntlm::{AcceptStep, Acceptor};

use super::{text, Body, Ctx};
use crate::clock;

/// The NTLM state of one connection.
#[derive(Debug, Default)]
pub(crate) struct ConnAuth {
    /// `DOMAIN\user` once a Type 3 was accepted on this connection.
    user: Option<String>,
    /// The handshake in progress (after a Type 1).
    acceptor: Option<Acceptor>,
}

/// Either the authenticated user, or the 401 to send.
pub(crate) fn gate<B>(
    ctx: &Arc<Ctx>,
    auth: &mut ConnAuth,
    req: &Request<B>,
) -> Result<String, Box<Response<Body>>> {
    if let Some(user) = &auth.user {
        return Ok(user.clone());
    }
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(unauthorized(None, "NTLM authentication required"));
    };
    let token = match value.to_str().ok().map(ucupdate_ntlm::from_header) {
        Some(Ok(token)) => token,
        _ => {
            ctx.metrics.ntlm_failure();
            tracing::warn!("refused a malformed NTLM Authorization header");
            return Err(unauthorized(None, "malformed NTLM Authorization header"));
        }
    };
    match ucupdate_ntlm::message_type(&token) {
        Some(1) => {
            let challenge: [u8; 8] = rand::random();
            let now = ucupdate_ntlm::filetime_from_unix_millis(clock::unix_millis());
            let mut acceptor = Acceptor::new(ctx.users.clone(), challenge, now, &ctx.server_name);
            match acceptor.step(&token) {
                AcceptStep::Challenge(type2) => {
                    auth.acceptor = Some(acceptor);
                    Err(unauthorized(Some(&type2), "NTLM challenge"))
                }
                AcceptStep::Accepted { .. } | AcceptStep::Rejected(_) => {
                    ctx.metrics.ntlm_failure();
                    tracing::warn!("refused an NTLM Type 1");
                    Err(unauthorized(None, "bad NTLM negotiate message"))
                }
            }
        }
        Some(3) => {
            let Some(mut acceptor) = auth.acceptor.take() else {
                ctx.metrics.ntlm_failure();
                tracing::warn!("NTLM Type 3 without a Type 1 on this connection");
                return Err(unauthorized(
                    None,
                    "NTLM authenticate without a negotiate on this connection",
                ));
            };
            match acceptor.step(&token) {
                AcceptStep::Accepted { domain, user } => {
                    let name = if domain.is_empty() {
                        user
                    } else {
                        format!("{domain}\\{user}")
                    };
                    ctx.metrics.ntlm_success();
                    tracing::info!(user = %name, "NTLM authenticated a connection");
                    auth.user = Some(name.clone());
                    Ok(name)
                }
                AcceptStep::Rejected(reason) => {
                    ctx.metrics.ntlm_failure();
                    tracing::warn!(%reason, "NTLM authentication refused");
                    Err(unauthorized(None, "NTLM authentication failed"))
                }
                AcceptStep::Challenge(_) => {
                    ctx.metrics.ntlm_failure();
                    Err(unauthorized(None, "unexpected NTLM message"))
                }
            }
        }
        _ => {
            ctx.metrics.ntlm_failure();
            tracing::warn!("refused a token that is not an NTLM Type 1 or Type 3");
            Err(unauthorized(
                None,
                "not an NTLM negotiate or authenticate message",
            ))
        }
    }
}

fn unauthorized(type2: Option<&[u8]>, reason: &str) -> Box<Response<Body>> {
    let mut response = text(StatusCode::UNAUTHORIZED, reason);
    let value = match type2 {
        Some(token) => ucupdate_ntlm::to_header(token),
        None => "NTLM".to_owned(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    Box::new(response)
}
