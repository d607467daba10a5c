//! The `tea` projection: items with live stock, lots, consumption records, low-stock rules and
//! announcements.

use std::collections::BTreeMap;

use anyhow::Context;
use async_trait::async_trait;
use domain::tea::{AnnouncementEvent, ItemEvent};
use eventstore::{placeholders, tx_exec, Arg, StoredEvent, Tx};

pub struct TeaProjection;

impl TeaProjection {
    /// The projection's name: its checkpoint, and what read-your-writes waits on.
    pub const NAME: &'static str = "tea";
}

/// Rows per bulk statement (11 parameters each for consumption rows: well under both
/// databases' parameter limits).
const BULK_ROWS: usize = 200;

/// A run of consecutive `StockConsumed` events, written with a few bulk statements instead of
/// three or more statements per event.
#[derive(Default)]
struct ConsumptionRun {
    items: BTreeMap<String, i64>,
    lots: BTreeMap<String, i64>,
    rows: Vec<Vec<Arg>>,
}

impl ConsumptionRun {
    fn push(&mut self, e: &StoredEvent, ev: ItemEvent) -> anyhow::Result<()> {
        let ItemEvent::StockConsumed {
            consumption_id,
            qty,
            allocations,
            user_id,
            source,
            notes,
            consumed_at,
            recorded_at,
            ..
        } = ev
        else {
            anyhow::bail!("not a consumption");
        };
        *self.items.entry(e.aggregate_id.clone()).or_default() += qty;
        for a in &allocations {
            *self.lots.entry(a.batch_id.to_string()).or_default() += a.qty;
        }
        self.rows.push(vec![
            Arg::Text(consumption_id.to_string()),
            Arg::Text(e.aggregate_id.clone()),
            Arg::Text(
                allocations
                    .first()
                    .map(|a| a.batch_id.to_string())
                    .unwrap_or_default(),
            ),
            Arg::Text(serde_json::to_string(&allocations)?),
            Arg::I64(qty),
            Arg::Text(user_id),
            Arg::Text(source.as_str().to_string()),
            Arg::OptText(notes),
            Arg::Time(consumed_at),
            Arg::Time(recorded_at),
            Arg::I64(e.position),
        ]);
        Ok(())
    }

    async fn flush(&mut self, tx: &mut Tx) -> anyhow::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let items: Vec<(String, i64)> = std::mem::take(&mut self.items).into_iter().collect();
        for chunk in items.chunks(BULK_ROWS) {
            subtract(tx, "tea_items", "stock_qty", chunk).await?;
        }
        let lots: Vec<(String, i64)> = std::mem::take(&mut self.lots).into_iter().collect();
        for chunk in lots.chunks(BULK_ROWS) {
            subtract(tx, "tea_batches", "qty_remaining", chunk).await?;
        }
        let rows = std::mem::take(&mut self.rows);
        for chunk in rows.chunks(BULK_ROWS) {
            let sql = format!(
                "INSERT INTO tea_consumptions (id, item_id, batch_id, allocations, qty, user_id, source, notes, \
                 consumed_at, created_at, seq) VALUES {}",
                placeholders(chunk.len(), 11)
            );
            tx.execute_args(&sql, chunk.concat())
                .await
                .context("bulk insert of consumptions")?;
        }
        Ok(())
    }
}

/// `UPDATE table SET column = column - delta` for many ids in one statement.
async fn subtract(
    tx: &mut Tx,
    table: &str,
    column: &str,
    deltas: &[(String, i64)],
) -> anyhow::Result<()> {
    let sql = format!(
        "UPDATE {table} SET {column} = {column} - v.column2 FROM (VALUES {}) AS v WHERE {table}.id = v.column1",
        placeholders(deltas.len(), 2)
    );
    let args = deltas
        .iter()
        .flat_map(|(id, d)| [Arg::Text(id.clone()), Arg::I64(*d)])
        .collect();
    tx.execute_args(&sql, args)
        .await
        .with_context(|| format!("bulk update of {table}"))?;
    Ok(())
}

#[async_trait]
impl crate::Projection for TeaProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&[
            <domain::tea::Item as domain::Aggregate>::TYPE,
            <domain::tea::Announcement as domain::Aggregate>::TYPE,
        ])
    }

    async fn apply(&self, tx: &mut Tx, e: &StoredEvent) -> anyhow::Result<()> {
        match e.aggregate_type.as_str() {
            "item" => {
                let ev: ItemEvent = domain::codec::decode(&e.event_type, e.payload.clone())?;
                apply_item(tx, e, ev).await
            }
            "announcement" => {
                let ev: AnnouncementEvent =
                    domain::codec::decode(&e.event_type, e.payload.clone())?;
                let AnnouncementEvent::AnnouncementPublished { spec, created_at } = ev;
                tx_exec!(
                    tx,
                    "INSERT INTO tea_announcements (id, title, body, published_by, effective_from, created_at, item_ids, seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    spec.announcement_id.to_string(),
                    spec.title,
                    spec.body,
                    spec.published_by,
                    spec.effective_from,
                    created_at,
                    serde_json::to_string(&spec.item_ids)?,
                    e.position
                )?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn apply_batch(&self, tx: &mut Tx, events: &[StoredEvent]) -> anyhow::Result<()> {
        let mut run = ConsumptionRun::default();
        for e in events {
            if e.aggregate_type == "item" && e.event_type == "StockConsumed" {
                let ev: ItemEvent = domain::codec::decode(&e.event_type, e.payload.clone())
                    .with_context(|| format!("bad event at position {}", e.position))?;
                run.push(e, ev)?;
                continue;
            }
            // Anything else keeps its order relative to the consumptions around it.
            run.flush(tx).await?;
            self.apply(tx, e)
                .await
                .with_context(|| format!("tea failed on event at position {}", e.position))?;
        }
        run.flush(tx).await
    }

    async fn reset(&self, tx: &mut Tx) -> anyhow::Result<()> {
        for table in [
            "tea_items",
            "tea_batches",
            "tea_consumptions",
            "tea_thresholds",
            "tea_announcements",
        ] {
            tx_exec!(tx, &format!("DELETE FROM {table}"))?;
        }
        Ok(())
    }
}

async fn apply_item(tx: &mut Tx, e: &StoredEvent, ev: ItemEvent) -> anyhow::Result<()> {
    let item_id = e.aggregate_id.clone();
    match ev {
        ItemEvent::ItemCreated {
            spec, created_at, ..
        } => {
            tx_exec!(
                tx,
                "INSERT INTO tea_items (id, name, unit, category, sku, active, track_expiry, min_stock_qty, tags, \
                 stock_qty, threshold_qty, created_at, updated_at, seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $8, $10, $10, $11)",
                item_id,
                spec.name,
                spec.unit,
                spec.category,
                spec.sku,
                spec.active,
                spec.track_expiry,
                spec.min_stock_qty,
                serde_json::to_string(&spec.tags)?,
                created_at,
                e.position
            )?;
        }
        ItemEvent::ItemUpdated {
            changes,
            updated_at,
        } => {
            // Each column keeps its value unless the change names it.
            tx_exec!(
                tx,
                "UPDATE tea_items SET \
                 name = COALESCE($2, name), unit = COALESCE($3, unit), category = COALESCE($4, category), \
                 sku = CASE WHEN $5 THEN $6 ELSE sku END, \
                 active = COALESCE($7, active), track_expiry = COALESCE($8, track_expiry), \
                 min_stock_qty = COALESCE($9, min_stock_qty), tags = COALESCE($10, tags), \
                 threshold_qty = CASE WHEN $9 IS NOT NULL AND NOT EXISTS \
                     (SELECT 1 FROM tea_thresholds t WHERE t.item_id = $1) THEN $9 ELSE threshold_qty END, \
                 updated_at = $11 WHERE id = $1",
                &item_id,
                changes.name,
                changes.unit,
                changes.category,
                changes.sku.is_some(),
                changes.sku.clone().flatten(),
                changes.active,
                changes.track_expiry,
                changes.min_stock_qty,
                changes.tags.as_ref().map(serde_json::to_string).transpose()?,
                updated_at
            )?;
        }
        ItemEvent::BatchReceived { batch } => {
            tx_exec!(
                tx,
                "INSERT INTO tea_batches (id, item_id, batch_code, supplier_ref, expiry_date, qty_received, \
                 qty_remaining, currency, cost_total, received_at, seq) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10)",
                batch.batch_id.to_string(),
                &item_id,
                batch.batch_code,
                batch.supplier_ref,
                batch.expiry_date,
                batch.qty_received,
                batch.currency,
                batch.cost_total.to_string(),
                batch.received_at,
                e.position
            )?;
            tx_exec!(
                tx,
                "UPDATE tea_items SET stock_qty = stock_qty + $2 WHERE id = $1",
                &item_id,
                batch.qty_received
            )?;
        }
        ItemEvent::StockConsumed {
            consumption_id,
            qty,
            allocations,
            user_id,
            source,
            notes,
            consumed_at,
            recorded_at,
            ..
        } => {
            for a in &allocations {
                tx_exec!(
                    tx,
                    "UPDATE tea_batches SET qty_remaining = qty_remaining - $2 WHERE id = $1",
                    a.batch_id.to_string(),
                    a.qty
                )?;
            }
            tx_exec!(
                tx,
                "UPDATE tea_items SET stock_qty = stock_qty - $2 WHERE id = $1",
                &item_id,
                qty
            )?;
            let first_batch = allocations
                .first()
                .map(|a| a.batch_id.to_string())
                .unwrap_or_default();
            tx_exec!(
                tx,
                "INSERT INTO tea_consumptions (id, item_id, batch_id, allocations, qty, user_id, source, notes, \
                 consumed_at, created_at, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                consumption_id.to_string(),
                &item_id,
                first_batch,
                serde_json::to_string(&allocations)?,
                qty,
                user_id,
                source.as_str(),
                notes,
                consumed_at,
                recorded_at,
                e.position
            )?;
        }
        ItemEvent::LowStockDetected { .. } => {}
        ItemEvent::ThresholdSet {
            threshold_id,
            min_qty,
            notify_config,
            at,
            ..
        } => {
            tx_exec!(
                tx,
                "INSERT INTO tea_thresholds (id, item_id, min_qty, notify_config, created_at, updated_at, seq) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6) \
                 ON CONFLICT (item_id) DO UPDATE SET min_qty = excluded.min_qty, \
                 notify_config = excluded.notify_config, updated_at = excluded.updated_at",
                threshold_id.to_string(),
                &item_id,
                min_qty,
                serde_json::to_string(&notify_config)?,
                at,
                e.position
            )?;
            tx_exec!(
                tx,
                "UPDATE tea_items SET threshold_qty = $2 WHERE id = $1",
                &item_id,
                min_qty
            )?;
        }
    }
    Ok(())
}
