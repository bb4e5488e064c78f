//! [`Hist`]: an HDR histogram that serializes as base64 of its V2 encoding, so shard reports
//! carry full distributions and merge exactly (percentiles are recomputed from the merged
//! counts, never averaged).

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{de, Deserialize, Deserializer as SerdeDe, Serialize, Serializer as SerdeSer};

#[derive(Debug, Clone)]
pub struct Hist(pub Histogram<u64>);

/// Percentiles a report prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist::new()
    }
}

impl Hist {
    /// Three significant figures, growing as needed.
    pub fn new() -> Hist {
        let mut h = Histogram::new(3).expect("3 significant figures is valid");
        h.auto(true);
        Hist(h)
    }

    pub fn record(&mut self, value: u64) {
        // Auto-resizing histograms accept any u64; the error case cannot occur.
        let _ = self.0.record(value.max(1));
    }

    pub fn add(&mut self, other: &Hist) {
        let _ = self.0.add(&other.0);
    }

    pub fn summary(&self) -> Summary {
        let h = &self.0;
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// A distribution as a pipeline reads it: counts and percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Hist {
    /// The percentiles in ms of a histogram recorded in units of `ms_per_unit` ms (µs: 0.001).
    pub fn percentiles_ms(&self, ms_per_unit: f64) -> Percentiles {
        let s = self.summary();
        // Rounded to the microsecond: the histogram holds three significant digits anyway,
        // and `6.387` reads better in a pipeline than `6.3870000000000005`.
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        let ms = |v: u64| round(v as f64 * ms_per_unit);
        Percentiles {
            count: s.count,
            p50: ms(s.p50),
            p90: ms(s.p90),
            p95: ms(s.p95),
            p99: ms(s.p99),
            p99_9: ms(s.p999),
            max: ms(s.max),
            mean: round(s.mean * ms_per_unit),
        }
    }
}

impl PartialEq for Hist {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .eq(other
                    .0
                    .iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value())))
    }
}

impl Serialize for Hist {
    fn serialize<S: SerdeSer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(&self.0, &mut bytes)
            .map_err(|e| serde::ser::Error::custom(format!("histogram: {e:?}")))?;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: SerdeDe<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|e| de::Error::custom(format!("histogram base64: {e}")))?;
        let mut h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| de::Error::custom(format!("histogram: {e:?}")))?;
        h.auto(true);
        Ok(Hist(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_two_halves_equals_recording_everything() {
        let (mut a, mut b, mut all) = (Hist::new(), Hist::new(), Hist::new());
        for v in 1..=10_000u64 {
            if v % 2 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.add(&b);
        assert_eq!(a, all);
        assert_eq!(a.summary().p50, all.summary().p50);
    }

    #[test]
    fn survives_json() {
        let mut h = Hist::new();
        for v in [5, 50, 500, 5_000_000] {
            h.record(v);
        }
        let json = serde_json::to_string(&h).unwrap();
        let back: Hist = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.summary().max, h.summary().max);
    }
}
