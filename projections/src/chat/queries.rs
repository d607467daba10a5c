//! Reads of profiles, chats and memberships. Privacy lives here too: a private chat is only ever
//! returned to its members and to admins.

use chrono::{DateTime, Utc};
use eventstore::{db_fetch_all, db_fetch_optional, Db};

use crate::page::Page;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProfileRow {
    pub user_id: String,
    pub nickname: String,
    pub avatar_url: Option<String>,
    #[sqlx(try_from = "crate::stored::JsonText")]
    pub roles: Vec<String>,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChatRow {
    pub id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub name: Option<String>,
    pub slug: Option<String>,
    pub is_private: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub member_count: i64,
    #[sqlx(try_from = "crate::stored::JsonText")]
    pub settings: serde_json::Value,
    pub seq: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub membership_id: String,
    pub user_id: String,
    pub role: String,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
}

pub async fn profile(db: &Db, user_id: &str) -> sqlx::Result<Option<ProfileRow>> {
    db_fetch_optional!(
        db,
        ProfileRow,
        "SELECT user_id, nickname, avatar_url, roles, seq FROM profiles WHERE user_id = $1",
        user_id
    )
}

/// Fuzzy: the query's characters appear in the nickname in order (`alc` finds `alice`).
pub async fn search_profiles(
    db: &Db,
    q: &str,
    page: Page,
) -> sqlx::Result<(Vec<ProfileRow>, Option<String>)> {
    let mut pattern = String::from("%");
    for c in q.to_lowercase().chars() {
        match c {
            '%' | '_' | '\\' => {
                pattern.push('\\');
                pattern.push(c);
            }
            c => pattern.push(c),
        }
        pattern.push('%');
    }
    let mut rows = db_fetch_all!(
        db,
        ProfileRow,
        "SELECT user_id, nickname, avatar_url, roles, seq FROM profiles \
         WHERE (nickname_lower LIKE $1 ESCAPE '\\' OR lower(user_id) LIKE $1 ESCAPE '\\') AND seq > $2 ORDER BY seq LIMIT $3",
        pattern,
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

pub async fn last_seen(db: &Db, user_id: &str) -> sqlx::Result<Option<DateTime<Utc>>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        last_seen: DateTime<Utc>,
    }
    Ok(db_fetch_optional!(
        db,
        Row,
        "SELECT last_seen FROM presence WHERE user_id = $1",
        user_id
    )?
    .map(|r| r.last_seen))
}

const CHAT_COLUMNS: &str =
    "c.id, c.type, c.name, c.slug, c.is_private, c.created_by, c.created_at, c.updated_at, c.member_count, c.settings, c.seq";

/// The chat, if `user_id` may see it (member, or admin, or the chat is public).
pub async fn visible_chat(
    db: &Db,
    id: &str,
    user_id: &str,
    admin: bool,
) -> sqlx::Result<Option<ChatRow>> {
    db_fetch_optional!(
        db,
        ChatRow,
        &format!(
            "SELECT {CHAT_COLUMNS} FROM chats c WHERE c.id = $1 AND (c.is_private = $3 OR $4 OR EXISTS \
             (SELECT 1 FROM chat_members m WHERE m.chat_id = c.id AND m.user_id = $2 AND m.left_at IS NULL))"
        ),
        id,
        user_id,
        false,
        admin
    )
}

#[derive(Debug, Clone, Default)]
pub struct ChatFilter {
    pub kind: Option<String>,
    /// Only chats this other user is also a member of.
    pub member: Option<String>,
    pub q: Option<String>,
}

/// The caller's chats (those they are a member of), filtered.
pub async fn my_chats(
    db: &Db,
    user_id: &str,
    f: &ChatFilter,
    page: Page,
) -> sqlx::Result<(Vec<ChatRow>, Option<String>)> {
    let q = f.q.as_ref().map(|q| {
        format!(
            "%{}%",
            q.to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let mut rows = db_fetch_all!(
        db,
        ChatRow,
        &format!(
            "SELECT {CHAT_COLUMNS} FROM chats c JOIN chat_members me ON me.chat_id = c.id AND me.user_id = $1 AND me.left_at IS NULL \
             WHERE ($2 IS NULL OR c.type = $2) \
             AND ($3 IS NULL OR EXISTS (SELECT 1 FROM chat_members o WHERE o.chat_id = c.id AND o.user_id = $3 AND o.left_at IS NULL)) \
             AND ($4 IS NULL OR lower(COALESCE(c.name, '')) LIKE $4 ESCAPE '\\') \
             AND c.seq > $5 ORDER BY c.seq LIMIT $6"
        ),
        user_id,
        f.kind.clone(),
        f.member.clone(),
        q,
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

pub async fn member(db: &Db, chat_id: &str, user_id: &str) -> sqlx::Result<Option<MemberRow>> {
    db_fetch_optional!(
        db,
        MemberRow,
        "SELECT membership_id, user_id, role, joined_at, left_at FROM chat_members WHERE chat_id = $1 AND user_id = $2",
        chat_id,
        user_id
    )
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperationRow {
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub message_id: Option<String>,
    pub error: Option<String>,
}

pub async fn operation(db: &Db, id: &str) -> sqlx::Result<Option<OperationRow>> {
    db_fetch_optional!(
        db,
        OperationRow,
        "SELECT id, user_id, status, message_id, error FROM chat_operations WHERE id = $1",
        id
    )
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub chat_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub author_id: String,
    pub text: String,
    #[sqlx(try_from = "crate::stored::JsonText")]
    pub metadata: serde_json::Value,
    #[sqlx(try_from = "crate::stored::JsonText")]
    pub attachments: Vec<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub filtered: bool,
    #[sqlx(try_from = "crate::stored::JsonText")]
    pub filter_matches: Vec<String>,
    pub flagged_at: Option<DateTime<Utc>>,
    pub seq: i64,
}

/// A chat's messages, newest first; `before`/`after` bound `created_at` (exclusive).
pub async fn messages(
    db: &Db,
    chat_id: &str,
    before: Option<DateTime<Utc>>,
    after: Option<DateTime<Utc>>,
    page: Page,
) -> sqlx::Result<(Vec<MessageRow>, Option<String>)> {
    let mut rows = db_fetch_all!(
        db,
        MessageRow,
        &format!("SELECT id, chat_id, type, author_id, text, metadata, attachments, created_at, edited_at, deleted_at, filtered, \
         filter_matches, flagged_at, seq FROM chat_messages WHERE chat_id = $1 \
         AND ($2 IS NULL OR created_at < $2) AND ($3 IS NULL OR created_at > $3) AND ($4 = 0 OR seq < $4) \
         AND {} ORDER BY seq DESC LIMIT $5", super::retention::live_sql(db.is_pg(), "chat_messages")),
        chat_id,
        before,
        after,
        page.after,
        page.fetch_limit()
    )?;
    let next = page.finish(&mut rows, |r| r.seq);
    Ok((rows, next))
}

pub async fn message(db: &Db, id: &str) -> sqlx::Result<Option<MessageRow>> {
    db_fetch_optional!(
        db,
        MessageRow,
        &format!("SELECT id, chat_id, type, author_id, text, metadata, attachments, created_at, edited_at, deleted_at, filtered, \
         filter_matches, flagged_at, seq FROM chat_messages WHERE id = $1 AND {}",
         super::retention::live_sql(db.is_pg(), "chat_messages")),
        id
    )
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReadRow {
    pub chat_id: String,
    pub user_id: String,
    pub last_read_message_id: String,
    pub last_read_at: DateTime<Utc>,
}

/// Where `user_id` has read up to in `chat_id`, if anywhere.
pub async fn read_position(db: &Db, chat_id: &str, user_id: &str) -> sqlx::Result<Option<ReadRow>> {
    db_fetch_optional!(
        db,
        ReadRow,
        "SELECT chat_id, user_id, last_read_message_id, last_read_at FROM chat_reads WHERE chat_id = $1 AND user_id = $2",
        chat_id,
        user_id
    )
}

/// Messages of `chat_id` after `user_id`'s read position (by `created_at`, then id), not
/// written by them, not deleted, within retention. No position: every such message.
pub async fn unread_count(db: &Db, chat_id: &str, user_id: &str) -> sqlx::Result<i64> {
    let row: (i64,) = db_fetch_optional!(
            db,
            (i64,),
            &format!(
                "SELECT count(*) FROM chat_messages m WHERE m.chat_id = $1 AND m.author_id <> $2 \
                 AND m.deleted_at IS NULL AND {} AND NOT EXISTS (SELECT 1 FROM chat_reads r \
                 WHERE r.chat_id = m.chat_id AND r.user_id = $2 AND (m.created_at < r.last_read_message_at \
                 OR (m.created_at = r.last_read_message_at AND m.id <= r.last_read_message_id)))",
                super::retention::live_sql(db.is_pg(), "m")
            ),
            chat_id,
            user_id
        )?
        .unwrap_or((0,));
    Ok(row.0)
}

/// Whether `user_id` has an open `/ws` connection whose process refreshed it at or after
/// `since_ms` (Unix milliseconds).
pub async fn connected_since(db: &Db, user_id: &str, since_ms: i64) -> sqlx::Result<bool> {
    Ok(db_fetch_optional!(
        db,
        (i64,),
        "SELECT refreshed_ms FROM live_connections WHERE user_id = $1 AND refreshed_ms >= $2 LIMIT 1",
        user_id,
        since_ms
    )?
    .is_some())
}
