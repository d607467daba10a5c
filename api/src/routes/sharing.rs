//! Sharing (`sharing-svc`, issue #6): shared assets (a user's or the lab's), taking and
//! returning them, overdue loans, damage reports (which become debts in the budget through the
//! sharing policy). Every authenticated user sees the assets and loans.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use commands::sharing::{self as cmd, Damage};
use commands::Context;
use domain::sharing::{Asset, AssetEvent, AssetSpec, Condition, Loan};
use projections::page::Page;
use projections::sharing::queries::{self as q, AssetFilter, LoanFilter};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{answer, Idempotent};
use super::{money, trunc};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_uuid, ApiJson, ApiQuery, IdempotencyKey};
use crate::state::AppState;

const PROJECTION: &str = projections::sharing::SharingProjection::NAME;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/assets", post(register_asset).get(list_assets))
        .route("/assets/{id}", get(get_asset))
        .route("/assets/{id}/take", post(take_asset))
        .route("/assets/{id}/return", post(return_asset))
        .route("/assets/{id}/damage", post(report_damage))
        .route("/loans", get(list_loans))
}

#[derive(Debug, Serialize)]
pub struct AssetDto {
    pub id: String,
    pub name: String,
    pub category: String,
    pub owner_id: String,
    #[serde(serialize_with = "money")]
    pub replacement_cost: Decimal,
    pub currency: String,
    pub notes: Option<String>,
    pub registered_by: String,
    pub available: bool,
    pub holder_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn asset_from_row(r: q::AssetRow) -> AssetDto {
    AssetDto {
        replacement_cost: r.replacement_cost,
        available: r.holder_id.is_none(),
        id: r.id,
        name: r.name,
        category: r.category,
        owner_id: r.owner_id,
        currency: r.currency,
        notes: r.notes,
        registered_by: r.registered_by,
        holder_id: r.holder_id,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

fn render_asset(a: &Asset, _: &[AssetEvent]) -> Value {
    let Some(s) = &a.spec else {
        return Value::Null;
    };
    json!(AssetDto {
        id: s.asset_id.to_string(),
        name: s.name.clone(),
        category: s.category.clone(),
        owner_id: s.owner_id.clone(),
        replacement_cost: s.replacement_cost,
        currency: s.currency.clone(),
        notes: s.notes.clone(),
        registered_by: s.registered_by.clone(),
        available: a.holder.is_none(),
        holder_id: a.holder.as_ref().map(|h| h.user_id.clone()),
        created_at: a.created_at.unwrap_or_default(),
        updated_at: a.updated_at.unwrap_or_default(),
    })
}

#[derive(Debug, Serialize)]
struct LoanDto {
    id: String,
    asset_id: String,
    user_id: String,
    taken_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
    returned_at: Option<DateTime<Utc>>,
    returned_by: Option<String>,
    condition: Option<String>,
    notes: Option<String>,
    /// Not returned and past `due_at`.
    overdue: bool,
}

fn loan_from_row(r: q::LoanRow, now: DateTime<Utc>) -> LoanDto {
    LoanDto {
        overdue: r.returned_at.is_none() && r.due_at < now,
        id: r.id,
        asset_id: r.asset_id,
        user_id: r.user_id,
        taken_at: r.taken_at,
        due_at: r.due_at,
        returned_at: r.returned_at,
        returned_by: r.returned_by,
        condition: r.condition,
        notes: r.return_notes,
    }
}

fn loan_dto(asset_id: String, l: &Loan) -> LoanDto {
    LoanDto {
        id: l.loan_id.to_string(),
        asset_id,
        user_id: l.user_id.clone(),
        taken_at: l.taken_at,
        due_at: l.due_at,
        returned_at: None,
        returned_by: None,
        condition: None,
        notes: None,
        overdue: false,
    }
}

/// The loan a take or return concerns, as the command left it.
fn render_loan(a: &Asset, events: &[AssetEvent]) -> Value {
    let asset_id = a
        .spec
        .as_ref()
        .map(|s| s.asset_id.to_string())
        .unwrap_or_default();
    match events.first() {
        Some(AssetEvent::ItemTaken { loan }) => json!(loan_dto(asset_id, loan)),
        Some(AssetEvent::ItemReturned {
            loan,
            condition,
            notes,
            returned_by,
            returned_at,
        }) => json!(LoanDto {
            returned_at: Some(*returned_at),
            returned_by: Some(returned_by.clone()),
            condition: Some(condition.as_str().into()),
            notes: notes.clone(),
            overdue: false,
            ..loan_dto(asset_id, loan)
        }),
        _ => Value::Null,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterAsset {
    name: String,
    category: String,
    owner_id: String,
    replacement_cost: Decimal,
    currency: String,
    #[serde(default)]
    notes: Option<String>,
}

async fn register_asset(
    State(state): State<AppState>,
    auth: Auth,
    idem: IdempotencyKey,
    body: ApiJson<RegisterAsset>,
) -> ApiResult<Response> {
    auth.require_participant()?;
    let actor = auth.0;
    let b = body.value;
    let spec = AssetSpec {
        asset_id: Uuid::now_v7(),
        name: b.name,
        category: b.category,
        owner_id: b.owner_id,
        replacement_cost: b.replacement_cost,
        currency: b.currency,
        notes: b.notes,
        registered_by: actor.user_id.clone(),
    };
    let ctx = Context::new(actor);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_asset);
    let exec = cmd::register(&state.bus, &ctx, spec, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

#[derive(Debug, Deserialize)]
struct AssetQuery {
    q: Option<String>,
    category: Option<String>,
    available: Option<bool>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_assets(
    State(state): State<AppState>,
    _auth: Auth,
    ApiQuery(p): ApiQuery<AssetQuery>,
) -> ApiResult<Json<Value>> {
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let f = AssetFilter {
        q: p.q.filter(|s| !s.trim().is_empty()),
        category: p.category,
        available: p.available,
    };
    let (rows, next) = q::list_assets(&state.db, &f, page).await?;
    let out: Vec<AssetDto> = rows.into_iter().map(asset_from_row).collect();
    Ok(Json(json!({"assets": out, "next_cursor": next})))
}

/// The asset `raw` names (404 otherwise).
async fn existing_asset(state: &AppState, raw: &str) -> ApiResult<(Uuid, q::AssetRow)> {
    let id = path_uuid(raw, "asset")?;
    let row = q::get_asset(&state.db, &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("asset"))?;
    Ok((id, row))
}

#[derive(Debug, Serialize)]
struct DamageDto {
    id: String,
    asset_id: String,
    user_id: String,
    description: String,
    #[serde(serialize_with = "money")]
    cost: Decimal,
    currency: String,
    reported_by: String,
    reported_at: DateTime<Utc>,
}

async fn get_asset(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (id, row) = existing_asset(&state, &id).await?;
    let now = Utc::now();
    let loans: Vec<LoanDto> = q::loans_of(&state.db, &id.to_string())
        .await?
        .into_iter()
        .map(|l| loan_from_row(l, now))
        .collect();
    let books = commands::budget::may_read_books(&auth.0);
    let damages: Vec<DamageDto> = q::damages_of(&state.db, &id.to_string())
        .await?
        .into_iter()
        .filter(|d| d.visible_to(&auth.0.user_id, &row.owner_id, books))
        .map(|d| DamageDto {
            cost: d.cost,
            id: d.id,
            asset_id: d.asset_id,
            user_id: d.user_id,
            description: d.description,
            currency: d.currency,
            reported_by: d.reported_by,
            reported_at: d.reported_at,
        })
        .collect();
    let holder = row
        .loan_id
        .as_ref()
        .and_then(|lid| loans.iter().find(|l| &l.id == lid));
    let mut v = json!(asset_from_row(row.clone()));
    v["holder"] = json!(holder);
    v["loans"] = json!(loans);
    v["damage_reports"] = json!(damages);
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TakeBody {
    due_at: DateTime<Utc>,
}

async fn take_asset(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    idem: IdempotencyKey,
    body: ApiJson<TakeBody>,
) -> ApiResult<Response> {
    auth.require_participant()?;
    let (id, _) = existing_asset(&state, &id).await?;
    let ctx = Context::new(auth.0);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_loan);
    let exec = cmd::take(&state.bus, &ctx, id, trunc(body.value.due_at), reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnBody {
    condition: Condition,
    #[serde(default)]
    notes: Option<String>,
}

async fn return_asset(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: ApiJson<ReturnBody>,
) -> ApiResult<Response> {
    auth.require_participant()?;
    let (id, _) = existing_asset(&state, &id).await?;
    let b = body.value;
    let exec = cmd::give_back(&state.bus, &Context::new(auth.0), id, b.condition, b.notes).await?;
    answer(&state, PROJECTION, StatusCode::OK, exec, render_loan).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DamageBody {
    user_id: String,
    description: String,
    cost: Decimal,
}

fn render_damage(a: &Asset, events: &[AssetEvent]) -> Value {
    let Some(AssetEvent::DamageReported {
        report: r,
        reported_at,
    }) = events.first()
    else {
        return Value::Null;
    };
    json!(DamageDto {
        id: r.report_id.to_string(),
        asset_id: a
            .spec
            .as_ref()
            .map(|s| s.asset_id.to_string())
            .unwrap_or_default(),
        user_id: r.user_id.clone(),
        description: r.description.clone(),
        cost: r.cost,
        currency: r.currency.clone(),
        reported_by: r.reported_by.clone(),
        reported_at: *reported_at,
    })
}

async fn report_damage(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    idem: IdempotencyKey,
    body: ApiJson<DamageBody>,
) -> ApiResult<Response> {
    auth.require_participant()?;
    let (id, _) = existing_asset(&state, &id).await?;
    let b = body.value;
    let ctx = Context::new(auth.0);
    let damage = Damage {
        user_id: b.user_id,
        description: b.description,
        cost: b.cost,
    };
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_damage);
    let exec = cmd::report_damage(&state.bus, &ctx, id, damage, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

#[derive(Debug, Deserialize)]
struct LoanQuery {
    overdue: Option<bool>,
    active: Option<bool>,
    user_id: Option<String>,
    asset_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_loans(
    State(state): State<AppState>,
    _auth: Auth,
    ApiQuery(p): ApiQuery<LoanQuery>,
) -> ApiResult<Json<Value>> {
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let f = LoanFilter {
        overdue: p.overdue,
        active: p.active,
        user_id: p.user_id,
        asset_id: p.asset_id,
    };
    let now = trunc(Utc::now());
    let (rows, next) = q::list_loans(&state.db, &f, now, page).await?;
    let out: Vec<LoanDto> = rows.into_iter().map(|r| loan_from_row(r, now)).collect();
    Ok(Json(json!({"loans": out, "next_cursor": next})))
}
