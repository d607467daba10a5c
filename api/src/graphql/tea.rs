//! Tea Management mutations over GraphQL, through the same command layer (and role checks) as REST;
//! each returns the item as its read model shows it afterwards.

use async_graphql::{Context, InputObject, Object, ID};
use chrono::{NaiveDate, SubsecRound, Utc};
use commands::{tea as cmd, Context as CmdContext, Executed};
use domain::tea::{BatchSpec, ConsumptionSource, ConsumptionSpec, ItemSpec, NotifyConfig};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{actor, gql_error, state, GqlResult, Item};
use crate::error::ApiError;
use crate::state::AppState;

const PROJECTION: &str = projections::tea::TeaProjection::NAME;

#[derive(InputObject)]
pub struct CreateItemInput {
    name: String,
    unit: String,
    category: String,
    sku: Option<String>,
    #[graphql(default = true)]
    active: bool,
    #[graphql(default)]
    track_expiry: bool,
    #[graphql(default)]
    min_stock_qty: i64,
    #[graphql(default)]
    tags: Vec<String>,
}

#[derive(InputObject)]
pub struct BatchInput {
    batch_code: String,
    supplier_ref: Option<String>,
    expiry_date: Option<NaiveDate>,
    qty_received: i64,
    currency: String,
    /// A decimal amount as a string, e.g. "49.90".
    cost_total: String,
}

fn uuid_of(id: &ID) -> GqlResult<Uuid> {
    id.parse::<Uuid>()
        .map_err(|_| gql_error(ApiError::not_found("item")))
}

async fn item_after(
    state: &AppState,
    id: Uuid,
    exec: Executed<domain::tea::Item>,
) -> GqlResult<Item> {
    if let Executed::Done { stored, .. } = &exec {
        state.settle(PROJECTION, stored).await;
    }
    let row = projections::tea::queries::get_item(&state.db, &id.to_string())
        .await
        .map_err(|e| gql_error(e.into()))?
        .ok_or_else(|| gql_error(ApiError::not_found("item")))?;
    Ok(Item::from(row))
}

fn err(e: commands::CommandError) -> async_graphql::Error {
    gql_error(e.into())
}

#[derive(Default)]
pub struct TeaMutation;

#[Object]
impl TeaMutation {
    /// Creates an item (admins and executors).
    async fn create_item(&self, ctx: &Context<'_>, input: CreateItemInput) -> GqlResult<Item> {
        let (state, actor) = (state(ctx), actor(ctx));
        let spec = ItemSpec {
            name: input.name.trim().to_string(),
            unit: input.unit.trim().to_string(),
            category: input.category.trim().to_string(),
            sku: input
                .sku
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            active: input.active,
            track_expiry: input.track_expiry,
            min_stock_qty: input.min_stock_qty,
            tags: input.tags,
        };
        let id = Uuid::now_v7();
        let exec = cmd::create_item(&state.bus, &CmdContext::new(actor.clone()), id, spec, None)
            .await
            .map_err(err)?;
        item_after(state, id, exec).await
    }

    /// Receives a stock batch (admins and executors).
    async fn receive_batch(
        &self,
        ctx: &Context<'_>,
        item_id: ID,
        input: BatchInput,
    ) -> GqlResult<Item> {
        let (state, actor) = (state(ctx), actor(ctx));
        let id = uuid_of(&item_id)?;
        let cost_total: Decimal = input
            .cost_total
            .parse()
            .map_err(|_| gql_error(ApiError::validation("costTotal must be a decimal number")))?;
        let spec = BatchSpec {
            batch_id: Uuid::now_v7(),
            batch_code: input.batch_code.trim().to_string(),
            supplier_ref: input
                .supplier_ref
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            expiry_date: input.expiry_date,
            qty_received: input.qty_received,
            currency: input.currency.trim().to_string(),
            cost_total,
            received_at: Utc::now().trunc_subsecs(6),
        };
        let exec = cmd::receive_batch(&state.bus, &CmdContext::new(actor.clone()), id, spec, None)
            .await
            .map_err(err)?;
        item_after(state, id, exec).await
    }

    /// Records a consumption (FIFO unless `batchId`); students consume for themselves only.
    async fn consume(
        &self,
        ctx: &Context<'_>,
        item_id: ID,
        qty: i64,
        user_id: Option<String>,
        batch_id: Option<ID>,
        notes: Option<String>,
    ) -> GqlResult<Item> {
        let (state, actor) = (state(ctx), actor(ctx));
        let id = uuid_of(&item_id)?;
        let batch_id = match batch_id {
            None => None,
            Some(b) => Some(
                b.parse::<Uuid>()
                    .map_err(|_| gql_error(ApiError::not_found("batch")))?,
            ),
        };
        let spec = ConsumptionSpec {
            consumption_id: Uuid::now_v7(),
            qty,
            batch_id,
            user_id: user_id
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|| actor.user_id.clone()),
            source: ConsumptionSource::SelfService,
            notes,
            consumed_at: Utc::now().trunc_subsecs(6),
        };
        let exec = cmd::consume(&state.bus, &CmdContext::new(actor.clone()), id, spec, None)
            .await
            .map_err(err)?;
        item_after(state, id, exec).await
    }

    /// Sets the item's low-stock rule (admins and executors).
    async fn set_threshold(
        &self,
        ctx: &Context<'_>,
        item_id: ID,
        min_qty: i64,
        #[graphql(default)] channels: Vec<String>,
        #[graphql(default)] notify_roles: Vec<String>,
    ) -> GqlResult<Item> {
        let (state, actor) = (state(ctx), actor(ctx));
        let id = uuid_of(&item_id)?;
        let config = NotifyConfig {
            channels,
            notify_roles,
        };
        let exec = cmd::set_threshold(
            &state.bus,
            &CmdContext::new(actor.clone()),
            id,
            min_qty,
            config,
            None,
        )
        .await
        .map_err(err)?;
        item_after(state, id, exec).await
    }
}
