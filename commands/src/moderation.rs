//! Moderation commands: the banned-phrase filters, sanctions (ban, mute, revoke), reports and
//! notices. Who may do what is decided here (from the chat aggregate and the actor's roles), so
//! REST and GraphQL share one implementation.

use chrono::{DateTime, Utc};
use domain::chat::{
    Chat, ChatCommand, ChatType, FilterCommand, FilterSet, Filtered, MatcherCache, MessageType,
    Moderation, ModerationCommand, NewNotice, NewReport, Notice, NoticeCommand, Report,
    ReportCommand, ReportStatus, Sanction, SanctionKind, SanctionScope, Submission, FILTERS_ID,
    GLOBAL_SCOPE,
};
use domain::{ErrorKind, Role};
use eventstore::StoredEvent;
use uuid::Uuid;

use crate::{CommandBus, CommandError, Context, Executed};

fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

static MATCHERS: std::sync::LazyLock<MatcherCache> =
    std::sync::LazyLock::new(MatcherCache::default);

// ---------- filters ----------

pub async fn filters(bus: &CommandBus) -> Result<FilterSet, CommandError> {
    Ok(bus.load::<FilterSet>(FILTERS_ID).await?.1)
}

/// Masks `text` with the current filters.
pub async fn filter_text(bus: &CommandBus, text: &str) -> Result<Filtered, CommandError> {
    let set = filters(bus).await?;
    Ok(MATCHERS.get(&set).apply(text))
}

/// Replaces the phrases (admins only); `version` must be the current one + 1.
/// `POST /moderation/filters/test`: runs the filters over `text` for any user, as a post would,
/// and costs a token of the same per-user bucket (up to 500 admin patterns per call are not free).
pub async fn try_filters(
    bus: &CommandBus,
    actor: &domain::Actor,
    text: &str,
) -> Result<Filtered, CommandError> {
    crate::ratelimit::check_message(bus.message_limiter(), &actor.user_id)?;
    filter_text(bus, text).await
}

pub async fn replace_filters(
    bus: &CommandBus,
    ctx: &Context,
    phrases: Vec<String>,
    version: i64,
) -> Result<Executed<FilterSet>, CommandError> {
    if !ctx.actor.has(Role::Admin) {
        return Err(CommandError::Forbidden("requires role admin".into()));
    }
    let cmd = FilterCommand::Replace {
        phrases,
        version,
        at: now(),
    };
    bus.execute::<FilterSet>(FILTERS_ID, cmd, ctx, None, None)
        .await
}

// ---------- sanctions ----------

/// The moderation stream a sanction lives in.
pub fn scope_stream(chat_id: Option<Uuid>) -> String {
    chat_id.map_or_else(|| GLOBAL_SCOPE.to_string(), |c| c.to_string())
}

pub struct NewSanction {
    pub user_id: String,
    pub kind: SanctionKind,
    pub scope: SanctionScope,
    pub reason: Option<String>,
    pub until: Option<DateTime<Utc>>,
}

const OUTRANKED: &str =
    "a moderator cannot sanction the chat's owners or other moderators; owners and admins can";

/// Applies a ban or mute. In a chat, a ban also ends the user's membership (a dm keeps its two
/// members; the ban still silences them there). Returns the sanction and every event stored.
pub async fn apply_sanction(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: Option<Uuid>,
    s: NewSanction,
) -> Result<(Sanction, Vec<StoredEvent>), CommandError> {
    crate::require_participant(ctx)?;
    let chat = match chat_id {
        Some(id) => Some(crate::message::visible_chat(bus, &ctx.actor, id).await?),
        None => None,
    };
    let chat = chat.as_ref();
    let allowed = match (s.scope, chat) {
        (SanctionScope::Global, _) => ctx.actor.has(Role::Admin),
        (SanctionScope::Chat, Some(c)) => {
            if c.managed_by(&ctx.actor) && !c.may_moderate(&ctx.actor, &s.user_id) {
                return Err(CommandError::Forbidden(OUTRANKED.into()));
            }
            c.managed_by(&ctx.actor)
        }
        (SanctionScope::Chat, None) => false,
    };
    let at = now();
    let sanction = Sanction {
        id: Uuid::now_v7(),
        user_id: s.user_id,
        kind: s.kind,
        scope: s.scope,
        chat_id: chat
            .and_then(|c| c.chat_id)
            .filter(|_| s.scope == SanctionScope::Chat),
        reason: s.reason,
        applied_by: ctx.actor.user_id.clone(),
        applied_at: at,
        until: s.until,
        revoked_at: None,
        revoked_by: None,
    };
    let stream = scope_stream(sanction.chat_id);
    let cmd = ModerationCommand::Apply {
        sanction: sanction.clone(),
        allowed,
    };
    let mut stored = match bus
        .execute::<Moderation>(&stream, cmd, ctx, None, None)
        .await?
    {
        Executed::Done { stored, .. } => stored,
        Executed::Replayed(_) => vec![],
    };
    if let (SanctionKind::Ban, Some(c)) =
        (sanction.kind, chat.filter(|_| sanction.chat_id.is_some()))
    {
        if c.member(&sanction.user_id).is_some() && c.kind != Some(ChatType::Dm) {
            let leave = ChatCommand::RemoveMember {
                user_id: sanction.user_id.clone(),
                actor: ctx.actor.clone(),
                at,
            };
            let chat_id = sanction.chat_id.expect("chat sanction").to_string();
            match bus.execute::<Chat>(&chat_id, leave, ctx, None, None).await {
                Ok(Executed::Done { stored: more, .. }) => stored.extend(more),
                Ok(Executed::Replayed(_)) => {}
                // Gone already (they left meanwhile): the ban stands.
                Err(CommandError::Domain {
                    kind: ErrorKind::NotFound,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok((sanction, stored))
}

/// Revokes a sanction of `chat` (or a global one when `chat` is None).
pub async fn revoke_sanction(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: Option<Uuid>,
    sanction_id: Uuid,
) -> Result<Executed<Moderation>, CommandError> {
    crate::require_participant(ctx)?;
    let chat = match chat_id {
        Some(id) => Some(crate::message::visible_chat(bus, &ctx.actor, id).await?),
        None => None,
    };
    let chat = chat.as_ref();
    let allowed = match chat {
        None => ctx.actor.has(Role::Admin),
        Some(c) => c.managed_by(&ctx.actor),
    };
    let stream = scope_stream(chat.and_then(|c| c.chat_id));
    // A moderator revokes only the sanctions they applied themselves: not those of an owner, an
    // admin or another moderator. (A sanction's author never changes, so loading it first is safe.)
    if chat.is_some_and(|c| allowed && !c.ranks_above_moderators(&ctx.actor)) {
        let (_, m) = bus.load::<Moderation>(&stream).await?;
        if m.sanctions
            .iter()
            .any(|s| s.id == sanction_id && s.applied_by != ctx.actor.user_id)
        {
            return Err(CommandError::Forbidden(
                "a moderator revokes only the sanctions they applied; owners and admins revoke any"
                    .into(),
            ));
        }
    }
    let cmd = ModerationCommand::Revoke {
        sanction_id,
        by: ctx.actor.user_id.clone(),
        allowed,
        at: now(),
    };
    bus.execute::<Moderation>(&stream, cmd, ctx, None, None)
        .await
}

/// Why `user_id` may not post in `chat_id` now (a ban or mute there, or a global one), if so.
pub async fn posting_blocked(
    bus: &CommandBus,
    chat_id: Uuid,
    user_id: &str,
) -> Result<Option<String>, CommandError> {
    let at = Utc::now();
    let (_, here) = bus.load::<Moderation>(&chat_id.to_string()).await?;
    if let Some(why) = here.blocks_posting(user_id, at) {
        return Ok(Some(why));
    }
    let (_, global) = bus.load::<Moderation>(GLOBAL_SCOPE).await?;
    Ok(global.blocks_posting(user_id, at))
}

/// Refuses to add a user who is banned from the chat.
pub async fn check_not_banned(
    bus: &CommandBus,
    chat_id: Uuid,
    user_id: &str,
) -> Result<(), CommandError> {
    let (_, here) = bus.load::<Moderation>(&chat_id.to_string()).await?;
    match here.active(user_id, SanctionKind::Ban, Utc::now()) {
        Some(s) => Err(CommandError::Domain {
            kind: ErrorKind::Conflict,
            message: match s.until {
                Some(u) => format!(
                    "{user_id} is banned from this chat until {}",
                    u.to_rfc3339()
                ),
                None => format!("{user_id} is banned from this chat"),
            },
        }),
        None => Ok(()),
    }
}

// ---------- reports ----------

pub async fn file_report(
    bus: &CommandBus,
    ctx: &Context,
    report: NewReport,
) -> Result<Executed<Report>, CommandError> {
    crate::require_participant(ctx)?;
    let id = report.id.to_string();
    let cmd = ReportCommand::File { report, at: now() };
    bus.execute::<Report>(&id, cmd, ctx, None, None).await
}

/// Moves a report along `open → triaged → resolved | rejected` (admins).
pub async fn move_report(
    bus: &CommandBus,
    ctx: &Context,
    id: Uuid,
    status: ReportStatus,
    notes: Option<String>,
) -> Result<Executed<Report>, CommandError> {
    if !ctx.actor.has(Role::Admin) {
        return Err(CommandError::Forbidden("requires role admin".into()));
    }
    let cmd = ReportCommand::Move {
        status,
        notes,
        by: ctx.actor.user_id.clone(),
        at: now(),
    };
    bus.execute::<Report>(&id.to_string(), cmd, ctx, None, None)
        .await
}

// ---------- notices ----------

/// Records the notice, then submits a `notice` message into each chat with ids fixed by the
/// notice, so running it again posts nothing twice.
pub async fn broadcast_notice(
    bus: &CommandBus,
    ctx: &Context,
    notice: NewNotice,
) -> Result<Executed<Notice>, CommandError> {
    if !ctx.actor.has(Role::Admin) {
        return Err(CommandError::Forbidden("requires role admin".into()));
    }
    for chat_id in &notice.chat_ids {
        let (_, chat) = bus.load::<Chat>(&chat_id.to_string()).await?;
        if chat.chat_id.is_none() {
            return Err(CommandError::Domain {
                kind: ErrorKind::Validation,
                message: format!("chat {chat_id} does not exist"),
            });
        }
    }
    let id = notice.id.to_string();
    let cmd = NoticeCommand::Broadcast {
        notice: notice.clone(),
        at: now(),
    };
    let exec = bus.execute::<Notice>(&id, cmd, ctx, None, None).await?;
    for chat_id in &notice.chat_ids {
        let (operation_id, message_id) = notice.ids_for(*chat_id);
        let submission = Submission {
            operation_id,
            message_id,
            chat_id: *chat_id,
            author_id: ctx.actor.user_id.clone(),
            kind: MessageType::Notice,
            text: notice.message_text(),
            attachments: vec![],
            metadata: serde_json::json!({
                "notice_id": notice.id, "title": notice.title, "roles": notice.roles,
            }),
            filter_matches: vec![],
        };
        match crate::message::submit(bus, ctx, submission, None).await {
            Ok(_) => {}
            Err(CommandError::Domain {
                kind: ErrorKind::Conflict,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(exec)
}
