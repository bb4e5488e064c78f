//! What every admin-listener request must pass before it is routed, in this order:
//!
//! 1. **Host** (421): the listener's own address (`127.0.0.1:9080`; any IP literal with the
//!    listener's port when it is bound to `0.0.0.0`/`::`), `localhost:PORT`, or a name given
//!    with `--admin-host`. A DNS-rebinding page reaches the listener under its own name
//!    (`Host: rebind.evil.example:9080`) and stops here.
//! 2. **Origin** (403): absent, or exactly `http://` + the request's (accepted) Host. A page
//!    of any other origin that gets a request through (a `no-cors` fetch, a form POST) stops
//!    here even before its lack of a token is noticed.
//! 3. **Bearer token** (401) on `/admin/...`; `/metrics` needs none (aggregate counters only:
//!    no device, user or version appears in it), so scrapers work without configuration.
//! 4. **Content-Type** (415) on state-changing requests: `application/json` for `POST`,
//!    `PUT` and `DELETE`, except the file publish `PUT`, which takes `application/octet-stream`.
//!    A browser sends neither cross-origin without a CORS preflight, which this API never
//!    answers, so a `text/plain` or form POST cannot change anything.
//!
//! Refusals are JSON (`{"error": "..."}`) like every admin answer.

use std::net::{IpAddr, SocketAddr};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use super::{Body, Ctx};

/// A JSON error answer of the admin listener.
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let message = super::clipped(message.into());
    super::json(status, &serde_json::json!({ "error": message }))
}

/// The refusal for `req` on the admin listener bound at `local`, or `None` to route it.
pub(crate) fn check<B>(
    ctx: &Ctx,
    req: &Request<B>,
    local: Option<SocketAddr>,
) -> Option<Response<Body>> {
    let host = request_host(req);
    let Some(host) = host.filter(|h| host_allowed(h, local, &ctx.admin_hosts)) else {
        tracing::warn!(host = ?request_host(req), "admin request for a foreign Host refused");
        return Some(json_error(
            StatusCode::MISDIRECTED_REQUEST,
            "Host is not this admin listener (use its address, localhost:PORT or an --admin-host name)",
        ));
    };
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let own = format!("http://{host}");
        let same = origin.to_str().is_ok_and(|o| o.eq_ignore_ascii_case(&own));
        if !same {
            tracing::warn!(origin = ?origin, "cross-origin admin request refused");
            return Some(json_error(
                StatusCode::FORBIDDEN,
                "cross-origin requests to the admin API are refused",
            ));
        }
    }
    let path = req.uri().path();
    if path == "/metrics" {
        return None;
    }
    if !bearer_ok(ctx, req) {
        tracing::warn!(path = %super::clipped(path.to_owned()), "admin request without a valid token refused");
        let mut r = json_error(
            StatusCode::UNAUTHORIZED,
            "admin API: send Authorization: Bearer <the token in DATA/admin.token>",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ucupdate-admin\""),
        );
        return Some(r);
    }
    if matches!(*req.method(), Method::POST | Method::PUT | Method::DELETE) {
        let wanted = if *req.method() == Method::PUT && path.starts_with("/admin/files/") {
            "application/octet-stream"
        } else {
            "application/json"
        };
        let given = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if given.as_deref() != Some(wanted) {
            return Some(json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("{} {path} takes Content-Type: {wanted}", req.method()),
            ));
        }
    }
    None
}

/// The `Host` header, or the authority of an absolute-form request target.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok().map(str::to_owned),
        None => req.uri().authority().map(|a| a.as_str().to_owned()),
    }
}

fn host_allowed(host: &str, local: Option<SocketAddr>, names: &[String]) -> bool {
    let (name, port) = split_host(host);
    if names.iter().any(|n| {
        let (n_name, n_port) = split_host(n);
        n_name.eq_ignore_ascii_case(name) && (n_port.is_none() || n_port == port)
    }) {
        return true;
    }
    let ip = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name)
        .parse::<IpAddr>()
        .ok();
    let Some(local) = local else {
        // In memory (no listener): IP literals and localhost, any port.
        return ip.is_some() || name.eq_ignore_ascii_case("localhost");
    };
    let port_ok = port == Some(local.port());
    if name.eq_ignore_ascii_case("localhost") {
        return port_ok;
    }
    match ip {
        Some(ip) => port_ok && (local.ip().is_unspecified() || ip == local.ip()),
        None => false,
    }
}

/// `name[:port]`, `[v6][:port]`.
fn split_host(host: &str) -> (&str, Option<u16>) {
    if host.starts_with('[') {
        return match host.rsplit_once("]:") {
            Some((name, port)) => (&host[..name.len() + 1], port.parse().ok()),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}

fn bearer_ok<B>(ctx: &Ctx, req: &Request<B>) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .is_some_and(|token| ctx.admin_token.matches(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let local: SocketAddr = "127.0.0.1:9080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9080".parse().unwrap();
        let v6: SocketAddr = "[::1]:9080".parse().unwrap();
        let names = vec!["admin.lab".to_owned()];
        let cases = [
            ("127.0.0.1:9080", Some(local), true),
            ("localhost:9080", Some(local), true),
            ("LOCALHOST:9080", Some(local), true),
            ("127.0.0.1:9081", Some(local), false),
            ("10.1.2.3:9080", Some(local), false),
            ("10.1.2.3:9080", Some(any), true),
            ("rebind.evil.example:9080", Some(local), false),
            ("rebind.evil.example:9080", Some(any), false),
            ("admin.lab", Some(local), true),
            ("admin.lab:9080", Some(local), true),
            ("[::1]:9080", Some(v6), true),
            ("[::1]:9081", Some(v6), false),
            ("127.0.0.1", Some(local), false),
            ("evil.example", None, false),
        ];
        for (host, local, ok) in cases {
            assert_eq!(host_allowed(host, local, &names), ok, "{host} on {local:?}");
        }
    }
}
