//! Operations: health, metrics, and the audit feed of CloudEvents.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use domain::Role;
use eventstore::Checkpoint;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// Projection lag (in events) above which `/health` reports `events: "lagging"`.
pub const LAG_WARN_EVENTS: i64 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/admin/metrics", get(crate::metrics::render))
        .route("/admin/events", get(audit_feed))
}

async fn health(State(state): State<AppState>) -> Response {
    let db_ok = state.store.ping().await.is_ok();
    let events = if !db_ok {
        "unknown"
    } else {
        let head = state.store.head_position().await.unwrap_or(0);
        let lagging = state.runner.names().into_iter().any(|n| {
            head - state.runner.progress(n).map(|c| c.position).unwrap_or(0) > LAG_WARN_EVENTS
        });
        if state.settings.run_workers && !state.relay.status().up() {
            // The relay cannot reach RabbitMQ: events wait in the log until it can.
            "down"
        } else if lagging {
            "lagging"
        } else {
            "ok"
        }
    };
    let mut checks = json!({"db": if db_ok { "ok" } else { "down" }, "events": events});
    for (name, st) in &state.sinks {
        let s = st.get();
        checks[*name] = json!(if s == "ok" { "ok".to_string() } else { s });
    }
    let status = if db_ok { "ok" } else { "degraded" };
    let code = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "checks": checks,
        "time": Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    (code, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /admin/events?after=<position>&limit=<n>` (admin or auditor): the committed log as
/// CloudEvents, in gap-safe log order. `next_after` is the position to pass next time.
async fn audit_feed(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<FeedQuery>,
) -> ApiResult<Json<Value>> {
    auth.require_any(&[Role::Admin, Role::Auditor])?;
    let limit = p.limit.unwrap_or(projections::page::DEFAULT_LIMIT);
    if !(1..=projections::page::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit must be between 1 and {}",
            projections::page::MAX_LIMIT
        )));
    }
    let after = p.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::validation("after must be a position (0 or more)"));
    }
    let from: Checkpoint = state
        .store
        .checkpoint_of(after)
        .await?
        .ok_or_else(|| ApiError::validation("after names no position in the log"))?;
    let batch = state.store.read_log(from, limit).await?;
    let next_after = batch.events.last().map(|e| e.position).unwrap_or(after);
    let events: Vec<Value> = batch
        .events
        .iter()
        .map(|e| {
            let mut v = json!(projections::cloudevents::to_cloud_event(e));
            v["position"] = json!(e.position);
            v
        })
        .collect();
    Ok(Json(json!({"events": events, "next_after": next_after})))
}
