//! Communication over GraphQL: chats, messages, reactions, search, profiles, filters, sanctions,
//! reports and notices. Reads use the same read models and privacy rules as REST (a chat the
//! caller cannot see is `null` or `NOT_FOUND`); writes go through the same command layer, so every
//! rule and role check is the one REST applies.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use commands::moderation::{self as m, NewSanction};
use commands::{Context as CmdContext, Executed};
use domain::chat::{
    Chat as ChatAgg, ChatType, MemberRole, MessageType, NewChat, NewReport, ReportStatus,
    SanctionKind, SanctionScope,
};
use domain::{Actor, Role};
use projections::chat::moderation as mq;
use projections::chat::queries::{self as q, ChatFilter};
use projections::page::Page;
use uuid::Uuid;

use super::{actor, gql_error, state, GqlResult, PageInfo};
use crate::error::ApiError;
use crate::service::chat::visible;
use crate::state::AppState;

const PROJECTION: &str = projections::chat::ChatProjection::NAME;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "ChatType")]
pub enum ChatKind {
    Dm,
    Group,
    Channel,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "MemberRole")]
pub enum ChatRole {
    Owner,
    Moderator,
    Member,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "SanctionKind")]
pub enum SanctionType {
    Ban,
    Mute,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "SanctionScope")]
pub enum Scope {
    Chat,
    Global,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "ReportStatus")]
pub enum ReportState {
    Open,
    Triaged,
    Resolved,
    Rejected,
}

#[derive(SimpleObject)]
pub struct Chat {
    id: ID,
    #[graphql(name = "type")]
    kind: String,
    name: Option<String>,
    slug: Option<String>,
    is_private: bool,
    created_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    member_count: i64,
}

impl From<q::ChatRow> for Chat {
    fn from(r: q::ChatRow) -> Self {
        Chat {
            id: ID(r.id),
            kind: r.kind,
            name: r.name,
            slug: r.slug,
            is_private: r.is_private,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            member_count: r.member_count,
        }
    }
}

#[derive(SimpleObject)]
pub struct ChatEdge {
    cursor: String,
    node: Chat,
}

#[derive(SimpleObject)]
pub struct ChatConnection {
    edges: Vec<ChatEdge>,
    page_info: PageInfo,
}

#[derive(SimpleObject, Clone)]
pub struct Reaction {
    id: ID,
    user_id: String,
    emoji: String,
    created_at: DateTime<Utc>,
}

#[derive(SimpleObject, Clone)]
pub struct Attachment {
    id: ID,
    url: String,
    content_type: String,
    size_bytes: i64,
}

/// A message; `text` is null once it is deleted.
#[derive(SimpleObject, Clone)]
pub struct Message {
    id: ID,
    chat_id: ID,
    #[graphql(name = "type")]
    kind: String,
    author_id: String,
    text: Option<String>,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
    filtered: bool,
    filter_matches: Vec<String>,
    flagged_at: Option<DateTime<Utc>>,
    attachments: Vec<Attachment>,
    reactions: Vec<Reaction>,
}

impl Message {
    fn from_row(m: q::MessageRow, reactions: Vec<Reaction>) -> Self {
        Message {
            text: m.deleted_at.is_none().then_some(m.text),
            id: ID(m.id),
            chat_id: ID(m.chat_id),
            kind: m.kind,
            author_id: m.author_id,
            created_at: m.created_at,
            edited_at: m.edited_at,
            deleted_at: m.deleted_at,
            filtered: m.filtered,
            filter_matches: m.filter_matches,
            flagged_at: m.flagged_at,
            attachments: m
                .attachments
                .into_iter()
                .map(|a| Attachment {
                    id: ID(a["id"].as_str().unwrap_or_default().to_string()),
                    url: a["url"].as_str().unwrap_or_default().to_string(),
                    content_type: a["content_type"].as_str().unwrap_or_default().to_string(),
                    size_bytes: a["size_bytes"].as_i64().unwrap_or_default(),
                })
                .collect(),
            reactions,
        }
    }
}

#[derive(SimpleObject)]
pub struct MessageEdge {
    cursor: String,
    node: Message,
}

#[derive(SimpleObject)]
pub struct MessageConnection {
    edges: Vec<MessageEdge>,
    page_info: PageInfo,
}

/// The asynchronous submission of a message.
#[derive(SimpleObject)]
pub struct Operation {
    operation_id: ID,
    status: String,
    message_id: Option<ID>,
    error: Option<String>,
}

#[derive(SimpleObject)]
pub struct Profile {
    user_id: String,
    nickname: String,
    avatar_url: Option<String>,
    roles: Vec<String>,
    presence: String,
}

/// A chat's retention period and post policy.
#[derive(SimpleObject)]
pub struct Retention {
    chat_id: ID,
    retention_days: i64,
    post_policy: String,
}

impl Retention {
    fn of(id: Uuid, chat: &ChatAgg) -> Self {
        Retention {
            chat_id: ID(id.to_string()),
            retention_days: chat.settings.retention_days,
            post_policy: chat.settings.post_policy.clone(),
        }
    }
}

/// An admin's notice, posted as a `notice` message into each of its chats.
#[derive(SimpleObject)]
pub struct Notice {
    id: ID,
    title: String,
    body: String,
    created_by: String,
    chat_ids: Vec<ID>,
    roles: Vec<String>,
    created_at: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
pub struct Filters {
    phrases: Vec<String>,
    version: i64,
}

#[derive(SimpleObject)]
pub struct Sanction {
    id: ID,
    user_id: String,
    #[graphql(name = "type")]
    kind: String,
    scope: String,
    chat_id: Option<ID>,
    reason: Option<String>,
    applied_by: String,
    applied_at: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    revoked_by: Option<String>,
}

impl From<mq::SanctionRow> for Sanction {
    fn from(s: mq::SanctionRow) -> Self {
        Sanction {
            id: ID(s.id),
            user_id: s.user_id,
            kind: s.kind,
            scope: s.scope,
            chat_id: s.chat_id.map(ID),
            reason: s.reason,
            applied_by: s.applied_by,
            applied_at: s.applied_at,
            until: s.until,
            revoked_at: s.revoked_at,
            revoked_by: s.revoked_by,
        }
    }
}

#[derive(SimpleObject)]
pub struct Report {
    id: ID,
    reporter_id: String,
    message_id: Option<ID>,
    reported_user_id: Option<String>,
    reason: String,
    evidence: Vec<String>,
    status: String,
    resolution_notes: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<mq::ReportRow> for Report {
    fn from(r: mq::ReportRow) -> Self {
        Report {
            id: ID(r.id),
            reporter_id: r.reporter_id,
            message_id: r.message_id.map(ID),
            reported_user_id: r.reported_user_id,
            reason: r.reason,
            evidence: r.evidence,
            status: r.status,
            resolution_notes: r.resolution_notes,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn uuid_of(id: &ID, what: &str) -> GqlResult<Uuid> {
    id.parse::<Uuid>()
        .map_err(|_| gql_error(ApiError::not_found(what)))
}

async fn reactions(
    state: &AppState,
    rows: &[q::MessageRow],
) -> GqlResult<std::collections::HashMap<String, Vec<Reaction>>> {
    let ids: Vec<String> = rows.iter().map(|m| m.id.clone()).collect();
    let mut out: std::collections::HashMap<String, Vec<Reaction>> = Default::default();
    for r in mq::reactions_of(&state.db, &ids)
        .await
        .map_err(|e| gql_error(e.into()))?
    {
        out.entry(r.message_id).or_default().push(Reaction {
            id: ID(r.id),
            user_id: r.user_id,
            emoji: r.emoji,
            created_at: r.created_at,
        });
    }
    Ok(out)
}

async fn messages_of(state: &AppState, rows: Vec<q::MessageRow>) -> GqlResult<Vec<MessageEdge>> {
    let mut reactions = reactions(state, &rows).await?;
    Ok(rows
        .into_iter()
        .map(|m| {
            let r = reactions.remove(&m.id).unwrap_or_default();
            MessageEdge {
                cursor: projections::page::encode(m.seq),
                node: Message::from_row(m, r),
            }
        })
        .collect())
}

/// The chat aggregate behind an id the caller can see (else `NOT_FOUND`).
async fn visible_chat(state: &AppState, actor: &Actor, id: &ID) -> GqlResult<(Uuid, ChatAgg)> {
    let (id, _) = visible(state, id.as_str(), actor)
        .await
        .map_err(gql_error)?;
    let (_, chat) = state
        .bus
        .load::<ChatAgg>(&id.to_string())
        .await
        .map_err(|e| gql_error(e.into()))?;
    Ok((id, chat))
}

async fn message(state: &AppState, id: Uuid) -> GqlResult<Message> {
    message_by_id(state, id)
        .await?
        .ok_or_else(|| gql_error(ApiError::not_found("message")))
}

/// A message with its reactions as the read model has it, if it is (still) there.
pub(super) async fn message_by_id(state: &AppState, id: Uuid) -> GqlResult<Option<Message>> {
    let Some(row) = q::message(&state.db, &id.to_string())
        .await
        .map_err(|e| gql_error(e.into()))?
    else {
        return Ok(None);
    };
    let mut r = reactions(state, std::slice::from_ref(&row)).await?;
    let rs = r.remove(&row.id).unwrap_or_default();
    Ok(Some(Message::from_row(row, rs)))
}

fn err(e: commands::CommandError) -> async_graphql::Error {
    gql_error(e.into())
}

#[derive(Default)]
pub struct ChatQuery;

#[Object]
impl ChatQuery {
    /// The caller's chats (those they are a member of), oldest first.
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, child_complexity)")]
    async fn chats(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(name = "type")] kind: Option<ChatKind>,
    ) -> GqlResult<ChatConnection> {
        let (state, actor) = (state(ctx), actor(ctx));
        let page =
            Page::parse(first.map(i64::from), after.as_deref()).map_err(|e| gql_error(e.into()))?;
        let f = ChatFilter {
            kind: kind.map(|k| ChatType::from(k).as_str().to_string()),
            ..Default::default()
        };
        let (rows, next) = q::my_chats(&state.db, &actor.user_id, &f, page)
            .await
            .map_err(|e| gql_error(e.into()))?;
        Ok(ChatConnection {
            edges: rows
                .into_iter()
                .map(|r| ChatEdge {
                    cursor: projections::page::encode(r.seq),
                    node: Chat::from(r),
                })
                .collect(),
            page_info: PageInfo::of(next),
        })
    }

    /// One chat, or null when it does not exist or is private and the caller is not a member.
    #[graphql(complexity = "crate::graphql::limits::LOOKUP_COST + child_complexity")]
    async fn chat(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Chat>> {
        match visible(state(ctx), id.as_str(), actor(ctx)).await {
            Ok((_, row)) => Ok(Some(Chat::from(row))),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(gql_error(e)),
        }
    }

    /// A chat's messages, newest first.
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, child_complexity)")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<MessageConnection> {
        let (state, actor) = (state(ctx), actor(ctx));
        let (id, _) = visible(state, chat_id.as_str(), actor)
            .await
            .map_err(gql_error)?;
        let page =
            Page::parse(first.map(i64::from), after.as_deref()).map_err(|e| gql_error(e.into()))?;
        let (rows, next) = q::messages(&state.db, &id.to_string(), None, None, page)
            .await
            .map_err(|e| gql_error(e.into()))?;
        Ok(MessageConnection {
            edges: messages_of(state, rows).await?,
            page_info: PageInfo::of(next),
        })
    }

    /// Full-text search over the chats the caller can read, newest first.
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, child_complexity)")]
    async fn search_messages(
        &self,
        ctx: &Context<'_>,
        q: String,
        chat_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<MessageConnection> {
        let (state, actor) = (state(ctx), actor(ctx));
        let terms = mq::search_terms(&q);
        if terms.is_empty() || q.chars().count() > 200 {
            return Err(gql_error(ApiError::validation(
                "q must hold at least one word and at most 200 characters",
            )));
        }
        let chat = match &chat_id {
            Some(c) => Some(
                visible(state, c.as_str(), actor)
                    .await
                    .map_err(gql_error)?
                    .0
                    .to_string(),
            ),
            None => None,
        };
        let page =
            Page::parse(first.map(i64::from), after.as_deref()).map_err(|e| gql_error(e.into()))?;
        let (rows, next) = mq::search_messages(
            &state.db,
            &terms,
            chat.as_deref(),
            &actor.user_id,
            actor.has(Role::Admin),
            page,
        )
        .await
        .map_err(|e| gql_error(e.into()))?;
        Ok(MessageConnection {
            edges: messages_of(state, rows).await?,
            page_info: PageInfo::of(next),
        })
    }

    /// An operation the caller submitted (null otherwise).
    #[graphql(complexity = "crate::graphql::limits::LOOKUP_COST + child_complexity")]
    async fn operation(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Operation>> {
        let (state, actor) = (state(ctx), actor(ctx));
        let op = q::operation(&state.db, id.as_str())
            .await
            .map_err(|e| gql_error(e.into()))?;
        Ok(op
            .filter(|o| o.user_id == actor.user_id || actor.has(Role::Admin))
            .map(|o| Operation {
                operation_id: ID(o.id),
                status: o.status,
                message_id: o.message_id.map(ID),
                error: o.error,
            }))
    }

    #[graphql(complexity = "crate::graphql::limits::LOOKUP_COST + child_complexity")]
    async fn profile(&self, ctx: &Context<'_>, user_id: String) -> GqlResult<Option<Profile>> {
        let state = state(ctx);
        let Some(p) = q::profile(&state.db, &user_id)
            .await
            .map_err(|e| gql_error(e.into()))?
        else {
            return Ok(None);
        };
        let online = crate::presence::is_online(&state.db, &user_id)
            .await
            .map_err(|e| gql_error(e.into()))?;
        Ok(Some(Profile {
            user_id: p.user_id,
            nickname: p.nickname,
            avatar_url: p.avatar_url,
            roles: p.roles,
            presence: if online { "online" } else { "offline" }.into(),
        }))
    }

    /// The retention period and post policy of a chat the caller can see.
    #[graphql(complexity = "crate::graphql::limits::LOOKUP_COST + child_complexity")]
    async fn retention(&self, ctx: &Context<'_>, chat_id: ID) -> GqlResult<Retention> {
        let (id, chat) = visible_chat(state(ctx), actor(ctx), &chat_id).await?;
        Ok(Retention::of(id, &chat))
    }

    #[graphql(complexity = "crate::graphql::limits::LOOKUP_COST + child_complexity")]
    async fn moderation_filters(&self, ctx: &Context<'_>) -> GqlResult<Filters> {
        let f = m::filters(&state(ctx).bus).await.map_err(err)?;
        Ok(Filters {
            phrases: f.phrases,
            version: f.version,
        })
    }

    /// Active sanctions: all for admins; otherwise the caller's own and those of chats they moderate.
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, child_complexity)")]
    async fn sanctions(
        &self,
        ctx: &Context<'_>,
        user_id: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<Vec<Sanction>> {
        let (state, actor) = (state(ctx), actor(ctx));
        let page =
            Page::parse(first.map(i64::from), after.as_deref()).map_err(|e| gql_error(e.into()))?;
        let viewer = (!actor.has(Role::Admin)).then_some(actor.user_id.as_str());
        let (rows, _) =
            mq::active_sanctions(&state.db, viewer, user_id.as_deref(), Utc::now(), page)
                .await
                .map_err(|e| gql_error(e.into()))?;
        Ok(rows.into_iter().map(Sanction::from).collect())
    }

    /// Reports (admins).
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, child_complexity)")]
    async fn reports(
        &self,
        ctx: &Context<'_>,
        status: Option<ReportState>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<Vec<Report>> {
        let (state, actor) = (state(ctx), actor(ctx));
        crate::service::chat::may_list_reports(actor).map_err(gql_error)?;
        let page =
            Page::parse(first.map(i64::from), after.as_deref()).map_err(|e| gql_error(e.into()))?;
        let (rows, _) = mq::reports(
            &state.db,
            status.map(|s| ReportStatus::from(s).as_str()),
            page,
        )
        .await
        .map_err(|e| gql_error(e.into()))?;
        Ok(rows.into_iter().map(Report::from).collect())
    }
}

#[derive(InputObject)]
pub struct CreateChatInput {
    #[graphql(name = "type")]
    kind: ChatKind,
    name: Option<String>,
    slug: Option<String>,
    is_private: Option<bool>,
    #[graphql(default)]
    member_ids: Vec<String>,
}

#[derive(InputObject)]
pub struct SanctionInput {
    user_id: String,
    #[graphql(name = "type")]
    kind: SanctionType,
    scope: Scope,
    chat_id: Option<ID>,
    reason: Option<String>,
    until: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct ChatMutation;

#[Object]
impl ChatMutation {
    async fn create_chat(&self, ctx: &Context<'_>, input: CreateChatInput) -> GqlResult<Chat> {
        let (state, actor) = (state(ctx), actor(ctx));
        let kind = ChatType::from(input.kind);
        let chat = NewChat {
            chat_id: Uuid::now_v7(),
            kind,
            name: input.name.map(|n| n.trim().to_string()),
            slug: input.slug,
            is_private: input.is_private.unwrap_or(kind != ChatType::Channel),
            member_ids: input.member_ids,
        };
        let id = chat.chat_id.to_string();
        let exec =
            commands::chat::create_chat(&state.bus, &CmdContext::new(actor.clone()), chat, None)
                .await
                .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        let row = q::visible_chat(&state.db, &id, &actor.user_id, true)
            .await
            .map_err(|e| gql_error(e.into()))?
            .ok_or_else(|| gql_error(ApiError::not_found("chat")))?;
        Ok(Chat::from(row))
    }

    async fn add_member(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        user_id: String,
        role: Option<ChatRole>,
    ) -> GqlResult<bool> {
        let (state, actor) = (state(ctx), actor(ctx));
        let (id, _) = visible_chat(state, actor, &chat_id).await?;
        let exec = commands::chat::add_member(
            &state.bus,
            &CmdContext::new(actor.clone()),
            id,
            user_id.trim().to_string(),
            role.map_or(MemberRole::Member, MemberRole::from),
            None,
        )
        .await
        .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        Ok(true)
    }

    async fn remove_member(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        user_id: String,
    ) -> GqlResult<bool> {
        let (state, actor) = (state(ctx), actor(ctx));
        let (id, _) = visible_chat(state, actor, &chat_id).await?;
        let exec =
            commands::chat::remove_member(&state.bus, &CmdContext::new(actor.clone()), id, user_id)
                .await
                .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        Ok(true)
    }

    /// Submits a message; it is posted asynchronously: poll `operation` or subscribe.
    async fn post_message(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        text: String,
        notice: Option<bool>,
    ) -> GqlResult<Operation> {
        let (state, actor) = (state(ctx), actor(ctx));
        let id = uuid_of(&chat_id, "chat")?;
        let draft = commands::message::Draft {
            kind: if notice.unwrap_or(false) {
                MessageType::Notice
            } else {
                MessageType::Normal
            },
            text,
            attachments: vec![],
            metadata: serde_json::json!({}),
        };
        let (op, exec) =
            commands::message::post(&state.bus, &CmdContext::new(actor.clone()), id, draft, None)
                .await
                .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        Ok(Operation {
            operation_id: ID(op.to_string()),
            status: "accepted".into(),
            message_id: None,
            error: None,
        })
    }

    async fn edit_message(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        message_id: ID,
        text: String,
    ) -> GqlResult<Message> {
        let (state, actor) = (state(ctx), actor(ctx));
        let (id, _) = visible(state, chat_id.as_str(), actor)
            .await
            .map_err(gql_error)?;
        let mid = uuid_of(&message_id, "message")?;
        let exec =
            commands::message::edit(&state.bus, &CmdContext::new(actor.clone()), id, mid, text)
                .await
                .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        message(state, mid).await
    }

    async fn delete_message(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        message_id: ID,
    ) -> GqlResult<Message> {
        let (state, actor) = (state(ctx), actor(ctx));
        let (id, _) = visible(state, chat_id.as_str(), actor)
            .await
            .map_err(gql_error)?;
        let mid = uuid_of(&message_id, "message")?;
        let exec = commands::message::delete(&state.bus, &CmdContext::new(actor.clone()), id, mid)
            .await
            .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        message(state, mid).await
    }

    async fn add_reaction(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        message_id: ID,
        emoji: String,
    ) -> GqlResult<Message> {
        let (state, actor) = (state(ctx), actor(ctx));
        let (id, _) = visible(state, chat_id.as_str(), actor)
            .await
            .map_err(gql_error)?;
        let mid = uuid_of(&message_id, "message")?;
        let exec =
            commands::message::react(&state.bus, &CmdContext::new(actor.clone()), id, mid, emoji)
                .await
                .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        message(state, mid).await
    }

    async fn remove_reaction(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        message_id: ID,
        emoji: String,
    ) -> GqlResult<Message> {
        let (state, actor) = (state(ctx), actor(ctx));
        let (id, _) = visible(state, chat_id.as_str(), actor)
            .await
            .map_err(gql_error)?;
        let mid = uuid_of(&message_id, "message")?;
        let exec =
            commands::message::unreact(&state.bus, &CmdContext::new(actor.clone()), id, mid, emoji)
                .await
                .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        message(state, mid).await
    }

    /// Changes a chat's retention period and/or post policy (`any` or `mods`): owners, moderators
    /// and admins.
    async fn set_retention(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        retention_days: Option<i64>,
        post_policy: Option<String>,
    ) -> GqlResult<Retention> {
        let (state, actor) = (state(ctx), actor(ctx));
        let (id, _) = visible(state, chat_id.as_str(), actor)
            .await
            .map_err(gql_error)?;
        let patch = domain::chat::SettingsPatch {
            retention_days,
            post_policy,
            extra: None,
        };
        let exec = commands::retention::patch_settings(
            &state.bus,
            &CmdContext::new(actor.clone()),
            id,
            patch,
        )
        .await
        .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        let (_, chat) = visible_chat(state, actor, &chat_id).await?;
        Ok(Retention::of(id, &chat))
    }

    /// Posts a notice into each listed chat (admins).
    async fn broadcast_notice(
        &self,
        ctx: &Context<'_>,
        title: String,
        body: String,
        chat_ids: Vec<ID>,
        #[graphql(default)] roles: Vec<String>,
    ) -> GqlResult<Notice> {
        let (state, actor) = (state(ctx), actor(ctx));
        let raw: Vec<String> = chat_ids.into_iter().map(|c| c.0).collect();
        let ids = domain::chat::notice_chat_ids(&raw, "chatIds")
            .map_err(|e| gql_error(ApiError::validation(e)))?;
        let notice = domain::chat::NewNotice {
            id: Uuid::now_v7(),
            title: title.trim().to_string(),
            body: body.trim().to_string(),
            created_by: actor.user_id.clone(),
            chat_ids: ids,
            roles,
        };
        let exec = m::broadcast_notice(&state.bus, &CmdContext::new(actor.clone()), notice.clone())
            .await
            .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        let created_at = match &exec {
            Executed::Done { state: n, .. } => n.created_at,
            Executed::Replayed(_) => None,
        };
        Ok(Notice {
            id: ID(notice.id.to_string()),
            title: notice.title,
            body: notice.body,
            created_by: notice.created_by,
            chat_ids: notice.chat_ids.iter().map(|c| ID(c.to_string())).collect(),
            roles: notice.roles,
            created_at,
        })
    }

    /// Replaces the banned phrases (admins); `version` must be the current one + 1.
    async fn replace_filters(
        &self,
        ctx: &Context<'_>,
        phrases: Vec<String>,
        version: i64,
    ) -> GqlResult<Filters> {
        let (state, actor) = (state(ctx), actor(ctx));
        let exec = m::replace_filters(
            &state.bus,
            &CmdContext::new(actor.clone()),
            phrases,
            version,
        )
        .await
        .map_err(err)?;
        let f = match exec {
            Executed::Done { state: f, .. } => f,
            Executed::Replayed(_) => m::filters(&state.bus).await.map_err(err)?,
        };
        Ok(Filters {
            phrases: f.phrases,
            version: f.version,
        })
    }

    async fn apply_sanction(&self, ctx: &Context<'_>, input: SanctionInput) -> GqlResult<Sanction> {
        let (state, actor) = (state(ctx), actor(ctx));
        let scope = SanctionScope::from(input.scope);
        let chat = match (scope, &input.chat_id) {
            (SanctionScope::Chat, Some(id)) => Some(
                visible(state, id.as_str(), actor)
                    .await
                    .map_err(gql_error)?
                    .0,
            ),
            (SanctionScope::Chat, None) => {
                return Err(gql_error(ApiError::validation("scope CHAT needs chatId")))
            }
            (SanctionScope::Global, Some(_)) => {
                return Err(gql_error(ApiError::validation(
                    "a global sanction has no chatId",
                )))
            }
            (SanctionScope::Global, None) => None,
        };
        let new = NewSanction {
            user_id: input.user_id.trim().to_string(),
            kind: input.kind.into(),
            scope,
            reason: input.reason.filter(|r| !r.trim().is_empty()),
            until: input.until,
        };
        let (s, stored) = m::apply_sanction(&state.bus, &CmdContext::new(actor.clone()), chat, new)
            .await
            .map_err(err)?;
        state.settle(PROJECTION, &stored).await;
        let row = mq::sanction(&state.db, &s.id.to_string())
            .await
            .map_err(|e| gql_error(e.into()))?
            .ok_or_else(|| gql_error(ApiError::not_found("sanction")))?;
        Ok(Sanction::from(row))
    }

    async fn revoke_sanction(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Sanction> {
        let (state, actor) = (state(ctx), actor(ctx));
        let sid = uuid_of(&id, "sanction")?;
        let row = mq::sanction(&state.db, &sid.to_string())
            .await
            .map_err(|e| gql_error(e.into()))?
            .ok_or_else(|| gql_error(ApiError::not_found("sanction")))?;
        let chat = match &row.chat_id {
            Some(c) => Some(
                visible(state, c, actor)
                    .await
                    .map_err(|_| gql_error(ApiError::not_found("sanction")))?
                    .0,
            ),
            None => None,
        };
        let exec = m::revoke_sanction(&state.bus, &CmdContext::new(actor.clone()), chat, sid)
            .await
            .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        let row = mq::sanction(&state.db, &sid.to_string())
            .await
            .map_err(|e| gql_error(e.into()))?
            .ok_or_else(|| gql_error(ApiError::not_found("sanction")))?;
        Ok(Sanction::from(row))
    }

    /// Reports a user, or a message the caller can read (its author by default).
    async fn file_report(
        &self,
        ctx: &Context<'_>,
        reason: String,
        message_id: Option<ID>,
        reported_user_id: Option<String>,
        #[graphql(default)] evidence: Vec<String>,
    ) -> GqlResult<Report> {
        let (state, actor) = (state(ctx), actor(ctx));
        let (mid, chat_id, author) = match &message_id {
            Some(raw) => {
                let id = uuid_of(raw, "message")?;
                let row = q::message(&state.db, &id.to_string())
                    .await
                    .map_err(|e| gql_error(e.into()))?
                    .ok_or_else(|| gql_error(ApiError::not_found("message")))?;
                visible(state, &row.chat_id, actor)
                    .await
                    .map_err(|_| gql_error(ApiError::not_found("message")))?;
                (Some(id), row.chat_id.parse().ok(), Some(row.author_id))
            }
            None => (None, None, None),
        };
        let report = NewReport {
            id: Uuid::now_v7(),
            reporter_id: actor.user_id.clone(),
            message_id: mid,
            chat_id,
            reported_user_id: reported_user_id.map(|u| u.trim().to_string()).or(author),
            reason: reason.trim().to_string(),
            evidence,
        };
        let id = report.id.to_string();
        let exec = m::file_report(&state.bus, &CmdContext::new(actor.clone()), report)
            .await
            .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        report_by_id(state, &id).await
    }

    /// Moves a report along `OPEN → TRIAGED → RESOLVED | REJECTED` (admins).
    async fn move_report(
        &self,
        ctx: &Context<'_>,
        id: ID,
        status: ReportState,
        resolution_notes: Option<String>,
    ) -> GqlResult<Report> {
        let (state, actor) = (state(ctx), actor(ctx));
        let rid = uuid_of(&id, "report")?;
        let exec = m::move_report(
            &state.bus,
            &CmdContext::new(actor.clone()),
            rid,
            status.into(),
            resolution_notes,
        )
        .await
        .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        report_by_id(state, &rid.to_string()).await
    }
}

async fn report_by_id(state: &AppState, id: &str) -> GqlResult<Report> {
    let row = mq::report(&state.db, id)
        .await
        .map_err(|e| gql_error(e.into()))?
        .ok_or_else(|| gql_error(ApiError::not_found("report")))?;
    Ok(Report::from(row))
}
