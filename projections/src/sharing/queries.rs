//! Reads of the sharing read models.

use chrono::{DateTime, Utc};
use eventstore::{db_fetch_all, db_fetch_optional, Db};
use rust_decimal::Decimal;

use crate::page::Page;

/// Newest loans and damage reports listed with an asset.
pub const HISTORY_LISTED: i64 = 100;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AssetRow {
    pub id: String,
    pub name: String,
    pub category: String,
    pub owner_id: String,
    #[sqlx(try_from = "crate::stored::DecimalText")]
    pub replacement_cost: Decimal,
    pub currency: String,
    pub notes: Option<String>,
    pub registered_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub holder_id: Option<String>,
    pub loan_id: Option<String>,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LoanRow {
    pub id: String,
    pub asset_id: String,
    pub user_id: String,
    pub taken_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub returned_at: Option<DateTime<Utc>>,
    pub returned_by: Option<String>,
    pub condition: Option<String>,
    pub return_notes: Option<String>,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DamageRow {
    pub id: String,
    pub asset_id: String,
    pub user_id: String,
    pub description: String,
    #[sqlx(try_from = "crate::stored::DecimalText")]
    pub cost: Decimal,
    pub currency: String,
    pub reported_by: String,
    pub reported_at: DateTime<Utc>,
    pub seq: i64,
}

#[derive(Debug, Clone, Default)]
pub struct AssetFilter {
    pub q: Option<String>,
    pub category: Option<String>,
    pub available: Option<bool>,
}

const ASSET_COLUMNS: &str =
    "id, name, category, owner_id, replacement_cost, currency, notes, registered_by, created_at, \
     updated_at, holder_id, loan_id, seq";

const LOAN_COLUMNS: &str =
    "id, asset_id, user_id, taken_at, due_at, returned_at, returned_by, condition, return_notes, seq";

pub async fn list_assets(
    db: &Db,
    f: &AssetFilter,
    page: Page,
) -> sqlx::Result<(Vec<AssetRow>, Option<String>)> {
    let sql = format!(
        "SELECT {ASSET_COLUMNS} FROM sharing_assets WHERE seq > $1 \
         AND ($2 IS NULL OR lower(name) LIKE $2 ESCAPE '\\' OR lower(COALESCE(notes, '')) LIKE $2 ESCAPE '\\') \
         AND ($3 IS NULL OR category = $3) AND ($4 IS NULL OR (holder_id IS NULL) = $4) \
         ORDER BY seq LIMIT $5"
    );
    let mut rows = db_fetch_all!(
        db,
        AssetRow,
        &sql,
        page.after,
        f.q.as_deref().map(crate::tea::queries::like_pattern),
        f.category.clone(),
        f.available,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

pub async fn get_asset(db: &Db, id: &str) -> sqlx::Result<Option<AssetRow>> {
    let sql = format!("SELECT {ASSET_COLUMNS} FROM sharing_assets WHERE id = $1");
    db_fetch_optional!(db, AssetRow, &sql, id)
}

/// The newest loans of an asset, newest first.
pub async fn loans_of(db: &Db, asset_id: &str) -> sqlx::Result<Vec<LoanRow>> {
    let sql = format!(
        "SELECT {LOAN_COLUMNS} FROM sharing_loans WHERE asset_id = $1 ORDER BY seq DESC LIMIT $2"
    );
    db_fetch_all!(db, LoanRow, &sql, asset_id, HISTORY_LISTED)
}

impl DamageRow {
    /// Who may see a damage report (who owes how much is as private as the debt it becomes):
    /// the user it charges, who filed it, the asset's owner, and those who read the books
    /// (`books`: admins, executors, auditors).
    pub fn visible_to(&self, user_id: &str, owner_id: &str, books: bool) -> bool {
        books || self.user_id == user_id || self.reported_by == user_id || owner_id == user_id
    }
}

/// The newest damage reports of an asset, newest first.
pub async fn damages_of(db: &Db, asset_id: &str) -> sqlx::Result<Vec<DamageRow>> {
    db_fetch_all!(
        db,
        DamageRow,
        "SELECT id, asset_id, user_id, description, cost, currency, reported_by, reported_at, seq \
         FROM sharing_damages WHERE asset_id = $1 ORDER BY seq DESC LIMIT $2",
        asset_id,
        HISTORY_LISTED
    )
}

#[derive(Debug, Clone, Default)]
pub struct LoanFilter {
    /// Some(true): open loans past `due_at`; Some(false): every other loan.
    pub overdue: Option<bool>,
    /// Some(true): not returned yet; Some(false): returned.
    pub active: Option<bool>,
    pub user_id: Option<String>,
    pub asset_id: Option<String>,
}

/// Loans in the order they were taken; `now` decides what is overdue.
pub async fn list_loans(
    db: &Db,
    f: &LoanFilter,
    now: DateTime<Utc>,
    page: Page,
) -> sqlx::Result<(Vec<LoanRow>, Option<String>)> {
    let sql = format!(
        "SELECT {LOAN_COLUMNS} FROM sharing_loans WHERE seq > $1 \
         AND ($2 IS NULL OR (returned_at IS NULL AND due_at < $3) = $2) \
         AND ($4 IS NULL OR (returned_at IS NULL) = $4) \
         AND ($5 IS NULL OR user_id = $5) AND ($6 IS NULL OR asset_id = $6) ORDER BY seq LIMIT $7"
    );
    let mut rows = db_fetch_all!(
        db,
        LoanRow,
        &sql,
        page.after,
        f.overdue,
        now,
        f.active,
        f.user_id.clone(),
        f.asset_id.clone(),
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}
