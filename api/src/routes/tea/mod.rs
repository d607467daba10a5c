//! Tea Management (seed 000 §2): items, lots, consumption, low-stock rules, announcements, reports.

mod dto;
mod items;
pub(crate) mod reports;
mod rules;
mod stock;

use dto::*;
use items::*;
use reports::*;
use rules::*;
use stock::*;

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use commands::{tea as cmd, Context};
use domain::tea::{
    AnnouncementEvent, AnnouncementSpec, BatchSpec, ConsumptionSource, ConsumptionSpec, Item,
    ItemEvent, ItemPatch, ItemSpec, NotifyConfig,
};
use projections::page::Page;
use projections::tea::queries::{self as q, Bucket, ConsumptionFilter, GroupBy, ItemFilter};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{answer, money, range_end, range_start, trunc, Idempotent};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_uuid, ApiJson, ApiQuery, IdempotencyKey};
use crate::state::AppState;

const PROJECTION: &str = projections::tea::TeaProjection::NAME;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/items", post(create_item).get(list_items))
        .route("/items/{item_id}", get(get_item).patch(patch_item))
        .route(
            "/items/{item_id}/batches",
            post(create_batch).get(list_batches),
        )
        .route("/items/{item_id}/consume", post(consume))
        .route("/consumption", get(list_consumption))
        .route("/thresholds", post(upsert_threshold).get(list_thresholds))
        .route(
            "/announcements",
            post(create_announcement).get(list_announcements),
        )
        .route("/reports/stock", get(stock_report))
        .route("/reports/consumption", get(consumption_report))
}
