//! Budgeting over GraphQL: transactions, balances and debts from the `budget` read model, and
//! the bookkeeping mutations through the same command layer (and role checks) as REST. Amounts
//! are decimal strings with the currency's two decimals ("12.50"): GraphQL has no decimal type
//! and a float would lose cents.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, SubsecRound, Utc};
use commands::budget::{self as cmd, may_read_books};
use commands::{Context as CmdContext, Executed};
use domain::budget::{DebtSpec, LedgerEvent, TransactionSpec, TxKind};
use domain::{Actor, Role};
use projections::budget::queries::{self as q, TransactionFilter};
use projections::page::Page;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{actor, gql_error, state, GqlResult, PageInfo};
use crate::error::ApiError;
use crate::service::budget::{
    balances_from, check_currency, debt_from_row, debts_owner, transaction_from_row, BalanceDto,
    DebtDto, TransactionDto,
};
use crate::state::AppState;

const PROJECTION: &str = projections::budget::BudgetProjection::NAME;

fn money(d: Decimal) -> String {
    let mut d = d;
    d.rescale(2);
    d.to_string()
}

fn amount(s: &str, field: &str) -> GqlResult<Decimal> {
    s.trim().parse().map_err(|_| {
        gql_error(ApiError::validation(format!(
            "{field} must be a decimal number"
        )))
    })
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "TxKind")]
pub enum TransactionKind {
    Income,
    Expense,
    Donation,
}

#[derive(SimpleObject)]
pub struct Transaction {
    id: ID,
    kind: String,
    amount: String,
    currency: String,
    category: String,
    description: Option<String>,
    occurred_at: DateTime<Utc>,
    reference: Option<String>,
    recorded_by: String,
    recorded_at: DateTime<Utc>,
    /// On a reversing entry: the transaction it reverses.
    reversal_of: Option<ID>,
    /// On a reversed transaction: its reversing entry.
    reversed_by: Option<ID>,
    reversal_reason: Option<String>,
}

impl From<TransactionDto> for Transaction {
    fn from(t: TransactionDto) -> Self {
        Transaction {
            id: ID(t.id),
            kind: t.kind,
            amount: money(t.amount),
            currency: t.currency,
            category: t.category,
            description: t.description,
            occurred_at: t.occurred_at,
            reference: t.reference,
            recorded_by: t.recorded_by,
            recorded_at: t.recorded_at,
            reversal_of: t.reversal_of.map(ID),
            reversed_by: t.reversed_by.map(ID),
            reversal_reason: t.reversal_reason,
        }
    }
}

#[derive(SimpleObject)]
pub struct TransactionEdge {
    cursor: String,
    node: Transaction,
}

#[derive(SimpleObject)]
pub struct TransactionConnection {
    edges: Vec<TransactionEdge>,
    page_info: PageInfo,
}

/// One currency's books at a point in time.
#[derive(SimpleObject)]
pub struct Balance {
    currency: String,
    balance: String,
    income: String,
    expenses: String,
    donations: String,
    debts_outstanding: String,
}

impl From<BalanceDto> for Balance {
    fn from(b: BalanceDto) -> Self {
        Balance {
            currency: b.currency,
            balance: money(b.balance),
            income: money(b.income),
            expenses: money(b.expenses),
            donations: money(b.donations),
            debts_outstanding: money(b.debts_outstanding),
        }
    }
}

#[derive(SimpleObject)]
pub struct Debt {
    id: ID,
    user_id: String,
    amount: String,
    amount_paid: String,
    outstanding: String,
    currency: String,
    reason: String,
    source_ref: Option<String>,
    /// `open`, `settled` or `forgiven`.
    status: String,
    created_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<DebtDto> for Debt {
    fn from(d: DebtDto) -> Self {
        Debt {
            id: ID(d.id),
            user_id: d.user_id,
            amount: money(d.amount),
            amount_paid: money(d.amount_paid),
            outstanding: money(d.outstanding),
            currency: d.currency,
            reason: d.reason,
            source_ref: d.source_ref,
            status: d.status,
            created_by: d.created_by,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct DebtEdge {
    cursor: String,
    node: Debt,
}

#[derive(SimpleObject)]
pub struct DebtConnection {
    edges: Vec<DebtEdge>,
    page_info: PageInfo,
}

fn readers(actor: &Actor) -> GqlResult<()> {
    if may_read_books(actor) {
        Ok(())
    } else {
        Err(gql_error(ApiError::Forbidden(
            "requires role admin or executor or auditor".into(),
        )))
    }
}

fn uuid_of(id: &ID, what: &str) -> GqlResult<Uuid> {
    id.parse::<Uuid>()
        .map_err(|_| gql_error(ApiError::not_found(what)))
}

async fn transaction(state: &AppState, id: Uuid) -> GqlResult<Transaction> {
    let row = q::get_transaction(&state.db, &id.to_string())
        .await
        .map_err(|e| gql_error(e.into()))?
        .ok_or_else(|| gql_error(ApiError::not_found("transaction")))?;
    Ok(transaction_from_row(row).into())
}

/// A debt the caller may see (another user's debt does not exist for a student).
async fn visible_debt(state: &AppState, actor: &Actor, id: &ID) -> GqlResult<q::DebtRow> {
    crate::service::budget::visible_debt(state, actor, id.as_str())
        .await
        .map(|(_, row)| row)
        .map_err(gql_error)
}

fn err(e: commands::CommandError) -> async_graphql::Error {
    gql_error(e.into())
}

#[derive(Default)]
pub struct BudgetQuery;

#[Object]
impl BudgetQuery {
    /// Ledger transactions, oldest first, filtered like `GET /budget/transactions` (admins,
    /// executors, auditors).
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, child_complexity)")]
    async fn budget_transactions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        kind: Option<TransactionKind>,
        category: Option<String>,
        currency: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> GqlResult<TransactionConnection> {
        readers(actor(ctx))?;
        let page =
            Page::parse(first.map(i64::from), after.as_deref()).map_err(|e| gql_error(e.into()))?;
        let filter = TransactionFilter {
            kind: kind.map(|k| TxKind::from(k).as_str().to_string()),
            category,
            currency,
            from,
            to,
        };
        let (rows, next) = q::list_transactions(&state(ctx).db, &filter, page)
            .await
            .map_err(|e| gql_error(e.into()))?;
        Ok(TransactionConnection {
            edges: rows
                .into_iter()
                .map(|r| TransactionEdge {
                    cursor: projections::page::encode(r.seq),
                    node: transaction_from_row(r).into(),
                })
                .collect(),
            page_info: PageInfo::of(next),
        })
    }

    #[graphql(complexity = "crate::graphql::limits::LOOKUP_COST + child_complexity")]
    async fn budget_transaction(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> GqlResult<Option<Transaction>> {
        readers(actor(ctx))?;
        let Ok(id) = id.parse::<Uuid>() else {
            return Ok(None);
        };
        match transaction(state(ctx), id).await {
            Ok(t) => Ok(Some(t)),
            Err(_) => Ok(None),
        }
    }

    /// Balances per currency of what occurred up to `asOf`, as known at `knownAt`.
    #[graphql(complexity = "crate::graphql::limits::LOOKUP_COST + child_complexity")]
    async fn budget_balances(
        &self,
        ctx: &Context<'_>,
        as_of: Option<DateTime<Utc>>,
        known_at: Option<DateTime<Utc>>,
    ) -> GqlResult<Vec<Balance>> {
        readers(actor(ctx))?;
        let rows = q::balances(&state(ctx).db, as_of, known_at)
            .await
            .map_err(|e| gql_error(e.into()))?;
        Ok(balances_from(rows).into_iter().map(Balance::from).collect())
    }

    /// Debts; a caller who does not keep the books sees only their own.
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, child_complexity)")]
    async fn debts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        user_id: Option<String>,
        status: Option<String>,
    ) -> GqlResult<DebtConnection> {
        let actor = actor(ctx);
        let user_id = debts_owner(actor, user_id).map_err(gql_error)?;
        let page =
            Page::parse(first.map(i64::from), after.as_deref()).map_err(|e| gql_error(e.into()))?;
        let (rows, next) = q::list_debts(&state(ctx).db, user_id, status, page)
            .await
            .map_err(|e| gql_error(e.into()))?;
        Ok(DebtConnection {
            edges: rows
                .into_iter()
                .map(|r| DebtEdge {
                    cursor: projections::page::encode(r.seq),
                    node: debt_from_row(r).into(),
                })
                .collect(),
            page_info: PageInfo::of(next),
        })
    }

    #[graphql(complexity = "crate::graphql::limits::LOOKUP_COST + child_complexity")]
    async fn debt(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Debt>> {
        Ok(visible_debt(state(ctx), actor(ctx), &id)
            .await
            .ok()
            .map(|r| debt_from_row(r).into()))
    }
}

#[derive(InputObject)]
pub struct TransactionInput {
    kind: TransactionKind,
    /// A positive decimal, e.g. "12.50".
    amount: String,
    currency: String,
    category: String,
    description: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
    reference: Option<String>,
}

#[derive(InputObject)]
pub struct DebtInput {
    user_id: String,
    amount: String,
    currency: String,
    reason: String,
    source_ref: Option<String>,
}

#[derive(Default)]
pub struct BudgetMutation;

#[Object]
impl BudgetMutation {
    /// Records income, an expense or a donation (admins and executors).
    async fn record_transaction(
        &self,
        ctx: &Context<'_>,
        input: TransactionInput,
    ) -> GqlResult<Transaction> {
        let (state, actor) = (state(ctx), actor(ctx));
        let spec = TransactionSpec {
            transaction_id: Uuid::now_v7(),
            kind: input.kind.into(),
            amount: amount(&input.amount, "amount")?,
            currency: input.currency,
            category: input.category,
            description: input.description,
            occurred_at: input.occurred_at.unwrap_or_else(Utc::now).trunc_subsecs(6),
            reference: input.reference,
            recorded_by: actor.user_id.clone(),
        };
        let id = spec.transaction_id;
        let exec = cmd::record_transaction(&state.bus, &CmdContext::new(actor.clone()), spec, None)
            .await
            .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        transaction(state, id).await
    }

    /// Reverses a transaction with a reversing entry (admins and executors); returns the entry.
    async fn reverse_transaction(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> GqlResult<Transaction> {
        let (state, actor) = (state(ctx), actor(ctx));
        readers(actor)?;
        let tx_id = uuid_of(&id, "transaction")?;
        let original = transaction(state, tx_id).await?;
        let exec = cmd::reverse_transaction(
            &state.bus,
            &CmdContext::new(actor.clone()),
            &original.currency,
            tx_id,
            reason,
            None,
        )
        .await
        .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        let reversal = match &exec {
            Executed::Done { events, .. } => events.iter().find_map(|e| match e {
                LedgerEvent::TransactionReversed { reversal_id, .. } => Some(*reversal_id),
                _ => None,
            }),
            Executed::Replayed(_) => None,
        }
        .ok_or_else(|| {
            gql_error(ApiError::Conflict(
                "the transaction was not reversed".into(),
                None,
            ))
        })?;
        transaction(state, reversal).await
    }

    /// Records what a user owes (admins and executors).
    async fn create_debt(&self, ctx: &Context<'_>, input: DebtInput) -> GqlResult<Debt> {
        let (state, actor) = (state(ctx), actor(ctx));
        let spec = DebtSpec {
            debt_id: Uuid::now_v7(),
            user_id: input.user_id,
            amount: amount(&input.amount, "amount")?,
            currency: input.currency,
            reason: input.reason,
            source_ref: input.source_ref,
            created_by: actor.user_id.clone(),
        };
        let id = ID(spec.debt_id.to_string());
        let exec = cmd::create_debt(&state.bus, &CmdContext::new(actor.clone()), spec, None)
            .await
            .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        Ok(debt_from_row(visible_debt(state, actor, &id).await?).into())
    }

    /// Records a payment on a debt (admins and executors).
    async fn pay_debt(&self, ctx: &Context<'_>, id: ID, amount_paid: String) -> GqlResult<Debt> {
        let (state, actor) = (state(ctx), actor(ctx));
        let row = visible_debt(state, actor, &id).await?;
        let debt_id = uuid_of(&id, "debt")?;
        let exec = cmd::pay_debt(
            &state.bus,
            &CmdContext::new(actor.clone()),
            &row.currency,
            debt_id,
            amount(&amount_paid, "amountPaid")?,
            None,
        )
        .await
        .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        Ok(debt_from_row(visible_debt(state, actor, &id).await?).into())
    }

    /// Forgives what is left of a debt (admins).
    async fn forgive_debt(&self, ctx: &Context<'_>, id: ID, reason: String) -> GqlResult<Debt> {
        let (state, actor) = (state(ctx), actor(ctx));
        let row = visible_debt(state, actor, &id).await?;
        let debt_id = uuid_of(&id, "debt")?;
        let exec = cmd::forgive_debt(
            &state.bus,
            &CmdContext::new(actor.clone()),
            &row.currency,
            debt_id,
            reason,
        )
        .await
        .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        Ok(debt_from_row(visible_debt(state, actor, &id).await?).into())
    }

    /// Sets the low-balance threshold of a currency (admins); returns the balances after it.
    async fn set_low_balance_threshold(
        &self,
        ctx: &Context<'_>,
        currency: String,
        threshold: String,
    ) -> GqlResult<Vec<Balance>> {
        let (state, actor) = (state(ctx), actor(ctx));
        if !actor.has(Role::Admin) {
            return Err(gql_error(ApiError::Forbidden("requires role admin".into())));
        }
        check_currency(&currency).map_err(gql_error)?;
        let exec = cmd::set_threshold(
            &state.bus,
            &CmdContext::new(actor.clone()),
            &currency,
            amount(&threshold, "threshold")?,
        )
        .await
        .map_err(err)?;
        state.settle(PROJECTION, &exec).await;
        let rows = q::balances(&state.db, None, None)
            .await
            .map_err(|e| gql_error(e.into()))?;
        Ok(balances_from(rows).into_iter().map(Balance::from).collect())
    }
}
