//! The `budget` projection.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::budget::{postings, LedgerEvent};
use eventstore::{tx_exec, tx_fetch_optional, StoredEvent, Tx};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

pub struct BudgetProjection;

/// An amount (at most two decimals) in integer cents.
pub fn cents(d: Decimal) -> i64 {
    (d * Decimal::ONE_HUNDRED)
        .trunc()
        .to_i64()
        .unwrap_or(i64::MAX)
}

#[derive(sqlx::FromRow)]
struct DebtAmount {
    amount: String,
}

async fn lines(
    tx: &mut Tx,
    e: &StoredEvent,
    ev: &LedgerEvent,
    entry_id: String,
    occurred_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    for (n, l) in postings(ev).into_iter().enumerate() {
        tx_exec!(
            tx,
            "INSERT INTO budget_lines (position, line_no, entry_id, currency, account, account_type, category, \
             debit_cents, credit_cents, occurred_at, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            e.position,
            n as i32,
            &entry_id,
            &e.aggregate_id,
            &l.account,
            l.account_type().to_string(),
            l.category().map(str::to_string),
            cents(l.debit),
            cents(l.credit),
            occurred_at,
            e.recorded_at
        )?;
    }
    Ok(())
}

#[async_trait]
impl crate::Projection for BudgetProjection {
    fn name(&self) -> &'static str {
        "budget"
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["budget_ledger"])
    }

    async fn apply(&self, tx: &mut Tx, e: &StoredEvent) -> anyhow::Result<()> {
        if e.aggregate_type != "budget_ledger" {
            return Ok(());
        }
        let ev: LedgerEvent = domain::codec::decode(&e.event_type, e.payload.clone())?;
        match &ev {
            LedgerEvent::TransactionRecorded {
                transaction: t,
                recorded_at,
            } => {
                tx_exec!(
                    tx,
                    "INSERT INTO budget_transactions (id, kind, amount, currency, category, description, occurred_at, \
                     reference, recorded_by, recorded_at, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    t.transaction_id.to_string(),
                    t.kind.as_str(),
                    t.amount.to_string(),
                    &t.currency,
                    &t.category,
                    t.description.clone(),
                    t.occurred_at,
                    t.reference.clone(),
                    &t.recorded_by,
                    *recorded_at,
                    e.position
                )?;
                lines(tx, e, &ev, t.transaction_id.to_string(), t.occurred_at).await?;
            }
            LedgerEvent::TransactionReversed {
                reversal_id,
                transaction_id,
                kind,
                category,
                amount,
                reason,
                reversed_by,
                reversed_at,
            } => {
                tx_exec!(
                    tx,
                    "INSERT INTO budget_transactions (id, kind, amount, currency, category, description, occurred_at, \
                     reference, recorded_by, recorded_at, reversal_of, reversal_reason, seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $7, $10, $6, $11)",
                    reversal_id.to_string(),
                    kind.as_str(),
                    amount.to_string(),
                    &e.aggregate_id,
                    category,
                    reason,
                    *reversed_at,
                    format!("reversal-of:{transaction_id}"),
                    reversed_by,
                    transaction_id.to_string(),
                    e.position
                )?;
                tx_exec!(
                    tx,
                    "UPDATE budget_transactions SET reversed_by = $2, reversal_reason = $3 WHERE id = $1",
                    transaction_id.to_string(),
                    reversal_id.to_string(),
                    reason
                )?;
                lines(tx, e, &ev, reversal_id.to_string(), *reversed_at).await?;
            }
            LedgerEvent::DebtCreated { debt, created_at } => {
                tx_exec!(
                    tx,
                    "INSERT INTO budget_debts (id, user_id, amount, amount_paid, currency, reason, source_ref, status, \
                     created_by, created_at, updated_at, seq) VALUES ($1, $2, $3, '0', $4, $5, $6, 'open', $7, $8, $8, $9)",
                    debt.debt_id.to_string(),
                    &debt.user_id,
                    debt.amount.to_string(),
                    &debt.currency,
                    &debt.reason,
                    debt.source_ref.clone(),
                    &debt.created_by,
                    *created_at,
                    e.position
                )?;
                lines(tx, e, &ev, debt.debt_id.to_string(), *created_at).await?;
            }
            LedgerEvent::DebtPaymentRecorded {
                debt_id,
                payment_id,
                outstanding_after,
                paid_at,
                ..
            } => {
                let row = tx_fetch_optional!(
                    tx,
                    DebtAmount,
                    "SELECT amount FROM budget_debts WHERE id = $1",
                    debt_id.to_string()
                )?;
                let total: Decimal = row
                    .map(|r| r.amount.parse())
                    .transpose()?
                    .unwrap_or_default();
                let status = if outstanding_after.is_zero() {
                    "settled"
                } else {
                    "open"
                };
                tx_exec!(
                    tx,
                    "UPDATE budget_debts SET amount_paid = $2, status = $3, updated_at = $4 WHERE id = $1",
                    debt_id.to_string(),
                    (total - outstanding_after).to_string(),
                    status,
                    *paid_at
                )?;
                lines(tx, e, &ev, payment_id.to_string(), *paid_at).await?;
            }
            LedgerEvent::DebtForgiven {
                debt_id,
                forgiven_at,
                ..
            } => {
                tx_exec!(
                    tx,
                    "UPDATE budget_debts SET status = 'forgiven', updated_at = $2 WHERE id = $1",
                    debt_id.to_string(),
                    *forgiven_at
                )?;
                lines(tx, e, &ev, debt_id.to_string(), *forgiven_at).await?;
            }
            LedgerEvent::ThresholdSet {
                currency,
                threshold,
                set_by,
                at,
            } => {
                tx_exec!(
                    tx,
                    "INSERT INTO budget_settings (currency, low_balance_threshold, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (currency) DO UPDATE SET low_balance_threshold = excluded.low_balance_threshold, \
                     updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                    currency,
                    threshold.to_string(),
                    set_by,
                    *at
                )?;
            }
            LedgerEvent::LowBalanceDetected { .. } => {}
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut Tx) -> anyhow::Result<()> {
        for t in [
            "budget_transactions",
            "budget_debts",
            "budget_lines",
            "budget_settings",
        ] {
            tx_exec!(tx, &format!("DELETE FROM {t}"))?;
        }
        Ok(())
    }
}
