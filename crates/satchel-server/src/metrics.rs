//! Prometheus metrics, exposed as text at `GET /metrics`.
//!
//! Written by hand rather than with the `prometheus` or `metrics` crates: there are five series,
//! the exposition format is a few lines, and this keeps the service free of a process-global
//! registry (tests start many servers in one process, each with its own counters).

use crate::error::ErrorCodeTag;
use crate::App;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use satchel::ErrorCode;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the request duration histogram.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    /// Cumulative counts per bucket of [`BUCKETS`].
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Default)]
struct Series {
    /// (route, method, status) → count.
    requests: BTreeMap<(String, String, u16), u64>,
    /// route → time to response head.
    durations: BTreeMap<String, Histogram>,
    /// Scan outcome of uploads: clean, infected, unavailable.
    scans: BTreeMap<&'static str, u64>,
    /// Error responses by code.
    errors: BTreeMap<&'static str, u64>,
}

/// The service's counters. Cheap to share.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<Series>,
    bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
}

impl Metrics {
    fn series(&self) -> std::sync::MutexGuard<'_, Series> {
        // A panic while holding the lock cannot leave the counters inconsistent enough to
        // matter; keep counting.
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let mut s = self.series();
        *s.requests
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default() += 1;
        s.durations
            .entry(route.to_owned())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    fn record_error(&self, response: &Response) {
        if let Some(ErrorCodeTag(code)) = response.extensions().get::<ErrorCodeTag>() {
            *self.series().errors.entry(code.as_str()).or_default() += 1;
        }
    }

    /// Counts the scan outcome an upload's result reveals (nothing when scanning is off).
    pub fn record_scan(&self, scanning: bool, result: Result<(), ErrorCode>) {
        let outcome = match result {
            Ok(()) if scanning => "clean",
            Err(ErrorCode::VirusDetected) => "infected",
            Err(ErrorCode::ScannerUnavailable) => "unavailable",
            _ => return,
        };
        *self.series().scans.entry(outcome).or_default() += 1;
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let s = self.series();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP satchel_http_requests_total HTTP requests by route, method and status."
        );
        let _ = writeln!(out, "# TYPE satchel_http_requests_total counter");
        for ((route, method, status), n) in &s.requests {
            let _ = writeln!(
                out,
                "satchel_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        let _ = writeln!(out, "# HELP satchel_http_request_duration_seconds Time from request to response head, by route.");
        let _ = writeln!(
            out,
            "# TYPE satchel_http_request_duration_seconds histogram"
        );
        for (route, h) in &s.durations {
            let route = escape(route);
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "satchel_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "satchel_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "satchel_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "satchel_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP satchel_http_body_bytes_total Body bytes received (in) and sent (out)."
        );
        let _ = writeln!(out, "# TYPE satchel_http_body_bytes_total counter");
        let _ = writeln!(
            out,
            "satchel_http_body_bytes_total{{direction=\"in\"}} {}",
            self.bytes_in.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "satchel_http_body_bytes_total{{direction=\"out\"}} {}",
            self.bytes_out.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP satchel_scans_total Virus scan outcomes of uploads."
        );
        let _ = writeln!(out, "# TYPE satchel_scans_total counter");
        for outcome in ["clean", "infected", "unavailable"] {
            let n = s.scans.get(outcome).copied().unwrap_or(0);
            let _ = writeln!(out, "satchel_scans_total{{outcome=\"{outcome}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP satchel_http_errors_total Error responses by error code."
        );
        let _ = writeln!(out, "# TYPE satchel_http_errors_total counter");
        for (code, n) in &s.errors {
            let _ = writeln!(out, "satchel_http_errors_total{{code=\"{code}\"}} {n}");
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counts `frame` bytes into `counter` as they pass.
fn counted(body: Body, counter: Arc<AtomicU64>) -> Body {
    Body::new(body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counter.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        frame
    }))
}

/// Middleware on every matched route: counts requests, durations and body bytes, and names
/// the route in the request's log span.
pub async fn track(State(app): State<App>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().as_str().to_owned();
    tracing::Span::current().record("route", route.as_str());
    let metrics = app.metrics();
    let request = request.map(|body| counted(body, metrics.bytes_in.clone()));
    let response = next.run(request).await;
    metrics.record_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    metrics.record_error(&response);
    response.map(|body| counted(body, metrics.bytes_out.clone()))
}

/// Records a request that matched no route (the fallback runs outside [`track`]).
pub fn record_unmatched(app: &App, method: &str, response: &Response) {
    let metrics = app.metrics();
    metrics.record_request(
        "unmatched",
        method,
        response.status().as_u16(),
        Duration::ZERO,
    );
    metrics.record_error(response);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_series() {
        let m = Metrics::default();
        m.record_request("/v1/files/{id}", "GET", 200, Duration::from_millis(20));
        m.record_request("/v1/files/{id}", "GET", 404, Duration::from_secs(100));
        m.record_scan(true, Ok(()));
        m.record_scan(true, Err(ErrorCode::VirusDetected));
        m.record_scan(false, Ok(()));
        m.bytes_in.fetch_add(7, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains(
            "satchel_http_requests_total{route=\"/v1/files/{id}\",method=\"GET\",status=\"404\"} 1"
        ));
        assert!(text.contains(
            "satchel_http_request_duration_seconds_bucket{route=\"/v1/files/{id}\",le=\"0.025\"} 1"
        ));
        assert!(text.contains(
            "satchel_http_request_duration_seconds_bucket{route=\"/v1/files/{id}\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("satchel_http_body_bytes_total{direction=\"in\"} 7"));
        assert!(text.contains("satchel_scans_total{outcome=\"clean\"} 1"));
        assert!(text.contains("satchel_scans_total{outcome=\"infected\"} 1"));
    }
}
