//! Reads of the tea read models. SQL here runs unchanged on PostgreSQL and SQLite except the few
//! date-bucketing expressions, chosen per dialect.

use chrono::{DateTime, NaiveDate, Utc};
use eventstore::{db_fetch_all, db_fetch_optional, Db};
use rust_decimal::Decimal;

use crate::page::Page;

/// Rows one report may cover before it asks the caller to narrow it.
pub const MAX_REPORT_ROWS: i64 = 10_000;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ItemRow {
    pub id: String,
    pub name: String,
    pub unit: String,
    pub category: String,
    pub sku: Option<String>,
    pub active: bool,
    pub track_expiry: bool,
    pub min_stock_qty: i64,
    #[sqlx(try_from = "crate::stored::JsonText")]
    pub tags: Vec<String>,
    pub stock_qty: i64,
    pub threshold_qty: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BatchRow {
    pub id: String,
    pub item_id: String,
    pub batch_code: String,
    pub supplier_ref: Option<String>,
    pub expiry_date: Option<NaiveDate>,
    pub qty_received: i64,
    pub qty_remaining: i64,
    pub currency: String,
    #[sqlx(try_from = "crate::stored::DecimalText")]
    pub cost_total: Decimal,
    pub received_at: DateTime<Utc>,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SoonRow {
    pub id: String,
    pub item_id: String,
    pub expiry_date: NaiveDate,
    pub qty_remaining: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConsumptionRow {
    pub id: String,
    pub item_id: String,
    pub batch_id: String,
    #[sqlx(try_from = "crate::stored::JsonText")]
    pub allocations: serde_json::Value,
    pub qty: i64,
    pub user_id: String,
    pub source: String,
    pub notes: Option<String>,
    pub consumed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ThresholdRow {
    pub id: String,
    pub item_id: String,
    pub min_qty: i64,
    #[sqlx(try_from = "crate::stored::JsonText")]
    pub notify_config: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AnnouncementRow {
    pub id: String,
    pub title: String,
    pub body: String,
    pub published_by: String,
    pub effective_from: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::stored::JsonText")]
    pub item_ids: Vec<String>,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyQty {
    pub key: String,
    pub qty: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PairQty {
    pub item_id: String,
    pub user_id: String,
    pub qty: i64,
}

const ITEM_COLUMNS: &str =
    "id, name, unit, category, sku, active, track_expiry, min_stock_qty, tags, stock_qty, \
     threshold_qty, created_at, updated_at, seq";

pub async fn get_item(db: &Db, id: &str) -> sqlx::Result<Option<ItemRow>> {
    db_fetch_optional!(
        db,
        ItemRow,
        &format!("SELECT {ITEM_COLUMNS} FROM tea_items WHERE id = $1"),
        id
    )
}

#[derive(Debug, Clone, Default)]
pub struct ItemFilter {
    pub q: Option<String>,
    pub category: Option<String>,
    pub low_stock: Option<bool>,
    pub active: Option<bool>,
}

/// `%q%`, lower-cased, with LIKE's wildcards escaped.
pub(crate) fn like_pattern(q: &str) -> String {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

pub async fn list_items(
    db: &Db,
    f: &ItemFilter,
    page: Page,
) -> sqlx::Result<(Vec<ItemRow>, Option<String>)> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM tea_items WHERE seq > $1 \
         AND ($2 IS NULL OR lower(name) LIKE $2 ESCAPE '\\' OR lower(COALESCE(sku, '')) LIKE $2 ESCAPE '\\') \
         AND ($3 IS NULL OR category = $3) \
         AND ($4 IS NULL OR active = $4) \
         AND ($5 IS NULL OR (stock_qty < threshold_qty) = $5) \
         ORDER BY seq LIMIT $6"
    );
    let mut rows = db_fetch_all!(
        db,
        ItemRow,
        &sql,
        page.after,
        f.q.as_deref().map(like_pattern),
        f.category.clone(),
        f.active,
        f.low_stock,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

pub async fn all_items(db: &Db) -> sqlx::Result<Vec<ItemRow>> {
    db_fetch_all!(
        db,
        ItemRow,
        &format!("SELECT {ITEM_COLUMNS} FROM tea_items ORDER BY name LIMIT $1"),
        MAX_REPORT_ROWS
    )
}

/// Lots with stock left that expire on or before `cutoff`, optionally of one item.
pub async fn soon_expiring(
    db: &Db,
    cutoff: NaiveDate,
    item_id: Option<&str>,
) -> sqlx::Result<Vec<SoonRow>> {
    db_fetch_all!(
        db,
        SoonRow,
        "SELECT id, item_id, expiry_date, qty_remaining FROM tea_batches \
         WHERE qty_remaining > 0 AND expiry_date IS NOT NULL AND expiry_date <= $1 \
         AND ($2 IS NULL OR item_id = $2) ORDER BY expiry_date, seq LIMIT $3",
        cutoff,
        item_id,
        MAX_REPORT_ROWS
    )
}

pub async fn list_batches(
    db: &Db,
    item_id: &str,
    page: Page,
) -> sqlx::Result<(Vec<BatchRow>, Option<String>)> {
    let mut rows = db_fetch_all!(
        db,
        BatchRow,
        "SELECT id, item_id, batch_code, supplier_ref, expiry_date, qty_received, qty_remaining, currency, \
         cost_total, received_at, seq FROM tea_batches WHERE item_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        item_id,
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

#[derive(Debug, Clone, Default)]
pub struct ConsumptionFilter {
    pub item_id: Option<String>,
    pub user_id: Option<String>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
}

const CONSUMPTION_WHERE: &str =
    "($1 IS NULL OR c.item_id = $1) AND ($2 IS NULL OR c.user_id = $2) \
     AND ($3 IS NULL OR c.consumed_at >= $3) AND ($4 IS NULL OR c.consumed_at < $4)";

pub async fn list_consumption(
    db: &Db,
    f: &ConsumptionFilter,
    page: Page,
) -> sqlx::Result<(Vec<ConsumptionRow>, Option<String>)> {
    let sql = format!(
        "SELECT c.id, c.item_id, c.batch_id, c.allocations, c.qty, c.user_id, c.source, c.notes, c.consumed_at, \
         c.created_at, c.seq FROM tea_consumptions c WHERE {CONSUMPTION_WHERE} AND c.seq > $5 ORDER BY c.seq LIMIT $6"
    );
    let mut rows = db_fetch_all!(
        db,
        ConsumptionRow,
        &sql,
        f.item_id.clone(),
        f.user_id.clone(),
        f.from,
        f.to,
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

/// Quantities per (item, user) over the whole filter, for the totals of `GET /consumption`.
pub async fn consumption_pairs(db: &Db, f: &ConsumptionFilter) -> sqlx::Result<Vec<PairQty>> {
    let sql = format!(
        "SELECT c.item_id, c.user_id, CAST(SUM(c.qty) AS BIGINT) AS qty FROM tea_consumptions c \
         WHERE {CONSUMPTION_WHERE} GROUP BY c.item_id, c.user_id LIMIT $5"
    );
    db_fetch_all!(
        db,
        PairQty,
        &sql,
        f.item_id.clone(),
        f.user_id.clone(),
        f.from,
        f.to,
        MAX_REPORT_ROWS
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Week,
    Month,
}

fn bucket_expr(db: &Db, b: Bucket) -> &'static str {
    match (db.is_pg(), b) {
        (true, Bucket::Day) => "to_char(c.consumed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        (true, Bucket::Week) => {
            "to_char(date_trunc('week', c.consumed_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')"
        }
        (true, Bucket::Month) => "to_char(c.consumed_at AT TIME ZONE 'UTC', 'YYYY-MM')",
        (false, Bucket::Day) => "substr(c.consumed_at, 1, 10)",
        (false, Bucket::Week) => "date(substr(c.consumed_at, 1, 10), 'weekday 0', '-6 days')",
        (false, Bucket::Month) => "substr(c.consumed_at, 1, 7)",
    }
}

/// Quantities per period (UTC days, ISO weeks starting Monday, months) over the filter.
pub async fn consumption_buckets(
    db: &Db,
    f: &ConsumptionFilter,
    b: Bucket,
) -> sqlx::Result<Vec<KeyQty>> {
    let expr = bucket_expr(db, b);
    let sql = format!(
        "SELECT {expr} AS key, CAST(SUM(c.qty) AS BIGINT) AS qty FROM tea_consumptions c \
         WHERE {CONSUMPTION_WHERE} GROUP BY 1 ORDER BY 1 LIMIT $5"
    );
    db_fetch_all!(
        db,
        KeyQty,
        &sql,
        f.item_id.clone(),
        f.user_id.clone(),
        f.from,
        f.to,
        MAX_REPORT_ROWS
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Item,
    User,
    Day,
}

/// `GET /reports/consumption`: quantity per item name, user or UTC day.
pub async fn consumption_report(
    db: &Db,
    group_by: GroupBy,
    f: &ConsumptionFilter,
) -> sqlx::Result<Vec<KeyQty>> {
    let (key, join) = match group_by {
        GroupBy::Item => ("i.name", "JOIN tea_items i ON i.id = c.item_id"),
        GroupBy::User => ("c.user_id", ""),
        GroupBy::Day => (bucket_expr(db, Bucket::Day), ""),
    };
    let sql = format!(
        "SELECT {key} AS key, CAST(SUM(c.qty) AS BIGINT) AS qty FROM tea_consumptions c {join} \
         WHERE {CONSUMPTION_WHERE} GROUP BY 1 ORDER BY 1 LIMIT $5"
    );
    db_fetch_all!(
        db,
        KeyQty,
        &sql,
        f.item_id.clone(),
        f.user_id.clone(),
        f.from,
        f.to,
        MAX_REPORT_ROWS
    )
}

pub async fn get_threshold(db: &Db, item_id: &str) -> sqlx::Result<Option<ThresholdRow>> {
    db_fetch_optional!(
        db,
        ThresholdRow,
        "SELECT id, item_id, min_qty, notify_config, created_at, updated_at, seq FROM tea_thresholds WHERE item_id = $1",
        item_id
    )
}

pub async fn list_thresholds(
    db: &Db,
    page: Page,
) -> sqlx::Result<(Vec<ThresholdRow>, Option<String>)> {
    let mut rows = db_fetch_all!(
        db,
        ThresholdRow,
        "SELECT id, item_id, min_qty, notify_config, created_at, updated_at, seq FROM tea_thresholds \
         WHERE seq > $1 ORDER BY seq LIMIT $2",
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

pub async fn get_announcement(db: &Db, id: &str) -> sqlx::Result<Option<AnnouncementRow>> {
    db_fetch_optional!(
        db,
        AnnouncementRow,
        "SELECT id, title, body, published_by, effective_from, created_at, item_ids, seq FROM tea_announcements WHERE id = $1",
        id
    )
}

pub async fn list_announcements(
    db: &Db,
    page: Page,
) -> sqlx::Result<(Vec<AnnouncementRow>, Option<String>)> {
    let mut rows = db_fetch_all!(
        db,
        AnnouncementRow,
        "SELECT id, title, body, published_by, effective_from, created_at, item_ids, seq FROM tea_announcements \
         WHERE seq > $1 ORDER BY seq LIMIT $2",
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

/// Every row of every tea table, as text, in a stable order: lets a test compare a rebuilt
/// read model with the incrementally built one.
pub async fn dump(db: &Db) -> sqlx::Result<Vec<String>> {
    let mut out = vec![];
    let (items, _) = list_items(
        db,
        &ItemFilter::default(),
        Page {
            after: 0,
            limit: i64::MAX - 1,
        },
    )
    .await?;
    out.extend(items.iter().map(|r| format!("{r:?}")));
    for i in &items {
        let (b, _) = list_batches(
            db,
            &i.id,
            Page {
                after: 0,
                limit: i64::MAX - 1,
            },
        )
        .await?;
        out.extend(b.iter().map(|r| format!("{r:?}")));
    }
    let (c, _) = list_consumption(
        db,
        &ConsumptionFilter::default(),
        Page {
            after: 0,
            limit: i64::MAX - 1,
        },
    )
    .await?;
    out.extend(c.iter().map(|r| format!("{r:?}")));
    let (t, _) = list_thresholds(
        db,
        Page {
            after: 0,
            limit: i64::MAX - 1,
        },
    )
    .await?;
    out.extend(t.iter().map(|r| format!("{r:?}")));
    let (a, _) = list_announcements(
        db,
        Page {
            after: 0,
            limit: i64::MAX - 1,
        },
    )
    .await?;
    out.extend(a.iter().map(|r| format!("{r:?}")));
    Ok(out)
}
