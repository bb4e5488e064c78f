//! [`Client`]: the shared, cheap-to-clone handle every request goes through. It holds only what
//! is the same for a whole fleet (the `Arc`'d TLS config, timeouts, name overrides); a per-device
//! link shape ([`RequestShaping`]) is a `Copy` value stamped on a clone. No pool: each call opens
//! its own pinned connection, so an NTLM handshake can never be split across connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

/// Per-request time limits. Each is measured with tokio time, so tests drive them with paused
/// time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Name lookup plus TCP connect (all addresses together).
    pub connect: Duration,
    /// The TLS handshake.
    pub tls_handshake: Duration,
    /// From a request's first byte out to the end of the response head.
    pub response_head: Duration,
    /// The longest gap between two pieces of a response body.
    pub body_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            tls_handshake: Duration::from_secs(10),
            response_head: Duration::from_secs(30),
            body_idle: Duration::from_secs(30),
        }
    }
}

/// A virtual link for one device (the simulator's knob): a download/upload rate cap and a
/// latency added once before connecting and once before each request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestShaping {
    pub bytes_per_sec: Option<NonZeroU64>,
    pub added_latency: Duration,
}

impl RequestShaping {
    pub const NONE: RequestShaping = RequestShaping {
        bytes_per_sec: None,
        added_latency: Duration::ZERO,
    };
}

/// What a [`Client`] is built from.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Needed for `https` URLs; `None` makes them fail with a config error.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub timeouts: Timeouts,
    pub user_agent: String,
    /// The workstation name NTLM messages carry.
    pub workstation: String,
    /// Host names answered without asking the system resolver (discovery results, the
    /// simulator's server). Certificates are still checked against the URL's host name.
    pub resolve_overrides: HashMap<String, Vec<IpAddr>>,
    /// Largest download accepted when the offer gives no size.
    pub max_download_bytes: u64,
    /// (feature `connector`) Opens connections to the addresses it serves in memory instead of
    /// over TCP: the simulator's embedded server.
    #[cfg(feature = "connector")]
    pub connector: Option<super::connector::ConnectorHook>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            tls: None,
            timeouts: Timeouts::default(),
            user_agent: concat!("ucupdate-agent/", env!("CARGO_PKG_VERSION")).to_owned(),
            workstation: "UCDEVICE".to_owned(),
            resolve_overrides: HashMap::new(),
            max_download_bytes: 4 << 30,
            #[cfg(feature = "connector")]
            connector: None,
        }
    }
}

/// The HTTP(S) client handle. Clone freely: a clone is an `Arc` bump plus a few words.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) settings: Arc<ClientSettings>,
    pub(crate) shaping: RequestShaping,
}

impl Client {
    /// A client that speaks `https` with `tls` and default settings otherwise.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Client {
        Client::with_settings(ClientSettings {
            tls: Some(tls),
            ..ClientSettings::default()
        })
    }

    pub fn with_settings(settings: ClientSettings) -> Client {
        Client {
            settings: Arc::new(settings),
            shaping: RequestShaping::NONE,
        }
    }

    /// The same client on a shaped link (shares everything else).
    pub fn shaped(&self, shaping: RequestShaping) -> Client {
        Client {
            settings: Arc::clone(&self.settings),
            shaping,
        }
    }

    /// A client that also resolves `host` to `addrs` (what DNS discovery found).
    pub fn with_override(&self, host: &str, addrs: Vec<IpAddr>) -> Client {
        let mut settings = (*self.settings).clone();
        settings
            .resolve_overrides
            .insert(host.to_ascii_lowercase(), addrs);
        Client {
            settings: Arc::new(settings),
            shaping: self.shaping,
        }
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    pub fn shaping(&self) -> RequestShaping {
        self.shaping
    }
}

/// Timing and volume of one call (a check may be three HTTP exchanges; a download one or two).
/// Durations are read through [`crate::clock`], so they are exact under paused time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// TCP connections opened.
    pub connections: u32,
    /// HTTP requests sent.
    pub requests: u32,
    /// Time spent in name lookup plus TCP connect, summed over connections.
    pub connect_time: Duration,
    /// Time spent in TLS handshakes, summed over connections (`None` for plain HTTP).
    pub tls_handshake: Option<Duration>,
    /// Whether the last TLS handshake resumed a session.
    pub tls_resumed: bool,
    /// From the start of the call to the last response head.
    pub time_to_head: Option<Duration>,
    /// Status of the last response.
    pub status: Option<u16>,
    /// Request body bytes sent.
    pub bytes_sent: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// The whole call.
    pub total: Duration,
}
