//! Communication (seed 000 §9), first part: profiles (`POST /users/sync`, `GET /users/search`,
//! `GET /profiles/{user_id}`, `POST /presence/heartbeat`) and chats with their members
//! (`POST/GET /chats`, `GET/PATCH /chats/{id}`, `POST /chats/{id}/members`,
//! `DELETE /chats/{id}/members/{user_id}`). A private chat does not exist for a non-member: 404.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::Utc;
use commands::message::{AttachmentDraft, Draft};
use commands::{chat as cmd, Context};
use domain::chat::{
    Chat, ChatEvent, ChatType, MemberRole, MessageType, NewChat, Operation, OperationEvent,
    ProfileData,
};
use domain::{Actor, Role};
use projections::chat::queries::{self as q, ChatFilter, ChatRow};
use projections::page::Page;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{answer, reply, Idempotent};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_uuid, ApiJson, ApiQuery, IdempotencyKey};
use crate::state::AppState;
// The access rules live in the application layer; `/ws` and GraphQL subscriptions still name
// them through here.
pub(crate) use crate::service::chat::{mark_read, visible};

const PROJECTION: &str = projections::chat::ChatProjection::NAME;
/// Users one sync request may carry.
pub const MAX_SYNC_USERS: usize = 1_000;
/// A heartbeat younger than this means online.
pub use crate::presence::PRESENCE_TTL_SECS;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/sync", post(sync_users))
        .route("/users/search", get(search_users))
        .route("/profiles/{user_id}", get(get_profile))
        .route("/presence/heartbeat", post(heartbeat))
        .route("/chats", post(create_chat).get(list_chats))
        .route("/chats/{chat_id}", get(get_chat).patch(patch_chat))
        .route("/chats/{chat_id}/members", post(add_member))
        .route("/chats/{chat_id}/members/{user_id}", delete(remove_member))
        .route(
            "/chats/{chat_id}/messages",
            post(post_message).get(list_messages),
        )
        .route(
            "/chats/{chat_id}/messages/{msg_id}",
            delete(delete_message).patch(edit_message),
        )
        .route(
            "/chats/{chat_id}/messages/{msg_id}/reactions",
            post(add_reaction),
        )
        .route(
            "/chats/{chat_id}/messages/{msg_id}/reactions/{emoji}",
            delete(remove_reaction),
        )
        .route("/operations/{operation_id}", get(get_operation))
        .route("/chats/{chat_id}/read", axum::routing::put(put_read))
        .route("/chats/{chat_id}/unread-count", get(unread_count))
}

// ---------- profiles ----------

#[derive(Debug, Deserialize)]
struct SyncUser {
    user_id: String,
    nickname: String,
    #[serde(default)]
    avatar_url: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    discord_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SyncBody {
    users: Vec<SyncUser>,
}

/// Admins, or User Management presenting `X-Internal-Secret` (when `INTERNAL_API_SECRET` is set).
async fn sync_users(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: ApiJson<SyncBody>,
) -> ApiResult<Json<Value>> {
    let internal = match (
        &state.settings.internal_api_secret,
        headers.get("x-internal-secret"),
    ) {
        (Some(secret), Some(given)) => {
            use sha2::{Digest, Sha256};
            // Compare digests, not the secrets: no early exit that leaks a prefix.
            let ok = crate::auth::digests_equal(
                &Sha256::digest(given.as_bytes()),
                &Sha256::digest(secret.as_bytes()),
            );
            if !ok {
                return Err(ApiError::Unauthorized("bad X-Internal-Secret".into()));
            }
            true
        }
        _ => false,
    };
    let actor = if internal {
        Actor::new("system:user-sync", vec![Role::Admin])
    } else {
        let token = crate::auth::bearer(&headers)?;
        let actor = crate::auth::verify(&state.settings.jwt_secret, token)?;
        if !actor.has(Role::Admin) {
            return Err(ApiError::Forbidden(
                "requires role admin or X-Internal-Secret".into(),
            ));
        }
        actor
    };
    let users = body.value.users;
    if users.len() > MAX_SYNC_USERS {
        return Err(ApiError::validation(format!(
            "at most {MAX_SYNC_USERS} users per request"
        )));
    }
    let ctx = Context::new(actor);
    let mut last = vec![];
    for (i, u) in users.iter().enumerate() {
        if u.user_id.trim().is_empty() || u.user_id.len() > 128 {
            return Err(ApiError::Validation(
                format!("users[{i}].user_id must be 1 to 128 characters"),
                None,
            ));
        }
        let data = ProfileData {
            nickname: u.nickname.trim().to_string(),
            avatar_url: u.avatar_url.clone(),
            roles: u.roles.clone(),
            discord_id: u.discord_id.clone(),
        };
        let exec = cmd::sync_profile(&state.bus, &ctx, &u.user_id, data)
            .await
            .map_err(|e| match ApiError::from(e) {
                ApiError::Validation(m, d) => ApiError::Validation(format!("users[{i}]: {m}"), d),
                other => other,
            })?;
        if let commands::Executed::Done { stored, .. } = exec {
            last.extend(stored);
        }
    }
    state.settle(PROJECTION, &last).await;
    Ok(Json(json!({"synced": users.len()})))
}

fn profile_json(p: &q::ProfileRow) -> Value {
    json!({
        "user_id": p.user_id,
        "nickname": p.nickname,
        "avatar_url": p.avatar_url,
        "roles": p.roles,
    })
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: String,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn search_users(
    State(state): State<AppState>,
    _: Auth,
    ApiQuery(p): ApiQuery<SearchQuery>,
) -> ApiResult<Json<Value>> {
    let q = p.q.trim();
    if q.is_empty() || q.chars().count() > 64 {
        return Err(ApiError::validation("q must be 1 to 64 characters"));
    }
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let (rows, next) = q::search_profiles(&state.db, q, page).await?;
    Ok(Json(
        json!({"profiles": rows.iter().map(profile_json).collect::<Vec<_>>(), "next_cursor": next}),
    ))
}

async fn get_profile(
    State(state): State<AppState>,
    _: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let p = q::profile(&state.db, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("profile"))?;
    let online = crate::presence::is_online(&state.db, &user_id).await?;
    let mut v = profile_json(&p);
    v["presence"] = json!(if online { "online" } else { "offline" });
    Ok(Json(v))
}

async fn heartbeat(State(state): State<AppState>, Auth(actor): Auth) -> ApiResult<Response> {
    let mut tx = state.db.begin().await?;
    eventstore::tx_exec!(
        &mut tx,
        "INSERT INTO presence (user_id, last_seen) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE SET last_seen = excluded.last_seen",
        &actor.user_id,
        Utc::now()
    )?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------- chats ----------

fn chat_json_from_row(r: &ChatRow) -> Value {
    json!({
        "id": r.id, "type": r.kind, "name": r.name, "slug": r.slug, "is_private": r.is_private,
        "created_by": r.created_by, "created_at": r.created_at, "updated_at": r.updated_at,
        "member_count": r.member_count,
        "settings": r.settings,
    })
}

fn chat_json(c: &Chat, _: &[ChatEvent]) -> Value {
    json!({
        "id": c.chat_id.map(|i| i.to_string()), "type": c.kind.map(|k| k.as_str()), "name": c.name, "slug": c.slug,
        "is_private": c.is_private, "created_by": c.created_by, "created_at": c.created_at, "updated_at": c.updated_at,
        "member_count": c.members.len(), "settings": c.settings,
    })
}

#[derive(Debug, Deserialize)]
struct CreateChat {
    #[serde(rename = "type")]
    kind: ChatType,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    slug: Option<String>,
    #[serde(default)]
    is_private: Option<bool>,
    #[serde(default)]
    member_ids: Vec<String>,
}

async fn create_chat(
    State(state): State<AppState>,
    Auth(actor): Auth,
    idem: IdempotencyKey,
    body: ApiJson<CreateChat>,
) -> ApiResult<Response> {
    let b = body.value;
    let chat = NewChat {
        chat_id: Uuid::now_v7(),
        kind: b.kind,
        name: b.name.map(|n| n.trim().to_string()),
        slug: b.slug,
        // A dm is private; groups default to private, channels to public.
        is_private: b.is_private.unwrap_or(b.kind != ChatType::Channel),
        member_ids: b.member_ids,
    };
    let ctx = Context::new(actor);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, chat_json);
    let exec = cmd::create_chat(&state.bus, &ctx, chat, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

#[derive(Debug, Deserialize)]
struct ListChats {
    #[serde(rename = "type")]
    kind: Option<ChatType>,
    member: Option<String>,
    q: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_chats(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(p): ApiQuery<ListChats>,
) -> ApiResult<Json<Value>> {
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let f = ChatFilter {
        kind: p.kind.map(|k| k.as_str().to_string()),
        member: p.member,
        q: p.q.filter(|s| !s.trim().is_empty()),
    };
    let (rows, next) = q::my_chats(&state.db, &actor.user_id, &f, page).await?;
    Ok(Json(
        json!({"chats": rows.iter().map(chat_json_from_row).collect::<Vec<_>>(), "next_cursor": next}),
    ))
}

async fn get_chat(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, row) = visible(&state, &id, &actor).await?;
    Ok(Json(chat_json_from_row(&row)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchChat {
    name: Option<String>,
    is_private: Option<bool>,
}

async fn patch_chat(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    body: ApiJson<PatchChat>,
) -> ApiResult<Response> {
    let (id, _) = visible(&state, &id, &actor).await?;
    let b = body.value;
    let exec = cmd::update_chat(
        &state.bus,
        &Context::new(actor),
        id,
        b.name.map(|n| n.trim().to_string()),
        b.is_private,
    )
    .await?;
    answer(&state, PROJECTION, StatusCode::OK, exec, chat_json).await
}

#[derive(Debug, Deserialize)]
struct AddMember {
    user_id: String,
    #[serde(default)]
    role: Option<MemberRole>,
}

fn member_json(user_id: &str) -> impl Fn(&Chat, &[ChatEvent]) -> Value + '_ {
    move |c: &Chat, _: &[ChatEvent]| match c.member(user_id) {
        Some(m) => {
            json!({"id": m.membership_id, "user_id": m.user_id, "role": m.role.as_str(), "joined_at": m.joined_at, "left_at": Value::Null})
        }
        None => Value::Null,
    }
}

async fn add_member(
    State(state): State<AppState>,
    Auth(actor): Auth,
    idem: IdempotencyKey,
    Path(id): Path<String>,
    body: ApiJson<AddMember>,
) -> ApiResult<Response> {
    let (id, _) = visible(&state, &id, &actor).await?;
    let b = body.value;
    let user_id = b.user_id.trim().to_string();
    let ctx = Context::new(actor);
    let role = b.role.unwrap_or(MemberRole::Member);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, member_json(&user_id));
    let exec = cmd::add_member(&state.bus, &ctx, id, user_id.clone(), role, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

async fn remove_member(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (id, _) = visible(&state, &id, &actor).await?;
    let exec = cmd::remove_member(&state.bus, &Context::new(actor), id, user_id).await?;
    if let commands::Executed::Done { stored, .. } = &exec {
        state.settle(PROJECTION, stored).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------- messages ----------

#[derive(Debug, Deserialize)]
struct AttachmentReq {
    url: String,
    content_type: String,
    size_bytes: i64,
    #[serde(default)]
    extra: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct PostMessage {
    #[serde(default)]
    text: String,
    #[serde(rename = "type", default)]
    kind: Option<MessageType>,
    #[serde(default)]
    attachments: Vec<AttachmentReq>,
    #[serde(default)]
    metadata: Option<Value>,
}

fn accepted(op: &str) -> Value {
    json!({"operation_id": op, "status": "accepted", "poll": format!("/operations/{op}")})
}

/// 202 with `Operation-Id` and `Location`, for a fresh or a replayed submission alike.
fn accepted_response(body: Value) -> Response {
    let op = body["operation_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&op) {
        resp.headers_mut().insert("operation-id", v);
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("/operations/{op}")) {
        resp.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    resp
}

async fn post_message(
    State(state): State<AppState>,
    Auth(actor): Auth,
    idem: IdempotencyKey,
    Path(id): Path<String>,
    body: ApiJson<PostMessage>,
) -> ApiResult<Response> {
    let chat_id = path_uuid(&id, "chat")?;
    let b = body.value;
    let draft = Draft {
        kind: b.kind.unwrap_or(MessageType::Normal),
        text: b.text,
        attachments: b
            .attachments
            .into_iter()
            .map(|a| AttachmentDraft {
                url: a.url,
                content_type: a.content_type,
                size_bytes: a.size_bytes,
                extra: a.extra.unwrap_or_else(|| json!({})),
            })
            .collect(),
        metadata: b.metadata.unwrap_or_else(|| json!({})),
    };
    let idem = idem.for_body(&body.raw);
    let render = |o: &Operation, _: &[OperationEvent]| {
        let op = o.submission.as_ref().map(|s| s.operation_id.to_string());
        reply(StatusCode::ACCEPTED, &accepted(&op.unwrap_or_default()))
    };
    let (operation_id, exec) = commands::message::post(
        &state.bus,
        &Context::new(actor),
        chat_id,
        draft,
        idem.as_ref().map(|i| (i, &render as _)),
    )
    .await?;
    match exec {
        commands::Executed::Done { stored, .. } => {
            state.settle(PROJECTION, &stored).await;
            Ok(accepted_response(accepted(&operation_id.to_string())))
        }
        commands::Executed::Replayed(r) => Ok(accepted_response(
            serde_json::from_str(&r.body).unwrap_or(Value::Null),
        )),
    }
}

async fn get_operation(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let op = q::operation(&state.db, &id).await?;
    // Someone else's operation does not exist for you.
    let op = op
        .filter(|o| o.user_id == actor.user_id || actor.has(Role::Admin))
        .ok_or_else(|| ApiError::not_found("operation"))?;
    Ok(Json(
        json!({"operation_id": op.id, "status": op.status, "message_id": op.message_id, "error": op.error}),
    ))
}

#[derive(Debug, Deserialize)]
struct ListMessages {
    before: Option<chrono::DateTime<Utc>>,
    after: Option<chrono::DateTime<Utc>>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_messages(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<ListMessages>,
) -> ApiResult<Json<Value>> {
    let (chat_id, _) = visible(&state, &id, &actor).await?;
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let (rows, next) =
        q::messages(&state.db, &chat_id.to_string(), p.before, p.after, page).await?;
    let mut reactions = reactions_by_message(&state, &rows).await?;
    let messages: Vec<Value> = rows
        .into_iter()
        .map(|m| {
            let r = reactions.remove(&m.id).unwrap_or_default();
            message_json(m, r)
        })
        .collect();
    Ok(Json(json!({"messages": messages, "next_cursor": next})))
}

/// Soft delete by the author, a chat owner or moderator, or an admin: `deleted_at` is set and the
/// text is no longer served.
async fn delete_message(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path((id, msg)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (chat_id, _) = visible(&state, &id, &actor).await?;
    let msg_id = path_uuid(&msg, "message")?;
    let exec = commands::message::delete(&state.bus, &Context::new(actor), chat_id, msg_id).await?;
    if let commands::Executed::Done { stored, .. } = &exec {
        state.settle(PROJECTION, stored).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The reactions of these messages in the seed's shape, by message id.
pub(crate) async fn reactions_by_message(
    state: &AppState,
    rows: &[q::MessageRow],
) -> ApiResult<std::collections::HashMap<String, Vec<Value>>> {
    let ids: Vec<String> = rows.iter().map(|m| m.id.clone()).collect();
    let mut out: std::collections::HashMap<String, Vec<Value>> = Default::default();
    for r in projections::chat::moderation::reactions_of(&state.db, &ids).await? {
        out.entry(r.message_id).or_default().push(
            json!({"id": r.id, "user_id": r.user_id, "emoji": r.emoji, "created_at": r.created_at}),
        );
    }
    Ok(out)
}

/// The seed's message shape; a deleted message keeps its place but not its text.
pub(crate) fn message_json(m: q::MessageRow, reactions: Vec<Value>) -> Value {
    let deleted = m.deleted_at.is_some();
    json!({
        "id": m.id, "chat_id": m.chat_id, "type": m.kind, "author_id": m.author_id,
        "text": if deleted { Value::Null } else { json!(m.text) },
        "metadata": m.metadata,
        "created_at": m.created_at, "edited_at": m.edited_at, "deleted_at": m.deleted_at,
        "filtered": m.filtered,
        "filter_matches": m.filter_matches,
        "flagged_at": m.flagged_at,
        "attachments": m.attachments,
        "reactions": reactions,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditMessage {
    text: String,
}

/// `PATCH /chats/{id}/messages/{msg_id}` `{"text"}`: the author only; sets `edited_at`.
async fn edit_message(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path((id, msg)): Path<(String, String)>,
    body: ApiJson<EditMessage>,
) -> ApiResult<Json<Value>> {
    let (chat_id, _) = visible(&state, &id, &actor).await?;
    let msg_id = path_uuid(&msg, "message")?;
    let exec = commands::message::edit(
        &state.bus,
        &Context::new(actor),
        chat_id,
        msg_id,
        body.value.text,
    )
    .await?;
    if let commands::Executed::Done { stored, .. } = &exec {
        state.settle(PROJECTION, stored).await;
    }
    let row = q::message(&state.db, &msg_id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    let mut reactions = reactions_by_message(&state, std::slice::from_ref(&row)).await?;
    let r = reactions.remove(&row.id).unwrap_or_default();
    Ok(Json(message_json(row, r)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReactionBody {
    emoji: String,
}

/// `POST /chats/{id}/messages/{msg_id}/reactions` `{"emoji"}`: members react; 201 with the
/// reaction (the same one again when the caller already reacted with this emoji).
async fn add_reaction(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path((id, msg)): Path<(String, String)>,
    body: ApiJson<ReactionBody>,
) -> ApiResult<Response> {
    let (chat_id, _) = visible(&state, &id, &actor).await?;
    let msg_id = path_uuid(&msg, "message")?;
    let user_id = actor.user_id.clone();
    let emoji = body.value.emoji;
    let exec = commands::message::react(
        &state.bus,
        &Context::new(actor),
        chat_id,
        msg_id,
        emoji.clone(),
    )
    .await?;
    let commands::Executed::Done {
        state: message,
        stored,
        ..
    } = exec
    else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "reactions are not replayed"
        )));
    };
    state.settle(PROJECTION, &stored).await;
    let r = message
        .reactions
        .iter()
        .find(|r| r.user_id == user_id && r.emoji == emoji)
        .ok_or_else(|| ApiError::not_found("reaction"))?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": r.id, "user_id": r.user_id, "emoji": r.emoji, "created_at": r.created_at}),
        ),
    )
        .into_response())
}

/// `DELETE /chats/{id}/messages/{msg_id}/reactions/{emoji}`: removes the caller's reaction.
async fn remove_reaction(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path((id, msg, emoji)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let (chat_id, _) = visible(&state, &id, &actor).await?;
    let msg_id = path_uuid(&msg, "message")?;
    let exec = commands::message::unreact(&state.bus, &Context::new(actor), chat_id, msg_id, emoji)
        .await?;
    if let commands::Executed::Done { stored, .. } = &exec {
        state.settle(PROJECTION, stored).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------- read receipts ----------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    message_id: String,
}

/// `PUT /chats/{id}/read` `{"message_id"}`.
async fn put_read(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    body: ApiJson<ReadBody>,
) -> ApiResult<Json<Value>> {
    let (chat_id, _) = visible(&state, &id, &actor).await?;
    Ok(Json(
        mark_read(&state, &actor, chat_id, &body.value.message_id).await?,
    ))
}

/// `GET /chats/{id}/unread-count`: messages after the caller's read position, not their own,
/// not deleted.
async fn unread_count(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (chat_id, _) = visible(&state, &id, &actor).await?;
    let n = q::unread_count(&state.db, &chat_id.to_string(), &actor.user_id).await?;
    Ok(Json(json!({"chat_id": chat_id, "unread": n})))
}
