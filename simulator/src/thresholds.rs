//! Thresholds, k6-style: `check-internal.p99<500ms`, `errors.rate<1%`, `devices.failed==0`.
//! A threshold names a metric of the report, an aggregation, a comparison and a limit; it is
//! parsed once (a mistake is a setup error before the run) and evaluated on the finished
//! report, so a merged report re-evaluates it on the merged histograms (percentiles of the
//! whole fleet, never averaged shard percentiles).
//!
//! Grammar: `METRIC.STAT OP VALUE`, or `SCALAR OP VALUE`.
//! - time metrics (`STAT`: `p50 p90 p95 p99 p99.9 max mean count`, k6's `p(95)` too; `VALUE` a
//!   duration with its unit, `us ms s m h d`): `<endpoint>` (service time, send to end of
//!   reply), `<endpoint>.intended` (from the intended send time), `tls-handshake`, `lag` (how
//!   far behind its schedule the engine served, wall time), `convergence` (virtual time after
//!   the last offer change); endpoints are `check-internal`, `check-external`, `download`,
//!   `log-upload`;
//! - rates (`VALUE` a fraction `0.01` or a percentage `1%`): `errors.rate` (failed requests over
//!   all requests), `devices.failed.rate`;
//! - counts: `errors.count`, `requests.count`, `devices.failed`, `devices.passed`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::report::{Hist, Report, ENDPOINTS};

#[derive(Debug, Error, PartialEq, Eq)]
#[error("threshold {expression:?}: {reason}")]
pub struct ThresholdError {
    pub expression: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    /// Longest first, so `<=` is not read as `<`.
    const ALL: [(&'static str, Op); 6] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Eq => observed == limit,
            Op::Ne => observed != limit,
        }
    }
}

/// A histogram of the report.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Service(String),
    Intended(String),
    Tls,
    Lag,
    Convergence,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stat {
    Quantile(f64),
    Max,
    Mean,
    Count,
}

#[derive(Debug, Clone, PartialEq)]
enum Metric {
    Time(Source, Stat),
    ErrorsRate,
    ErrorsCount,
    RequestsCount,
    DevicesFailed,
    DevicesPassed,
    DevicesFailedRate,
}

/// What a threshold's value is measured in, for reading it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Milliseconds (of wall time; virtual for `convergence`).
    Ms,
    /// A fraction, 0 to 1.
    Ratio,
    Count,
}

/// A histogram a threshold reads.
#[derive(Debug, Clone, Copy)]
pub enum Histogram<'a> {
    /// Service time of an endpoint, µs.
    Service(&'a str),
    /// From the intended send time, µs.
    Intended(&'a str),
    Tls,
    Lag,
    /// Virtual ms.
    Convergence,
}

/// What thresholds are evaluated on: a finished report, or the engine's metrics mid-run.
pub trait Measured {
    fn histogram(&self, which: Histogram<'_>) -> Option<&Hist>;
    fn requests(&self) -> u64;
    /// Requests whose call failed.
    fn request_errors(&self) -> u64;
    /// (devices, passed), once the verdicts are known.
    fn verdicts(&self) -> Option<(u64, u64)>;
}

impl Measured for Report {
    fn histogram(&self, which: Histogram<'_>) -> Option<&Hist> {
        let h = &self.histograms;
        match which {
            Histogram::Service(e) => h.latency_us.get(e),
            Histogram::Intended(e) => h.latency_intended_us.get(e),
            Histogram::Tls => Some(&h.tls_handshake_us),
            Histogram::Lag => Some(&h.lag_us),
            Histogram::Convergence => Some(&h.convergence_ms),
        }
    }

    fn requests(&self) -> u64 {
        self.total_requests()
    }

    fn request_errors(&self) -> u64 {
        self.errors_of_requests()
    }

    fn verdicts(&self) -> Option<(u64, u64)> {
        Some((self.devices, self.verdicts.passed))
    }
}

/// A parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    expression: String,
    metric: Metric,
    op: Op,
    /// In the metric's unit: ms for time, a fraction for rates, a number for counts.
    limit: f64,
}

/// A threshold evaluated on a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub expression: String,
    /// The metric's value (`None`: no samples, which fails the threshold).
    pub observed: Option<f64>,
    pub unit: Unit,
    pub passed: bool,
}

const STATS: [(&str, Stat); 9] = [
    ("p99.9", Stat::Quantile(0.999)),
    ("p50", Stat::Quantile(0.50)),
    ("p90", Stat::Quantile(0.90)),
    ("p95", Stat::Quantile(0.95)),
    ("p99", Stat::Quantile(0.99)),
    ("max", Stat::Max),
    ("mean", Stat::Mean),
    ("count", Stat::Count),
    ("med", Stat::Quantile(0.50)),
];

impl std::str::FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(text: &str) -> Result<Threshold, ThresholdError> {
        let expression = text.trim().to_owned();
        let fail = |reason: String| ThresholdError {
            expression: expression.clone(),
            reason,
        };
        let (at, sym, op) = Op::ALL
            .iter()
            .filter_map(|&(sym, op)| expression.find(sym).map(|at| (at, sym, op)))
            .min_by_key(|&(at, sym, _)| (at, usize::MAX - sym.len()))
            .ok_or_else(|| fail("no comparison (<, <=, >, >=, ==, !=)".into()))?;
        let name = expression[..at].trim();
        let value = expression[at + sym.len()..].trim();
        let metric = metric(name).map_err(fail)?;
        let limit = limit(&metric, value).map_err(fail)?;
        Ok(Threshold {
            expression,
            metric,
            op,
            limit,
        })
    }
}

/// k6 writes `p(95)`: the same as `p95`.
fn normalize_stat(stat: &str) -> String {
    match stat.strip_prefix("p(").and_then(|s| s.strip_suffix(')')) {
        Some(q) => format!("p{q}"),
        None => stat.to_owned(),
    }
}

fn metric(name: &str) -> Result<Metric, String> {
    match name {
        "errors.rate" => return Ok(Metric::ErrorsRate),
        "errors.count" => return Ok(Metric::ErrorsCount),
        "requests.count" => return Ok(Metric::RequestsCount),
        "devices.failed" | "devices.failed.count" => return Ok(Metric::DevicesFailed),
        "devices.passed" | "devices.passed.count" => return Ok(Metric::DevicesPassed),
        "devices.failed.rate" => return Ok(Metric::DevicesFailedRate),
        _ => {}
    }
    let (source, stat) = STATS
        .iter()
        .find_map(|(suffix, stat)| {
            let (source, s) = name.rsplit_once('.')?;
            // `p99.9` has a dot of its own.
            let (source, s) = match source.rsplit_once('.') {
                Some((head, p)) if format!("{p}.{s}") == *suffix => (head, suffix.to_string()),
                _ => (source, normalize_stat(s)),
            };
            (s == *suffix).then_some((source, *stat))
        })
        .ok_or_else(|| {
            format!(
                "unknown metric {name:?}: expected METRIC.STAT (STAT one of p50 p90 p95 p99 p99.9 max mean count) or one of errors.rate, errors.count, requests.count, devices.failed, devices.passed, devices.failed.rate"
            )
        })?;
    let endpoint = |e: &str| ENDPOINTS.contains(&e).then(|| e.to_owned());
    let source = match source {
        "tls-handshake" => Source::Tls,
        "lag" => Source::Lag,
        "convergence" => Source::Convergence,
        s => match s.strip_suffix(".intended") {
            Some(e) => endpoint(e).map(Source::Intended),
            None => endpoint(s).map(Source::Service),
        }
        .ok_or_else(|| {
            format!(
                "unknown metric {s:?}: expected an endpoint ({}), ENDPOINT.intended, tls-handshake, lag or convergence",
                ENDPOINTS.join(", ")
            )
        })?,
    };
    Ok(Metric::Time(source, stat))
}

fn limit(metric: &Metric, value: &str) -> Result<f64, String> {
    let number = |text: &str| -> Result<f64, String> {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{value:?} is not a number"))
    };
    match metric {
        Metric::Time(_, Stat::Count) => number(value),
        Metric::Time(..) => {
            let split = value
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("{value:?} needs a unit: us, ms, s, m, h or d"))?;
            let (n, unit) = value.split_at(split);
            let ms_per = match unit.trim() {
                "us" | "µs" => 0.001,
                "ms" => 1.0,
                "s" => 1000.0,
                "m" => 60_000.0,
                "h" => 3_600_000.0,
                "d" => 86_400_000.0,
                other => return Err(format!("unknown unit {other:?}: us, ms, s, m, h or d")),
            };
            Ok(number(n)? * ms_per)
        }
        Metric::ErrorsRate | Metric::DevicesFailedRate => match value.strip_suffix('%') {
            Some(pct) => Ok(number(pct)? / 100.0),
            None => number(value),
        },
        _ => number(value),
    }
}

impl Threshold {
    pub fn expression(&self) -> &str {
        &self.expression
    }

    fn unit(&self) -> Unit {
        match self.metric {
            Metric::Time(_, Stat::Count) => Unit::Count,
            Metric::Time(..) => Unit::Ms,
            Metric::ErrorsRate | Metric::DevicesFailedRate => Unit::Ratio,
            _ => Unit::Count,
        }
    }

    /// The metric's value in `m`, in the threshold's unit.
    fn observe(&self, m: &dyn Measured) -> Option<f64> {
        let requests = m.requests();
        let errors = m.request_errors();
        match &self.metric {
            Metric::ErrorsRate => (requests > 0).then(|| errors as f64 / requests as f64),
            Metric::ErrorsCount => Some(errors as f64),
            Metric::RequestsCount => Some(requests as f64),
            Metric::DevicesFailed => m.verdicts().map(|(all, passed)| (all - passed) as f64),
            Metric::DevicesPassed => m.verdicts().map(|(_, passed)| passed as f64),
            Metric::DevicesFailedRate => m
                .verdicts()
                .filter(|&(all, _)| all > 0)
                .map(|(all, passed)| (all - passed) as f64 / all as f64),
            Metric::Time(source, stat) => {
                // Histograms in µs, except convergence (virtual ms).
                let ms_per_unit = if *source == Source::Convergence {
                    1.0
                } else {
                    0.001
                };
                let which = match source {
                    Source::Service(e) => Histogram::Service(e),
                    Source::Intended(e) => Histogram::Intended(e),
                    Source::Tls => Histogram::Tls,
                    Source::Lag => Histogram::Lag,
                    Source::Convergence => Histogram::Convergence,
                };
                let h = &m.histogram(which)?.0;
                if let Stat::Count = stat {
                    return Some(h.len() as f64);
                }
                if h.is_empty() {
                    return None;
                }
                let v = match stat {
                    Stat::Quantile(q) => h.value_at_quantile(*q) as f64,
                    Stat::Max => h.max() as f64,
                    Stat::Mean => h.mean(),
                    Stat::Count => h.len() as f64,
                };
                Some(v * ms_per_unit)
            }
        }
    }

    /// The result if the threshold already fails on the data so far (`--abort-on-fail`): a
    /// metric without data yet does not fail early.
    pub fn failing_now(&self, m: &dyn Measured) -> Option<ThresholdResult> {
        let observed = self.observe(m)?;
        (!self.op.holds(observed, self.limit)).then(|| ThresholdResult {
            expression: self.expression.clone(),
            observed: Some(observed),
            unit: self.unit(),
            passed: false,
        })
    }

    pub fn evaluate(&self, r: &Report) -> ThresholdResult {
        let observed = self.observe(r);
        ThresholdResult {
            expression: self.expression.clone(),
            observed,
            unit: self.unit(),
            passed: observed.is_some_and(|v| self.op.holds(v, self.limit)),
        }
    }
}

impl ThresholdResult {
    /// The observed value for people: `12.30 ms`, `0.52%`, `3`, or `no data`.
    pub fn observed_text(&self) -> String {
        match (self.observed, self.unit) {
            (None, _) => "no data".into(),
            (Some(v), Unit::Ms) => format!("{v:.2} ms"),
            (Some(v), Unit::Ratio) => format!("{:.2}%", v * 100.0),
            (Some(v), Unit::Count) => format!("{v}"),
        }
    }
}

/// Parses each expression (a setup error names the first that does not parse).
pub fn parse_all<S: AsRef<str>>(texts: &[S]) -> Result<Vec<Threshold>, ThresholdError> {
    texts.iter().map(|t| t.as_ref().parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Threshold {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_the_k6_style_forms() {
        let t = parse("check-internal.p99<500ms");
        assert_eq!(
            t.metric,
            Metric::Time(
                Source::Service("check-internal".into()),
                Stat::Quantile(0.99)
            )
        );
        assert_eq!((t.op, t.limit), (Op::Lt, 500.0));
        let t = parse("check-internal.intended.p99.9 <= 2s");
        assert_eq!(
            t.metric,
            Metric::Time(
                Source::Intended("check-internal".into()),
                Stat::Quantile(0.999)
            )
        );
        assert_eq!((t.op, t.limit), (Op::Le, 2000.0));
        assert_eq!(parse("download.p(95)<1m").limit, 60_000.0);
        assert_eq!(parse("lag.max<250us").limit, 0.25);
        assert_eq!(parse("errors.rate<1%").limit, 0.01);
        assert_eq!(parse("errors.rate<0.02").limit, 0.02);
        let t = parse("devices.failed==0");
        assert_eq!(
            (t.metric, t.op, t.limit),
            (Metric::DevicesFailed, Op::Eq, 0.0)
        );
        assert_eq!(parse("convergence.p90<=27h").limit, 27.0 * 3_600_000.0);
        assert_eq!(parse("check-external.count>=10").limit, 10.0);
    }

    #[test]
    fn refuses_what_it_cannot_read_with_a_reason() {
        for (text, needle) in [
            ("check-internal.p99", "no comparison"),
            ("check-internal.p98<1s", "unknown metric"),
            ("checks.p99<1s", "expected an endpoint"),
            ("check-internal.p99<500", "needs a unit"),
            ("check-internal.p99<5 parsecs", "unknown unit"),
            ("errors.rate<lots", "not a number"),
            ("devices.lost==0", "unknown metric"),
        ] {
            let err = text.parse::<Threshold>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(err.contains(text), "{err} names the expression");
        }
    }

    #[test]
    fn evaluates_on_a_report_and_fails_without_data() {
        let mut r = crate::report::tests::sample("0/1", 5, 1);
        r.finalize();
        // The sample's one check took 1005 µs (1005.5 at the histogram's three digits).
        let result = parse("check-internal.p99<2ms").evaluate(&r);
        assert!(result.passed, "{result:?}");
        assert_eq!(result.observed_text(), "1.01 ms");
        assert!(!parse("check-internal.max<1ms").evaluate(&r).passed);
        let none = parse("download.p99<1s").evaluate(&r);
        assert_eq!(
            (none.passed, none.observed_text().as_str()),
            (false, "no data")
        );
        assert!(!parse("devices.failed==0").evaluate(&r).passed);
        assert!(parse("devices.failed<=1").evaluate(&r).passed);
        // One connect error in ten requests.
        let rate = parse("errors.rate<5%").evaluate(&r);
        assert_eq!(rate.observed, Some(0.1));
        assert!(!rate.passed);
        assert_eq!(rate.observed_text(), "10.00%");
    }
}
