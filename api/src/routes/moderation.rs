//! Communication moderation (seed 000 §9): banned-phrase filters (`GET/PUT /moderation/filters`,
//! `POST /moderation/filters/test`), sanctions (`POST /moderation/actions/ban|mute`,
//! `GET /moderation/sanctions`, `POST /moderation/sanctions/{id}/revoke`), reports
//! (`POST/GET /reports`, `GET/PATCH /reports/{id}`), notices (`POST /notices`) and message search
//! (`GET /messages/search`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use commands::moderation::{self as m, NewSanction};
use commands::{Context, Executed};
use domain::chat::{
    NewNotice, NewReport, ReportStatus, Sanction, SanctionKind, SanctionScope, MAX_TEXT,
};
use domain::Role;
use projections::chat::moderation::{self as mq, ReportRow, SanctionRow};
use projections::chat::queries as q;
use projections::page::Page;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::chat::{message_json, reactions_by_message, visible};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_uuid, ApiJson, ApiQuery};
use crate::state::AppState;

const PROJECTION: &str = projections::chat::ChatProjection::NAME;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/moderation/filters", get(get_filters).put(put_filters))
        .route("/moderation/filters/test", post(test_filters))
        .route("/moderation/actions/ban", post(ban))
        .route("/moderation/actions/mute", post(mute))
        .route("/moderation/sanctions", get(list_sanctions))
        .route("/moderation/sanctions/{id}/revoke", post(revoke))
        .route("/reports", post(file_report).get(list_reports))
        .route("/reports/{id}", get(get_report).patch(move_report))
        .route("/notices", post(broadcast_notice))
        .route("/messages/search", get(search))
}

// ---------- filters ----------

async fn get_filters(State(state): State<AppState>, _: Auth) -> ApiResult<Json<Value>> {
    let f = m::filters(&state.bus).await?;
    Ok(Json(json!({"phrases": f.phrases, "version": f.version})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutFilters {
    phrases: Vec<String>,
    version: i64,
}

async fn put_filters(
    State(state): State<AppState>,
    Auth(actor): Auth,
    body: ApiJson<PutFilters>,
) -> ApiResult<Json<Value>> {
    let b = body.value;
    let exec = m::replace_filters(&state.bus, &Context::new(actor), b.phrases, b.version).await?;
    let f = match exec {
        Executed::Done { state: f, .. } => f,
        Executed::Replayed(_) => m::filters(&state.bus).await?,
    };
    Ok(Json(json!({"phrases": f.phrases, "version": f.version})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFilters {
    text: String,
}

async fn test_filters(
    State(state): State<AppState>,
    auth: Auth,
    body: ApiJson<TestFilters>,
) -> ApiResult<Json<Value>> {
    let text = body.value.text;
    if text.chars().count() > MAX_TEXT {
        return Err(ApiError::validation(format!(
            "text must be at most {MAX_TEXT} characters"
        )));
    }
    let f = m::try_filters(&state.bus, &auth.0, &text).await?;
    Ok(Json(
        json!({"filtered": !f.matches.is_empty(), "matches": f.matches, "masked_text": f.text}),
    ))
}

// ---------- sanctions ----------

fn sanction_json(s: &Sanction) -> Value {
    json!({
        "id": s.id, "user_id": s.user_id, "type": s.kind.as_str(), "scope": s.scope.as_str(),
        "chat_id": s.chat_id, "reason": s.reason, "applied_by": s.applied_by, "applied_at": s.applied_at,
        "until": s.until, "revoked_at": s.revoked_at, "revoked_by": s.revoked_by,
    })
}

fn sanction_row_json(s: &SanctionRow) -> Value {
    json!({
        "id": s.id, "user_id": s.user_id, "type": s.kind, "scope": s.scope, "chat_id": s.chat_id,
        "reason": s.reason, "applied_by": s.applied_by, "applied_at": s.applied_at, "until": s.until,
        "revoked_at": s.revoked_at, "revoked_by": s.revoked_by,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SanctionBody {
    user_id: String,
    #[serde(rename = "type", default)]
    kind: Option<SanctionKind>,
    scope: SanctionScope,
    #[serde(default)]
    chat_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
}

async fn ban(
    State(state): State<AppState>,
    auth: Auth,
    body: ApiJson<SanctionBody>,
) -> ApiResult<Response> {
    sanction(state, auth, body.value, SanctionKind::Ban).await
}

async fn mute(
    State(state): State<AppState>,
    auth: Auth,
    body: ApiJson<SanctionBody>,
) -> ApiResult<Response> {
    sanction(state, auth, body.value, SanctionKind::Mute).await
}

/// The chat a sanction names, if the caller may see it (404 otherwise).
async fn sanction_chat(state: &AppState, actor: &domain::Actor, chat_id: &str) -> ApiResult<Uuid> {
    Ok(visible(state, chat_id, actor).await?.0)
}

async fn sanction(
    state: AppState,
    Auth(actor): Auth,
    b: SanctionBody,
    kind: SanctionKind,
) -> ApiResult<Response> {
    if b.kind.is_some_and(|k| k != kind) {
        return Err(ApiError::validation(format!(
            "type must be {:?} on this route",
            kind.as_str()
        )));
    }
    let chat = match (b.scope, &b.chat_id) {
        (SanctionScope::Chat, Some(id)) => Some(sanction_chat(&state, &actor, id).await?),
        (SanctionScope::Chat, None) => {
            return Err(ApiError::validation("scope chat needs chat_id"));
        }
        (SanctionScope::Global, Some(_)) => {
            return Err(ApiError::validation("a global sanction has no chat_id"));
        }
        (SanctionScope::Global, None) => None,
    };
    let new = NewSanction {
        user_id: b.user_id.trim().to_string(),
        kind,
        scope: b.scope,
        reason: b.reason.filter(|r| !r.trim().is_empty()),
        until: b.until,
    };
    let ctx = Context::new(actor);
    let (s, stored) = m::apply_sanction(&state.bus, &ctx, chat, new).await?;
    state.settle(PROJECTION, &stored).await;
    Ok((StatusCode::CREATED, Json(sanction_json(&s))).into_response())
}

#[derive(Debug, Deserialize)]
struct SanctionsQuery {
    user_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Active sanctions: all for admins; for others, their own and those of chats they moderate.
async fn list_sanctions(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(p): ApiQuery<SanctionsQuery>,
) -> ApiResult<Json<Value>> {
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let viewer = (!actor.has(Role::Admin)).then_some(actor.user_id.as_str());
    let (rows, next) =
        mq::active_sanctions(&state.db, viewer, p.user_id.as_deref(), Utc::now(), page).await?;
    Ok(Json(json!({
        "sanctions": rows.iter().map(sanction_row_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

async fn revoke(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let sid = path_uuid(&id, "sanction")?;
    let row = mq::sanction(&state.db, &sid.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("sanction"))?;
    let chat = match &row.chat_id {
        Some(c) => Some(
            sanction_chat(&state, &actor, c)
                .await
                .map_err(|_| ApiError::not_found("sanction"))?,
        ),
        None => None,
    };
    let exec = m::revoke_sanction(&state.bus, &Context::new(actor), chat, sid).await?;
    state.settle(PROJECTION, &exec).await;
    let row = mq::sanction(&state.db, &sid.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("sanction"))?;
    Ok(Json(sanction_row_json(&row)))
}

// ---------- reports ----------

fn report_json(r: &ReportRow) -> Value {
    json!({
        "id": r.id, "reporter_id": r.reporter_id, "message_id": r.message_id,
        "reported_user_id": r.reported_user_id, "reason": r.reason,
        "evidence": r.evidence,
        "status": r.status, "resolution_notes": r.resolution_notes,
        "created_at": r.created_at, "updated_at": r.updated_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    reason: String,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    reported_user_id: Option<String>,
    #[serde(default)]
    evidence: Vec<String>,
}

/// Anyone may report a message they can read, or a user; the reported user defaults to the
/// message's author.
async fn file_report(
    State(state): State<AppState>,
    Auth(actor): Auth,
    body: ApiJson<ReportBody>,
) -> ApiResult<Response> {
    let b = body.value;
    let (message_id, chat_id, author) = match &b.message_id {
        Some(raw) => {
            let id = path_uuid(raw, "message")?;
            let row = q::message(&state.db, &id.to_string())
                .await?
                .ok_or_else(|| ApiError::not_found("message"))?;
            // A message of a chat the reporter cannot read does not exist for them.
            visible(&state, &row.chat_id, &actor)
                .await
                .map_err(|_| ApiError::not_found("message"))?;
            (Some(id), row.chat_id.parse().ok(), Some(row.author_id))
        }
        None => (None, None, None),
    };
    let report = NewReport {
        id: Uuid::now_v7(),
        reporter_id: actor.user_id.clone(),
        message_id,
        chat_id,
        reported_user_id: b.reported_user_id.map(|u| u.trim().to_string()).or(author),
        reason: b.reason.trim().to_string(),
        evidence: b.evidence,
    };
    let id = report.id.to_string();
    let exec = m::file_report(&state.bus, &Context::new(actor), report).await?;
    state.settle(PROJECTION, &exec).await;
    let row = mq::report(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("report"))?;
    Ok((StatusCode::CREATED, Json(report_json(&row))).into_response())
}

#[derive(Debug, Deserialize)]
struct ReportsQuery {
    status: Option<ReportStatus>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_reports(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<ReportsQuery>,
) -> ApiResult<Json<Value>> {
    crate::service::chat::may_list_reports(&auth.0)?;
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let (rows, next) = mq::reports(&state.db, p.status.map(|s| s.as_str()), page).await?;
    Ok(Json(json!({
        "reports": rows.iter().map(report_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// Admins, and the reporter (their own report); others get 404.
async fn get_report(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let row = crate::service::chat::visible_report(&state, &actor, &id).await?;
    Ok(Json(report_json(&row)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveReport {
    status: ReportStatus,
    #[serde(default)]
    resolution_notes: Option<String>,
}

/// `PATCH /reports/{id}` `{"status", "resolution_notes"}` (admins):
/// `open → triaged → resolved | rejected`; any other move is 409.
async fn move_report(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: ApiJson<MoveReport>,
) -> ApiResult<Json<Value>> {
    auth.require_any(&[Role::Admin])?;
    let id = path_uuid(&id, "report")?;
    let b = body.value;
    let exec = m::move_report(
        &state.bus,
        &Context::new(auth.0),
        id,
        b.status,
        b.resolution_notes,
    )
    .await?;
    state.settle(PROJECTION, &exec).await;
    let row = mq::report(&state.db, &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("report"))?;
    Ok(Json(report_json(&row)))
}

// ---------- notices ----------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeBody {
    title: String,
    body: String,
    chat_ids: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// `POST /notices` (admins): posts a `type: "notice"` message into each listed chat.
async fn broadcast_notice(
    State(state): State<AppState>,
    auth: Auth,
    body: ApiJson<NoticeBody>,
) -> ApiResult<Response> {
    auth.require_any(&[Role::Admin])?;
    let b = body.value;
    let chat_ids =
        domain::chat::notice_chat_ids(&b.chat_ids, "chat_ids").map_err(ApiError::validation)?;
    let notice = NewNotice {
        id: Uuid::now_v7(),
        title: b.title.trim().to_string(),
        body: b.body.trim().to_string(),
        created_by: auth.0.user_id.clone(),
        chat_ids,
        roles: b.roles,
    };
    let exec = m::broadcast_notice(&state.bus, &Context::new(auth.0), notice.clone()).await?;
    state.settle(PROJECTION, &exec).await;
    let created_at = match &exec {
        Executed::Done { state: n, .. } => n.created_at,
        Executed::Replayed(_) => None,
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": notice.id, "title": notice.title, "body": notice.body, "created_by": notice.created_by,
            "chat_ids": notice.chat_ids, "roles": notice.roles, "created_at": created_at,
        })),
    )
        .into_response())
}

// ---------- search ----------

#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: String,
    chat_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /messages/search?q=` (every word must occur; optional `chat_id`), over the chats the caller
/// can read only; newest first.
async fn search(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(p): ApiQuery<SearchQuery>,
) -> ApiResult<Json<Value>> {
    if p.q.chars().count() > 200 {
        return Err(ApiError::validation("q must be at most 200 characters"));
    }
    let terms = mq::search_terms(&p.q);
    if terms.is_empty() {
        return Err(ApiError::validation(
            "q must contain at least one word (letters or digits)",
        ));
    }
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let chat_id = match &p.chat_id {
        Some(c) => Some(visible(&state, c, &actor).await?.0.to_string()),
        None => None,
    };
    let (rows, next) = mq::search_messages(
        &state.db,
        &terms,
        chat_id.as_deref(),
        &actor.user_id,
        actor.has(Role::Admin),
        page,
    )
    .await?;
    let reactions = reactions_by_message(&state, &rows).await?;
    let messages: Vec<Value> = rows
        .into_iter()
        .map(|m| {
            let r = reactions.get(&m.id).cloned().unwrap_or_default();
            message_json(m, r)
        })
        .collect();
    Ok(Json(json!({"messages": messages, "next_cursor": next})))
}
