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
//! cores. If every link holds for the stored predecessor, the whole chain holds. Every row is
//! checked (a break does not stop the pass), and the first break of every broken stream is
//! reported with what broke: content hash, chain hash or sequence. A digest is only given for a
//! log that verifies ([`EventStore::log_digest`]; [`BrokenLog`] otherwise).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::chain::{payload_matches, ChainBreak, Redaction};
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
        self.view().check(prev_hash).is_none()
    }

    fn view(&self) -> RowView<'_> {
        RowView {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            event_id: self.event_id,
            recorded_at: self.recorded_at,
            metadata: &self.metadata,
            payload: &self.payload,
            redaction: self.redaction.as_deref(),
            hash_version: self.hash_version,
            payload_hash: &self.payload_hash,
            hash: &self.hash,
        }
    }
}

/// What broke at the first broken event of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// The stored payload (with its redaction record) does not recompute to its `payload_hash`.
    Content,
    /// The header, the link to the previous event or the content hash does not recompute to the
    /// stored chain hash (also: metadata that is not exactly the hashed keys).
    Chain,
    /// The stream's sequence numbers do not run 1, 2, 3, …: this sequence was expected.
    Sequence { expected: i64 },
}

impl BreakKind {
    /// `content`, `chain` or `sequence` (the CLI's and the route's word for it).
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakKind::Content => "content",
            BreakKind::Chain => "chain",
            BreakKind::Sequence { .. } => "sequence",
        }
    }

    /// A sentence for the auditor.
    pub fn describe(&self, sequence: i64) -> String {
        match self {
            BreakKind::Content => {
                "content hash (the payload does not match its content_hash)".to_string()
            }
            BreakKind::Chain if sequence <= 1 => {
                "chain hash (the header or content_hash does not match the chain_hash)".to_string()
            }
            BreakKind::Chain => format!(
                "chain hash (the header or the link to sequence {} does not match)",
                sequence - 1
            ),
            BreakKind::Sequence { expected } => {
                format!("sequence (expected {expected}: an event is missing or repeated)")
            }
        }
    }
}

/// The first broken event of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamBreak {
    pub at: ChainBreak,
    pub position: i64,
    pub kind: BreakKind,
}

impl std::fmt::Display for StreamBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stream {}/{} at sequence {} (position {}): {}",
            self.at.aggregate_type,
            self.at.aggregate_id,
            self.at.sequence,
            self.position,
            self.kind.describe(self.at.sequence)
        )
    }
}

/// The error [`EventStore::log_digest`] answers for a log whose chains are broken: no digest is
/// given for it (docs/AUDIT.md).
#[derive(Debug, Clone)]
pub struct BrokenLog {
    /// The stable position the log was verified up to.
    pub position: i64,
    pub streams: u64,
    /// Every broken stream, first break of each, in position order.
    pub breaks: Vec<StreamBreak>,
}

impl std::fmt::Display for BrokenLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the log does not verify ({} of {} streams broken",
            self.breaks.len(),
            self.streams
        )?;
        if let Some(b) = self.breaks.first() {
            write!(f, "; first: {b}")?;
        }
        write!(f, "): no digest is given for it")
    }
}

impl std::error::Error for BrokenLog {}

/// The columns of one stored event that its hashes cover, borrowed (from an [`AuditRow`] or
/// straight from a database row).
struct RowView<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    sequence: i64,
    event_type: &'a str,
    event_version: &'a str,
    event_id: Uuid,
    recorded_at: DateTime<Utc>,
    metadata: &'a str,
    payload: &'a str,
    redaction: Option<&'a str>,
    hash_version: i16,
    payload_hash: &'a [u8],
    hash: &'a [u8],
}

impl RowView<'_> {
    /// `None` when the payload matches `payload_hash` and the chain link holds for `prev_hash`.
    /// Version-2 payloads without redactions and the header are hashed straight from the stored
    /// text; anything else through `serde_json::Value`, as before.
    fn check(&self, prev_hash: &[u8]) -> Option<BreakKind> {
        let fast = (self.hash_version == 2 && self.redaction.is_none())
            .then(|| crate::fastjson::merkle_root_text(self.payload))
            .flatten();
        let content_ok = match fast {
            Some(root) => root[..] == *self.payload_hash,
            None => self.content_matches_slow(),
        };
        if !content_ok {
            return Some(BreakKind::Content);
        }
        let header = match crate::fastjson::canonical_header_text(
            self.aggregate_type,
            self.aggregate_id,
            self.sequence,
            self.event_type,
            self.event_version,
            self.event_id,
            &self.recorded_at,
            self.metadata,
        ) {
            Err(()) => return Some(BreakKind::Chain),
            Ok(Some(h)) => h,
            Ok(None) => {
                let Ok(metadata) = serde_json::from_str::<EventMetadata>(self.metadata) else {
                    return Some(BreakKind::Chain);
                };
                crate::chain::canonical_header(
                    self.aggregate_type,
                    self.aggregate_id,
                    self.sequence,
                    self.event_type,
                    self.event_version,
                    self.event_id,
                    &self.recorded_at,
                    &metadata,
                )
            }
        };
        let mut h = Sha256::new();
        h.update(prev_hash);
        h.update(&header);
        h.update(self.payload_hash);
        (h.finalize()[..] != *self.hash).then_some(BreakKind::Chain)
    }

    fn content_matches_slow(&self) -> bool {
        let Ok(payload) = serde_json::from_str::<serde_json::Value>(self.payload) else {
            return false;
        };
        let redaction = match self.redaction.map(serde_json::from_str::<Redaction>) {
            None => None,
            Some(Ok(r)) => Some(r),
            Some(Err(_)) => return false,
        };
        payload_matches(
            self.hash_version,
            &payload,
            redaction.as_ref(),
            self.payload_hash,
        )
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
    /// Events checked (every one up to `position`).
    pub events: u64,
    /// The first broken event in position order.
    pub first_break: Option<ChainBreak>,
    /// Every broken stream (its first broken event and what broke there), in position order.
    pub breaks: Vec<StreamBreak>,
    /// The digest of the verified log (only when no link is broken).
    pub digest: Option<LogDigest>,
}

/// Rows checked per parallel job.
const VERIFY_CHUNK: usize = 2_048;

/// The columns `verify_log` reads on PostgreSQL, by index (see `PgVerifyRow`).
const PG_VERIFY_SQL: &str = "SELECT position, aggregate_type, aggregate_id, sequence, event_type, \
     event_version, event_id, recorded_at, metadata::text, payload::text, redaction::text, hash_version, \
     payload_hash, hash FROM events WHERE position <= $1 ORDER BY position";

/// A row `verify_log` can check: what the sequential pass needs (stream, sequence, position, chain
/// hash) cheaply, and the full check (done on a worker thread).
trait VerifyRow: Send + 'static {
    fn head(&self) -> anyhow::Result<(i64, &str, &str, i64, &[u8])>;
    fn check(&self, prev_hash: &[u8]) -> anyhow::Result<Option<BreakKind>>;
}

impl VerifyRow for AuditRow {
    fn head(&self) -> anyhow::Result<(i64, &str, &str, i64, &[u8])> {
        Ok((
            self.position,
            &self.aggregate_type,
            &self.aggregate_id,
            self.sequence,
            &self.hash,
        ))
    }

    fn check(&self, prev_hash: &[u8]) -> anyhow::Result<Option<BreakKind>> {
        Ok(self.view().check(prev_hash))
    }
}

/// A row of `PG_VERIFY_SQL`, decoded only on the worker that checks it (text borrowed, not copied).
struct PgVerifyRow(sqlx::postgres::PgRow);

impl VerifyRow for PgVerifyRow {
    fn head(&self) -> anyhow::Result<(i64, &str, &str, i64, &[u8])> {
        let r = &self.0;
        Ok((
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(13)?,
        ))
    }

    fn check(&self, prev_hash: &[u8]) -> anyhow::Result<Option<BreakKind>> {
        let r = &self.0;
        let view = RowView {
            aggregate_type: r.try_get(1)?,
            aggregate_id: r.try_get(2)?,
            sequence: r.try_get(3)?,
            event_type: r.try_get(4)?,
            event_version: r.try_get(5)?,
            event_id: r.try_get(6)?,
            recorded_at: r.try_get(7)?,
            metadata: r.try_get(8)?,
            payload: r.try_get(9)?,
            redaction: r.try_get(10)?,
            hash_version: r.try_get(11)?,
            payload_hash: r.try_get(12)?,
            hash: r.try_get(13)?,
        };
        Ok(view.check(prev_hash))
    }
}

/// A failed check: (position, aggregate type, aggregate id, sequence, what broke).
type Failure = (i64, String, String, i64, BreakKind);

/// Checks every row of `rows` (in position order) on all cores: each row's payload and its link
/// to the stored hash of its stream's previous row; sequences and the digest in this pass.
async fn verify_rows<R: VerifyRow>(
    mut rows: BoxStream<'_, anyhow::Result<R>>,
    up_to: i64,
    seen: &AtomicU64,
) -> anyhow::Result<LogVerifyReport> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    // aggregate type → aggregate id → (last sequence, last stored hash)
    let mut heads: HashMap<String, HashMap<String, (i64, Vec<u8>)>> = HashMap::new();
    // (aggregate type, aggregate id) → the stream's earliest failure so far
    let mut first: HashMap<(String, String), StreamBreak> = HashMap::new();
    let mut note = |(position, t, id, sequence, kind): Failure| {
        let b = StreamBreak {
            at: ChainBreak {
                aggregate_type: t.clone(),
                aggregate_id: id.clone(),
                sequence,
            },
            position,
            kind,
        };
        match first.entry((t, id)) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if position < e.get().position {
                    e.insert(b);
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(b);
            }
        }
    };
    let mut acc = [0u8; 32];
    let mut events = 0u64;
    let mut chunk: Vec<(R, Vec<u8>)> = Vec::with_capacity(VERIFY_CHUNK);
    let mut jobs: VecDeque<tokio::task::JoinHandle<anyhow::Result<Vec<Failure>>>> = VecDeque::new();
    let spawn = |chunk: Vec<(R, Vec<u8>)>| {
        tokio::task::spawn_blocking(move || {
            let mut failed = Vec::new();
            for (row, prev) in &chunk {
                if let Some(kind) = row.check(prev)? {
                    let (position, t, id, sequence, _) = row.head()?;
                    failed.push((position, t.to_string(), id.to_string(), sequence, kind));
                }
            }
            anyhow::Ok(failed)
        })
    };
    while let Some(row) = rows.try_next().await? {
        let (position, t, id, sequence, hash) = row.head()?;
        if !heads.contains_key(t) {
            heads.insert(t.to_string(), HashMap::new());
        }
        let by_id = heads.get_mut(t).expect("inserted");
        let (expected, prev) = match by_id.get_mut(id) {
            Some((seq, last)) => {
                let expected = *seq + 1;
                *seq = sequence;
                (expected, std::mem::replace(last, hash.to_vec()))
            }
            None => {
                by_id.insert(id.to_string(), (sequence, hash.to_vec()));
                (1, Vec::new())
            }
        };
        if sequence != expected {
            note((
                position,
                t.to_string(),
                id.to_string(),
                sequence,
                BreakKind::Sequence { expected },
            ));
        }
        acc = digest_step(&acc, position, hash);
        events += 1;
        chunk.push((row, prev));
        if chunk.len() == VERIFY_CHUNK {
            seen.fetch_add(VERIFY_CHUNK as u64, Ordering::Relaxed);
            jobs.push_back(spawn(std::mem::replace(
                &mut chunk,
                Vec::with_capacity(VERIFY_CHUNK),
            )));
            if jobs.len() >= 2 * workers {
                let done = jobs.pop_front().expect("non-empty");
                for f in done.await.context("verification task failed")?? {
                    note(f);
                }
            }
        }
    }
    drop(rows);
    if !chunk.is_empty() {
        jobs.push_back(spawn(chunk));
    }
    for job in jobs {
        for f in job.await.context("verification task failed")?? {
            note(f);
        }
    }
    seen.store(events, Ordering::Relaxed);
    let streams = heads.values().map(|m| m.len() as u64).sum();
    let mut breaks: Vec<StreamBreak> = first.into_values().collect();
    breaks.sort_by_key(|b| b.position);
    let digest = breaks.is_empty().then_some(LogDigest {
        position: up_to,
        events,
        hash: acc,
    });
    Ok(LogVerifyReport {
        position: up_to,
        streams,
        events,
        first_break: breaks.first().map(|b| b.at.clone()),
        breaks,
        digest,
    })
}

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

    /// The digest of the whole log up to its current stable position, for a log that verifies:
    /// every event is checked first ([`Self::verify_log`]); a broken log answers [`BrokenLog`]
    /// (downcast the error) instead of a digest.
    pub async fn log_digest(&self) -> anyhow::Result<LogDigest> {
        let p = self.stable_position().await?;
        let r = self.verify_log(p).await?;
        match r.digest {
            Some(d) => Ok(d),
            None => Err(BrokenLog {
                position: r.position,
                streams: r.streams,
                breaks: r.breaks,
            }
            .into()),
        }
    }

    /// Checks every event up to `up_to` (a stable position): its sequence, its payload against
    /// its `payload_hash` (redactions included) and its chain link, in parallel on all cores; and
    /// folds the digest of the verified log. Reports every broken stream (its first break).
    pub async fn verify_log(&self, up_to: i64) -> anyhow::Result<LogVerifyReport> {
        self.verify_log_counted(up_to, &AtomicU64::new(0)).await
    }

    /// [`Self::verify_log`], counting the events read so far in `seen` (for progress displays).
    pub async fn verify_log_counted(
        &self,
        up_to: i64,
        seen: &AtomicU64,
    ) -> anyhow::Result<LogVerifyReport> {
        match &self.backend {
            Backend::Pg(s, ..) => {
                let rows = sqlx::query(PG_VERIFY_SQL)
                    .bind(up_to)
                    .fetch(&s.pool)
                    .map(|r| Ok(PgVerifyRow(r.context("failed to read events")?)))
                    .boxed();
                verify_rows(rows, up_to, seen).await
            }
            Backend::Sqlite(_) => {
                let rows = self.audit_rows(AuditFilter {
                    up_to,
                    aggregate_type: None,
                });
                verify_rows(rows, up_to, seen).await
            }
        }
    }
}
