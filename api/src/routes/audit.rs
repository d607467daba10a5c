//! The audit endpoints (auditor or admin): `GET /audit/digest`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{SubsecRound, Utc};
use domain::Role;
use serde_json::{json, Value};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/audit/digest", get(digest))
}

/// `GET /audit/digest` → `{"position", "hash", "computed_at", "events"}`: the digest of the whole
/// log up to its stable position (docs/AUDIT.md). Reads every chain hash up to there (about a
/// second per million events); `fafcab audit verify --digest <hash> --position <position>` later
/// proves the log up to that point unchanged.
async fn digest(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_any(&[Role::Auditor, Role::Admin])?;
    let d = state
        .store
        .log_digest()
        .await
        .map_err(broken_busy_or_internal)?;
    Ok(Json(json!({
        "position": d.position,
        "hash": d.hex(),
        "computed_at": Utc::now().trunc_subsecs(6),
        "events": d.events,
    })))
}

/// Most broken streams listed in a 409's details (all are counted).
const MAX_BROKEN_LISTED: usize = 100;

/// A log whose chains are broken gets no digest: 409 `CONFLICT` naming the broken streams. The
/// digest waits at most 10 s for appends in flight (`lock_timeout`); when that runs out the log is
/// busy, not broken: 503 `UNAVAILABLE`, so the caller retries.
fn broken_busy_or_internal(e: anyhow::Error) -> ApiError {
    if let Some(b) = e.downcast_ref::<eventstore::BrokenLog>() {
        let listed: Vec<Value> = b
            .breaks
            .iter()
            .take(MAX_BROKEN_LISTED)
            .map(|s| {
                json!({
                    "stream": format!("{}/{}", s.at.aggregate_type, s.at.aggregate_id),
                    "sequence": s.at.sequence,
                    "position": s.position,
                    "hash": s.kind.as_str(),
                })
            })
            .collect();
        return ApiError::Conflict(
            b.to_string(),
            Some(json!({
                "position": b.position,
                "broken_streams": b.breaks.len(),
                "broken": listed,
            })),
        );
    }
    let lock_timeout = e.chain().any(|c| {
        c.downcast_ref::<sqlx::Error>()
            .and_then(|s| s.as_database_error())
            .and_then(|d| d.code())
            .is_some_and(|code| code == "55P03")
    });
    if lock_timeout {
        ApiError::Unavailable("the log is busy with appends; try again".into())
    } else {
        e.into()
    }
}
