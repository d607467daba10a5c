//! The CloudEvents 1.0 envelope of a stored event, as the audit feed serves it and the relay will
//! publish it: `id` (the event id, stable across redeliveries), `type` in the seed's naming,
//! `source` naming the service, `subject` the aggregate id.

use chrono::{DateTime, Utc};
use domain::chat::{
    ChatEvent, FilterEvent, MessageEvent, ModerationEvent, NoticeEvent, OperationEvent,
    ProfileEvent, ReportEvent,
};
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
/// lets a consumer skip what it does not want cheaply. [`to_cloud_event`] takes its type from here.
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
        ("message", "MessageFlagged") => "chat.message.flagged",
        ("message", "ReactionAdded") => "chat.reaction.added",
        ("message", "ReactionRemoved") => "chat.reaction.removed",
        ("moderation", "SanctionApplied") => "chat.moderation.sanction.applied",
        ("moderation", "SanctionRevoked") => "chat.moderation.sanction.revoked",
        ("filters", "FiltersReplaced") => "chat.moderation.filters.replaced",
        ("report", "ReportFiled") => "chat.report.filed",
        ("report", "ReportStatusChanged") => "chat.report.updated",
        ("notice", "NoticeBroadcast") => "chat.notice.published",
        ("message", "MessageExpired") => "chat.message.expired",
        ("chat", "SettingsChanged") => "chat.retention.updated",
        ("operation", "MessageSubmitted") => "chat.message.submitted",
        ("operation", "OperationCompleted") => "chat.operation.completed",
        ("operation", "OperationRejected") => "chat.operation.rejected",
        ("operation", "OperationExpired") => "chat.operation.expired",
        ("read_position", "ReadPositionMoved") => "chat.read.update",
        ("budget_ledger", "TransactionRecorded") => "budget.transaction.recorded",
        ("budget_ledger", "TransactionReversed") => "budget.transaction.reversed",
        ("budget_ledger", "DebtCreated") => "budget.debt.created",
        ("budget_ledger", "DebtPaymentRecorded") => "budget.debt.payment.recorded",
        ("budget_ledger", "DebtForgiven") => "budget.debt.forgiven",
        ("budget_ledger", "ThresholdSet") => "budget.settings.updated",
        ("budget_ledger", "LowBalanceDetected") => "budget.low_balance",
        _ => "",
    };
    if known.is_empty() {
        format!("fafcab.{}.{}", e.aggregate_type, e.event_type)
    } else {
        known.to_string()
    }
}

/// The service an event's stream belongs to.
pub fn source_of(aggregate_type: &str) -> &'static str {
    match aggregate_type {
        "item" | "announcement" => "tea-svc",
        "profile" => "user-svc",
        "chat" | "message" | "operation" | "moderation" | "filters" | "report" | "notice"
        | "read_position" => "chat-svc",
        "budget_ledger" => "budget-svc",
        _ => "fafcab",
    }
}

pub fn to_cloud_event(e: &StoredEvent) -> CloudEvent {
    // An event this version cannot decode is still delivered, under a generic type.
    let (event_type, data) = match map(e) {
        Some(data) => (cloud_type(e), data),
        None => (
            format!("fafcab.{}.{}", e.aggregate_type, e.event_type),
            e.payload.clone(),
        ),
    };
    CloudEvent {
        id: e.event_id.to_string(),
        event_type,
        source: source_of(&e.aggregate_type).to_string(),
        subject: e.aggregate_id.clone(),
        time: e.recorded_at,
        specversion: "1.0",
        datacontenttype: "application/json",
        data,
    }
}

/// The seed-shaped `data` of a stored event; None when this version cannot decode it.
fn map(e: &StoredEvent) -> Option<Value> {
    let item_id = &e.aggregate_id;
    Some(match e.aggregate_type.as_str() {
        "item" => match domain::codec::decode::<ItemEvent>(&e.event_type, e.payload.clone()) {
            Ok(ItemEvent::ItemCreated {
                spec, created_at, ..
            }) => {
                json!({"item_id": item_id, "name": spec.name, "unit": spec.unit, "category": spec.category,
                       "sku": spec.sku, "active": spec.active, "track_expiry": spec.track_expiry,
                       "min_stock_qty": spec.min_stock_qty, "tags": spec.tags, "created_at": created_at})
            }
            Ok(ItemEvent::ItemUpdated {
                changes,
                updated_at,
            }) => json!({"item_id": item_id, "changes": changes, "updated_at": updated_at}),
            Ok(ItemEvent::BatchReceived { batch }) => {
                json!({"item_id": item_id, "batch_id": batch.batch_id, "qty": batch.qty_received,
                       "currency": batch.currency, "cost_total": money(&batch.cost_total.to_string()),
                       "expiry_date": batch.expiry_date})
            }
            Ok(ItemEvent::StockConsumed {
                consumption_id,
                qty,
                allocations,
                user_id,
                source,
                consumed_at,
                stock_after,
                ..
            }) => json!({"item_id": item_id, "consumption_id": consumption_id, "qty": qty,
                       "allocations": allocations, "user_id": user_id, "source": source,
                       "consumed_at": consumed_at, "stock_qty": stock_after}),
            Ok(ItemEvent::LowStockDetected {
                current_qty,
                threshold,
                ..
            }) => json!({"item_id": item_id, "current_qty": current_qty, "threshold": threshold}),
            Ok(ItemEvent::ThresholdSet {
                threshold_id,
                min_qty,
                notify_config,
                ..
            }) => json!({"item_id": item_id, "threshold_id": threshold_id, "min_qty": min_qty,
                       "notify_config": notify_config}),
            Err(_) => return None,
        },
        "announcement" => {
            match domain::codec::decode::<AnnouncementEvent>(&e.event_type, e.payload.clone()) {
                Ok(AnnouncementEvent::AnnouncementPublished { spec, .. }) => {
                    json!({"announcement_id": spec.announcement_id, "title": spec.title, "body": spec.body,
                       "published_by": spec.published_by, "effective_from": spec.effective_from,
                       "item_ids": spec.item_ids})
                }
                Err(_) => return None,
            }
        }
        "profile" => {
            match domain::codec::decode::<ProfileEvent>(&e.event_type, e.payload.clone()) {
                Ok(ProfileEvent::ProfileSynced { user_id, data, .. }) => {
                    json!({"user_id": user_id, "nickname": data.nickname, "avatar_url": data.avatar_url,
                       "roles": data.roles, "discord_id": data.discord_id})
                }
                Err(_) => return None,
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
                }) => {
                    json!({"chat_id": chat_id, "type": kind.as_str(), "name": name, "slug": slug, "is_private": is_private,
                           "created_by": created_by, "member_ids": members.iter().map(|m| &m.user_id).collect::<Vec<_>>()})
                }
                Ok(ChatEvent::ChatUpdated {
                    name, is_private, ..
                }) => json!({"chat_id": chat_id, "name": name, "is_private": is_private}),
                Ok(ChatEvent::MemberJoined { member }) => {
                    json!({"chat_id": chat_id, "user_id": member.user_id, "role": member.role.as_str(), "joined_at": member.joined_at})
                }
                Ok(ChatEvent::MemberLeft { user_id, by, at }) => {
                    json!({"chat_id": chat_id, "user_id": user_id, "removed_by": by, "left_at": at})
                }
                Ok(ChatEvent::SettingsChanged { settings, by, at }) => {
                    json!({"chat_id": chat_id, "retention_days": settings.retention_days, "post_policy": settings.post_policy,
                           "extra": settings.extra, "updated_by": by, "updated_at": at})
                }
                Err(_) => return None,
            }
        }
        "message" => {
            match domain::codec::decode::<MessageEvent>(&e.event_type, e.payload.clone()) {
                Ok(MessageEvent::MessagePosted {
                    submission,
                    created_at,
                }) => {
                    json!({"chat_id": submission.chat_id, "msg_id": e.aggregate_id, "author_id": submission.author_id,
                       "created_at": created_at})
                }
                Ok(MessageEvent::MessageEdited { at, .. }) => {
                    json!({"msg_id": e.aggregate_id, "edited_at": at})
                }
                Ok(MessageEvent::MessageDeleted { by, at }) => {
                    json!({"msg_id": e.aggregate_id, "deleted_by": by, "deleted_at": at})
                }
                Ok(MessageEvent::MessageFlagged {
                    chat_id,
                    author_id,
                    matches,
                    at,
                }) => json!({"chat_id": chat_id, "msg_id": e.aggregate_id, "author_id": author_id,
                       "matches": matches, "flagged_at": at}),
                Ok(MessageEvent::ReactionAdded { reaction: r }) => {
                    json!({"msg_id": e.aggregate_id, "reaction_id": r.id,
                       "user_id": r.user_id, "emoji": r.emoji, "created_at": r.created_at})
                }
                Ok(MessageEvent::ReactionRemoved {
                    reaction_id,
                    user_id,
                    emoji,
                    at,
                }) => {
                    json!({"msg_id": e.aggregate_id, "reaction_id": reaction_id, "user_id": user_id,
                       "emoji": emoji, "removed_at": at})
                }
                Ok(MessageEvent::MessageExpired { retention_days, at }) => {
                    json!({"msg_id": e.aggregate_id, "retention_days": retention_days, "expired_at": at})
                }
                Err(_) => return None,
            }
        }
        "moderation" => {
            match domain::codec::decode::<ModerationEvent>(&e.event_type, e.payload.clone()) {
                Ok(ModerationEvent::SanctionApplied { sanction: s }) => json!({"sanction_id": s.id,
                       "user_id": s.user_id, "type": s.kind.as_str(), "scope": s.scope.as_str(),
                       "chat_id": s.chat_id, "until": s.until, "applied_by": s.applied_by, "reason": s.reason}),
                Ok(ModerationEvent::SanctionRevoked {
                    sanction_id,
                    by,
                    at,
                }) => {
                    json!({"sanction_id": sanction_id, "revoked_by": by, "revoked_at": at})
                }
                Err(_) => return None,
            }
        }
        "filters" => match domain::codec::decode::<FilterEvent>(&e.event_type, e.payload.clone()) {
            Ok(FilterEvent::FiltersReplaced {
                phrases, version, ..
            }) => json!({"version": version, "phrase_count": phrases.len()}),
            Err(_) => return None,
        },
        "report" => match domain::codec::decode::<ReportEvent>(&e.event_type, e.payload.clone()) {
            Ok(ReportEvent::ReportFiled { report: r, .. }) => json!({"report_id": r.id,
                   "reporter_id": r.reporter_id, "message_id": r.message_id, "chat_id": r.chat_id,
                   "reported_user_id": r.reported_user_id, "reason": r.reason}),
            Ok(ReportEvent::ReportStatusChanged { status, by, .. }) => {
                json!({"report_id": e.aggregate_id, "status": status.as_str(), "by": by})
            }
            Err(_) => return None,
        },
        "notice" => match domain::codec::decode::<NoticeEvent>(&e.event_type, e.payload.clone()) {
            Ok(NoticeEvent::NoticeBroadcast { notice: n, .. }) => json!({"notice_id": n.id,
                   "title": n.title, "body": n.body, "chat_ids": n.chat_ids, "roles": n.roles,
                   "created_by": n.created_by}),
            Err(_) => return None,
        },
        // The text of a message is not repeated on the bus: only who submitted what, where.
        "operation" => {
            match domain::codec::decode::<OperationEvent>(&e.event_type, e.payload.clone()) {
                Ok(OperationEvent::MessageSubmitted { submission, .. }) => {
                    json!({"operation_id": e.aggregate_id, "chat_id": submission.chat_id, "author_id": submission.author_id})
                }
                Ok(OperationEvent::OperationCompleted { message_id, .. }) => {
                    json!({"operation_id": e.aggregate_id, "message_id": message_id})
                }
                Ok(OperationEvent::OperationRejected { error, .. }) => {
                    json!({"operation_id": e.aggregate_id, "error": error})
                }
                Ok(OperationEvent::OperationExpired { at }) => {
                    json!({"operation_id": e.aggregate_id, "expired_at": at})
                }
                Err(_) => return None,
            }
        }
        "budget_ledger" => crate::budget::cloud_data(e)?,
        "read_position" => {
            match domain::codec::decode::<domain::chat::ReadEvent>(&e.event_type, e.payload.clone())
            {
                Ok(domain::chat::ReadEvent::ReadPositionMoved {
                    chat_id,
                    user_id,
                    message_id,
                    at,
                    ..
                }) => {
                    json!({"chat_id": chat_id, "user_id": user_id, "last_read_message_id": message_id, "last_read_at": at})
                }
                Err(_) => return None,
            }
        }
        _ => return None,
    })
}
