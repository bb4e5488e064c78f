//! Counters for `/metrics` (Prometheus text format) and for tests (`Control::hits`): requests
//! by endpoint and status with a duration histogram per endpoint, check decisions (the offers
//! by status, or none), NTLM outcomes, bytes of update files served, connections (device
//! listeners apart from the admin one), and at render time the devices per reported version.
//!
//! Plain atomics plus one small map under a mutex: a request costs one uncontended lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds (seconds) of the request-duration buckets: from a cached check on loopback
/// (sub-millisecond) to a slow NTLM leg or an audit write on a loaded disk.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// One endpoint's request durations (Prometheus histogram: cumulative at render time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurationHistogram {
    /// Requests per bucket of [`DURATION_BUCKETS`] (not cumulative), then the overflow.
    pub buckets: [u64; DURATION_BUCKETS.len() + 1],
    pub sum_micros: u64,
    pub count: u64,
}

impl DurationHistogram {
    fn record(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = DURATION_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Requests {
    counts: BTreeMap<(&'static str, u16), u64>,
    durations: BTreeMap<&'static str, DurationHistogram>,
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<Requests>,
    decisions: Mutex<BTreeMap<&'static str, u64>>,
    ntlm_failures: AtomicU64,
    ntlm_successes: AtomicU64,
    bytes_served: AtomicU64,
    connections_total: AtomicU64,
    admin_connections_total: AtomicU64,
    connections_open: AtomicU64,
    connections_rejected: AtomicU64,
    tls_handshake_failures: AtomicU64,
    /// Device connections accepted per worker (`ServerConfig::workers`), by worker index.
    worker_connections: Mutex<Vec<u64>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// (endpoint, HTTP status) -> count. Endpoints: `check`, `log_upload`, `files`, `admin`,
    /// `metrics`, `auth` (NTLM handshake legs and refusals), `other`.
    pub requests: BTreeMap<(String, u16), u64>,
    /// What checks were answered, by decision: `none` (no update) or the offer's status
    /// (`approved`, `pending`, `restore`). Not in the audit log, which has no such column.
    pub decisions: BTreeMap<String, u64>,
    /// Endpoint -> how long its requests took to answer (to the response head: a file's body
    /// streams after).
    pub durations: BTreeMap<String, DurationHistogram>,
    pub ntlm_failures: u64,
    pub ntlm_successes: u64,
    pub bytes_served: u64,
    /// Connections to the device listeners (internal, internal TLS, external).
    pub connections_total: u64,
    /// Connections to the admin listener.
    pub admin_connections_total: u64,
    /// Connections open now, on every listener.
    pub connections_open: u64,
    pub connections_rejected: u64,
    pub tls_handshake_failures: u64,
    /// Device connections accepted by each per-core worker, by index (empty without workers:
    /// `ServerConfig::workers` 0).
    pub worker_connections: Vec<u64>,
}

impl MetricsSnapshot {
    /// Requests to `endpoint`, any status.
    pub fn hits(&self, endpoint: &str) -> u64 {
        self.requests
            .iter()
            .filter(|((e, _), _)| e == endpoint)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests to `endpoint` answered with `status`.
    pub fn count(&self, endpoint: &str, status: u16) -> u64 {
        self.requests
            .get(&(endpoint.to_owned(), status))
            .copied()
            .unwrap_or(0)
    }
}

impl Metrics {
    pub fn request(&self, endpoint: &'static str, status: u16) {
        self.request_timed(endpoint, status, None);
    }

    /// A request answered with `status` after `took` (when it was measured).
    pub fn request_timed(&self, endpoint: &'static str, status: u16, took: Option<Duration>) {
        let mut r = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        *r.counts.entry((endpoint, status)).or_default() += 1;
        if let Some(took) = took {
            r.durations.entry(endpoint).or_default().record(took);
        }
    }

    /// One check answered with `decision` (see [`MetricsSnapshot::decisions`]).
    pub fn decision(&self, decision: &'static str) {
        *self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(decision)
            .or_default() += 1;
    }

    pub fn ntlm_failure(&self) {
        self.ntlm_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ntlm_success(&self) {
        self.ntlm_successes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn bytes_served(&self, n: u64) {
        self.bytes_served.fetch_add(n, Ordering::Relaxed);
    }

    /// A connection accepted on a device listener, or (`admin`) on the admin one.
    pub fn connection_opened(&self, admin: bool) {
        let total = if admin {
            &self.admin_connections_total
        } else {
            &self.connections_total
        };
        total.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn connection_rejected(&self) {
        self.connections_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A device connection accepted by per-core worker `index`.
    pub fn worker_connection(&self, index: usize) {
        let mut counts = self
            .worker_connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if counts.len() <= index {
            counts.resize(index + 1, 0);
        }
        counts[index] += 1;
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        MetricsSnapshot {
            requests: requests
                .counts
                .iter()
                .map(|((e, s), n)| ((e.to_string(), *s), *n))
                .collect(),
            durations: requests
                .durations
                .iter()
                .map(|(e, h)| (e.to_string(), h.clone()))
                .collect(),
            decisions: self
                .decisions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(d, n)| (d.to_string(), *n))
                .collect(),
            ntlm_failures: self.ntlm_failures.load(Ordering::Relaxed),
            ntlm_successes: self.ntlm_successes.load(Ordering::Relaxed),
            bytes_served: self.bytes_served.load(Ordering::Relaxed),
            connections_total: self.connections_total.load(Ordering::Relaxed),
            admin_connections_total: self.admin_connections_total.load(Ordering::Relaxed),
            connections_open: self.connections_open.load(Ordering::Relaxed),
            connections_rejected: self.connections_rejected.load(Ordering::Relaxed),
            tls_handshake_failures: self.tls_handshake_failures.load(Ordering::Relaxed),
            worker_connections: self
                .worker_connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// The Prometheus text exposition format (version 0.0.4), without the devices per version.
    pub fn render(&self) -> String {
        self.render_with_devices(&BTreeMap::new())
    }

    /// [`Metrics::render`] plus `ucupdate_devices{update_type, version}`: how many devices of
    /// the inventory last reported running each version (`devices`, from
    /// [`devices_per_version`]).
    pub fn render_with_devices(&self, devices: &BTreeMap<(String, String), u64>) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        out.push_str(
            "# HELP ucupdate_request_duration_seconds Time to answer a request (to the response head), by endpoint.\n",
        );
        out.push_str("# TYPE ucupdate_request_duration_seconds histogram\n");
        for (endpoint, h) in &s.durations {
            let mut cumulative = 0;
            for (i, le) in DURATION_BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i];
                let _ = writeln!(
                    out,
                    "ucupdate_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "ucupdate_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}\n\
                 ucupdate_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}\n\
                 ucupdate_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {}",
                h.count,
                h.sum_micros as f64 / 1e6,
                h.count
            );
        }
        out.push_str(
            "# HELP ucupdate_devices Devices in the inventory, by the version they last reported running.\n",
        );
        out.push_str("# TYPE ucupdate_devices gauge\n");
        for ((update_type, version), n) in devices {
            let _ = writeln!(
                out,
                "ucupdate_devices{{update_type=\"{update_type}\",version=\"{version}\"}} {n}"
            );
        }
        out.push_str("# HELP ucupdate_requests_total HTTP requests by endpoint and status.\n");
        out.push_str("# TYPE ucupdate_requests_total counter\n");
        for ((endpoint, status), n) in &s.requests {
            let _ = writeln!(
                out,
                "ucupdate_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP ucupdate_check_decisions_total Checks answered, by decision: the offer's status (approved, pending, restore) or none.\n",
        );
        out.push_str("# TYPE ucupdate_check_decisions_total counter\n");
        for (decision, n) in &s.decisions {
            let _ = writeln!(
                out,
                "ucupdate_check_decisions_total{{decision=\"{decision}\"}} {n}"
            );
        }
        let scalar = |out: &mut String, name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        scalar(
            &mut out,
            "ucupdate_ntlm_failures_total",
            "counter",
            "Refused NTLM authentications.",
            s.ntlm_failures,
        );
        scalar(
            &mut out,
            "ucupdate_ntlm_successes_total",
            "counter",
            "Accepted NTLM authentications.",
            s.ntlm_successes,
        );
        scalar(
            &mut out,
            "ucupdate_bytes_served_total",
            "counter",
            "Bytes of update files sent.",
            s.bytes_served,
        );
        scalar(
            &mut out,
            "ucupdate_connections_total",
            "counter",
            "Accepted device connections (internal and external listeners; not the admin one).",
            s.connections_total,
        );
        scalar(
            &mut out,
            "ucupdate_admin_connections_total",
            "counter",
            "Accepted connections on the admin listener.",
            s.admin_connections_total,
        );
        scalar(
            &mut out,
            "ucupdate_connections_open",
            "gauge",
            "Connections open now, on every listener.",
            s.connections_open,
        );
        scalar(
            &mut out,
            "ucupdate_connections_rejected_total",
            "counter",
            "Connections answered 503 (cap).",
            s.connections_rejected,
        );
        scalar(
            &mut out,
            "ucupdate_tls_handshake_failures_total",
            "counter",
            "Failed TLS handshakes.",
            s.tls_handshake_failures,
        );
        if !s.worker_connections.is_empty() {
            out.push_str(
                "# HELP ucupdate_worker_connections_total Accepted device connections, by per-core worker.\n",
            );
            out.push_str("# TYPE ucupdate_worker_connections_total counter\n");
            for (worker, n) in s.worker_connections.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ucupdate_worker_connections_total{{worker=\"{worker}\"}} {n}"
                );
            }
        }
        out
    }
}

/// Devices per `(update type, version)` they last reported running, from the inventory.
pub fn devices_per_version(
    inventory: &[crate::model::InventoryEntry],
) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for entry in inventory {
        for (update_type, version) in &entry.versions {
            *out.entry((update_type.clone(), version.clone()))
                .or_default() += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.request("check", 200);
        m.request("check", 200);
        m.request("files", 206);
        m.ntlm_failure();
        m.bytes_served(10);
        m.decision("approved");
        let text = m.render();
        assert!(
            text.contains("ucupdate_check_decisions_total{decision=\"approved\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ucupdate_requests_total{endpoint=\"check\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("ucupdate_ntlm_failures_total 1\n"));
        assert!(text.contains("ucupdate_bytes_served_total 10\n"));
        assert_eq!(m.snapshot().hits("check"), 2);
    }
}
