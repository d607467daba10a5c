//! The `fundraising` projection.

use async_trait::async_trait;
use domain::fundraising::CampaignEvent;
use eventstore::{tx_exec, tx_fetch_optional, StoredEvent, Tx};
use rust_decimal::Decimal;

pub struct FundraisingProjection;

impl FundraisingProjection {
    /// The projection's name: its checkpoint, and what read-your-writes waits on.
    pub const NAME: &'static str = "fundraising";
}

#[derive(sqlx::FromRow)]
struct Spent {
    spent: String,
}

/// Sets the status (and the time column of that step) of a campaign.
async fn set_status(
    tx: &mut Tx,
    id: &str,
    status: &str,
    column: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let sql = format!(
        "UPDATE fundraising_campaigns SET status = $2, {column} = $3, updated_at = $3 WHERE id = $1"
    );
    tx_exec!(tx, &sql, id, status, at)?;
    Ok(())
}

#[async_trait]
impl crate::Projection for FundraisingProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&[<domain::fundraising::Campaign as domain::Aggregate>::TYPE])
    }

    async fn apply(&self, tx: &mut Tx, e: &StoredEvent) -> anyhow::Result<()> {
        if e.aggregate_type != "campaign" {
            return Ok(());
        }
        let id = e.aggregate_id.as_str();
        match domain::codec::decode::<CampaignEvent>(&e.event_type, e.payload.clone())? {
            CampaignEvent::CampaignCreated { spec, created_at } => {
                tx_exec!(
                    tx,
                    "INSERT INTO fundraising_campaigns (id, title, description, goal_amount, currency, ends_at, purpose, \
                     status, raised, spent, donors_count, created_by, created_at, updated_at, seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'draft', '0', '0', 0, $8, $9, $9, $10)",
                    id,
                    spec.title,
                    spec.description,
                    spec.goal_amount.to_string(),
                    spec.currency,
                    spec.ends_at,
                    spec.purpose,
                    spec.created_by,
                    created_at,
                    e.position
                )?;
            }
            CampaignEvent::CampaignStarted {
                available,
                shortfall,
                started_at,
                ..
            } => {
                tx_exec!(
                    tx,
                    "UPDATE fundraising_campaigns SET budget_available = $2, budget_shortfall = $3 WHERE id = $1",
                    id,
                    available.to_string(),
                    shortfall.to_string()
                )?;
                set_status(tx, id, "active", "started_at", started_at).await?;
            }
            CampaignEvent::DonationReceived {
                donation: d,
                raised_after,
                received_at,
            } => {
                tx_exec!(
                    tx,
                    "INSERT INTO fundraising_donations (id, campaign_id, donor_id, amount, currency, anonymous, message, \
                     received_at, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    d.donation_id.to_string(),
                    id,
                    d.donor_id,
                    d.amount.to_string(),
                    d.currency,
                    d.anonymous,
                    d.message,
                    received_at,
                    e.position
                )?;
                tx_exec!(
                    tx,
                    "UPDATE fundraising_campaigns SET raised = $2, updated_at = $3, donors_count = \
                     (SELECT COUNT(DISTINCT donor_id) FROM fundraising_donations WHERE campaign_id = $1) WHERE id = $1",
                    id,
                    raised_after.to_string(),
                    received_at
                )?;
            }
            CampaignEvent::CampaignCompleted { completed_at, .. } => {
                set_status(tx, id, "completed", "completed_at", completed_at).await?;
            }
            CampaignEvent::CampaignClosed { closed_at, .. } => {
                set_status(tx, id, "closed", "closed_at", closed_at).await?;
            }
            CampaignEvent::CampaignCancelled {
                reason,
                cancelled_at,
                ..
            } => {
                tx_exec!(
                    tx,
                    "UPDATE fundraising_campaigns SET cancel_reason = $2 WHERE id = $1",
                    id,
                    reason
                )?;
                set_status(tx, id, "cancelled", "cancelled_at", cancelled_at).await?;
            }
            CampaignEvent::PurchaseRecorded {
                purchase: p,
                currency,
                recorded_at,
            } => {
                tx_exec!(
                    tx,
                    "INSERT INTO fundraising_purchases (id, campaign_id, amount, currency, description, receipt_ref, \
                     recorded_by, recorded_at, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    p.purchase_id.to_string(),
                    id,
                    p.amount.to_string(),
                    currency,
                    p.description,
                    p.receipt_ref,
                    p.recorded_by,
                    recorded_at,
                    e.position
                )?;
                let row = tx_fetch_optional!(
                    tx,
                    Spent,
                    "SELECT spent FROM fundraising_campaigns WHERE id = $1",
                    id
                )?;
                let spent: Decimal = row
                    .map(|r| r.spent.parse())
                    .transpose()?
                    .unwrap_or_default();
                tx_exec!(
                    tx,
                    "UPDATE fundraising_campaigns SET spent = $2, updated_at = $3 WHERE id = $1",
                    id,
                    (spent + p.amount).to_string(),
                    recorded_at
                )?;
            }
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut Tx) -> anyhow::Result<()> {
        for t in [
            "fundraising_campaigns",
            "fundraising_donations",
            "fundraising_purchases",
        ] {
            tx_exec!(tx, &format!("DELETE FROM {t}"))?;
        }
        Ok(())
    }
}
