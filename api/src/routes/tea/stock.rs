//! Lots (`/items/{id}/batches`) and consumption (`/items/{id}/consume`, `GET /consumption`).

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct CreateBatch {
    pub(super) batch_code: String,
    #[serde(default)]
    pub(super) supplier_ref: Option<String>,
    #[serde(default)]
    pub(super) expiry_date: Option<NaiveDate>,
    pub(super) qty_received: i64,
    pub(super) currency: String,
    pub(super) cost_total: Decimal,
    #[serde(default)]
    pub(super) received_at: Option<DateTime<Utc>>,
}

pub(super) fn batch_from_spec(item_id: &str, b: &BatchSpec, qty_remaining: i64) -> BatchDto {
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

pub(super) fn render_batch(item: &Item, events: &[ItemEvent]) -> Value {
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

pub(super) async fn create_batch(
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
    let ctx = Context::new(actor);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_batch);
    let exec = cmd::receive_batch(&state.bus, &ctx, item_id, spec, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    pub(super) limit: Option<i64>,
    pub(super) cursor: Option<String>,
}

pub(super) async fn list_batches(
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
            cost_total: r.cost_total,
            received_at: r.received_at,
        })
        .collect();
    Ok(Json(json!({"batches": batches, "next_cursor": next})))
}

#[derive(Debug, Deserialize)]
pub(super) struct ConsumeReq {
    pub(super) qty: i64,
    #[serde(default)]
    pub(super) batch_id: Option<String>,
    #[serde(default)]
    pub(super) user_id: Option<String>,
    #[serde(default)]
    pub(super) source: Option<ConsumptionSource>,
    #[serde(default)]
    pub(super) notes: Option<String>,
    #[serde(default)]
    pub(super) consumed_at: Option<DateTime<Utc>>,
}

pub(super) fn render_consumption(item: &Item, events: &[ItemEvent]) -> Value {
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

pub(super) async fn consume(
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
    let ctx = Context::new(actor);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_consumption);
    let exec = cmd::consume(&state.bus, &ctx, item_id, spec, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum AggregateBy {
    Day,
    Week,
    Month,
}

#[derive(Debug, Deserialize)]
pub(super) struct ConsumptionQuery {
    pub(super) item_id: Option<String>,
    pub(super) user_id: Option<String>,
    #[serde(default, deserialize_with = "range_start")]
    pub(super) from: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "range_end")]
    pub(super) to: Option<DateTime<Utc>>,
    pub(super) aggregate: Option<AggregateBy>,
    pub(super) limit: Option<i64>,
    pub(super) cursor: Option<String>,
}

pub(super) fn check_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> ApiResult<()> {
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(ApiError::validation("from must not be after to"));
        }
    }
    Ok(())
}

pub(super) async fn list_consumption(
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

pub(super) fn a_name(a: AggregateBy) -> &'static str {
    match a {
        AggregateBy::Day => "day",
        AggregateBy::Week => "week",
        AggregateBy::Month => "month",
    }
}
