//! The device endpoints of one site (internal or external): the check handler (which also
//! takes log uploads, `?action=logupload`; in a dialect's path and format too: [`super::dialect`])
//! and the update files. Every refusal is a 4xx with a
//! one-line reason, logged at `warn`, and leaves the connection and the server serving.
//! The quotas ([`crate::quota::Quotas`]) apply here: modules per check, the inventory cap and
//! the log quotas (`crate::logs`); so do the settings ([`crate::settings`]): the log types,
//! extensions and size a device may upload.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use ucupdate_protocol::wire::{
    CheckResponse, EXTERNAL_HANDLER_PATH, INTERNAL_HANDLER_PATH, MAX_LOG_BYTES, MAX_MESSAGE_BYTES,
};
use ucupdate_protocol::{AuditRecord, DeviceType, LogUpload, ResponseModule, StoreKind};

use super::{
    drain, files, full, read_capped, refuse_declared, text, Body, BodyError, Ctx, LINGER_BYTES,
};
use crate::clock;
use crate::logs::LogError;

/// Routes one request of a device site. `user` is the NTLM user of the connection (external).
/// Returns the metrics endpoint name with the response.
pub(crate) async fn route<B>(
    ctx: &Arc<Ctx>,
    share: StoreKind,
    req: Request<B>,
    peer: SocketAddr,
    user: Option<String>,
) -> (&'static str, Response<Body>)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handler = match share {
        StoreKind::Internal => INTERNAL_HANDLER_PATH,
        StoreKind::External => EXTERNAL_HANDLER_PATH,
    };
    let path = req.uri().path();
    if path.eq_ignore_ascii_case(handler) || ctx.is_dialect_check_path(path) {
        if let Err(allow) = ctx.check_method(req.method()) {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "the check handler accepts {} only",
                    allow.to_str().unwrap_or("POST")
                ),
            );
            r.headers_mut().insert(header::ALLOW, allow);
            return ("check", r);
        }
        return match LogUpload::from_query(req.uri().query().unwrap_or("")) {
            Ok(Some(upload)) => ("log_upload", log_upload(ctx, upload, req).await),
            Ok(None) => ("check", check(ctx, req, peer, user).await),
            Err(e) => {
                tracing::warn!(%peer, error = %super::clipped(e.to_string()), "bad log upload query");
                (
                    "log_upload",
                    text(StatusCode::BAD_REQUEST, format!("bad log upload: {e}")),
                )
            }
        };
    }
    // Both layouts' store roots (R2's and Lync's), whichever the offers name.
    if let Some(store_path) = crate::layout::to_r2_path(path) {
        let response = files::serve(ctx, share, &req, &store_path).await;
        return ("files", response);
    }
    ("other", text(StatusCode::NOT_FOUND, "no such endpoint"))
}

async fn check<B>(
    ctx: &Arc<Ctx>,
    req: Request<B>,
    peer: SocketAddr,
    user: Option<String>,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(r) = refuse_declared(req.headers(), MAX_MESSAGE_BYTES as u64) {
        tracing::warn!(%peer, "check body declared too large");
        drain(req.into_body(), LINGER_BYTES).await;
        return r;
    }
    let body = match read_capped(req.into_body(), MAX_MESSAGE_BYTES).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            tracing::warn!(%peer, "check body too large");
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("check body exceeds {MAX_MESSAGE_BYTES} bytes"),
            );
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")),
    };
    let mut request = match ctx.decode_check(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%peer, error = %super::clipped(e.clone()), "bad check request");
            return text(StatusCode::BAD_REQUEST, format!("bad check request: {e}"));
        }
    };
    if !ctx.accept_unknown_device_types
        && matches!(request.identity.device_type, DeviceType::Other(_))
    {
        tracing::warn!(%peer, device_type = %request.identity.device_type, "unknown device type");
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown device type {:?}: expected UCPhone or RoundTable",
                request.identity.device_type.as_str()
            ),
        );
    }
    let max_modules = ctx.quotas.max_modules_per_check;
    if request.modules.len() > max_modules {
        tracing::warn!(%peer, modules = request.modules.len(), "check lists too many modules");
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "check lists {} modules: at most {max_modules} are accepted",
                request.modules.len()
            ),
        );
    }
    // On the external site NTLM says who signed in; the body's LastSignedInUser is only a
    // claim (an authenticated alice could otherwise put `CORP\ceo` in the inventory).
    if let Some(authenticated) = user {
        if let Some(claimed) = request
            .user
            .as_deref()
            .filter(|c| !c.eq_ignore_ascii_case(&authenticated))
        {
            tracing::warn!(
                %peer,
                authenticated = %authenticated,
                claimed = %super::clipped(claimed.to_owned()),
                "check claims another user than the NTLM one: recording the NTLM user"
            );
        }
        request.user = Some(authenticated);
    }
    let decision = ctx.state.read(|m| m.decide(&request, &ctx.bases));
    let now = clock::unix_secs();
    let client = ucupdate_protocol::audit::host_address(peer.ip());
    ctx.state.record_check(
        &request,
        &client,
        &decision.outcome,
        now,
        ctx.quotas.max_inventory_entries,
    );
    // The decision goes to the structured log and the metrics: the audit log has no column
    // for it (the service's does not).
    let decided = match &decision.response {
        CheckResponse::NoUpdate => "none",
        CheckResponse::Update(offer) => offer.status.as_str(),
    };
    ctx.metrics.decision(decided);
    tracing::debug!(%peer, device_type = %request.identity.device_type, decision = decided, outcome = %decision.outcome, "check");
    let record = AuditRecord {
        unix_secs: now,
        client,
        response: ResponseModule::of(&decision.response),
        request,
    };
    if let Err(e) = ctx.audit.append(&record) {
        tracing::error!(error = %e, "cannot write the audit log");
    }
    let (reply, content_type) = ctx.encode_reply(&decision.response);
    let mut response = Response::new(full(reply));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

async fn log_upload<B>(ctx: &Arc<Ctx>, upload: LogUpload, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let settings = ctx.settings();
    let log_type = upload.log_type.as_str();
    let ext = upload.file_name.extension().unwrap_or_default();
    let refusal = if !settings.allows_type(log_type) {
        Some(format!("log type {log_type} is not in ValidLogFileTypes"))
    } else if !settings.allows_extension(ext.as_str()) {
        Some(format!("extension .{ext} is not in ValidLogFileExtensions"))
    } else {
        None
    };
    if let Some(reason) = refusal {
        tracing::warn!(device = %upload.device, %reason, "log upload refused");
        drain(req.into_body(), LINGER_BYTES).await;
        return text(StatusCode::BAD_REQUEST, format!("bad log upload: {reason}"));
    }
    let max = settings.max_log_file_size.min(MAX_LOG_BYTES);
    if let Some(r) = refuse_declared(req.headers(), max) {
        tracing::warn!(device = %upload.device, "log upload declared too large");
        drain(req.into_body(), LINGER_BYTES).await;
        return r;
    }
    let body = match read_capped(req.into_body(), max as usize).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            tracing::warn!(device = %upload.device, "log upload too large");
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("log exceeds {max} bytes"),
            );
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")),
    };
    let store = ctx.clone();
    let device = upload.device.clone();
    let file = upload.file_name.clone();
    // The names carry the device's type and version: what its last check said.
    let key = match device.as_str().parse::<ucupdate_protocol::MacAddress>() {
        Ok(mac) => mac.to_string(),
        Err(_) => format!("serial:{device}"),
    };
    let info = ctx.state.read(|m| {
        m.inventory
            .get(&key)
            .map(|e| crate::logs::DeviceInfo {
                device_type: Some(e.device_type.clone()),
                version: e.versions.values().next().cloned(),
            })
            .unwrap_or_default()
    });
    let now = clock::unix_secs();
    let stored =
        tokio::task::spawn_blocking(move || store.logs.store(&upload, &body, max, &info, now));
    match stored.await {
        Ok(Ok(path)) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            tracing::info!(%device, %file, stored = %name, "device log stored");
            text(StatusCode::OK, format!("log stored as {name}"))
        }
        Ok(Err(e @ LogError::TooLarge { .. })) => {
            tracing::warn!(%device, error = %e, "log upload too large");
            text(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Ok(Err(e @ (LogError::DeviceQuota { .. } | LogError::TotalQuota { .. }))) => {
            tracing::warn!(%device, error = %e, "log upload over quota");
            text(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot store device log");
            text(StatusCode::INTERNAL_SERVER_ERROR, "cannot store log")
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot store log"),
    }
}
