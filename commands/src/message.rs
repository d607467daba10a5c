//! Submitting messages, and the worker that posts them. The worker is a process manager: it reads
//! `MessageSubmitted` from the log with its own checkpoint, posts the message (whose id was fixed at
//! submission, so a retry can never post twice) after checking the author is still a member, and
//! completes or rejects the operation (settling twice records nothing).

use futures::StreamExt;

use domain::chat::{
    Chat, Message, MessageCommand, MessageType, Operation, OperationCommand, OperationEvent,
    Submission,
};
use domain::{Actor, ErrorKind};
use eventstore::StoredEvent;

use crate::bus::RenderReply;
use crate::{CommandBus, CommandError, Context, Executed, Idempotency};

/// Leadership and checkpoint name of the worker.
pub const WORKER: &str = "pm.messages";

/// A submission and when it was accepted.
type Timed = (Submission, chrono::DateTime<chrono::Utc>);

/// How many chats the message worker posts into at once (each chat's messages stay in order).
pub const POST_CONCURRENCY: usize = 16;

fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// Records a submission; its text is masked by the current filters first (the banned text is
/// never stored), with the matched phrases kept in `filter_matches`.
pub async fn submit(
    bus: &CommandBus,
    ctx: &Context,
    mut submission: Submission,
    idem: Option<(&Idempotency, RenderReply<'_, Operation>)>,
) -> Result<Executed<Operation>, CommandError> {
    crate::require_participant(ctx)?;
    let filtered = crate::moderation::filter_text(bus, &submission.text).await?;
    submission.text = filtered.text;
    submission.filter_matches = filtered.matches;
    let id = submission.operation_id.to_string();
    let cmd = OperationCommand::Submit {
        submission,
        at: now(),
    };
    bus.execute::<Operation>(&id, cmd, ctx, None, idem).await
}

/// A message as an edge receives it; [`post`] mints its ids.
#[derive(Debug, Clone)]
pub struct Draft {
    pub kind: MessageType,
    pub text: String,
    pub attachments: Vec<AttachmentDraft>,
    pub metadata: serde_json::Value,
}

/// An attachment of a [`Draft`] (its id is minted by [`post`]).
#[derive(Debug, Clone)]
pub struct AttachmentDraft {
    pub url: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub extra: serde_json::Value,
}

/// Posting a message, the whole sequence every edge runs: the chat exists and the caller may see
/// it (else not found), may post there now ([`check_may_post`]: membership or notice rights, post
/// policy, bans and mutes), is under the per-user posting rate limit (the bus's
/// [`message_limiter`](CommandBus::message_limiter)); then the ids are minted and the submission
/// recorded ([`submit`]). A retried `Idempotency-Key` answers the stored reply before any check
/// (a retry is never refused by a check the first attempt passed, nor rate-limited); the operation
/// id it answers then is nil, the stored reply carries the real one. Answers the operation id with
/// what the command did.
pub async fn post(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: uuid::Uuid,
    draft: Draft,
    idem: Option<(&Idempotency, RenderReply<'_, Operation>)>,
) -> Result<(uuid::Uuid, Executed<Operation>), CommandError> {
    if let Some((i, _)) = idem {
        if let Some(reply) = bus.replayed(&ctx.actor.user_id, i).await? {
            return Ok((uuid::Uuid::nil(), Executed::Replayed(reply)));
        }
    }
    let chat = visible_chat(bus, &ctx.actor, chat_id).await?;
    check_may_post(bus, &chat, &ctx.actor, draft.kind == MessageType::Notice).await?;
    crate::ratelimit::check_message(bus.message_limiter(), &ctx.actor.user_id)?;
    let operation_id = uuid::Uuid::now_v7();
    let submission = Submission {
        operation_id,
        message_id: uuid::Uuid::now_v7(),
        chat_id,
        author_id: ctx.actor.user_id.clone(),
        kind: draft.kind,
        text: draft.text,
        attachments: draft
            .attachments
            .into_iter()
            .map(|a| domain::chat::Attachment {
                id: uuid::Uuid::now_v7(),
                url: a.url,
                content_type: a.content_type,
                size_bytes: a.size_bytes,
                extra: a.extra,
            })
            .collect(),
        metadata: draft.metadata,
        filter_matches: vec![],
    };
    Ok((operation_id, submit(bus, ctx, submission, idem).await?))
}

/// The chat `chat_id` if `actor` may see it: it exists and is public, or they are a member or an
/// admin. To anyone else it does not exist (not found, never forbidden).
pub async fn visible_chat(
    bus: &CommandBus,
    actor: &Actor,
    chat_id: uuid::Uuid,
) -> Result<Chat, CommandError> {
    let (_, chat) = bus.load::<Chat>(&chat_id.to_string()).await?;
    if chat.chat_id.is_none() || !chat.visible_to(actor) {
        return Err(CommandError::Domain {
            kind: ErrorKind::NotFound,
            message: "chat not found".into(),
        });
    }
    Ok(chat)
}

/// Posts one submitted message and settles its operation.
pub async fn post_submitted(bus: &CommandBus, sub: &Submission) -> Result<(), CommandError> {
    post_submitted_at(bus, sub, None).await
}

/// Posts one message submitted at `submitted_at` (when known) and settles its operation. Under a
/// `mods` post policy an ordinary member's message is rejected if the policy was set after the
/// submission (the API already checked it before, admins included) or when the time is unknown.
pub async fn post_submitted_at(
    bus: &CommandBus,
    sub: &Submission,
    submitted_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), CommandError> {
    let ctx = Context {
        correlation_id: sub.operation_id,
        causation_id: Some(sub.operation_id),
        ..Context::new(Actor::new(sub.author_id.clone(), vec![]))
    };
    // Settled already (a re-read after a crash, or expired by retention): nothing to do. A
    // rejected submission must never be posted later, e.g. once its author joined.
    let (_, op) = bus.load::<Operation>(&sub.operation_id.to_string()).await?;
    if op.submission.is_some() && op.status != "accepted" {
        return Ok(());
    }
    let (_, chat) = bus.load::<Chat>(&sub.chat_id.to_string()).await?;
    // A notice was authorised when accepted (admins post notices into chats they are not in).
    let notice = sub.kind == MessageType::Notice;
    let is_member = chat.member(&sub.author_id).is_some();
    let member = is_member || notice;
    let policy_changed_since = match (submitted_at, chat.settings_changed_at) {
        (Some(s), Some(c)) => c >= s,
        (Some(_), None) => false,
        (None, _) => true,
    };
    // A ban or mute applied after the message was accepted still stops it; so does a `mods`
    // post policy set since.
    let blocked = match crate::moderation::posting_blocked(bus, sub.chat_id, &sub.author_id).await?
    {
        Some(why) => Some(why),
        None if is_member && !notice && policy_changed_since && !chat.policy_allows(&ctx.actor) => {
            Some("only the chat's owners and moderators may post in this chat".to_string())
        }
        None => None,
    };
    if let Some(why) = blocked {
        let reject = OperationCommand::Reject {
            error: why,
            at: now(),
        };
        bus.execute::<Operation>(&sub.operation_id.to_string(), reject, &ctx, None, None)
            .await?;
        return Ok(());
    }
    let post = MessageCommand::Post {
        submission: sub.clone(),
        author_is_member: member,
        at: now(),
    };
    let settle = match bus
        .execute::<Message>(&sub.message_id.to_string(), post, &ctx, None, None)
        .await
    {
        Ok(_) => OperationCommand::Complete {
            message_id: sub.message_id,
            at: now(),
        },
        // Posted by an earlier attempt that did not get to settle the operation.
        Err(CommandError::Domain {
            kind: ErrorKind::Conflict,
            ..
        }) => OperationCommand::Complete {
            message_id: sub.message_id,
            at: now(),
        },
        Err(CommandError::Domain {
            kind: ErrorKind::Forbidden,
            message,
        }) => OperationCommand::Reject {
            error: message,
            at: now(),
        },
        Err(e) => return Err(e),
    };
    bus.execute::<Operation>(&sub.operation_id.to_string(), settle, &ctx, None, None)
        .await?;
    Ok(())
}

/// Runs the worker for as long as the process lives (one leader per database): a policy on
/// `operation` events, handed whole batches.
pub fn spawn_worker(bus: CommandBus) {
    crate::policy::spawn_batch_policy(
        bus,
        WORKER,
        &[<Operation as cqrs_es::Aggregate>::TYPE],
        |bus, events| Box::pin(post_batch(bus, events)),
    );
}

/// Posts the submissions of a batch. Submissions of one chat are posted in log order; chats are
/// independent, so up to `POST_CONCURRENCY` of them are posted at once (each post waits on
/// several reads and two appends: in sequence, one busy chat would hold every other chat's
/// messages back). Any failure fails the batch, which is handed over again (posting is
/// idempotent: settled operations are skipped, a posted message is only completed).
async fn post_batch(bus: &CommandBus, events: &[StoredEvent]) -> Result<bool, CommandError> {
    let mut per_chat: Vec<(uuid::Uuid, Vec<Timed>)> = Vec::new();
    for e in events {
        if e.aggregate_type != <Operation as cqrs_es::Aggregate>::TYPE
            || e.event_type != "MessageSubmitted"
        {
            continue;
        }
        let OperationEvent::MessageSubmitted { submission, at } =
            domain::codec::decode(&e.event_type, e.payload.clone())
                .map_err(|err| CommandError::Internal(anyhow::anyhow!("{err}")))?
        else {
            continue;
        };
        match per_chat.iter_mut().find(|(c, _)| *c == submission.chat_id) {
            Some((_, subs)) => subs.push((submission, at)),
            None => per_chat.push((submission.chat_id, vec![(submission, at)])),
        }
    }
    let handled = !per_chat.is_empty();
    let results: Vec<Result<(), CommandError>> = futures::stream::iter(per_chat)
        .map(|(_, subs)| async move {
            for (sub, at) in &subs {
                post_submitted_at(bus, sub, Some(*at)).await?;
            }
            Ok(())
        })
        .buffer_unordered(POST_CONCURRENCY)
        .collect()
        .await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e);
    }
    Ok(handled)
}

/// Edits a message of chat `chat_id` (its author only); the new text is validated like a new
/// message.
pub async fn edit(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: uuid::Uuid,
    message_id: uuid::Uuid,
    text: String,
) -> Result<Executed<Message>, CommandError> {
    let chat = &visible_chat(bus, &ctx.actor, chat_id).await?;
    check_may_write(bus, chat, &ctx.actor).await?;
    let filtered = crate::moderation::filter_text(bus, &text).await?;
    let cmd = MessageCommand::Edit {
        by: ctx.actor.user_id.clone(),
        text: filtered.text,
        filter_matches: filtered.matches,
        at: now(),
    };
    on_message(bus, ctx, chat, message_id, cmd).await
}

/// Soft-deletes a message of chat `chat_id`: its author, the chat's owners and moderators, or an admin.
pub async fn delete(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: uuid::Uuid,
    message_id: uuid::Uuid,
) -> Result<Executed<Message>, CommandError> {
    let chat = &visible_chat(bus, &ctx.actor, chat_id).await?;
    let cmd = MessageCommand::Delete {
        by: ctx.actor.user_id.clone(),
        moderates: chat.managed_by(&ctx.actor),
        at: now(),
    };
    on_message(bus, ctx, chat, message_id, cmd).await
}

/// Adds the caller's reaction to a message of chat `chat_id` (members only).
pub async fn react(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: uuid::Uuid,
    message_id: uuid::Uuid,
    emoji: String,
) -> Result<Executed<Message>, CommandError> {
    let chat = &visible_chat(bus, &ctx.actor, chat_id).await?;
    check_may_write(bus, chat, &ctx.actor).await?;
    let cmd = MessageCommand::React {
        by: ctx.actor.user_id.clone(),
        emoji,
        reaction_id: uuid::Uuid::now_v7(),
        is_member: chat.member(&ctx.actor.user_id).is_some(),
        at: now(),
    };
    on_message(bus, ctx, chat, message_id, cmd).await
}

/// Removes the caller's reaction `emoji` from a message of chat `chat_id`.
pub async fn unreact(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: uuid::Uuid,
    message_id: uuid::Uuid,
    emoji: String,
) -> Result<Executed<Message>, CommandError> {
    let chat = &visible_chat(bus, &ctx.actor, chat_id).await?;
    check_may_write(bus, chat, &ctx.actor).await?;
    let cmd = MessageCommand::Unreact {
        by: ctx.actor.user_id.clone(),
        emoji,
        at: now(),
    };
    on_message(bus, ctx, chat, message_id, cmd).await
}

/// Runs `cmd` on a message of `chat` (a message of another chat does not exist here).
async fn on_message(
    bus: &CommandBus,
    ctx: &Context,
    chat: &Chat,
    message_id: uuid::Uuid,
    cmd: MessageCommand,
) -> Result<Executed<Message>, CommandError> {
    crate::require_participant(ctx)?;
    let (_, msg) = bus.load::<Message>(&message_id.to_string()).await?;
    // A message of another chat (or past the chat's retention) does not exist here.
    if msg
        .submission
        .as_ref()
        .is_none_or(|s| Some(s.chat_id) != chat.chat_id)
        || msg.past_retention(&chat.settings, now())
    {
        return Err(CommandError::Domain {
            kind: ErrorKind::NotFound,
            message: "message not found".into(),
        });
    }
    bus.execute::<Message>(&message_id.to_string(), cmd, ctx, None, None)
        .await
}

/// What editing and reacting need, like posting: the caller participates (no auditor), is a
/// member of the chat (an admin need not be), is not banned or muted there or globally, and has a
/// token left in the per-user bucket that posting uses too.
pub async fn check_may_write(
    bus: &CommandBus,
    chat: &Chat,
    actor: &Actor,
) -> Result<(), CommandError> {
    crate::require_participating(actor)?;
    if chat.member(&actor.user_id).is_none() && !actor.has(domain::Role::Admin) {
        return Err(CommandError::Forbidden(
            "only members of the chat may edit or react".into(),
        ));
    }
    let chat_id = chat.chat_id.unwrap_or_default();
    if let Some(why) = crate::moderation::posting_blocked(bus, chat_id, &actor.user_id).await? {
        return Err(CommandError::Forbidden(why));
    }
    crate::ratelimit::check_message(bus.message_limiter(), &actor.user_id)
}

/// Whether `actor` may post a message now: [`may_post`] and no ban or mute in force.
pub async fn check_may_post(
    bus: &CommandBus,
    chat: &Chat,
    actor: &Actor,
    notice: bool,
) -> Result<(), CommandError> {
    crate::require_participating(actor)?;
    may_post(chat, actor, notice)?;
    let chat_id = chat.chat_id.unwrap_or_default();
    if let Some(why) = crate::moderation::posting_blocked(bus, chat_id, &actor.user_id).await? {
        return Err(CommandError::Forbidden(why));
    }
    Ok(())
}

/// Whether `actor` may post a message of this kind in `chat` right now (the API checks this
/// before accepting; the worker re-checks membership when posting).
pub fn may_post(chat: &Chat, actor: &Actor, notice: bool) -> Result<(), CommandError> {
    let member = chat.member(&actor.user_id);
    if notice && !chat.managed_by(actor) {
        return Err(CommandError::Forbidden(
            "only owners, moderators and admins post notices".into(),
        ));
    }
    if member.is_none() && !(notice && actor.has(domain::Role::Admin)) {
        return Err(CommandError::Forbidden(
            "only members of the chat may post".into(),
        ));
    }
    if !notice && !chat.policy_allows(actor) {
        return Err(CommandError::Forbidden(
            "only the chat's owners and moderators (and admins) may post in this chat".into(),
        ));
    }
    Ok(())
}
