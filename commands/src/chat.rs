//! Communication commands: profiles and chats. Who may manage a chat is a domain rule (owners,
//! moderators, admins); syncing profiles needs an admin or the internal secret (checked at the edge).

use domain::chat::{Chat, ChatCommand, MemberRole, NewChat, Profile, ProfileCommand, ProfileData};
use uuid::Uuid;

use crate::bus::RenderReply;
use crate::{CommandBus, CommandError, Context, Executed, Idempotency};

fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

fn chat_unique_values(chat: &Chat) -> Vec<(&'static str, String)> {
    chat.unique_values()
}

pub async fn sync_profile(
    bus: &CommandBus,
    ctx: &Context,
    user_id: &str,
    data: ProfileData,
) -> Result<Executed<Profile>, CommandError> {
    let cmd = ProfileCommand::Sync {
        user_id: user_id.to_string(),
        data,
        at: now(),
    };
    bus.execute::<Profile>(user_id, cmd, ctx, None, None).await
}

pub async fn ensure_profile(
    bus: &CommandBus,
    ctx: &Context,
) -> Result<Executed<Profile>, CommandError> {
    let user_id = ctx.actor.user_id.clone();
    let cmd = ProfileCommand::EnsureMinimal {
        user_id: user_id.clone(),
        at: now(),
    };
    bus.execute::<Profile>(&user_id, cmd, ctx, None, None).await
}

pub async fn create_chat(
    bus: &CommandBus,
    ctx: &Context,
    chat: NewChat,
    idem: Option<(&Idempotency, RenderReply<'_, Chat>)>,
) -> Result<Executed<Chat>, CommandError> {
    crate::require_participant(ctx)?;
    let id = chat.chat_id.to_string();
    let cmd = ChatCommand::Create {
        chat,
        actor: ctx.actor.clone(),
        at: now(),
    };
    bus.execute::<Chat>(&id, cmd, ctx, Some(chat_unique_values), idem)
        .await
}

pub async fn update_chat(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: Uuid,
    name: Option<String>,
    is_private: Option<bool>,
) -> Result<Executed<Chat>, CommandError> {
    crate::require_participant(ctx)?;
    let cmd = ChatCommand::Update {
        name,
        is_private,
        actor: ctx.actor.clone(),
        at: now(),
    };
    bus.execute::<Chat>(&chat_id.to_string(), cmd, ctx, None, None)
        .await
}

pub async fn add_member(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: Uuid,
    user_id: String,
    role: MemberRole,
    idem: Option<(&Idempotency, RenderReply<'_, Chat>)>,
) -> Result<Executed<Chat>, CommandError> {
    crate::require_participant(ctx)?;
    // A user banned from the chat cannot be re-added while banned (told only to those who may
    // manage the chat; others get the aggregate's own refusal).
    let (_, chat) = bus.load::<Chat>(&chat_id.to_string()).await?;
    if chat.managed_by(&ctx.actor) {
        crate::moderation::check_not_banned(bus, chat_id, &user_id).await?;
    }
    let cmd = ChatCommand::AddMember {
        user_id: user_id.clone(),
        role,
        membership_id: Uuid::now_v7(),
        actor: ctx.actor.clone(),
        at: now(),
    };
    let added = bus
        .execute::<Chat>(&chat_id.to_string(), cmd, ctx, None, idem)
        .await?;
    // A ban applied between the check above and the append (it lives in another stream, so no
    // lock orders the two) would leave a banned member: check again and undo the addition.
    if let Executed::Done { stored, .. } = &added {
        if !stored.is_empty() {
            if let Err(banned) = crate::moderation::check_not_banned(bus, chat_id, &user_id).await {
                let undo = ChatCommand::RemoveMember {
                    user_id,
                    actor: ctx.actor.clone(),
                    at: now(),
                };
                bus.execute::<Chat>(&chat_id.to_string(), undo, ctx, None, None)
                    .await?;
                return Err(banned);
            }
        }
    }
    Ok(added)
}

pub async fn remove_member(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: Uuid,
    user_id: String,
) -> Result<Executed<Chat>, CommandError> {
    crate::require_participant(ctx)?;
    let cmd = ChatCommand::RemoveMember {
        user_id,
        actor: ctx.actor.clone(),
        at: now(),
    };
    bus.execute::<Chat>(&chat_id.to_string(), cmd, ctx, None, None)
        .await
}

/// Moves the caller's read position in `chat_id` to `message_id`, a message of that chat (the
/// edge checked the caller may see the chat; members only). Moving it back records nothing: the state returned
/// is then the unchanged position.
pub async fn mark_read(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: Uuid,
    message_id: Uuid,
) -> Result<Executed<domain::chat::ReadPosition>, CommandError> {
    crate::require_participant(ctx)?;
    // Read receipts are the members' own: a reader of a public chat who is not a member has none.
    let (_, chat) = bus.load::<Chat>(&chat_id.to_string()).await?;
    if chat.member(&ctx.actor.user_id).is_none() {
        return Err(CommandError::Forbidden(
            "only members of the chat have a read position".into(),
        ));
    }
    let (_, msg) = bus
        .load::<domain::chat::Message>(&message_id.to_string())
        .await?;
    let created = match (&msg.submission, msg.created_at) {
        (Some(s), Some(c)) if s.chat_id == chat_id && msg.expired_at.is_none() => c,
        _ => {
            return Err(CommandError::Domain {
                kind: domain::ErrorKind::NotFound,
                message: "message not found".into(),
            })
        }
    };
    let user_id = ctx.actor.user_id.clone();
    let cmd = domain::chat::ReadCommand::MarkRead {
        chat_id,
        user_id: user_id.clone(),
        message_id,
        message_created_at: created,
        at: now(),
    };
    bus.execute::<domain::chat::ReadPosition>(
        &domain::chat::read_position_id(chat_id, &user_id),
        cmd,
        ctx,
        None,
        None,
    )
    .await
}
