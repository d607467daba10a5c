//! The `sharing` projection.

use async_trait::async_trait;
use domain::sharing::AssetEvent;
use eventstore::{tx_exec, StoredEvent, Tx};

pub struct SharingProjection;

impl SharingProjection {
    /// The projection's name: its checkpoint, and what read-your-writes waits on.
    pub const NAME: &'static str = "sharing";
}

#[async_trait]
impl crate::Projection for SharingProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&[<domain::sharing::Asset as domain::Aggregate>::TYPE])
    }

    async fn apply(&self, tx: &mut Tx, e: &StoredEvent) -> anyhow::Result<()> {
        if e.aggregate_type != "asset" {
            return Ok(());
        }
        let id = e.aggregate_id.as_str();
        match domain::codec::decode::<AssetEvent>(&e.event_type, e.payload.clone())? {
            AssetEvent::AssetRegistered {
                spec: s,
                registered_at,
            } => {
                tx_exec!(
                    tx,
                    "INSERT INTO sharing_assets (id, name, category, owner_id, replacement_cost, currency, notes, \
                     registered_by, created_at, updated_at, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
                    id,
                    s.name,
                    s.category,
                    s.owner_id,
                    s.replacement_cost.to_string(),
                    s.currency,
                    s.notes,
                    s.registered_by,
                    registered_at,
                    e.position
                )?;
            }
            AssetEvent::ItemTaken { loan } => {
                tx_exec!(
                    tx,
                    "INSERT INTO sharing_loans (id, asset_id, user_id, taken_at, due_at, seq) VALUES ($1, $2, $3, $4, $5, $6)",
                    loan.loan_id.to_string(),
                    id,
                    &loan.user_id,
                    loan.taken_at,
                    loan.due_at,
                    e.position
                )?;
                tx_exec!(
                    tx,
                    "UPDATE sharing_assets SET holder_id = $2, loan_id = $3, updated_at = $4 WHERE id = $1",
                    id,
                    loan.user_id,
                    loan.loan_id.to_string(),
                    loan.taken_at
                )?;
            }
            AssetEvent::ItemReturned {
                loan,
                condition,
                notes,
                returned_by,
                returned_at,
            } => {
                tx_exec!(
                    tx,
                    "UPDATE sharing_loans SET returned_at = $2, returned_by = $3, condition = $4, return_notes = $5 \
                     WHERE id = $1",
                    loan.loan_id.to_string(),
                    returned_at,
                    returned_by,
                    condition.as_str(),
                    notes
                )?;
                tx_exec!(
                    tx,
                    "UPDATE sharing_assets SET holder_id = NULL, loan_id = NULL, updated_at = $2 WHERE id = $1",
                    id,
                    returned_at
                )?;
            }
            AssetEvent::DamageReported {
                report: r,
                reported_at,
            } => {
                tx_exec!(
                    tx,
                    "INSERT INTO sharing_damages (id, asset_id, user_id, description, cost, currency, reported_by, \
                     reported_at, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    r.report_id.to_string(),
                    id,
                    r.user_id,
                    r.description,
                    r.cost.to_string(),
                    r.currency,
                    r.reported_by,
                    reported_at,
                    e.position
                )?;
                tx_exec!(
                    tx,
                    "UPDATE sharing_assets SET updated_at = $2 WHERE id = $1",
                    id,
                    reported_at
                )?;
            }
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut Tx) -> anyhow::Result<()> {
        for t in ["sharing_assets", "sharing_loans", "sharing_damages"] {
            tx_exec!(tx, &format!("DELETE FROM {t}"))?;
        }
        Ok(())
    }
}
