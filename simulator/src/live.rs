//! `--metrics ADDR`: the run's live numbers in the Prometheus text format at
//! `http://ADDR/metrics`, so a dashboard can watch a long run next to the server's own
//! `/metrics`. The engine's progress snapshots (every 200 ms of wall time) are the only source:
//! the endpoint serves the latest one and never touches the engine.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::engine::{Progress, DURATION_BOUNDS_US};

/// The latest snapshot, shared between the progress sink and the endpoint.
pub type Latest = Arc<Mutex<Option<Progress>>>;

/// Serves `/metrics` on `addr` until the process ends; returns the bound address.
pub async fn serve(addr: SocketAddr, latest: Latest) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let latest = Arc::clone(&latest);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let latest = Arc::clone(&latest);
                        async move { Ok::<_, Infallible>(respond(&req, &latest)) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

fn respond(req: &Request<hyper::body::Incoming>, latest: &Latest) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        let mut not_found =
            Response::new(Full::new(Bytes::from_static(b"not found: try /metrics\n")));
        *not_found.status_mut() = hyper::StatusCode::NOT_FOUND;
        return not_found;
    }
    let text = match latest.lock() {
        Ok(p) => p.as_ref().map(render).unwrap_or_default(),
        Err(_) => String::new(),
    };
    let mut ok = Response::new(Full::new(Bytes::from(text)));
    ok.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    ok
}

/// A label value, escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The snapshot in the Prometheus text exposition format.
pub fn render(p: &Progress) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge(
        "ucupdate_sim_virtual_seconds",
        "Virtual time the run has reached.",
        p.virtual_ms as f64 / 1000.0,
    );
    gauge(
        "ucupdate_sim_virtual_duration_seconds",
        "Virtual time the run covers.",
        p.duration_ms as f64 / 1000.0,
    );
    gauge(
        "ucupdate_sim_requests_in_flight",
        "Requests in flight.",
        p.in_flight as f64,
    );
    gauge(
        "ucupdate_sim_devices_on_target",
        "Devices running the target version.",
        p.on_target as f64,
    );
    gauge(
        "ucupdate_sim_lag_p99_seconds",
        "p99 of how far behind its schedule the engine served (wall time).",
        p.lag_p99_us as f64 / 1e6,
    );
    gauge(
        "ucupdate_sim_lag_max_seconds",
        "Most the engine fell behind its schedule (wall time).",
        p.lag_max_us as f64 / 1e6,
    );
    let _ = writeln!(
        out,
        "# HELP ucupdate_sim_scenario_phase The scenario phase last run.\n# TYPE ucupdate_sim_scenario_phase gauge\nucupdate_sim_scenario_phase{{phase=\"{}\"}} 1",
        label(p.phase)
    );
    let _ = writeln!(out, "# HELP ucupdate_sim_devices Devices per lifecycle phase.\n# TYPE ucupdate_sim_devices gauge");
    for (phase, n) in &p.by_phase {
        let _ = writeln!(
            out,
            "ucupdate_sim_devices{{phase=\"{}\"}} {n}",
            label(phase)
        );
    }
    let _ = writeln!(out, "# HELP ucupdate_sim_requests_total Requests by endpoint and outcome (HTTP status or error:<class>).\n# TYPE ucupdate_sim_requests_total counter");
    for (endpoint, outcomes) in &p.outcomes {
        for (outcome, n) in outcomes {
            let _ = writeln!(
                out,
                "ucupdate_sim_requests_total{{endpoint=\"{}\",outcome=\"{}\"}} {n}",
                label(endpoint),
                label(outcome)
            );
        }
    }
    let _ = writeln!(out, "# HELP ucupdate_sim_errors_total Requests that failed.\n# TYPE ucupdate_sim_errors_total counter\nucupdate_sim_errors_total {}", p.errors);
    let name = "ucupdate_sim_request_duration_seconds";
    let _ = writeln!(out, "# HELP {name} Service time of requests (send to end of reply), wall clock.\n# TYPE {name} histogram");
    for (endpoint, counts, count, sum_us) in &p.durations {
        let endpoint = label(endpoint);
        for (bound, n) in DURATION_BOUNDS_US.iter().zip(counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{endpoint=\"{endpoint}\",le=\"{}\"}} {n}",
                *bound as f64 / 1e6
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "{name}_sum{{endpoint=\"{endpoint}\"}} {}",
            sum_us / 1e6
        );
        let _ = writeln!(out, "{name}_count{{endpoint=\"{endpoint}\"}} {count}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_a_cumulative_histogram() {
        let p = Progress {
            virtual_ms: 90_000,
            phase: "approve",
            outcomes: [("check-internal".to_owned(), [("200".to_owned(), 7)].into())].into(),
            durations: vec![(
                "check-internal".into(),
                vec![3; DURATION_BOUNDS_US.len()],
                7,
                21_000.0,
            )],
            by_phase: vec![("idle", 4)],
            ..Progress::default()
        };
        let text = render(&p);
        for line in [
            "ucupdate_sim_virtual_seconds 90",
            "ucupdate_sim_scenario_phase{phase=\"approve\"} 1",
            "ucupdate_sim_devices{phase=\"idle\"} 4",
            "ucupdate_sim_requests_total{endpoint=\"check-internal\",outcome=\"200\"} 7",
            "ucupdate_sim_request_duration_seconds_bucket{endpoint=\"check-internal\",le=\"0.001\"} 3",
            "ucupdate_sim_request_duration_seconds_bucket{endpoint=\"check-internal\",le=\"+Inf\"} 7",
            "ucupdate_sim_request_duration_seconds_sum{endpoint=\"check-internal\"} 0.021",
            "# TYPE ucupdate_sim_request_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
        }
    }
}
