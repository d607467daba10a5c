//! Live fan-out: a per-process hub that tails the committed log and hands each event to the
//! subscribers of its topics (WebSocket `/ws`, GraphQL subscriptions).
//!
//! # Public API (stable; other edges build on it)
//!
//! - [`LiveHub::start`]`(store).await -> anyhow::Result<LiveHub>`: reads the log head, registers
//!   the hub with the process's log follower. `LiveHub` is `Clone`; it stops following
//!   when [`LiveHub::stop`] is called or the last clone is dropped, and every receiver then
//!   gets [`LiveError::Closed`].
//! - [`Topic`]: `Chat(chat id)`, `Item(Some(item id))` / `Item(None)` (every item), `User(user id)`.
//!   [`topics_of`] is the one place that maps a stored event to its topics.
//! - [`LiveHub::subscribe`]`(topic) -> LiveReceiver`; [`LiveReceiver::recv`]`().await ->
//!   Result<LiveEvent, LiveError>`. Each receiver has a bounded queue of [`SUBSCRIBER_QUEUE`]
//!   events; when it overflows the receiver first gets what was queued, then
//!   [`LiveError::Lagged`]`{ missed }` (never a silent skip), then events again. Dropping the
//!   receiver unsubscribes.
//! - [`LiveEvent`] (cheap to clone: one `Arc`): position, event id, aggregate type and id, event
//!   type, payload, recorded_at, metadata — or, for [`LiveHub::publish_ephemeral`], an ephemeral
//!   signal (`ephemeral == true`, position 0, no metadata).
//! - [`LiveHub::publish_ephemeral`]`(topic, event_type, payload)`: signals that are not domain
//!   events (typing). In-process only: subscribers on other processes do not see them.
//! - Metric `live_subscribers` (gauge): receivers alive in this process.
//!
//! # Guarantees
//!
//! Live updates come only from the committed log: the hub is a live consumer of the process's
//! log follower (`eventstore::follow`) from the log head when the hub starts
//! ([`EventStore::log_head`]); the follower reads gap-safely with [`EventStore::read_log`] (on
//! PostgreSQL never past a transaction still in flight), and is woken by
//! [`EventStore::subscribe`], which fires on local appends and on NOTIFY from other processes (a
//! 2 s poll covers a lost notification). So a subscriber receives the events of every process, in
//! log order, each once: every event committed after `subscribe` returned, and possibly some
//! committed shortly before that the tail had not reached yet (on PostgreSQL a transaction still
//! open anywhere on the server holds the gap-safe horizon back, also at start-up). A subscription
//! is not durable: a client that reconnects re-reads what it missed over REST.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex, RwLock, Weak};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use eventstore::follow::{Consumer, ConsumerHandle, Handled, Mode};
use eventstore::{Checkpoint, Db, EventMetadata, EventStore, StoredEvent};
use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

/// Events one receiver may have queued before it is lagged.
pub const SUBSCRIBER_QUEUE: usize = 1_024;
/// Receivers one process may hold at once; `subscribe` beyond it returns `None`.
pub const MAX_SUBSCRIBERS: usize = 100_000;
/// Message ids remembered with their chat (for edits, deletes and reactions, whose payload does
/// not carry the chat id); the map is cleared when full, then misses read `chat_messages`.
pub const MESSAGE_CHAT_CACHE: usize = 100_000;

/// Receivers alive in this process.
pub static LIVE_SUBSCRIBERS: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    let g = prometheus::IntGauge::new(
        "live_subscribers",
        "Live fan-out subscribers (this process)",
    )
    .expect("valid metric");
    crate::metrics::REGISTRY
        .register(Box::new(g.clone()))
        .expect("metric registers once");
    g
});

/// What a subscriber listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Everything happening in one chat: messages, members, settings, read positions, typing.
    Chat(Uuid),
    /// `Some(id)`: one tea item; `None`: every item.
    Item(Option<Uuid>),
    /// Per-user events (inbox, the user's operations).
    User(String),
}

/// One committed event (or ephemeral signal) as handed to subscribers.
#[derive(Debug, Clone)]
pub struct LiveEvent(Arc<LiveEventData>);

impl std::ops::Deref for LiveEvent {
    type Target = LiveEventData;
    fn deref(&self) -> &LiveEventData {
        &self.0
    }
}

#[derive(Debug)]
pub struct LiveEventData {
    /// Log position (0 for an ephemeral signal).
    pub position: i64,
    /// Where the event is in the log, e.g. to wait until a projection applied it
    /// (`ProjectionRunner::wait_for`); `Checkpoint::START` for an ephemeral signal.
    pub checkpoint: Checkpoint,
    /// The event id (a fresh UUID v7 for an ephemeral signal).
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: Value,
    pub recorded_at: DateTime<Utc>,
    /// `None` for an ephemeral signal.
    pub metadata: Option<EventMetadata>,
    /// Not a domain event: published with [`LiveHub::publish_ephemeral`], never in the log.
    pub ephemeral: bool,
}

impl LiveEvent {
    fn from_stored(e: StoredEvent) -> Self {
        Self(Arc::new(LiveEventData {
            position: e.position,
            checkpoint: e.checkpoint(),
            event_id: e.event_id,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            event_type: e.event_type,
            payload: e.payload,
            recorded_at: e.recorded_at,
            metadata: Some(e.metadata),
            ephemeral: false,
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// The receiver's queue overflowed: `missed` events were dropped for it.
    #[error("subscriber lagged behind: {missed} events missed")]
    Lagged { missed: u64 },
    /// The hub stopped.
    #[error("live hub stopped")]
    Closed,
}

/// The topics an event belongs to. Chat messages are `message` aggregates: the chat id is in the
/// payload of `MessagePosted` and `MessageFlagged`; for the other message events `chat_of` (a
/// cache of the hub, backed by the read model) supplies it.
pub fn topics_of(e: &StoredEvent, chat_of_message: Option<Uuid>) -> Vec<Topic> {
    let uuid = |s: &str| Uuid::parse_str(s).ok();
    let at = |ptr: &str| {
        e.payload
            .pointer(ptr)
            .and_then(Value::as_str)
            .and_then(uuid)
    };
    match e.aggregate_type.as_str() {
        "message" => at("/submission/chat_id")
            .or_else(|| at("/chat_id"))
            .or(chat_of_message)
            .map(Topic::Chat)
            .into_iter()
            .collect(),
        "chat" => uuid(&e.aggregate_id).map(Topic::Chat).into_iter().collect(),
        "read_position" => at("/chat_id").map(Topic::Chat).into_iter().collect(),
        "item" => {
            let mut t = vec![Topic::Item(None)];
            if let Some(id) = uuid(&e.aggregate_id) {
                t.push(Topic::Item(Some(id)));
            }
            t
        }
        "inbox" => vec![Topic::User(e.aggregate_id.clone())],
        "operation" => vec![Topic::User(e.metadata.actor.clone())],
        _ => vec![],
    }
}

struct QueueState {
    queue: VecDeque<LiveEvent>,
    missed: u64,
    closed: bool,
}

struct Slot {
    state: Mutex<QueueState>,
    notify: Notify,
}

impl Slot {
    fn push(&self, e: &LiveEvent) {
        {
            let mut s = self.state.lock().expect("slot");
            // Once lagged, nothing more is queued until the receiver has been told: the report
            // sits exactly where the gap is.
            if s.missed > 0 || s.queue.len() >= SUBSCRIBER_QUEUE {
                s.missed += 1;
            } else {
                s.queue.push_back(e.clone());
            }
        }
        self.notify.notify_one();
    }

    fn close(&self) {
        self.state.lock().expect("slot").closed = true;
        self.notify.notify_one();
    }
}

#[derive(Default)]
struct Registry {
    topics: RwLock<HashMap<Topic, Vec<Arc<Slot>>>>,
    count: std::sync::atomic::AtomicUsize,
    stopped: std::sync::atomic::AtomicBool,
}

impl Registry {
    fn slots(&self, topic: &Topic) -> Vec<Arc<Slot>> {
        self.topics
            .read()
            .expect("topics")
            .get(topic)
            .cloned()
            .unwrap_or_default()
    }

    fn publish(&self, topics: &[Topic], event: &LiveEvent) {
        for t in topics {
            for slot in self.slots(t) {
                slot.push(event);
            }
        }
    }

    fn has_subscribers(&self, topics: &[Topic]) -> bool {
        let map = self.topics.read().expect("topics");
        topics.iter().any(|t| map.contains_key(t))
    }

    fn close_all(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for slots in self.topics.read().expect("topics").values() {
            for s in slots {
                s.close();
            }
        }
    }
}

/// Stops the hub's consumer when the last `LiveHub` clone goes.
struct StopGuard {
    consumer: ConsumerHandle,
    registry: Arc<Registry>,
}

impl StopGuard {
    fn stop(&self) {
        self.consumer.stop();
        self.registry.close_all();
    }
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The per-process hub. See the module documentation.
#[derive(Clone)]
pub struct LiveHub {
    registry: Arc<Registry>,
    guard: Arc<StopGuard>,
}

impl LiveHub {
    /// Starts tailing the log from its current head (read before this returns, so every event
    /// committed afterwards is delivered to whoever subscribes).
    pub async fn start(store: EventStore) -> anyhow::Result<LiveHub> {
        LazyLock::force(&LIVE_SUBSCRIBERS);
        let head = store.log_head().await?;
        let registry = Arc::new(Registry::default());
        let feed = Feed {
            registry: registry.clone(),
            chats: MessageChats {
                db: store.db(),
                known: HashMap::new(),
            },
        };
        let consumer = store
            .follower()
            .spawn(Box::new(feed), Mode::Live(head), None);
        Ok(LiveHub {
            registry: registry.clone(),
            guard: Arc::new(StopGuard { consumer, registry }),
        })
    }

    /// Stops the hub's consumer; every receiver then ends with `Closed`.
    pub fn stop(&self) {
        self.guard.stop();
    }

    /// A receiver of every event of `topic` committed from now on. `None` when the process holds
    /// [`MAX_SUBSCRIBERS`] receivers already.
    pub fn subscribe(&self, topic: Topic) -> Option<LiveReceiver> {
        use std::sync::atomic::Ordering;
        if self
            .registry
            .count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_SUBSCRIBERS).then_some(n + 1)
            })
            .is_err()
        {
            return None;
        }
        let slot = Arc::new(Slot {
            state: Mutex::new(QueueState {
                queue: VecDeque::new(),
                missed: 0,
                closed: false,
            }),
            notify: Notify::new(),
        });
        // The stop flag is read under the write lock: `close_all` sets it before it takes the
        // lock, so either it finds this slot or this slot starts closed.
        let mut topics = self.registry.topics.write().expect("topics");
        slot.state.lock().expect("slot").closed = self.registry.stopped.load(Ordering::SeqCst);
        topics.entry(topic.clone()).or_default().push(slot.clone());
        drop(topics);
        LIVE_SUBSCRIBERS.inc();
        Some(LiveReceiver {
            topic,
            slot,
            registry: Arc::downgrade(&self.registry),
        })
    }

    /// Hands a signal that is not a domain event (typing) to this process's subscribers of
    /// `topic`. Not persisted, not seen by other processes.
    pub fn publish_ephemeral(&self, topic: Topic, event_type: &str, payload: Value) {
        let (aggregate_type, aggregate_id) = match &topic {
            Topic::Chat(id) => ("chat", id.to_string()),
            Topic::Item(id) => ("item", id.map(|i| i.to_string()).unwrap_or_default()),
            Topic::User(u) => ("user", u.clone()),
        };
        let event = LiveEvent(Arc::new(LiveEventData {
            position: 0,
            checkpoint: Checkpoint::START,
            event_id: Uuid::now_v7(),
            aggregate_type: aggregate_type.into(),
            aggregate_id,
            event_type: event_type.into(),
            payload,
            recorded_at: Utc::now(),
            metadata: None,
            ephemeral: true,
        }));
        self.registry.publish(std::slice::from_ref(&topic), &event);
    }

    /// Receivers alive in this hub.
    pub fn subscriber_count(&self) -> usize {
        self.registry
            .count
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One subscription; dropping it unsubscribes.
pub struct LiveReceiver {
    topic: Topic,
    slot: Arc<Slot>,
    registry: Weak<Registry>,
}

impl LiveReceiver {
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The next event, in log order; `Lagged` once after an overflow; `Closed` when the hub
    /// stopped and the queue is drained.
    pub async fn recv(&mut self) -> Result<LiveEvent, LiveError> {
        loop {
            {
                let mut s = self.slot.state.lock().expect("slot");
                if let Some(e) = s.queue.pop_front() {
                    return Ok(e);
                }
                if s.missed > 0 {
                    let missed = std::mem::take(&mut s.missed);
                    return Err(LiveError::Lagged { missed });
                }
                if s.closed {
                    return Err(LiveError::Closed);
                }
            }
            // A push between the check and here left a permit: no lost wake-up.
            self.slot.notify.notified().await;
        }
    }
}

impl Drop for LiveReceiver {
    fn drop(&mut self) {
        LIVE_SUBSCRIBERS.dec();
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        registry
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        let mut map = registry.topics.write().expect("topics");
        if let Some(slots) = map.get_mut(&self.topic) {
            slots.retain(|s| !Arc::ptr_eq(s, &self.slot));
            if slots.is_empty() {
                map.remove(&self.topic);
            }
        }
    }
}

/// Chat ids of messages, for message events whose payload lacks it.
struct MessageChats {
    db: Db,
    known: HashMap<String, Uuid>,
}

impl MessageChats {
    /// The chat of a message event; reads the read model only when `lookup` (someone listens).
    async fn chat_of(&mut self, e: &StoredEvent, lookup: bool) -> Option<Uuid> {
        if e.aggregate_type != "message" {
            return None;
        }
        if let Some(chat) = e
            .payload
            .pointer("/submission/chat_id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            if self.known.len() >= MESSAGE_CHAT_CACHE {
                self.known.clear();
            }
            self.known.insert(e.aggregate_id.clone(), chat);
            return Some(chat);
        }
        if let Some(c) = self.known.get(&e.aggregate_id) {
            return Some(*c);
        }
        if !lookup {
            return None;
        }
        let row: Option<(String,)> = eventstore::db_fetch_optional!(
            &self.db,
            (String,),
            "SELECT chat_id FROM chat_messages WHERE id = $1",
            &e.aggregate_id
        )
        .ok()
        .flatten();
        let chat = row.and_then(|(c,)| Uuid::parse_str(&c).ok())?;
        self.known.insert(e.aggregate_id.clone(), chat);
        Some(chat)
    }
}

/// The hub as a live consumer of the process's log follower (every process, from the head at
/// start-up, nothing stored).
struct Feed {
    registry: Arc<Registry>,
    chats: MessageChats,
}

#[async_trait]
impl Consumer for Feed {
    fn name(&self) -> &str {
        "live"
    }

    async fn handle(
        &mut self,
        _saved: Checkpoint,
        _to: Checkpoint,
        events: &[StoredEvent],
    ) -> anyhow::Result<Handled> {
        let registry = &self.registry;
        for e in events {
            let listened = registry.count.load(std::sync::atomic::Ordering::Relaxed) > 0;
            let chat = self.chats.chat_of(e, listened).await;
            let topics = topics_of(e, chat);
            if topics.is_empty() || !registry.has_subscribers(&topics) {
                continue;
            }
            registry.publish(&topics, &LiveEvent::from_stored(e.clone()));
        }
        Ok(Handled::Nothing)
    }
}
