//! Chat reads shared by every edge: who may see a chat, which live events can take a chat away
//! from a subscriber, and moving a read position (REST `PUT /chats/{id}/read`, the `/ws` `read`
//! op and GraphQL `markRead` answer the same object).

use commands::Context;
use domain::{Actor, Role};
use projections::chat::queries::{self as q, ChatRow};
use projections::chat::ChatProjection;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::path_uuid;
use crate::state::AppState;

/// The chat as the caller may see it, or 404 (never 403: a private chat does not exist for them).
pub async fn visible(state: &AppState, raw_id: &str, actor: &Actor) -> ApiResult<(Uuid, ChatRow)> {
    let id = path_uuid(raw_id, "chat")?;
    let row = q::visible_chat(
        &state.db,
        &id.to_string(),
        &actor.user_id,
        actor.has(Role::Admin),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("chat"))?;
    Ok((id, row))
}

/// Moves the caller's read position (also the `/ws` `read` op) and answers the position, which
/// never moves back: reading an earlier message answers the unchanged position.
pub async fn mark_read(
    state: &AppState,
    actor: &Actor,
    chat_id: Uuid,
    raw_message_id: &str,
) -> ApiResult<Value> {
    let message_id = path_uuid(raw_message_id, "message")?;
    let exec = commands::chat::mark_read(
        &state.bus,
        &Context::new(actor.clone()),
        chat_id,
        message_id,
    )
    .await?;
    let commands::Executed::Done {
        state: position,
        stored,
        ..
    } = exec
    else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "read positions are not replayed"
        )));
    };
    state.settle(ChatProjection::NAME, &stored).await;
    Ok(json!({
        "chat_id": chat_id, "user_id": actor.user_id,
        "last_read_message_id": position.last_read_message_id,
        "last_read_at": position.last_read_at,
    }))
}

/// Listing reports is for admins (REST `GET /reports`, GraphQL `reports`).
pub fn may_list_reports(actor: &Actor) -> ApiResult<()> {
    if actor.has(Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("requires role admin".into()))
    }
}

/// The report `raw` names if the caller may see it: admins, and its reporter; to anyone else it
/// does not exist (not found).
pub async fn visible_report(
    state: &AppState,
    actor: &Actor,
    raw: &str,
) -> ApiResult<projections::chat::moderation::ReportRow> {
    let id = path_uuid(raw, "report")?;
    projections::chat::moderation::report(&state.db, &id.to_string())
        .await?
        .filter(|r| r.reporter_id == actor.user_id || actor.has(Role::Admin))
        .ok_or_else(|| ApiError::not_found("report"))
}
