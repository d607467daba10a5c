//! Budgeting (`budget-svc`, issue #6): transactions and their reversal, balances at a point in
//! time, debts and their payments, the low-balance threshold, reports. Books are kept per
//! currency by the `Ledger` aggregate; reads come from the `budget` read model.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use commands::budget as cmd;
use commands::Context;
use domain::budget::{DebtSpec, DebtStatus, Ledger, LedgerEvent, TransactionSpec, TxKind};
use domain::Role;
use projections::budget::queries::{self as q, ReportGroup, TransactionFilter};
use projections::page::Page;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{answer, money, range_end, range_start, trunc, Idempotent};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_uuid, ApiJson, ApiQuery, IdempotencyKey};
use crate::service::budget::{
    balances_from, check_currency, debt_from_row, debts_owner, from_cents, transaction_from_row,
    visible_debt, DebtDto, TransactionDto,
};
use crate::state::AppState;

const PROJECTION: &str = projections::budget::BudgetProjection::NAME;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/budget/transactions",
            post(create_transaction).get(list_transactions),
        )
        .route("/budget/transactions/{id}", get(get_transaction))
        .route(
            "/budget/transactions/{id}/reverse",
            post(reverse_transaction),
        )
        .route("/budget/balance", get(balance))
        .route("/budget/debts", post(create_debt).get(list_debts))
        .route("/budget/debts/{id}", get(get_debt))
        .route("/budget/debts/{id}/payments", post(pay_debt))
        .route("/budget/debts/{id}/forgive", post(forgive_debt))
        .route("/budget/settings", get(get_settings).put(put_settings))
        .route("/budget/reports", get(report))
}

/// Reading the books: the rule of `commands::budget::may_read_books`.
fn readers(auth: &Auth) -> Result<(), ApiError> {
    if cmd::may_read_books(&auth.0) {
        return Ok(());
    }
    Err(ApiError::Forbidden(
        "requires role admin or executor or auditor".into(),
    ))
}

/// Booking: the rule of `commands::budget::may_book`.
fn bookkeepers(auth: &Auth) -> Result<(), ApiError> {
    if cmd::may_book(&auth.0) {
        return Ok(());
    }
    Err(ApiError::Forbidden(
        "requires role admin or executor".into(),
    ))
}

fn instant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 time")))
        })
        .transpose()
}

// ---- transactions ----

fn render_transaction(l: &Ledger, events: &[LedgerEvent]) -> Value {
    let currency = l.currency.clone().unwrap_or_default();
    events
        .iter()
        .find_map(|e| match e {
            LedgerEvent::TransactionRecorded {
                transaction: t,
                recorded_at,
            } => Some(json!(TransactionDto {
                id: t.transaction_id.to_string(),
                kind: t.kind.as_str().into(),
                amount: t.amount,
                currency: t.currency.clone(),
                category: t.category.clone(),
                description: t.description.clone(),
                occurred_at: t.occurred_at,
                reference: t.reference.clone(),
                recorded_by: t.recorded_by.clone(),
                recorded_at: *recorded_at,
                reversal_of: None,
                reversed_by: None,
                reversal_reason: None,
            })),
            LedgerEvent::TransactionReversed {
                reversal_id,
                transaction_id,
                kind,
                category,
                amount,
                reason,
                reversed_by,
                reversed_at,
            } => Some(json!(TransactionDto {
                id: reversal_id.to_string(),
                kind: kind.as_str().into(),
                amount: *amount,
                currency: currency.clone(),
                category: category.clone(),
                description: Some(reason.clone()),
                occurred_at: *reversed_at,
                reference: Some(format!("reversal-of:{transaction_id}")),
                recorded_by: reversed_by.clone(),
                recorded_at: *reversed_at,
                reversal_of: Some(transaction_id.to_string()),
                reversed_by: None,
                reversal_reason: Some(reason.clone()),
            })),
            _ => None,
        })
        .unwrap_or(Value::Null)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTransaction {
    kind: TxKind,
    amount: Decimal,
    currency: String,
    category: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    reference: Option<String>,
}

async fn create_transaction(
    State(state): State<AppState>,
    auth: Auth,
    idem: IdempotencyKey,
    body: ApiJson<CreateTransaction>,
) -> ApiResult<Response> {
    bookkeepers(&auth)?;
    let actor = auth.0;
    let b = body.value;
    let spec = TransactionSpec {
        transaction_id: Uuid::now_v7(),
        kind: b.kind,
        amount: b.amount,
        currency: b.currency,
        category: b.category,
        description: b.description,
        occurred_at: trunc(b.occurred_at.unwrap_or_else(Utc::now)),
        reference: b.reference,
        recorded_by: actor.user_id.clone(),
    };
    let ctx = Context::new(actor);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_transaction);
    let exec = cmd::record_transaction(&state.bus, &ctx, spec, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

#[derive(Debug, Deserialize)]
struct TransactionQuery {
    kind: Option<String>,
    category: Option<String>,
    currency: Option<String>,
    #[serde(default, deserialize_with = "range_start")]
    from: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "range_end")]
    to: Option<DateTime<Utc>>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_transactions(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<TransactionQuery>,
) -> ApiResult<Json<Value>> {
    readers(&auth)?;
    if let Some(k) = &p.kind {
        TxKind::parse(k)
            .ok_or_else(|| ApiError::validation("kind must be income, expense or donation"))?;
    }
    if let Some(c) = &p.currency {
        check_currency(c)?;
    }
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let f = TransactionFilter {
        kind: p.kind,
        category: p.category,
        currency: p.currency,
        from: p.from,
        to: p.to,
    };
    let (rows, next) = q::list_transactions(&state.db, &f, page).await?;
    let out: Vec<TransactionDto> = rows.into_iter().map(transaction_from_row).collect();
    Ok(Json(json!({"transactions": out, "next_cursor": next})))
}

async fn get_transaction(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    readers(&auth)?;
    let id = path_uuid(&id, "transaction")?;
    let row = q::get_transaction(&state.db, &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("transaction"))?;
    Ok(Json(json!(transaction_from_row(row))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

async fn reverse_transaction(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    idem: IdempotencyKey,
    body: ApiJson<ReasonBody>,
) -> ApiResult<Response> {
    bookkeepers(&auth)?;
    let tx_id = path_uuid(&id, "transaction")?;
    let row = q::get_transaction(&state.db, &tx_id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("transaction"))?;
    let ctx = Context::new(auth.0);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_transaction);
    let exec = cmd::reverse_transaction(
        &state.bus,
        &ctx,
        &row.currency,
        tx_id,
        body.value.reason,
        reply.arg(),
    )
    .await;
    reply.answer(&state, PROJECTION, exec).await
}

// ---- balance ----

#[derive(Debug, Deserialize)]
struct BalanceQuery {
    #[serde(default, deserialize_with = "instant")]
    as_of: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "instant")]
    known_at: Option<DateTime<Utc>>,
}

async fn balance(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<BalanceQuery>,
) -> ApiResult<Json<Value>> {
    readers(&auth)?;
    let rows = q::balances(&state.db, p.as_of, p.known_at).await?;
    let as_of = p.as_of.unwrap_or_else(|| trunc(Utc::now()));
    let mut body = json!({"balances": balances_from(rows), "as_of": as_of});
    if let Some(k) = p.known_at {
        body["known_at"] = json!(k);
    }
    Ok(Json(body))
}

// ---- debts ----

/// The debt an event of this command concerns, rendered from the ledger's state.
fn render_debt(l: &Ledger, events: &[LedgerEvent]) -> Value {
    let (id, at) = match events.first() {
        Some(LedgerEvent::DebtCreated { debt, created_at }) => (debt.debt_id, *created_at),
        Some(LedgerEvent::DebtPaymentRecorded {
            debt_id, paid_at, ..
        }) => (*debt_id, *paid_at),
        Some(LedgerEvent::DebtForgiven {
            debt_id,
            forgiven_at,
            ..
        }) => (*debt_id, *forgiven_at),
        _ => return Value::Null,
    };
    let Some(d) = l.debts.get(&id) else {
        return Value::Null;
    };
    let mut v = json!(DebtDto {
        id: id.to_string(),
        user_id: d.spec.user_id.clone(),
        amount: d.spec.amount,
        amount_paid: d.amount_paid,
        outstanding: d.outstanding(),
        currency: d.spec.currency.clone(),
        reason: d.spec.reason.clone(),
        source_ref: d.spec.source_ref.clone(),
        status: d.status.as_str().into(),
        created_by: d.spec.created_by.clone(),
        created_at: d.created_at,
        updated_at: at,
    });
    if let Some(LedgerEvent::DebtPaymentRecorded {
        payment_id,
        amount,
        paid_at,
        recorded_by,
        ..
    }) = events.first()
    {
        let mut a = *amount;
        a.rescale(2);
        v["payment"] = json!({"id": payment_id, "amount": serde_json::from_str::<Value>(&a.to_string()).unwrap_or(Value::Null),
            "paid_at": paid_at, "recorded_by": recorded_by});
    }
    v
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDebt {
    user_id: String,
    amount: Decimal,
    currency: String,
    reason: String,
    #[serde(default)]
    source_ref: Option<String>,
}

async fn create_debt(
    State(state): State<AppState>,
    auth: Auth,
    idem: IdempotencyKey,
    body: ApiJson<CreateDebt>,
) -> ApiResult<Response> {
    bookkeepers(&auth)?;
    let actor = auth.0;
    let b = body.value;
    let spec = DebtSpec {
        debt_id: Uuid::now_v7(),
        user_id: b.user_id,
        amount: b.amount,
        currency: b.currency,
        reason: b.reason,
        source_ref: b.source_ref,
        created_by: actor.user_id.clone(),
    };
    let ctx = Context::new(actor);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_debt);
    let exec = cmd::create_debt(&state.bus, &ctx, spec, reply.arg()).await;
    reply.answer(&state, PROJECTION, exec).await
}

#[derive(Debug, Deserialize)]
struct DebtQuery {
    user_id: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_debts(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(p): ApiQuery<DebtQuery>,
) -> ApiResult<Json<Value>> {
    if let Some(s) = &p.status {
        DebtStatus::parse(s)
            .ok_or_else(|| ApiError::validation("status must be open, settled or forgiven"))?;
    }
    // Anyone else sees only their own debts.
    let user_id = debts_owner(&actor, p.user_id)?;
    let page = Page::parse(p.limit, p.cursor.as_deref())?;
    let (rows, next) = q::list_debts(&state.db, user_id, p.status, page).await?;
    let out: Vec<DebtDto> = rows.into_iter().map(debt_from_row).collect();
    Ok(Json(json!({"debts": out, "next_cursor": next})))
}

async fn get_debt(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, row) = visible_debt(&state, &actor, &id).await?;
    Ok(Json(json!(debt_from_row(row))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayBody {
    amount: Decimal,
}

async fn pay_debt(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    idem: IdempotencyKey,
    body: ApiJson<PayBody>,
) -> ApiResult<Response> {
    bookkeepers(&auth)?;
    let (debt_id, row) = visible_debt(&state, &auth.0, &id).await?;
    let ctx = Context::new(auth.0);
    let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render_debt);
    let exec = cmd::pay_debt(
        &state.bus,
        &ctx,
        &row.currency,
        debt_id,
        body.value.amount,
        reply.arg(),
    )
    .await;
    reply.answer(&state, PROJECTION, exec).await
}

async fn forgive_debt(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: ApiJson<ReasonBody>,
) -> ApiResult<Response> {
    auth.require_any(&[Role::Admin])?;
    let (debt_id, row) = visible_debt(&state, &auth.0, &id).await?;
    let ctx = Context::new(auth.0);
    let exec =
        cmd::forgive_debt(&state.bus, &ctx, &row.currency, debt_id, body.value.reason).await?;
    answer(&state, PROJECTION, StatusCode::OK, exec, render_debt).await
}

// ---- settings ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSettings {
    low_balance_threshold: Decimal,
    currency: String,
}

fn render_setting(l: &Ledger, _: &[LedgerEvent]) -> Value {
    let mut t = l.threshold.unwrap_or_default();
    t.rescale(2);
    let mut b = l.balance;
    b.rescale(2);
    json!({
        "currency": l.currency,
        "low_balance_threshold": serde_json::from_str::<Value>(&t.to_string()).unwrap_or(Value::Null),
        "balance": serde_json::from_str::<Value>(&b.to_string()).unwrap_or(Value::Null),
        "updated_by": l.threshold_updated_by,
        "updated_at": l.threshold_updated_at,
    })
}

async fn put_settings(
    State(state): State<AppState>,
    auth: Auth,
    body: ApiJson<PutSettings>,
) -> ApiResult<Response> {
    auth.require_any(&[Role::Admin])?;
    let b = body.value;
    check_currency(&b.currency)?;
    let ctx = Context::new(auth.0);
    let exec = cmd::set_threshold(&state.bus, &ctx, &b.currency, b.low_balance_threshold).await?;
    answer(&state, PROJECTION, StatusCode::OK, exec, render_setting).await
}

async fn get_settings(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    readers(&auth)?;
    let rows = q::list_settings(&state.db).await?;
    let out: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let mut t = r.low_balance_threshold;
            t.rescale(2);
            json!({"currency": r.currency,
                "low_balance_threshold": serde_json::from_str::<Value>(&t.to_string()).unwrap_or(Value::Null),
                "updated_by": r.updated_by, "updated_at": r.updated_at})
        })
        .collect();
    Ok(Json(json!({"settings": out})))
}

// ---- reports ----

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Csv,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum GroupBy {
    Month,
    Category,
}

#[derive(Debug, Deserialize)]
struct ReportQuery {
    group_by: GroupBy,
    #[serde(default, deserialize_with = "range_start")]
    from: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "range_end")]
    to: Option<DateTime<Utc>>,
    #[serde(default)]
    format: Format,
}

#[derive(Debug, Default, Serialize)]
struct ReportRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<String>,
    currency: String,
    #[serde(serialize_with = "money")]
    income: Decimal,
    #[serde(serialize_with = "money")]
    expenses: Decimal,
    #[serde(serialize_with = "money")]
    donations: Decimal,
    #[serde(serialize_with = "money")]
    net: Decimal,
}

async fn report(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<ReportQuery>,
) -> ApiResult<Response> {
    readers(&auth)?;
    if let (Some(f), Some(t)) = (p.from, p.to) {
        if f > t {
            return Err(ApiError::validation("from must not be after to"));
        }
    }
    let group = match p.group_by {
        GroupBy::Month => ReportGroup::Month,
        GroupBy::Category => ReportGroup::Category,
    };
    let rows = q::report(&state.db, group, p.from, p.to).await?;
    if rows.len() as i64 >= q::MAX_REPORT_ROWS {
        return Err(ApiError::validation(
            "the report covers too many groups; narrow from/to",
        ));
    }
    let mut groups: BTreeMap<(String, String), ReportRow> = BTreeMap::new();
    for r in rows {
        let g = groups
            .entry((r.key.clone(), r.currency.clone()))
            .or_insert_with(|| ReportRow {
                period: (group == ReportGroup::Month).then(|| r.key.clone()),
                category: (group == ReportGroup::Category).then(|| r.key.clone()),
                currency: r.currency.clone(),
                ..Default::default()
            });
        let v = from_cents(r.debit - r.credit);
        match r.account_type.as_str() {
            "income" => g.income -= v,
            "expense" => g.expenses += v,
            "donation" => g.donations -= v,
            _ => {}
        }
        g.net = g.income + g.donations - g.expenses;
    }
    let rows: Vec<ReportRow> = groups.into_values().collect();
    if p.format == Format::Csv {
        let key = match group {
            ReportGroup::Month => "period",
            ReportGroup::Category => "category",
        };
        let mut out = format!("{key},currency,income,expenses,donations,net\n");
        let fmt = |d: Decimal| {
            let mut d = d;
            d.rescale(2);
            d.to_string()
        };
        for r in &rows {
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                crate::routes::tea::reports::csv_field(
                    &r.period.clone().or(r.category.clone()).unwrap_or_default()
                ),
                r.currency,
                fmt(r.income),
                fmt(r.expenses),
                fmt(r.donations),
                fmt(r.net)
            ));
        }
        return Ok((
            [
                ("content-type", "text/csv; charset=utf-8".to_string()),
                (
                    "content-disposition",
                    "attachment; filename=\"budget.csv\"".to_string(),
                ),
            ],
            out,
        )
            .into_response());
    }
    let key = match group {
        ReportGroup::Month => "month",
        ReportGroup::Category => "category",
    };
    Ok(Json(json!({"group_by": key, "from": p.from, "to": p.to, "rows": rows})).into_response())
}
