//! `POST/GET /items`, `GET/PATCH /items/{id}`.

use super::*;

pub(super) fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateItem {
    pub(super) name: String,
    pub(super) unit: String,
    pub(super) category: String,
    #[serde(default)]
    pub(super) sku: Option<String>,
    #[serde(default = "yes")]
    pub(super) active: bool,
    #[serde(default)]
    pub(super) track_expiry: bool,
    #[serde(default)]
    pub(super) min_stock_qty: i64,
    #[serde(default)]
    pub(super) tags: Vec<String>,
}

pub(super) async fn create_item(
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
    let cut = cutoff(&state);
    let ctx = Context::new(actor);
    let reply = Idempotent::new(
        &idem,
        &body.raw,
        StatusCode::CREATED,
        move |s: &Item, _: &[ItemEvent]| item_from_state(s, cut),
    );
    let exec = cmd::create_item(&state.bus, &ctx, Uuid::now_v7(), spec, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

#[derive(Debug, Deserialize)]
pub(super) struct ListItemsQuery {
    pub(super) q: Option<String>,
    pub(super) category: Option<String>,
    pub(super) low_stock: Option<bool>,
    pub(super) active: Option<bool>,
    pub(super) limit: Option<i64>,
    pub(super) cursor: Option<String>,
}

pub(super) async fn list_items(
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

pub(super) async fn get_item(
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
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchItem {
    pub(super) name: Option<String>,
    pub(super) unit: Option<String>,
    pub(super) category: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub(super) sku: Option<Option<String>>,
    pub(super) active: Option<bool>,
    pub(super) track_expiry: Option<bool>,
    pub(super) min_stock_qty: Option<i64>,
    pub(super) tags: Option<Vec<String>>,
}

pub(super) async fn patch_item(
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
