//! Tea Management commands with their authorization: managing items, lots, rules and
//! announcements needs `admin` or `executor`; consuming needs any user (the domain restricts
//! students to their own consumption).

use domain::tea::{
    item_claims, Announcement, AnnouncementCommand, AnnouncementSpec, BatchSpec, ConsumptionSpec,
    Item, ItemCommand, ItemPatch, ItemSpec, NotifyConfig,
};
use uuid::Uuid;

use crate::bus::RenderReply;
use crate::{CommandBus, CommandError, Context, Executed, Idempotency};

/// Command time, to the microsecond (the precision both stores keep).
fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

fn require_manager(ctx: &Context) -> Result<(), CommandError> {
    if ctx.actor.manages_stock() {
        Ok(())
    } else {
        Err(CommandError::Forbidden(
            "requires role admin or executor".into(),
        ))
    }
}

fn item_unique_values(item: &Item) -> Vec<(&'static str, String)> {
    if item.exists() {
        item_claims(&item.spec)
    } else {
        vec![]
    }
}

pub type Idem<'a, A> = Option<(&'a Idempotency, RenderReply<'a, A>)>;

pub async fn create_item(
    bus: &CommandBus,
    ctx: &Context,
    item_id: Uuid,
    spec: ItemSpec,
    idem: Idem<'_, Item>,
) -> Result<Executed<Item>, CommandError> {
    require_manager(ctx)?;
    let cmd = ItemCommand::Create {
        item_id,
        spec,
        at: now(),
    };
    bus.execute::<Item>(
        &item_id.to_string(),
        cmd,
        ctx,
        Some(item_unique_values),
        idem,
    )
    .await
}

pub async fn update_item(
    bus: &CommandBus,
    ctx: &Context,
    item_id: Uuid,
    patch: ItemPatch,
) -> Result<Executed<Item>, CommandError> {
    require_manager(ctx)?;
    let cmd = ItemCommand::Update { patch, at: now() };
    bus.execute::<Item>(
        &item_id.to_string(),
        cmd,
        ctx,
        Some(item_unique_values),
        None,
    )
    .await
}

pub async fn receive_batch(
    bus: &CommandBus,
    ctx: &Context,
    item_id: Uuid,
    batch: BatchSpec,
    idem: Idem<'_, Item>,
) -> Result<Executed<Item>, CommandError> {
    require_manager(ctx)?;
    let cmd = ItemCommand::ReceiveBatch { batch, at: now() };
    bus.execute::<Item>(&item_id.to_string(), cmd, ctx, None, idem)
        .await
}

pub async fn consume(
    bus: &CommandBus,
    ctx: &Context,
    item_id: Uuid,
    consumption: ConsumptionSpec,
    idem: Idem<'_, Item>,
) -> Result<Executed<Item>, CommandError> {
    crate::require_participant(ctx)?;
    let cmd = ItemCommand::Consume {
        consumption,
        actor: ctx.actor.clone(),
        at: now(),
    };
    bus.execute::<Item>(&item_id.to_string(), cmd, ctx, None, idem)
        .await
}

pub async fn set_threshold(
    bus: &CommandBus,
    ctx: &Context,
    item_id: Uuid,
    min_qty: i64,
    notify_config: NotifyConfig,
    idem: Idem<'_, Item>,
) -> Result<Executed<Item>, CommandError> {
    require_manager(ctx)?;
    let cmd = ItemCommand::SetThreshold {
        threshold_id: Uuid::now_v7(),
        min_qty,
        notify_config,
        at: now(),
    };
    bus.execute::<Item>(&item_id.to_string(), cmd, ctx, None, idem)
        .await
}

pub async fn publish_announcement(
    bus: &CommandBus,
    ctx: &Context,
    spec: AnnouncementSpec,
    idem: Idem<'_, Announcement>,
) -> Result<Executed<Announcement>, CommandError> {
    require_manager(ctx)?;
    let id = spec.announcement_id.to_string();
    let cmd = AnnouncementCommand::Publish { spec, at: now() };
    bus.execute::<Announcement>(&id, cmd, ctx, None, idem).await
}
