//! Audit support: the log in position order with every column its hashes cover, the log digest (a
//! commitment to the whole log up to a position), and a parallel check of every chain link.
//!
//! Digest: `d₀ = 32 zero bytes`, `dᵢ = SHA-256(dᵢ₋₁ ‖ u64_be(positionᵢ) ‖ chain_hashᵢ)` over every
//! event with `position ≤ P` in ascending position order; `digest(P) = dₙ` (32 zero bytes for an
//! empty log). `P` is always a *stable* position: no event at or below it can still commit.
//!
//! Verification in position order: each stream's previous *stored* chain hash is carried along
//! (sequentially, cheap), so every row can be checked on its own — payload against `payload_hash`,
//! `hash` against `SHA-256(previous stored hash ‖ canonical(header) ‖ payload_hash)` — on all
//! cores. If every link holds for the stored predecessor, the whole chain holds.

use std::collections::{HashMap, VecDeque};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::chain::{event_hash, payload_matches, ChainBreak, Redaction};
use crate::{Backend, Checkpoint, EventMetadata, EventStore};

/// One stored event with every column its hashes cover; JSON columns as text (whoever needs them
/// parses them: in parallel when verifying, not at all when exporting).
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub position: i64,
    /// The writing transaction (PostgreSQL); 0 on SQLite.
    pub tx_id: u64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub event_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub metadata: String,
    pub payload: String,
    /// The `redaction` column (JSON text), if the row was redacted.
    pub redaction: Option<String>,
    pub hash_version: i16,
    pub payload_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl AuditRow {
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            tx_id: self.tx_id,
            position: self.position,
        }
    }

    /// Whether this row's payload and chain link are intact, given the stored hash of the stream's
    /// previous event (empty for the first).
    pub fn link_holds(&self, prev_hash: &[u8]) -> bool {
        let Ok(metadata) = serde_json::from_str::<EventMetadata>(&self.metadata) else {
            return false;
        };
        let Ok(payload) = serde_json::from_str::<serde_json::Value>(&self.payload) else {
            return false;
        };
        let redaction = match self
            .redaction
            .as_deref()
            .map(serde_json::from_str::<Redaction>)
        {
            None => None,
            Some(Ok(r)) => Some(r),
            Some(Err(_)) => return false,
        };
        if !payload_matches(
            self.hash_version,
            &payload,
            redaction.as_ref(),
            &self.payload_hash,
        ) {
            return false;
        }
        event_hash(
            prev_hash,
            &self.aggregate_type,
            &self.aggregate_id,
            self.sequence,
            &self.event_type,
            &self.event_version,
            self.event_id,
            &self.recorded_at,
            &metadata,
            &self.payload_hash,
        ) == self.hash
    }

    fn chain_break(&self) -> ChainBreak {
        ChainBreak {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
        }
    }
}

/// Which rows [`EventStore::audit_rows`] returns.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only rows with `position ≤ up_to` (pass a stable position, see [`EventStore::stable_position`]).
    pub up_to: i64,
    /// Only this aggregate type (e.g. `budget_ledger`).
    pub aggregate_type: Option<String>,
}

/// A commitment to the whole log up to `position` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDigest {
    pub position: i64,
    pub events: u64,
    pub hash: [u8; 32],
}

impl LogDigest {
    pub fn hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// One step of the digest fold.
pub fn digest_step(acc: &[u8; 32], position: i64, chain_hash: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(acc);
    h.update((position as u64).to_be_bytes());
    h.update(chain_hash);
    h.finalize().into()
}

/// Result of [`EventStore::verify_log`].
#[derive(Debug, Clone, Default)]
pub struct LogVerifyReport {
    /// The stable position the log was verified up to.
    pub position: i64,
    pub streams: u64,
    /// Events checked (up to the break, if any).
    pub events: u64,
    /// The first broken link in position order.
    pub first_break: Option<ChainBreak>,
    /// The digest of the verified log (only when no link is broken).
    pub digest: Option<LogDigest>,
}

/// Rows checked per parallel job.
const VERIFY_CHUNK: usize = 2_048;

const PG_AUDIT_SQL: &str = "SELECT position, tx_id::text AS tx, aggregate_type, aggregate_id, sequence, \
     event_type, event_version, event_id, recorded_at, metadata::text AS metadata, payload::text AS payload, \
     redaction::text AS redaction, hash_version, payload_hash, hash FROM events \
     WHERE position <= $1 AND ($2::text IS NULL OR aggregate_type = $2) ORDER BY position";

const SQLITE_AUDIT_SQL: &str = "SELECT position, aggregate_type, aggregate_id, sequence, event_type, \
     event_version, event_id, recorded_at, metadata, payload, redaction, hash_version, payload_hash, hash \
     FROM events WHERE position <= $1 AND ($2 IS NULL OR aggregate_type = $2) ORDER BY position";

fn decode_pg(r: sqlx::postgres::PgRow) -> anyhow::Result<AuditRow> {
    let tx: String = r.try_get("tx")?;
    Ok(AuditRow {
        position: r.try_get("position")?,
        tx_id: tx.parse().context("bad xid8")?,
        aggregate_type: r.try_get("aggregate_type")?,
        aggregate_id: r.try_get("aggregate_id")?,
        sequence: r.try_get("sequence")?,
        event_type: r.try_get("event_type")?,
        event_version: r.try_get("event_version")?,
        event_id: r.try_get("event_id")?,
        recorded_at: r.try_get("recorded_at")?,
        metadata: r.try_get("metadata")?,
        payload: r.try_get("payload")?,
        redaction: r.try_get("redaction")?,
        hash_version: r.try_get("hash_version")?,
        payload_hash: r.try_get("payload_hash")?,
        hash: r.try_get("hash")?,
    })
}

fn decode_sqlite(r: sqlx::sqlite::SqliteRow) -> anyhow::Result<AuditRow> {
    let event_id: String = r.try_get("event_id")?;
    let recorded_at: String = r.try_get("recorded_at")?;
    Ok(AuditRow {
        position: r.try_get("position")?,
        tx_id: 0,
        aggregate_type: r.try_get("aggregate_type")?,
        aggregate_id: r.try_get("aggregate_id")?,
        sequence: r.try_get("sequence")?,
        event_type: r.try_get("event_type")?,
        event_version: r.try_get("event_version")?,
        event_id: event_id.parse().context("bad event id")?,
        recorded_at: DateTime::parse_from_rfc3339(&recorded_at)
            .with_context(|| format!("bad time {recorded_at:?}"))?
            .with_timezone(&Utc),
        metadata: r.try_get("metadata")?,
        payload: r.try_get("payload")?,
        redaction: r.try_get("redaction")?,
        hash_version: r.try_get::<i64, _>("hash_version")? as i16,
        payload_hash: r.try_get("payload_hash")?,
        hash: r.try_get("hash")?,
    })
}

impl EventStore {
    /// The highest position below which nothing can still commit. PostgreSQL: a transaction that
    /// took a lower position may commit after a higher one, so this takes a SHARE lock on `events`
    /// for an instant: it waits for the appends in flight (they hold ROW EXCLUSIVE) to end, holds
    /// new ones back while it reads `max(position)`, and releases them; every later append gets a
    /// higher position from the sequence. SQLite has one writer, so its committed maximum is stable.
    pub async fn stable_position(&self) -> anyhow::Result<i64> {
        match &self.backend {
            Backend::Pg(s, ..) => {
                let mut tx = s.pool.begin().await.context("failed to begin")?;
                sqlx::query("SET LOCAL lock_timeout = '10s'")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("LOCK TABLE events IN SHARE MODE")
                    .execute(&mut *tx)
                    .await
                    .context("failed to wait for appends in flight")?;
                let p: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(p.unwrap_or(0))
            }
            Backend::Sqlite(s) => {
                let p: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
                    .fetch_one(&s.read)
                    .await?;
                Ok(p.unwrap_or(0))
            }
        }
    }

    /// Stored rows in position order, streamed (never all in memory), not upcast: exactly what
    /// the hashes cover.
    pub fn audit_rows(&self, filter: AuditFilter) -> BoxStream<'_, anyhow::Result<AuditRow>> {
        match &self.backend {
            Backend::Pg(s, ..) => sqlx::query(PG_AUDIT_SQL)
                .bind(filter.up_to)
                .bind(filter.aggregate_type)
                .fetch(&s.pool)
                .map(|r| decode_pg(r.context("failed to read events")?))
                .boxed(),
            Backend::Sqlite(s) => sqlx::query(SQLITE_AUDIT_SQL)
                .bind(filter.up_to)
                .bind(filter.aggregate_type)
                .fetch(&s.read)
                .map(|r| decode_sqlite(r.context("failed to read events")?))
                .boxed(),
        }
    }

    /// How many rows [`Self::audit_rows`] would return (for progress bars).
    pub async fn audit_count(&self, filter: &AuditFilter) -> anyhow::Result<i64> {
        let sql = "SELECT count(*) FROM events WHERE position <= $1 AND ($2 IS NULL OR aggregate_type = $2)";
        Ok(match &self.backend {
            Backend::Pg(s, ..) => {
                sqlx::query_scalar::<_, i64>(&sql.replace("$2 IS", "$2::text IS"))
                    .bind(filter.up_to)
                    .bind(filter.aggregate_type.clone())
                    .fetch_one(&s.pool)
                    .await?
            }
            Backend::Sqlite(s) => {
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(filter.up_to)
                    .bind(filter.aggregate_type.clone())
                    .fetch_one(&s.read)
                    .await?
            }
        })
    }

    /// The digest of the stored log up to `position` (from the stored chain hashes; it does not
    /// re-verify them: [`Self::verify_log`] does).
    pub async fn digest(&self, position: i64) -> anyhow::Result<LogDigest> {
        let sql = "SELECT position, hash FROM events WHERE position <= $1 ORDER BY position";
        let mut acc = [0u8; 32];
        let mut events = 0u64;
        let mut fold = |p: i64, h: Vec<u8>| {
            acc = digest_step(&acc, p, &h);
            events += 1;
        };
        match &self.backend {
            Backend::Pg(s, ..) => {
                let mut rows = sqlx::query_as::<_, (i64, Vec<u8>)>(sql)
                    .bind(position)
                    .fetch(&s.pool);
                while let Some((p, h)) = rows.try_next().await.context("failed to read events")? {
                    fold(p, h);
                }
            }
            Backend::Sqlite(s) => {
                let mut rows = sqlx::query_as::<_, (i64, Vec<u8>)>(sql)
                    .bind(position)
                    .fetch(&s.read);
                while let Some((p, h)) = rows.try_next().await.context("failed to read events")? {
                    fold(p, h);
                }
            }
        }
        Ok(LogDigest {
            position,
            events,
            hash: acc,
        })
    }

    /// The digest of the whole log up to its current stable position.
    pub async fn log_digest(&self) -> anyhow::Result<LogDigest> {
        let p = self.stable_position().await?;
        self.digest(p).await
    }

    /// Checks every event up to `up_to` (a stable position): its payload against its
    /// `payload_hash` (redactions included) and its chain link, in parallel on all cores; and
    /// folds the digest of the verified log. Stops at the first broken link.
    pub async fn verify_log(&self, up_to: i64) -> anyhow::Result<LogVerifyReport> {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let mut rows = self.audit_rows(AuditFilter {
            up_to,
            aggregate_type: None,
        });
        // aggregate type → aggregate id → (last sequence, last stored hash)
        let mut heads: HashMap<String, HashMap<String, (i64, Vec<u8>)>> = HashMap::new();
        let mut acc = [0u8; 32];
        let mut events = 0u64;
        let mut chunk: Vec<(AuditRow, Vec<u8>)> = Vec::with_capacity(VERIFY_CHUNK);
        let mut jobs: VecDeque<tokio::task::JoinHandle<Option<ChainBreak>>> = VecDeque::new();
        let mut first_break = None;
        let spawn = |chunk: Vec<(AuditRow, Vec<u8>)>| {
            tokio::task::spawn_blocking(move || {
                chunk
                    .iter()
                    .find(|(row, prev)| !row.link_holds(prev))
                    .map(|(row, _)| row.chain_break())
            })
        };
        while let Some(row) = rows.try_next().await? {
            if !heads.contains_key(&row.aggregate_type) {
                heads.insert(row.aggregate_type.clone(), HashMap::new());
            }
            let by_id = heads.get_mut(&row.aggregate_type).expect("inserted");
            let prev = match by_id.get_mut(&row.aggregate_id) {
                Some((seq, hash)) => {
                    if row.sequence != *seq + 1 {
                        // A missing or repeated sequence: broken here, unless earlier rows are.
                        jobs.push_back(spawn(std::mem::take(&mut chunk)));
                        let b = row.chain_break();
                        jobs.push_back(tokio::spawn(async move { Some(b) }));
                        break;
                    }
                    *seq = row.sequence;
                    std::mem::replace(hash, row.hash.clone())
                }
                None => {
                    by_id.insert(row.aggregate_id.clone(), (row.sequence, row.hash.clone()));
                    Vec::new()
                }
            };
            acc = digest_step(&acc, row.position, &row.hash);
            events += 1;
            chunk.push((row, prev));
            if chunk.len() == VERIFY_CHUNK {
                jobs.push_back(spawn(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(VERIFY_CHUNK),
                )));
                if jobs.len() >= workers {
                    let done = jobs.pop_front().expect("non-empty");
                    if let Some(b) = done.await.context("verification task failed")? {
                        first_break = Some(b);
                        break;
                    }
                }
            }
        }
        drop(rows);
        if first_break.is_none() && !chunk.is_empty() {
            jobs.push_back(spawn(chunk));
        }
        for job in jobs {
            if first_break.is_some() {
                job.abort();
                continue;
            }
            first_break = job.await.context("verification task failed")?;
        }
        let streams = heads.values().map(|m| m.len() as u64).sum();
        let digest = first_break.is_none().then_some(LogDigest {
            position: up_to,
            events,
            hash: acc,
        });
        Ok(LogVerifyReport {
            position: up_to,
            streams,
            events,
            first_break,
            digest,
        })
    }
}
