//! The JSON shapes of seed 000 §2, and their rendering from aggregates and read-model rows.

use super::*;

#[derive(Debug, Serialize)]
pub struct SoonExpiring {
    pub batch_id: String,
    pub expiry_date: NaiveDate,
    pub qty_remaining: i64,
}

#[derive(Debug, Serialize)]
pub struct ItemDto {
    pub id: String,
    pub name: String,
    pub unit: String,
    pub category: String,
    pub sku: Option<String>,
    pub active: bool,
    pub track_expiry: bool,
    pub min_stock_qty: i64,
    pub tags: Vec<String>,
    pub stock_qty: i64,
    pub soon_expiring: Vec<SoonExpiring>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(super) fn cutoff(state: &AppState) -> NaiveDate {
    (Utc::now() + chrono::Duration::days(state.settings.expiry_window_days)).date_naive()
}

pub(super) fn item_from_state(item: &Item, cutoff: NaiveDate) -> ItemDto {
    let mut soon: Vec<SoonExpiring> = item
        .batches
        .iter()
        .filter(|b| b.qty_remaining > 0 && b.expiry_date.is_some_and(|d| d <= cutoff))
        .map(|b| SoonExpiring {
            batch_id: b.batch_id.to_string(),
            expiry_date: b.expiry_date.expect("filtered"),
            qty_remaining: b.qty_remaining,
        })
        .collect();
    soon.sort_by_key(|s| s.expiry_date);
    ItemDto {
        id: item.item_id.map(|i| i.to_string()).unwrap_or_default(),
        name: item.spec.name.clone(),
        unit: item.spec.unit.clone(),
        category: item.spec.category.clone(),
        sku: item.spec.sku.clone(),
        active: item.spec.active,
        track_expiry: item.spec.track_expiry,
        min_stock_qty: item.spec.min_stock_qty,
        tags: item.spec.tags.clone(),
        stock_qty: item.stock(),
        soon_expiring: soon,
        created_at: item.created_at.unwrap_or_default(),
        updated_at: item.updated_at.unwrap_or_default(),
    }
}

pub(super) fn item_from_row(r: q::ItemRow, soon: Vec<SoonExpiring>) -> ItemDto {
    ItemDto {
        id: r.id,
        name: r.name,
        unit: r.unit,
        category: r.category,
        sku: r.sku,
        active: r.active,
        track_expiry: r.track_expiry,
        min_stock_qty: r.min_stock_qty,
        tags: r.tags,
        stock_qty: r.stock_qty,
        soon_expiring: soon,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

pub(super) fn soon_by_item(rows: Vec<q::SoonRow>) -> HashMap<String, Vec<SoonExpiring>> {
    let mut out: HashMap<String, Vec<SoonExpiring>> = HashMap::new();
    for r in rows {
        out.entry(r.item_id).or_default().push(SoonExpiring {
            batch_id: r.id,
            expiry_date: r.expiry_date,
            qty_remaining: r.qty_remaining,
        });
    }
    out
}

#[derive(Debug, Serialize)]
pub struct BatchDto {
    pub id: String,
    pub item_id: String,
    pub batch_code: String,
    pub supplier_ref: Option<String>,
    pub expiry_date: Option<NaiveDate>,
    pub qty_received: i64,
    pub qty_remaining: i64,
    pub currency: String,
    #[serde(serialize_with = "money")]
    pub cost_total: Decimal,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct ConsumptionDto {
    pub id: String,
    pub item_id: String,
    pub batch_id: String,
    pub allocations: Value,
    pub qty: i64,
    pub user_id: String,
    pub source: String,
    pub notes: Option<String>,
    pub consumed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

pub(super) fn consumption_from_row(r: q::ConsumptionRow) -> ConsumptionDto {
    ConsumptionDto {
        id: r.id,
        item_id: r.item_id,
        batch_id: r.batch_id,
        allocations: r.allocations,
        qty: r.qty,
        user_id: r.user_id,
        source: r.source,
        notes: r.notes,
        consumed_at: r.consumed_at,
        created_at: r.created_at,
    }
}

#[derive(Debug, Serialize)]
pub struct ThresholdDto {
    pub id: String,
    pub item_id: String,
    pub min_qty: i64,
    pub notify_config: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct AnnouncementDto {
    pub id: String,
    pub title: String,
    pub body: String,
    pub published_by: String,
    pub effective_from: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub item_ids: Vec<String>,
}
