//! GraphQL over HTTP (`POST /graphql`), over `graphql-transport-ws` (the same path upgraded, see
//! `ws`), its SDL (`GET /graphql/schema.graphql`, and `schema.graphql` at the root, kept equal by a
//! test) and GraphiQL (`GET /graphql`). Queries read the same read models as REST; mutations go
//! through the same command layer. Same auth as REST (a bearer token, else 401), and every query
//! is bounded in size, depth and complexity (`limits`: a paginated field costs its page size).

mod budget;
mod chat;
mod limits;
mod subscriptions;
mod tea;
pub mod ws;

use async_graphql::{Context, MergedObject, Object, Schema, SimpleObject, ID};
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use projections::page::Page;
use projections::tea::queries::{self as q, ItemFilter};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::settings::GraphqlSettings;
use crate::state::AppState;

pub type GqlResult<T> = async_graphql::Result<T>;

#[derive(MergedObject, Default)]
pub struct Query(
    TeaQuery,
    chat::ChatQuery,
    budget::BudgetQuery,
    subscriptions::LiveQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    tea::TeaMutation,
    chat::ChatMutation,
    budget::BudgetMutation,
    subscriptions::LiveMutation,
);

pub type FafcabSchema = Schema<Query, Mutation, subscriptions::Subscription>;

/// The schema with the default limits (what `fafcab schema` prints: limits do not change the SDL).
pub fn schema() -> FafcabSchema {
    schema_with(&GraphqlSettings::default())
}

/// The schema with the operator's limits.
pub fn schema_with(limits: &GraphqlSettings) -> FafcabSchema {
    let builder = Schema::build(
        Query::default(),
        Mutation::default(),
        subscriptions::Subscription,
    )
    .limit_complexity(limits.max_complexity)
    .extension(limits::QuerySize(limits.max_query_bytes))
    .extension(limits::Depth(limits.max_depth));
    if limits.introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

/// A consumable with its live stock.
#[derive(SimpleObject, Clone)]
pub struct Item {
    id: ID,
    name: String,
    unit: String,
    category: String,
    sku: Option<String>,
    active: bool,
    track_expiry: bool,
    min_stock_qty: i64,
    tags: Vec<String>,
    stock_qty: i64,
    low_stock: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<q::ItemRow> for Item {
    fn from(r: q::ItemRow) -> Self {
        Item {
            id: ID(r.id),
            low_stock: r.stock_qty < r.threshold_qty,
            name: r.name,
            unit: r.unit,
            category: r.category,
            sku: r.sku,
            active: r.active,
            track_expiry: r.track_expiry,
            min_stock_qty: r.min_stock_qty,
            tags: r.tags,
            stock_qty: r.stock_qty,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

impl PageInfo {
    fn of(next: Option<String>) -> Self {
        PageInfo {
            has_next_page: next.is_some(),
            end_cursor: next,
        }
    }
}

#[derive(SimpleObject)]
pub struct ItemEdge {
    cursor: String,
    node: Item,
}

#[derive(SimpleObject)]
pub struct ItemConnection {
    edges: Vec<ItemEdge>,
    page_info: PageInfo,
}

#[derive(Default)]
pub struct TeaQuery;

fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

fn actor<'a>(ctx: &Context<'a>) -> &'a domain::Actor {
    ctx.data_unchecked::<domain::Actor>()
}

fn db<'a>(ctx: &Context<'a>) -> &'a eventstore::Db {
    &state(ctx).db
}

/// Every GraphQL error goes through here: `ApiError`'s envelope code in `extensions.code` and its
/// public message (an internal error is logged once and never described), as REST answers.
pub(crate) fn gql_error(e: ApiError) -> async_graphql::Error {
    use async_graphql::ErrorExtensions;
    let code = e.code();
    async_graphql::Error::new(e.public_message()).extend_with(|_, ext| ext.set("code", code))
}

#[Object]
impl TeaQuery {
    /// One item, or null.
    #[graphql(complexity = "crate::graphql::limits::LOOKUP_COST + child_complexity")]
    async fn item(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Item>> {
        let Ok(id) = id.parse::<uuid::Uuid>() else {
            return Ok(None);
        };
        let row = q::get_item(db(ctx), &id.to_string())
            .await
            .map_err(|e| gql_error(e.into()))?;
        Ok(row.map(Item::from))
    }

    /// Items, oldest first, `first` at most 200 (default 50), filtered like `GET /items`.
    // Each argument is a GraphQL field argument; grouping them would change the schema.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, child_complexity)")]
    async fn items(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        q: Option<String>,
        category: Option<String>,
        low_stock: Option<bool>,
        active: Option<bool>,
    ) -> async_graphql::Result<ItemConnection> {
        let page =
            Page::parse(first.map(i64::from), after.as_deref()).map_err(|e| gql_error(e.into()))?;
        let filter = ItemFilter {
            q: q.filter(|s| !s.trim().is_empty()),
            category,
            low_stock,
            active,
        };
        let (rows, next) = q::list_items(db(ctx), &filter, page)
            .await
            .map_err(|e| gql_error(e.into()))?;
        let edges = rows
            .into_iter()
            .map(|r| ItemEdge {
                cursor: projections::page::encode(r.seq),
                node: Item::from(r),
            })
            .collect();
        Ok(ItemConnection {
            edges,
            page_info: PageInfo::of(next),
        })
    }
}

/// `POST /graphql`.
pub async fn execute(
    State(state): State<AppState>,
    Auth(actor): Auth,
    body: ApiJson<async_graphql::Request>,
) -> Response {
    // A `\u0000` escape in a GraphQL string literal (variables are JSON, refused by `ApiJson`).
    if crate::extract::json_has_nul_escape(body.value.query.as_bytes()) {
        return ApiError::validation("text must not contain the NUL character (U+0000)")
            .into_response();
    }
    let request = body.value.data(state.clone()).data(actor);
    let response = state.graphql.execute(request).await;
    axum::Json(response).into_response()
}

/// `GET /graphql/schema.graphql`: the SDL this server serves.
pub async fn sdl(State(state): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; charset=utf-8")],
        state.graphql.sdl(),
    )
}

/// `GET /graphql`: a `graphql-transport-ws` upgrade, else GraphiQL (for people with a browser and
/// a token).
pub async fn get(
    State(state): State<AppState>,
    upgrade: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Response {
    match upgrade {
        Ok(upgrade) => ws::upgrade(state, upgrade),
        Err(_) => graphiql().into_response(),
    }
}

fn graphiql() -> Html<String> {
    Html(
        async_graphql::http::GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql")
            .finish(),
    )
}
