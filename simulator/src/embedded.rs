//! The server a run talks to: the embedded server stub (started in-process on loopback when no
//! `--server` is given) or a remote one, plus the [`Admin`] implementations that drive each:
//! [`ControlAdmin`] in-process, [`HttpAdmin`] over a remote `ucupdate-server`'s admin API.
//!
//! The embedded server makes a throwaway catalog CA (once per process) and signs `<image stem>.cat` for
//! everything the run publishes ([`Embedded::catalog_ca_pem`] is the anchor a device needs).
//! Simulated devices do not verify catalogs yet (docs/SIMULATOR.md).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use ucupdate_agent::net::{self, ClientSettings, TlsOptions};
use ucupdate_ntlm::UserDb;
use ucupdate_protocol::wire::{DISCOVERY_PREFIX, EXTERNAL_HANDLER_PATH, INTERNAL_HANDLER_PATH};
use ucupdate_protocol::{FileKind, FileName, HttpUrl, UpdateKey};
use ucupdate_server_stub::catalog::{
    throwaway_signer, CatalogSignError, CatalogSigner, LeafOptions,
};
use ucupdate_server_stub::{Control, RunningServer, ServerConfig, TestDevice};

use crate::admin::{Admin, AdminOp, BoxFuture};
use crate::engine::Target;
use crate::fleet::{DeviceSpec, FleetSpec};

/// A running embedded server and what the devices need to reach it.
pub struct Embedded {
    pub server: RunningServer,
    pub target: Target,
    pub ca_pem: String,
    /// The throwaway CA that issued the catalog signer (PEM).
    catalog_ca_pem: String,
    /// Keeps the temporary data directory alive for the run.
    _dir: Option<tempfile::TempDir>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("temporary data directory: {0}")]
    TempDir(std::io::Error),
    #[error("starting the embedded server: {0}")]
    Start(ucupdate_server_stub::ServerError),
    #[error("the throwaway catalog signer: {0}")]
    Catalog(CatalogSignError),
    #[error("the embedded server has no {0} listener")]
    Missing(&'static str),
}

/// Starts the stub on loopback with every simulated user of `fleet` that signs in from outside,
/// in `data_dir` or a temporary directory removed after the run, speaking `dialect` (the one
/// the devices check in; `None`: the built-in one).
pub async fn start(
    fleet: &FleetSpec,
    user_domain: &str,
    password_secret: &str,
    data_dir: Option<PathBuf>,
    dialect: Option<std::sync::Arc<ucupdate_protocol::dialect::Dialect>>,
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
    let (signer, catalog_ca_pem) = run_signer()?;
    config.catalog_signer = Some(signer);
    config.dialect = dialect;
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
        catalog_ca_pem,
        _dir: dir,
    })
}

/// The throwaway catalog signer, made once per process: every run of the process signs with the
/// same certificates, so a catalog's size (and a device's modelled download time) is the same
/// in every run with the same seed (`a_seed_fixes_every_device_sequence`).
fn run_signer() -> Result<(Arc<CatalogSigner>, String), CatalogSignError> {
    static SIGNER: std::sync::OnceLock<(Arc<CatalogSigner>, String)> = std::sync::OnceLock::new();
    if let Some((signer, ca)) = SIGNER.get() {
        return Ok((signer.clone(), ca.clone()));
    }
    let t = throwaway_signer(LeafOptions::default())?;
    let (signer, ca) = SIGNER.get_or_init(|| (Arc::new(t.signer), t.ca_pem));
    Ok((signer.clone(), ca.clone()))
}

/// A catalog over `files` whose signature does not verify: signed by a second throwaway signer
/// (so the server keeps it as a vendor's catalog rather than signing its own) with the last
/// byte of the signature flipped. Devices refuse it as a bad signature (0x3).
fn tampered_catalog(files: &[(FileName, Vec<u8>)]) -> Result<(FileName, Vec<u8>), String> {
    static TAMPER: std::sync::OnceLock<CatalogSigner> = std::sync::OnceLock::new();
    let signer = match TAMPER.get() {
        Some(s) => s,
        None => {
            let t = throwaway_signer(LeafOptions::default()).map_err(|e| e.to_string())?;
            TAMPER.get_or_init(|| t.signer)
        }
    };
    let image = files
        .iter()
        .find(|(n, _)| FileKind::of(n) == FileKind::Image)
        .or(files.first())
        .ok_or("nothing to list in the catalog")?;
    let name = FileName::new(&format!("{}.cat", image.0.stem())).map_err(|e| e.to_string())?;
    let listed: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
    let mut bytes = signer
        .sign_files(&listed, crate::clock::unix_millis() / 1000)
        .map_err(|e| e.to_string())?;
    if let Some(last) = bytes.last_mut() {
        *last ^= 0x01;
    }
    Ok((name, bytes))
}

impl Embedded {
    /// The PEM of the throwaway CA whose leaf signs every catalog this server publishes: the
    /// `[trust] catalog_roots` a simulated device will be given.
    pub fn catalog_ca_pem(&self) -> &str {
        &self.catalog_ca_pem
    }
}

/// The fleet's shared client: trusts `ca_pem` (or the system's web roots), resolves the
/// discovery name `ucupdates-r2.<domain>` to the target, shares one TLS config, and opens its
/// connections through `connector` where that serves them (`crate::transport`).
pub fn client(
    target: &Target,
    dhcp_domain: &str,
    ca_pem: Option<&[u8]>,
    tls_resumption: bool,
    timeouts: net::Timeouts,
    connector: Option<net::ConnectorHook>,
) -> Result<net::Client, net::NetError> {
    let mut tls = match ca_pem {
        Some(pem) => TlsOptions::with_ca_pem(pem.to_vec()),
        None => TlsOptions::default(),
    };
    tls.resumption = tls_resumption;
    let config = tls.build()?;
    // The same anchors, with the chain check remembered per distinct chain: the fleet's
    // handshakes then cost the load generator what a server's cost it (chain_cache).
    let config = match crate::chain_cache::ChainCache::new(tls.roots()?) {
        Ok(cache) => cache.install(&config),
        Err(e) => {
            tracing::warn!(error = %e, "TLS chain cache unavailable; verifying every chain");
            config
        }
    };
    let mut settings = ClientSettings {
        tls: Some(config),
        ..ClientSettings::default()
    };
    settings.workstation = "UCSIM".into();
    settings.connector = connector;
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
                    bad_signature,
                } => {
                    // The engine's `.cat` is placeholder bytes (for remote servers); leaving it
                    // out lets the server sign a real one over the other files.
                    let mut files: Vec<_> = files
                        .into_iter()
                        .filter(|(n, _)| FileKind::of(n) != FileKind::Catalog)
                        .map(|(n, b)| (n, b.to_vec()))
                        .collect();
                    if bad_signature {
                        files.push(tampered_catalog(&files)?);
                    }
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

pub(crate) fn key_path(key: &UpdateKey) -> String {
    let k = key;
    format!(
        "{}/{}/{}/{}/{}/{}",
        k.device_type, k.brand, k.model, k.revision, k.locale, k.update_type
    )
}

impl HttpAdmin {
    async fn send(&self, method: Method, path: String, body: Bytes) -> Result<(), String> {
        let (status, reply) = self.call(method, &path, body).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "{path}: {status}: {}",
                String::from_utf8_lossy(&reply).trim()
            ))
        }
    }

    /// One admin request; the status and body, whatever the status.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(hyper::StatusCode, Bytes), String> {
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
        let content_type = if method == Method::PUT && path.starts_with("/admin/files/") {
            "application/octet-stream"
        } else {
            "application/json"
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
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
        Ok((status, body))
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
                    bad_signature,
                } => {
                    if bad_signature {
                        return Err("publish with bad_signature needs the embedded server".into());
                    }
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

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<ucupdate_server_stub::ServerError> for EmbeddedError {
    fn from(error: ucupdate_server_stub::ServerError) -> Self {
        EmbeddedError::Start(error)
    }
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<CatalogSignError> for EmbeddedError {
    fn from(error: CatalogSignError) -> Self {
        EmbeddedError::Catalog(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Mix;
    use ucupdate_agent::trust::{verify_catalog, CatalogClock, CatalogPolicy, TrustAnchors};
    use ucupdate_protocol::FileName;

    /// What the run publishes through [`ControlAdmin`] (image plus the engine's placeholder
    /// `.cat`) is stored with a real catalog: it verifies against the embedded CA with the
    /// agent's verifier and lists the image's SHA-256.
    #[tokio::test]
    async fn the_embedded_server_signs_what_the_run_publishes() {
        let fleet = FleetSpec {
            devices: 1,
            mix: Mix::default_fleet(),
            external_share: 0.0,
            signed_in_share: 0.0,
            test_devices: 0,
            seed: 1,
        };
        let dir = tempfile::tempdir().unwrap();
        let e = start(&fleet, "SIM", "secret", Some(dir.path().to_owned()), None)
            .await
            .unwrap();
        let key: UpdateKey = "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap();
        let version = "1.0.0.9".parse().unwrap();
        let image = Bytes::from_static(b"simulated image");
        let files = vec![
            (FileName::new("CPE.nbt").unwrap(), image.clone()),
            (
                FileName::new("CPE.cat").unwrap(),
                Bytes::from_static(b"fake"),
            ),
        ];
        let admin = ControlAdmin(e.server.control());
        admin
            .apply(AdminOp::Publish {
                key: key.clone(),
                version,
                files,
                bad_signature: false,
            })
            .await
            .unwrap();
        let stored = ucupdate_server_stub::store::version_dir(dir.path(), &key, version);
        let cat = std::fs::read(stored.join("CPE.cat")).unwrap();
        let anchors = TrustAnchors::from_pem(e.catalog_ca_pem().as_bytes()).unwrap();
        let verified = verify_catalog(
            &cat,
            &anchors,
            CatalogClock::Untrusted,
            CatalogPolicy::default(),
        )
        .unwrap();
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &image)
            .as_ref()
            .try_into()
            .unwrap();
        verified.verify_file("CPE.nbt", digest).unwrap();
    }

    /// A measurement, not a check of speed (`cargo test --release -p ucupdate-simulator --lib
    /// -- --ignored --nocapture catalog_verification_cost`): what one simulated device's catalog
    /// verification costs, the agent's own verifier on a catalog signed as the embedded server
    /// signs (ECDSA P-256 CA and leaf). docs/BENCHMARKS.md §1 sets it against a check.
    #[test]
    #[ignore = "a measurement for docs/BENCHMARKS.md; run by hand"]
    fn catalog_verification_cost() {
        let signer = throwaway_signer(LeafOptions::default()).unwrap();
        let image = vec![7u8; 65536];
        let cat = signer
            .signer
            .sign_files(&[("CPE.nbt", image.as_slice())], 1_700_000_000)
            .unwrap();
        let anchors = TrustAnchors::from_pem(signer.ca_pem.as_bytes()).unwrap();
        let n = 2000u32;
        let started = crate::clock::now();
        for _ in 0..n {
            let verified = verify_catalog(
                &cat,
                &anchors,
                CatalogClock::Untrusted,
                CatalogPolicy::default(),
            )
            .unwrap();
            assert!(verified.listed_digest("CPE.nbt").is_ok());
        }
        let each = crate::clock::now().duration_since(started) / n;
        println!(
            "catalog verification: {} us each ({} bytes, {n} runs)",
            each.as_micros(),
            cat.len()
        );
    }
}
