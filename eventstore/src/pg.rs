//! PostgreSQL backend: postgres-es loads streams; appends, the gap-safe log and leadership are ours.

use std::time::Duration;

use anyhow::Context;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, PgPool, Row};
use tokio::sync::watch;

use crate::chain::{insert_sql, prepare, stored as stored_event};
use crate::group::AppendResult;
use crate::{
    AppendError, AppendRequest, Checkpoint, EventMetadata, IdempotencyRecord, Leadership,
    LoadedEvent, LogBatch, StoredEvent,
};

#[derive(Clone)]
pub(crate) struct PgStore {
    pub pool: PgPool,
    url: String,
    repo: std::sync::Arc<PostgresEventRepository>,
    /// Notifications sent by this process's own notifiers are not wake-ups for it.
    own_pids: crate::notify::OwnPids,
}

const LOG_COLUMNS: &str =
    "position, tx_id::text AS tx, event_id, aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata, recorded_at, hash";

impl PgStore {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect(url)
            .await
            .context("failed to connect to PostgreSQL")?;
        sqlx::migrate!("../migrations/postgres")
            .run(&pool)
            .await
            .context("failed to run PostgreSQL migrations")?;
        let repo = std::sync::Arc::new(PostgresEventRepository::new(pool.clone()));
        Ok(Self {
            pool,
            url: url.to_string(),
            repo,
            own_pids: Default::default(),
        })
    }

    pub fn set_own_pids(&mut self, own: crate::notify::OwnPids) {
        self.own_pids = own;
    }

    /// Forwards NOTIFYs from other processes' appends to local readers; reconnects on failure.
    pub fn spawn_listener(&self, wake: watch::Sender<u64>, checkpoint_wake: watch::Sender<u64>) {
        let url = self.url.clone();
        let own = self.own_pids.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match PgListener::connect(&url).await {
                    Ok(mut listener) => {
                        let channels = [
                            crate::notify::EVENTS_CHANNEL,
                            crate::notify::CHECKPOINTS_CHANNEL,
                        ];
                        if listener.listen_all(channels).await.is_ok() {
                            backoff = Duration::from_millis(100);
                            // A reconnect may have missed notifications: wake readers once.
                            wake.send_modify(|n| *n = n.wrapping_add(1));
                            checkpoint_wake.send_modify(|n| *n = n.wrapping_add(1));
                            while let Ok(n) = listener.recv().await {
                                if own.lock().expect("pids").contains(&n.process_id()) {
                                    continue;
                                }
                                if n.channel() == crate::notify::CHECKPOINTS_CHANNEL {
                                    checkpoint_wake.send_modify(|n| *n = n.wrapping_add(1));
                                } else {
                                    wake.send_modify(|n| *n = n.wrapping_add(1));
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "event listener cannot connect; retrying"),
                }
                if wake.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }

    pub async fn load<A: Aggregate>(
        &self,
        aggregate_id: &str,
        after: i64,
    ) -> anyhow::Result<Vec<LoadedEvent>> {
        let events = if after <= 0 {
            self.repo
                .get_events::<A>(aggregate_id)
                .await
                .map_err(|e| {
                    use cqrs_es::persist::PersistenceError as P;
                    let outage = match &e {
                        P::ConnectionError(b) | P::UnknownError(b) => {
                            crate::outage::is_unavailable_error(b.as_ref())
                        }
                        _ => false,
                    };
                    if outage {
                        anyhow::Error::new(crate::outage::Unavailable(e.to_string()))
                            .context("failed to load stream")
                    } else {
                        anyhow::anyhow!("failed to load stream: {e}")
                    }
                })?
                .into_iter()
                .map(|e| LoadedEvent {
                    sequence: e.sequence as i64,
                    event_type: e.event_type,
                    event_version: e.event_version,
                    payload: e.payload,
                    hash: None,
                })
                .collect()
        } else {
            // Catching up a cached aggregate: a parameterised statement the driver can keep prepared.
            sqlx::query(
                "SELECT sequence, event_type, event_version, payload, hash FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
            )
            .bind(A::TYPE)
            .bind(aggregate_id)
            .bind(after)
            .fetch_all(&self.pool)
            .await
            .context("failed to load stream")?
            .into_iter()
            .map(|r| LoadedEvent {
                sequence: r.get("sequence"),
                event_type: r.get("event_type"),
                event_version: r.get("event_version"),
                payload: r.get("payload"),
                hash: Some(r.get("hash")),
            })
            .collect()
        };
        Ok(events)
    }

    pub async fn append(&self, req: AppendRequest) -> Result<Vec<StoredEvent>, AppendError> {
        if is_simple(&req) {
            // One statement in its own implicit transaction: nothing to read first.
            let prev = req.expected_hash.clone().unwrap_or_default();
            let mut conn = self
                .pool
                .acquire()
                .await
                .context("failed to get a connection")?;
            return insert_events(&mut conn, &req, prev).await;
        }
        let mut tx = self.pool.begin().await.context("failed to begin")?;
        let stored = append_in_tx(&mut tx, &req).await?;
        tx.commit().await.map_err(map_insert_error)?;
        Ok(stored)
    }

    /// Commits a batch of appends to distinct streams in one transaction; each request gets its
    /// own result. Plain appends go in one statement that inserts only the requests whose stream
    /// is still at the expected sequence (the others are conflicts); an append with claims, an
    /// idempotency record or no known head hash runs inside a savepoint, so its failure is rolled
    /// back alone. Anything unexpected (a writer of another process racing on a stream, a lost
    /// connection) rolls the batch back and appends each request on its own.
    pub async fn append_batch(&self, reqs: Vec<AppendRequest>) -> Vec<AppendResult> {
        if reqs.len() == 1 {
            let req = reqs.into_iter().next().expect("one");
            return vec![self.append(req).await];
        }
        let (plain, other): (Vec<usize>, Vec<usize>) =
            (0..reqs.len()).partition(|&i| is_simple(&reqs[i]));
        let outcome = if other.is_empty() {
            // Nothing to roll back on its own: one statement, its own implicit transaction.
            match self.pool.acquire().await {
                Ok(mut conn) => insert_plain(&mut conn, &reqs, &plain).await.map(|r| {
                    let mut results: Vec<Option<AppendResult>> =
                        reqs.iter().map(|_| None).collect();
                    for (i, r) in plain.iter().zip(r) {
                        results[*i] = Some(r);
                    }
                    results
                }),
                Err(e) => Err(e),
            }
        } else {
            self.batch_in_tx(&reqs, &plain, &other).await
        };
        match outcome {
            Ok(results) => results
                .into_iter()
                .map(|r| r.expect("every request answered"))
                .collect(),
            Err(e) if crate::outage::is_unavailable_sqlx(&e) => {
                // The database is unreachable: appending one by one would wait for the pool
                // once per append, in turn. Nothing committed; every append fails at once.
                let msg = format!("failed to append a batch: {e}");
                reqs.iter()
                    .map(|_| {
                        Err(AppendError::Store(anyhow::Error::new(
                            crate::outage::Unavailable(msg.clone()),
                        )))
                    })
                    .collect()
            }
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
        let mut tx = self.pool.begin().await?;
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
            // The outcome is unknown (the commit may have reached the server): say so to each
            // request that would have committed, never retry it.
            let msg = format!("failed to commit a batch of appends: {e}");
            let unavailable = crate::outage::is_unavailable_sqlx(&e);
            for r in results.iter_mut() {
                if matches!(r, Some(Ok(_))) {
                    let e = if unavailable {
                        anyhow::Error::new(crate::outage::Unavailable(msg.clone()))
                    } else {
                        anyhow::anyhow!(msg.clone())
                    };
                    *r = Some(Err(AppendError::Store(e)));
                }
            }
        }
        Ok(results)
    }

    pub async fn read_log(&self, after: Checkpoint, limit: i64) -> anyhow::Result<LogBatch> {
        // Rows of transactions below the snapshot's xmin are final: nothing can ever be inserted
        // before them in (tx_id, position) order, so the reader never steps over a late commit.
        let rows = sqlx::query(&format!(
            "SELECT {LOG_COLUMNS} FROM events \
             WHERE (tx_id, position) > ($1::text::xid8, $2) \
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY tx_id, position LIMIT $3"
        ))
        .bind(after.tx_id.to_string())
        .bind(after.position)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("failed to read the log")?;
        let events = rows
            .iter()
            .map(decode_log_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Only an empty batch needs to know whether it is empty because a writer is mid-commit.
        let pending = if events.is_empty() {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM events WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot()))",
            )
            .fetch_one(&self.pool)
            .await
            .context("failed to check for pending events")?
        } else {
            false
        };
        Ok(LogBatch { events, pending })
    }

    pub async fn checkpoint_of(&self, position: i64) -> anyhow::Result<Option<Checkpoint>> {
        let row = sqlx::query("SELECT tx_id::text AS tx FROM events WHERE position = $1")
            .bind(position)
            .fetch_optional(&self.pool)
            .await
            .context("failed to look up a position")?;
        row.map(|r| {
            let tx: String = r.get("tx");
            Ok(Checkpoint {
                tx_id: tx.parse()?,
                position,
            })
        })
        .transpose()
    }

    pub async fn log_head(&self) -> anyhow::Result<Checkpoint> {
        let row = sqlx::query(
            "SELECT tx_id::text AS tx, position FROM events \
             WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY tx_id DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .context("failed to read the log head")?;
        row.map(|r| {
            let tx: String = r.get("tx");
            Ok(Checkpoint {
                tx_id: tx.parse()?,
                position: r.get("position"),
            })
        })
        .transpose()
        .map(|c| c.unwrap_or(Checkpoint::START))
    }

    pub async fn head_position(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT max(position) FROM events")
                .fetch_one(&self.pool)
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
        .fetch_optional(&self.pool)
        .await
        .context("failed to read an idempotency key")?;
        Ok(row.map(|r| IdempotencyRecord {
            user_id: user_id.to_string(),
            key: key.to_string(),
            request_hash: r.get("request_hash"),
            status: r.get::<i32, _>("status") as u16,
            body: r.get("body"),
        }))
    }

    pub async fn try_lead(&self, name: &str) -> anyhow::Result<Option<Leadership>> {
        let conn = self
            .pool
            .acquire()
            .await
            .context("failed to get a connection")?;
        // Detached: dropping the leadership closes the session and so releases the lock.
        let mut conn = conn.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lock_key(name))
            .fetch_one(&mut conn)
            .await
            .context("failed to try the advisory lock")?;
        if got {
            Ok(Some(Leadership { _conn: Some(conn) }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }
}

/// Inserts the request's events with one multi-row statement.
async fn insert_events(
    conn: &mut sqlx::PgConnection,
    req: &AppendRequest,
    prev_hash: Vec<u8>,
) -> Result<Vec<StoredEvent>, AppendError> {
    let recorded_at = crate::chain::now_micros();
    let prepared = prepare(req, req.expected_sequence, prev_hash, &recorded_at);
    let metadata = serde_json::to_value(&req.metadata).context("metadata")?;
    let sql = insert_sql(
        req.events.len(),
        "RETURNING sequence, position, tx_id::text AS tx",
    );
    let mut q = sqlx::query(&sql);
    for (ev, p) in req.events.iter().zip(&prepared) {
        q = q
            .bind(&req.aggregate_type)
            .bind(&req.aggregate_id)
            .bind(p.sequence)
            .bind(&ev.event_type)
            .bind(&ev.event_version)
            .bind(&ev.payload)
            .bind(&metadata)
            .bind(p.event_id)
            .bind(recorded_at)
            .bind(&p.payload_hash)
            .bind(&p.hash);
    }
    let rows = q.fetch_all(&mut *conn).await.map_err(map_insert_error)?;
    let mut places = std::collections::HashMap::new();
    for r in rows {
        let tx: String = r.get("tx");
        places.insert(
            r.get::<i64, _>("sequence"),
            (
                r.get::<i64, _>("position"),
                tx.parse::<u64>().context("bad xid8")?,
            ),
        );
    }
    Ok(prepared
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (position, tx_id) = places.get(&p.sequence).copied().unwrap_or_default();
            stored_event(req, i, p, position, tx_id, recorded_at)
        })
        .collect())
}

/// An append that needs nothing but its events inserted: no claims, releases or idempotency
/// record, and the caller knows the head's hash (so nothing is read first).
fn is_simple(req: &AppendRequest) -> bool {
    req.claims.is_empty()
        && req.releases.is_empty()
        && req.idempotency.is_none()
        && req.expected_hash.is_some()
}

/// The head check, idempotency record, claims and events of one append, inside a transaction
/// (or a savepoint) the caller commits.
async fn append_in_tx(
    conn: &mut sqlx::PgConnection,
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
             VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT DO NOTHING",
        )
        .bind(&idem.user_id)
        .bind(&idem.key)
        .bind(&idem.request_hash)
        .bind(idem.status as i32)
        .bind(&idem.body)
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
        let inserted = sqlx::query(
            "INSERT INTO claims (scope, value, owner) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&c.scope)
        .bind(&c.value)
        .bind(&c.owner)
        .execute(&mut *conn)
        .await
        .context("failed to claim")?
        .rows_affected();
        if inserted == 0 {
            let owner: Option<String> =
                sqlx::query_scalar("SELECT owner FROM claims WHERE scope = $1 AND value = $2")
                    .bind(&c.scope)
                    .bind(&c.value)
                    .fetch_optional(&mut *conn)
                    .await
                    .context("failed to read a claim")?;
            if owner.as_deref() != Some(c.owner.as_str()) {
                return Err(AppendError::ClaimTaken(c.clone()));
            }
        }
    }
    insert_events(conn, req, prev_hash).await
}

/// Inserts the events of the plain appends `which` of `reqs` (distinct streams) with one
/// statement that skips every append whose stream is no longer at its expected sequence: those
/// are conflicts. An error (e.g. another process inserted the same sequence meanwhile) fails
/// the statement as a whole.
async fn insert_plain(
    conn: &mut sqlx::PgConnection,
    reqs: &[AppendRequest],
    which: &[usize],
) -> Result<Vec<AppendResult>, sqlx::Error> {
    let recorded_at = crate::chain::now_micros();
    let n: usize = which.iter().map(|&i| reqs[i].events.len()).sum();
    let prepared: Vec<_> = which
        .iter()
        .map(|&i| {
            let req = &reqs[i];
            let prev = req.expected_hash.clone().unwrap_or_default();
            prepare(req, req.expected_sequence, prev, &recorded_at)
        })
        .collect();
    let mut cols = PlainColumns::with_capacity(n);
    for (&i, p) in which.iter().zip(&prepared) {
        let req = &reqs[i];
        let metadata = serde_json::to_value(&req.metadata).unwrap_or_default();
        for (ev, e) in req.events.iter().zip(p) {
            cols.types.push(req.aggregate_type.as_str());
            cols.ids.push(req.aggregate_id.as_str());
            cols.sequences.push(e.sequence);
            cols.event_types.push(ev.event_type.as_str());
            cols.versions.push(ev.event_version.as_str());
            cols.payloads.push(&ev.payload);
            cols.metadata.push(metadata.clone());
            cols.event_ids.push(e.event_id);
            cols.payload_hashes.push(e.payload_hash.as_slice());
            cols.hashes.push(e.hash.as_slice());
            cols.expected.push(req.expected_sequence);
        }
    }
    let times = vec![recorded_at; n];
    let rows = sqlx::query(PLAIN_INSERT)
        .bind(&cols.types)
        .bind(&cols.ids)
        .bind(&cols.sequences)
        .bind(&cols.event_types)
        .bind(&cols.versions)
        .bind(&cols.payloads)
        .bind(&cols.metadata)
        .bind(&cols.event_ids)
        .bind(&times)
        .bind(&cols.payload_hashes)
        .bind(&cols.hashes)
        .bind(&cols.expected)
        .bind(crate::HASH_VERSION)
        .fetch_all(&mut *conn)
        .await?;
    let mut places = std::collections::HashMap::with_capacity(rows.len());
    for r in &rows {
        let tx: String = r.get("tx");
        let tx_id: u64 = tx.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        places.insert(
            (
                r.get::<String, _>("aggregate_type"),
                r.get::<String, _>("aggregate_id"),
                r.get::<i64, _>("sequence"),
            ),
            (r.get::<i64, _>("position"), tx_id),
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
                    Some(&(position, tx_id)) => {
                        out.push(stored_event(req, k, e, position, tx_id, recorded_at))
                    }
                    // Skipped: the stream moved past the expected sequence.
                    None => return Err(AppendError::Conflict),
                }
            }
            Ok(out)
        })
        .collect())
}

/// The plain appends of a batch, column by column (one array parameter per column).
struct PlainColumns<'a> {
    types: Vec<&'a str>,
    ids: Vec<&'a str>,
    sequences: Vec<i64>,
    event_types: Vec<&'a str>,
    versions: Vec<&'a str>,
    payloads: Vec<&'a Value>,
    metadata: Vec<Value>,
    event_ids: Vec<uuid::Uuid>,
    payload_hashes: Vec<&'a [u8]>,
    hashes: Vec<&'a [u8]>,
    expected: Vec<i64>,
}

impl PlainColumns<'_> {
    fn with_capacity(n: usize) -> Self {
        Self {
            types: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            sequences: Vec::with_capacity(n),
            event_types: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            event_ids: Vec::with_capacity(n),
            payload_hashes: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
            expected: Vec::with_capacity(n),
        }
    }
}

/// Rows whose stream head is not their append's expected sequence are left out. The head is
/// read in the statement's snapshot, so every row of one append sees the same head.
const PLAIN_INSERT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata, event_id, recorded_at, payload_hash, hash, hash_version) \
     SELECT v.t, v.i, v.s, v.et, v.ev, v.p, v.m, v.eid, v.at, v.ph, v.h, 2 \
     FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::jsonb[], \
                 $7::jsonb[], $8::uuid[], $9::timestamptz[], $10::bytea[], $11::bytea[], $12::int8[]) \
          WITH ORDINALITY AS v(t, i, s, et, ev, p, m, eid, at, ph, h, expected, ord) \
     WHERE coalesce((SELECT max(e.sequence) FROM events e \
                     WHERE e.aggregate_type = v.t AND e.aggregate_id = v.i), 0) = v.expected \
     ORDER BY v.ord \
     RETURNING aggregate_type, aggregate_id, sequence, position, tx_id::text AS tx";

fn lock_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("fafcab-leader:{name}"));
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

fn map_insert_error(e: sqlx::Error) -> AppendError {
    if let sqlx::Error::Database(db) = &e {
        if db.code().as_deref() == Some("23505") && db.constraint() == Some("events_pkey") {
            return AppendError::Conflict;
        }
        // Serialization failures can only come from a stricter isolation level; treat as contention.
        if db.code().as_deref() == Some("40001") {
            return AppendError::Conflict;
        }
    }
    AppendError::Store(anyhow::Error::new(e).context("failed to append events"))
}

fn decode_log_row(r: &sqlx::postgres::PgRow) -> anyhow::Result<StoredEvent> {
    let tx: String = r.get("tx");
    let metadata: Value = r.get("metadata");
    Ok(StoredEvent {
        position: r.get("position"),
        tx_id: tx.parse().context("bad xid8")?,
        event_id: r.get("event_id"),
        aggregate_type: r.get("aggregate_type"),
        aggregate_id: r.get("aggregate_id"),
        sequence: r.get("sequence"),
        event_type: r.get("event_type"),
        event_version: r.get("event_version"),
        payload: r.get("payload"),
        metadata: serde_json::from_value::<EventMetadata>(metadata).context("bad metadata")?,
        recorded_at: r.get("recorded_at"),
        hash: r.get("hash"),
    })
}
