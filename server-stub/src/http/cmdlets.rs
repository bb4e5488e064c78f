//! The admin API's side of the Lync cmdlet model (docs/SERVER.md maps each cmdlet): rules
//! named by key, identity or id, named test devices, the two clean-ups and the device-update
//! settings. Routed here by
//! [`super::admin::route`] after its guard.
//!
//! | Method | Path | Does (cmdlet) |
//! |---|---|---|
//! | GET | `/admin/rules` | every rule (Get-CsDeviceUpdateRule) |
//! | GET, DELETE | `/admin/rules/<rule>` | one rule; remove it (Remove-CsDeviceUpdateRule) |
//! | POST | `/admin/rules/<rule>/{approve,restore,reset}` | Approve/Restore/Reset-CsDeviceUpdateRule |
//! | GET | `/admin/test-devices` | every test device (Get-CsTestDevice) |
//! | GET, POST, PUT, DELETE | `/admin/test-devices/<global or site:SITE>/<NAME>` | one; New, Set, Remove-CsTestDevice (body `{"mac": ..}` or `{"serial": ..}`) |
//! | PUT, DELETE | `/admin/test-devices/<MAC or serial:SN>` | the unnamed form: add under a generated name, remove every entry naming it |
//! | POST | `/admin/files/clear` | Clear-CsDeviceUpdateFile (optional body `{"key": ..}`: that key's versions only) |
//! | POST | `/admin/logs/clear` | Clear-CsDeviceUpdateLog, body `{"days_back": N}` |
//! | GET, PUT | `/admin/configuration` | Get/Set-CsDeviceUpdateConfiguration (PUT: the fields to change) |
//!
//! `<rule>` is the key (`UCPhone/Polycom/CX700/A/ENU/CPE`), the identity
//! (`service:WebServer:<pool>/<id>`) or the id.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde::Deserialize;

use super::admin::{blocking, reply};
use super::admin_guard::json_error;
use super::{json, read_capped, Body, Ctx};
use crate::model::devices::{parse_mac, parse_serial, TestDeviceId};
use crate::model::rule_ref::RuleRef;
use crate::model::TestDevice;
use crate::state::StateError;

/// The longest body these endpoints read (a small JSON object).
const MAX_BODY: usize = 4096;

pub(crate) async fn route<B>(
    ctx: &Arc<Ctx>,
    method: &Method,
    parts: &[&str],
    req: Request<B>,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match (method, parts) {
        (&Method::GET, ["rules"]) => {
            let pool = &ctx.pool_fqdn;
            let rules: Vec<_> = ctx.state.rules().iter().map(|r| r.view(pool)).collect();
            json(StatusCode::OK, &rules)
        }
        (&Method::GET | &Method::DELETE | &Method::POST, ["rules", rest @ ..]) => {
            rule(ctx, method, rest).await
        }
        (&Method::GET, ["test-devices"]) => {
            let list: Vec<_> = ctx
                .state
                .named_test_devices()
                .iter()
                .map(|t| t.view())
                .collect();
            json(StatusCode::OK, &list)
        }
        (_, ["test-devices", scope, name]) => {
            let id = match TestDeviceId::from_str_parts(scope, name) {
                Ok(id) => id,
                Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
            };
            named_device(ctx, method, id, req).await
        }
        (&Method::PUT | &Method::DELETE, ["test-devices", device]) => {
            unnamed_device(ctx, method, device).await
        }
        (&Method::POST, ["files", "clear"]) => {
            // An optional body `{"key": "<rule key>"}` limits the clear to that key's versions.
            #[derive(Deserialize)]
            struct Scope {
                key: String,
            }
            let Ok(body) = read_capped(req.into_body(), MAX_BODY).await else {
                return json_error(StatusCode::BAD_REQUEST, "expected a small JSON body");
            };
            let key = if body.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                match serde_json::from_slice::<Scope>(&body)
                    .map_err(|e| e.to_string())
                    .and_then(|scope| {
                        scope
                            .key
                            .parse::<ucupdate_protocol::UpdateKey>()
                            .map_err(|e| e.to_string())
                    }) {
                    Ok(key) => Some(key),
                    Err(e) => {
                        return json_error(
                            StatusCode::BAD_REQUEST,
                            format!("body: {{\"key\": \"<rule key>\"}} or nothing: {e}"),
                        )
                    }
                }
            };
            let state = ctx.state.clone();
            let outcome = blocking(move || {
                let gone = state.clear_files_of(key.as_ref())?;
                tracing::info!(versions = gone.len(), "stored files no rule refers to deleted");
                let gone: Vec<_> = gone
                    .iter()
                    .map(|(k, v)| serde_json::json!({ "key": k.to_string(), "version": v.to_string() }))
                    .collect();
                Ok(serde_json::json!({ "deleted": gone }))
            })
            .await;
            reply(outcome)
        }
        (&Method::POST, ["logs", "clear"]) => {
            #[derive(Deserialize)]
            struct Clear {
                days_back: u32,
            }
            let clear: Clear = match read_json(req).await {
                Ok(c) => c,
                Err(r) => return r,
            };
            let app_ctx = ctx.clone();
            let outcome = blocking(move || {
                crate::app::clear_logs(&app_ctx, clear.days_back, crate::clock::unix_secs())
                    .map_err(|e| StateError::io(app_ctx.state.data_dir(), e))
            })
            .await;
            reply(outcome)
        }
        (&Method::GET, ["configuration"]) => json(StatusCode::OK, &ctx.settings()),
        (&Method::PUT, ["configuration"]) => {
            let patch: crate::settings::ConfigurationPatch = match read_json(req).await {
                Ok(p) => p,
                Err(r) => return r,
            };
            let app_ctx = ctx.clone();
            let outcome = blocking(move || {
                // Under the write lock, so two changes at once cannot lose one.
                let mut settings = app_ctx
                    .settings
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let next = settings
                    .apply(&patch)
                    .map_err(|e| StateError::Invalid(e.to_string()))?;
                app_ctx.state.set_device_update_configuration(&next)?;
                tracing::info!(?patch, "device update configuration changed");
                *settings = next.clone();
                Ok(next)
            })
            .await;
            reply(outcome)
        }
        _ => json_error(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

async fn read_json<B, T: for<'de> Deserialize<'de>>(req: Request<B>) -> Result<T, Response<Body>>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let body = read_capped(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| json_error(StatusCode::BAD_REQUEST, "expected a small JSON body"))?;
    serde_json::from_slice(&body)
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

async fn rule(ctx: &Arc<Ctx>, method: &Method, rest: &[&str]) -> Response<Body> {
    let (rest, action) = match (method, rest) {
        (&Method::POST, [named @ .., action]) => (named, Some(action.to_string())),
        (&Method::POST, []) => return json_error(StatusCode::NOT_FOUND, "no such admin endpoint"),
        _ => (rest, None),
    };
    let named = rest.join("/");
    let r = match named.parse::<RuleRef>() {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let state = ctx.state.clone();
    let pool = ctx.pool_fqdn.clone();
    let delete = method == Method::DELETE;
    let outcome = blocking(move || {
        let key = state.resolve(&r, &pool)?;
        let rule = match action.as_deref() {
            None if delete => {
                let view = state.rule_view(&RuleRef::Key(key.clone()), &pool)?;
                state.remove_rule(&key)?;
                tracing::info!(%key, "rule removed");
                return Ok(view);
            }
            None => return state.rule_view(&RuleRef::Key(key), &pool),
            Some("approve") => state.approve(&key)?,
            Some("restore") => state.restore(&key)?,
            Some("reset") => state.reset(&key)?,
            Some(other) => {
                return Err(StateError::Invalid(format!(
                    "unknown rule action {other:?}: approve, restore or reset"
                )))
            }
        };
        Ok(crate::state::RuleRecord { key, rule }.view(&pool))
    })
    .await;
    reply(outcome)
}

/// `{"mac": ..}`, `{"serial": ..}`, or the cmdlet's `{"identifier_type": "MACAddress" |
/// "SerialNumber", "identifier": ..}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identifier {
    mac: Option<String>,
    serial: Option<String>,
    identifier_type: Option<String>,
    identifier: Option<String>,
}

impl Identifier {
    fn device(&self) -> Result<TestDevice, String> {
        let typed = match (&self.identifier_type, &self.identifier) {
            (Some(t), Some(v)) if t.eq_ignore_ascii_case("MACAddress") => Some((true, v)),
            (Some(t), Some(v)) if t.eq_ignore_ascii_case("SerialNumber") => Some((false, v)),
            (None, None) => None,
            _ => {
                return Err(
                    "identifier_type must be MACAddress or SerialNumber, with an identifier".into(),
                )
            }
        };
        let given = [
            self.mac.as_ref().map(|m| (true, m)),
            self.serial.as_ref().map(|s| (false, s)),
            typed,
        ];
        let mut given = given.into_iter().flatten();
        match (given.next(), given.next()) {
            (Some((true, mac)), None) => parse_mac(mac).map_err(|e| e.to_string()),
            (Some((false, serial)), None) => parse_serial(serial).map_err(|e| e.to_string()),
            _ => Err("give exactly one of mac, serial or identifier_type + identifier".into()),
        }
    }
}

async fn named_device<B>(
    ctx: &Arc<Ctx>,
    method: &Method,
    id: TestDeviceId,
    req: Request<B>,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let state = ctx.state.clone();
    let device = if matches!(*method, Method::POST | Method::PUT) {
        let body: Identifier = match read_json(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        match body.device() {
            Ok(d) => Some(d),
            Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("bad test device: {e}")),
        }
    } else {
        None
    };
    let method = method.clone();
    let outcome = blocking(move || {
        match (method, device) {
            (Method::GET, _) => {}
            (Method::POST, Some(device)) => state.add_named_test_device(id.clone(), device)?,
            (Method::PUT, Some(device)) => state.set_named_test_device(&id, device)?,
            (Method::DELETE, _) => return Ok(state.remove_named_test_device(&id)?.view()),
            _ => return Err(StateError::Invalid("GET, POST, PUT or DELETE".into())),
        }
        Ok(state.named_test_device(&id)?.view())
    })
    .await;
    reply(outcome)
}

async fn unnamed_device(ctx: &Arc<Ctx>, method: &Method, id: &str) -> Response<Body> {
    let device = match id.parse::<TestDevice>() {
        Ok(d) => d,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("bad test device: {e}")),
    };
    let state = ctx.state.clone();
    let add = method == Method::PUT;
    let shown = device.to_string();
    let outcome = blocking(move || {
        let changed = if add {
            state.add_test_device(device)?
        } else {
            state.remove_test_device(&device)?
        };
        Ok(serde_json::json!({ "device": shown, "changed": changed }))
    })
    .await;
    reply(outcome)
}
