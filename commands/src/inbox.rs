//! A user's inbox commands: only the user acts on their own inbox (the aggregate id is theirs).

use domain::inbox::{Inbox, InboxCommand};

use crate::{CommandBus, CommandError, Context, Executed};

fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

pub async fn mark_read(
    bus: &CommandBus,
    ctx: &Context,
    notification_id: String,
) -> Result<Executed<Inbox>, CommandError> {
    let cmd = InboxCommand::MarkRead {
        notification_id,
        at: now(),
    };
    bus.execute::<Inbox>(&ctx.actor.user_id.clone(), cmd, ctx, None, None)
        .await
}

pub async fn mark_all_read(
    bus: &CommandBus,
    ctx: &Context,
    up_to_seq: i64,
) -> Result<Executed<Inbox>, CommandError> {
    let roles = ctx
        .actor
        .roles
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    let cmd = InboxCommand::MarkAllRead {
        roles,
        up_to_seq,
        at: now(),
    };
    bus.execute::<Inbox>(&ctx.actor.user_id.clone(), cmd, ctx, None, None)
        .await
}

pub async fn delete(
    bus: &CommandBus,
    ctx: &Context,
    notification_id: String,
) -> Result<Executed<Inbox>, CommandError> {
    let cmd = InboxCommand::Delete {
        notification_id,
        at: now(),
    };
    bus.execute::<Inbox>(&ctx.actor.user_id.clone(), cmd, ctx, None, None)
        .await
}
