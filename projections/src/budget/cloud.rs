//! The CloudEvent `data` of budget events (`budget-svc`): money as JSON numbers.

use domain::budget::LedgerEvent;
use eventstore::StoredEvent;
use rust_decimal::Decimal;
use serde_json::{json, Value};

pub(crate) fn money(d: &Decimal) -> Value {
    let mut d = *d;
    d.rescale(2);
    serde_json::from_str(&d.to_string()).unwrap_or(Value::Null)
}

/// None when this version cannot decode the event.
pub fn cloud_data(e: &StoredEvent) -> Option<Value> {
    let currency = &e.aggregate_id;
    Some(
        match domain::codec::decode::<LedgerEvent>(&e.event_type, e.payload.clone()).ok()? {
            LedgerEvent::TransactionRecorded {
                transaction: t,
                recorded_at,
            } => {
                json!({"id": t.transaction_id, "kind": t.kind.as_str(), "amount": money(&t.amount),
                "currency": t.currency, "category": t.category, "description": t.description,
                "occurred_at": t.occurred_at, "reference": t.reference, "recorded_by": t.recorded_by,
                "recorded_at": recorded_at})
            }
            LedgerEvent::TransactionReversed {
                reversal_id,
                transaction_id,
                kind,
                category,
                amount,
                reason,
                reversed_by,
                reversed_at,
            } => json!({"id": reversal_id, "transaction_id": transaction_id, "kind": kind.as_str(),
                "category": category, "amount": money(&amount), "currency": currency, "reason": reason,
                "reversed_by": reversed_by, "reversed_at": reversed_at}),
            LedgerEvent::DebtCreated { debt, created_at } => json!({"id": debt.debt_id,
                "user_id": debt.user_id, "amount": money(&debt.amount), "currency": debt.currency,
                "reason": debt.reason, "source_ref": debt.source_ref, "created_by": debt.created_by,
                "created_at": created_at}),
            LedgerEvent::DebtPaymentRecorded {
                debt_id,
                payment_id,
                user_id,
                amount,
                outstanding_after,
                recorded_by,
                paid_at,
            } => json!({"debt_id": debt_id, "payment_id": payment_id, "user_id": user_id,
                "amount": money(&amount), "outstanding": money(&outstanding_after), "currency": currency,
                "recorded_by": recorded_by, "paid_at": paid_at}),
            LedgerEvent::DebtForgiven {
                debt_id,
                user_id,
                amount,
                reason,
                forgiven_by,
                forgiven_at,
            } => json!({"debt_id": debt_id, "user_id": user_id, "amount": money(&amount),
                "currency": currency, "reason": reason, "forgiven_by": forgiven_by, "forgiven_at": forgiven_at}),
            LedgerEvent::ThresholdSet {
                currency,
                threshold,
                set_by,
                at,
            } => json!({"currency": currency, "low_balance_threshold": money(&threshold),
                "updated_by": set_by, "updated_at": at}),
            LedgerEvent::LowBalanceDetected {
                currency,
                balance,
                threshold,
                detected_at,
            } => {
                json!({"currency": currency, "balance": money(&balance), "threshold": money(&threshold),
                "detected_at": detected_at})
            }
        },
    )
}
