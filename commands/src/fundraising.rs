//! Fund-raising commands with their authorization, and the policy that books donations and
//! purchases in the budget.
//!
//! Campaigns are created, started, closed and cancelled by admins; any user but a read-only
//! auditor donates; admins and executors record purchases. Starting checks the budget: the
//! `Ledger` of the campaign's currency gives what is available.
//!
//! The policy: a process manager reads `DonationReceived` and `PurchaseRecorded` from the log
//! with its own checkpoint (`pm.budget.fundraising`) and records a donation or an expense
//! (category `campaigns`, reference `campaign:<id>:donation:<id>` / `campaign:<id>:purchase:<id>`)
//! whose id is UUID v5 of the donation or purchase id. The ledger ignores an id it already booked,
//! so a replayed or redelivered event books nothing twice.

use domain::budget::{Ledger, LedgerCommand, TransactionSpec, TxKind};
use domain::fundraising::{
    Campaign, CampaignCommand, CampaignEvent, CampaignSpec, DonationSpec, PurchaseSpec,
};
use domain::{Actor, ErrorKind, Role};
use eventstore::StoredEvent;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::budget::{book_from_policy, now, policy_context, require};
use crate::bus::RenderReply;
use crate::{CommandBus, CommandError, Context, Executed, Idempotency};

/// Leadership and checkpoint name of the fund-raising policy.
pub const FUNDRAISING_POLICY: &str = "pm.budget.fundraising";
/// Namespace of the transaction ids derived from donation ids.
pub const DONATION_NAMESPACE: Uuid = Uuid::from_u128(0x3a5e_91c7_0d42_4b8e_9f16_c2d7_58a0_e913);
/// Namespace of the transaction ids derived from purchase ids.
pub const PURCHASE_NAMESPACE: Uuid = Uuid::from_u128(0x8b27_4f0d_6e19_4a53_b7c8_1d3e_90f4_a256);
/// Budget category of campaign donations and purchases.
pub const CAMPAIGNS: &str = "campaigns";
/// `recorded_by` of the booking of an anonymous donation.
pub const ANONYMOUS: &str = "anonymous";

pub type Idem<'a> = Option<(&'a Idempotency, RenderReply<'a, Campaign>)>;

async fn run_on(
    bus: &CommandBus,
    ctx: &Context,
    id: Uuid,
    cmd: CampaignCommand,
    idem: Idem<'_>,
) -> Result<Executed<Campaign>, CommandError> {
    bus.execute::<Campaign>(&id.to_string(), cmd, ctx, None, idem)
        .await
}

pub async fn create(
    bus: &CommandBus,
    ctx: &Context,
    spec: CampaignSpec,
    idem: Idem<'_>,
) -> Result<Executed<Campaign>, CommandError> {
    require(ctx.actor.has(Role::Admin), "admin")?;
    let id = spec.campaign_id;
    let cmd = CampaignCommand::Create { spec, at: now() };
    run_on(bus, ctx, id, cmd, idem).await
}

/// Starts a draft after checking the budget: `available` is the balance of the campaign's
/// currency (never below zero), `shortfall` what the goal needs beyond it.
pub async fn start(
    bus: &CommandBus,
    ctx: &Context,
    id: Uuid,
) -> Result<Executed<Campaign>, CommandError> {
    require(ctx.actor.has(Role::Admin), "admin")?;
    let (_, campaign) = bus.load::<Campaign>(&id.to_string()).await?;
    let Some(spec) = campaign.spec else {
        return Err(CommandError::Domain {
            kind: ErrorKind::NotFound,
            message: "campaign not found".into(),
        });
    };
    let (_, ledger) = bus.load::<Ledger>(&spec.currency).await?;
    let cmd = CampaignCommand::Start {
        available: ledger.balance,
        by: ctx.actor.user_id.clone(),
        at: now(),
    };
    run_on(bus, ctx, id, cmd, None).await
}

pub async fn donate(
    bus: &CommandBus,
    ctx: &Context,
    id: Uuid,
    donation: DonationSpec,
    idem: Idem<'_>,
) -> Result<Executed<Campaign>, CommandError> {
    require(
        ctx.actor.participates(),
        "admin, executor, teacher or student",
    )?;
    let cmd = CampaignCommand::Donate {
        donation,
        at: now(),
    };
    run_on(bus, ctx, id, cmd, idem).await
}

pub async fn close(
    bus: &CommandBus,
    ctx: &Context,
    id: Uuid,
) -> Result<Executed<Campaign>, CommandError> {
    require(ctx.actor.has(Role::Admin), "admin")?;
    let cmd = CampaignCommand::Close {
        by: ctx.actor.user_id.clone(),
        at: now(),
    };
    run_on(bus, ctx, id, cmd, None).await
}

pub async fn cancel(
    bus: &CommandBus,
    ctx: &Context,
    id: Uuid,
    reason: Option<String>,
) -> Result<Executed<Campaign>, CommandError> {
    require(ctx.actor.has(Role::Admin), "admin")?;
    let cmd = CampaignCommand::Cancel {
        reason,
        by: ctx.actor.user_id.clone(),
        at: now(),
    };
    run_on(bus, ctx, id, cmd, None).await
}

pub async fn record_purchase(
    bus: &CommandBus,
    ctx: &Context,
    id: Uuid,
    purchase: PurchaseSpec,
    idem: Idem<'_>,
) -> Result<Executed<Campaign>, CommandError> {
    require(crate::budget::may_book(&ctx.actor), "admin or executor")?;
    let cmd = CampaignCommand::RecordPurchase {
        purchase,
        at: now(),
    };
    run_on(bus, ctx, id, cmd, idem).await
}

/// The transaction id the policy books for a donation.
pub fn donation_transaction_id(donation_id: Uuid) -> Uuid {
    Uuid::new_v5(&DONATION_NAMESPACE, donation_id.as_bytes())
}

/// The transaction id the policy books for a purchase.
pub fn purchase_transaction_id(purchase_id: Uuid) -> Uuid {
    Uuid::new_v5(&PURCHASE_NAMESPACE, purchase_id.as_bytes())
}

/// Books one stored event if it is a donation or a purchase; returns whether it appended
/// anything. Safe to call any number of times for the same event.
pub async fn book_campaign_event(bus: &CommandBus, e: &StoredEvent) -> Result<bool, CommandError> {
    if e.aggregate_type != <domain::fundraising::Campaign as cqrs_es::Aggregate>::TYPE
        || !matches!(
            e.event_type.as_str(),
            "DonationReceived" | "PurchaseRecorded"
        )
    {
        return Ok(false);
    }
    let event: CampaignEvent = domain::codec::decode(&e.event_type, e.payload.clone())
        .map_err(|err| anyhow::anyhow!("cannot decode {}: {err}", e.event_type))?;
    let cid = &e.aggregate_id;
    let mut ctx = policy_context(e);
    let (transaction, currency) = match event {
        CampaignEvent::DonationReceived {
            donation: d,
            received_at,
            ..
        } => {
            // An anonymous donor stays hidden in the books too (executors read them).
            let by = if d.anonymous {
                ANONYMOUS.to_string()
            } else {
                d.donor_id.clone()
            };
            ctx.actor = Actor::new(by.clone(), vec![]);
            let t = TransactionSpec {
                transaction_id: donation_transaction_id(d.donation_id),
                kind: TxKind::Donation,
                amount: d.amount,
                currency: d.currency.clone(),
                category: CAMPAIGNS.into(),
                description: Some("campaign donation".into()),
                occurred_at: received_at,
                reference: Some(format!("campaign:{cid}:donation:{}", d.donation_id)),
                recorded_by: by,
            };
            (t, d.currency)
        }
        CampaignEvent::PurchaseRecorded {
            purchase: p,
            currency,
            recorded_at,
        } => {
            let t = TransactionSpec {
                transaction_id: purchase_transaction_id(p.purchase_id),
                kind: TxKind::Expense,
                amount: p.amount,
                currency: currency.clone(),
                category: CAMPAIGNS.into(),
                description: Some(p.description),
                occurred_at: recorded_at,
                reference: Some(format!("campaign:{cid}:purchase:{}", p.purchase_id)),
                recorded_by: p.recorded_by,
            };
            (t, currency)
        }
        _ => return Ok(false),
    };
    debug_assert!(transaction.amount > Decimal::ZERO);
    let cmd = LedgerCommand::Record {
        transaction,
        at: now(),
    };
    book_from_policy(bus, e, &ctx, &currency, cmd).await
}

/// Runs the fund-raising policy for as long as the process lives (one leader per database).
pub fn spawn_policy(bus: CommandBus) {
    crate::policy::spawn_policy(
        bus,
        FUNDRAISING_POLICY,
        &[<domain::fundraising::Campaign as cqrs_es::Aggregate>::TYPE],
        |bus, e| Box::pin(book_campaign_event(bus, e)),
    );
}
