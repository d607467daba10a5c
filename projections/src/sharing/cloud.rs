//! The CloudEvent `data` of asset events (`sharing-svc`): money as JSON numbers.

use domain::sharing::AssetEvent;
use eventstore::StoredEvent;
use serde_json::{json, Value};

use crate::budget::money;

/// None when this version cannot decode the event.
pub fn cloud_data(e: &StoredEvent) -> Option<Value> {
    let id = &e.aggregate_id;
    Some(
        match domain::codec::decode::<AssetEvent>(&e.event_type, e.payload.clone()).ok()? {
            AssetEvent::AssetRegistered {
                spec: s,
                registered_at,
            } => json!({"asset_id": id, "name": s.name, "category": s.category,
                "owner_id": s.owner_id, "replacement_cost": money(&s.replacement_cost),
                "currency": s.currency, "registered_by": s.registered_by,
                "registered_at": registered_at}),
            AssetEvent::ItemTaken { loan: l } => json!({"asset_id": id, "loan_id": l.loan_id,
                "user_id": l.user_id, "taken_at": l.taken_at, "due_at": l.due_at}),
            AssetEvent::ItemReturned {
                loan: l,
                condition,
                notes,
                returned_by,
                returned_at,
            } => json!({"asset_id": id, "loan_id": l.loan_id, "user_id": l.user_id,
                "condition": condition.as_str(), "notes": notes, "returned_by": returned_by,
                "taken_at": l.taken_at, "due_at": l.due_at, "returned_at": returned_at,
                "overdue": returned_at > l.due_at}),
            AssetEvent::DamageReported {
                report: r,
                reported_at,
            } => json!({"asset_id": id, "report_id": r.report_id, "user_id": r.user_id,
                "description": r.description, "cost": money(&r.cost), "currency": r.currency,
                "reported_by": r.reported_by, "reported_at": reported_at}),
        },
    )
}
