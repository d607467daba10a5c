//! Metrics the workers update; the API renders them at `/admin/metrics`.

use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registers once");
    c
}

/// Seconds from an event's commit to its effect in a read model.
pub static PROJECTION_LAG_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "projection_lag_seconds",
                "Time from event commit to read-model commit",
            )
            .buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["projection"],
        )
        .expect("valid metric"),
    )
});

/// Events applied per projection.
pub static PROJECTION_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "projection_events_total",
                "Events applied by each projection",
            ),
            &["projection"],
        )
        .expect("valid metric"),
    )
});

/// Last position applied per projection (compare with `events_head_position`).
pub static PROJECTION_POSITION: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "projection_checkpoint_position",
                "Log position of each projection's checkpoint",
            ),
            &["projection"],
        )
        .expect("valid metric"),
    )
});

/// Failed batches per projection (each is retried; a growing count needs a human).
pub static PROJECTION_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "projection_errors_total",
                "Projection batches that failed and were retried",
            ),
            &["projection"],
        )
        .expect("valid metric"),
    )
});
