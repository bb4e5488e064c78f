//! The run report: everything a run measured, in a form that merges exactly across shards.
//! Counts add, histograms merge, per-minute and per-bucket arrays add element-wise, verdict
//! lists concatenate. Renderers: [`text`] (stdout summary), JSON (serde; the schema is
//! `docs/report.schema.json`, described in `docs/REPORT.md`), [`html`] (a self-contained page
//! with SVG plots), [`junit`] (verdicts and thresholds as test cases).

pub mod clock;
pub mod hist;
pub mod html;
pub mod junit;
pub mod outputs;
pub mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use hist::{Hist, Percentiles, Summary};

use crate::thresholds::{Threshold, ThresholdResult};

/// The endpoints a report counts requests of.
pub const ENDPOINTS: [&str; 4] = ["check-internal", "check-external", "download", "log-upload"];

use crate::fleet::Shard;

/// The report format this build writes and merges.
pub const REPORT_FORMAT: u32 = 2;

/// Failed devices listed one by one (the rest are counted by reason).
pub const MAX_LISTED_FAILURES: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    pub scenario: String,
    pub description: String,
    pub seed: u64,
    /// Devices in the whole fleet (all shards).
    pub fleet_devices: u64,
    /// Devices this report covers.
    pub devices: u64,
    /// The shards merged into this report, as `I/N`.
    pub shards: Vec<String>,
    pub time_scale: String,
    pub server: String,
    /// Unix ms at virtual time zero: shards of one run share it (`--start-at`).
    pub start_unix_ms: u64,
    /// With `--start-at` (the common clock): each shard's start against virtual time zero.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clock: Vec<clock::ShardClock>,
    /// Shards a `merge --allow-partial` went without, as `I/N`: a partial report never passes.
    #[serde(default)]
    pub missing_shards: Vec<String>,
    pub virtual_duration_ms: u64,
    /// Wall time of the run (the longest shard's, after a merge).
    pub wall_ms: u64,
    /// Requests by endpoint (`check-internal`, `check-external`, `download`, `log-upload`) and
    /// outcome (`200`, `401`, `error:connect`...).
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// Failed calls by error class as the devices saw them.
    pub errors: BTreeMap<String, u64>,
    /// The first message of each class in `errors` (`tls`: `invalid peer certificate:
    /// UnknownIssuer`); after a merge, the lowest shard's.
    #[serde(default)]
    pub first_errors: BTreeMap<String, String>,
    /// Per endpoint: requests, failed requests, and latency percentiles in ms (derived from
    /// `histograms`, recomputed after a merge).
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointSummary>,
    /// TLS handshake time, ms.
    #[serde(default)]
    pub tls_handshake_ms: Percentiles,
    /// How far behind its schedule the engine served (wall ms; empty at `--time-scale max`).
    #[serde(default)]
    pub lag_ms: Percentiles,
    /// Virtual ms from the last offer change to each device reaching its final version.
    #[serde(default)]
    pub convergence: Percentiles,
    pub bytes_downloaded: u64,
    /// Requests routed through each kind of fault-injecting proxy.
    #[serde(default)]
    pub faults_injected: BTreeMap<String, u64>,
    /// Device-milliseconds of virtual time spent in each lifecycle phase.
    pub phase_ms: BTreeMap<String, u64>,
    /// Check arrivals per virtual minute.
    pub arrivals_per_minute: Vec<u64>,
    /// Width of one rollout-curve bucket, virtual ms.
    pub curve_bucket_ms: u64,
    /// Net change per bucket of devices running the target / the initial version.
    pub curve_target_delta: Vec<i64>,
    pub curve_initial_delta: Vec<i64>,
    /// Requests answered per curve bucket (by the virtual instant of the answer).
    #[serde(default)]
    pub requests_per_bucket: Vec<u64>,
    pub verdicts: Verdicts,
    /// The scenario phases as run: (virtual ms, action).
    pub phases: Vec<(u64, String)>,
    /// The thresholds and their results on this report (re-evaluated after a merge).
    #[serde(default)]
    pub thresholds: Vec<ThresholdResult>,
    /// The p99 lag (wall ms) past which the report warns that the engine could not keep up.
    #[serde(default = "default_lag_bound_ms")]
    pub lag_bound_ms: u64,
    /// What a reader must know before trusting the latencies: the engine fell behind its
    /// schedule, or the run went as fast as the client can go (`time_scale: max`).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Set when a threshold stopped the run early (`--abort-on-fail`): the run fails.
    #[serde(default)]
    pub aborted: Option<Aborted>,
    /// Set when a signal stopped the run before its end: its verdicts are as things stood.
    #[serde(default)]
    pub interrupted: Option<Interrupted>,
    /// Against a shared server the run administered (`--admin`): what its clean-up removed and
    /// what it left (the coordinator's closing notice). `None`: nothing was administered there.
    #[serde(default)]
    pub shared_server: Option<String>,
    /// How the devices reached the server: `memory` (pipes to the embedded server) or `tcp`
    /// (`--transport`); `mixed` after a merge of shards that differ.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// Threads the run's requests ran on (`--threads`; 1: the engine and every request on one
    /// thread). `None` in reports from before the field, and after a merge of shards that differ.
    #[serde(default)]
    pub threads: Option<u32>,
    /// Connections opened in memory (0 over TCP; summed in a merge).
    #[serde(default)]
    pub in_memory_connections: u64,
    /// Whether the run passed: every verdict and threshold, the whole fleet, not interrupted.
    #[serde(default)]
    pub passed: bool,
    /// The full distributions, for exact merging (base64 of HDR histograms' V2 encoding).
    pub histograms: Histograms,
}

fn default_lag_bound_ms() -> u64 {
    100
}

/// Reports from before `--transport` were all TCP.
fn default_transport() -> String {
    "tcp".to_owned()
}

/// A run a failing threshold stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aborted {
    /// The threshold as it failed on the data at that point.
    pub threshold: ThresholdResult,
    /// The virtual instant the fleet stopped at.
    pub at_virtual_ms: u64,
}

/// A run a signal stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupted {
    /// `SIGINT` or `SIGTERM`.
    pub signal: String,
    /// The virtual instant the fleet stopped at.
    pub at_virtual_ms: u64,
}

/// The HDR histograms a report's percentiles come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    /// Service time per endpoint, microseconds: from sending to the end of the reply.
    pub latency_us: BTreeMap<String, Hist>,
    /// Per endpoint, microseconds from when the device *meant* to send (its virtual deadline on
    /// the wall clock) to the end of the reply: includes waiting for a free slot under the
    /// in-flight cap, so a slow server cannot hide behind fewer requests (coordinated omission).
    pub latency_intended_us: BTreeMap<String, Hist>,
    pub tls_handshake_us: Hist,
    /// Wall microseconds each item was served after it was due.
    #[serde(default)]
    pub lag_us: Hist,
    /// Virtual ms from the scenario's last offer change to each device reaching its final
    /// version (only devices whose final version differs from the one they had then).
    pub convergence_ms: Hist,
    /// The checks' service time (both endpoints) per curve bucket, µs: latency over time.
    #[serde(default)]
    pub check_latency_by_bucket_us: Vec<Hist>,
}

/// One endpoint's numbers as a pipeline reads them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointSummary {
    pub requests: u64,
    /// Requests that failed (an HTTP error status or a transport error).
    pub errors: u64,
    /// Service time: send to end of reply.
    pub service_ms: Percentiles,
    /// From the intended send time (coordinated omission corrected).
    pub intended_ms: Percentiles,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdicts {
    pub passed: u64,
    pub failed: u64,
    pub by_reason: BTreeMap<String, u64>,
    /// The failed devices with the lowest indices.
    pub failures: Vec<DeviceVerdict>,
}

impl Verdicts {
    /// `reason=count` for each failure reason, in key order (the summary and JUnit both list
    /// them).
    pub fn reason_counts(&self) -> Vec<String> {
        self.by_reason
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceVerdict {
    pub device: u64,
    pub profile: String,
    pub expected: String,
    pub reached: String,
    pub reason: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MergeError {
    #[error("nothing to merge")]
    Empty,
    #[error("reports differ in {0}: they are not shards of one run")]
    Mismatch(&'static str),
    #[error("shard {0} appears twice")]
    DuplicateShard(String),
    #[error("report format {0} is not {REPORT_FORMAT}")]
    Format(u32),
    #[error("{0:?} is not a shard name I/N")]
    BadShard(String),
    #[error("shards {} missing: the merge would not cover the fleet (--allow-partial merges what there is and fails the result)", .0.join(", "))]
    Missing(Vec<String>),
}

impl Report {
    /// Whether every device met the scenario's expectations, every threshold passed, and the
    /// report covers the fleet. Computed from the report's contents, not read from `passed`.
    pub fn passed(&self) -> bool {
        self.verdicts.failed == 0
            && self.verdicts.passed == self.devices
            && !self.is_partial()
            && self.interrupted.is_none()
            && self.aborted.is_none()
            && self.thresholds.iter().all(|t| t.passed)
    }

    /// Requests whose call failed (every error class but the machine's own refusals).
    pub fn errors_of_requests(&self) -> u64 {
        self.errors
            .iter()
            .filter(|(class, _)| class.as_str() != "machine-unexpected-event")
            .map(|(_, n)| n)
            .sum()
    }

    /// Evaluates `thresholds` on this report (replacing any it had) and fills in what derives
    /// from the histograms.
    pub fn apply_thresholds(&mut self, thresholds: &[Threshold]) {
        self.thresholds = thresholds.iter().map(|t| t.evaluate(self)).collect();
        self.finalize();
    }

    /// Recomputes everything derived from the histograms and counts: per-endpoint summaries,
    /// threshold results (re-parsed from their expressions), and `passed`.
    pub fn finalize(&mut self) {
        let h = &self.histograms;
        self.endpoints = self
            .requests
            .iter()
            .map(|(endpoint, outcomes)| {
                let failed = outcomes
                    .iter()
                    .filter(|(o, _)| {
                        o.starts_with("error:") || o.parse::<u16>().is_ok_and(|s| s >= 400)
                    })
                    .map(|(_, n)| n)
                    .sum();
                let pct = |m: &BTreeMap<String, Hist>| {
                    m.get(endpoint)
                        .map(|h| h.percentiles_ms(0.001))
                        .unwrap_or_default()
                };
                let summary = EndpointSummary {
                    requests: outcomes.values().sum(),
                    errors: failed,
                    service_ms: pct(&h.latency_us),
                    intended_ms: pct(&h.latency_intended_us),
                };
                (endpoint.clone(), summary)
            })
            .collect();
        self.tls_handshake_ms = h.tls_handshake_us.percentiles_ms(0.001);
        self.lag_ms = h.lag_us.percentiles_ms(0.001);
        self.convergence = h.convergence_ms.percentiles_ms(1.0);
        let results: Vec<ThresholdResult> = self
            .thresholds
            .iter()
            .map(|t| match t.expression.parse::<Threshold>() {
                Ok(parsed) => parsed.evaluate(self),
                Err(_) => ThresholdResult {
                    passed: false,
                    observed: None,
                    ..t.clone()
                },
            })
            .collect();
        self.thresholds = results;
        self.warnings.clear();
        if self.time_scale == "max" {
            self.warnings.push("time scale max: the fleet ran as fast as the client can go, so latencies measure a client saturating itself against the server rather than the server under the scenario's schedule (pace it with --time-scale N)".into());
        }
        if self.lag_ms.p99 > self.lag_bound_ms as f64 {
            self.warnings.push(format!(
                "the simulator could not keep up: it served devices {:.0} ms (p99, max {:.0} ms) behind their schedule, past the {} ms bound; latencies from the intended send time include that wait",
                self.lag_ms.p99, self.lag_ms.max, self.lag_bound_ms
            ));
        }
        self.passed = self.passed();
    }

    /// A merge that went without some shards.
    pub fn is_partial(&self) -> bool {
        !self.missing_shards.is_empty()
    }

    pub fn total_requests(&self) -> u64 {
        self.requests.values().flat_map(|m| m.values()).sum()
    }

    /// Peak-to-mean of check arrivals per virtual minute, over the minutes from the first
    /// arrival to the last: 1.0 is perfectly even; a large value means devices checking in
    /// lock-step.
    pub fn bunching(&self) -> (u64, f64, f64) {
        let first = self.arrivals_per_minute.iter().position(|&n| n > 0);
        let last = self.arrivals_per_minute.iter().rposition(|&n| n > 0);
        let (Some(first), Some(last)) = (first, last) else {
            return (0, 0.0, 0.0);
        };
        let span = &self.arrivals_per_minute[first..=last];
        let peak = span.iter().copied().max().unwrap_or(0);
        let mean = span.iter().sum::<u64>() as f64 / span.len() as f64;
        (
            peak,
            mean,
            if mean > 0.0 { peak as f64 / mean } else { 0.0 },
        )
    }

    /// Devices on the target and the initial version at the end of each curve bucket.
    pub fn curve(&self) -> Vec<(u64, i64, i64)> {
        let mut target = 0i64;
        let mut initial = 0i64;
        self.curve_target_delta
            .iter()
            .zip(&self.curve_initial_delta)
            .enumerate()
            .map(|(i, (dt, di))| {
                target += dt;
                initial += di;
                ((i as u64 + 1) * self.curve_bucket_ms, target, initial)
            })
            .collect()
    }

    /// Virtual ms until `share` of the devices that converged had converged.
    pub fn convergence_at(&self, share: f64) -> Option<u64> {
        let h = &self.histograms.convergence_ms.0;
        (!h.is_empty()).then(|| h.value_at_quantile(share))
    }

    /// Combines shard reports of one run into the report of the whole fleet. Refuses reports of
    /// different runs and, unless `allow_partial`, a set with shards missing; a partial merge
    /// lists them in `missing_shards` and does not pass.
    pub fn merge(reports: Vec<Report>, allow_partial: bool) -> Result<Report, MergeError> {
        let mut iter = reports.into_iter();
        let mut out = iter.next().ok_or(MergeError::Empty)?;
        if out.format != REPORT_FORMAT {
            return Err(MergeError::Format(out.format));
        }
        for r in iter {
            out.absorb(r)?;
        }
        let missing = out.missing()?;
        if !missing.is_empty() && !allow_partial {
            return Err(MergeError::Missing(missing));
        }
        out.missing_shards = missing;
        out.shards
            .sort_by_key(|s| s.parse::<Shard>().map(|s| s.index).unwrap_or(u64::MAX));
        out.clock.sort_by_key(|c| {
            c.shard
                .parse::<Shard>()
                .map(|s| s.index)
                .unwrap_or(u64::MAX)
        });
        out.verdicts.failures.sort_by_key(|v| v.device);
        out.verdicts.failures.truncate(MAX_LISTED_FAILURES);
        out.finalize();
        Ok(out)
    }

    /// The shards of the run not in this report: every shard must be `I/N` with one `N`.
    fn missing(&self) -> Result<Vec<String>, MergeError> {
        let mut count = None;
        let mut have = std::collections::BTreeSet::new();
        for name in &self.shards {
            let shard: Shard = name
                .parse()
                .map_err(|_| MergeError::BadShard(name.clone()))?;
            if count.is_some_and(|n| n != shard.count) {
                return Err(MergeError::Mismatch("shard count"));
            }
            count = Some(shard.count);
            have.insert(shard.index);
        }
        let count = count.unwrap_or(1);
        Ok((0..count)
            .filter(|i| !have.contains(i))
            .map(|i| format!("{i}/{count}"))
            .collect())
    }

    fn absorb(&mut self, r: Report) -> Result<(), MergeError> {
        if r.format != REPORT_FORMAT {
            return Err(MergeError::Format(r.format));
        }
        let same: [(&'static str, bool); 8] = [
            ("scenario", r.scenario == self.scenario),
            ("seed", r.seed == self.seed),
            ("fleet size", r.fleet_devices == self.fleet_devices),
            ("start epoch", r.start_unix_ms == self.start_unix_ms),
            ("time scale", r.time_scale == self.time_scale),
            (
                "virtual duration",
                r.virtual_duration_ms == self.virtual_duration_ms,
            ),
            ("curve buckets", r.curve_bucket_ms == self.curve_bucket_ms),
            (
                "thresholds",
                r.thresholds
                    .iter()
                    .map(|t| &t.expression)
                    .eq(self.thresholds.iter().map(|t| &t.expression)),
            ),
        ];
        if let Some((what, _)) = same.iter().find(|(_, ok)| !ok) {
            return Err(MergeError::Mismatch(what));
        }
        for shard in &r.shards {
            if self.shards.contains(shard) {
                return Err(MergeError::DuplicateShard(shard.clone()));
            }
        }
        self.shards.extend(r.shards);
        self.clock.extend(r.clock);
        self.missing_shards.extend(r.missing_shards);
        if self.shared_server.is_none() {
            self.shared_server = r.shared_server;
        }
        if self.transport != r.transport {
            self.transport = "mixed".to_owned();
        }
        if self.threads != r.threads {
            self.threads = None;
        }
        self.in_memory_connections += r.in_memory_connections;
        if self.interrupted.is_none() {
            self.interrupted = r.interrupted;
        }
        if self.aborted.is_none() {
            self.aborted = r.aborted;
        }
        self.devices += r.devices;
        self.wall_ms = self.wall_ms.max(r.wall_ms);
        for (endpoint, outcomes) in r.requests {
            let mine = self.requests.entry(endpoint).or_default();
            for (outcome, n) in outcomes {
                *mine.entry(outcome).or_default() += n;
            }
        }
        add_counts(&mut self.errors, r.errors);
        for (class, message) in r.first_errors {
            self.first_errors.entry(class).or_insert(message);
        }
        let (mine, theirs) = (&mut self.histograms, r.histograms);
        add_hists(&mut mine.latency_us, theirs.latency_us);
        add_hists(&mut mine.latency_intended_us, theirs.latency_intended_us);
        mine.tls_handshake_us.add(&theirs.tls_handshake_us);
        mine.lag_us.add(&theirs.lag_us);
        mine.convergence_ms.add(&theirs.convergence_ms);
        let buckets = &mut mine.check_latency_by_bucket_us;
        if buckets.len() < theirs.check_latency_by_bucket_us.len() {
            buckets.resize(theirs.check_latency_by_bucket_us.len(), Hist::new());
        }
        for (a, b) in buckets.iter_mut().zip(&theirs.check_latency_by_bucket_us) {
            a.add(b);
        }
        add_elementwise(&mut self.requests_per_bucket, &r.requests_per_bucket);
        self.bytes_downloaded += r.bytes_downloaded;
        add_counts(&mut self.faults_injected, r.faults_injected);
        add_counts(&mut self.phase_ms, r.phase_ms);
        add_elementwise(&mut self.arrivals_per_minute, &r.arrivals_per_minute);
        add_elementwise(&mut self.curve_target_delta, &r.curve_target_delta);
        add_elementwise(&mut self.curve_initial_delta, &r.curve_initial_delta);
        self.verdicts.passed += r.verdicts.passed;
        self.verdicts.failed += r.verdicts.failed;
        add_counts(&mut self.verdicts.by_reason, r.verdicts.by_reason);
        self.verdicts.failures.extend(r.verdicts.failures);
        Ok(())
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

fn add_hists(into: &mut BTreeMap<String, Hist>, from: BTreeMap<String, Hist>) {
    for (k, h) in from {
        into.entry(k).or_default().add(&h);
    }
}

fn add_elementwise<T: Copy + Default + std::ops::AddAssign>(into: &mut Vec<T>, from: &[T]) {
    if into.len() < from.len() {
        into.resize(from.len(), T::default());
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += *b;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(shard: &str, devices: u64, failed: u64) -> Report {
        let mut latency = Hist::new();
        latency.record(1000 + devices);
        Report {
            format: REPORT_FORMAT,
            scenario: "rollout".into(),
            description: "d".into(),
            seed: 1,
            fleet_devices: 10,
            devices,
            shards: vec![shard.into()],
            time_scale: "max".into(),
            server: "embedded".into(),
            start_unix_ms: 1_795_600_000_000,
            clock: Vec::new(),
            missing_shards: Vec::new(),
            virtual_duration_ms: 3_600_000,
            wall_ms: 100 * devices,
            requests: BTreeMap::from([(
                "check-internal".into(),
                BTreeMap::from([("200".into(), devices * 2)]),
            )]),
            errors: BTreeMap::from([("connect".into(), 1)]),
            first_errors: BTreeMap::from([("connect".into(), format!("refused ({shard})"))]),
            endpoints: BTreeMap::new(),
            tls_handshake_ms: Percentiles::default(),
            lag_ms: Percentiles::default(),
            convergence: Percentiles::default(),
            bytes_downloaded: 10 * devices,
            faults_injected: BTreeMap::new(),
            phase_ms: BTreeMap::from([("idle".into(), 5)]),
            arrivals_per_minute: vec![devices, 1],
            curve_bucket_ms: 60_000,
            curve_target_delta: vec![devices as i64],
            curve_initial_delta: vec![-(devices as i64)],
            requests_per_bucket: vec![devices * 2],
            verdicts: Verdicts {
                passed: devices - failed,
                failed,
                by_reason: BTreeMap::from([("stuck".into(), failed)]),
                failures: (0..failed)
                    .map(|i| DeviceVerdict {
                        device: i * 7 + devices,
                        profile: "CX700".into(),
                        expected: "1".into(),
                        reached: "0".into(),
                        reason: "stuck".into(),
                    })
                    .collect(),
            },
            phases: vec![(0, "power-on".into())],
            thresholds: Vec::new(),
            lag_bound_ms: 100,
            warnings: Vec::new(),
            aborted: None,
            interrupted: None,
            shared_server: None,
            transport: default_transport(),
            threads: Some(1),
            in_memory_connections: 0,
            passed: false,
            histograms: Histograms {
                latency_us: BTreeMap::from([("check-internal".into(), latency.clone())]),
                latency_intended_us: BTreeMap::from([("check-internal".into(), latency)]),
                ..Histograms::default()
            },
        }
    }

    #[test]
    fn merge_adds_everything_exactly() {
        let merged = Report::merge(vec![sample("1/2", 4, 1), sample("0/2", 6, 0)], false).unwrap();
        assert_eq!(merged.devices, 10);
        assert_eq!(merged.shards, ["0/2", "1/2"]);
        assert_eq!(merged.requests["check-internal"]["200"], 20);
        assert_eq!(merged.errors["connect"], 2);
        assert_eq!(merged.histograms.latency_us["check-internal"].0.len(), 2);
        assert_eq!(merged.endpoints["check-internal"].requests, 20);
        assert_eq!(merged.endpoints["check-internal"].service_ms.count, 2);
        assert_eq!(merged.arrivals_per_minute, [10, 2]);
        assert_eq!(merged.curve(), [(60_000, 10, -10)]);
        assert_eq!((merged.verdicts.passed, merged.verdicts.failed), (9, 1));
        assert_eq!(merged.wall_ms, 600);
        assert!(!merged.passed());
        assert_eq!(merged.threads, Some(1));
    }

    /// Shards that ran on different thread counts merge to no single count, not to one of them.
    #[test]
    fn merged_shards_keep_their_thread_count_only_when_they_share_it() {
        let mut wide = sample("1/2", 4, 0);
        wide.threads = Some(8);
        let merged = Report::merge(vec![sample("0/2", 6, 0), wide], false).unwrap();
        assert_eq!(merged.threads, None);
        let text = crate::report::text::render(&merged);
        assert!(!text.contains("thread"), "{text}");
        let one = crate::report::text::render(&sample("0/1", 10, 0));
        assert!(one.contains("over tcp, 1 thread"), "{one}");
    }

    #[test]
    fn merge_refuses_reports_of_different_runs() {
        let mut other = sample("1/2", 4, 0);
        other.seed = 2;
        assert_eq!(
            Report::merge(vec![sample("0/2", 6, 0), other], false),
            Err(MergeError::Mismatch("seed"))
        );
        let mut other = sample("1/2", 4, 0);
        other.start_unix_ms += 1;
        assert_eq!(
            Report::merge(vec![sample("0/2", 6, 0), other], true),
            Err(MergeError::Mismatch("start epoch"))
        );
        let mut other = sample("1/2", 4, 0);
        other.fleet_devices = 11;
        assert_eq!(
            Report::merge(vec![sample("0/2", 6, 0), other], true),
            Err(MergeError::Mismatch("fleet size"))
        );
        assert_eq!(
            Report::merge(vec![sample("0/2", 6, 0), sample("1/3", 4, 0)], true),
            Err(MergeError::Mismatch("shard count"))
        );
        assert_eq!(
            Report::merge(vec![sample("0/2", 6, 0), sample("0/2", 6, 0)], false),
            Err(MergeError::DuplicateShard("0/2".into()))
        );
        assert_eq!(Report::merge(vec![], false), Err(MergeError::Empty));
    }

    #[test]
    fn merge_re_evaluates_thresholds_on_the_whole_fleet() {
        let threshold = crate::thresholds::parse_all(&["requests.count>=15"]).unwrap();
        let mut a = sample("0/2", 6, 0);
        let mut b = sample("1/2", 4, 0);
        a.apply_thresholds(&threshold);
        b.apply_thresholds(&threshold);
        assert!(!a.passed() && !b.passed(), "12 and 8 requests");
        let merged = Report::merge(vec![a, b.clone()], false).unwrap();
        assert_eq!(merged.thresholds[0].observed, Some(20.0));
        assert!(merged.passed() && merged.passed);
        let mut other = sample("0/2", 6, 0);
        other.apply_thresholds(&crate::thresholds::parse_all(&["requests.count>=16"]).unwrap());
        assert_eq!(
            Report::merge(vec![other, b], false),
            Err(MergeError::Mismatch("thresholds"))
        );
    }

    #[test]
    fn merge_refuses_missing_shards_unless_partial_which_fails() {
        let parts = || vec![sample("0/4", 3, 0), sample("2/4", 3, 0)];
        assert_eq!(
            Report::merge(parts(), false),
            Err(MergeError::Missing(vec!["1/4".into(), "3/4".into()]))
        );
        let partial = Report::merge(parts(), true).unwrap();
        assert_eq!(partial.missing_shards, ["1/4", "3/4"]);
        assert_eq!((partial.verdicts.failed, partial.devices), (0, 6));
        assert!(!partial.passed(), "a partial merge never passes");
        // One shard alone is a whole only when it is 0/1.
        assert!(Report::merge(vec![sample("0/1", 3, 0)], false)
            .unwrap()
            .passed());
        assert!(Report::merge(vec![sample("0/2", 3, 0)], false).is_err());
    }

    #[test]
    fn bunching_is_peak_over_mean_of_the_active_span() {
        let mut r = sample("0/1", 1, 0);
        r.arrivals_per_minute = vec![0, 2, 2, 8, 0];
        let (peak, mean, ratio) = r.bunching();
        assert_eq!(peak, 8);
        assert!((mean - 4.0).abs() < 1e-9);
        assert!((ratio - 2.0).abs() < 1e-9);
    }
}
