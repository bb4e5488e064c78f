//! The end of a run: each device's verdict against the scenario's expectations, and the
//! report assembled from the metrics; plus the live progress snapshot.

use ucupdate_agent::machine::CheckOutcome;
use ucupdate_protocol::FirmwareVersion;

use super::device::{Device, Power};
use super::metrics::{phase_label, Metric, OFF};
use super::queue::NEVER;
use super::{Engine, Progress, RunOutcome, Stage};
use crate::clock;
use crate::fleet::DeviceSpec;
use crate::report::{
    Aborted, DeviceVerdict, Hist, Histograms, Interrupted, Report, Verdicts, MAX_LISTED_FAILURES,
    REPORT_FORMAT,
};
use crate::scenario::{Expect, FinalVersion};

impl Engine {
    /// The version a device must run at the end.
    pub(super) fn expected_final(&self, spec: &DeviceSpec) -> FirmwareVersion {
        let profile = &self.profiles[spec.profile as usize];
        let publishes = self.cfg.scenario.publishes();
        match self.cfg.scenario.expect.final_version {
            FinalVersion::Target if publishes => profile.target(),
            FinalVersion::TargetIfUser if publishes && spec.signed_in => profile.target(),
            FinalVersion::Next => profile.target(),
            _ => profile.initial,
        }
    }

    pub(super) fn report_progress(&mut self, stage: Stage) {
        let virtual_ms = self
            .next_item_time()
            .unwrap_or(self.duration_ms)
            .min(self.duration_ms);
        let lag = &self.metrics.lag.0;
        let snapshot = Progress {
            stage,
            virtual_ms,
            duration_ms: self.duration_ms,
            requests: self.metrics.total_requests,
            errors: self.metrics.total_errors,
            in_flight: self.in_flight,
            by_phase: (0..=OFF)
                .map(|i| (phase_label(i), self.metrics.phase_count[i]))
                .collect(),
            phase: self.phase_name,
            check_p99_us: self.metrics.check_p99_us(),
            lag_p99_us: lag.value_at_quantile(0.99),
            lag_max_us: lag.max(),
            time_scale: self.cfg.time_scale,
            outcomes: self.metrics.requests.clone(),
            durations: self
                .metrics
                .latency
                .iter()
                .map(|(endpoint, h)| {
                    let h = &h.0;
                    let counts = super::DURATION_BOUNDS_US
                        .iter()
                        .map(|&b| h.count_between(0, b))
                        .collect();
                    (endpoint.clone(), counts, h.len(), h.mean() * h.len() as f64)
                })
                .collect(),
            on_target: self.metrics.curve_target.iter().sum(),
        };
        if let Some(progress) = self.cfg.progress.as_mut() {
            progress(&snapshot);
        }
    }

    pub(super) fn finish(mut self) -> RunOutcome {
        // An interrupted run ends where it stopped.
        let end = self.served_ms.min(self.duration_ms);
        if self.cfg.progress.is_some() {
            self.report_progress(Stage::End);
        }
        for slot in 0..self.devices.len() {
            let dev = &self.devices[slot];
            if dev.ever_on {
                let (phase, ms) = (dev.phase as usize, end.saturating_sub(dev.phase_since));
                self.metrics.record(Metric::PhaseTime { phase, ms });
            }
        }
        let reference = self
            .cfg
            .scenario
            .last_offer_change()
            .map(|d| d.as_millis() as u64);
        let expect = self.cfg.scenario.expect.clone();
        let mut verdicts = Verdicts::default();
        let mut convergence = Hist::new();
        let mut digests = Vec::new();
        for slot in 0..self.devices.len() as u32 {
            let spec = self.spec(slot);
            let profile = &self.profiles[spec.profile as usize];
            let expected = self.expected_final(&spec);
            let dev = &self.devices[slot as usize];
            let reached = match &dev.power {
                Power::On(m) => m.persisted().current_version,
                Power::Off(Some(saved)) => saved.current_version,
                Power::Off(None) => profile.initial,
            };
            if self.cfg.collect_digests {
                digests.push((spec.index, self.digests[slot as usize]));
            }
            if let (Some(r), true) = (reference, dev.final_at != NEVER && reached == expected) {
                if dev.final_at > r {
                    convergence.record(dev.final_at - r);
                }
            }
            match verdict(dev, &spec, &expect, expected, reached, reference) {
                None => verdicts.passed += 1,
                Some(reason) => {
                    verdicts.failed += 1;
                    let key = reason.split(' ').next().unwrap_or(&reason).to_owned();
                    *verdicts.by_reason.entry(key).or_default() += 1;
                    if verdicts.failures.len() < MAX_LISTED_FAILURES {
                        verdicts.failures.push(DeviceVerdict {
                            device: spec.index,
                            profile: profile.name.to_owned(),
                            expected: expected.to_string(),
                            reached: reached.to_string(),
                            reason,
                        });
                    }
                }
            }
        }
        let m = self.metrics;
        let phase_ms = (0..=OFF)
            .filter(|&i| m.phase_ms[i] > 0)
            .map(|i| (phase_label(i).to_owned(), m.phase_ms[i]))
            .collect();
        let scenario = &self.cfg.scenario;
        let mut report = Report {
            format: REPORT_FORMAT,
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            seed: self.cfg.fleet.seed,
            fleet_devices: self.cfg.fleet.devices,
            devices: self.devices.len() as u64,
            shards: vec![format!("{}/{}", self.cfg.shard.index, self.cfg.shard.count)],
            time_scale: self.cfg.time_scale.to_string(),
            server: self.cfg.target.label.clone(),
            start_unix_ms: self.cfg.start_unix_ms,
            clock: self
                .anchor
                .map(|a| crate::report::clock::ShardClock {
                    shard: format!("{}/{}", self.cfg.shard.index, self.cfg.shard.count),
                    start_offset_ms: a.offset_ms,
                    joined_at_virtual_ms: self.joined_virtual_ms,
                    late_events: self.late_events,
                    late_devices: self
                        .late_devices
                        .iter()
                        .map(|w| u64::from(w.count_ones()))
                        .sum(),
                    coordinator: self.cfg.coordinator,
                })
                .into_iter()
                .collect(),
            missing_shards: Vec::new(),
            virtual_duration_ms: self.duration_ms,
            wall_ms: clock::now().duration_since(self.joined).as_millis() as u64,
            requests: m.requests,
            errors: m.errors,
            first_errors: m.first_errors,
            endpoints: Default::default(),
            tls_handshake_ms: Default::default(),
            lag_ms: Default::default(),
            convergence: Default::default(),
            bytes_downloaded: m.bytes,
            faults_injected: m.faults,
            phase_ms,
            arrivals_per_minute: m.arrivals,
            curve_bucket_ms: m.curve_bucket_ms,
            curve_target_delta: m.curve_target,
            curve_initial_delta: m.curve_initial,
            requests_per_bucket: m.requests_by_bucket,
            verdicts,
            phases: scenario
                .phases
                .iter()
                .map(|p| (p.at.as_millis() as u64, p.action.name().to_owned()))
                .collect(),
            thresholds: Vec::new(),
            lag_bound_ms: 100,
            warnings: Vec::new(),
            aborted: self.aborted.take().map(|threshold| Aborted {
                threshold,
                at_virtual_ms: end,
            }),
            shared_server: None,
            transport: "tcp".to_owned(),
            threads: crate::threads::current(),
            in_memory_connections: 0,
            interrupted: self.interrupted.map(|signal| Interrupted {
                signal: signal.to_owned(),
                at_virtual_ms: end,
            }),
            passed: false,
            histograms: Histograms {
                latency_us: m.latency,
                latency_intended_us: m.latency_intended,
                tls_handshake_us: m.tls,
                lag_us: m.lag,
                convergence_ms: convergence,
                check_latency_by_bucket_us: m.check_latency_by_bucket,
            },
        };
        report.finalize();
        RunOutcome {
            report,
            trace: self.trace,
            digests,
        }
    }
}

/// Why a device failed the scenario's expectations (`None`: it passed). The first word is the
/// reason's key in the report.
fn verdict(
    dev: &Device,
    spec: &DeviceSpec,
    expect: &Expect,
    expected: FirmwareVersion,
    reached: FirmwareVersion,
    reference: Option<u64>,
) -> Option<String> {
    if !dev.ever_on {
        Some("never-powered-on".to_owned())
    } else if reached != expected {
        // A device that refused the update says why (its catalog did not vouch for it...).
        let why = dev
            .machine()
            .and_then(|m| m.status().last_outcome)
            .filter(|o| matches!(o, CheckOutcome::Untrusted(_) | CheckOutcome::Refused(_)));
        Some(match why {
            Some(outcome) => format!("wrong-version ({outcome})"),
            None => "wrong-version".to_owned(),
        })
    } else if dev.checks < expect.min_checks {
        Some(format!(
            "too-few-answered-checks ({} < {})",
            dev.checks, expect.min_checks
        ))
    } else if expect.visited_target && !dev.visited_target {
        Some("never-ran-target".to_owned())
    } else if expect.denied_without_user && spec.external && !spec.signed_in && dev.denied == 0 {
        Some("not-denied".to_owned())
    } else if let (Some(within), Some(r)) = (expect.converge_within, reference) {
        let late = dev.final_at != NEVER
            && dev.final_at > r
            && dev.final_at - r > within.as_millis() as u64;
        late.then(|| "slow-convergence".to_owned())
    } else {
        None
    }
}
