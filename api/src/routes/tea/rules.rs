//! Low-stock rules (`/thresholds`) and announcements (`/announcements`).

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct UpsertThreshold {
    pub(super) item_id: String,
    pub(super) min_qty: i64,
    #[serde(default)]
    pub(super) notify_config: Option<NotifyConfigReq>,
}

#[derive(Debug, Deserialize)]
pub(super) struct NotifyConfigReq {
    #[serde(default)]
    pub(super) channels: Vec<String>,
    #[serde(default)]
    pub(super) notify_roles: Vec<String>,
}

pub(super) fn render_threshold(item: &Item, _: &[ItemEvent]) -> Value {
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

pub(super) async fn upsert_threshold(
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
    let ctx = Context::new(actor);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_threshold);
    let exec = cmd::set_threshold(&state.bus, &ctx, item_id, b.min_qty, notify, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

pub(super) async fn list_thresholds(
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
            notify_config: r.notify_config,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect();
    Ok(Json(json!({"thresholds": out, "next_cursor": next})))
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateAnnouncement {
    pub(super) title: String,
    pub(super) body: String,
    #[serde(default)]
    pub(super) effective_from: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(super) item_ids: Vec<String>,
}

pub(super) fn render_announcement(a: &domain::tea::Announcement, _: &[AnnouncementEvent]) -> Value {
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

pub(super) async fn create_announcement(
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
    let ctx = Context::new(actor);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_announcement);
    let exec = cmd::publish_announcement(&state.bus, &ctx, spec, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

pub(super) async fn list_announcements(
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
            item_ids: r.item_ids,
        })
        .collect();
    Ok(Json(json!({"announcements": out, "next_cursor": next})))
}
