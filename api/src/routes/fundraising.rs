//! Fund Raising (`fundraising-svc`, issue #6): campaigns from draft to closed, donations (only
//! while active; anonymous donors hidden from all but admins, auditors and themselves), and what a
//! campaign bought. Donations and purchases reach the budget through the fund-raising policy.
//! Drafts are visible only to admins, executors and auditors (to anyone else they do not exist).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use commands::budget::may_read_books;
use commands::fundraising as cmd;
use commands::Context;
use domain::fundraising::{
    Campaign, CampaignEvent, CampaignSpec, CampaignStatus, DonationSpec, PurchaseSpec,
};
use domain::{Actor, Role};
use projections::fundraising::queries as q;
use projections::page::Page;
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

const PROJECTION: &str = projections::fundraising::FundraisingProjection::NAME;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/campaigns", post(create_campaign).get(list_campaigns))
        .route("/campaigns/{id}", get(get_campaign))
        .route("/campaigns/{id}/start", post(start_campaign))
        .route("/campaigns/{id}/close", post(close_campaign))
        .route("/campaigns/{id}/cancel", post(cancel_campaign))
        .route(
            "/campaigns/{id}/donations",
            post(donate).get(list_donations),
        )
        .route("/campaigns/{id}/purchases", post(record_purchase))
}

#[derive(Debug, Serialize)]
pub struct BudgetCheckDto {
    #[serde(serialize_with = "money")]
    pub available: Decimal,
    #[serde(serialize_with = "money")]
    pub shortfall: Decimal,
}

#[derive(Debug, Serialize)]
pub struct CampaignDto {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    #[serde(serialize_with = "money")]
    pub goal_amount: Decimal,
    pub currency: String,
    pub ends_at: DateTime<Utc>,
    pub purpose: Option<String>,
    pub status: String,
    #[serde(serialize_with = "money")]
    pub raised: Decimal,
    #[serde(serialize_with = "money")]
    pub spent: Decimal,
    pub donors_count: i64,
    /// raised / goal, from 0 to 1 (four decimals).
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub progress: Decimal,
    pub budget_check: Option<BudgetCheckDto>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
}

fn progress(raised: Decimal, goal: Decimal) -> Decimal {
    if goal <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    let mut p = (raised / goal).min(Decimal::ONE);
    p = p.round_dp(4);
    p.normalize()
}

fn campaign_from_row(r: q::CampaignRow) -> CampaignDto {
    let (goal, raised) = (r.goal_amount, r.raised);
    CampaignDto {
        budget_check: match (r.budget_available, r.budget_shortfall) {
            (Some(available), Some(shortfall)) => Some(BudgetCheckDto {
                available,
                shortfall,
            }),
            _ => None,
        },
        progress: progress(raised, goal),
        id: r.id,
        title: r.title,
        description: r.description,
        goal_amount: goal,
        currency: r.currency,
        ends_at: r.ends_at,
        purpose: r.purpose,
        status: r.status,
        raised,
        spent: r.spent,
        donors_count: r.donors_count,
        created_by: r.created_by,
        created_at: r.created_at,
        updated_at: r.updated_at,
        started_at: r.started_at,
        completed_at: r.completed_at,
        closed_at: r.closed_at,
        cancelled_at: r.cancelled_at,
        cancel_reason: r.cancel_reason,
    }
}

/// The campaign as a command left it.
fn render_campaign(c: &Campaign, _: &[CampaignEvent]) -> Value {
    let Some(s) = &c.spec else {
        return Value::Null;
    };
    json!(CampaignDto {
        id: s.campaign_id.to_string(),
        title: s.title.clone(),
        description: s.description.clone(),
        goal_amount: s.goal_amount,
        currency: s.currency.clone(),
        ends_at: s.ends_at,
        purpose: s.purpose.clone(),
        status: c.status.as_str().into(),
        raised: c.raised,
        spent: c.spent,
        donors_count: c.donors.len() as i64,
        progress: progress(c.raised, s.goal_amount),
        budget_check: c.available.zip(c.shortfall).map(|(a, s)| BudgetCheckDto {
            available: a,
            shortfall: s
        }),
        created_by: s.created_by.clone(),
        created_at: c.created_at.unwrap_or_default(),
        updated_at: c.updated_at.unwrap_or_default(),
        started_at: c.started_at,
        completed_at: c.completed_at,
        closed_at: c.closed_at,
        cancelled_at: c.cancelled_at,
        cancel_reason: c.cancel_reason.clone(),
    })
}

/// Admins, executors and auditors see drafts; to anyone else a draft does not exist.
fn sees_drafts(actor: &Actor) -> bool {
    may_read_books(actor)
}

/// The campaign `raw` names, if the caller may see it (404 otherwise).
async fn visible_campaign(
    state: &AppState,
    actor: &Actor,
    raw: &str,
) -> ApiResult<(Uuid, q::CampaignRow)> {
    let id = path_uuid(raw, "campaign")?;
    let row = q::get_campaign(&state.db, &id.to_string())
        .await?
        .filter(|r| r.status != CampaignStatus::Draft.as_str() || sees_drafts(actor))
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    Ok((id, row))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCampaign {
    title: String,
    #[serde(default)]
    description: Option<String>,
    goal_amount: Decimal,
    currency: String,
    ends_at: DateTime<Utc>,
    #[serde(default)]
    purpose: Option<String>,
}

async fn create_campaign(
    State(state): State<AppState>,
    auth: Auth,
    idem: IdempotencyKey,
    body: ApiJson<CreateCampaign>,
) -> ApiResult<Response> {
    auth.require_any(&[Role::Admin])?;
    let actor = auth.0;
    let b = body.value;
    let spec = CampaignSpec {
        campaign_id: Uuid::now_v7(),
        title: b.title,
        description: b.description,
        goal_amount: b.goal_amount,
        currency: b.currency,
        ends_at: trunc(b.ends_at),
        purpose: b.purpose,
        created_by: actor.user_id.clone(),
    };
    let ctx = Context::new(actor);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_campaign);
    let exec = cmd::create(&state.bus, &ctx, spec, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

#[derive(Debug, Deserialize)]
struct CampaignQuery {
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_campaigns(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(p): ApiQuery<CampaignQuery>,
) -> ApiResult<Json<Value>> {
    if let Some(s) = &p.status {
        CampaignStatus::parse(s).ok_or_else(|| {
            ApiError::validation("status must be draft, active, completed, closed or cancelled")
        })?;
    }
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let (rows, next) = q::list_campaigns(&state.db, p.status, sees_drafts(&actor), page).await?;
    let out: Vec<CampaignDto> = rows.into_iter().map(campaign_from_row).collect();
    Ok(Json(json!({"campaigns": out, "next_cursor": next})))
}

#[derive(Debug, Serialize)]
struct PurchaseDto {
    id: String,
    campaign_id: String,
    #[serde(serialize_with = "money")]
    amount: Decimal,
    currency: String,
    description: String,
    receipt_ref: Option<String>,
    recorded_by: String,
    recorded_at: DateTime<Utc>,
}

async fn get_campaign(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (id, row) = visible_campaign(&state, &actor, &id).await?;
    let purchases: Vec<PurchaseDto> = q::list_purchases(&state.db, &id.to_string())
        .await?
        .into_iter()
        .map(|p| PurchaseDto {
            amount: p.amount,
            id: p.id,
            campaign_id: p.campaign_id,
            currency: p.currency,
            description: p.description,
            receipt_ref: p.receipt_ref,
            recorded_by: p.recorded_by,
            recorded_at: p.recorded_at,
        })
        .collect();
    let mut v = json!(campaign_from_row(row));
    v["purchases"] = json!(purchases);
    Ok(Json(v))
}

async fn start_campaign(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require_any(&[Role::Admin])?;
    let (id, _) = visible_campaign(&state, &auth.0, &id).await?;
    let exec = cmd::start(&state.bus, &Context::new(auth.0), id).await?;
    answer(&state, PROJECTION, StatusCode::OK, exec, render_campaign).await
}

async fn close_campaign(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require_any(&[Role::Admin])?;
    let (id, _) = visible_campaign(&state, &auth.0, &id).await?;
    let exec = cmd::close(&state.bus, &Context::new(auth.0), id).await?;
    answer(&state, PROJECTION, StatusCode::OK, exec, render_campaign).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn cancel_campaign(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    auth.require_any(&[Role::Admin])?;
    // The body is optional: `{"reason": …}` or nothing.
    let b: CancelBody = if body.is_empty() {
        CancelBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::validation(format!("invalid JSON body: {e}")))?
    };
    let (id, _) = visible_campaign(&state, &auth.0, &id).await?;
    let exec = cmd::cancel(&state.bus, &Context::new(auth.0), id, b.reason).await?;
    answer(&state, PROJECTION, StatusCode::OK, exec, render_campaign).await
}

#[derive(Debug, Serialize)]
struct DonationDto {
    id: String,
    campaign_id: String,
    /// Null for an anonymous donation, unless the caller is an admin, an auditor or the donor.
    donor_id: Option<String>,
    #[serde(serialize_with = "money")]
    amount: Decimal,
    currency: String,
    anonymous: bool,
    message: Option<String>,
    received_at: DateTime<Utc>,
}

/// Whether `viewer` may see who made a donation.
fn sees_donor(viewer: &Actor, donor_id: &str, anonymous: bool) -> bool {
    !anonymous || viewer.has_any(&[Role::Admin, Role::Auditor]) || viewer.user_id == donor_id
}

/// The donation a command recorded, with the campaign's totals after it.
fn render_donation(c: &Campaign, events: &[CampaignEvent]) -> Value {
    let Some(CampaignEvent::DonationReceived {
        donation: d,
        received_at,
        ..
    }) = events.first()
    else {
        return Value::Null;
    };
    let mut v = json!(DonationDto {
        id: d.donation_id.to_string(),
        campaign_id: c
            .spec
            .as_ref()
            .map(|s| s.campaign_id.to_string())
            .unwrap_or_default(),
        donor_id: Some(d.donor_id.clone()),
        amount: d.amount,
        currency: d.currency.clone(),
        anonymous: d.anonymous,
        message: d.message.clone(),
        received_at: *received_at,
    });
    v["campaign"] = render_campaign(c, events);
    v
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Donate {
    amount: Decimal,
    currency: String,
    #[serde(default)]
    anonymous: bool,
    #[serde(default)]
    message: Option<String>,
}

async fn donate(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    idem: IdempotencyKey,
    body: ApiJson<Donate>,
) -> ApiResult<Response> {
    auth.require_participant()?;
    let (id, _) = visible_campaign(&state, &auth.0, &id).await?;
    let actor = auth.0;
    let b = body.value;
    let donation = DonationSpec {
        donation_id: Uuid::now_v7(),
        donor_id: actor.user_id.clone(),
        amount: b.amount,
        currency: b.currency,
        anonymous: b.anonymous,
        message: b.message,
    };
    let ctx = Context::new(actor);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_donation);
    let exec = cmd::donate(&state.bus, &ctx, id, donation, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_donations(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<PageQuery>,
) -> ApiResult<Json<Value>> {
    let (id, _) = visible_campaign(&state, &actor, &id).await?;
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let (rows, next) = q::list_donations(&state.db, &id.to_string(), page).await?;
    let out: Vec<DonationDto> = rows
        .into_iter()
        .map(|r| DonationDto {
            donor_id: sees_donor(&actor, &r.donor_id, r.anonymous).then_some(r.donor_id),
            amount: r.amount,
            id: r.id,
            campaign_id: r.campaign_id,
            currency: r.currency,
            anonymous: r.anonymous,
            message: r.message,
            received_at: r.received_at,
        })
        .collect();
    Ok(Json(json!({"donations": out, "next_cursor": next})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordPurchase {
    amount: Decimal,
    description: String,
    #[serde(default)]
    receipt_ref: Option<String>,
}

fn render_purchase(c: &Campaign, events: &[CampaignEvent]) -> Value {
    let Some(CampaignEvent::PurchaseRecorded {
        purchase: p,
        currency,
        recorded_at,
    }) = events.first()
    else {
        return Value::Null;
    };
    json!(PurchaseDto {
        id: p.purchase_id.to_string(),
        campaign_id: c
            .spec
            .as_ref()
            .map(|s| s.campaign_id.to_string())
            .unwrap_or_default(),
        amount: p.amount,
        currency: currency.clone(),
        description: p.description.clone(),
        receipt_ref: p.receipt_ref.clone(),
        recorded_by: p.recorded_by.clone(),
        recorded_at: *recorded_at,
    })
}

async fn record_purchase(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    idem: IdempotencyKey,
    body: ApiJson<RecordPurchase>,
) -> ApiResult<Response> {
    auth.require_any(&[Role::Admin, Role::Executor])?;
    let (id, _) = visible_campaign(&state, &auth.0, &id).await?;
    let actor = auth.0;
    let b = body.value;
    let purchase = PurchaseSpec {
        purchase_id: Uuid::now_v7(),
        amount: b.amount,
        description: b.description,
        receipt_ref: b.receipt_ref,
        recorded_by: actor.user_id.clone(),
    };
    let ctx = Context::new(actor);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_purchase);
    let exec = cmd::record_purchase(&state.bus, &ctx, id, purchase, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_between_zero_and_one() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(progress(d("0"), d("100")).to_string(), "0");
        assert_eq!(progress(d("33.33"), d("100")).to_string(), "0.3333");
        assert_eq!(progress(d("1"), d("3")).to_string(), "0.3333");
        assert_eq!(progress(d("150"), d("100")).to_string(), "1");
    }
}
