//! Retention on the read side: a message older than its chat's `retention_days` is never served,
//! even before the retention job expired it (and the job then deletes its row).
//!
//! Any query over `chat_messages` (listing, one message, search) appends [`live_sql`] to its
//! `WHERE`; it needs no parameter.

use chrono::{DateTime, Duration, Utc};
use eventstore::{db_fetch_all, Db};

/// A SQL condition, true while the message row `messages` (the table name or its alias) is within
/// its chat's retention period at the database's current time. Valid on both backends.
pub fn live_sql(is_pg: bool, messages: &str) -> String {
    let days = format!("(SELECT r.retention_days FROM chats r WHERE r.id = {messages}.chat_id)");
    if is_pg {
        format!("{messages}.created_at >= now() - make_interval(days => COALESCE({days}, 90)::int)")
    } else {
        // sqlx stores times as RFC 3339 text, which julianday() reads (to the millisecond).
        format!("julianday({messages}.created_at) >= julianday('now') - COALESCE({days}, 90)")
    }
}

/// Messages created before this instant are expired.
pub fn cutoff(retention_days: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::days(retention_days)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChatRetention {
    pub id: String,
    pub retention_days: i64,
}

/// Chats with their retention period, by id after `after_id`, at most `limit`.
pub async fn chats(db: &Db, after_id: &str, limit: i64) -> sqlx::Result<Vec<ChatRetention>> {
    db_fetch_all!(
        db,
        ChatRetention,
        "SELECT id, retention_days FROM chats WHERE id > $1 ORDER BY id LIMIT $2",
        after_id,
        limit
    )
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExpiredMessage {
    pub id: String,
    pub seq: i64,
}

/// Messages of `chat_id` created before `cutoff`, in log order after `after_seq`, at most `limit`.
pub async fn expired_messages(
    db: &Db,
    chat_id: &str,
    cutoff: DateTime<Utc>,
    after_seq: i64,
    limit: i64,
) -> sqlx::Result<Vec<ExpiredMessage>> {
    db_fetch_all!(
        db,
        ExpiredMessage,
        "SELECT id, seq FROM chat_messages WHERE chat_id = $1 AND created_at < $2 AND seq > $3 \
         ORDER BY seq LIMIT $4",
        chat_id,
        cutoff,
        after_seq,
        limit
    )
}

/// Rejected submissions to `chat_id` made before `cutoff` (their text is still in the log), by id
/// after `after_id`, at most `limit`.
pub async fn expired_rejections(
    db: &Db,
    chat_id: &str,
    cutoff: DateTime<Utc>,
    after_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<String>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: String,
    }
    Ok(db_fetch_all!(
        db,
        Row,
        "SELECT id FROM chat_operations WHERE chat_id = $1 AND status = 'rejected' AND created_at < $2 \
         AND id > $3 ORDER BY id LIMIT $4",
        chat_id,
        cutoff,
        after_id,
        limit
    )?
    .into_iter()
    .map(|r| r.id)
    .collect())
}
