//! The notification sink and inbox (seed 000 §10, seed 003's notification API): each event that
//! leaves the system is routed to its audience (everyone, a role, or a user) and stored once per
//! audience, deduplicated by CloudEvent id. A user's inbox is everything addressed to them, to one
//! of their roles, or to everyone, minus what they deleted.
//!
//! Routing table (keep README's copy in step):
//!
//! | event type                          | audience            |
//! |-------------------------------------|---------------------|
//! | `inventory.low_stock`               | role `admin`        |
//! | `inventory.restocked`               | everyone            |
//! | `inventory.announcement.published`  | everyone            |
//! | `budget.low_balance`                | role `admin`        |
//! | `chat.moderation.sanction.applied`  | the sanctioned user, role `admin` |
//! | `chat.message.flagged`              | role `admin`        |
//! | `fundraising.campaign.started`      | everyone            |
//! | `fundraising.campaign.completed`    | everyone            |
//! | `sharing.damage.reported`           | the user who owes the cost |
//! | anything else                       | nobody              |

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::inbox::InboxEvent;
use eventstore::{db_fetch_all, db_fetch_optional, tx_exec, Db, EventStore, StoredEvent, Tx};
use serde_json::Value;
use uuid::Uuid;

use super::{Incoming, Outcome, Sink};
use crate::page::Page;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    User(String),
    Role(&'static str),
    All,
}

impl Audience {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            Audience::User(u) => ("user", u.as_str()),
            Audience::Role(r) => ("role", r),
            Audience::All => ("all", "*"),
        }
    }
}

/// Who hears about an event of this type.
pub fn route(event_type: &str, data: &Value) -> Vec<Audience> {
    match event_type {
        "inventory.low_stock" | "budget.low_balance" | "chat.message.flagged" => {
            vec![Audience::Role("admin")]
        }
        "inventory.restocked" | "inventory.announcement.published" => vec![Audience::All],
        "chat.moderation.sanction.applied" => {
            let mut out = vec![Audience::Role("admin")];
            if let Some(u) = data["user_id"].as_str() {
                out.push(Audience::User(u.to_string()));
            }
            out
        }
        "fundraising.campaign.started" | "fundraising.campaign.completed" => vec![Audience::All],
        // The user who owes the damage's cost.
        "sharing.damage.reported" => data["user_id"]
            .as_str()
            .map(|u| vec![Audience::User(u.to_string())])
            .unwrap_or_default(),
        _ => vec![],
    }
}

pub struct NotificationSink {
    db: Db,
}

impl NotificationSink {
    pub fn new(store: &EventStore) -> Self {
        Self { db: store.db() }
    }

    async fn texts(&self, event_type: &str, data: &Value) -> (String, String) {
        super::describe(&self.db, event_type, data).await
    }
}

/// Strictly increasing per process: the inbox's order and pagination key.
fn next_seq() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Utc::now().timestamp_micros();
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

#[async_trait]
impl Sink for NotificationSink {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn bindings(&self) -> Vec<String> {
        vec!["#".into()]
    }

    fn wants(&self, event_type: &str) -> bool {
        !route(event_type, &Value::Null).is_empty()
            || matches!(
                event_type,
                "chat.moderation.sanction.applied" | "sharing.damage.reported"
            )
    }

    async fn handle(&self, msg: &Incoming) -> Outcome {
        let data = &msg.body["data"];
        let audiences = route(&msg.event_type, data);
        if audiences.is_empty() || msg.id.is_empty() {
            return Outcome::Done;
        }
        let (title, body) = self.texts(&msg.event_type, data).await;
        let created_at = msg.body["time"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(Utc::now);
        let result: anyhow::Result<()> = async {
            let mut tx = self.db.begin().await?;
            for a in &audiences {
                let (kind, who) = a.parts();
                tx_exec!(
                    &mut tx,
                    "INSERT INTO notifications (id, event_id, audience_kind, audience, type, title, body, data, created_at, seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (event_id, audience_kind, audience) DO NOTHING",
                    Uuid::now_v7().to_string(),
                    &msg.id,
                    kind,
                    who,
                    &msg.event_type,
                    &title,
                    &body,
                    data.to_string(),
                    created_at,
                    next_seq()
                )?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Outcome::Done,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot store a notification; retrying"
                );
                Outcome::Retry(Duration::from_secs(1))
            }
        }
    }
}

// ---------- the inbox read side ----------

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct NotificationRow {
    pub id: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub body: String,
    #[serde(skip)]
    pub data: String,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub seq: i64,
}

/// Who is asking: their user id and the roles of their token (at most the five known roles).
pub struct Reader<'a> {
    pub user_id: &'a str,
    pub roles: Vec<String>,
}

impl Reader<'_> {
    fn role(&self, i: usize) -> Option<String> {
        self.roles.get(i).cloned()
    }
}

const VISIBLE: &str = "((n.audience_kind = 'user' AND n.audience = $1) OR n.audience_kind = 'all' \
     OR (n.audience_kind = 'role' AND n.audience IN ($2, $3, $4, $5, $6))) \
     AND NOT EXISTS (SELECT 1 FROM notification_deletions d WHERE d.notification_id = n.id AND d.user_id = $1)";

pub async fn list(
    db: &Db,
    r: &Reader<'_>,
    unread_only: bool,
    page: Page,
) -> sqlx::Result<(Vec<NotificationRow>, Option<String>)> {
    let sql = format!(
        "SELECT n.id, n.event_id, n.type AS kind, n.title, n.body, n.data, n.created_at, rd.read_at, n.seq \
         FROM notifications n LEFT JOIN notification_reads rd ON rd.notification_id = n.id AND rd.user_id = $1 \
         WHERE {VISIBLE} AND ($7 IS NULL OR rd.read_at IS NULL) AND ($8 = 0 OR n.seq < $8) \
         ORDER BY n.seq DESC LIMIT $9"
    );
    let mut rows = db_fetch_all!(
        db,
        NotificationRow,
        &sql,
        r.user_id,
        r.role(0),
        r.role(1),
        r.role(2),
        r.role(3),
        r.role(4),
        unread_only.then_some(true),
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |n| n.seq);
    Ok((rows, next))
}

/// Up to `limit` notifications the reader sees with `seq > after`, oldest first (for the live
/// `notifications` subscription).
pub async fn list_since(
    db: &Db,
    r: &Reader<'_>,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<NotificationRow>> {
    let sql = format!(
        "SELECT n.id, n.event_id, n.type AS kind, n.title, n.body, n.data, n.created_at, rd.read_at, n.seq \
         FROM notifications n LEFT JOIN notification_reads rd ON rd.notification_id = n.id AND rd.user_id = $1 \
         WHERE {VISIBLE} AND n.seq > $7 ORDER BY n.seq LIMIT $8"
    );
    db_fetch_all!(
        db,
        NotificationRow,
        &sql,
        r.user_id,
        r.role(0),
        r.role(1),
        r.role(2),
        r.role(3),
        r.role(4),
        after,
        limit.clamp(1, 200)
    )
}

pub async fn get(db: &Db, r: &Reader<'_>, id: &str) -> sqlx::Result<Option<NotificationRow>> {
    let sql = format!(
        "SELECT n.id, n.event_id, n.type AS kind, n.title, n.body, n.data, n.created_at, rd.read_at, n.seq \
         FROM notifications n LEFT JOIN notification_reads rd ON rd.notification_id = n.id AND rd.user_id = $1 \
         WHERE {VISIBLE} AND n.id = $7"
    );
    db_fetch_optional!(
        db,
        NotificationRow,
        &sql,
        r.user_id,
        r.role(0),
        r.role(1),
        r.role(2),
        r.role(3),
        r.role(4),
        id
    )
}

#[derive(sqlx::FromRow)]
struct Count {
    n: i64,
}

pub async fn unread_count(db: &Db, r: &Reader<'_>) -> sqlx::Result<i64> {
    let sql = format!(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM notifications n WHERE {VISIBLE} \
         AND NOT EXISTS (SELECT 1 FROM notification_reads rd WHERE rd.notification_id = n.id AND rd.user_id = $1)"
    );
    let c = db_fetch_optional!(
        db,
        Count,
        &sql,
        r.user_id,
        r.role(0),
        r.role(1),
        r.role(2),
        r.role(3),
        r.role(4)
    )?;
    Ok(c.map(|c| c.n).unwrap_or(0))
}

#[derive(sqlx::FromRow)]
struct MaxSeq {
    s: Option<i64>,
}

/// The newest notification's key, so "read all" covers exactly what exists now.
pub async fn max_seq(db: &Db) -> sqlx::Result<i64> {
    let m = db_fetch_optional!(db, MaxSeq, "SELECT MAX(seq) AS s FROM notifications")?;
    Ok(m.and_then(|m| m.s).unwrap_or(0))
}

/// Applies the users' inbox events to the read and deletion tables.
pub struct InboxProjection;

impl InboxProjection {
    /// The projection's name: its checkpoint, and what read-your-writes waits on.
    pub const NAME: &'static str = "inbox";
}

#[async_trait]
impl crate::Projection for InboxProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&[<domain::inbox::Inbox as domain::Aggregate>::TYPE])
    }

    async fn apply(&self, tx: &mut Tx, e: &StoredEvent) -> anyhow::Result<()> {
        if e.aggregate_type != "inbox" {
            return Ok(());
        }
        let user = e.aggregate_id.clone();
        match domain::codec::decode::<InboxEvent>(&e.event_type, e.payload.clone())? {
            InboxEvent::NotificationRead {
                notification_id,
                at,
            } => {
                tx_exec!(
                    tx,
                    "INSERT INTO notification_reads (notification_id, user_id, read_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    notification_id,
                    user,
                    at
                )?;
            }
            InboxEvent::NotificationDeleted {
                notification_id,
                at,
            } => {
                tx_exec!(
                    tx,
                    "INSERT INTO notification_deletions (notification_id, user_id, deleted_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    notification_id,
                    user,
                    at
                )?;
            }
            InboxEvent::AllNotificationsRead {
                roles,
                up_to_seq,
                at,
            } => {
                let role = |i: usize| roles.get(i).cloned();
                let sql = format!(
                    "INSERT INTO notification_reads (notification_id, user_id, read_at) \
                     SELECT n.id, $1, $7 FROM notifications n WHERE {VISIBLE} AND n.seq <= $8 \
                     ON CONFLICT DO NOTHING"
                );
                tx_exec!(
                    tx,
                    &sql,
                    &user,
                    role(0),
                    role(1),
                    role(2),
                    role(3),
                    role(4),
                    at,
                    up_to_seq
                )?;
            }
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut Tx) -> anyhow::Result<()> {
        tx_exec!(tx, "DELETE FROM notification_reads")?;
        tx_exec!(tx, "DELETE FROM notification_deletions")?;
        Ok(())
    }
}
