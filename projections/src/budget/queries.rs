//! Reads of the budget read models. Sums run over integer cents, so they are exact on both
//! backends.

use chrono::{DateTime, Utc};
use eventstore::{db_fetch_all, db_fetch_optional, Db};
use rust_decimal::Decimal;

use crate::page::Page;

/// Groups one report may return before it asks the caller to narrow it.
pub const MAX_REPORT_ROWS: i64 = 10_000;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TransactionRow {
    pub id: String,
    pub kind: String,
    #[sqlx(try_from = "crate::stored::DecimalText")]
    pub amount: Decimal,
    pub currency: String,
    pub category: String,
    pub description: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub reference: Option<String>,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
    pub reversal_of: Option<String>,
    pub reversal_reason: Option<String>,
    pub reversed_by: Option<String>,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DebtRow {
    pub id: String,
    pub user_id: String,
    #[sqlx(try_from = "crate::stored::DecimalText")]
    pub amount: Decimal,
    #[sqlx(try_from = "crate::stored::DecimalText")]
    pub amount_paid: Decimal,
    pub currency: String,
    pub reason: String,
    pub source_ref: Option<String>,
    pub status: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SettingRow {
    pub currency: String,
    #[sqlx(try_from = "crate::stored::DecimalText")]
    pub low_balance_threshold: Decimal,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// Debit and credit totals (cents) of one account type in one currency, or of one group.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SumRow {
    pub key: String,
    pub currency: String,
    pub account_type: String,
    pub debit: i64,
    pub credit: i64,
}

#[derive(Debug, Clone, Default)]
pub struct TransactionFilter {
    pub kind: Option<String>,
    pub category: Option<String>,
    pub currency: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

const TX_COLUMNS: &str =
    "id, kind, amount, currency, category, description, occurred_at, reference, recorded_by, \
     recorded_at, reversal_of, reversal_reason, reversed_by, seq";

pub async fn list_transactions(
    db: &Db,
    f: &TransactionFilter,
    page: Page,
) -> sqlx::Result<(Vec<TransactionRow>, Option<String>)> {
    let sql = format!(
        "SELECT {TX_COLUMNS} FROM budget_transactions WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR category = $2) \
         AND ($3 IS NULL OR currency = $3) AND ($4 IS NULL OR occurred_at >= $4) AND ($5 IS NULL OR occurred_at < $5) \
         AND seq > $6 ORDER BY seq LIMIT $7"
    );
    let mut rows = db_fetch_all!(
        db,
        TransactionRow,
        &sql,
        f.kind.clone(),
        f.category.clone(),
        f.currency.clone(),
        f.from,
        f.to,
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

pub async fn get_transaction(db: &Db, id: &str) -> sqlx::Result<Option<TransactionRow>> {
    let sql = format!("SELECT {TX_COLUMNS} FROM budget_transactions WHERE id = $1");
    db_fetch_optional!(db, TransactionRow, &sql, id.to_string())
}

const DEBT_COLUMNS: &str =
    "id, user_id, amount, amount_paid, currency, reason, source_ref, status, created_by, \
     created_at, updated_at, seq";

pub async fn list_debts(
    db: &Db,
    user_id: Option<String>,
    status: Option<String>,
    page: Page,
) -> sqlx::Result<(Vec<DebtRow>, Option<String>)> {
    let sql = format!(
        "SELECT {DEBT_COLUMNS} FROM budget_debts WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR status = $2) \
         AND seq > $3 ORDER BY seq LIMIT $4"
    );
    let mut rows = db_fetch_all!(
        db,
        DebtRow,
        &sql,
        user_id,
        status,
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

pub async fn get_debt(db: &Db, id: &str) -> sqlx::Result<Option<DebtRow>> {
    let sql = format!("SELECT {DEBT_COLUMNS} FROM budget_debts WHERE id = $1");
    db_fetch_optional!(db, DebtRow, &sql, id.to_string())
}

pub async fn list_settings(db: &Db) -> sqlx::Result<Vec<SettingRow>> {
    db_fetch_all!(
        db,
        SettingRow,
        "SELECT currency, low_balance_threshold, updated_by, updated_at FROM budget_settings ORDER BY currency LIMIT 1000"
    )
}

/// Totals per currency and account type of the lines that occurred up to `as_of` and were
/// recorded by `known_at` (each bound optional).
pub async fn balances(
    db: &Db,
    as_of: Option<DateTime<Utc>>,
    known_at: Option<DateTime<Utc>>,
) -> sqlx::Result<Vec<SumRow>> {
    db_fetch_all!(
        db,
        SumRow,
        "SELECT '' AS key, currency, account_type, CAST(COALESCE(SUM(debit_cents), 0) AS BIGINT) AS debit, \
         CAST(COALESCE(SUM(credit_cents), 0) AS BIGINT) AS credit FROM budget_lines \
         WHERE ($1 IS NULL OR occurred_at <= $1) AND ($2 IS NULL OR recorded_at <= $2) \
         GROUP BY currency, account_type ORDER BY currency, account_type",
        as_of,
        known_at
    )
}

/// Debit and credit totals of each account, for comparing the read model with a fresh fold.
pub async fn account_totals(db: &Db) -> sqlx::Result<Vec<SumRow>> {
    db_fetch_all!(
        db,
        SumRow,
        "SELECT account AS key, currency, account_type, CAST(SUM(debit_cents) AS BIGINT) AS debit, \
         CAST(SUM(credit_cents) AS BIGINT) AS credit FROM budget_lines GROUP BY account, currency, account_type \
         ORDER BY currency, account"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportGroup {
    Month,
    Category,
}

/// Income, expense and donation totals per month or category and currency, over lines that
/// occurred in `[from, to)`.
pub async fn report(
    db: &Db,
    group: ReportGroup,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> sqlx::Result<Vec<SumRow>> {
    let key = match (group, db.is_pg()) {
        (ReportGroup::Month, true) => "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM')",
        (ReportGroup::Month, false) => "substr(occurred_at, 1, 7)",
        (ReportGroup::Category, _) => "COALESCE(category, '')",
    };
    let sql = format!(
        "SELECT {key} AS key, currency, account_type, CAST(SUM(debit_cents) AS BIGINT) AS debit, \
         CAST(SUM(credit_cents) AS BIGINT) AS credit FROM budget_lines \
         WHERE account_type IN ('income', 'expense', 'donation') \
         AND ($1 IS NULL OR occurred_at >= $1) AND ($2 IS NULL OR occurred_at < $2) \
         GROUP BY {key}, currency, account_type ORDER BY 1, currency, account_type LIMIT $3"
    );
    db_fetch_all!(db, SumRow, &sql, from, to, MAX_REPORT_ROWS)
}
