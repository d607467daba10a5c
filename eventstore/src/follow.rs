//! One log follower per process: a single tail task reads each new batch of the global log once
//! (gap-safely, through [`EventStore::read_log`]), decoded once, and hands it to every in-process
//! [`Consumer`] (projections, policies, sinks, the relay, the live hub). Each consumer keeps its
//! own checkpoint, leadership and batch transaction; one that is behind (rebuild, slow, just
//! started, a lost leader coming back) reads the log by itself until it reaches the shared tail,
//! then takes the shared batches again. Leadership, wake-ups (local appends and PostgreSQL
//! NOTIFY, through [`EventStore::subscribe`]), back-off and when checkpoints are saved live here
//! and nowhere else.
//!
//! Why it is correct: the log in checkpoint order `(tx_id, position)` only grows at its end for a
//! gap-safe reader, so every reader sees the same events in any range `(a, b]`. A batch is
//! `(from, to]` with its events; a consumer at `cp` takes the part of a batch after `cp`, skips a
//! batch that ends at or before `cp`, and reads the log itself up to `from` when a batch starts
//! after `cp` (it missed some: it was busy, lagged, or just joined).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};

use crate::checkpoints::{load_checkpoint_db, save_checkpoint};
use crate::{Checkpoint, EventStore, StoredEvent};

/// Events the tail (and a consumer catching up alone) reads per query.
pub const TAIL_BATCH: i64 = 500;
/// Events a consumer takes in one `handle` call at most when it joins queued batches.
pub const MAX_HANDLED: usize = crate::MAX_LOG_BATCH as usize;
/// Batches queued for consumers; a consumer further behind catches up alone.
pub const QUEUED_BATCHES: usize = 256;
/// Fallback poll when no wake-up arrives (a missed NOTIFY can only delay, never lose, an event);
/// also how long a caught-up consumer waits before it saves a checkpoint it moved without writing.
pub const IDLE_POLL: Duration = Duration::from_secs(2);
/// Longest a consumer leaves its stored checkpoint behind while it skips events it ignores.
pub const LAZY_SAVE: Duration = Duration::from_secs(1);
/// Positions a consumer may skip before it saves its checkpoint anyway.
pub const SAVE_EVERY: i64 = 1_000;
/// How often a consumer that does not lead tries again (and refreshes its progress).
pub const FOLLOWER_RETRY: Duration = Duration::from_millis(500);

/// Exponential back-off: `first`, doubled after each use, at most `max`, back to `first` on
/// [`Backoff::reset`]. The one back-off every worker loop uses.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// While a writer is mid-commit (its events become readable in a moment).
    pub const fn pending() -> Self {
        Self::new(Duration::from_millis(1), Duration::from_millis(50))
    }

    /// Before a worker restarts after an error (database or broker gone).
    pub const fn restart() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// The delay to wait now; the next one is twice as long (up to the maximum).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }

    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

/// What a consumer did with the events it was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Nothing that needs the checkpoint saved now (the follower saves it lazily).
    Nothing,
    /// Effects outside the checkpoint's transaction (commands, messages): save it now.
    Effects,
    /// The consumer saved the checkpoint itself, in the transaction of its changes.
    Committed,
    /// Stop this consumer for good (a sink that disabled itself).
    Stop,
}

/// Where a consumer starts and whether it leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One leader per database (advisory lock `name`), checkpoint `name` in
    /// `projection_checkpoints`.
    Durable,
    /// Every process, from the given checkpoint, nothing stored (the live hub).
    Live(Checkpoint),
}

/// One reader of the log fed by the follower.
#[async_trait]
pub trait Consumer: Send + 'static {
    /// Leadership and checkpoint name.
    fn name(&self) -> &str;
    /// Whether this event may concern the consumer. A batch with none it wants is not handed to
    /// it at all; the events handed over may still include some it does not want.
    fn wants(&self, _e: &StoredEvent) -> bool {
        true
    }
    /// Called when a session starts (after leadership is taken), e.g. to open a connection.
    async fn start(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Handles events after `saved` (the stored checkpoint) up to and including `to`, in log
    /// order. An error ends the session: the follower backs off and resumes from the stored
    /// checkpoint, so the events are handed over again.
    async fn handle(
        &mut self,
        saved: Checkpoint,
        to: Checkpoint,
        events: &[StoredEvent],
    ) -> anyhow::Result<Handled>;
    /// Called when no batch arrived for [`IDLE_POLL`] (e.g. to check a broker connection).
    async fn idle(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Called with every error that ended a session, before the back-off (metrics).
    fn failed(&self, _e: &anyhow::Error) {}
}

/// A batch of the log as the tail read it: the events after `from`, up to `to`.
#[derive(Debug)]
pub struct Batch {
    pub from: Checkpoint,
    pub to: Checkpoint,
    pub events: Vec<StoredEvent>,
}

/// The follower's shared part, kept in the [`EventStore`] (one per store, so one per process).
pub(crate) struct Shared {
    batches: broadcast::Sender<Arc<Batch>>,
    /// End of the last batch the tail published (`None` until the tail has started).
    published: watch::Sender<Option<Checkpoint>>,
    started: std::sync::Once,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            batches: broadcast::channel(QUEUED_BATCHES).0,
            published: watch::channel(None).0,
            started: std::sync::Once::new(),
        }
    }
}

/// Handle to the process's follower: [`EventStore::follower`].
#[derive(Clone)]
pub struct Follower {
    store: EventStore,
    shared: Arc<Shared>,
}

/// A running consumer; [`ConsumerHandle::stop`] ends it (dropping the handle does not).
pub struct ConsumerHandle {
    task: tokio::task::JoinHandle<()>,
}

impl ConsumerHandle {
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Follower {
    pub(crate) fn new(store: EventStore, shared: Arc<Shared>) -> Self {
        Self { store, shared }
    }

    /// Starts feeding `consumer` (and the tail, on first use). `progress`, when given, is set
    /// to the consumer's checkpoint after every batch (and, while another process leads, to the
    /// stored one).
    pub fn spawn(
        &self,
        consumer: Box<dyn Consumer>,
        mode: Mode,
        progress: Option<watch::Sender<Checkpoint>>,
    ) -> ConsumerHandle {
        self.start_tail();
        let f = self.clone();
        let task = tokio::spawn(async move {
            match mode {
                Mode::Durable => f.run_durable(consumer, progress).await,
                Mode::Live(from) => f.run_live(consumer, from).await,
            }
        });
        ConsumerHandle { task }
    }

    fn start_tail(&self) {
        self.shared.started.call_once(|| {
            let f = self.clone();
            tokio::spawn(async move { f.tail().await });
        });
    }

    /// The tail: reads each new batch once and publishes it.
    async fn tail(self) {
        let mut wake = self.store.subscribe();
        let mut restart = Backoff::restart();
        let mut cp = loop {
            match self.store.log_head().await {
                Ok(head) => break head,
                Err(e) => {
                    tracing::warn!(error = %e, "log follower cannot read the log head; retrying");
                    restart.wait().await;
                }
            }
        };
        self.shared.published.send_replace(Some(cp));
        let mut pending = Backoff::pending();
        loop {
            wake.borrow_and_update();
            let batch = match self.store.read_log(cp, TAIL_BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "log follower cannot read the log; retrying");
                    restart.wait().await;
                    continue;
                }
            };
            restart.reset();
            let Some(last) = batch.events.last() else {
                if batch.pending {
                    pending.wait().await;
                } else {
                    pending.reset();
                    let _ = tokio::time::timeout(IDLE_POLL, wake.changed()).await;
                }
                continue;
            };
            pending.reset();
            let to = last.checkpoint();
            let b = Arc::new(Batch {
                from: cp,
                to,
                events: batch.events,
            });
            self.shared.published.send_replace(Some(to));
            // No receiver is not an error: every consumer may be catching up alone.
            let _ = self.shared.batches.send(b);
            cp = to;
        }
    }

    async fn run_durable(
        &self,
        mut c: Box<dyn Consumer>,
        progress: Option<watch::Sender<Checkpoint>>,
    ) {
        let name = c.name().to_string();
        let db = self.store.db();
        let mut restart = Backoff::restart();
        loop {
            let lead = match self.store.try_lead(&name).await {
                Ok(Some(lead)) => lead,
                Ok(None) => {
                    // Someone else leads: follow their checkpoint for waiters, try again later.
                    if let (Some(p), Ok(cp)) = (&progress, load_checkpoint_db(&db, &name).await) {
                        p.send_replace(cp);
                    }
                    tokio::time::sleep(FOLLOWER_RETRY).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(consumer = name, error = %e, "cannot try leadership; retrying");
                    restart.wait().await;
                    continue;
                }
            };
            tracing::info!(consumer = name, "log consumer leads");
            let result = async {
                let cp = load_checkpoint_db(&db, &name).await?;
                let mut place = Place::new(cp, true);
                self.session(c.as_mut(), &mut place, progress.as_ref(), &mut restart)
                    .await
            }
            .await;
            drop(lead);
            match result {
                Ok(()) => return,
                Err(e) => {
                    c.failed(&e);
                    tracing::warn!(
                        consumer = name,
                        error = format!("{e:#}"),
                        "log consumer interrupted; resuming from its checkpoint"
                    );
                    restart.wait().await;
                }
            }
        }
    }

    async fn run_live(&self, mut c: Box<dyn Consumer>, from: Checkpoint) {
        let mut place = Place::new(from, false);
        let mut restart = Backoff::restart();
        loop {
            match self
                .session(c.as_mut(), &mut place, None, &mut restart)
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    c.failed(&e);
                    tracing::warn!(
                        consumer = c.name(),
                        error = format!("{e:#}"),
                        "live consumer interrupted; retrying"
                    );
                    restart.wait().await;
                }
            }
        }
    }

    /// Feeds `c` from `place` on until it stops (`Ok`) or fails.
    async fn session(
        &self,
        c: &mut dyn Consumer,
        place: &mut Place,
        progress: Option<&watch::Sender<Checkpoint>>,
        restart: &mut Backoff,
    ) -> anyhow::Result<()> {
        // Subscribed before reading how far the tail got: every batch after that point arrives.
        let mut rx = self.shared.batches.subscribe();
        c.start().await?;
        if let Some(p) = progress {
            p.send_replace(place.cp);
        }
        let mut published = self.shared.published.subscribe();
        let target = loop {
            if let Some(t) = *published.borrow_and_update() {
                break t;
            }
            published.changed().await?;
        };
        if self.catch_up(c, place, progress, target).await? {
            return Ok(());
        }
        restart.reset();
        // A batch taken from the queue but not handled yet (it did not join the previous one).
        let mut held: Option<Arc<Batch>> = None;
        loop {
            let batch = match held.take() {
                Some(b) => b,
                None => match tokio::time::timeout(IDLE_POLL, rx.recv()).await {
                    Err(_) => {
                        place.save_if_moved(self, c.name()).await?;
                        c.idle().await?;
                        continue;
                    }
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                        let target = published.borrow().unwrap_or(place.cp);
                        if self.catch_up(c, place, progress, target).await? {
                            return Ok(());
                        }
                        continue;
                    }
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        anyhow::bail!("the log follower stopped")
                    }
                    Ok(Ok(b)) => b,
                },
            };
            if batch.to <= place.cp {
                continue;
            }
            if batch.from > place.cp {
                if self.catch_up(c, place, progress, batch.from).await? {
                    return Ok(());
                }
                // Never hand over the batch's tail past a hole: start over from the checkpoint.
                anyhow::ensure!(
                    place.cp >= batch.from,
                    "could not read the log up to {:?} (reached {:?})",
                    batch.from,
                    place.cp
                );
            }
            if batch.to <= place.cp {
                continue;
            }
            // Join the batches already queued behind this one into one call (one transaction).
            let mut parts = vec![batch];
            let mut count = parts[0].events.len();
            while count < MAX_HANDLED {
                match rx.try_recv() {
                    Ok(next) if next.from == parts.last().expect("one").to => {
                        count += next.events.len();
                        parts.push(next);
                    }
                    Ok(next) => {
                        held = Some(next);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let to = parts.last().expect("one").to;
            let stop = if parts.len() == 1 {
                let b = &parts[0];
                let start = b.events.partition_point(|e| e.checkpoint() <= place.cp);
                place
                    .handle(self, c, progress, to, &b.events[start..])
                    .await?
            } else {
                let cp = place.cp;
                let joined: Vec<StoredEvent> = parts
                    .iter()
                    .flat_map(|b| b.events.iter())
                    .filter(|e| e.checkpoint() > cp && c.wants(e))
                    .cloned()
                    .collect();
                place.handle(self, c, progress, to, &joined).await?
            };
            if stop {
                return Ok(());
            }
        }
    }

    /// Reads the log alone from `place` until `target` (or the gap-safe end). Returns whether
    /// the consumer stopped.
    async fn catch_up(
        &self,
        c: &mut dyn Consumer,
        place: &mut Place,
        progress: Option<&watch::Sender<Checkpoint>>,
        target: Checkpoint,
    ) -> anyhow::Result<bool> {
        let mut pending = Backoff::pending();
        while place.cp < target {
            let batch = self.store.read_log(place.cp, TAIL_BATCH).await?;
            let Some(last) = batch.events.last() else {
                if batch.pending {
                    pending.wait().await;
                    continue;
                }
                break;
            };
            pending.reset();
            let to = last.checkpoint();
            if place.handle(self, c, progress, to, &batch.events).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A consumer's place in the log: where it is, and what the checkpoint table says.
struct Place {
    cp: Checkpoint,
    saved: Checkpoint,
    last_saved: Instant,
    durable: bool,
}

impl Place {
    fn new(cp: Checkpoint, durable: bool) -> Self {
        Self {
            cp,
            saved: cp,
            last_saved: Instant::now(),
            durable,
        }
    }

    /// Hands `events` (ending at `to`) to `c` and moves on; returns whether `c` stopped.
    async fn handle(
        &mut self,
        f: &Follower,
        c: &mut dyn Consumer,
        progress: Option<&watch::Sender<Checkpoint>>,
        to: Checkpoint,
        events: &[StoredEvent],
    ) -> anyhow::Result<bool> {
        let handled = if events.iter().any(|e| c.wants(e)) {
            c.handle(self.saved, to, events).await?
        } else {
            Handled::Nothing
        };
        self.cp = to;
        match handled {
            Handled::Stop => return Ok(true),
            Handled::Committed => {
                self.saved = to;
                self.last_saved = Instant::now();
                f.store.checkpoint_moved();
            }
            Handled::Effects => self.save(f, c.name()).await?,
            Handled::Nothing => {
                if self.last_saved.elapsed() > LAZY_SAVE
                    || self.cp.position - self.saved.position > SAVE_EVERY
                {
                    self.save(f, c.name()).await?;
                }
            }
        }
        if let Some(p) = progress {
            p.send_replace(self.cp);
        }
        Ok(false)
    }

    async fn save_if_moved(&mut self, f: &Follower, name: &str) -> anyhow::Result<()> {
        if self.saved != self.cp {
            self.save(f, name).await?;
        }
        Ok(())
    }

    /// Saves `cp` (only if nobody else moved the stored checkpoint).
    async fn save(&mut self, f: &Follower, name: &str) -> anyhow::Result<()> {
        if !self.durable || self.saved == self.cp {
            return Ok(());
        }
        let mut tx = f.store.db().begin().await?;
        save_checkpoint(&mut tx, name, self.saved, self.cp).await?;
        tx.commit().await?;
        self.saved = self.cp;
        self.last_saved = Instant::now();
        f.store.checkpoint_moved();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(35));
        let got: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [10, 20, 35, 35]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(10));
    }
}
