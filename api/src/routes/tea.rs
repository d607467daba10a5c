//! Tea Management (seed 000 §2): items, lots, consumption, low-stock rules, announcements, reports.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use commands::{tea as cmd, Context};
use domain::tea::{
    AnnouncementEvent, AnnouncementSpec, BatchSpec, ConsumptionSource, ConsumptionSpec, Item,
    ItemEvent, ItemPatch, ItemSpec, NotifyConfig,
};
use projections::page::Page;
use projections::tea::queries::{self as q, Bucket, ConsumptionFilter, GroupBy, ItemFilter};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{answer, reply};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_uuid, ApiJson, ApiQuery, IdempotencyKey};
use crate::state::AppState;

const PROJECTION: &str = "tea";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/items", post(create_item).get(list_items))
        .route("/items/{item_id}", get(get_item).patch(patch_item))
        .route(
            "/items/{item_id}/batches",
            post(create_batch).get(list_batches),
        )
        .route("/items/{item_id}/consume", post(consume))
        .route("/consumption", get(list_consumption))
        .route("/thresholds", post(upsert_threshold).get(list_thresholds))
        .route(
            "/announcements",
            post(create_announcement).get(list_announcements),
        )
        .route("/reports/stock", get(stock_report))
        .route("/reports/consumption", get(consumption_report))
}

// ---------- shapes on the wire ----------

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

fn cutoff(state: &AppState) -> NaiveDate {
    (Utc::now() + chrono::Duration::days(state.settings.expiry_window_days)).date_naive()
}

fn item_from_state(item: &Item, cutoff: NaiveDate) -> ItemDto {
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

fn item_from_row(r: q::ItemRow, soon: Vec<SoonExpiring>) -> ItemDto {
    ItemDto {
        id: r.id,
        name: r.name,
        unit: r.unit,
        category: r.category,
        sku: r.sku,
        active: r.active,
        track_expiry: r.track_expiry,
        min_stock_qty: r.min_stock_qty,
        tags: serde_json::from_str(&r.tags).unwrap_or_default(),
        stock_qty: r.stock_qty,
        soon_expiring: soon,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

fn soon_by_item(rows: Vec<q::SoonRow>) -> HashMap<String, Vec<SoonExpiring>> {
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

/// Money on the wire: a JSON number with the currency's two decimals.
fn money<S: serde::Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    let mut d = *d;
    d.rescale(2);
    rust_decimal::serde::arbitrary_precision::serialize(&d, s)
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

fn consumption_from_row(r: q::ConsumptionRow) -> ConsumptionDto {
    ConsumptionDto {
        id: r.id,
        item_id: r.item_id,
        batch_id: r.batch_id,
        allocations: serde_json::from_str(&r.allocations).unwrap_or(Value::Array(vec![])),
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

// ---------- items ----------

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct CreateItem {
    name: String,
    unit: String,
    category: String,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    track_expiry: bool,
    #[serde(default)]
    min_stock_qty: i64,
    #[serde(default)]
    tags: Vec<String>,
}

async fn create_item(
    State(state): State<AppState>,
    Auth(actor): Auth,
    idem: IdempotencyKey,
    body: ApiJson<CreateItem>,
) -> ApiResult<Response> {
    let b = body.value;
    let spec = ItemSpec {
        name: b.name.trim().to_string(),
        unit: b.unit.trim().to_string(),
        category: b.category.trim().to_string(),
        sku: b
            .sku
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
        active: b.active,
        track_expiry: b.track_expiry,
        min_stock_qty: b.min_stock_qty,
        tags: b.tags,
    };
    let idem = idem.with_request("POST /items", &body.raw);
    let cut = cutoff(&state);
    let render =
        move |s: &Item, _: &[ItemEvent]| reply(StatusCode::CREATED, &item_from_state(s, cut));
    let ctx = Context::new(actor);
    let exec = cmd::create_item(
        &state.bus,
        &ctx,
        Uuid::now_v7(),
        spec,
        idem.as_ref().map(|i| (i, &render as _)),
    )
    .await?;
    answer(&state, PROJECTION, StatusCode::CREATED, exec, |s, _| {
        item_from_state(s, cut)
    })
    .await
}

#[derive(Debug, Deserialize)]
struct ListItemsQuery {
    q: Option<String>,
    category: Option<String>,
    low_stock: Option<bool>,
    active: Option<bool>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_items(
    State(state): State<AppState>,
    _: Auth,
    ApiQuery(p): ApiQuery<ListItemsQuery>,
) -> ApiResult<Json<Value>> {
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    if p.q.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::validation("q must be at most 200 characters"));
    }
    let filter = ItemFilter {
        q: p.q
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_string()),
        category: p.category,
        low_stock: p.low_stock,
        active: p.active,
    };
    let (rows, next) = q::list_items(&state.db, &filter, page).await?;
    let mut soon = soon_by_item(q::soon_expiring(&state.db, cutoff(&state), None).await?);
    let items: Vec<ItemDto> = rows
        .into_iter()
        .map(|r| {
            let s = soon.remove(&r.id).unwrap_or_default();
            item_from_row(r, s)
        })
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

async fn get_item(
    State(state): State<AppState>,
    _: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ItemDto>> {
    let id = path_uuid(&id, "item")?.to_string();
    let row = q::get_item(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("item"))?;
    let soon = soon_by_item(q::soon_expiring(&state.db, cutoff(&state), Some(&id)).await?)
        .remove(&id)
        .unwrap_or_default();
    Ok(Json(item_from_row(row, soon)))
}

/// Distinguishes an absent field from an explicit `null` (which clears `sku`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchItem {
    name: Option<String>,
    unit: Option<String>,
    category: Option<String>,
    #[serde(default, deserialize_with = "present")]
    sku: Option<Option<String>>,
    active: Option<bool>,
    track_expiry: Option<bool>,
    min_stock_qty: Option<i64>,
    tags: Option<Vec<String>>,
}

async fn patch_item(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    body: ApiJson<PatchItem>,
) -> ApiResult<Response> {
    let item_id = path_uuid(&id, "item")?;
    let b = body.value;
    let patch = ItemPatch {
        name: b.name.map(|s| s.trim().to_string()),
        unit: b.unit.map(|s| s.trim().to_string()),
        category: b.category.map(|s| s.trim().to_string()),
        sku: b
            .sku
            .map(|o| o.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())),
        active: b.active,
        track_expiry: b.track_expiry,
        min_stock_qty: b.min_stock_qty,
        tags: b.tags,
    };
    let ctx = Context::new(actor);
    let exec = cmd::update_item(&state.bus, &ctx, item_id, patch).await?;
    let cut = cutoff(&state);
    answer(&state, PROJECTION, StatusCode::OK, exec, |s, _| {
        item_from_state(s, cut)
    })
    .await
}

// ---------- batches ----------

#[derive(Debug, Deserialize)]
struct CreateBatch {
    batch_code: String,
    #[serde(default)]
    supplier_ref: Option<String>,
    #[serde(default)]
    expiry_date: Option<NaiveDate>,
    qty_received: i64,
    currency: String,
    cost_total: Decimal,
    #[serde(default)]
    received_at: Option<DateTime<Utc>>,
}

fn batch_from_spec(item_id: &str, b: &BatchSpec, qty_remaining: i64) -> BatchDto {
    BatchDto {
        id: b.batch_id.to_string(),
        item_id: item_id.to_string(),
        batch_code: b.batch_code.clone(),
        supplier_ref: b.supplier_ref.clone(),
        expiry_date: b.expiry_date,
        qty_received: b.qty_received,
        qty_remaining,
        currency: b.currency.clone(),
        cost_total: b.cost_total,
        received_at: b.received_at,
    }
}

fn render_batch(item: &Item, events: &[ItemEvent]) -> Value {
    let item_id = item.item_id.map(|i| i.to_string()).unwrap_or_default();
    events
        .iter()
        .find_map(|e| match e {
            ItemEvent::BatchReceived { batch } => {
                Some(json!(batch_from_spec(&item_id, batch, batch.qty_received)))
            }
            _ => None,
        })
        .unwrap_or(Value::Null)
}

async fn create_batch(
    State(state): State<AppState>,
    Auth(actor): Auth,
    idem: IdempotencyKey,
    Path(id): Path<String>,
    body: ApiJson<CreateBatch>,
) -> ApiResult<Response> {
    let item_id = path_uuid(&id, "item")?;
    let b = body.value;
    let now = Utc::now();
    if b.received_at
        .is_some_and(|t| t > now + domain::tea::MAX_FUTURE_SKEW)
    {
        return Err(ApiError::validation(
            "received_at must not be in the future",
        ));
    }
    let spec = BatchSpec {
        batch_id: Uuid::now_v7(),
        batch_code: b.batch_code.trim().to_string(),
        supplier_ref: b
            .supplier_ref
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
        expiry_date: b.expiry_date,
        qty_received: b.qty_received,
        currency: b.currency.trim().to_string(),
        cost_total: b.cost_total,
        received_at: b.received_at.map(trunc).unwrap_or_else(|| trunc(now)),
    };
    let idem = idem.with_request(&format!("POST /items/{item_id}/batches"), &body.raw);
    let render = |s: &Item, ev: &[ItemEvent]| reply(StatusCode::CREATED, &render_batch(s, ev));
    let ctx = Context::new(actor);
    let exec = cmd::receive_batch(
        &state.bus,
        &ctx,
        item_id,
        spec,
        idem.as_ref().map(|i| (i, &render as _)),
    )
    .await?;
    answer(&state, PROJECTION, StatusCode::CREATED, exec, render_batch).await
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_batches(
    State(state): State<AppState>,
    _: Auth,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<PageQuery>,
) -> ApiResult<Json<Value>> {
    let id = path_uuid(&id, "item")?.to_string();
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    if q::get_item(&state.db, &id).await?.is_none() {
        return Err(ApiError::not_found("item"));
    }
    let (rows, next) = q::list_batches(&state.db, &id, page).await?;
    let batches: Vec<BatchDto> = rows
        .into_iter()
        .map(|r| BatchDto {
            id: r.id,
            item_id: r.item_id,
            batch_code: r.batch_code,
            supplier_ref: r.supplier_ref,
            expiry_date: r.expiry_date,
            qty_received: r.qty_received,
            qty_remaining: r.qty_remaining,
            currency: r.currency,
            cost_total: r.cost_total.parse().unwrap_or_default(),
            received_at: r.received_at,
        })
        .collect();
    Ok(Json(json!({"batches": batches, "next_cursor": next})))
}

// ---------- consumption ----------

/// Times are kept to the microsecond, as PostgreSQL stores them.
fn trunc(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

#[derive(Debug, Deserialize)]
struct ConsumeReq {
    qty: i64,
    #[serde(default)]
    batch_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    source: Option<ConsumptionSource>,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    consumed_at: Option<DateTime<Utc>>,
}

fn render_consumption(item: &Item, events: &[ItemEvent]) -> Value {
    let item_id = item.item_id.map(|i| i.to_string()).unwrap_or_default();
    events
        .iter()
        .find_map(|e| match e {
            ItemEvent::StockConsumed {
                consumption_id,
                qty,
                allocations,
                user_id,
                source,
                notes,
                consumed_at,
                recorded_at,
                ..
            } => Some(json!(ConsumptionDto {
                id: consumption_id.to_string(),
                item_id: item_id.clone(),
                batch_id: allocations
                    .first()
                    .map(|a| a.batch_id.to_string())
                    .unwrap_or_default(),
                allocations: json!(allocations),
                qty: *qty,
                user_id: user_id.clone(),
                source: source.as_str().to_string(),
                notes: notes.clone(),
                consumed_at: *consumed_at,
                created_at: *recorded_at,
            })),
            _ => None,
        })
        .unwrap_or(Value::Null)
}

async fn consume(
    State(state): State<AppState>,
    Auth(actor): Auth,
    idem: IdempotencyKey,
    Path(id): Path<String>,
    body: ApiJson<ConsumeReq>,
) -> ApiResult<Response> {
    let item_id = path_uuid(&id, "item")?;
    let b = body.value;
    let batch_id = match b.batch_id.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<Uuid>()
                .map_err(|_| ApiError::not_found("batch"))?,
        ),
    };
    let spec = ConsumptionSpec {
        consumption_id: Uuid::now_v7(),
        qty: b.qty,
        batch_id,
        user_id: b
            .user_id
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| actor.user_id.clone()),
        source: b.source.unwrap_or(ConsumptionSource::SelfService),
        notes: b.notes,
        consumed_at: trunc(b.consumed_at.unwrap_or_else(Utc::now)),
    };
    let idem = idem.with_request(&format!("POST /items/{item_id}/consume"), &body.raw);
    let render =
        |s: &Item, ev: &[ItemEvent]| reply(StatusCode::CREATED, &render_consumption(s, ev));
    let ctx = Context::new(actor);
    let exec = cmd::consume(
        &state.bus,
        &ctx,
        item_id,
        spec,
        idem.as_ref().map(|i| (i, &render as _)),
    )
    .await?;
    answer(
        &state,
        PROJECTION,
        StatusCode::CREATED,
        exec,
        render_consumption,
    )
    .await
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum AggregateBy {
    Day,
    Week,
    Month,
}

#[derive(Debug, Deserialize)]
struct ConsumptionQuery {
    item_id: Option<String>,
    user_id: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    aggregate: Option<AggregateBy>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn check_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> ApiResult<()> {
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(ApiError::validation("from must not be after to"));
        }
    }
    Ok(())
}

async fn list_consumption(
    State(state): State<AppState>,
    _: Auth,
    ApiQuery(p): ApiQuery<ConsumptionQuery>,
) -> ApiResult<Json<Value>> {
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    check_range(p.from, p.to)?;
    let item_id = match p.item_id.as_deref() {
        Some(s) => Some(
            s.parse::<Uuid>()
                .map_err(|_| ApiError::validation("item_id must be a UUID"))?
                .to_string(),
        ),
        None => None,
    };
    let filter = ConsumptionFilter {
        item_id,
        user_id: p.user_id,
        from: p.from,
        to: p.to,
    };
    let (rows, next) = q::list_consumption(&state.db, &filter, page).await?;
    let pairs = q::consumption_pairs(&state.db, &filter).await?;
    let mut by_item: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_user: BTreeMap<String, i64> = BTreeMap::new();
    let mut total = 0i64;
    for pq in pairs {
        *by_item.entry(pq.item_id).or_default() += pq.qty;
        *by_user.entry(pq.user_id).or_default() += pq.qty;
        total += pq.qty;
    }
    let events: Vec<ConsumptionDto> = rows.into_iter().map(consumption_from_row).collect();
    let mut out = json!({
        "events": events,
        "totals": {"qty": total, "by_item": by_item, "by_user": by_user},
        "next_cursor": next,
    });
    if let Some(a) = p.aggregate {
        let bucket = match a {
            AggregateBy::Day => Bucket::Day,
            AggregateBy::Week => Bucket::Week,
            AggregateBy::Month => Bucket::Month,
        };
        let rows = q::consumption_buckets(&state.db, &filter, bucket).await?;
        out["aggregate"] = json!(a_name(a));
        out["buckets"] = json!(rows
            .into_iter()
            .map(|r| json!({"period": r.key, "qty": r.qty}))
            .collect::<Vec<_>>());
    }
    Ok(Json(out))
}

fn a_name(a: AggregateBy) -> &'static str {
    match a {
        AggregateBy::Day => "day",
        AggregateBy::Week => "week",
        AggregateBy::Month => "month",
    }
}

// ---------- thresholds ----------

#[derive(Debug, Deserialize)]
struct UpsertThreshold {
    item_id: String,
    min_qty: i64,
    #[serde(default)]
    notify_config: Option<NotifyConfigReq>,
}

#[derive(Debug, Deserialize)]
struct NotifyConfigReq {
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    notify_roles: Vec<String>,
}

fn render_threshold(item: &Item, _: &[ItemEvent]) -> Value {
    match &item.threshold {
        Some(t) => json!(ThresholdDto {
            id: t.threshold_id.to_string(),
            item_id: item.item_id.map(|i| i.to_string()).unwrap_or_default(),
            min_qty: t.min_qty,
            notify_config: json!(t.notify_config),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }),
        None => Value::Null,
    }
}

async fn upsert_threshold(
    State(state): State<AppState>,
    Auth(actor): Auth,
    idem: IdempotencyKey,
    body: ApiJson<UpsertThreshold>,
) -> ApiResult<Response> {
    let b = body.value;
    let item_id: Uuid = b
        .item_id
        .parse()
        .map_err(|_| ApiError::validation("item_id must be a UUID"))?;
    let nc = b.notify_config.unwrap_or(NotifyConfigReq {
        channels: vec![],
        notify_roles: vec![],
    });
    let notify = NotifyConfig {
        channels: nc.channels,
        notify_roles: nc.notify_roles,
    };
    let idem = idem.with_request("POST /thresholds", &body.raw);
    let render = |s: &Item, ev: &[ItemEvent]| reply(StatusCode::CREATED, &render_threshold(s, ev));
    let ctx = Context::new(actor);
    let exec = cmd::set_threshold(
        &state.bus,
        &ctx,
        item_id,
        b.min_qty,
        notify,
        idem.as_ref().map(|i| (i, &render as _)),
    )
    .await?;
    answer(
        &state,
        PROJECTION,
        StatusCode::CREATED,
        exec,
        render_threshold,
    )
    .await
}

async fn list_thresholds(
    State(state): State<AppState>,
    _: Auth,
    ApiQuery(p): ApiQuery<PageQuery>,
) -> ApiResult<Json<Value>> {
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let (rows, next) = q::list_thresholds(&state.db, page).await?;
    let out: Vec<ThresholdDto> = rows
        .into_iter()
        .map(|r| ThresholdDto {
            id: r.id,
            item_id: r.item_id,
            min_qty: r.min_qty,
            notify_config: serde_json::from_str(&r.notify_config).unwrap_or(Value::Null),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect();
    Ok(Json(json!({"thresholds": out, "next_cursor": next})))
}

// ---------- announcements ----------

#[derive(Debug, Deserialize)]
struct CreateAnnouncement {
    title: String,
    body: String,
    #[serde(default)]
    effective_from: Option<DateTime<Utc>>,
    #[serde(default)]
    item_ids: Vec<String>,
}

fn render_announcement(a: &domain::tea::Announcement, _: &[AnnouncementEvent]) -> Value {
    match &a.spec {
        Some(s) => json!(AnnouncementDto {
            id: s.announcement_id.to_string(),
            title: s.title.clone(),
            body: s.body.clone(),
            published_by: s.published_by.clone(),
            effective_from: s.effective_from,
            created_at: a.created_at.unwrap_or_default(),
            item_ids: s.item_ids.iter().map(Uuid::to_string).collect(),
        }),
        None => Value::Null,
    }
}

async fn create_announcement(
    State(state): State<AppState>,
    Auth(actor): Auth,
    idem: IdempotencyKey,
    body: ApiJson<CreateAnnouncement>,
) -> ApiResult<Response> {
    let b = body.value;
    if b.item_ids.len() > domain::tea::announcement::MAX_ITEM_IDS {
        return Err(ApiError::validation(format!(
            "at most {} item_ids",
            domain::tea::announcement::MAX_ITEM_IDS
        )));
    }
    let mut item_ids = Vec::with_capacity(b.item_ids.len());
    let mut unknown = vec![];
    for raw in &b.item_ids {
        match raw.parse::<Uuid>() {
            Ok(id) if q::get_item(&state.db, &id.to_string()).await?.is_some() => item_ids.push(id),
            _ => unknown.push(raw.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError::Validation(
            "item_ids name unknown items".into(),
            Some(json!({"unknown_item_ids": unknown})),
        ));
    }
    let spec = AnnouncementSpec {
        announcement_id: Uuid::now_v7(),
        title: b.title.trim().to_string(),
        body: b.body,
        effective_from: trunc(b.effective_from.unwrap_or_else(Utc::now)),
        item_ids,
        published_by: actor.user_id.clone(),
    };
    let idem = idem.with_request("POST /announcements", &body.raw);
    let render = |s: &domain::tea::Announcement, ev: &[AnnouncementEvent]| {
        reply(StatusCode::CREATED, &render_announcement(s, ev))
    };
    let ctx = Context::new(actor);
    let exec = cmd::publish_announcement(
        &state.bus,
        &ctx,
        spec,
        idem.as_ref().map(|i| (i, &render as _)),
    )
    .await?;
    answer(
        &state,
        PROJECTION,
        StatusCode::CREATED,
        exec,
        render_announcement,
    )
    .await
}

async fn list_announcements(
    State(state): State<AppState>,
    _: Auth,
    ApiQuery(p): ApiQuery<PageQuery>,
) -> ApiResult<Json<Value>> {
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let (rows, next) = q::list_announcements(&state.db, page).await?;
    let out: Vec<AnnouncementDto> = rows
        .into_iter()
        .map(|r| AnnouncementDto {
            id: r.id,
            title: r.title,
            body: r.body,
            published_by: r.published_by,
            effective_from: r.effective_from,
            created_at: r.created_at,
            item_ids: serde_json::from_str(&r.item_ids).unwrap_or_default(),
        })
        .collect();
    Ok(Json(json!({"announcements": out, "next_cursor": next})))
}

// ---------- reports ----------

#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Csv,
}

#[derive(Debug, Deserialize)]
struct StockReportQuery {
    #[serde(default)]
    format: Format,
}

/// One CSV field, quoted when it needs to be (RFC 4180); a leading formula character is
/// neutralised so spreadsheets do not execute it.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv_response(text: String, filename: &str) -> Response {
    (
        [
            ("content-type", "text/csv; charset=utf-8".to_string()),
            (
                "content-disposition",
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        text,
    )
        .into_response()
}

async fn stock_report(
    State(state): State<AppState>,
    _: Auth,
    ApiQuery(p): ApiQuery<StockReportQuery>,
) -> ApiResult<Response> {
    let generated_at = trunc(Utc::now());
    let items = q::all_items(&state.db).await?;
    let mut soon = soon_by_item(q::soon_expiring(&state.db, cutoff(&state), None).await?);
    if p.format == Format::Csv {
        let mut out =
            String::from("item_id,name,unit,on_hand,soon_expiring_qty,next_expiry_date\n");
        for i in items {
            let s = soon.remove(&i.id).unwrap_or_default();
            let qty: i64 = s.iter().map(|b| b.qty_remaining).sum();
            let next = s
                .first()
                .map(|b| b.expiry_date.to_string())
                .unwrap_or_default();
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                i.id,
                csv_field(&i.name),
                csv_field(&i.unit),
                i.stock_qty,
                qty,
                next
            ));
        }
        return Ok(csv_response(out, "stock.csv"));
    }
    let rows: Vec<Value> = items
        .into_iter()
        .map(|i| {
            let s = soon.remove(&i.id).unwrap_or_default();
            json!({
                "item_id": i.id, "name": i.name, "unit": i.unit, "on_hand": i.stock_qty,
                "soon_expiring": s.iter().map(|b| json!({"batch_id": b.batch_id, "expiry_date": b.expiry_date, "qty": b.qty_remaining})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({"generated_at": generated_at, "items": rows})).into_response())
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum GroupByParam {
    Item,
    User,
    Day,
}

#[derive(Debug, Deserialize)]
struct ConsumptionReportQuery {
    group_by: Option<GroupByParam>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    #[serde(default)]
    format: Format,
}

async fn consumption_report(
    State(state): State<AppState>,
    _: Auth,
    ApiQuery(p): ApiQuery<ConsumptionReportQuery>,
) -> ApiResult<Response> {
    check_range(p.from, p.to)?;
    let (group_by, name) = match p.group_by.unwrap_or(GroupByParam::Item) {
        GroupByParam::Item => (GroupBy::Item, "item"),
        GroupByParam::User => (GroupBy::User, "user"),
        GroupByParam::Day => (GroupBy::Day, "day"),
    };
    let filter = ConsumptionFilter {
        from: p.from,
        to: p.to,
        ..Default::default()
    };
    let rows = q::consumption_report(&state.db, group_by, &filter).await?;
    if p.format == Format::Csv {
        let mut out = String::from("key,qty\n");
        for r in rows {
            out.push_str(&format!("{},{}\n", csv_field(&r.key), r.qty));
        }
        return Ok(csv_response(out, "consumption.csv"));
    }
    Ok(Json(json!({
        "generated_at": trunc(Utc::now()),
        "group_by": name,
        "rows": rows.into_iter().map(|r| json!({"key": r.key, "qty": r.qty})).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("Tea Bags"), "Tea Bags");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
    }

    #[test]
    fn money_is_a_number_with_two_decimals() {
        let b = BatchDto {
            id: "b".into(),
            item_id: "i".into(),
            batch_code: "c".into(),
            supplier_ref: None,
            expiry_date: None,
            qty_received: 1,
            qty_remaining: 1,
            currency: "USD".into(),
            cost_total: "49.9".parse().unwrap(),
            received_at: DateTime::UNIX_EPOCH,
        };
        let s = serde_json::to_string(&b).unwrap();
        assert!(s.contains("\"cost_total\":49.90"), "{s}");
    }
}
