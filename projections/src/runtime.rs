//! The projection runtime: one task per projection reads the global log from its checkpoint and
//! commits each batch of read-model changes together with the new checkpoint. It wakes on local
//! appends and on NOTIFY from other processes; only the holder of the projection's advisory lock
//! applies anything, and a conditional checkpoint update makes a lost lock harmless.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use eventstore::{tx_exec, Checkpoint, Db, EventStore, StoredEvent, Tx};
use tokio::sync::watch;
use tracing::instrument;

/// Events applied per transaction.
pub const BATCH_SIZE: i64 = 500;
/// Events a rebuild applies per `apply_batch` call (all in its one transaction).
pub const REBUILD_BATCH: usize = 5_000;
/// Longest a projection leaves its stored checkpoint behind while skipping events it ignores.
pub const LAZY_SAVE: Duration = Duration::from_secs(1);
/// Fallback poll when no wake-up arrives (a missed NOTIFY can only delay, never lose, an event).
pub const IDLE_POLL: Duration = Duration::from_secs(2);

#[async_trait]
pub trait Projection: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The aggregate types whose events can change this read model (`None`: all). Appends of
    /// other types do not wake the worker, and a batch of only such events needs no transaction.
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        None
    }

    fn handles(&self, aggregate_type: &str) -> bool {
        self.aggregate_types()
            .is_none_or(|t| t.contains(&aggregate_type))
    }
    /// Applies one event inside the batch's transaction. Events it does not know are ignored.
    async fn apply(&self, tx: &mut Tx, event: &StoredEvent) -> anyhow::Result<()>;
    /// Applies a batch in order. Override to write runs of similar events in bulk.
    async fn apply_batch(&self, tx: &mut Tx, events: &[StoredEvent]) -> anyhow::Result<()> {
        for e in events {
            self.apply(tx, e).await.with_context(|| {
                format!("{} failed on event at position {}", self.name(), e.position)
            })?;
        }
        Ok(())
    }
    /// Deletes every row of the read model (for a rebuild).
    async fn reset(&self, tx: &mut Tx) -> anyhow::Result<()>;
}

pub use eventstore::checkpoints::{load_checkpoint, save_checkpoint};

/// Starts and tracks the projection workers of this process.
#[derive(Clone)]
pub struct ProjectionRunner {
    store: EventStore,
    projections: Vec<Arc<dyn Projection>>,
    progress: Arc<HashMap<&'static str, watch::Sender<Checkpoint>>>,
}

impl ProjectionRunner {
    pub fn new(store: EventStore, projections: Vec<Arc<dyn Projection>>) -> Self {
        let progress = projections
            .iter()
            .map(|p| (p.name(), watch::channel(Checkpoint::START).0))
            .collect();
        Self {
            store,
            projections,
            progress: Arc::new(progress),
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.projections.iter().map(|p| p.name()).collect()
    }

    /// Spawns one worker task per projection.
    pub fn spawn(&self) {
        for p in &self.projections {
            let store = self.store.clone();
            let p = p.clone();
            let progress = self.progress[p.name()].clone();
            tokio::spawn(async move { run_forever(store, p, progress).await });
        }
    }

    /// Waits until projection `name` has applied the event at `target`, or the deadline passes.
    /// Works whether or not this process runs the worker (it then polls the checkpoint table).
    pub async fn wait_for(&self, name: &str, target: Checkpoint, deadline: Duration) -> bool {
        let Some(sender) = self.progress.get(name) else {
            return false;
        };
        let mut rx = sender.subscribe();
        let mut remote = self.store.subscribe_checkpoints();
        let db = self.store.db();
        let wait = async {
            loop {
                if *rx.borrow_and_update() >= target {
                    return true;
                }
                // Local progress wakes at once; a worker in another process announces its moves
                // by NOTIFY; a slow poll covers a lost notification.
                let check_table = tokio::select! {
                    changed = rx.changed() => { if changed.is_err() { return false; } false }
                    _ = remote.changed() => true,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => true,
                };
                if check_table {
                    if let Ok(cp) = load_checkpoint_db(&db, name).await {
                        if cp >= target {
                            return true;
                        }
                    }
                }
            }
        };
        tokio::time::timeout(deadline, wait).await.unwrap_or(false)
    }

    /// The checkpoint this process last saw for `name`.
    pub fn progress(&self, name: &str) -> Option<Checkpoint> {
        self.progress.get(name).map(|s| *s.borrow())
    }

    /// Drops projection `name`'s read model and rebuilds it from the whole log, in one
    /// transaction (readers see the old model until the new one commits).
    pub async fn rebuild(&self, name: &str) -> anyhow::Result<u64> {
        self.rebuild_with(name, &|_| {}).await
    }

    /// [`Self::rebuild`], telling `progress` the position applied so far after each batch. The
    /// log is read ahead on another connection while a batch is applied, and a rebuild applies
    /// [`REBUILD_BATCH`] events per `apply_batch` (bulk writes pay off with size).
    pub async fn rebuild_with(
        &self,
        name: &str,
        progress: &(dyn Fn(i64) + Sync),
    ) -> anyhow::Result<u64> {
        let p = self
            .projections
            .iter()
            .find(|p| p.name() == name)
            .with_context(|| format!("no projection named {name:?}; known: {:?}", self.names()))?;
        let db = self.store.db();
        let mut tx = db.begin().await?;
        p.reset(&mut tx).await?;
        tx_exec!(
            &mut tx,
            "DELETE FROM projection_checkpoints WHERE name = $1",
            name
        )?;
        let (send, mut batches) = tokio::sync::mpsc::channel(4);
        let store = self.store.clone();
        let reader = tokio::spawn(async move {
            let mut cp = Checkpoint::START;
            loop {
                let batch = match store.read_log(cp, eventstore::MAX_LOG_BATCH).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = send.send(Err(e)).await;
                        return;
                    }
                };
                if batch.events.is_empty() {
                    if batch.pending {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    return;
                }
                cp = batch.events.last().expect("non-empty").checkpoint();
                if send.send(Ok(batch.events)).await.is_err() {
                    return;
                }
            }
        });
        let mut cp = Checkpoint::START;
        let mut applied = 0u64;
        let mut pending: Vec<StoredEvent> = Vec::new();
        loop {
            let next = batches.recv().await.transpose()?;
            let done = next.is_none();
            pending.extend(next.unwrap_or_default());
            if pending.len() >= REBUILD_BATCH || (done && !pending.is_empty()) {
                p.apply_batch(&mut tx, &pending).await?;
                cp = pending.last().expect("non-empty").checkpoint();
                applied += pending.len() as u64;
                pending.clear();
                progress(cp.position);
            }
            if done {
                break;
            }
        }
        reader.await.context("the log reader failed")?;
        save_checkpoint(&mut tx, name, Checkpoint::START, cp).await?;
        tx.commit().await?;
        if let Some(s) = self.progress.get(name) {
            s.send_replace(cp);
        }
        Ok(applied)
    }
}

pub use eventstore::checkpoints::load_checkpoint_db;

async fn run_forever(
    store: EventStore,
    p: Arc<dyn Projection>,
    progress: watch::Sender<Checkpoint>,
) {
    let name = p.name();
    loop {
        let lead = match store.try_lead(name).await {
            Ok(Some(lead)) => lead,
            Ok(None) => {
                // Someone else leads: follow their checkpoint for waiters, try again later.
                if let Ok(cp) = load_checkpoint_db(&store.db(), name).await {
                    progress.send_replace(cp);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(projection = name, error = %e, "cannot try leadership; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(projection = name, "projection worker leads");
        if let Err(e) = lead_loop(&store, p.as_ref(), &progress).await {
            crate::metrics::PROJECTION_ERRORS
                .with_label_values(&[name])
                .inc();
            tracing::error!(
                projection = name,
                error = format!("{e:#}"),
                "projection batch failed; retrying"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(lead);
    }
}

async fn lead_loop(
    store: &EventStore,
    p: &dyn Projection,
    progress: &watch::Sender<Checkpoint>,
) -> anyhow::Result<()> {
    let name = p.name();
    let db = store.db();
    let mut wakes = store.subscribe_types(p.aggregate_types());
    let mut cp = load_checkpoint_db(&db, name).await?;
    // What the checkpoint table says (it may trail `cp` across batches this model ignores).
    let mut saved = cp;
    let mut last_saved = std::time::Instant::now();
    progress.send_replace(cp);
    let mut pending_backoff = Duration::from_millis(1);
    loop {
        for w in &mut wakes {
            w.borrow_and_update();
        }
        let batch = store.read_log(cp, BATCH_SIZE).await?;
        if batch.events.is_empty() {
            if batch.pending {
                // A writer is still committing: its commit will be visible in a moment.
                tokio::time::sleep(pending_backoff).await;
                pending_backoff = (pending_backoff * 2).min(Duration::from_millis(50));
            } else {
                let any =
                    futures::future::select_all(wakes.iter_mut().map(|w| Box::pin(w.changed())));
                let _ = tokio::time::timeout(IDLE_POLL, any).await;
            }
            continue;
        }
        pending_backoff = Duration::from_millis(1);
        let to = batch.events.last().expect("non-empty").checkpoint();
        if batch.events.iter().any(|e| p.handles(&e.aggregate_type))
            || last_saved.elapsed() > LAZY_SAVE
        {
            cp = apply_batch(&db, p, saved, &batch.events).await?;
            saved = cp;
            last_saved = std::time::Instant::now();
            store.checkpoint_moved();
        } else {
            // Nothing here for this read model: move on without a write. Re-reading these
            // events after a restart changes nothing.
            cp = to;
        }
        progress.send_replace(cp);
    }
}

#[instrument(skip_all, fields(projection = p.name(), events = events.len()))]
async fn apply_batch(
    db: &Db,
    p: &dyn Projection,
    from: Checkpoint,
    events: &[StoredEvent],
) -> anyhow::Result<Checkpoint> {
    let name = p.name();
    let mut tx = db.begin().await?;
    p.apply_batch(&mut tx, events).await?;
    let to = events.last().map(|e| e.checkpoint()).unwrap_or(from);
    save_checkpoint(&mut tx, name, from, to).await?;
    tx.commit().await?;
    let now = Utc::now();
    let lag = crate::metrics::PROJECTION_LAG_SECONDS.with_label_values(&[name]);
    for e in events {
        lag.observe((now - e.recorded_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6);
    }
    crate::metrics::PROJECTION_EVENTS
        .with_label_values(&[name])
        .inc_by(events.len() as u64);
    crate::metrics::PROJECTION_POSITION
        .with_label_values(&[name])
        .set(to.position);
    Ok(to)
}
