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

use crate::chain::{format_time, insert_sql, prepare, stored as stored_event};
use crate::group::AppendResult;
use crate::{
    AppendError, AppendRequest, Checkpoint, IdempotencyRecord, LoadedEvent, LogBatch, StoredEvent,
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
        if is_simple(&req) {
            // One statement, autocommitted: nothing to read first.
            let prev = req.expected_hash.clone().unwrap_or_default();
            let mut conn = self
                .write
                .acquire()
                .await
                .context("failed to get the writer")?;
            return insert_events(&mut conn, &req, prev).await;
        }
        let mut tx = self.write.begin().await.context("failed to begin")?;
        let stored = append_in_tx(&mut tx, &req).await?;
        tx.commit().await.map_err(map_insert_error)?;
        Ok(stored)
    }

    /// Commits a batch of appends to distinct streams in one transaction, each with its own
    /// result, as the PostgreSQL backend does: plain appends in one statement that skips the
    /// conflicting ones, the others each in a savepoint; anything unexpected rolls the batch back
    /// and appends each request on its own.
    pub async fn append_batch(&self, reqs: Vec<AppendRequest>) -> Vec<AppendResult> {
        if reqs.len() == 1 {
            let req = reqs.into_iter().next().expect("one");
            return vec![self.append(req).await];
        }
        let (plain, other): (Vec<usize>, Vec<usize>) =
            (0..reqs.len()).partition(|&i| is_simple(&reqs[i]));
        match self.batch_in_tx(&reqs, &plain, &other).await {
            Ok(results) => results
                .into_iter()
                .map(|r| r.expect("every request answered"))
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, appends = reqs.len(), "batch append failed; appending one by one");
                let mut out = Vec::with_capacity(reqs.len());
                for req in reqs {
                    out.push(self.append(req).await);
                }
                out
            }
        }
    }

    async fn batch_in_tx(
        &self,
        reqs: &[AppendRequest],
        plain: &[usize],
        other: &[usize],
    ) -> Result<Vec<Option<AppendResult>>, sqlx::Error> {
        let mut results: Vec<Option<AppendResult>> = reqs.iter().map(|_| None).collect();
        if other.is_empty() {
            // One autocommitted statement.
            let mut conn = self.write.acquire().await?;
            for (i, r) in plain
                .iter()
                .zip(insert_plain(&mut conn, reqs, plain).await?)
            {
                results[*i] = Some(r);
            }
            return Ok(results);
        }
        let mut tx = self.write.begin().await?;
        for &i in other {
            let mut sp = sqlx::Connection::begin(&mut *tx).await?;
            match append_in_tx(&mut sp, &reqs[i]).await {
                Ok(stored) => {
                    sp.commit().await?;
                    results[i] = Some(Ok(stored));
                }
                Err(e) => {
                    sp.rollback().await?;
                    results[i] = Some(Err(e));
                }
            }
        }
        if !plain.is_empty() {
            for (i, r) in plain.iter().zip(insert_plain(&mut tx, reqs, plain).await?) {
                results[*i] = Some(r);
            }
        }
        if let Err(e) = tx.commit().await {
            let msg = format!("failed to commit a batch of appends: {e}");
            for r in results.iter_mut() {
                if matches!(r, Some(Ok(_))) {
                    *r = Some(Err(AppendError::Store(anyhow::anyhow!(msg.clone()))));
                }
            }
        }
        Ok(results)
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

/// An append that needs nothing but its events inserted (see the PostgreSQL backend).
fn is_simple(req: &AppendRequest) -> bool {
    req.claims.is_empty()
        && req.releases.is_empty()
        && req.idempotency.is_none()
        && req.expected_hash.is_some()
}

/// The head check, idempotency record, claims and events of one append, inside a transaction
/// (or a savepoint) the caller commits.
async fn append_in_tx(
    conn: &mut sqlx::SqliteConnection,
    req: &AppendRequest,
) -> Result<Vec<StoredEvent>, AppendError> {
    let prev_hash = match req.expected_hash.clone() {
        Some(h) => h,
        None => {
            let last = sqlx::query(
                "SELECT sequence, hash FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
                 ORDER BY sequence DESC LIMIT 1",
            )
            .bind(&req.aggregate_type)
            .bind(&req.aggregate_id)
            .fetch_optional(&mut *conn)
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
        .execute(&mut *conn)
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
            .execute(&mut *conn)
            .await
            .context("failed to release a claim")?;
    }
    for c in &req.claims {
        let owner: Option<String> =
            sqlx::query_scalar("SELECT owner FROM claims WHERE scope = $1 AND value = $2")
                .bind(&c.scope)
                .bind(&c.value)
                .fetch_optional(&mut *conn)
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
                    .execute(&mut *conn)
                    .await
                    .context("failed to claim")?;
            }
        }
    }
    insert_events(conn, req, prev_hash).await
}

/// Inserts the events of the plain appends `which` of `reqs` (distinct streams) with one
/// statement that skips every append whose stream is no longer at its expected sequence (a
/// conflict). SQLite evaluates the whole `SELECT` before inserting when it reads the table
/// it inserts into, so every row of one append sees the same head.
async fn insert_plain(
    conn: &mut sqlx::SqliteConnection,
    reqs: &[AppendRequest],
    which: &[usize],
) -> Result<Vec<AppendResult>, sqlx::Error> {
    let recorded_at = crate::chain::now_micros();
    let at = format_time(&recorded_at);
    let n: usize = which.iter().map(|&i| reqs[i].events.len()).sum();
    let mut sql = String::with_capacity(400 + n * 80);
    sql.push_str(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata, event_id, recorded_at, payload_hash, hash, hash_version) \
         SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9, \
         column10, column11, column12 FROM (VALUES ",
    );
    for k in 0..n {
        if k > 0 {
            sql.push_str(", ");
        }
        let b = k * 13;
        sql.push('(');
        for j in 1..=13 {
            if j > 1 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", b + j));
        }
        sql.push(')');
    }
    sql.push_str(
        ") AS v WHERE coalesce((SELECT max(e.sequence) FROM events e \
         WHERE e.aggregate_type = v.column1 AND e.aggregate_id = v.column2), 0) = v.column13 \
         RETURNING aggregate_type, aggregate_id, sequence, position",
    );
    let prepared: Vec<_> = which
        .iter()
        .map(|&i| {
            let req = &reqs[i];
            let prev = req.expected_hash.clone().unwrap_or_default();
            prepare(req, req.expected_sequence, prev, &recorded_at)
        })
        .collect();
    let mut q = sqlx::query(&sql);
    for (&i, p) in which.iter().zip(&prepared) {
        let req = &reqs[i];
        let metadata = serde_json::to_string(&req.metadata).unwrap_or_default();
        for (ev, e) in req.events.iter().zip(p) {
            q = q
                .bind(req.aggregate_type.as_str())
                .bind(req.aggregate_id.as_str())
                .bind(e.sequence)
                .bind(ev.event_type.as_str())
                .bind(ev.event_version.as_str())
                .bind(ev.payload.to_string())
                .bind(metadata.clone())
                .bind(e.event_id.to_string())
                .bind(at.clone())
                .bind(e.payload_hash.as_slice())
                .bind(e.hash.as_slice())
                .bind(crate::HASH_VERSION)
                .bind(req.expected_sequence);
        }
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let mut places = std::collections::HashMap::with_capacity(rows.len());
    for r in &rows {
        places.insert(
            (
                r.get::<String, _>("aggregate_type"),
                r.get::<String, _>("aggregate_id"),
                r.get::<i64, _>("sequence"),
            ),
            r.get::<i64, _>("position"),
        );
    }
    Ok(which
        .iter()
        .zip(&prepared)
        .map(|(&i, p)| {
            let req = &reqs[i];
            let mut out = Vec::with_capacity(p.len());
            for (k, e) in p.iter().enumerate() {
                let key = (
                    req.aggregate_type.clone(),
                    req.aggregate_id.clone(),
                    e.sequence,
                );
                match places.get(&key) {
                    Some(&position) => out.push(stored_event(req, k, e, position, 0, recorded_at)),
                    // Skipped: the stream moved past the expected sequence.
                    None => return Err(AppendError::Conflict),
                }
            }
            Ok(out)
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
