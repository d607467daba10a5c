//! Reads of sanctions, reactions, reports and notices, and message search.

use chrono::{DateTime, Utc};
use eventstore::{db_fetch_all, db_fetch_optional, Db};

use super::queries::MessageRow;
use crate::page::Page;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SanctionRow {
    pub id: String,
    pub user_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub scope: String,
    pub chat_id: Option<String>,
    pub reason: Option<String>,
    pub applied_by: String,
    pub applied_at: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    pub seq: i64,
}

const SANCTION_COLUMNS: &str =
    "s.id, s.user_id, s.type, s.scope, s.chat_id, s.reason, s.applied_by, s.applied_at, s.until, \
     s.revoked_at, s.revoked_by, s.seq";

pub async fn sanction(db: &Db, id: &str) -> sqlx::Result<Option<SanctionRow>> {
    db_fetch_optional!(
        db,
        SanctionRow,
        &format!("SELECT {SANCTION_COLUMNS} FROM chat_sanctions s WHERE s.id = $1"),
        id
    )
}

/// Active sanctions (not revoked, not expired at `now`) the caller may see: all of them for an
/// admin (`viewer` None); otherwise their own and those of chats they own or moderate.
pub async fn active_sanctions(
    db: &Db,
    viewer: Option<&str>,
    user_id: Option<&str>,
    now: DateTime<Utc>,
    page: Page,
) -> sqlx::Result<(Vec<SanctionRow>, Option<String>)> {
    let mut rows = db_fetch_all!(
        db,
        SanctionRow,
        &format!(
            "SELECT {SANCTION_COLUMNS} FROM chat_sanctions s WHERE s.revoked_at IS NULL \
             AND (s.until IS NULL OR s.until > $1) AND ($2 IS NULL OR s.user_id = $2) \
             AND ($3 IS NULL OR s.user_id = $3 OR EXISTS (SELECT 1 FROM chat_members m WHERE m.chat_id = s.chat_id \
                  AND m.user_id = $3 AND m.left_at IS NULL AND m.role IN ('owner', 'moderator'))) \
             AND s.seq > $4 ORDER BY s.seq LIMIT $5"
        ),
        now,
        user_id.map(str::to_string),
        viewer.map(str::to_string),
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReactionRow {
    pub id: String,
    pub message_id: String,
    pub user_id: String,
    pub emoji: String,
    pub created_at: DateTime<Utc>,
}

/// The reactions of these messages (at most one page of messages, so a bounded IN list).
pub async fn reactions_of(db: &Db, message_ids: &[String]) -> sqlx::Result<Vec<ReactionRow>> {
    if message_ids.is_empty() {
        return Ok(vec![]);
    }
    let list = (1..=message_ids.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT id, message_id, user_id, emoji, created_at FROM chat_reactions WHERE message_id IN ({list}) \
         ORDER BY created_at, id"
    );
    match db {
        Db::Pg(p) => {
            let mut q = sqlx::query_as::<_, ReactionRow>(&sql);
            for id in message_ids {
                q = q.bind(id);
            }
            q.fetch_all(p).await
        }
        Db::Sqlite { read: p, .. } => {
            let mut q = sqlx::query_as::<_, ReactionRow>(&sql);
            for id in message_ids {
                q = q.bind(id);
            }
            q.fetch_all(p).await
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReportRow {
    pub id: String,
    pub reporter_id: String,
    pub message_id: Option<String>,
    pub chat_id: Option<String>,
    pub reported_user_id: Option<String>,
    pub reason: String,
    #[sqlx(try_from = "crate::stored::JsonText")]
    pub evidence: Vec<String>,
    pub status: String,
    pub resolution_notes: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub seq: i64,
}

const REPORT_COLUMNS: &str =
    "id, reporter_id, message_id, chat_id, reported_user_id, reason, evidence, status, \
     resolution_notes, created_at, updated_at, seq";

pub async fn report(db: &Db, id: &str) -> sqlx::Result<Option<ReportRow>> {
    db_fetch_optional!(
        db,
        ReportRow,
        &format!("SELECT {REPORT_COLUMNS} FROM chat_reports WHERE id = $1"),
        id
    )
}

pub async fn reports(
    db: &Db,
    status: Option<&str>,
    page: Page,
) -> sqlx::Result<(Vec<ReportRow>, Option<String>)> {
    let mut rows = db_fetch_all!(
        db,
        ReportRow,
        &format!(
            "SELECT {REPORT_COLUMNS} FROM chat_reports WHERE ($1 IS NULL OR status = $1) AND seq > $2 \
             ORDER BY seq LIMIT $3"
        ),
        status.map(str::to_string),
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NoticeRow {
    pub id: String,
    pub title: String,
    pub body: String,
    pub created_by: String,
    pub chat_ids: String,
    pub roles: String,
    pub created_at: DateTime<Utc>,
}

pub async fn notice(db: &Db, id: &str) -> sqlx::Result<Option<NoticeRow>> {
    db_fetch_optional!(
        db,
        NoticeRow,
        "SELECT id, title, body, created_by, chat_ids, roles, created_at FROM chat_notices WHERE id = $1",
        id
    )
}

/// Words of a search query: letters, digits and inner apostrophes/dashes only, at most 16 of them,
/// so the text handed to the full-text engines carries no syntax of theirs.
pub fn search_terms(q: &str) -> Vec<String> {
    q.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .take(16)
        .map(str::to_lowercase)
        .collect()
}

/// Full-text search over the messages of chats `user_id` can read (member of, or public; all for
/// an admin), newest first; deleted messages and those past retention are not found. PostgreSQL full-text search on
/// PostgreSQL (`simple` configuration), FTS5 on SQLite. Every term must occur.
pub async fn search_messages(
    db: &Db,
    terms: &[String],
    chat_id: Option<&str>,
    user_id: &str,
    admin: bool,
    page: Page,
) -> sqlx::Result<(Vec<MessageRow>, Option<String>)> {
    const COLUMNS: &str = "cm.id, cm.chat_id, cm.type, cm.author_id, cm.text, cm.metadata, cm.attachments, \
         cm.created_at, cm.edited_at, cm.deleted_at, cm.filtered, cm.filter_matches, cm.flagged_at, cm.seq";
    let readable = "EXISTS (SELECT 1 FROM chats c WHERE c.id = cm.chat_id AND (c.is_private = $3 OR $4 OR EXISTS \
         (SELECT 1 FROM chat_members m WHERE m.chat_id = c.id AND m.user_id = $2 AND m.left_at IS NULL)))";
    let (query, matcher) = if db.is_pg() {
        (
            terms.join(" & "),
            "to_tsvector('simple', cm.text) @@ to_tsquery('simple', $1)",
        )
    } else {
        (
            terms
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(" AND "),
            "cm.rowid IN (SELECT rowid FROM chat_messages_fts WHERE chat_messages_fts MATCH $1)",
        )
    };
    // Past the chat's retention a message is not found, even before the job removed it.
    let live = super::retention::live_sql(db.is_pg(), "cm");
    let sql = format!(
        "SELECT {COLUMNS} FROM chat_messages cm WHERE {matcher} AND cm.deleted_at IS NULL AND {live} AND {readable} \
         AND ($5 IS NULL OR cm.chat_id = $5) AND ($6 = 0 OR cm.seq < $6) ORDER BY cm.seq DESC LIMIT $7"
    );
    let mut rows = db_fetch_all!(
        db,
        MessageRow,
        &sql,
        query,
        user_id,
        false,
        admin,
        chat_id.map(str::to_string),
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}
