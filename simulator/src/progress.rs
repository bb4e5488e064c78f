//! What a run says on stderr while it runs: a start line (what runs, at what time scale, how to
//! stop it), then either a live bar on a terminal (indicatif) or, off a terminal (CI logs), a
//! plain line every `--progress-interval`, so a long job never looks hung; and a warning when
//! the engine falls behind its schedule.

use std::time::Duration;

use crate::clock;
use crate::duration::format_duration;
use crate::engine::{Progress, ProgressSink, Stage, TimeScale};

/// How to show progress.
#[derive(Debug, Clone)]
pub struct Options {
    /// The line printed when the fleet starts (see [`start_line`]).
    pub start_line: String,
    /// Draw a live bar (stderr is a terminal).
    pub bar: bool,
    /// Print a plain line this often (wall time); `None`: none.
    pub interval: Option<Duration>,
    /// Warn once when the engine's p99 lag passes this (wall time).
    pub lag_warning: Duration,
}

/// What the run is, and what `--time-scale max` means.
pub fn start_line(scenario: &str, devices: u64, shard: &str, scale: TimeScale) -> String {
    let pace = match scale {
        TimeScale::Max => "time scale max: as fast as the client can go (latencies then measure a client saturating itself; --time-scale N paces the scenario)".to_owned(),
        TimeScale::Factor(x) => format!("time scale {x} (virtual seconds per wall second)"),
    };
    format!(
        "ucupdate-sim: running scenario {scenario}, {devices} devices (shard {shard}), {pace}; Ctrl-C (SIGINT) or SIGTERM stops the fleet and writes the reports"
    )
}

/// One plain progress line: `progress: virtual 0d06:00:00 of 3d (8%), phase approve, ...`.
pub fn line(p: &Progress, requests_per_sec: f64, eta: Option<Duration>) -> String {
    let pct = p.virtual_ms as f64 * 100.0 / p.duration_ms.max(1) as f64;
    let lag = match p.time_scale {
        TimeScale::Max => "lag n/a (time scale max)".to_owned(),
        TimeScale::Factor(_) => format!(
            "lag p99 {:.1} ms max {:.1} ms",
            p.lag_p99_us as f64 / 1000.0,
            p.lag_max_us as f64 / 1000.0
        ),
    };
    let eta = eta.map_or_else(|| "-".to_owned(), |d| format!("{:.0} s", d.as_secs_f64()));
    format!(
        "progress: virtual {} of {} ({pct:.0}%), phase {}, {requests_per_sec:.0} req/s, {} requests, {} errors, check p99 {:.1} ms, {lag}, {} in flight, eta {eta}",
        vtime(p.virtual_ms),
        format_duration(Duration::from_millis(p.duration_ms)),
        p.phase,
        p.requests,
        p.errors,
        p.check_p99_us as f64 / 1000.0,
        p.in_flight
    )
}

/// A virtual instant: `1d02:03:04`.
fn vtime(ms: u64) -> String {
    let (d, rest) = (ms / 86_400_000, ms % 86_400_000);
    format!(
        "{d}d{:02}:{:02}:{:02}",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60
    )
}

/// The lag warning, once the engine's p99 lag passes `bound`.
pub fn lag_warning(p99: Duration, bound: Duration) -> String {
    format!(
        "warning: the simulator cannot keep up: it serves devices {:.0} ms (p99) behind their schedule (bound {} ms); latencies from the intended send time include that wait. Fewer devices, a lower --time-scale or more shards keep the schedule.",
        p99.as_secs_f64() * 1000.0,
        bound.as_millis()
    )
}

/// The sink the engine calls with each snapshot.
pub fn sink(options: Options) -> ProgressSink {
    let bar = options.bar.then(|| {
        let bar = indicatif::ProgressBar::new(1);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {percent:>3}% virtual, eta {eta} | {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = clock::now();
    let mut last_line = started;
    let mut last_requests = 0u64;
    let mut warned = false;
    Box::new(move |p: &Progress| {
        let now = clock::now();
        if p.stage == Stage::Start {
            eprintln!("{}", options.start_line);
        }
        let elapsed = now.duration_since(started).as_secs_f64();
        let eta = (p.virtual_ms > 0 && elapsed > 0.0).then(|| {
            let left = p.duration_ms.saturating_sub(p.virtual_ms) as f64;
            Duration::from_secs_f64(left / p.virtual_ms as f64 * elapsed)
        });
        let lag_p99 = Duration::from_micros(p.lag_p99_us);
        if !warned && lag_p99 > options.lag_warning && p.stage != Stage::Start {
            warned = true;
            let text = lag_warning(lag_p99, options.lag_warning);
            match &bar {
                Some(bar) => bar.println(text),
                None => eprintln!("{text}"),
            }
        }
        if let Some(bar) = &bar {
            bar.set_length(p.duration_ms.max(1));
            bar.set_position(p.virtual_ms);
            let phases: Vec<String> = p
                .by_phase
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(name, n)| format!("{name}={n}"))
                .collect();
            bar.set_message(format!(
                "phase {} | {:.0} req/s, {} errors, check p99 {:.1} ms, lag p99 {:.1} ms | {}",
                p.phase,
                p.requests as f64 / elapsed.max(0.001),
                p.errors,
                p.check_p99_us as f64 / 1000.0,
                p.lag_p99_us as f64 / 1000.0,
                phases.join(" ")
            ));
            if p.stage == Stage::End {
                bar.finish_and_clear();
            }
        } else if let Some(interval) = options.interval {
            let due = now.duration_since(last_line) >= interval;
            if p.stage != Stage::Start && (due || p.stage == Stage::End) {
                let secs = now.duration_since(last_line).as_secs_f64().max(0.001);
                let rate = p.requests.saturating_sub(last_requests) as f64 / secs;
                eprintln!("{}", line(p, rate, eta));
                last_line = now;
                last_requests = p.requests;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_clock_phase_rates_latency_and_lag() {
        let p = Progress {
            stage: Stage::Running,
            virtual_ms: 6 * 3_600_000,
            duration_ms: 72 * 3_600_000,
            requests: 1200,
            errors: 3,
            in_flight: 7,
            by_phase: Vec::new(),
            phase: "approve",
            check_p99_us: 3_250,
            lag_p99_us: 400,
            lag_max_us: 1_500,
            time_scale: TimeScale::Factor(3600.0),
            ..Progress::default()
        };
        let text = line(&p, 41.0, Some(Duration::from_secs(66)));
        assert_eq!(
            text,
            "progress: virtual 0d06:00:00 of 3d (8%), phase approve, 41 req/s, 1200 requests, 3 errors, check p99 3.2 ms, lag p99 0.4 ms max 1.5 ms, 7 in flight, eta 66 s"
        );
        let max = Progress {
            time_scale: TimeScale::Max,
            ..p
        };
        assert!(line(&max, 0.0, None).contains("lag n/a (time scale max)"));
        assert!(start_line("rollout", 20, "0/1", TimeScale::Max)
            .contains("as fast as the client can go"));
    }
}
