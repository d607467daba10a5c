//! The event store: an append-only, hash-chained log of domain events with a gap-safe global order,
//! on PostgreSQL (multi-process) or an embedded SQLite file, with identical behaviour.

mod audit;
mod chain;
pub mod checkpoints;
mod db;
pub mod fastjson;
pub mod follow;
mod group;
mod notify;
pub mod outage;
mod pg;
mod redact;
mod sqlite;
mod types;
mod upcast;

pub use audit::{
    digest_step, AuditFilter, AuditRow, BreakKind, BrokenLog, LogDigest, LogVerifyReport,
    StreamBreak,
};
pub use chain::{
    canonical_header, canonical_json, event_hash, format_time, merkle_root, payload_hash,
    payload_hash_v1, ChainBreak, Redaction, HASH_VERSION,
};
pub use db::{placeholders, Arg, Db, Tx};
pub use follow::{Backoff, Follower};
pub use group::{GroupCommitStats, MAX_BATCH_APPENDS, MAX_BATCH_EVENTS};
pub use redact::{RedactRequest, MAX_REDACTIONS_PER_CALL};
pub use types::*;
pub use upcast::Upcasters;

use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

/// Largest batch a reader may ask of the global log in one call.
pub const MAX_LOG_BATCH: i64 = 1_000;
/// Largest number of events one append may carry.
pub const MAX_EVENTS_PER_APPEND: usize = 100;

/// Handle to the event store; cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    backend: Backend,
    upcasters: Upcasters,
    /// Bumped after every local append and every NOTIFY from another process; readers wait on it.
    wake: watch::Sender<u64>,
    /// Bumped when another process reports that a projection checkpoint moved.
    checkpoint_wake: watch::Sender<u64>,
    /// The process's log follower (its tail starts with its first consumer).
    follow: std::sync::Arc<follow::Shared>,
    /// Appends waiting for, or in, this process's group commit.
    appends: std::sync::Arc<group::Queue>,
}

#[derive(Clone)]
enum Backend {
    Pg(pg::PgStore, notify::Notifier, notify::Notifier),
    Sqlite(sqlite::SqliteStore),
}

impl EventStore {
    /// Connects to `url` (`postgres://…` or `sqlite://…`) and runs the migrations.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        Self::connect_with(url, max_connections, outage::DEFAULT_ACQUIRE_TIMEOUT).await
    }

    /// [`EventStore::connect`] with how long a caller waits for a pooled connection before an
    /// outage error (`sqlx::Error::PoolTimedOut`, see [`outage`]).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        acquire_timeout: std::time::Duration,
    ) -> anyhow::Result<Self> {
        let (wake, _) = watch::channel(0);
        let (checkpoint_wake, _) = watch::channel(0);
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut pg = pg::PgStore::connect(url, max_connections, acquire_timeout)
                .await
                .context("failed to open the PostgreSQL event store")?;
            let own = notify::OwnPids::default();
            let events =
                notify::Notifier::spawn(url.to_string(), notify::EVENTS_CHANNEL, own.clone());
            let checkpoints =
                notify::Notifier::spawn(url.to_string(), notify::CHECKPOINTS_CHANNEL, own.clone());
            pg.set_own_pids(own);
            Backend::Pg(pg, events, checkpoints)
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite(
                sqlite::SqliteStore::connect(url, max_connections)
                    .await
                    .context("failed to open the SQLite event store")?,
            )
        } else {
            anyhow::bail!(
                "DATABASE_URL must start with postgres:// or sqlite: (got another scheme)"
            );
        };
        let store = Self {
            backend,
            wake,
            checkpoint_wake,
            follow: Default::default(),
            upcasters: Upcasters::default(),
            appends: Default::default(),
        };
        if let Backend::Pg(pg, ..) = &store.backend {
            pg.spawn_listener(store.wake.clone(), store.checkpoint_wake.clone());
        }
        Ok(store)
    }

    /// The database holding the log, for read models that must commit with their checkpoint.
    pub fn db(&self) -> Db {
        match &self.backend {
            Backend::Pg(s, ..) => Db::Pg(s.pool.clone()),
            Backend::Sqlite(s) => Db::Sqlite {
                read: s.read.clone(),
                write: s.write.clone(),
            },
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Pg(..) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// Registers the upcasters applied to every event read from this store.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// Loads the events of one stream of `A` with `sequence > after_sequence`, in order, upcast.
    pub async fn load<A: cqrs_es::Aggregate>(
        &self,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> anyhow::Result<Vec<LoadedEvent>> {
        let mut events = match &self.backend {
            Backend::Pg(s, ..) => s.load::<A>(aggregate_id, after_sequence).await?,
            Backend::Sqlite(s) => s.load::<A>(aggregate_id, after_sequence).await?,
        };
        for e in &mut events {
            self.upcasters
                .upcast_parts(&mut e.event_type, &mut e.event_version, &mut e.payload);
        }
        Ok(events)
    }

    /// Appends events to one stream if its last sequence is still `expected_sequence`, together
    /// with the request's claims and idempotency record, in one transaction. Appends made
    /// concurrently in this process share that transaction (group commit, see `group`); each
    /// still succeeds or fails on its own.
    pub async fn append(&self, req: AppendRequest) -> Result<Vec<StoredEvent>, AppendError> {
        if req.events.is_empty() || req.events.len() > MAX_EVENTS_PER_APPEND {
            return Err(AppendError::Store(anyhow::anyhow!(
                "an append carries 1 to {MAX_EVENTS_PER_APPEND} events, got {}",
                req.events.len()
            )));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.appends.push(group::Waiting { req, reply }) {
            let store = self.clone();
            tokio::spawn(async move { store.flush_appends().await });
        }
        answer.await.unwrap_or_else(|_| {
            Err(AppendError::Store(anyhow::anyhow!(
                "the append was interrupted (its flush task stopped); it may or may not have committed"
            )))
        })
    }

    /// The flush task: commits batches of queued appends until none is left, then wakes readers
    /// once per batch.
    async fn flush_appends(&self) {
        let mut guard = group::FlushGuard {
            queue: &self.appends,
            done: false,
        };
        while let Some(batch) = self.appends.next_batch() {
            let (reqs, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|w| (w.req, w.reply)).unzip();
            let results = self.commit_batch(reqs).await;
            let outage = results.iter().find_map(|r| match r {
                Err(AppendError::Store(e)) if outage::is_unavailable(e) => Some(format!("{e:#}")),
                _ => None,
            });
            for (result, reply) in results.into_iter().zip(replies) {
                // A caller that stopped waiting no longer needs its answer.
                let _ = reply.send(result);
            }
            if let Some(msg) = outage {
                // Fail fast: the appends queued behind this batch would each wait for the pool.
                for w in self.appends.drain_waiting() {
                    let e = anyhow::Error::new(outage::Unavailable(msg.clone()));
                    let _ = w.reply.send(Err(AppendError::Store(e)));
                }
            }
        }
        guard.done = true;
    }

    /// Commits one batch (appends to distinct streams) and wakes readers once.
    async fn commit_batch(&self, reqs: Vec<AppendRequest>) -> Vec<group::AppendResult> {
        let results = match &self.backend {
            Backend::Pg(s, ..) => s.append_batch(reqs).await,
            Backend::Sqlite(s) => s.append_batch(reqs).await,
        };
        if results
            .iter()
            .any(|r| matches!(r, Ok(stored) if !stored.is_empty()))
        {
            self.wake.send_modify(|n| *n = n.wrapping_add(1));
            if let Backend::Pg(_, events, _) = &self.backend {
                events.ping();
            }
        }
        results
    }

    /// Test support: commits exactly these appends (to distinct streams) as one batch, the way
    /// the group commit does, so a test can choose what shares a transaction.
    #[doc(hidden)]
    pub async fn append_batch_for_tests(
        &self,
        reqs: Vec<AppendRequest>,
    ) -> Vec<Result<Vec<StoredEvent>, AppendError>> {
        let streams: std::collections::HashSet<_> = reqs
            .iter()
            .map(|r| (&r.aggregate_type, &r.aggregate_id))
            .collect();
        assert_eq!(streams.len(), reqs.len(), "a batch holds distinct streams");
        self.commit_batch(reqs).await
    }

    /// What the group commit of this process has done so far.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.appends.stats()
    }

    /// Reads committed events after `after`, in log order. Never skips an event that commits
    /// later with a lower position (PostgreSQL: only transactions below the snapshot's xmin).
    pub async fn read_log(&self, after: Checkpoint, limit: i64) -> anyhow::Result<LogBatch> {
        let limit = limit.clamp(1, MAX_LOG_BATCH);
        let mut batch = match &self.backend {
            Backend::Pg(s, ..) => s.read_log(after, limit).await?,
            Backend::Sqlite(s) => s.read_log(after, limit).await?,
        };
        for e in &mut batch.events {
            self.upcasters
                .upcast_parts(&mut e.event_type, &mut e.event_version, &mut e.payload);
        }
        Ok(batch)
    }

    /// The checkpoint of the event at `position`, to resume a reader that only kept a position.
    pub async fn checkpoint_of(&self, position: i64) -> anyhow::Result<Option<Checkpoint>> {
        if position <= 0 {
            return Ok(Some(Checkpoint::START));
        }
        match &self.backend {
            Backend::Pg(s, ..) => s.checkpoint_of(position).await,
            Backend::Sqlite(_) => Ok(Some(Checkpoint { tx_id: 0, position })),
        }
    }

    /// The checkpoint of the last event a gap-safe reader may take now: reading the log after it
    /// yields exactly the events that become readable later (a live tail starts here).
    pub async fn log_head(&self) -> anyhow::Result<Checkpoint> {
        match &self.backend {
            Backend::Pg(s, ..) => s.log_head().await,
            Backend::Sqlite(s) => s.log_head().await,
        }
    }

    /// Highest position written so far (committed or not yet visible), for lag metrics.
    pub async fn head_position(&self) -> anyhow::Result<i64> {
        match &self.backend {
            Backend::Pg(s, ..) => s.head_position().await,
            Backend::Sqlite(s) => s.head_position().await,
        }
    }

    /// A stored idempotent response, if this user already used this key.
    pub async fn idempotent_response(
        &self,
        user_id: &str,
        key: &str,
    ) -> anyhow::Result<Option<IdempotencyRecord>> {
        match &self.backend {
            Backend::Pg(s, ..) => s.idempotent_response(user_id, key).await,
            Backend::Sqlite(s) => s.idempotent_response(user_id, key).await,
        }
    }

    /// Recomputes every stream's hash chain; returns the first broken link, if any.
    /// (Up to the log's stable position; see [`Self::verify_log`].)
    pub async fn verify_chains(&self) -> anyhow::Result<VerifyReport> {
        let up_to = self.stable_position().await?;
        let r = self.verify_log(up_to).await?;
        Ok(VerifyReport {
            streams: r.streams,
            events: r.events,
            first_break: r.first_break,
        })
    }

    /// The upcasters applied to events read from this store.
    pub fn upcasters(&self) -> &Upcasters {
        &self.upcasters
    }

    /// A receiver that changes whenever new events may be readable.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// The log follower of this store: one tail that reads each new batch once and feeds every
    /// consumer registered with [`Follower::spawn`].
    pub fn follower(&self) -> Follower {
        Follower::new(self.clone(), self.follow.clone())
    }

    /// Wakes readers, e.g. after a checkpoint moved in another component.
    pub fn nudge(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Tells other processes (API replicas waiting for read-your-writes) that a projection
    /// checkpoint moved. Coalesced; a no-op on SQLite.
    pub fn checkpoint_moved(&self) {
        if let Backend::Pg(_, _, checkpoints) = &self.backend {
            checkpoints.ping();
        }
    }

    /// A receiver that changes when another process reports a checkpoint move.
    pub fn subscribe_checkpoints(&self) -> watch::Receiver<u64> {
        self.checkpoint_wake.subscribe()
    }

    /// Runs `f` while holding the leadership lock `name` (PostgreSQL advisory lock). Returns
    /// `None` at once if another process holds it. SQLite is single-process: always leader.
    pub async fn try_lead(&self, name: &str) -> anyhow::Result<Option<Leadership>> {
        match &self.backend {
            Backend::Pg(s, ..) => s.try_lead(name).await,
            Backend::Sqlite(_) => Ok(Some(Leadership::default())),
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(2), async {
            match &self.backend {
                Backend::Pg(s, ..) => sqlx::query("SELECT 1").execute(&s.pool).await.map(|_| ()),
                Backend::Sqlite(s) => sqlx::query("SELECT 1").execute(&s.read).await.map(|_| ()),
            }
        })
        .await
        .context("database ping timed out")?
        .context("database ping failed")
    }

    /// Test and audit support: overwrite one stored payload without touching its hash.
    #[doc(hidden)]
    pub async fn tamper_payload_for_tests(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
        payload: serde_json::Value,
    ) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Pg(s, ..) => {
                sqlx::query("UPDATE events SET payload = $1 WHERE aggregate_type = $2 AND aggregate_id = $3 AND sequence = $4")
                    .bind(payload).bind(aggregate_type).bind(aggregate_id).bind(sequence)
                    .execute(&s.pool).await?;
            }
            Backend::Sqlite(s) => {
                sqlx::query("UPDATE events SET payload = $1 WHERE aggregate_type = $2 AND aggregate_id = $3 AND sequence = $4")
                    .bind(payload.to_string()).bind(aggregate_type).bind(aggregate_id).bind(sequence)
                    .execute(&s.write).await?;
            }
        }
        Ok(())
    }
}
