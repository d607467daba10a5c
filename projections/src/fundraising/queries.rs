//! Reads of the fund-raising read models.

use chrono::{DateTime, Utc};
use eventstore::{db_fetch_all, db_fetch_optional, Db};
use rust_decimal::Decimal;

use crate::page::Page;

/// Purchases listed with a campaign (a campaign records at most 1,000).
pub const MAX_PURCHASES_LISTED: i64 = 1_000;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CampaignRow {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    #[sqlx(try_from = "crate::stored::DecimalText")]
    pub goal_amount: Decimal,
    pub currency: String,
    pub ends_at: DateTime<Utc>,
    pub purpose: Option<String>,
    pub status: String,
    #[sqlx(try_from = "crate::stored::DecimalText")]
    pub raised: Decimal,
    #[sqlx(try_from = "crate::stored::DecimalText")]
    pub spent: Decimal,
    pub donors_count: i64,
    #[sqlx(try_from = "crate::stored::OptDecimalText")]
    pub budget_available: Option<Decimal>,
    #[sqlx(try_from = "crate::stored::OptDecimalText")]
    pub budget_shortfall: Option<Decimal>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DonationRow {
    pub id: String,
    pub campaign_id: String,
    pub donor_id: String,
    #[sqlx(try_from = "crate::stored::DecimalText")]
    pub amount: Decimal,
    pub currency: String,
    pub anonymous: bool,
    pub message: Option<String>,
    pub received_at: DateTime<Utc>,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PurchaseRow {
    pub id: String,
    pub campaign_id: String,
    #[sqlx(try_from = "crate::stored::DecimalText")]
    pub amount: Decimal,
    pub currency: String,
    pub description: String,
    pub receipt_ref: Option<String>,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
    pub seq: i64,
}

const CAMPAIGN_COLUMNS: &str =
    "id, title, description, goal_amount, currency, ends_at, purpose, status, raised, spent, \
     donors_count, budget_available, budget_shortfall, created_by, created_at, updated_at, \
     started_at, completed_at, closed_at, cancelled_at, cancel_reason, seq";

/// Campaigns in creation order, optionally of one status; drafts only with `with_drafts`.
pub async fn list_campaigns(
    db: &Db,
    status: Option<String>,
    with_drafts: bool,
    page: Page,
) -> sqlx::Result<(Vec<CampaignRow>, Option<String>)> {
    let sql = format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM fundraising_campaigns WHERE ($1 IS NULL OR status = $1) \
         AND ($2 OR status <> 'draft') AND seq > $3 ORDER BY seq LIMIT $4"
    );
    let mut rows = db_fetch_all!(
        db,
        CampaignRow,
        &sql,
        status,
        with_drafts,
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

pub async fn get_campaign(db: &Db, id: &str) -> sqlx::Result<Option<CampaignRow>> {
    let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM fundraising_campaigns WHERE id = $1");
    db_fetch_optional!(db, CampaignRow, &sql, id)
}

pub async fn list_donations(
    db: &Db,
    campaign_id: &str,
    page: Page,
) -> sqlx::Result<(Vec<DonationRow>, Option<String>)> {
    let mut rows = db_fetch_all!(
        db,
        DonationRow,
        "SELECT id, campaign_id, donor_id, amount, currency, anonymous, message, received_at, seq \
         FROM fundraising_donations WHERE campaign_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        campaign_id,
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

pub async fn list_purchases(db: &Db, campaign_id: &str) -> sqlx::Result<Vec<PurchaseRow>> {
    db_fetch_all!(
        db,
        PurchaseRow,
        "SELECT id, campaign_id, amount, currency, description, receipt_ref, recorded_by, recorded_at, seq \
         FROM fundraising_purchases WHERE campaign_id = $1 ORDER BY seq LIMIT $2",
        campaign_id,
        MAX_PURCHASES_LISTED
    )
}
