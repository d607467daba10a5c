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
use uuid::Uuid;

use crate::chain::{event_hash, format_time, payload_hash, ChainRow, ChainVerifier};
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
            "SELECT sequence, event_type, event_version, payload FROM events \
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
                })
            })
            .collect()
    }

    pub async fn append(&self, req: AppendRequest) -> Result<Vec<StoredEvent>, AppendError> {
        let mut tx = self.write.begin().await.context("failed to begin")?;
        let last = sqlx::query(
            "SELECT sequence, hash FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
             ORDER BY sequence DESC LIMIT 1",
        )
        .bind(&req.aggregate_type)
        .bind(&req.aggregate_id)
        .fetch_optional(&mut *tx)
        .await
        .context("failed to read the stream head")?;
        let (last_seq, mut prev_hash): (i64, Vec<u8>) = match last {
            Some(r) => (r.get("sequence"), r.get("hash")),
            None => (0, Vec::new()),
        };
        if last_seq != req.expected_sequence {
            return Err(AppendError::Conflict);
        }
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
        let recorded_at = crate::chain::now_micros();
        let metadata_json = serde_json::to_string(&req.metadata).context("metadata")?;
        let mut stored = Vec::with_capacity(req.events.len());
        for (i, ev) in req.events.iter().enumerate() {
            let sequence = last_seq + 1 + i as i64;
            let event_id = Uuid::now_v7();
            let ph = payload_hash(&ev.payload);
            let hash = event_hash(
                &prev_hash,
                &req.aggregate_type,
                &req.aggregate_id,
                sequence,
                &ev.event_type,
                &ev.event_version,
                event_id,
                &recorded_at,
                &req.metadata,
                &ph,
            );
            let position: i64 = sqlx::query_scalar(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                 payload, metadata, event_id, recorded_at, payload_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING position",
            )
            .bind(&req.aggregate_type)
            .bind(&req.aggregate_id)
            .bind(sequence)
            .bind(&ev.event_type)
            .bind(&ev.event_version)
            .bind(ev.payload.to_string())
            .bind(&metadata_json)
            .bind(event_id.to_string())
            .bind(format_time(&recorded_at))
            .bind(&ph)
            .bind(&hash)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_insert_error)?;
            stored.push(StoredEvent {
                position,
                tx_id: 0,
                event_id,
                aggregate_type: req.aggregate_type.clone(),
                aggregate_id: req.aggregate_id.clone(),
                sequence,
                event_type: ev.event_type.clone(),
                event_version: ev.event_version.clone(),
                payload: ev.payload.clone(),
                metadata: req.metadata.clone(),
                recorded_at,
                hash: hash.clone(),
            });
            prev_hash = hash;
        }
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
             recorded_at, metadata, payload, payload_hash, hash FROM events \
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
            };
            if !verifier.check(row) {
                break;
            }
        }
        Ok(verifier.report)
    }
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
