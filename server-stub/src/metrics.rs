//! Counters for `/metrics` (Prometheus text format) and for tests (`Control::hits`): requests
//! by endpoint and status, check decisions (offer status or none), NTLM outcomes, bytes of update files served, connections.
//!
//! Plain atomics plus one small map under a mutex: a check costs one uncontended lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    decisions: Mutex<BTreeMap<&'static str, u64>>,
    ntlm_failures: AtomicU64,
    ntlm_successes: AtomicU64,
    bytes_served: AtomicU64,
    connections_total: AtomicU64,
    connections_open: AtomicU64,
    connections_rejected: AtomicU64,
    tls_handshake_failures: AtomicU64,
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
    pub ntlm_failures: u64,
    pub ntlm_successes: u64,
    pub bytes_served: u64,
    pub connections_total: u64,
    pub connections_open: u64,
    pub connections_rejected: u64,
    pub tls_handshake_failures: u64,
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
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((endpoint, status))
            .or_default() += 1;
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

    pub fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
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

    pub fn snapshot(&self) -> MetricsSnapshot {
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        MetricsSnapshot {
            requests: requests
                .iter()
                .map(|((e, s), n)| ((e.to_string(), *s), *n))
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
            connections_open: self.connections_open.load(Ordering::Relaxed),
            connections_rejected: self.connections_rejected.load(Ordering::Relaxed),
            tls_handshake_failures: self.tls_handshake_failures.load(Ordering::Relaxed),
        }
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        out.push_str("# HELP ucupdate_requests_total HTTP requests by endpoint and status.\n");
        out.push_str("# TYPE ucupdate_requests_total counter\n");
        for ((endpoint, status), n) in &s.requests {
            let _ = writeln!(
                out,
                "ucupdate_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP ucupdate_check_decisions_total Checks answered, by decision.\n");
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
            "Accepted device connections.",
            s.connections_total,
        );
        scalar(
            &mut out,
            "ucupdate_connections_open",
            "gauge",
            "Device connections open now.",
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
        out
    }
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
