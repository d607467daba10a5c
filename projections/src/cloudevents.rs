//! The CloudEvents 1.0 envelope of a stored event, as the audit feed serves it and the relay will
//! publish it: `id` (the event id, stable across redeliveries), `type` in the seed's naming,
//! `source` naming the service, `subject` the aggregate id.

use chrono::{DateTime, Utc};
use domain::chat::{ChatEvent, MessageEvent, OperationEvent, ProfileEvent};
use domain::tea::{AnnouncementEvent, ItemEvent};
use eventstore::StoredEvent;
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    pub subject: String,
    pub time: DateTime<Utc>,
    pub specversion: &'static str,
    pub datacontenttype: &'static str,
    pub data: Value,
}

/// Money inside events is stored as a string; on the wire it is a JSON number with its scale.
fn money(s: &str) -> Value {
    serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// The CloudEvent type of a stored event, from its stream and event type alone (no decoding):
/// lets a consumer skip what it does not want cheaply. Must agree with [`to_cloud_event`].
pub fn cloud_type(e: &StoredEvent) -> String {
    let known = match (e.aggregate_type.as_str(), e.event_type.as_str()) {
        ("item", "ItemCreated") => "inventory.item.created",
        ("item", "ItemUpdated") => "inventory.item.updated",
        ("item", "BatchReceived") => "inventory.restocked",
        ("item", "StockConsumed") => "inventory.consumed",
        ("item", "LowStockDetected") => "inventory.low_stock",
        ("item", "ThresholdSet") => "inventory.threshold.set",
        ("announcement", "AnnouncementPublished") => "inventory.announcement.published",
        ("profile", "ProfileSynced") => "user.profile.synced",
        ("chat", "ChatCreated") => "chat.created",
        ("chat", "ChatUpdated") => "chat.updated",
        ("chat", "MemberJoined") => "chat.member.joined",
        ("chat", "MemberLeft") => "chat.member.left",
        ("message", "MessagePosted") => "chat.message.created",
        ("message", "MessageDeleted") => "chat.message.deleted",
        ("message", "MessageEdited") => "chat.message.edited",
        ("message", "MessageExpired") => "chat.message.expired",
        ("chat", "SettingsChanged") => "chat.retention.updated",
        ("operation", "MessageSubmitted") => "chat.message.submitted",
        ("operation", "OperationCompleted") => "chat.operation.completed",
        ("operation", "OperationRejected") => "chat.operation.rejected",
        ("operation", "OperationExpired") => "chat.operation.expired",
        _ => "",
    };
    if known.is_empty() {
        format!("fafcab.{}.{}", e.aggregate_type, e.event_type)
    } else {
        known.to_string()
    }
}

pub fn to_cloud_event(e: &StoredEvent) -> CloudEvent {
    let (event_type, source, data) = map(e);
    CloudEvent {
        id: e.event_id.to_string(),
        event_type,
        source: source.to_string(),
        subject: e.aggregate_id.clone(),
        time: e.recorded_at,
        specversion: "1.0",
        datacontenttype: "application/json",
        data,
    }
}

fn map(e: &StoredEvent) -> (String, &'static str, Value) {
    let item_id = &e.aggregate_id;
    match e.aggregate_type.as_str() {
        "item" => match domain::codec::decode::<ItemEvent>(&e.event_type, e.payload.clone()) {
            Ok(ItemEvent::ItemCreated {
                spec, created_at, ..
            }) => (
                "inventory.item.created".into(),
                "tea-svc",
                json!({"item_id": item_id, "name": spec.name, "unit": spec.unit, "category": spec.category,
                       "sku": spec.sku, "active": spec.active, "track_expiry": spec.track_expiry,
                       "min_stock_qty": spec.min_stock_qty, "tags": spec.tags, "created_at": created_at}),
            ),
            Ok(ItemEvent::ItemUpdated {
                changes,
                updated_at,
            }) => (
                "inventory.item.updated".into(),
                "tea-svc",
                json!({"item_id": item_id, "changes": changes, "updated_at": updated_at}),
            ),
            Ok(ItemEvent::BatchReceived { batch }) => (
                "inventory.restocked".into(),
                "tea-svc",
                json!({"item_id": item_id, "batch_id": batch.batch_id, "qty": batch.qty_received,
                       "currency": batch.currency, "cost_total": money(&batch.cost_total.to_string()),
                       "expiry_date": batch.expiry_date}),
            ),
            Ok(ItemEvent::StockConsumed {
                consumption_id,
                qty,
                allocations,
                user_id,
                source,
                consumed_at,
                stock_after,
                ..
            }) => (
                "inventory.consumed".into(),
                "tea-svc",
                json!({"item_id": item_id, "consumption_id": consumption_id, "qty": qty,
                       "allocations": allocations, "user_id": user_id, "source": source,
                       "consumed_at": consumed_at, "stock_qty": stock_after}),
            ),
            Ok(ItemEvent::LowStockDetected {
                current_qty,
                threshold,
                ..
            }) => (
                "inventory.low_stock".into(),
                "tea-svc",
                json!({"item_id": item_id, "current_qty": current_qty, "threshold": threshold}),
            ),
            Ok(ItemEvent::ThresholdSet {
                threshold_id,
                min_qty,
                notify_config,
                ..
            }) => (
                "inventory.threshold.set".into(),
                "tea-svc",
                json!({"item_id": item_id, "threshold_id": threshold_id, "min_qty": min_qty,
                       "notify_config": notify_config}),
            ),
            Err(_) => fallback(e, "tea-svc"),
        },
        "announcement" => {
            match domain::codec::decode::<AnnouncementEvent>(&e.event_type, e.payload.clone()) {
                Ok(AnnouncementEvent::AnnouncementPublished { spec, .. }) => (
                    "inventory.announcement.published".into(),
                    "tea-svc",
                    json!({"announcement_id": spec.announcement_id, "title": spec.title, "body": spec.body,
                       "published_by": spec.published_by, "effective_from": spec.effective_from,
                       "item_ids": spec.item_ids}),
                ),
                Err(_) => fallback(e, "tea-svc"),
            }
        }
        "profile" => {
            match domain::codec::decode::<ProfileEvent>(&e.event_type, e.payload.clone()) {
                Ok(ProfileEvent::ProfileSynced { user_id, data, .. }) => (
                    "user.profile.synced".into(),
                    "user-svc",
                    json!({"user_id": user_id, "nickname": data.nickname, "avatar_url": data.avatar_url,
                       "roles": data.roles, "discord_id": data.discord_id}),
                ),
                Err(_) => fallback(e, "user-svc"),
            }
        }
        "chat" => {
            let chat_id = &e.aggregate_id;
            match domain::codec::decode::<ChatEvent>(&e.event_type, e.payload.clone()) {
                Ok(ChatEvent::ChatCreated {
                    kind,
                    name,
                    slug,
                    is_private,
                    created_by,
                    members,
                    ..
                }) => (
                    "chat.created".into(),
                    "chat-svc",
                    json!({"chat_id": chat_id, "type": kind.as_str(), "name": name, "slug": slug, "is_private": is_private,
                           "created_by": created_by, "member_ids": members.iter().map(|m| &m.user_id).collect::<Vec<_>>()}),
                ),
                Ok(ChatEvent::ChatUpdated {
                    name, is_private, ..
                }) => (
                    "chat.updated".into(),
                    "chat-svc",
                    json!({"chat_id": chat_id, "name": name, "is_private": is_private}),
                ),
                Ok(ChatEvent::MemberJoined { member }) => (
                    "chat.member.joined".into(),
                    "chat-svc",
                    json!({"chat_id": chat_id, "user_id": member.user_id, "role": member.role.as_str(), "joined_at": member.joined_at}),
                ),
                Ok(ChatEvent::MemberLeft { user_id, by, at }) => (
                    "chat.member.left".into(),
                    "chat-svc",
                    json!({"chat_id": chat_id, "user_id": user_id, "removed_by": by, "left_at": at}),
                ),
                Ok(ChatEvent::SettingsChanged { settings, by, at }) => (
                    "chat.retention.updated".into(),
                    "chat-svc",
                    json!({"chat_id": chat_id, "retention_days": settings.retention_days, "post_policy": settings.post_policy,
                           "extra": settings.extra, "updated_by": by, "updated_at": at}),
                ),
                Err(_) => fallback(e, "chat-svc"),
            }
        }
        "message" => {
            match domain::codec::decode::<MessageEvent>(&e.event_type, e.payload.clone()) {
                Ok(MessageEvent::MessagePosted {
                    submission,
                    created_at,
                }) => (
                    "chat.message.created".into(),
                    "chat-svc",
                    json!({"chat_id": submission.chat_id, "msg_id": e.aggregate_id, "author_id": submission.author_id,
                       "created_at": created_at}),
                ),
                Ok(MessageEvent::MessageEdited { at, .. }) => (
                    "chat.message.edited".into(),
                    "chat-svc",
                    json!({"msg_id": e.aggregate_id, "edited_at": at}),
                ),
                Ok(MessageEvent::MessageDeleted { by, at }) => (
                    "chat.message.deleted".into(),
                    "chat-svc",
                    json!({"msg_id": e.aggregate_id, "deleted_by": by, "deleted_at": at}),
                ),
                Ok(MessageEvent::MessageExpired { retention_days, at }) => (
                    "chat.message.expired".into(),
                    "chat-svc",
                    json!({"msg_id": e.aggregate_id, "retention_days": retention_days, "expired_at": at}),
                ),
                Err(_) => fallback(e, "chat-svc"),
            }
        }
        // The text of a message is not repeated on the bus: only who submitted what, where.
        "operation" => {
            match domain::codec::decode::<OperationEvent>(&e.event_type, e.payload.clone()) {
                Ok(OperationEvent::MessageSubmitted { submission, .. }) => (
                    "chat.message.submitted".into(),
                    "chat-svc",
                    json!({"operation_id": e.aggregate_id, "chat_id": submission.chat_id, "author_id": submission.author_id}),
                ),
                Ok(OperationEvent::OperationCompleted { message_id, .. }) => (
                    "chat.operation.completed".into(),
                    "chat-svc",
                    json!({"operation_id": e.aggregate_id, "message_id": message_id}),
                ),
                Ok(OperationEvent::OperationRejected { error, .. }) => (
                    "chat.operation.rejected".into(),
                    "chat-svc",
                    json!({"operation_id": e.aggregate_id, "error": error}),
                ),
                Ok(OperationEvent::OperationExpired { at }) => (
                    "chat.operation.expired".into(),
                    "chat-svc",
                    json!({"operation_id": e.aggregate_id, "expired_at": at}),
                ),
                Err(_) => fallback(e, "chat-svc"),
            }
        }
        _ => fallback(e, "fafcab"),
    }
}

/// An event this version does not know how to present: still delivered, under a generic type.
fn fallback(e: &StoredEvent, source: &'static str) -> (String, &'static str, Value) {
    (
        format!("fafcab.{}.{}", e.aggregate_type, e.event_type),
        source,
        e.payload.clone(),
    )
}
