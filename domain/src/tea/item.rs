//! The `Item` aggregate: one consumable (tea bags, sugar, cups…), its stock lots, consumption
//! and low-stock rule. Stock lives in lots; it can never go negative.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::validate;
use crate::{Actor, DomainError, ErrorKind};

/// How far in the future a consumption may be dated (clock skew between clients).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemSpec {
    pub name: String,
    pub unit: String,
    pub category: String,
    pub sku: Option<String>,
    pub active: bool,
    pub track_expiry: bool,
    pub min_stock_qty: i64,
    pub tags: Vec<String>,
}

impl ItemSpec {
    fn validate(&self) -> Result<(), ItemError> {
        validate::text("name", &self.name, validate::MAX_NAME).map_err(ItemError::Invalid)?;
        validate::text("unit", &self.unit, validate::MAX_SHORT).map_err(ItemError::Invalid)?;
        validate::text("category", &self.category, validate::MAX_SHORT)
            .map_err(ItemError::Invalid)?;
        if let Some(sku) = &self.sku {
            validate::text("sku", sku, validate::MAX_SHORT).map_err(ItemError::Invalid)?;
        }
        validate::qty("min_stock_qty", self.min_stock_qty, true).map_err(ItemError::Invalid)?;
        validate::tags(&self.tags).map_err(ItemError::Invalid)
    }
}

/// A partial update; `None` leaves a field as it is. `sku: Some(None)` clears the SKU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_expiry: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_stock_qty: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl ItemPatch {
    pub fn apply_to(&self, spec: &mut ItemSpec) {
        if let Some(v) = &self.name {
            spec.name = v.clone();
        }
        if let Some(v) = &self.unit {
            spec.unit = v.clone();
        }
        if let Some(v) = &self.category {
            spec.category = v.clone();
        }
        if let Some(v) = &self.sku {
            spec.sku = v.clone();
        }
        if let Some(v) = self.active {
            spec.active = v;
        }
        if let Some(v) = self.track_expiry {
            spec.track_expiry = v;
        }
        if let Some(v) = self.min_stock_qty {
            spec.min_stock_qty = v;
        }
        if let Some(v) = &self.tags {
            spec.tags = v.clone();
        }
    }

    /// Keeps only the fields that differ from `spec`.
    fn changes_against(&self, spec: &ItemSpec) -> ItemPatch {
        ItemPatch {
            name: self.name.clone().filter(|v| *v != spec.name),
            unit: self.unit.clone().filter(|v| *v != spec.unit),
            category: self.category.clone().filter(|v| *v != spec.category),
            sku: self.sku.clone().filter(|v| *v != spec.sku),
            active: self.active.filter(|v| *v != spec.active),
            track_expiry: self.track_expiry.filter(|v| *v != spec.track_expiry),
            min_stock_qty: self.min_stock_qty.filter(|v| *v != spec.min_stock_qty),
            tags: self.tags.clone().filter(|v| *v != spec.tags),
        }
    }

    fn is_empty(&self) -> bool {
        *self == ItemPatch::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSpec {
    pub batch_id: Uuid,
    pub batch_code: String,
    pub supplier_ref: Option<String>,
    pub expiry_date: Option<NaiveDate>,
    pub qty_received: i64,
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub cost_total: Decimal,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumptionSource {
    SelfService,
    Event,
    Admin,
}

impl ConsumptionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumptionSource::SelfService => "self_service",
            ConsumptionSource::Event => "event",
            ConsumptionSource::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumptionSpec {
    pub consumption_id: Uuid,
    pub qty: i64,
    pub batch_id: Option<Uuid>,
    pub user_id: String,
    pub source: ConsumptionSource,
    pub notes: Option<String>,
    pub consumed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyConfig {
    pub channels: Vec<String>,
    pub notify_roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ItemCommand {
    Create {
        item_id: Uuid,
        spec: ItemSpec,
        at: DateTime<Utc>,
    },
    Update {
        patch: ItemPatch,
        at: DateTime<Utc>,
    },
    ReceiveBatch {
        batch: BatchSpec,
        at: DateTime<Utc>,
    },
    Consume {
        consumption: ConsumptionSpec,
        actor: Actor,
        at: DateTime<Utc>,
    },
    SetThreshold {
        threshold_id: Uuid,
        min_qty: i64,
        notify_config: NotifyConfig,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub batch_id: Uuid,
    pub qty: i64,
}

/// Events of the `Item` stream. Type names and versions are a stored contract: never change a
/// variant's meaning; add a new version with an upcaster instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ItemEvent {
    ItemCreated {
        item_id: Uuid,
        spec: ItemSpec,
        created_at: DateTime<Utc>,
    },
    ItemUpdated {
        changes: ItemPatch,
        updated_at: DateTime<Utc>,
    },
    BatchReceived {
        batch: BatchSpec,
    },
    StockConsumed {
        consumption_id: Uuid,
        qty: i64,
        allocations: Vec<Allocation>,
        user_id: String,
        source: ConsumptionSource,
        notes: Option<String>,
        consumed_at: DateTime<Utc>,
        recorded_at: DateTime<Utc>,
        stock_after: i64,
    },
    LowStockDetected {
        current_qty: i64,
        threshold: i64,
        detected_at: DateTime<Utc>,
    },
    ThresholdSet {
        threshold_id: Uuid,
        min_qty: i64,
        notify_config: NotifyConfig,
        created: bool,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ItemEvent {
    fn event_type(&self) -> String {
        match self {
            ItemEvent::ItemCreated { .. } => "ItemCreated",
            ItemEvent::ItemUpdated { .. } => "ItemUpdated",
            ItemEvent::BatchReceived { .. } => "BatchReceived",
            ItemEvent::StockConsumed { .. } => "StockConsumed",
            ItemEvent::LowStockDetected { .. } => "LowStockDetected",
            ItemEvent::ThresholdSet { .. } => "ThresholdSet",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ItemError {
    #[error("item not found")]
    NotFound,
    #[error("batch not found")]
    BatchNotFound,
    #[error("item already exists")]
    AlreadyExists,
    #[error("insufficient stock: {requested} requested, {available} available")]
    InsufficientStock { requested: i64, available: i64 },
    #[error("item is not active")]
    Inactive,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
}

impl DomainError for ItemError {
    fn kind(&self) -> ErrorKind {
        match self {
            ItemError::NotFound | ItemError::BatchNotFound => ErrorKind::NotFound,
            ItemError::AlreadyExists
            | ItemError::InsufficientStock { .. }
            | ItemError::Inactive => ErrorKind::Conflict,
            ItemError::Invalid(_) => ErrorKind::Validation,
            ItemError::Forbidden(_) => ErrorKind::Forbidden,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchState {
    pub batch_id: Uuid,
    pub expiry_date: Option<NaiveDate>,
    pub qty_received: i64,
    pub qty_remaining: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdState {
    pub threshold_id: Uuid,
    pub min_qty: i64,
    pub notify_config: NotifyConfig,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub item_id: Option<Uuid>,
    pub spec: ItemSpec,
    /// In order of receipt.
    pub batches: Vec<BatchState>,
    pub threshold: Option<ThresholdState>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Item {
    pub fn exists(&self) -> bool {
        self.item_id.is_some()
    }

    pub fn stock(&self) -> i64 {
        self.batches.iter().map(|b| b.qty_remaining).sum()
    }

    /// The threshold rule's `min_qty` when a rule exists, else the item's `min_stock_qty`.
    pub fn threshold_qty(&self) -> i64 {
        self.threshold
            .as_ref()
            .map(|t| t.min_qty)
            .unwrap_or(self.spec.min_stock_qty)
    }

    pub fn is_low(&self) -> bool {
        self.stock() < self.threshold_qty()
    }

    /// Lots to draw from, in FIFO order: earliest expiry first when the item tracks expiry
    /// (lots without a date last), otherwise order of receipt.
    pub fn fifo_order(&self) -> Vec<&BatchState> {
        let mut lots: Vec<&BatchState> = self
            .batches
            .iter()
            .filter(|b| b.qty_remaining > 0)
            .collect();
        if self.spec.track_expiry {
            // Stable sort keeps receipt order among equal dates.
            lots.sort_by_key(|b| (b.expiry_date.is_none(), b.expiry_date));
        }
        lots
    }

    fn allocate(&self, qty: i64, batch_id: Option<Uuid>) -> Result<Vec<Allocation>, ItemError> {
        if let Some(id) = batch_id {
            let lot = self
                .batches
                .iter()
                .find(|b| b.batch_id == id)
                .ok_or(ItemError::BatchNotFound)?;
            if lot.qty_remaining < qty {
                return Err(ItemError::InsufficientStock {
                    requested: qty,
                    available: lot.qty_remaining,
                });
            }
            return Ok(vec![Allocation { batch_id: id, qty }]);
        }
        let available = self.stock();
        if available < qty {
            return Err(ItemError::InsufficientStock {
                requested: qty,
                available,
            });
        }
        let mut left = qty;
        let mut out = Vec::new();
        for lot in self.fifo_order() {
            if left == 0 {
                break;
            }
            let take = left.min(lot.qty_remaining);
            out.push(Allocation {
                batch_id: lot.batch_id,
                qty: take,
            });
            left -= take;
        }
        debug_assert_eq!(left, 0);
        Ok(out)
    }
}

fn require(cond: bool, err: ItemError) -> Result<(), ItemError> {
    if cond {
        Ok(())
    } else {
        Err(err)
    }
}

impl Aggregate for Item {
    const TYPE: &'static str = "item";
    type Command = ItemCommand;
    type Event = ItemEvent;
    type Error = ItemError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ItemCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ItemError> {
        match command {
            ItemCommand::Create { item_id, spec, at } => {
                require(!self.exists(), ItemError::AlreadyExists)?;
                spec.validate()?;
                sink.write(
                    ItemEvent::ItemCreated {
                        item_id,
                        spec,
                        created_at: at,
                    },
                    self,
                )
                .await;
            }
            ItemCommand::Update { patch, at } => {
                require(self.exists(), ItemError::NotFound)?;
                let mut next = self.spec.clone();
                patch.apply_to(&mut next);
                next.validate()?;
                let changes = patch.changes_against(&self.spec);
                if !changes.is_empty() {
                    sink.write(
                        ItemEvent::ItemUpdated {
                            changes,
                            updated_at: at,
                        },
                        self,
                    )
                    .await;
                }
            }
            ItemCommand::ReceiveBatch { batch, .. } => {
                require(self.exists(), ItemError::NotFound)?;
                validate::text("batch_code", &batch.batch_code, validate::MAX_SHORT)
                    .map_err(ItemError::Invalid)?;
                validate::optional_text(
                    "supplier_ref",
                    batch.supplier_ref.as_deref(),
                    validate::MAX_SHORT,
                )
                .map_err(ItemError::Invalid)?;
                validate::qty("qty_received", batch.qty_received, false)
                    .map_err(ItemError::Invalid)?;
                validate::currency(&batch.currency).map_err(ItemError::Invalid)?;
                // The budget books every batch's cost as an expense (`pm.budget.tea`): a cost the
                // ledger would refuse must be refused here, or it would never reach the books.
                if batch.cost_total.is_sign_negative()
                    || batch.cost_total.scale() > 2
                    || batch.cost_total > crate::budget::MAX_AMOUNT
                {
                    return Err(ItemError::Invalid(format!(
                        "cost_total must be a non-negative amount with at most two decimals, at most {}",
                        crate::budget::MAX_AMOUNT
                    )));
                }
                if self.spec.track_expiry && batch.expiry_date.is_none() {
                    return Err(ItemError::Invalid(
                        "expiry_date is required for an item that tracks expiry".into(),
                    ));
                }
                require(
                    !self.batches.iter().any(|b| b.batch_id == batch.batch_id),
                    ItemError::Invalid("batch already received".into()),
                )?;
                let total = self.stock().checked_add(batch.qty_received);
                require(
                    total.is_some_and(|t| t <= validate::MAX_QTY * 10),
                    ItemError::Invalid("stock would exceed the limit".into()),
                )?;
                sink.write(ItemEvent::BatchReceived { batch }, self).await;
            }
            ItemCommand::Consume {
                consumption,
                actor,
                at,
            } => {
                require(self.exists(), ItemError::NotFound)?;
                if consumption.user_id != actor.user_id && !actor.manages_stock() {
                    return Err(ItemError::Forbidden(
                        "only admins and executors may record consumption for another user".into(),
                    ));
                }
                validate::qty("qty", consumption.qty, false).map_err(ItemError::Invalid)?;
                validate::text("user_id", &consumption.user_id, validate::MAX_SHORT)
                    .map_err(ItemError::Invalid)?;
                validate::optional_text("notes", consumption.notes.as_deref(), validate::MAX_NOTES)
                    .map_err(ItemError::Invalid)?;
                if consumption.consumed_at > at + MAX_FUTURE_SKEW {
                    return Err(ItemError::Invalid(
                        "consumed_at must not be in the future".into(),
                    ));
                }
                require(self.spec.active, ItemError::Inactive)?;
                let allocations = self.allocate(consumption.qty, consumption.batch_id)?;
                let before = self.stock();
                let threshold = self.threshold_qty();
                sink.write(
                    ItemEvent::StockConsumed {
                        consumption_id: consumption.consumption_id,
                        qty: consumption.qty,
                        allocations,
                        user_id: consumption.user_id,
                        source: consumption.source,
                        notes: consumption.notes,
                        consumed_at: consumption.consumed_at,
                        recorded_at: at,
                        stock_after: before - consumption.qty,
                    },
                    self,
                )
                .await;
                let after = self.stock();
                if before >= threshold && after < threshold {
                    sink.write(
                        ItemEvent::LowStockDetected {
                            current_qty: after,
                            threshold,
                            detected_at: at,
                        },
                        self,
                    )
                    .await;
                }
            }
            ItemCommand::SetThreshold {
                threshold_id,
                min_qty,
                notify_config,
                at,
            } => {
                require(self.exists(), ItemError::NotFound)?;
                validate::qty("min_qty", min_qty, true).map_err(ItemError::Invalid)?;
                if notify_config.channels.len() > validate::MAX_TAGS
                    || notify_config.notify_roles.len() > validate::MAX_TAGS
                {
                    return Err(ItemError::Invalid(format!(
                        "notify_config lists at most {} channels and roles",
                        validate::MAX_TAGS
                    )));
                }
                for v in notify_config
                    .channels
                    .iter()
                    .chain(&notify_config.notify_roles)
                {
                    validate::text("notify_config entry", v, validate::MAX_TAG)
                        .map_err(ItemError::Invalid)?;
                }
                let (threshold_id, created) = match &self.threshold {
                    Some(t) => (t.threshold_id, false),
                    None => (threshold_id, true),
                };
                sink.write(
                    ItemEvent::ThresholdSet {
                        threshold_id,
                        min_qty,
                        notify_config,
                        created,
                        at,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ItemEvent) {
        match event {
            ItemEvent::ItemCreated {
                item_id,
                spec,
                created_at,
            } => {
                self.item_id = Some(item_id);
                self.spec = spec;
                self.created_at = Some(created_at);
                self.updated_at = Some(created_at);
            }
            ItemEvent::ItemUpdated {
                changes,
                updated_at,
            } => {
                changes.apply_to(&mut self.spec);
                self.updated_at = Some(updated_at);
            }
            ItemEvent::BatchReceived { batch } => {
                self.batches.push(BatchState {
                    batch_id: batch.batch_id,
                    expiry_date: batch.expiry_date,
                    qty_received: batch.qty_received,
                    qty_remaining: batch.qty_received,
                });
            }
            ItemEvent::StockConsumed { allocations, .. } => {
                for a in allocations {
                    if let Some(lot) = self.batches.iter_mut().find(|b| b.batch_id == a.batch_id) {
                        lot.qty_remaining -= a.qty;
                    }
                }
            }
            ItemEvent::LowStockDetected { .. } => {}
            ItemEvent::ThresholdSet {
                threshold_id,
                min_qty,
                notify_config,
                at,
                ..
            } => {
                let created_at = self.threshold.as_ref().map(|t| t.created_at).unwrap_or(at);
                self.threshold = Some(ThresholdState {
                    threshold_id,
                    min_qty,
                    notify_config,
                    created_at,
                    updated_at: at,
                });
            }
        }
    }
}

/// Unique values an item holds: its name (case-insensitive) and its SKU.
pub fn item_claims(spec: &ItemSpec) -> Vec<(&'static str, String)> {
    let mut out = vec![("item.name", spec.name.trim().to_lowercase())];
    if let Some(sku) = &spec.sku {
        out.push(("item.sku", sku.trim().to_string()));
    }
    out
}

#[cfg(test)]
#[path = "item_tests.rs"]
mod tests;
