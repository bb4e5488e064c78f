//! The server a run talks to: the embedded server stub (started in-process on loopback when no
//! `--server` is given) or a remote one, plus the [`Admin`] implementations that drive each:
//! [`ControlAdmin`] in-process, [`HttpAdmin`] over a remote `ucupdate-server`'s admin API.

use std::net::IpAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use ucupdate_agent::net::{self, ClientSettings, TlsOptions};
use ucupdate_ntlm::UserDb;
use ucupdate_protocol::wire::{DISCOVERY_PREFIX, EXTERNAL_HANDLER_PATH, INTERNAL_HANDLER_PATH};
use ucupdate_protocol::{HttpUrl, UpdateKey};
use ucupdate_server_stub::{Control, RunningServer, ServerConfig, TestDevice};

use crate::admin::{Admin, AdminOp, BoxFuture};
use crate::engine::Target;
use crate::fleet::{DeviceSpec, FleetSpec};

/// A running embedded server and what the devices need to reach it.
pub struct Embedded {
    pub server: RunningServer,
    pub target: Target,
    pub ca_pem: String,
    /// Keeps the temporary data directory alive for the run.
    _dir: Option<tempfile::TempDir>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("temporary data directory: {0}")]
    TempDir(std::io::Error),
    #[error("starting the embedded server: {0}")]
    Start(#[from] ucupdate_server_stub::ServerError),
    #[error("the embedded server has no {0} listener")]
    Missing(&'static str),
}

/// Starts the stub on loopback with every simulated user of `fleet` that signs in from outside,
/// in `data_dir` or a temporary directory removed after the run.
pub async fn start(
    fleet: &FleetSpec,
    user_domain: &str,
    password_secret: &str,
    data_dir: Option<PathBuf>,
) -> Result<Embedded, EmbeddedError> {
    let (dir, path) = match data_dir {
        Some(p) => (None, p),
        None => {
            let d = tempfile::tempdir().map_err(EmbeddedError::TempDir)?;
            let p = d.path().to_path_buf();
            (Some(d), p)
        }
    };
    let mut users = UserDb::default();
    for index in 0..fleet.devices {
        let spec = DeviceSpec::derive(index, fleet);
        if spec.external && spec.signed_in {
            users.insert(
                Some(user_domain),
                &format!("sim{index}"),
                &spec.password(password_secret),
            );
        }
    }
    let mut config = ServerConfig::loopback(path);
    config.users = users;
    // The run's own flush cadence: checks only touch the inventory.
    config.flush_interval = std::time::Duration::from_secs(5);
    let server = ucupdate_server_stub::start(config).await?;
    let internal = server
        .internal_url()
        .ok_or(EmbeddedError::Missing("internal"))?;
    let external = server.external_url();
    let target = Target {
        internal: internal.with_path(INTERNAL_HANDLER_PATH),
        external: external.map(|u| u.with_path(EXTERNAL_HANDLER_PATH)),
        addrs: vec![internal
            .host
            .parse()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))],
        label: "embedded".into(),
    };
    let ca_pem = server.ca_pem().to_owned();
    Ok(Embedded {
        server,
        target,
        ca_pem,
        _dir: dir,
    })
}

/// The fleet's shared client: trusts `ca_pem` (or the system's web roots), resolves the
/// discovery name `ucupdates-r2.<domain>` to the target, shares one TLS config.
pub fn client(
    target: &Target,
    dhcp_domain: &str,
    ca_pem: Option<&[u8]>,
    tls_resumption: bool,
    timeouts: net::Timeouts,
) -> Result<net::Client, net::NetError> {
    let mut tls = match ca_pem {
        Some(pem) => TlsOptions::with_ca_pem(pem.to_vec()),
        None => TlsOptions::default(),
    };
    tls.resumption = tls_resumption;
    let mut settings = ClientSettings {
        tls: Some(tls.build()?),
        ..ClientSettings::default()
    };
    settings.workstation = "UCSIM".into();
    settings.timeouts = timeouts;
    settings.user_agent = concat!("ucupdate-sim/", env!("CARGO_PKG_VERSION")).into();
    settings.resolve_overrides.insert(
        format!("{DISCOVERY_PREFIX}.{dhcp_domain}"),
        target.addrs.clone(),
    );
    Ok(net::Client::with_settings(settings))
}

/// Drives the in-process stub.
pub struct ControlAdmin(pub Control);

impl Admin for ControlAdmin {
    fn apply(&self, op: AdminOp) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let c = &self.0;
            let result = match op {
                AdminOp::Publish {
                    key,
                    version,
                    files,
                } => {
                    let files = files.into_iter().map(|(n, b)| (n, b.to_vec())).collect();
                    c.publish(&key, version, files).await.map(drop)
                }
                AdminOp::Approve(key) => c.approve(&key).await.map(drop),
                AdminOp::Restore(key) => c.restore(&key).await.map(drop),
                AdminOp::Reset(key) => c.reset(&key).await.map(drop),
                AdminOp::AddTestDevice(mac) => {
                    c.add_test_device(TestDevice::Mac(mac)).await.map(drop)
                }
            };
            result.map_err(|e| e.to_string())
        })
    }
}

/// Drives a remote `ucupdate-server` through its admin API (plain HTTP, loopback or a trusted
/// network), with the bearer token from the server's `DATA/admin.token`.
#[derive(Clone)]
pub struct HttpAdmin {
    pub base: HttpUrl,
    pub token: String,
}

impl std::fmt::Debug for HttpAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAdmin")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn key_path(key: &UpdateKey) -> String {
    let k = key;
    format!(
        "{}/{}/{}/{}/{}/{}",
        k.device_type, k.brand, k.model, k.revision, k.locale, k.update_type
    )
}

impl HttpAdmin {
    async fn send(&self, method: Method, path: String, body: Bytes) -> Result<(), String> {
        if self.base.https {
            return Err("the admin API is plain HTTP; give an http:// --admin URL".into());
        }
        let addr = self.base.authority();
        let stream = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        // The admin API takes octet-stream for file publishes and JSON for every other change.
        let content_type = if path.starts_with("/admin/files/") {
            "application/octet-stream"
        } else {
            "application/json"
        };
        let request = Request::builder()
            .method(method)
            .uri(&path)
            .header(hyper::header::HOST, &addr)
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "{path}: {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ))
        }
    }
}

impl Admin for HttpAdmin {
    fn apply(&self, op: AdminOp) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match op {
                AdminOp::Publish {
                    key,
                    version,
                    files,
                } => {
                    for (name, bytes) in files {
                        let path = format!("/admin/files/{}/{version}/{name}", key_path(&key));
                        self.send(Method::PUT, path, bytes).await?;
                    }
                    Ok(())
                }
                AdminOp::Approve(key) => {
                    self.send(
                        Method::POST,
                        format!("/admin/rules/{}/approve", key_path(&key)),
                        Bytes::new(),
                    )
                    .await
                }
                AdminOp::Restore(key) => {
                    self.send(
                        Method::POST,
                        format!("/admin/rules/{}/restore", key_path(&key)),
                        Bytes::new(),
                    )
                    .await
                }
                AdminOp::Reset(key) => {
                    self.send(
                        Method::POST,
                        format!("/admin/rules/{}/reset", key_path(&key)),
                        Bytes::new(),
                    )
                    .await
                }
                AdminOp::AddTestDevice(mac) => {
                    self.send(
                        Method::PUT,
                        format!("/admin/test-devices/{mac}"),
                        Bytes::new(),
                    )
                    .await
                }
            }
        })
    }
}
