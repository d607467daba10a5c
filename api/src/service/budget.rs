//! Budget reads shared by every edge (REST, GraphQL, the CLI audit): the output types of
//! transactions, debts and balances converted from read-model rows, balances folded from account
//! totals, and the read-side access rules (a caller who does not keep the books sees only their
//! own debts; anyone else's does not exist for them).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use commands::budget::may_read_books;
use domain::Actor;
use projections::budget::queries::{self as q, SumRow};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use super::money;
use crate::error::{ApiError, ApiResult};
use crate::extract::path_uuid;
use crate::state::AppState;

/// An amount of integer cents (the read model's unit) as a decimal.
pub fn from_cents(c: i64) -> Decimal {
    Decimal::new(c, 2)
}

pub fn check_currency(c: &str) -> Result<(), ApiError> {
    domain::tea::validate::currency(c).map_err(ApiError::validation)
}

#[derive(Debug, Serialize)]
pub struct TransactionDto {
    pub id: String,
    pub kind: String,
    #[serde(serialize_with = "money")]
    pub amount: Decimal,
    pub currency: String,
    pub category: String,
    pub description: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub reference: Option<String>,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
    /// Set on a reversing entry: the transaction it reverses.
    pub reversal_of: Option<String>,
    /// Set on a reversed transaction: its reversing entry.
    pub reversed_by: Option<String>,
    pub reversal_reason: Option<String>,
}

pub fn transaction_from_row(r: q::TransactionRow) -> TransactionDto {
    TransactionDto {
        id: r.id,
        kind: r.kind,
        amount: r.amount,
        currency: r.currency,
        category: r.category,
        description: r.description,
        occurred_at: r.occurred_at,
        reference: r.reference,
        recorded_by: r.recorded_by,
        recorded_at: r.recorded_at,
        reversal_of: r.reversal_of,
        reversed_by: r.reversed_by,
        reversal_reason: r.reversal_reason,
    }
}

#[derive(Debug, Default, Serialize)]
pub struct BalanceDto {
    pub currency: String,
    #[serde(serialize_with = "money")]
    pub balance: Decimal,
    #[serde(serialize_with = "money")]
    pub income: Decimal,
    #[serde(serialize_with = "money")]
    pub expenses: Decimal,
    #[serde(serialize_with = "money")]
    pub donations: Decimal,
    #[serde(serialize_with = "money")]
    pub debts_outstanding: Decimal,
}

/// Folds per-(currency, account type) totals into balances.
pub fn balances_from(rows: Vec<SumRow>) -> Vec<BalanceDto> {
    let mut out: BTreeMap<String, BalanceDto> = BTreeMap::new();
    for r in rows {
        let b = out.entry(r.currency.clone()).or_insert_with(|| BalanceDto {
            currency: r.currency.clone(),
            ..Default::default()
        });
        let dr_minus_cr = from_cents(r.debit - r.credit);
        match r.account_type.as_str() {
            "cash" => b.balance += dr_minus_cr,
            "income" => b.income -= dr_minus_cr,
            "expense" => b.expenses += dr_minus_cr,
            "donation" => b.donations -= dr_minus_cr,
            "receivable" => b.debts_outstanding += dr_minus_cr,
            _ => {}
        }
    }
    out.into_values().collect()
}

#[derive(Debug, Serialize)]
pub struct DebtDto {
    pub id: String,
    pub user_id: String,
    #[serde(serialize_with = "money")]
    pub amount: Decimal,
    #[serde(serialize_with = "money")]
    pub amount_paid: Decimal,
    #[serde(serialize_with = "money")]
    pub outstanding: Decimal,
    pub currency: String,
    pub reason: String,
    pub source_ref: Option<String>,
    pub status: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn debt_from_row(r: q::DebtRow) -> DebtDto {
    let (amount, paid) = (r.amount, r.amount_paid);
    DebtDto {
        outstanding: if r.status == "open" {
            amount - paid
        } else {
            Decimal::ZERO
        },
        id: r.id,
        user_id: r.user_id,
        amount,
        amount_paid: paid,
        currency: r.currency,
        reason: r.reason,
        source_ref: r.source_ref,
        status: r.status,
        created_by: r.created_by,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// Whose debts a listing shows: anyone keeping the books sees whom they ask for (everyone by
/// default); anyone else only their own, and asking for someone else's is forbidden.
pub fn debts_owner(actor: &Actor, requested: Option<String>) -> ApiResult<Option<String>> {
    if may_read_books(actor) {
        return Ok(requested);
    }
    match requested {
        Some(u) if u != actor.user_id => Err(ApiError::Forbidden(
            "only admins, executors and auditors see other users' debts".into(),
        )),
        _ => Ok(Some(actor.user_id.clone())),
    }
}

/// The debt `raw` names if the caller may see it (another user's debt does not exist for a
/// student: not found, as does an id that is not a UUID).
pub async fn visible_debt(
    state: &AppState,
    actor: &Actor,
    raw: &str,
) -> ApiResult<(Uuid, q::DebtRow)> {
    let id = path_uuid(raw, "debt")?;
    let row = q::get_debt(&state.db, &id.to_string())
        .await?
        .filter(|r| may_read_books(actor) || r.user_id == actor.user_id)
        .ok_or_else(|| ApiError::not_found("debt"))?;
    Ok((id, row))
}
