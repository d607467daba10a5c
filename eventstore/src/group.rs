//! Group commit: appends made concurrently in one process share one database transaction.
//!
//! `EventStore::append` puts its request in a queue. If fewer than [`MAX_FLUSHES`] flushes are
//! running, it starts one (a task of its own, so a caller that gives up cannot leave a
//! transaction half-done); a flush takes a batch from the queue, commits it, answers every
//! request of it, and takes the next batch while any are waiting. So batches form by themselves
//! from whatever arrived while the flushes were in flight: one request alone is flushed at once,
//! with no timer, and under load up to [`MAX_BATCH_APPENDS`] requests share a transaction. More
//! than one flush may run so that a batch stalled on a lock (another process's transaction
//! holding an idempotency key, a claim or a sequence) does not hold up every append of the
//! process. A batch holds at most one
//! request per stream (a second one waits for the next batch, in arrival order), so each
//! request is decided against its own expected sequence; the backends make sure a request that
//! fails (conflict, taken claim, used idempotency key) fails alone.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::{AppendError, AppendRequest, StoredEvent};

/// Flushes (transactions of appends) one process runs at once.
pub const MAX_FLUSHES: usize = 2;
/// Most appends committed in one transaction. Also keeps the savepoints a batch may take below
/// PostgreSQL's cache of 64 subtransactions per transaction.
pub const MAX_BATCH_APPENDS: usize = 64;
/// Most events committed in one transaction (a batch takes at least one append whatever its size;
/// one append carries at most `MAX_EVENTS_PER_APPEND`).
pub const MAX_BATCH_EVENTS: usize = 1_000;

pub(crate) type AppendResult = Result<Vec<StoredEvent>, AppendError>;

/// One request waiting for its flush.
pub(crate) struct Waiting {
    pub req: AppendRequest,
    pub reply: oneshot::Sender<AppendResult>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Waiting>,
    /// Flush tasks running; each takes what is queued until nothing is.
    flushing: usize,
}

/// The queue of one process's appends, and what it has committed so far.
#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<State>,
    batches: AtomicU64,
    appends: AtomicU64,
    largest: AtomicU64,
}

/// Counters of the group commit, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Batches flushed (each one database transaction, or one fallback round).
    pub batches: u64,
    /// Appends they carried.
    pub appends: u64,
    /// Most appends in one batch so far.
    pub largest_batch: u64,
}

impl Queue {
    /// Queues `w`; `true` if the caller must start the flush task.
    pub fn push(&self, w: Waiting) -> bool {
        let mut s = self.state.lock().expect("append queue");
        s.waiting.push_back(w);
        if s.flushing < MAX_FLUSHES {
            s.flushing += 1;
            true
        } else {
            false
        }
    }

    /// The next batch, oldest first: at most one request per stream, bounded by
    /// [`MAX_BATCH_APPENDS`] and [`MAX_BATCH_EVENTS`]. `None` when nothing waits, and then the
    /// flush task must end (the next `push` starts a new one).
    pub fn next_batch(&self) -> Option<Vec<Waiting>> {
        let mut s = self.state.lock().expect("append queue");
        if s.waiting.is_empty() {
            s.flushing -= 1;
            return None;
        }
        let mut batch = Vec::new();
        let mut events = 0;
        let mut streams = HashSet::new();
        let mut later = VecDeque::new();
        while let Some(w) = s.waiting.pop_front() {
            let n = w.req.events.len();
            let full = batch.len() >= MAX_BATCH_APPENDS
                || (!batch.is_empty() && events + n > MAX_BATCH_EVENTS);
            if full {
                s.waiting.push_front(w);
                break;
            }
            if streams.insert((w.req.aggregate_type.clone(), w.req.aggregate_id.clone())) {
                events += n;
                batch.push(w);
            } else {
                later.push_back(w);
            }
        }
        // Requests on a stream already in the batch keep their place ahead of newer ones.
        while let Some(w) = later.pop_back() {
            s.waiting.push_front(w);
        }
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.appends
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.largest
            .fetch_max(batch.len() as u64, Ordering::Relaxed);
        Some(batch)
    }

    /// Takes every append still queued, for answering them at once (the database is down: each
    /// would otherwise wait for the pool in turn, behind the others).
    pub fn drain_waiting(&self) -> Vec<Waiting> {
        let mut s = self.state.lock().expect("append queue");
        s.waiting.drain(..).collect()
    }

    /// Ends a flush task that stopped early (it panicked): if it was the last one, the requests
    /// still queued are answered with an error instead of waiting for ever.
    pub fn abandon(&self) {
        let mut s = self.state.lock().expect("append queue");
        s.flushing -= 1;
        if s.flushing == 0 {
            s.waiting.clear();
        }
    }

    pub fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            batches: self.batches.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            largest_batch: self.largest.load(Ordering::Relaxed),
        }
    }
}

/// Answers the requests still queued if the flush task unwinds.
pub(crate) struct FlushGuard<'a> {
    pub queue: &'a Queue,
    pub done: bool,
}

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.queue.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventMetadata, NewEvent};

    fn req(id: &str, events: usize) -> AppendRequest {
        AppendRequest {
            aggregate_type: "t".into(),
            aggregate_id: id.into(),
            expected_sequence: 0,
            expected_hash: None,
            events: (0..events)
                .map(|_| NewEvent {
                    event_type: "E".into(),
                    event_version: "1".into(),
                    payload: serde_json::json!({}),
                })
                .collect(),
            metadata: EventMetadata {
                actor: "u".into(),
                correlation_id: uuid::Uuid::nil(),
                causation_id: uuid::Uuid::nil(),
                command_id: uuid::Uuid::nil(),
            },
            claims: vec![],
            releases: vec![],
            idempotency: None,
        }
    }

    fn push(q: &Queue, id: &str, events: usize) -> bool {
        let (reply, _) = oneshot::channel();
        q.push(Waiting {
            req: req(id, events),
            reply,
        })
    }

    fn ids(batch: &[Waiting]) -> Vec<&str> {
        batch.iter().map(|w| w.req.aggregate_id.as_str()).collect()
    }

    #[test]
    fn pushes_start_up_to_max_flushes_and_an_empty_queue_ends_them() {
        let q = Queue::default();
        for i in 0..MAX_FLUSHES {
            assert!(push(&q, &format!("s{i}"), 1), "flush {i} starts");
        }
        assert!(!push(&q, "b", 1), "enough flushes are running");
        assert_eq!(q.next_batch().unwrap().len(), MAX_FLUSHES + 1);
        assert!(q.next_batch().is_none(), "one flush ends");
        assert!(push(&q, "c", 1), "room for a flush again");
        assert!(!push(&q, "d", 1));
    }

    #[test]
    fn one_request_per_stream_in_arrival_order() {
        let q = Queue::default();
        for id in ["a", "b", "a", "c", "a", "b"] {
            push(&q, id, 1);
        }
        assert_eq!(ids(&q.next_batch().unwrap()), ["a", "b", "c"]);
        assert_eq!(ids(&q.next_batch().unwrap()), ["a", "b"]);
        assert_eq!(ids(&q.next_batch().unwrap()), ["a"]);
        assert!(q.next_batch().is_none());
    }

    #[test]
    fn batches_are_bounded() {
        let q = Queue::default();
        for i in 0..MAX_BATCH_APPENDS + 5 {
            push(&q, &format!("s{i}"), 1);
        }
        assert_eq!(q.next_batch().unwrap().len(), MAX_BATCH_APPENDS);
        assert_eq!(q.next_batch().unwrap().len(), 5);
        for i in 0..12 {
            push(&q, &format!("e{i}"), 100);
        }
        assert_eq!(
            q.next_batch().unwrap().len(),
            MAX_BATCH_EVENTS / 100,
            "events per batch bounded"
        );
        assert_eq!(ids(&q.next_batch().unwrap()), ["e10", "e11"]);
        let s = q.stats();
        assert_eq!((s.batches, s.appends), (4, MAX_BATCH_APPENDS as u64 + 17));
        assert_eq!(s.largest_batch, MAX_BATCH_APPENDS as u64);
    }
}
