//! HTTP metrics and the Prometheus text of `/admin/metrics`.

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use projections::metrics::REGISTRY;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, TextEncoder};

use crate::state::AppState;

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new("app_requests_total", "HTTP requests by route and method"),
        &["route", "method"],
    )
    .expect("valid metric");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("registers once");
    c
});

static RESPONSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new(
            "app_responses_total",
            "HTTP responses by route, method and status",
        ),
        &["route", "method", "status"],
    )
    .expect("valid metric");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("registers once");
    c
});

static LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    let h = HistogramVec::new(
        HistogramOpts::new(
            "app_request_duration_seconds",
            "HTTP request latency by route and method",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]),
        &["route", "method"],
    )
    .expect("valid metric");
    REGISTRY
        .register(Box::new(h.clone()))
        .expect("registers once");
    h
});

/// Counts and times every request under its route template (bounded label values).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    REQUESTS.with_label_values(&[&route, &method]).inc();
    RESPONSES
        .with_label_values(&[&route, &method, resp.status().as_str()])
        .inc();
    LATENCY
        .with_label_values(&[&route, &method])
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// `app_requests_total` with its labels in the seed's order (`route`, then `method`); the
/// prometheus encoder would sort them by name.
fn render_requests(out: &mut String) {
    out.push_str("# HELP app_requests_total HTTP requests by route and method\n# TYPE app_requests_total counter\n");
    for family in prometheus::core::Collector::collect(&*REQUESTS) {
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().replace('\\', "\\\\").replace('"', "\\\""))
                    .unwrap_or_default()
            };
            out.push_str(&format!(
                "app_requests_total{{route=\"{}\",method=\"{}\"}} {}\n",
                label("route"),
                label("method"),
                m.get_counter().get_value()
            ));
        }
    }
}

/// `GET /admin/metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    let families: Vec<_> = REGISTRY
        .gather()
        .into_iter()
        .filter(|f| f.name() != "app_requests_total")
        .collect();
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&families, &mut buf);
    let mut text = String::new();
    render_requests(&mut text);
    text.push_str(&String::from_utf8(buf).unwrap_or_default());
    let head = state.store.head_position().await.unwrap_or(0);
    text.push_str(&format!(
        "# HELP events_appended_total Events appended by this process\n# TYPE events_appended_total counter\nevents_appended_total {}\n",
        state.bus.events_appended()
    ));
    text.push_str(&format!(
        "# HELP command_conflicts_retried_total Optimistic-concurrency conflicts retried\n# TYPE command_conflicts_retried_total counter\ncommand_conflicts_retried_total {}\n",
        state.bus.conflicts_retried()
    ));
    text.push_str(&format!(
        "# HELP events_head_position Highest position in the event log\n# TYPE events_head_position gauge\nevents_head_position {head}\n"
    ));
    text.push_str("# HELP projection_lag_events Events in the log not yet applied by each projection\n# TYPE projection_lag_events gauge\n");
    for name in state.runner.names() {
        let at = state.runner.progress(name).map(|c| c.position).unwrap_or(0);
        text.push_str(&format!(
            "projection_lag_events{{projection=\"{name}\"}} {}\n",
            (head - at).max(0)
        ));
    }
    Response::builder()
        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
        .body(text.into())
        .expect("valid response")
}
