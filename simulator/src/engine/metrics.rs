//! Metrics as events to one aggregator: the engine's parts report what happened as a
//! [`Metric`], and [`Metrics::record`] is the only code that counts, so a report's numbers have
//! one source each.

use std::collections::BTreeMap;
use std::time::Duration;

use ucupdate_agent::machine::Phase;

use crate::report::Hist;
use crate::thresholds::{Histogram, Measured};

/// The phase slot of a device that is powered off (rebooting, or not on yet).
pub(super) const OFF: usize = Phase::ALL.len();

/// The rollout curve's resolution: this many buckets over the run.
const CURVE_BUCKETS: u64 = 240;

/// The name of a phase slot: the machine's phase, or `off`.
pub(super) fn phase_label(slot: usize) -> &'static str {
    Phase::ALL.get(slot).map_or("off", |p| p.as_str())
}

/// Something worth counting.
pub(super) enum Metric {
    /// A request finished (in wall time); its answer reaches the device at virtual `t`.
    Request {
        t: u64,
        endpoint: &'static str,
        outcome: String,
        error: Option<&'static str>,
        latency: Duration,
        /// From when the request was meant to leave (virtual time paced to the wall clock).
        latency_intended: Duration,
        tls_handshake: Option<Duration>,
        bytes_received: u64,
    },
    /// An item was served `behind` its due wall instant (paced runs).
    Lag { behind: Duration },
    /// A check left a device at virtual `t`.
    CheckIssued { t: u64 },
    /// A request was sent through a fault proxy.
    Fault { kind: &'static str },
    /// The machine refused an event (an answer it no longer waited for).
    MachineRefused,
    /// A device moved between phase slots; `spent` ms in `from`, if it had been on.
    Phase {
        from: usize,
        to: usize,
        spent: Option<u64>,
    },
    /// Time a device spent in its last phase, at the end of the run.
    PhaseTime { phase: usize, ms: u64 },
    /// A device's version changed at virtual `t`: on (target, initial) before (`None`: not
    /// counted yet) and now.
    Version {
        t: u64,
        was: Option<(bool, bool)>,
        now: (bool, bool),
    },
}

/// The aggregate.
pub(super) struct Metrics {
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    pub errors: BTreeMap<String, u64>,
    /// The first message of each error class (a bare `tls=824` does not say why).
    pub first_errors: BTreeMap<String, String>,
    pub latency: BTreeMap<String, Hist>,
    pub latency_intended: BTreeMap<String, Hist>,
    pub tls: Hist,
    /// Wall µs each item was served after it was due (paced runs only).
    pub lag: Hist,
    pub bytes: u64,
    pub phase_ms: [u64; OFF + 1],
    pub phase_count: [u64; OFF + 1],
    pub arrivals: Vec<u64>,
    pub curve_bucket_ms: u64,
    pub curve_target: Vec<i64>,
    pub curve_initial: Vec<i64>,
    /// Requests answered per curve bucket (by the virtual instant of the answer).
    pub requests_by_bucket: Vec<u64>,
    /// Checks' service time per curve bucket, µs: latency over virtual time, mergeable.
    pub check_latency_by_bucket: Vec<Hist>,
    pub total_requests: u64,
    pub total_errors: u64,
    pub faults: BTreeMap<String, u64>,
    /// Checks that came back, and of those the ones the server answered (an offer, "no
    /// update", or a 401 denial): the pre-flight's evidence that the server takes checks.
    pub checks_done: u64,
    pub checks_answered: u64,
}

impl Metrics {
    /// Keeps `message()` as the first reason of `class` unless one is kept already (so the
    /// message is formatted once per class, not per failed request).
    pub(super) fn first_error(&mut self, class: &str, message: impl FnOnce() -> String) {
        if !self.first_errors.contains_key(class) {
            self.first_errors.insert(class.to_owned(), message());
        }
    }

    /// p99 so far of the checks' service time, µs (the slower endpoint's).
    pub fn check_p99_us(&self) -> u64 {
        ["check-internal", "check-external"]
            .iter()
            .filter_map(|e| self.latency.get(*e))
            .filter(|h| !h.0.is_empty())
            .map(|h| h.0.value_at_quantile(0.99))
            .max()
            .unwrap_or(0)
    }

    /// For a run of `duration_ms` with `devices` devices, all off.
    pub fn new(duration_ms: u64, devices: u64) -> Metrics {
        let curve_bucket_ms = (duration_ms / CURVE_BUCKETS).max(1);
        let buckets = (duration_ms / curve_bucket_ms + 1) as usize;
        let mut phase_count = [0; OFF + 1];
        phase_count[OFF] = devices;
        Metrics {
            requests: BTreeMap::new(),
            errors: BTreeMap::new(),
            first_errors: BTreeMap::new(),
            latency: BTreeMap::new(),
            latency_intended: BTreeMap::new(),
            tls: Hist::new(),
            lag: Hist::new(),
            bytes: 0,
            phase_ms: [0; OFF + 1],
            phase_count,
            arrivals: vec![0; (duration_ms / 60_000 + 1) as usize],
            curve_bucket_ms,
            curve_target: vec![0; buckets],
            curve_initial: vec![0; buckets],
            requests_by_bucket: vec![0; buckets],
            check_latency_by_bucket: vec![Hist::new(); buckets],
            total_requests: 0,
            total_errors: 0,
            faults: BTreeMap::new(),
            checks_done: 0,
            checks_answered: 0,
        }
    }

    pub fn record(&mut self, metric: Metric) {
        let us = |d: Duration| d.as_micros().min(u128::from(u64::MAX)) as u64;
        match metric {
            Metric::Request {
                t,
                endpoint,
                outcome,
                error,
                latency,
                latency_intended,
                tls_handshake,
                bytes_received,
            } => {
                self.total_requests += 1;
                let bucket =
                    ((t / self.curve_bucket_ms) as usize).min(self.requests_by_bucket.len() - 1);
                self.requests_by_bucket[bucket] += 1;
                if endpoint.starts_with("check") {
                    self.check_latency_by_bucket[bucket].record(us(latency));
                    self.checks_done += 1;
                    if matches!(error, None | Some("unauthorized")) {
                        self.checks_answered += 1;
                    }
                }
                *self
                    .requests
                    .entry(endpoint.into())
                    .or_default()
                    .entry(outcome)
                    .or_default() += 1;
                if let Some(class) = error {
                    self.total_errors += 1;
                    *self.errors.entry(class.into()).or_default() += 1;
                }
                self.latency
                    .entry(endpoint.into())
                    .or_default()
                    .record(us(latency));
                self.latency_intended
                    .entry(endpoint.into())
                    .or_default()
                    .record(us(latency_intended));
                if let Some(tls) = tls_handshake {
                    self.tls.record(us(tls));
                }
                if endpoint == "download" {
                    self.bytes += bytes_received;
                }
            }
            Metric::Lag { behind } => self.lag.record(us(behind)),
            Metric::CheckIssued { t } => {
                if let Some(n) = self.arrivals.get_mut((t / 60_000) as usize) {
                    *n += 1;
                }
            }
            Metric::Fault { kind } => *self.faults.entry(kind.to_owned()).or_default() += 1,
            Metric::MachineRefused => {
                *self
                    .errors
                    .entry("machine-unexpected-event".into())
                    .or_default() += 1;
            }
            Metric::Phase { from, to, spent } => {
                if let Some(ms) = spent {
                    self.phase_ms[from] += ms;
                }
                self.phase_count[from] -= 1;
                self.phase_count[to] += 1;
            }
            Metric::PhaseTime { phase, ms } => self.phase_ms[phase] += ms,
            Metric::Version { t, was, now } => {
                let bucket = ((t / self.curve_bucket_ms) as usize).min(self.curve_target.len() - 1);
                if let Some((target, initial)) = was {
                    self.curve_target[bucket] -= i64::from(target);
                    self.curve_initial[bucket] -= i64::from(initial);
                }
                self.curve_target[bucket] += i64::from(now.0);
                self.curve_initial[bucket] += i64::from(now.1);
            }
        }
    }
}

/// Thresholds read the metrics so far for `--abort-on-fail`; verdicts come only at the end.
impl Measured for Metrics {
    fn histogram(&self, which: Histogram<'_>) -> Option<&Hist> {
        match which {
            Histogram::Service(e) => self.latency.get(e),
            Histogram::Intended(e) => self.latency_intended.get(e),
            Histogram::Tls => Some(&self.tls),
            Histogram::Lag => Some(&self.lag),
            Histogram::Convergence => None,
        }
    }

    fn requests(&self) -> u64 {
        self.total_requests
    }

    fn request_errors(&self) -> u64 {
        self.total_errors
    }

    fn verdicts(&self) -> Option<(u64, u64)> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_change_moves_the_curve_and_phases_move_counts() {
        let mut m = Metrics::new(240_000, 3);
        m.record(Metric::Version {
            t: 5_000,
            was: None,
            now: (false, true),
        });
        m.record(Metric::Version {
            t: 5_000,
            was: Some((false, true)),
            now: (true, false),
        });
        assert_eq!((m.curve_target[5], m.curve_initial[5]), (1, 0));
        m.record(Metric::Phase {
            from: OFF,
            to: 0,
            spent: None,
        });
        assert_eq!((m.phase_count[OFF], m.phase_count[0]), (2, 1));
        assert_eq!(phase_label(OFF), "off");
        assert_eq!(phase_label(Phase::Idle.index()), "idle");
    }
}
