//! The projection runtime: every projection is a consumer of the process's log follower
//! (`eventstore::follow`), which hands it each new batch of the log; it commits each batch of
//! read-model changes together with the new checkpoint. Only the holder of the projection's
//! advisory lock applies anything, and a conditional checkpoint update makes a lost lock harmless.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use eventstore::follow::{Backoff, Consumer, Handled, Mode};
use eventstore::{tx_exec, Checkpoint, Db, EventStore, StoredEvent, Tx};
use tokio::sync::watch;
use tracing::instrument;

/// Events read per query by a rebuild.
pub const BATCH_SIZE: i64 = 500;
/// Events a rebuild applies per `apply_batch` call (all in its one transaction).
pub const REBUILD_BATCH: usize = 5_000;

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

    /// Feeds every projection from the process's log follower (each under its own leadership).
    pub fn spawn(&self) {
        let follower = self.store.follower();
        for p in &self.projections {
            let progress = self.progress[p.name()].clone();
            follower.spawn(
                Box::new(Feed(p.clone(), self.store.db())),
                Mode::Durable,
                Some(progress),
            );
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
            let mut pending = Backoff::pending();
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
                        pending.wait().await;
                        continue;
                    }
                    return;
                }
                pending.reset();
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

/// A projection as a consumer of the process's log follower.
struct Feed(Arc<dyn Projection>, Db);

#[async_trait]
impl Consumer for Feed {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn wants(&self, e: &StoredEvent) -> bool {
        self.0.handles(&e.aggregate_type)
    }

    async fn handle(
        &mut self,
        saved: Checkpoint,
        to: Checkpoint,
        events: &[StoredEvent],
    ) -> anyhow::Result<Handled> {
        apply_batch(&self.1, self.0.as_ref(), saved, to, events).await?;
        Ok(Handled::Committed)
    }

    fn failed(&self, _e: &anyhow::Error) {
        crate::metrics::PROJECTION_ERRORS
            .with_label_values(&[self.0.name()])
            .inc();
    }
}
#[instrument(skip_all, fields(projection = p.name(), events = events.len()))]
async fn apply_batch(
    db: &Db,
    p: &dyn Projection,
    from: Checkpoint,
    to: Checkpoint,
    events: &[StoredEvent],
) -> anyhow::Result<()> {
    let name = p.name();
    let mut tx = db.begin().await?;
    p.apply_batch(&mut tx, events).await?;
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
    Ok(())
}
