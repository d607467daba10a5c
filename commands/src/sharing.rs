//! Sharing commands with their authorization, and the policy that turns damage reports into
//! debts in the budget.
//!
//! Any user but a read-only auditor shares their own things, takes and returns assets; admins and
//! executors also register assets for others and for the lab. Who may return an asset (holder,
//! owner, admin) and report damage (admin, executor, owner) depends on the asset, so the `Asset`
//! aggregate decides it from the facts given here.
//!
//! The policy: a process manager reads `DamageReported` from the log with its own checkpoint
//! (`pm.budget.sharing`) and creates a debt for the named user (source_ref
//! `asset:<id>:damage:<report id>`) whose id is UUID v5 of the report id. The ledger ignores a
//! debt id it already holds, so a replayed or redelivered event books nothing twice.

use chrono::{DateTime, Utc};
use domain::budget::{DebtSpec, LedgerCommand};
use domain::sharing::{Asset, AssetCommand, AssetEvent, AssetSpec, Condition};
use domain::Role;
use eventstore::StoredEvent;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::budget::{book_from_policy, may_book, now, policy_context, require};
use crate::bus::RenderReply;
use crate::{CommandBus, CommandError, Context, Executed, Idempotency};

/// Leadership and checkpoint name of the sharing policy.
pub const SHARING_POLICY: &str = "pm.budget.sharing";
/// Namespace of the debt ids derived from damage report ids.
pub const DAMAGE_NAMESPACE: Uuid = Uuid::from_u128(0xd4c1_7a3b_52e8_4f96_8a0d_6b2f_1e7c_3958);

pub type Idem<'a> = Option<(&'a Idempotency, RenderReply<'a, Asset>)>;

const PARTICIPANTS: &str = "admin, executor, teacher or student";

async fn run_on(
    bus: &CommandBus,
    ctx: &Context,
    id: Uuid,
    cmd: AssetCommand,
    idem: Idem<'_>,
) -> Result<Executed<Asset>, CommandError> {
    bus.execute::<Asset>(&id.to_string(), cmd, ctx, None, idem)
        .await
}

pub async fn register(
    bus: &CommandBus,
    ctx: &Context,
    spec: AssetSpec,
    idem: Idem<'_>,
) -> Result<Executed<Asset>, CommandError> {
    require(ctx.actor.participates(), PARTICIPANTS)?;
    if spec.owner_id != ctx.actor.user_id && !may_book(&ctx.actor) {
        return Err(CommandError::Forbidden(
            "only admins and executors register assets of others or of the lab".into(),
        ));
    }
    let id = spec.asset_id;
    let cmd = AssetCommand::Register { spec, at: now() };
    run_on(bus, ctx, id, cmd, idem).await
}

pub async fn take(
    bus: &CommandBus,
    ctx: &Context,
    id: Uuid,
    due_at: DateTime<Utc>,
    idem: Idem<'_>,
) -> Result<Executed<Asset>, CommandError> {
    require(ctx.actor.participates(), PARTICIPANTS)?;
    let cmd = AssetCommand::Take {
        loan_id: Uuid::now_v7(),
        user_id: ctx.actor.user_id.clone(),
        due_at,
        at: now(),
    };
    run_on(bus, ctx, id, cmd, idem).await
}

pub async fn give_back(
    bus: &CommandBus,
    ctx: &Context,
    id: Uuid,
    condition: Condition,
    notes: Option<String>,
) -> Result<Executed<Asset>, CommandError> {
    require(ctx.actor.participates(), PARTICIPANTS)?;
    let cmd = AssetCommand::Return {
        condition,
        notes,
        by: ctx.actor.user_id.clone(),
        is_admin: ctx.actor.has(Role::Admin),
        at: now(),
    };
    run_on(bus, ctx, id, cmd, None).await
}

/// What a damage report says: who owes how much for what.
pub struct Damage {
    pub user_id: String,
    pub description: String,
    pub cost: Decimal,
}

pub async fn report_damage(
    bus: &CommandBus,
    ctx: &Context,
    id: Uuid,
    damage: Damage,
    idem: Idem<'_>,
) -> Result<Executed<Asset>, CommandError> {
    require(ctx.actor.participates(), PARTICIPANTS)?;
    let cmd = AssetCommand::ReportDamage {
        report_id: Uuid::now_v7(),
        user_id: damage.user_id,
        description: damage.description,
        cost: damage.cost,
        by: ctx.actor.user_id.clone(),
        is_staff: may_book(&ctx.actor),
        at: now(),
    };
    run_on(bus, ctx, id, cmd, idem).await
}

/// The debt id the policy creates for a damage report.
pub fn damage_debt_id(report_id: Uuid) -> Uuid {
    Uuid::new_v5(&DAMAGE_NAMESPACE, report_id.as_bytes())
}

/// Books one stored event if it is a damage report; returns whether it appended anything. Safe
/// to call any number of times for the same event.
pub async fn book_damage(bus: &CommandBus, e: &StoredEvent) -> Result<bool, CommandError> {
    if e.aggregate_type != <domain::sharing::Asset as cqrs_es::Aggregate>::TYPE
        || e.event_type != "DamageReported"
    {
        return Ok(false);
    }
    let AssetEvent::DamageReported { report: r, .. } =
        domain::codec::decode(&e.event_type, e.payload.clone())
            .map_err(|err| anyhow::anyhow!("cannot decode DamageReported: {err}"))?
    else {
        return Ok(false);
    };
    let debt = DebtSpec {
        debt_id: damage_debt_id(r.report_id),
        user_id: r.user_id,
        amount: r.cost,
        currency: r.currency.clone(),
        reason: format!("damage: {}", r.description),
        source_ref: Some(format!("asset:{}:damage:{}", e.aggregate_id, r.report_id)),
        created_by: r.reported_by,
    };
    let cmd = LedgerCommand::CreateDebt { debt, at: now() };
    book_from_policy(bus, e, &policy_context(e), &r.currency, cmd).await
}

/// Runs the sharing policy for as long as the process lives (one leader per database).
pub fn spawn_policy(bus: CommandBus) {
    crate::policy::spawn_policy(
        bus,
        SHARING_POLICY,
        &[<domain::sharing::Asset as cqrs_es::Aggregate>::TYPE],
        |bus, e| Box::pin(book_damage(bus, e)),
    );
}
