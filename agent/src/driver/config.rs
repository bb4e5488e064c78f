//! [`AgentConfig`]: the agent's TOML file (`agent.example.toml` documents every field) and how
//! it becomes a [`DriverConfig`] plus a [`HookDevice`]. Lives in the library so the example
//! file is tested and the simulator or a firmware's own binary can reuse it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{DnsSource, DriverConfig};
use crate::device::{DeviceConfig, DeviceError, HookDevice, HooksConfig};
use crate::dns::DnsSettings;
use crate::machine::config::duration_text;
use crate::machine::MachineConfig;
use crate::net::{Client, ClientSettings, NetError, TlsOptions};
use crate::perform::CatalogCheck;
use crate::trust::offer::{DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_OFFER_BYTES};
use crate::trust::{CatalogPolicy, CatalogTrust, OfferPolicy, Origin, TrustAnchors};
use ucupdate_protocol::{FirmwareVersion, HttpUrl};

/// Where the agent keeps its state unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ucupdate-agent";

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentConfigError {
    #[error("{path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config: {0}")]
    Toml(toml::de::Error),
    /// The file named by `--config` is not valid TOML or has unknown or mistyped keys.
    #[error("{}: {error}", path.display())]
    TomlFile {
        path: PathBuf,
        error: toml::de::Error,
    },
    #[error("[machine]: {0}")]
    Machine(crate::machine::ConfigError),
    #[error("[tls]: {0}")]
    Tls(NetError),
    #[error("[device]/[hooks]: {0}")]
    Device(DeviceError),
    #[error("[trust]: {0}")]
    Trust(String),
    #[error("[protocol] dialect {path}: {error}")]
    Dialect {
        path: PathBuf,
        error: ucupdate_protocol::dialect::DialectError,
    },
}

/// `[protocol]`: the wire dialect of the checks (docs/PROTOCOL.md §11).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolConfig {
    /// A dialect file (`ucupdate-sim dialect learn`); absent: the built-in `ucupdate`.
    pub dialect: Option<PathBuf>,
}

/// `[trust]`: the download rules of docs/AGENT.md ("What the agent refuses").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// Origins (`scheme://host[:port]`) files may come from besides the check endpoint's.
    pub allowed_file_origins: Vec<String>,
    /// Largest file an offer may declare; also the cap on a file that declares no size.
    pub max_file_bytes: u64,
    /// Largest total of an offer's declared sizes.
    pub max_offer_bytes: u64,
    /// Lab only: allow an `http://` external URL, so NTLM goes in clear. Warned at start.
    pub allow_plain_http_credentials: bool,
    /// PEM bundle of the roots a catalog's signer must chain to. Without it the agent says so
    /// at start and installs nothing.
    pub catalog_roots: Option<PathBuf>,
    /// Accept images an older vendor catalog lists by SHA-1 only.
    pub allow_sha1_catalogs: bool,
    /// The device's clock is trustworthy (NTP or a set RTC): a catalog's signingTime may then
    /// not lie in the future, and one without signingTime is checked at the current time.
    pub trusted_clock: bool,
    /// The anti-rollback floor: no offer below this version is ever installed.
    pub min_version: Option<FirmwareVersion>,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            allowed_file_origins: Vec::new(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_offer_bytes: DEFAULT_MAX_OFFER_BYTES,
            allow_plain_http_credentials: false,
            catalog_roots: None,
            allow_sha1_catalogs: false,
            trusted_clock: false,
            min_version: None,
        }
    }
}

impl TrustConfig {
    /// The machine's [`OfferPolicy`]: every allowed origin must parse and carry no path.
    pub fn offer_policy(&self) -> Result<OfferPolicy, AgentConfigError> {
        let mut allowed = Vec::new();
        for text in &self.allowed_file_origins {
            let url: HttpUrl = text.parse().map_err(|e| {
                AgentConfigError::Trust(format!("allowed_file_origins {text:?}: {e}"))
            })?;
            if url.path != "/" {
                return Err(AgentConfigError::Trust(format!(
                    "allowed_file_origins {text:?}: an origin has no path"
                )));
            }
            allowed.push(Origin::of(&url));
        }
        if self.max_file_bytes == 0 || self.max_offer_bytes == 0 {
            return Err(AgentConfigError::Trust(
                "max_file_bytes and max_offer_bytes must be greater than zero".into(),
            ));
        }
        Ok(OfferPolicy {
            allowed_file_origins: allowed,
            max_file_bytes: self.max_file_bytes,
            max_offer_bytes: self.max_offer_bytes,
            require_catalog: true,
            min_version: self.min_version,
        })
    }

    /// How the agent verifies catalogs: against `catalog_roots`, or (none configured) not at
    /// all, which refuses every update.
    pub fn catalog_check(&self) -> Result<CatalogCheck, AgentConfigError> {
        let Some(path) = &self.catalog_roots else {
            return Ok(CatalogCheck::NoAnchors);
        };
        let pem = std::fs::read(path).map_err(|source| AgentConfigError::Read {
            path: path.clone(),
            error: source,
        })?;
        let anchors = TrustAnchors::from_pem(&pem).map_err(|e| {
            AgentConfigError::Trust(format!("catalog_roots {}: {e}", path.display()))
        })?;
        Ok(CatalogCheck::Verify(Arc::new(CatalogTrust {
            anchors,
            policy: CatalogPolicy {
                allow_sha1_catalogs: self.allow_sha1_catalogs,
            },
            trusted_clock: self.trusted_clock,
            memo: None,
        })))
    }
}

/// `[tls]`: verification is always on; this only says whom to trust.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM bundle of the CAs to trust (the corporate CA that signed the pool's certificate).
    pub ca_bundle: Option<PathBuf>,
    /// Also trust the public web roots. Default: only when no `ca_bundle` is given.
    pub webpki_roots: Option<bool>,
    /// TLS session resumption (fewer full handshakes on a slow link).
    pub resumption: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_bundle: None,
            webpki_roots: None,
            resumption: true,
        }
    }
}

/// `[dns]`: where discovery asks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// One nameserver `IP:PORT`; otherwise the `nameserver` lines of `resolv_conf`.
    pub nameserver: Option<SocketAddr>,
    pub resolv_conf: PathBuf,
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    pub retries: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameserver: None,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            timeout: Duration::from_secs(5),
            retries: 1,
        }
    }
}

/// `[agent]`: the daemon itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Exit after the reboot hook (a supervisor restarts the agent).
    pub exit_on_reboot: bool,
    /// Serve `state_dir/control.sock` for the CLI.
    pub control_socket: bool,
    /// How often activity/call files are read while an update waits for idle.
    #[serde(with = "duration_text")]
    pub activity_poll: Duration,
    /// Fixed jitter seed (tests); default: from the MAC and the boot time.
    pub seed: Option<u64>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            exit_on_reboot: false,
            control_socket: true,
            activity_poll: Duration::from_secs(5),
            seed: None,
        }
    }
}

/// The whole agent file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    pub device: DeviceConfig,
    #[serde(default)]
    pub machine: MachineConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub hooks: HooksConfig,
    #[serde(default)]
    pub agent: DaemonConfig,
    #[serde(default)]
    pub trust: TrustConfig,
    #[serde(default)]
    pub protocol: ProtocolConfig,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

impl AgentConfig {
    pub fn from_toml(text: &str) -> Result<AgentConfig, AgentConfigError> {
        Ok(toml::from_str(text)?)
    }

    pub fn load(path: &Path) -> Result<AgentConfig, AgentConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentConfigError::Read {
            path: path.to_owned(),
            error: source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            AgentConfigError::Toml(error) => AgentConfigError::TomlFile {
                path: path.to_owned(),
                error,
            },
            other => other,
        })
    }

    /// The HTTP(S) client: TLS verification on, trusting `[tls]`.
    pub fn client(&self) -> Result<Client, AgentConfigError> {
        let mut tls = match &self.tls.ca_bundle {
            Some(path) => TlsOptions::with_ca_file(path)?,
            None => TlsOptions::default(),
        };
        if let Some(web) = self.tls.webpki_roots {
            tls.webpki_roots = web;
        }
        tls.resumption = self.tls.resumption;
        Ok(Client::with_settings(ClientSettings {
            tls: Some(tls.build()?),
            // A file whose offer declares no size is bounded like one that declares too much.
            max_download_bytes: self.trust.max_file_bytes,
            ..ClientSettings::default()
        }))
    }

    /// The device: identity plus hooks (reads the password file, if any).
    pub fn device(&self) -> Result<HookDevice, AgentConfigError> {
        Ok(HookDevice::new(&self.device, self.hooks.clone())?.with_state_dir(&self.state_dir))
    }

    /// Everything the driver needs (validates `[machine]`).
    pub fn driver_config(&self) -> Result<DriverConfig, AgentConfigError> {
        self.machine.validate()?;
        let plain = self.plain_external_url();
        if plain && !self.trust.allow_plain_http_credentials {
            return Err(AgentConfigError::Trust(
                "external_server_url is http://: the user's NTLM credentials would go in clear; \
                 use https (or, in a lab only, allow_plain_http_credentials = true)"
                    .into(),
            ));
        }
        if self.trust.allow_plain_http_credentials {
            tracing::warn!(
                "[trust] allow_plain_http_credentials = true: NTLM credentials may go over plain \
                 HTTP, where anyone on the path can recover the password; never on a real device"
            );
        }
        let mut machine = self.machine.clone();
        machine.offer_policy = self.trust.offer_policy()?;
        let mut config = DriverConfig::new(&self.state_dir, machine, self.client()?);
        config.allow_plain_http_credentials = self.trust.allow_plain_http_credentials;
        config.catalog_check = self.trust.catalog_check()?;
        config.dns = match self.dns.nameserver {
            Some(addr) => DnsSource::Nameserver(addr),
            None => DnsSource::ResolvConf(self.dns.resolv_conf.clone()),
        };
        config.dns_settings = DnsSettings {
            timeout: self.dns.timeout,
            retries: self.dns.retries,
        };
        config.resolv_conf = self.dns.resolv_conf.clone();
        config.exit_on_reboot = self.agent.exit_on_reboot;
        config.control_socket = self.agent.control_socket;
        config.activity_poll = self.agent.activity_poll;
        config.seed = self.agent.seed;
        if let Some(path) = &self.protocol.dialect {
            let text = std::fs::read_to_string(path).map_err(|error| AgentConfigError::Read {
                path: path.clone(),
                error,
            })?;
            let dialect =
                ucupdate_protocol::dialect::Dialect::from_toml(&text).map_err(|error| {
                    AgentConfigError::Dialect {
                        path: path.clone(),
                        error,
                    }
                })?;
            config.dialect = Some(Arc::new(dialect));
        }
        Ok(config)
    }

    /// Whether the configured external URL is plain HTTP (the only URL credentials go to).
    fn plain_external_url(&self) -> bool {
        self.machine
            .external_server_url
            .as_deref()
            .and_then(|u| HttpUrl::handler(u, "/").ok())
            .is_some_and(|u| !u.https)
    }
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<toml::de::Error> for AgentConfigError {
    fn from(error: toml::de::Error) -> Self {
        AgentConfigError::Toml(error)
    }
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<crate::machine::ConfigError> for AgentConfigError {
    fn from(error: crate::machine::ConfigError) -> Self {
        AgentConfigError::Machine(error)
    }
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<NetError> for AgentConfigError {
    fn from(error: NetError) -> Self {
        AgentConfigError::Tls(error)
    }
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<DeviceError> for AgentConfigError {
    fn from(error: DeviceError) -> Self {
        AgentConfigError::Device(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "state_dir = \"/tmp/ucupdate-test\"\n[device]\nbrand = \"Polycom\"\n\
                        model = \"CX700\"\nmac = \"00:04:f2:00:01:76\"\ninitial_version = \"1.0.0.0\"\n";

    fn config(extra: &str) -> Result<DriverConfig, AgentConfigError> {
        AgentConfig::from_toml(&format!("{BASE}{extra}"))?.driver_config()
    }

    #[test]
    fn protocol_dialect_is_read_and_checked() {
        assert!(config("").unwrap().dialect.is_none(), "built-in by default");
        let foreign = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/peers/foreign.toml");
        let c = config(&format!("[protocol]\ndialect = \"{foreign}\"\n")).unwrap();
        assert_eq!(c.dialect.unwrap().name, "foreign-soap");
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "format = 2\n").unwrap();
        let err = config(&format!("[protocol]\ndialect = \"{}\"\n", bad.display()))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[protocol] dialect") && err.contains("format 2"),
            "{err}"
        );
    }

    #[test]
    fn an_http_external_url_is_a_configuration_error_unless_the_lab_override_says_so() {
        let http = "[machine]\nexternal_server_url = \"http://ext.contoso.com/RequestHandlerExt/ucdevice.upx\"\n";
        let err = config(http).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("in clear") && err.contains("https"), "{err}");
        let lab = config(&format!(
            "{http}[trust]\nallow_plain_http_credentials = true\n"
        ))
        .unwrap();
        assert!(lab.allow_plain_http_credentials);
        let https = "[machine]\nexternal_server_url = \"https://ext.contoso.com/RequestHandlerExt/ucdevice.upx\"\n";
        assert!(!config(https).unwrap().allow_plain_http_credentials);
    }

    #[test]
    fn trust_limits_and_origins_reach_the_machine_and_the_client() {
        let c = config(
            "[trust]\nallowed_file_origins = [\"http://Files.contoso.com:8080\"]\n\
             max_file_bytes = 1000\nmax_offer_bytes = 2000\n",
        )
        .unwrap();
        let p = &c.machine.offer_policy;
        assert_eq!((p.max_file_bytes, p.max_offer_bytes), (1000, 2000));
        assert_eq!(
            p.allowed_file_origins[0].to_string(),
            "http://files.contoso.com:8080"
        );
        assert_eq!(c.client.settings().max_download_bytes, 1000);
        let defaults = config("").unwrap();
        assert_eq!(defaults.machine.offer_policy, OfferPolicy::default());
        for bad in [
            "allowed_file_origins = [\"ftp://x\"]",
            "allowed_file_origins = [\"http://x/files\"]",
            "max_file_bytes = 0",
            "max_offset_bytes = 1",
        ] {
            assert!(config(&format!("[trust]\n{bad}\n")).is_err(), "{bad}");
        }
    }
}
