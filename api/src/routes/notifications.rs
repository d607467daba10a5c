//! The caller's notification inbox: `GET /notifications`, `GET /notifications/unread-count`,
//! `PATCH /notifications/{id}/read`, `PATCH /notifications/read-all`, `DELETE /notifications/{id}`.
//! Only the owner sees or changes their notifications; anything else is a 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch};
use axum::{Json, Router};
use commands::{inbox, Context};
use projections::page::Page;
use projections::sinks::notifications::{self as n, InboxProjection, NotificationRow, Reader};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/notifications", get(list))
        .route("/notifications/unread-count", get(unread_count))
        .route("/notifications/read-all", patch(read_all))
        .route("/notifications/{id}/read", patch(read_one))
        .route("/notifications/{id}", delete(remove))
}

fn reader(actor: &domain::Actor) -> Reader<'_> {
    Reader {
        user_id: &actor.user_id,
        roles: actor.roles.iter().map(|r| r.as_str().to_string()).collect(),
    }
}

fn render(row: NotificationRow) -> Value {
    let data: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
    let mut v = json!(row);
    v["data"] = data;
    v
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    unread_only: Option<bool>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(p): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let (rows, next) = n::list(
        &state.db,
        &reader(&actor),
        p.unread_only.unwrap_or(false),
        page,
    )
    .await?;
    Ok(Json(
        json!({"notifications": rows.into_iter().map(render).collect::<Vec<_>>(), "next_cursor": next}),
    ))
}

async fn unread_count(State(state): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"unread": n::unread_count(&state.db, &reader(&actor)).await?}),
    ))
}

async fn read_one(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    n::get(&state.db, &reader(&actor), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("notification"))?;
    let exec = inbox::mark_read(&state.bus, &Context::new(actor.clone()), id.clone()).await?;
    state.settle(InboxProjection::NAME, &exec).await;
    let row = n::get(&state.db, &reader(&actor), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("notification"))?;
    Ok(Json(render(row)))
}

async fn read_all(State(state): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<Value>> {
    let before = n::unread_count(&state.db, &reader(&actor)).await?;
    let up_to = n::max_seq(&state.db).await?;
    let exec = inbox::mark_all_read(&state.bus, &Context::new(actor.clone()), up_to).await?;
    state.settle(InboxProjection::NAME, &exec).await;
    let after = n::unread_count(&state.db, &reader(&actor)).await?;
    Ok(Json(
        json!({"updated": (before - after).max(0), "unread": after}),
    ))
}

async fn remove(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    n::get(&state.db, &reader(&actor), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("notification"))?;
    let exec = inbox::delete(&state.bus, &Context::new(actor), id).await?;
    state.settle(InboxProjection::NAME, &exec).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
