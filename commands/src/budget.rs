//! Budgeting commands with their authorization, and the policy that books tea batches.
//!
//! Writes need `admin` or `executor` (forgiving a debt and the settings need `admin`); `auditor`
//! reads everything and changes nothing. Every command runs on the `Ledger` of its currency.
//!
//! The policy "a tea batch with `cost_total` becomes a budget expense": a process manager reads
//! `BatchReceived` from the log with its own checkpoint and records an expense (category
//! `consumables`, reference `tea-batch:<batch id>`) whose id is UUID v5 of the batch id. The ledger
//! ignores an id it already booked, so a replayed or redelivered event books nothing twice.

use domain::budget::{DebtSpec, Ledger, LedgerCommand, TransactionSpec, TxKind};
use domain::tea::ItemEvent;
use domain::{Actor, ErrorKind, Role};
use eventstore::StoredEvent;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::bus::RenderReply;
use crate::{CommandBus, CommandError, Context, Executed, Idempotency};

/// Leadership and checkpoint name of the tea-batch policy.
pub const TEA_POLICY: &str = "pm.budget.tea";
/// Namespace of the ids the tea-batch policy derives from batch ids.
pub const TEA_BATCH_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_3e2a_9b7d_4c58_a1e0_5d2b_7c9e_0b41);
/// Category of expenses booked for tea batches.
pub const CONSUMABLES: &str = "consumables";

pub type Idem<'a> = Option<(&'a Idempotency, RenderReply<'a, Ledger>)>;

pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// Admins and executors keep the books.
pub fn may_book(actor: &Actor) -> bool {
    actor.has_any(&[Role::Admin, Role::Executor])
}

/// Admins, executors and auditors read the whole books.
pub fn may_read_books(actor: &Actor) -> bool {
    actor.has_any(&[Role::Admin, Role::Executor, Role::Auditor])
}

pub(crate) fn require(ok: bool, what: &str) -> Result<(), CommandError> {
    if ok {
        Ok(())
    } else {
        Err(CommandError::Forbidden(format!("requires role {what}")))
    }
}

/// The ledger's stream id: the currency, once it is known to be one.
pub(crate) fn ledger_id(currency: &str) -> Result<String, CommandError> {
    domain::tea::validate::currency(currency).map_err(|m| CommandError::Domain {
        kind: ErrorKind::Validation,
        message: m,
    })?;
    Ok(currency.to_string())
}

pub async fn record_transaction(
    bus: &CommandBus,
    ctx: &Context,
    transaction: TransactionSpec,
    idem: Idem<'_>,
) -> Result<Executed<Ledger>, CommandError> {
    require(may_book(&ctx.actor), "admin or executor")?;
    let id = ledger_id(&transaction.currency)?;
    let cmd = LedgerCommand::Record {
        transaction,
        at: now(),
    };
    bus.execute::<Ledger>(&id, cmd, ctx, None, idem).await
}

pub async fn reverse_transaction(
    bus: &CommandBus,
    ctx: &Context,
    currency: &str,
    transaction_id: Uuid,
    reason: String,
    idem: Idem<'_>,
) -> Result<Executed<Ledger>, CommandError> {
    require(may_book(&ctx.actor), "admin or executor")?;
    let cmd = LedgerCommand::Reverse {
        transaction_id,
        reversal_id: Uuid::now_v7(),
        reason,
        by: ctx.actor.user_id.clone(),
        at: now(),
    };
    bus.execute::<Ledger>(&ledger_id(currency)?, cmd, ctx, None, idem)
        .await
}

pub async fn create_debt(
    bus: &CommandBus,
    ctx: &Context,
    debt: DebtSpec,
    idem: Idem<'_>,
) -> Result<Executed<Ledger>, CommandError> {
    require(may_book(&ctx.actor), "admin or executor")?;
    let id = ledger_id(&debt.currency)?;
    let cmd = LedgerCommand::CreateDebt { debt, at: now() };
    bus.execute::<Ledger>(&id, cmd, ctx, None, idem).await
}

pub async fn pay_debt(
    bus: &CommandBus,
    ctx: &Context,
    currency: &str,
    debt_id: Uuid,
    amount: Decimal,
    idem: Idem<'_>,
) -> Result<Executed<Ledger>, CommandError> {
    require(may_book(&ctx.actor), "admin or executor")?;
    let cmd = LedgerCommand::PayDebt {
        debt_id,
        payment_id: Uuid::now_v7(),
        amount,
        by: ctx.actor.user_id.clone(),
        at: now(),
    };
    bus.execute::<Ledger>(&ledger_id(currency)?, cmd, ctx, None, idem)
        .await
}

pub async fn forgive_debt(
    bus: &CommandBus,
    ctx: &Context,
    currency: &str,
    debt_id: Uuid,
    reason: String,
) -> Result<Executed<Ledger>, CommandError> {
    require(ctx.actor.has(Role::Admin), "admin")?;
    let cmd = LedgerCommand::ForgiveDebt {
        debt_id,
        reason,
        by: ctx.actor.user_id.clone(),
        at: now(),
    };
    bus.execute::<Ledger>(&ledger_id(currency)?, cmd, ctx, None, None)
        .await
}

pub async fn set_threshold(
    bus: &CommandBus,
    ctx: &Context,
    currency: &str,
    threshold: Decimal,
) -> Result<Executed<Ledger>, CommandError> {
    require(ctx.actor.has(Role::Admin), "admin")?;
    let cmd = LedgerCommand::SetThreshold {
        currency: currency.to_string(),
        threshold,
        by: ctx.actor.user_id.clone(),
        at: now(),
    };
    bus.execute::<Ledger>(&ledger_id(currency)?, cmd, ctx, None, None)
        .await
}

/// The transaction id the policy books for a tea batch.
pub fn tea_batch_transaction_id(batch_id: Uuid) -> Uuid {
    Uuid::new_v5(&TEA_BATCH_NAMESPACE, batch_id.as_bytes())
}

/// The context a policy acts in: the source event's actor, correlated with it.
pub fn policy_context(e: &StoredEvent) -> Context {
    Context {
        correlation_id: e.metadata.correlation_id,
        causation_id: Some(e.event_id),
        ..Context::new(Actor::new(e.metadata.actor.clone(), vec![]))
    }
}

/// Runs a policy's ledger command; returns whether it appended anything. An entry the books
/// cannot take (e.g. an amount out of range) is logged and skipped: it must not stop the policy.
pub async fn book_from_policy(
    bus: &CommandBus,
    e: &StoredEvent,
    ctx: &Context,
    currency: &str,
    cmd: LedgerCommand,
) -> Result<bool, CommandError> {
    match bus
        .execute::<Ledger>(&ledger_id(currency)?, cmd, ctx, None, None)
        .await
    {
        Ok(Executed::Done { stored, .. }) => Ok(!stored.is_empty()),
        Ok(Executed::Replayed(_)) => Ok(false),
        Err(CommandError::Domain {
            kind: ErrorKind::Validation,
            message,
        }) => {
            tracing::warn!(source = %e.event_id, %message, "event not booked");
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// Books one stored event if it is a tea batch with a cost; returns whether it appended anything.
/// Safe to call any number of times for the same event.
pub async fn book_tea_batch(bus: &CommandBus, e: &StoredEvent) -> Result<bool, CommandError> {
    if e.aggregate_type != <domain::tea::Item as cqrs_es::Aggregate>::TYPE
        || e.event_type != "BatchReceived"
    {
        return Ok(false);
    }
    let ItemEvent::BatchReceived { batch } =
        domain::codec::decode(&e.event_type, e.payload.clone())
            .map_err(|err| anyhow::anyhow!("cannot decode BatchReceived: {err}"))?
    else {
        return Ok(false);
    };
    if batch.cost_total <= Decimal::ZERO {
        return Ok(false);
    }
    let transaction = TransactionSpec {
        transaction_id: tea_batch_transaction_id(batch.batch_id),
        kind: TxKind::Expense,
        amount: batch.cost_total,
        currency: batch.currency.clone(),
        category: CONSUMABLES.into(),
        description: Some(format!("tea batch {}", batch.batch_code)),
        occurred_at: batch.received_at,
        reference: Some(format!("tea-batch:{}", batch.batch_id)),
        recorded_by: e.metadata.actor.clone(),
    };
    let cmd = LedgerCommand::Record {
        transaction,
        at: now(),
    };
    book_from_policy(bus, e, &policy_context(e), &batch.currency, cmd).await
}

/// Runs the tea-batch policy for as long as the process lives (one leader per database).
pub fn spawn_tea_policy(bus: CommandBus) {
    crate::policy::spawn_policy(
        bus,
        TEA_POLICY,
        &[<domain::tea::Item as cqrs_es::Aggregate>::TYPE],
        |bus, e| Box::pin(book_tea_batch(bus, e)),
    );
}
