//! Scenarios: the load shape as data. A scenario is a TOML document with fleet defaults, agent
//! timing overrides, a user-activity model, timed phases (power-on windows, publish, approve,
//! restore, sign-in waves...) and expectations that give every device a verdict. The built-in
//! scenarios are TOML files in `simulator/scenarios/`, compiled in.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use ucupdate_agent::machine::MachineConfig;

use crate::duration::{self, parse_duration};
use crate::thresholds::{self, Threshold};

/// The built-in scenarios: (name, TOML text).
pub const BUILT_IN: &[(&str, &str)] = &[
    ("steady", include_str!("../scenarios/steady.toml")),
    ("boot-storm", include_str!("../scenarios/boot-storm.toml")),
    (
        "sign-in-wave",
        include_str!("../scenarios/sign-in-wave.toml"),
    ),
    ("rollout", include_str!("../scenarios/rollout.toml")),
    ("rollback", include_str!("../scenarios/rollback.toml")),
    ("external", include_str!("../scenarios/external.toml")),
];

#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("no built-in scenario {0:?} and no such file (see `ucupdate-sim scenarios`)")]
    NotFound(String),
    #[error("reading {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("scenario {name}: {error}")]
    Toml {
        name: String,
        error: toml::de::Error,
    },
    #[error("scenario {name}: {reason}")]
    Invalid { name: String, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// How much virtual time the run covers.
    #[serde(with = "duration::text")]
    pub duration: Duration,
    #[serde(default)]
    pub fleet: FleetDefaults,
    /// Overrides of the agent's timing (the same keys as the agent's `[machine]` config).
    #[serde(default)]
    pub agent: MachineConfig,
    #[serde(default)]
    pub activity: Activity,
    #[serde(default, rename = "phase")]
    pub phases: Vec<Phase>,
    #[serde(default)]
    pub expect: Expect,
    /// Faults injected between the devices and the server (`[faults]`).
    #[serde(default)]
    pub faults: Option<Faults>,
    /// Pass/fail limits on the report's metrics, k6-style: `check-internal = ["p99<500ms"]`
    /// is the threshold `check-internal.p99<500ms` (see [`crate::thresholds`]).
    #[serde(default)]
    pub thresholds: BTreeMap<String, ThresholdNode>,
}

/// A `[thresholds]` entry: conditions on the metric its key names, or a table of deeper keys
/// (`check-internal.intended = "p99<1s"` is a TOML dotted key, a nested table).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ThresholdNode {
    One(String),
    Many(Vec<String>),
    Table(BTreeMap<String, ThresholdNode>),
}

impl ThresholdNode {
    fn expressions(&self, key: &str, out: &mut Vec<String>) {
        match self {
            ThresholdNode::One(c) => out.push(format!("{key}.{}", c.trim())),
            ThresholdNode::Many(cs) => out.extend(cs.iter().map(|c| format!("{key}.{}", c.trim()))),
            ThresholdNode::Table(t) => {
                for (k, node) in t {
                    node.expressions(&format!("{key}.{k}"), out);
                }
            }
        }
    }
}

/// A share of requests routed through a fault-injecting proxy, until the fault clears.
#[derive(Debug, Clone, Deserialize)]
pub struct Faults {
    #[serde(flatten)]
    pub plan: crate::faults::FaultPlan,
    /// Virtual time when the faults clear (default: never); devices must converge after it.
    #[serde(default, with = "duration::opt_text")]
    pub until: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetDefaults {
    pub devices: u64,
    /// `NAME=PERCENT,...`; the default fleet when absent.
    pub mix: Option<String>,
    pub external_share: f64,
    pub signed_in_share: f64,
    pub test_devices: u64,
    /// Bytes of each synthetic image the scenario publishes.
    pub image_size: u64,
    /// Per-device link: bandwidth cap in bytes per second (0 = none) and added latency.
    pub bandwidth: u64,
    #[serde(with = "duration::text")]
    pub latency: Duration,
    /// Per-profile links that override `bandwidth` and `latency` (`[fleet.links.CX700]`).
    pub links: BTreeMap<String, Link>,
}

/// A device's network link: bytes per second (0 = no cap) and latency added to each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Link {
    pub bandwidth: u64,
    #[serde(with = "duration::text")]
    pub latency: Duration,
}

impl Default for FleetDefaults {
    fn default() -> Self {
        FleetDefaults {
            devices: 1000,
            mix: None,
            external_share: 0.0,
            signed_in_share: 0.5,
            test_devices: 0,
            image_size: 64 * 1024,
            bandwidth: 0,
            latency: Duration::ZERO,
            links: BTreeMap::new(),
        }
    }
}

/// How users touch their devices, which delays the idle restart after a download.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Activity {
    /// Share of devices with someone using them.
    pub busy_share: f64,
    /// Mean time between touches on a busy device (exponentially distributed).
    #[serde(with = "duration::text")]
    pub mean_interval: Duration,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            busy_share: 0.3,
            mean_interval: Duration::from_secs(20 * 60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Phase {
    /// Virtual time since the start of the run.
    #[serde(with = "duration::text")]
    pub at: Duration,
    #[serde(flatten)]
    pub action: PhaseAction,
}

/// What happens at a phase's instant. Device-side actions spread over `window`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PhaseAction {
    /// Devices power on (the first phase of every scenario): uniformly over `window`.
    PowerOn {
        #[serde(default, with = "duration::text")]
        window: Duration,
    },
    /// Every running device loses power and comes back within `window` (a site power restore).
    PowerCycle {
        #[serde(default, with = "duration::text")]
        window: Duration,
    },
    /// The server imports the next version of every profile in the fleet: pending.
    /// `bad_signature = true` (a fault, embedded server only): the version is published with a
    /// catalog whose signature does not verify, so every device must refuse it (0x3).
    Publish {
        #[serde(default)]
        bad_signature: bool,
    },
    /// Pending becomes approved.
    Approve,
    /// Roll back to the restore version.
    Restore,
    /// Cancel the pending version.
    Reset,
    /// Devices meant to have a user sign in over `window` (the morning peak).
    SignIn {
        #[serde(default, with = "duration::text")]
        window: Duration,
    },
    /// Every user signs out.
    SignOut,
}

impl PhaseAction {
    pub fn name(&self) -> &'static str {
        match self {
            PhaseAction::PowerOn { .. } => "power-on",
            PhaseAction::PowerCycle { .. } => "power-cycle",
            PhaseAction::Publish { .. } => "publish",
            PhaseAction::Approve => "approve",
            PhaseAction::Restore => "restore",
            PhaseAction::Reset => "reset",
            PhaseAction::SignIn { .. } => "sign-in",
            PhaseAction::SignOut => "sign-out",
        }
    }

    /// Needs the server's admin interface.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            PhaseAction::Publish { .. }
                | PhaseAction::Approve
                | PhaseAction::Restore
                | PhaseAction::Reset
        )
    }
}

/// The version each device must run at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinalVersion {
    /// What it started on.
    #[default]
    Initial,
    /// The published version.
    Target,
    /// The published version if a user is signed in, else what it started on (external).
    TargetIfUser,
    /// The profile's next version although this run publishes nothing: a server the run does
    /// not administer (a real pool, a peer in a foreign dialect) already offers it.
    Next,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    #[serde(rename = "final")]
    pub final_version: FinalVersion,
    /// Every device had at least this many checks answered by the server (an offer, "no
    /// update", or a 401 denial); checks that failed on the way do not count.
    pub min_checks: u32,
    /// Every device has run the target version at some point (a rollback went through it).
    pub visited_target: bool,
    /// External devices without a user were denied (401) at least once and never updated.
    pub denied_without_user: bool,
    /// The whole fleet reached its final version within this long after the scenario's last
    /// publish/approve/restore phase.
    #[serde(with = "duration::opt_text")]
    pub converge_within: Option<Duration>,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            final_version: FinalVersion::Initial,
            min_checks: 1,
            visited_target: false,
            denied_without_user: false,
            converge_within: None,
        }
    }
}

impl Scenario {
    /// A built-in scenario by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(name_or_path, text);
        }
        let path = std::path::Path::new(name_or_path);
        if !path.exists() {
            return Err(ScenarioError::NotFound(name_or_path.to_owned()));
        }
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError::Io {
            path: name_or_path.to_owned(),
            error,
        })?;
        Scenario::parse(name_or_path, &text)
    }

    pub fn parse(name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|error| ScenarioError::Toml {
            name: name.to_owned(),
            error,
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |reason: String| ScenarioError::Invalid {
            name: self.name.clone(),
            reason,
        };
        if !matches!(
            self.phases.first(),
            Some(Phase {
                action: PhaseAction::PowerOn { .. },
                ..
            })
        ) {
            return Err(invalid("the first phase must be `power-on`".into()));
        }
        if self.phases.windows(2).any(|w| w[1].at < w[0].at) {
            return Err(invalid("phases must be in time order".into()));
        }
        if let Some(p) = self.phases.iter().find(|p| p.at > self.duration) {
            return Err(invalid(format!(
                "phase `{}` at {:?} is after the end",
                p.action.name(),
                p.at
            )));
        }
        for (what, share) in [
            ("fleet.external_share", self.fleet.external_share),
            ("fleet.signed_in_share", self.fleet.signed_in_share),
            ("activity.busy_share", self.activity.busy_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(invalid(format!("{what} must be between 0 and 1")));
            }
        }
        self.thresholds()?;
        self.agent
            .validate()
            .map_err(|e| invalid(format!("agent: {e}")))?;
        if let Some(name) = self
            .fleet
            .links
            .keys()
            .find(|n| crate::profile::index_of(n).is_none())
        {
            return Err(invalid(format!("fleet.links: unknown profile {name:?}")));
        }
        Ok(())
    }

    /// The scenario's `[thresholds]` as expressions (`check-internal.p99<500ms`).
    pub fn threshold_expressions(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, node) in &self.thresholds {
            node.expressions(key, &mut out);
        }
        out
    }

    /// The scenario's `[thresholds]`, parsed.
    pub fn thresholds(&self) -> Result<Vec<Threshold>, ScenarioError> {
        thresholds::parse_all(&self.threshold_expressions()).map_err(|e| ScenarioError::Invalid {
            name: self.name.clone(),
            reason: e.to_string(),
        })
    }

    /// The link of a profile: its own entry in `[fleet.links]`, else the fleet's.
    pub fn link_for(&self, profile: &str) -> Link {
        self.fleet
            .links
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(profile))
            .map(|(_, link)| *link)
            .unwrap_or(Link {
                bandwidth: self.fleet.bandwidth,
                latency: self.fleet.latency,
            })
    }

    /// Whether the scenario publishes an update (so devices have a target version).
    pub fn publishes(&self) -> bool {
        self.phases
            .iter()
            .any(|p| matches!(p.action, PhaseAction::Publish { .. }))
    }

    /// The instant from which `converge_within` counts: the last phase that changes what the
    /// server offers.
    pub fn last_offer_change(&self) -> Option<Duration> {
        self.phases
            .iter()
            .filter(|p| {
                matches!(
                    p.action,
                    PhaseAction::Approve | PhaseAction::Restore | PhaseAction::Reset
                )
            })
            .map(|p| p.at)
            .next_back()
    }
}

/// Reads a duration: `90s`, `5m`, `24h`, `3d`, `1h30m`, `250ms`, or a bare number of seconds.
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .ok_or_else(|| format!("{text:?}: expected a duration like 90s, 5m, 24h, 3d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_parses_and_has_expectations() {
        for (name, text) in BUILT_IN {
            let s = Scenario::parse(name, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&s.name, name);
            assert!(!s.description.is_empty());
        }
    }

    #[test]
    fn links_are_per_profile_with_the_fleet_as_default() {
        let s = Scenario::parse(
            "x",
            "name='x'\ndescription='d'\nduration='1h'\n[fleet]\nbandwidth=1000\nlatency='50ms'\n\
             [fleet.links.RoundTable]\nbandwidth=125000\nlatency='5ms'\n[[phase]]\nat='0s'\naction='power-on'\n",
        )
        .unwrap();
        assert_eq!(
            s.link_for("roundtable"),
            Link {
                bandwidth: 125_000,
                latency: Duration::from_millis(5)
            }
        );
        assert_eq!(
            s.link_for("CX700"),
            Link {
                bandwidth: 1000,
                latency: Duration::from_millis(50)
            }
        );
    }

    #[test]
    fn thresholds_are_keyed_by_metric_k6_style() {
        let s = Scenario::parse(
            "x",
            "name='x'\ndescription='d'\nduration='1h'\n[[phase]]\nat='0s'\naction='power-on'\n\
             [thresholds]\ncheck-internal = ['p99<500ms', 'p(95) < 200ms']\nerrors = 'rate<1%'\n\
             devices = ['failed==0']\n\"check-internal.intended\" = 'p99<2s'\n\
             download.intended = 'p99<9s'\n",
        )
        .unwrap();
        assert_eq!(
            s.threshold_expressions(),
            [
                "check-internal.p99<500ms",
                "check-internal.p(95) < 200ms",
                "check-internal.intended.p99<2s",
                "devices.failed==0",
                "download.intended.p99<9s",
                "errors.rate<1%",
            ]
        );
        assert_eq!(s.thresholds().unwrap().len(), 6);
    }

    #[test]
    fn refuses_bad_scenarios_with_a_reason() {
        let base = "name='x'\ndescription='d'\nduration='1h'\n";
        let cases = [
            ("", "first phase"),
            ("[[phase]]\nat='0s'\naction='approve'\n", "first phase"),
            (
                "[[phase]]\nat='0s'\naction='power-on'\n[[phase]]\nat='2h'\naction='approve'\n",
                "after the end",
            ),
            (
                "[fleet]\nexternal_share=2.0\n[[phase]]\nat='0s'\naction='power-on'\n",
                "between 0 and 1",
            ),
            ("[[phase]]\nat='0s'\naction='explode'\n", "explode"),
            (
                "[fleet.links.Nokia]\nbandwidth=1\n[[phase]]\nat='0s'\naction='power-on'\n",
                "unknown profile",
            ),
            (
                "[thresholds]\ncheck-internal = ['p99<500']\n[[phase]]\nat='0s'\naction='power-on'\n",
                "threshold \"check-internal.p99<500\": \"500\" needs a unit",
            ),
        ];
        for (extra, needle) in cases {
            let err = Scenario::parse("x", &format!("{base}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{extra:?}: {err}");
        }
    }
}
