//! The audit endpoints (auditor or admin): `GET /audit/digest`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{SubsecRound, Utc};
use domain::Role;
use serde_json::{json, Value};

use crate::auth::Auth;
use crate::error::ApiResult;
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
    let d = state.store.log_digest().await?;
    Ok(Json(json!({
        "position": d.position,
        "hash": d.hex(),
        "computed_at": Utc::now().trunc_subsecs(6),
        "events": d.events,
    })))
}
