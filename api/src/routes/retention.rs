//! `GET /retention?chat_id=` and `PUT /retention` (seed 000 §9): a chat's retention period, post
//! policy and free-form `extra`. Anyone who sees the chat reads them; owners, moderators and admins
//! change them (403 for members, 404 for those who cannot see the chat).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use commands::Context;
use domain::chat::{Chat, ChatEvent, ChatSettings, SettingsPatch};
use domain::Role;
use projections::chat::queries as q;
use serde::Deserialize;
use serde_json::{json, Value};

use super::answer;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_uuid, ApiJson, ApiQuery};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/retention", get(get_retention).put(put_retention))
}

#[derive(Debug, Deserialize)]
struct RetentionQuery {
    chat_id: String,
}

async fn get_retention(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(p): ApiQuery<RetentionQuery>,
) -> ApiResult<Json<Value>> {
    let id = path_uuid(&p.chat_id, "chat")?;
    let row = q::visible_chat(
        &state.db,
        &id.to_string(),
        &actor.user_id,
        actor.has(Role::Admin),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("chat"))?;
    let s: ChatSettings = serde_json::from_value(row.settings).map_err(|e| {
        ApiError::Internal(anyhow::Error::new(e).context("corrupt chat settings in the read model"))
    })?;
    Ok(Json(json!({
        "chat_id": row.id, "retention_days": s.retention_days, "post_policy": s.post_policy, "extra": s.extra,
    })))
}

/// Omitted fields keep their current value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutRetention {
    chat_id: String,
    retention_days: Option<i64>,
    post_policy: Option<String>,
    extra: Option<Value>,
}

fn retention_json(c: &Chat, _: &[ChatEvent]) -> Value {
    json!({
        "chat_id": c.chat_id.map(|i| i.to_string()), "retention_days": c.settings.retention_days,
        "post_policy": c.settings.post_policy, "extra": c.settings.extra,
        "updated_at": c.settings_changed_at.or(c.created_at),
    })
}

async fn put_retention(
    State(state): State<AppState>,
    Auth(actor): Auth,
    body: ApiJson<PutRetention>,
) -> ApiResult<Response> {
    let b = body.value;
    let id = path_uuid(&b.chat_id, "chat")?;
    // A chat the caller cannot see does not exist for them.
    q::visible_chat(
        &state.db,
        &id.to_string(),
        &actor.user_id,
        actor.has(Role::Admin),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("chat"))?;
    let patch = SettingsPatch {
        retention_days: b.retention_days,
        post_policy: b.post_policy,
        extra: b.extra,
    };
    let exec =
        commands::retention::patch_settings(&state.bus, &Context::new(actor), id, patch).await?;
    answer(
        &state,
        projections::chat::ChatProjection::NAME,
        StatusCode::OK,
        exec,
        retention_json,
    )
    .await
}
