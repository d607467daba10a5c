//! Retention and posting policy of a chat (`PUT /retention`), and expiring messages (the
//! retention job in `api::retention` drives `expire`).

use domain::chat::{Chat, ChatCommand, ChatSettings, Message, MessageCommand, SettingsPatch};
use uuid::Uuid;

use crate::{CommandBus, CommandError, Context, Executed};

fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// Owners, moderators and admins change a chat's retention and post policy.
pub async fn change_settings(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: Uuid,
    settings: ChatSettings,
) -> Result<Executed<Chat>, CommandError> {
    crate::require_participant(ctx)?;
    let cmd = ChatCommand::ChangeSettings {
        settings,
        actor: ctx.actor.clone(),
        at: now(),
    };
    bus.execute::<Chat>(&chat_id.to_string(), cmd, ctx, None, None)
        .await
}

/// Owners, moderators and admins change some of a chat's settings (`PUT /retention`, GraphQL
/// `setRetention`): only the fields `patch` gives change, merged into the chat's settings by the
/// aggregate on fresh state, so two concurrent partial changes both land.
pub async fn patch_settings(
    bus: &CommandBus,
    ctx: &Context,
    chat_id: Uuid,
    patch: SettingsPatch,
) -> Result<Executed<Chat>, CommandError> {
    crate::require_participant(ctx)?;
    let cmd = ChatCommand::PatchSettings {
        patch,
        actor: ctx.actor.clone(),
        at: now(),
    };
    bus.execute::<Chat>(&chat_id.to_string(), cmd, ctx, None, None)
        .await
}

/// Marks one message expired (nothing is recorded if it already is).
pub async fn expire(
    bus: &CommandBus,
    ctx: &Context,
    message_id: &str,
    retention_days: i64,
) -> Result<Executed<Message>, CommandError> {
    let cmd = MessageCommand::Expire {
        retention_days,
        at: now(),
    };
    bus.execute::<Message>(message_id, cmd, ctx, None, None)
        .await
}
