//! The CloudEvent `data` of campaign events (`fundraising-svc`): money as JSON numbers; an
//! anonymous donor is not named (the bus reaches sinks such as Discord).

use domain::fundraising::CampaignEvent;
use eventstore::StoredEvent;
use serde_json::{json, Value};

use crate::budget::money;

/// None when this version cannot decode the event.
pub fn cloud_data(e: &StoredEvent) -> Option<Value> {
    let id = &e.aggregate_id;
    Some(
        match domain::codec::decode::<CampaignEvent>(&e.event_type, e.payload.clone()).ok()? {
            CampaignEvent::CampaignCreated {
                spec: s,
                created_at,
            } => json!({"campaign_id": id,
                "title": s.title, "goal_amount": money(&s.goal_amount), "currency": s.currency,
                "ends_at": s.ends_at, "purpose": s.purpose, "created_by": s.created_by,
                "created_at": created_at}),
            CampaignEvent::CampaignStarted {
                available,
                shortfall,
                started_by,
                started_at,
            } => json!({"campaign_id": id, "budget_check": {"available": money(&available),
                "shortfall": money(&shortfall)}, "started_by": started_by, "started_at": started_at}),
            CampaignEvent::DonationReceived {
                donation: d,
                raised_after,
                received_at,
            } => json!({"campaign_id": id, "donation_id": d.donation_id,
                "donor_id": (!d.anonymous).then_some(&d.donor_id), "anonymous": d.anonymous,
                "amount": money(&d.amount), "currency": d.currency, "raised": money(&raised_after),
                "received_at": received_at}),
            CampaignEvent::CampaignCompleted {
                goal_amount,
                raised,
                completed_at,
            } => json!({"campaign_id": id, "goal_amount": money(&goal_amount),
                "raised": money(&raised), "completed_at": completed_at}),
            CampaignEvent::CampaignClosed {
                raised,
                closed_by,
                closed_at,
            } => json!({"campaign_id": id, "raised": money(&raised), "closed_by": closed_by,
                "closed_at": closed_at}),
            CampaignEvent::CampaignCancelled {
                reason,
                cancelled_by,
                cancelled_at,
            } => json!({"campaign_id": id, "reason": reason, "cancelled_by": cancelled_by,
                "cancelled_at": cancelled_at}),
            CampaignEvent::PurchaseRecorded {
                purchase: p,
                currency,
                recorded_at,
            } => json!({"campaign_id": id, "purchase_id": p.purchase_id,
                "amount": money(&p.amount), "currency": currency, "description": p.description,
                "receipt_ref": p.receipt_ref, "recorded_by": p.recorded_by, "recorded_at": recorded_at}),
        },
    )
}
