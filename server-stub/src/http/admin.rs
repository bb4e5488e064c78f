//! The admin API (bind it to loopback) and `/metrics`. JSON in and out, errors included
//! (`{"error": "..."}`); every change is written to the state file before it is answered.
//! Every request first passes [`admin_guard::check`] (Host, Origin, bearer token,
//! Content-Type).
//!
//! | Method | Path | Does |
//! |---|---|---|
//! | GET | `/metrics` | Prometheus text |
//! | GET, POST, DELETE | `/admin/rules...`, `/admin/test-devices...`, `/admin/files/clear`, `/admin/logs/clear`, `/admin/configuration` | the cmdlet model, see [`super::cmdlets`] |
//! | GET | `/admin/inventory` | device inventory |
//! | DELETE | `/admin/inventory/<DeviceType>/<Brand>/<Model>/<Revision>/<Locale>` | forget every inventory entry of that model; `{"removed": N}` |
//! | GET | `/admin/versions` | stored versions and their files |
//! | POST | `/admin/import` | `{"path": "<server-side .cab or directory>"}` |
//! | PUT | `/admin/files/<DeviceType>/<Brand>/<Model>/<Revision>/<Locale>/<UpdateType>/<Version>/<FileName>` | publish one file; the version becomes pending |

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde::Serialize;
use ucupdate_protocol::url::percent_decode;
use ucupdate_protocol::{FileKind, FileName, FirmwareVersion, UpdateKey};

use super::admin_guard::{self, json_error};
use super::{full, json, read_capped, read_frames, Body, BodyError, Ctx};
use crate::model::devices::DeviceError;
use crate::model::RuleError;
use crate::state::{State, StateError};
use crate::store::StagedFile;

pub(crate) async fn route<B>(
    ctx: &Arc<Ctx>,
    req: Request<B>,
    local: Option<SocketAddr>,
) -> (&'static str, Response<Body>)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_owned();
    let endpoint = if path == "/metrics" {
        "metrics"
    } else {
        "admin"
    };
    if let Some(refusal) = admin_guard::check(ctx, &req, local) {
        return (endpoint, refusal);
    }
    if path == "/metrics" {
        if req.method() != Method::GET {
            return (
                "metrics",
                json_error(StatusCode::METHOD_NOT_ALLOWED, "GET only"),
            );
        }
        let devices = crate::metrics::devices_per_version(&ctx.state.inventory());
        let mut r = Response::new(full(ctx.metrics.render_with_devices(&devices)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return ("metrics", r);
    }
    let Some(rest) = path.strip_prefix("/admin/") else {
        return (
            "other",
            json_error(StatusCode::NOT_FOUND, "no such endpoint"),
        );
    };
    let Some(decoded) = percent_decode(rest) else {
        return (
            "admin",
            json_error(StatusCode::BAD_REQUEST, "bad percent escape"),
        );
    };
    let parts: Vec<&str> = decoded.split('/').collect();
    let method = req.method().clone();
    let response = match (&method, parts.as_slice()) {
        (_, ["rules" | "test-devices", ..] | ["configuration"])
        | (&Method::POST, ["files" | "logs", "clear"]) => {
            super::cmdlets::route(ctx, &method, &parts, req).await
        }
        (&Method::GET, ["inventory"]) => json(StatusCode::OK, &ctx.state.inventory()),
        (&Method::DELETE, ["inventory", dt, brand, model, rev, locale]) => {
            let state = ctx.state.clone();
            let model = [dt, brand, model, rev, locale].map(|s| s.to_string());
            let outcome = blocking(move || {
                let removed = state.forget_model(model.each_ref().map(String::as_str))?;
                tracing::info!(removed, model = %model.join("/"), "inventory entries removed");
                Ok(serde_json::json!({ "removed": removed }))
            })
            .await;
            reply(outcome)
        }
        (&Method::GET, ["versions"]) => json(StatusCode::OK, &versions(&ctx.state)),
        (&Method::POST, ["import"]) => import(ctx, req).await,
        (&Method::PUT, ["files", dt, brand, model, rev, locale, ut, version, name]) => {
            let key = format!("{dt}/{brand}/{model}/{rev}/{locale}/{ut}").parse::<UpdateKey>();
            let version = version.parse::<FirmwareVersion>();
            let name = FileName::new(name);
            match (key, version, name) {
                (Ok(key), Ok(version), Ok(name)) => publish(ctx, key, version, name, req).await,
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    tracing::warn!(error = %e, "refused publish path");
                    json_error(StatusCode::BAD_REQUEST, format!("bad publish path: {e}"))
                }
            }
        }
        _ => json_error(StatusCode::NOT_FOUND, "no such admin endpoint"),
    };
    ("admin", response)
}

#[derive(Serialize)]
struct VersionView {
    key: String,
    version: String,
    files: Vec<crate::model::FileMeta>,
}

fn versions(state: &State) -> Vec<VersionView> {
    state.read(|m| {
        m.catalog
            .iter()
            .map(|((key, version), files)| VersionView {
                key: key.to_string(),
                version: version.to_string(),
                files: files.clone(),
            })
            .collect()
    })
}

/// Runs a state-file write off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StateError::Invalid(format!("admin task failed: {e}"))))
}

pub(crate) fn reply<T: Serialize>(outcome: Result<T, StateError>) -> Response<Body> {
    match outcome {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => error_response(&e),
    }
}

pub(crate) fn error_response(e: &StateError) -> Response<Body> {
    let status = match e {
        StateError::Rule(
            RuleError::UnknownRule(_) | RuleError::UnknownId(_) | RuleError::OtherPool { .. },
        ) => StatusCode::NOT_FOUND,
        StateError::Rule(_) => StatusCode::CONFLICT,
        StateError::Device(DeviceError::Unknown(_)) => StatusCode::NOT_FOUND,
        StateError::Device(DeviceError::Exists(_)) => StatusCode::CONFLICT,
        StateError::Device(_) => StatusCode::BAD_REQUEST,
        StateError::Invalid(_) => StatusCode::BAD_REQUEST,
        StateError::Io { .. } | StateError::Corrupt { .. } | StateError::Db { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    if status.is_server_error() {
        tracing::error!(error = %e, "admin request failed");
    } else {
        tracing::warn!(error = %e, "admin request refused");
    }
    json(status, &serde_json::json!({ "error": e.to_string() }))
}

async fn import<B>(ctx: &Arc<Ctx>, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let body = match read_capped(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return json_error(StatusCode::BAD_REQUEST, "expected a small JSON body"),
    };
    #[derive(serde::Deserialize)]
    struct ImportRequest {
        path: std::path::PathBuf,
    }
    let request: ImportRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"path\": ...}}: {e}"),
            )
        }
    };
    let state = ctx.state.clone();
    let signer = ctx.catalog_signer.clone();
    let outcome = blocking(move || {
        let limits = crate::package::ImportLimits::default();
        crate::package::import_path_signed(&state, &request.path, &limits, signer.as_deref())
            .map_err(|e| match e {
                crate::package::PackageError::State(s) => s,
                other => StateError::Invalid(other.to_string()),
            })
    })
    .await;
    reply(outcome)
}

async fn publish<B>(
    ctx: &Arc<Ctx>,
    key: UpdateKey,
    version: FirmwareVersion,
    name: FileName,
    req: Request<B>,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let cap = ctx.limits.max_publish_bytes;
    if let Some(len) = super::content_length(req.headers()).filter(|&len| len > cap) {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body of {len} bytes exceeds the {cap}-byte publish cap"),
        );
    }
    let data_dir = ctx.state.data_dir().to_owned();
    let mut staged = match StagedFile::new(&data_dir) {
        Ok(s) => s,
        Err(e) => return error_response(&StateError::io(&data_dir, e)),
    };
    let mut body = req.into_body();
    // Admin uploads are rare; a page-cache write per frame does not stall the workers
    // noticeably, and the fsync happens off them below.
    match read_frames(&mut body, cap, |chunk| staged.write(chunk)).await {
        Ok(_) => {}
        Err(BodyError::TooLarge) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("file exceeds the {cap}-byte publish cap"),
            )
        }
        Err(BodyError::Io(e)) => {
            return json_error(StatusCode::BAD_REQUEST, format!("cannot read body: {e}"))
        }
        Err(BodyError::Sink(e)) => return error_response(&StateError::io(&data_dir, e)),
    }
    let state = ctx.state.clone();
    let signer = ctx.catalog_signer.clone();
    let target = crate::store::version_dir(&data_dir, &key, version).join(name.as_str());
    let outcome = blocking(move || {
        let meta = staged.commit(&target, name).map_err(|e| StateError::io(&target, e))?;
        let mut rule = state.publish_meta(&key, version, meta.clone())?;
        if crate::roundtable::ensure_stored(&state, &key, version)?.is_some() {
            rule = state.read(|m| m.rules[&key].clone());
        }
        // Each file re-signs the version's catalog, unless it is a catalog itself (kept as
        // published: the vendor's) or a vendor catalog is already stored.
        if let Some(signer) = signer.filter(|_| FileKind::of(&meta.name) != FileKind::Catalog) {
            if crate::catalog::resign_version(&state, &signer, &key, version)?.is_some() {
                rule = state.read(|m| m.rules[&key].clone());
            }
        }
        tracing::info!(%key, %version, file = %meta.name, size = meta.size, "published");
        Ok(serde_json::json!({ "key": key.to_string(), "version": version.to_string(), "file": meta, "rule": rule }))
    })
    .await;
    reply(outcome)
}
