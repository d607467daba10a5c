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
/// Rows per `unnest` insert on PostgreSQL (each column is one array parameter).
const MAX_UNNEST_ROWS: usize = 50_000;

/// Inserts `rows` (each `cols` values, every row the same kinds of [`Arg`] per column) into the
/// table and columns of `head` (`INSERT INTO t (a, b, …)`). PostgreSQL: one statement per
/// [`MAX_UNNEST_ROWS`] rows, each column bound as one array (`SELECT * FROM unnest($1::text[], …)`),
/// so the statement text is the same for every batch and is prepared once. SQLite: multi-row
/// `VALUES` within its parameter limit.
async fn insert_rows(
    tx: &mut Tx,
    head: &str,
    cols: usize,
    rows: Vec<Vec<Arg>>,
) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let Tx::Pg(t) = tx else {
        for chunk in rows.chunks((MAX_PARAMS / cols).max(1)) {
            let sql = format!("{head} VALUES {}", placeholders(chunk.len(), cols));
            tx.execute_args(&sql, chunk.concat()).await?;
        }
        return Ok(());
    };
    let mut rows = rows;
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(MAX_UNNEST_ROWS));
        let chunk = std::mem::replace(&mut rows, rest);
        let mut columns: Vec<Column> = chunk[0].iter().map(Column::of).collect();
        anyhow::ensure!(
            columns.len() == cols,
            "bulk insert: {cols} columns expected"
        );
        for row in chunk {
            for (c, arg) in columns.iter_mut().zip(row) {
                c.push(arg)?;
            }
        }
        let casts: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}", i + 1, c.sql_type()))
            .collect();
        let sql = format!("{head} SELECT * FROM unnest({})", casts.join(", "));
        let mut q = sqlx::query(&sql);
        for c in columns {
            q = match c {
                Column::I64(v) => q.bind(v),
                Column::Text(v) => q.bind(v),
                Column::OptText(v) => q.bind(v),
                Column::Time(v) => q.bind(v),
            };
        }
        q.execute(&mut **t).await?;
    }
    Ok(())
}

/// One column of a bulk insert, as the array PostgreSQL's `unnest` takes.
enum Column {
    I64(Vec<i64>),
    Text(Vec<String>),
    OptText(Vec<Option<String>>),
    Time(Vec<DateTime<Utc>>),
}

impl Column {
    fn of(a: &Arg) -> Self {
        match a {
            Arg::I64(_) => Column::I64(vec![]),
            Arg::Text(_) => Column::Text(vec![]),
            Arg::OptText(_) => Column::OptText(vec![]),
            Arg::Time(_) => Column::Time(vec![]),
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            Column::I64(_) => "bigint[]",
            Column::Text(_) | Column::OptText(_) => "text[]",
            Column::Time(_) => "timestamptz[]",
        }
    }

    fn push(&mut self, a: Arg) -> anyhow::Result<()> {
        match (self, a) {
            (Column::I64(v), Arg::I64(x)) => v.push(x),
            (Column::Text(v), Arg::Text(x)) => v.push(x),
            (Column::OptText(v), Arg::OptText(x)) => v.push(x),
            (Column::Time(v), Arg::Time(x)) => v.push(x),
            _ => anyhow::bail!("bulk insert: a column mixes kinds of values"),
        }
        Ok(())
    }
}

/// A debt's state after the batch's payments and forgiveness.
struct DebtUpdate {
    amount_paid: Option<String>,
    status: &'static str,
    updated_at: DateTime<Utc>,
}

/// The writes of one batch, gathered in event order. A change to a row inserted in the same batch
/// (a reversal of its transaction, a payment or forgiveness of its debt) is folded into the row
/// before it is inserted; only changes to rows of earlier batches become updates.
#[derive(Default)]
struct Bulk {
    transactions: Vec<Vec<Arg>>,
    /// Index in `transactions` of each transaction inserted in this batch.
    tx_rows: HashMap<String, usize>,
    /// (original id, reversal id, reason) of originals from earlier batches.
    reversals: Vec<(String, String, String)>,
    debts: Vec<Vec<Arg>>,
    /// Index in `debts` of each debt inserted in this batch.
    debt_rows: HashMap<String, usize>,
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
        if let Some(&row) = self.debt_rows.get(&id) {
            // Inserted in this batch: change the row to be inserted (columns as in `push`).
            let mut u = DebtUpdate {
                amount_paid: None,
                status: "open",
                updated_at: at,
            };
            if let Arg::Text(s) = &self.debts[row][7] {
                u.status = match s.as_str() {
                    "settled" => "settled",
                    "forgiven" => "forgiven",
                    _ => "open",
                };
            }
            f(&mut u);
            let r = &mut self.debts[row];
            if let Some(paid) = u.amount_paid {
                r[3] = Arg::Text(paid);
            }
            r[7] = Arg::Text(u.status.into());
            r[10] = Arg::Time(u.updated_at);
            return;
        }
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
                self.tx_rows
                    .insert(t.transaction_id.to_string(), self.transactions.len());
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
                    Arg::OptText(None),
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
                self.tx_rows
                    .insert(reversal_id.to_string(), self.transactions.len());
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
                    Arg::OptText(None),
                ]);
                match self.tx_rows.get(&transaction_id.to_string()) {
                    Some(&row) => {
                        let r = &mut self.transactions[row];
                        r[11] = Arg::OptText(Some(reason.clone()));
                        r[13] = Arg::OptText(Some(reversal_id.to_string()));
                    }
                    None => self.reversals.push((
                        transaction_id.to_string(),
                        reversal_id.to_string(),
                        reason.clone(),
                    )),
                }
                self.lines(e, &ev, reversal_id.to_string(), *reversed_at);
            }
            LedgerEvent::DebtCreated { debt, created_at } => {
                self.debt_rows
                    .insert(debt.debt_id.to_string(), self.debts.len());
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
             reference, recorded_by, recorded_at, reversal_of, reversal_reason, seq, reversed_by)",
            14,
            b.transactions,
        )
        .await?;
        insert_rows(
            tx,
            "INSERT INTO budget_debts (id, user_id, amount, amount_paid, currency, reason, source_ref, status, \
             created_by, created_at, updated_at, seq)",
            12,
            b.debts,
        )
        .await?;
        insert_rows(
            tx,
            "INSERT INTO budget_lines (position, line_no, entry_id, currency, account, account_type, category, \
             debit_cents, credit_cents, occurred_at, recorded_at)",
            11,
            b.lines,
        )
        .await?;
        if let Tx::Pg(t) = tx {
            // Set-based, each id once (the last change wins, as applied one by one). Not a
            // prepared statement: planned with this batch's arrays and the table's current size
            // (a cached generic plan made while the table was small would scan it).
            let mut last: HashMap<String, usize> = HashMap::new();
            for (i, (id, ..)) in b.reversals.iter().enumerate() {
                last.insert(id.clone(), i);
            }
            let (mut ids, mut bys, mut reasons) = (vec![], vec![], vec![]);
            for (i, (id, by, reason)) in b.reversals.into_iter().enumerate() {
                if last[&id] == i {
                    ids.push(id);
                    bys.push(by);
                    reasons.push(reason);
                }
            }
            if !ids.is_empty() {
                sqlx::query(
                    "UPDATE budget_transactions AS t SET reversed_by = v.by, reversal_reason = v.reason \
                     FROM unnest($1::text[], $2::text[], $3::text[]) AS v(id, by, reason) WHERE t.id = v.id",
                )
                .bind(ids)
                .bind(bys)
                .bind(reasons)
                .persistent(false)
                .execute(&mut **t)
                .await?;
            }
            if !b.debt_updates.is_empty() {
                let (mut ids, mut paid, mut status, mut at) = (vec![], vec![], vec![], vec![]);
                for (id, u) in b.debt_updates {
                    ids.push(id);
                    paid.push(u.amount_paid);
                    status.push(u.status.to_string());
                    at.push(u.updated_at);
                }
                sqlx::query(
                    "UPDATE budget_debts AS d SET amount_paid = COALESCE(v.paid, d.amount_paid), \
                     status = v.status, updated_at = v.at \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS v(id, paid, status, at) \
                     WHERE d.id = v.id",
                )
                .bind(ids)
                .bind(paid)
                .bind(status)
                .bind(at)
                .persistent(false)
                .execute(&mut **t)
                .await?;
            }
            return Ok(());
        }
        // SQLite (in-process, no round trips): one statement per updated row, by primary key.
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
