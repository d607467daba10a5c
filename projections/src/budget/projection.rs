//! The `budget` projection.

use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::budget::{postings, LedgerEvent};
use eventstore::{placeholders, tx_exec, tx_fetch_optional, Arg, StoredEvent, Tx};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

pub struct BudgetProjection;

impl BudgetProjection {
    /// The projection's name: its checkpoint, and what read-your-writes waits on.
    pub const NAME: &'static str = "budget";
}

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

#[async_trait]
impl crate::Projection for BudgetProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&[<domain::budget::Ledger as domain::Aggregate>::TYPE])
    }

    async fn apply(&self, tx: &mut Tx, e: &StoredEvent) -> anyhow::Result<()> {
        self.apply_batch(tx, std::slice::from_ref(e)).await
    }

    /// A few statements per batch: every insert of a batch is written in bulk first (transactions, debts, lines), then the updates, which only
    /// touch rows inserted before them (a reversal's original, a paid or forgiven debt), folded
    /// to each row's final values in event order.
    async fn apply_batch(&self, tx: &mut Tx, events: &[StoredEvent]) -> anyhow::Result<()> {
        let mut b = Bulk::default();
        for e in events
            .iter()
            .filter(|e| e.aggregate_type == <domain::budget::Ledger as domain::Aggregate>::TYPE)
        {
            let ev: LedgerEvent = domain::codec::decode(&e.event_type, e.payload.clone())
                .with_context(|| format!("budget: bad event at position {}", e.position))?;
            b.push(tx, e, ev).await?;
        }
        b.flush(tx).await
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

/// Bind parameters per statement (SQLite allows 32,766).
const MAX_PARAMS: usize = 30_000;

async fn insert_rows(
    tx: &mut Tx,
    head: &str,
    cols: usize,
    rows: &[Vec<Arg>],
) -> anyhow::Result<()> {
    for chunk in rows.chunks((MAX_PARAMS / cols).max(1)) {
        let sql = format!("{head} VALUES {}", placeholders(chunk.len(), cols));
        tx.execute_args(&sql, chunk.concat()).await?;
    }
    Ok(())
}

/// A debt's state after the batch's payments and forgiveness.
struct DebtUpdate {
    amount_paid: Option<String>,
    status: &'static str,
    updated_at: DateTime<Utc>,
}

/// The writes of one batch, gathered in event order.
#[derive(Default)]
struct Bulk {
    transactions: Vec<Vec<Arg>>,
    /// (original id, reversal id, reason)
    reversals: Vec<(String, String, String)>,
    debts: Vec<Vec<Arg>>,
    /// Amounts of the debts created in this batch.
    debt_amounts: HashMap<String, Decimal>,
    debt_updates: Vec<(String, DebtUpdate)>,
    debt_index: HashMap<String, usize>,
    lines: Vec<Vec<Arg>>,
}

impl Bulk {
    fn lines(
        &mut self,
        e: &StoredEvent,
        ev: &LedgerEvent,
        entry_id: String,
        occurred_at: DateTime<Utc>,
    ) {
        for (n, l) in postings(ev).into_iter().enumerate() {
            self.lines.push(vec![
                Arg::I64(e.position),
                Arg::I64(n as i64),
                Arg::Text(entry_id.clone()),
                Arg::Text(e.aggregate_id.clone()),
                Arg::Text(l.account.clone()),
                Arg::Text(l.account_type().to_string()),
                Arg::OptText(l.category().map(str::to_string)),
                Arg::I64(cents(l.debit)),
                Arg::I64(cents(l.credit)),
                Arg::Time(occurred_at),
                Arg::Time(e.recorded_at),
            ]);
        }
    }

    fn update_debt(&mut self, id: String, f: impl FnOnce(&mut DebtUpdate), at: DateTime<Utc>) {
        let i = *self.debt_index.entry(id.clone()).or_insert_with(|| {
            self.debt_updates.push((
                id,
                DebtUpdate {
                    amount_paid: None,
                    status: "open",
                    updated_at: at,
                },
            ));
            self.debt_updates.len() - 1
        });
        let u = &mut self.debt_updates[i].1;
        u.updated_at = at;
        f(u);
    }

    async fn push(&mut self, tx: &mut Tx, e: &StoredEvent, ev: LedgerEvent) -> anyhow::Result<()> {
        match &ev {
            LedgerEvent::TransactionRecorded {
                transaction: t,
                recorded_at,
            } => {
                self.transactions.push(vec![
                    Arg::Text(t.transaction_id.to_string()),
                    Arg::Text(t.kind.as_str().into()),
                    Arg::Text(t.amount.to_string()),
                    Arg::Text(t.currency.clone()),
                    Arg::Text(t.category.clone()),
                    Arg::OptText(t.description.clone()),
                    Arg::Time(t.occurred_at),
                    Arg::OptText(t.reference.clone()),
                    Arg::Text(t.recorded_by.clone()),
                    Arg::Time(*recorded_at),
                    Arg::OptText(None),
                    Arg::OptText(None),
                    Arg::I64(e.position),
                ]);
                self.lines(e, &ev, t.transaction_id.to_string(), t.occurred_at);
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
                self.transactions.push(vec![
                    Arg::Text(reversal_id.to_string()),
                    Arg::Text(kind.as_str().into()),
                    Arg::Text(amount.to_string()),
                    Arg::Text(e.aggregate_id.clone()),
                    Arg::Text(category.clone()),
                    Arg::OptText(Some(reason.clone())),
                    Arg::Time(*reversed_at),
                    Arg::OptText(Some(format!("reversal-of:{transaction_id}"))),
                    Arg::Text(reversed_by.clone()),
                    Arg::Time(*reversed_at),
                    Arg::OptText(Some(transaction_id.to_string())),
                    Arg::OptText(Some(reason.clone())),
                    Arg::I64(e.position),
                ]);
                self.reversals.push((
                    transaction_id.to_string(),
                    reversal_id.to_string(),
                    reason.clone(),
                ));
                self.lines(e, &ev, reversal_id.to_string(), *reversed_at);
            }
            LedgerEvent::DebtCreated { debt, created_at } => {
                self.debts.push(vec![
                    Arg::Text(debt.debt_id.to_string()),
                    Arg::Text(debt.user_id.clone()),
                    Arg::Text(debt.amount.to_string()),
                    Arg::Text("0".into()),
                    Arg::Text(debt.currency.clone()),
                    Arg::Text(debt.reason.clone()),
                    Arg::OptText(debt.source_ref.clone()),
                    Arg::Text("open".into()),
                    Arg::Text(debt.created_by.clone()),
                    Arg::Time(*created_at),
                    Arg::Time(*created_at),
                    Arg::I64(e.position),
                ]);
                self.debt_amounts
                    .insert(debt.debt_id.to_string(), debt.amount);
                self.lines(e, &ev, debt.debt_id.to_string(), *created_at);
            }
            LedgerEvent::DebtPaymentRecorded {
                debt_id,
                payment_id,
                outstanding_after,
                paid_at,
                ..
            } => {
                let id = debt_id.to_string();
                let total = match self.debt_amounts.get(&id) {
                    Some(a) => *a,
                    None => {
                        let row = tx_fetch_optional!(
                            tx,
                            DebtAmount,
                            "SELECT amount FROM budget_debts WHERE id = $1",
                            &id
                        )?;
                        let total: Decimal = row
                            .map(|r| r.amount.parse())
                            .transpose()?
                            .unwrap_or_default();
                        self.debt_amounts.insert(id.clone(), total);
                        total
                    }
                };
                let paid = (total - outstanding_after).to_string();
                let settled = outstanding_after.is_zero();
                self.update_debt(
                    id,
                    |u| {
                        u.amount_paid = Some(paid);
                        u.status = if settled { "settled" } else { "open" };
                    },
                    *paid_at,
                );
                self.lines(e, &ev, payment_id.to_string(), *paid_at);
            }
            LedgerEvent::DebtForgiven {
                debt_id,
                forgiven_at,
                ..
            } => {
                self.update_debt(debt_id.to_string(), |u| u.status = "forgiven", *forgiven_at);
                self.lines(e, &ev, debt_id.to_string(), *forgiven_at);
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

    async fn flush(&mut self, tx: &mut Tx) -> anyhow::Result<()> {
        let b = std::mem::take(self);
        insert_rows(
            tx,
            "INSERT INTO budget_transactions (id, kind, amount, currency, category, description, occurred_at, \
             reference, recorded_by, recorded_at, reversal_of, reversal_reason, seq)",
            13,
            &b.transactions,
        )
        .await?;
        insert_rows(
            tx,
            "INSERT INTO budget_debts (id, user_id, amount, amount_paid, currency, reason, source_ref, status, \
             created_by, created_at, updated_at, seq)",
            12,
            &b.debts,
        )
        .await?;
        insert_rows(
            tx,
            "INSERT INTO budget_lines (position, line_no, entry_id, currency, account, account_type, category, \
             debit_cents, credit_cents, occurred_at, recorded_at)",
            11,
            &b.lines,
        )
        .await?;
        // One statement per updated row, by primary key: a join against the batch's values would
        // be planned on the statistics of the (still empty) table during a rebuild, as a scan.
        for (id, by, reason) in b.reversals {
            tx_exec!(
                tx,
                "UPDATE budget_transactions SET reversed_by = $2, reversal_reason = $3 WHERE id = $1",
                id,
                by,
                reason
            )?;
        }
        for (id, u) in b.debt_updates {
            tx_exec!(
                tx,
                "UPDATE budget_debts SET amount_paid = COALESCE($2, amount_paid), status = $3, updated_at = $4 WHERE id = $1",
                id,
                u.amount_paid,
                u.status,
                u.updated_at
            )?;
        }
        Ok(())
    }
}
