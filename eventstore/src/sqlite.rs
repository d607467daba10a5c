//! Embedded SQLite backend with the behaviour of the PostgreSQL one. One writer connection:
//! appends are serialised, so position order is commit order and the log has no gaps to fear.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};

use crate::chain::{
    format_time, insert_sql, prepare, stored as stored_event, ChainRow, ChainVerifier,
};
use crate::{
    AppendError, AppendRequest, Checkpoint, IdempotencyRecord, LoadedEvent, LogBatch, StoredEvent,
    VerifyReport,
};

#[derive(Clone)]
pub(crate) struct SqliteStore {
    pub read: SqlitePool,
    pub write: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .context("bad SQLite URL")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = opts.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("failed to create {}", dir.display()))?;
            }
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .context("failed to open the SQLite database")?;
        sqlx::migrate!("../migrations/sqlite")
            .run(&write)
            .await
            .context("failed to run SQLite migrations")?;
        let read = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.read_only(true))
            .await
            .context("failed to open SQLite readers")?;
        Ok(Self { read, write })
    }

    pub async fn load<A: Aggregate>(
        &self,
        aggregate_id: &str,
        after: i64,
    ) -> anyhow::Result<Vec<LoadedEvent>> {
        let rows = sqlx::query(
            "SELECT sequence, event_type, event_version, payload, hash FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(after)
        .fetch_all(&self.read)
        .await
        .context("failed to load stream")?;
        rows.into_iter()
            .map(|r| {
                let payload: String = r.get("payload");
                Ok(LoadedEvent {
                    sequence: r.get("sequence"),
                    event_type: r.get("event_type"),
                    event_version: r.get("event_version"),
                    payload: serde_json::from_str(&payload).context("bad payload")?,
                    hash: Some(r.get("hash")),
                })
            })
            .collect()
    }

    pub async fn append(&self, req: AppendRequest) -> Result<Vec<StoredEvent>, AppendError> {
        let simple = req.claims.is_empty() && req.releases.is_empty() && req.idempotency.is_none();
        if let (true, Some(prev)) = (simple, req.expected_hash.clone()) {
            // One statement, autocommitted: nothing to read first.
            let mut conn = self
                .write
                .acquire()
                .await
                .context("failed to get the writer")?;
            return insert_events(&mut conn, &req, prev).await;
        }
        let mut tx = self.write.begin().await.context("failed to begin")?;
        let prev_hash = match req.expected_hash.clone() {
            Some(h) => h,
            None => {
                let last = sqlx::query(
                    "SELECT sequence, hash FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
                     ORDER BY sequence DESC LIMIT 1",
                )
                .bind(&req.aggregate_type)
                .bind(&req.aggregate_id)
                .fetch_optional(&mut *tx)
                .await
                .context("failed to read the stream head")?;
                let (last_seq, hash): (i64, Vec<u8>) = match last {
                    Some(r) => (r.get("sequence"), r.get("hash")),
                    None => (0, Vec::new()),
                };
                if last_seq != req.expected_sequence {
                    return Err(AppendError::Conflict);
                }
                hash
            }
        };
        // First: a concurrent duplicate waits here for the original and then replays it,
        // instead of tripping over the claims the original made.
        if let Some(idem) = &req.idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, key, request_hash, status, body, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&idem.user_id)
            .bind(&idem.key)
            .bind(&idem.request_hash)
            .bind(idem.status as i64)
            .bind(&idem.body)
            .bind(format_time(&Utc::now()))
            .execute(&mut *tx)
            .await
            .context("failed to store the idempotency record")?
            .rows_affected();
            if inserted == 0 {
                return Err(AppendError::IdempotencyKeyUsed);
            }
        }
        for c in &req.releases {
            sqlx::query("DELETE FROM claims WHERE scope = $1 AND value = $2 AND owner = $3")
                .bind(&c.scope)
                .bind(&c.value)
                .bind(&c.owner)
                .execute(&mut *tx)
                .await
                .context("failed to release a claim")?;
        }
        for c in &req.claims {
            let owner: Option<String> =
                sqlx::query_scalar("SELECT owner FROM claims WHERE scope = $1 AND value = $2")
                    .bind(&c.scope)
                    .bind(&c.value)
                    .fetch_optional(&mut *tx)
                    .await
                    .context("failed to read a claim")?;
            match owner {
                Some(o) if o == c.owner => {}
                Some(_) => return Err(AppendError::ClaimTaken(c.clone())),
                None => {
                    sqlx::query("INSERT INTO claims (scope, value, owner) VALUES ($1, $2, $3)")
                        .bind(&c.scope)
                        .bind(&c.value)
                        .bind(&c.owner)
                        .execute(&mut *tx)
                        .await
                        .context("failed to claim")?;
                }
            }
        }
        let stored = insert_events(&mut tx, &req, prev_hash).await?;
        tx.commit().await.map_err(map_insert_error)?;
        Ok(stored)
    }

    pub async fn read_log(&self, after: Checkpoint, limit: i64) -> anyhow::Result<LogBatch> {
        let rows = sqlx::query(
            "SELECT position, event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata, recorded_at, hash FROM events WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(after.position)
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .context("failed to read the log")?;
        let events = rows
            .iter()
            .map(decode_log_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(LogBatch {
            events,
            pending: false,
        })
    }

    pub async fn log_head(&self) -> anyhow::Result<Checkpoint> {
        Ok(Checkpoint {
            tx_id: 0,
            position: self.head_position().await?,
        })
    }

    pub async fn head_position(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT max(position) FROM events")
                .fetch_one(&self.read)
                .await?
                .unwrap_or(0),
        )
    }

    pub async fn idempotent_response(
        &self,
        user_id: &str,
        key: &str,
    ) -> anyhow::Result<Option<IdempotencyRecord>> {
        let row = sqlx::query(
            "SELECT request_hash, status, body FROM idempotency_keys WHERE user_id = $1 AND key = $2",
        )
        .bind(user_id)
        .bind(key)
        .fetch_optional(&self.write)
        .await
        .context("failed to read an idempotency key")?;
        Ok(row.map(|r| IdempotencyRecord {
            user_id: user_id.to_string(),
            key: key.to_string(),
            request_hash: r.get("request_hash"),
            status: r.get::<i64, _>("status") as u16,
            body: r.get("body"),
        }))
    }

    pub async fn verify_chains(&self) -> anyhow::Result<VerifyReport> {
        use futures::TryStreamExt;
        let mut verifier = ChainVerifier::new();
        let mut rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, event_id, \
             recorded_at, metadata, payload, payload_hash, hash, hash_version, redaction FROM events \
             ORDER BY aggregate_type, aggregate_id, sequence",
        )
        .fetch(&self.read);
        while let Some(r) = rows.try_next().await.context("failed to read events")? {
            let metadata: String = r.get("metadata");
            let payload: String = r.get("payload");
            let event_id: String = r.get("event_id");
            let recorded_at: String = r.get("recorded_at");
            let row = ChainRow {
                aggregate_type: r.get("aggregate_type"),
                aggregate_id: r.get("aggregate_id"),
                sequence: r.get("sequence"),
                event_type: r.get("event_type"),
                event_version: r.get("event_version"),
                event_id: event_id.parse().context("bad event id")?,
                recorded_at: parse_time(&recorded_at)?,
                metadata: serde_json::from_str(&metadata).context("bad metadata")?,
                payload: serde_json::from_str(&payload).context("bad payload")?,
                payload_hash: r.get("payload_hash"),
                hash: r.get("hash"),
                hash_version: r.get::<i64, _>("hash_version") as i16,
                redaction: r
                    .get::<Option<String>, _>("redaction")
                    .map(|s| serde_json::from_str(&s))
                    .transpose()
                    .context("bad redaction")?,
            };
            if !verifier.check(row) {
                break;
            }
        }
        Ok(verifier.report)
    }
}

/// Inserts the request's events with one multi-row statement.
async fn insert_events(
    conn: &mut sqlx::SqliteConnection,
    req: &AppendRequest,
    prev_hash: Vec<u8>,
) -> Result<Vec<StoredEvent>, AppendError> {
    let recorded_at = crate::chain::now_micros();
    let prepared = prepare(req, req.expected_sequence, prev_hash, &recorded_at);
    let metadata_json = serde_json::to_string(&req.metadata).context("metadata")?;
    let sql = insert_sql(req.events.len(), "RETURNING sequence, position");
    let mut q = sqlx::query(&sql);
    for (ev, p) in req.events.iter().zip(&prepared) {
        q = q
            .bind(&req.aggregate_type)
            .bind(&req.aggregate_id)
            .bind(p.sequence)
            .bind(&ev.event_type)
            .bind(&ev.event_version)
            .bind(ev.payload.to_string())
            .bind(&metadata_json)
            .bind(p.event_id.to_string())
            .bind(format_time(&recorded_at))
            .bind(&p.payload_hash)
            .bind(&p.hash);
    }
    let rows = q.fetch_all(&mut *conn).await.map_err(map_insert_error)?;
    let mut positions = std::collections::HashMap::new();
    for r in rows {
        positions.insert(r.get::<i64, _>("sequence"), r.get::<i64, _>("position"));
    }
    Ok(prepared
        .iter()
        .enumerate()
        .map(|(i, p)| {
            stored_event(
                req,
                i,
                p,
                positions.get(&p.sequence).copied().unwrap_or_default(),
                0,
                recorded_at,
            )
        })
        .collect())
}

fn parse_time(s: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("bad time {s:?}"))?
        .with_timezone(&Utc))
}

fn map_insert_error(e: sqlx::Error) -> AppendError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() && db.message().contains("events.") {
            return AppendError::Conflict;
        }
    }
    AppendError::Store(anyhow::Error::new(e).context("failed to append events"))
}

fn decode_log_row(r: &SqliteRow) -> anyhow::Result<StoredEvent> {
    let payload: String = r.get("payload");
    let metadata: String = r.get("metadata");
    let event_id: String = r.get("event_id");
    let recorded_at: String = r.get("recorded_at");
    Ok(StoredEvent {
        position: r.get("position"),
        tx_id: 0,
        event_id: event_id.parse().context("bad event id")?,
        aggregate_type: r.get("aggregate_type"),
        aggregate_id: r.get("aggregate_id"),
        sequence: r.get("sequence"),
        event_type: r.get("event_type"),
        event_version: r.get("event_version"),
        payload: serde_json::from_str(&payload).context("bad payload")?,
        metadata: serde_json::from_str(&metadata).context("bad metadata")?,
        recorded_at: parse_time(&recorded_at)?,
        hash: r.get("hash"),
    })
}
