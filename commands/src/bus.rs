//! Executing one command against one aggregate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use domain::{Actor, DomainError, ErrorKind};
use eventstore::{
    AppendError, AppendRequest, Claim, EventMetadata, EventStore, IdempotencyRecord, NewEvent,
    StoredEvent,
};
use rand::Rng;
use tracing::instrument;
use uuid::Uuid;

use crate::cache::AggregateCache;

/// Attempts before a contended command gives up with `Busy`.
pub const MAX_ATTEMPTS: u32 = 20;
/// Lock stripes serialising commands per aggregate within one process.
pub const LOCK_STRIPES: usize = 1024;

/// Who acts and how this command relates to others.
#[derive(Debug, Clone)]
pub struct Context {
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub command_id: Uuid,
}

impl Context {
    pub fn new(actor: Actor) -> Self {
        let id = Uuid::now_v7();
        Self {
            actor,
            correlation_id: id,
            causation_id: None,
            command_id: id,
        }
    }

    fn metadata(&self) -> EventMetadata {
        EventMetadata {
            actor: self.actor.user_id.clone(),
            correlation_id: self.correlation_id,
            causation_id: self.causation_id.unwrap_or(self.command_id),
            command_id: self.command_id,
        }
    }
}

/// The client's `Idempotency-Key` and a digest of its request.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// A response as stored for idempotent replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// What a command did.
pub enum Executed<A: Aggregate> {
    /// It ran now: the state after it, its events and where they landed in the log.
    Done {
        state: A,
        events: Vec<A::Event>,
        stored: Vec<StoredEvent>,
    },
    /// The same key was used before by this user: the original response.
    Replayed(Reply),
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{message}")]
    Domain { kind: ErrorKind, message: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{field} {value:?} is already taken")]
    Taken { field: String, value: String },
    #[error("Idempotency-Key was already used with a different request")]
    IdempotencyMismatch,
    #[error("too much contention on this resource; retry later")]
    Busy,
    /// Over a per-user rate limit; retry after this many seconds.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl CommandError {
    pub fn domain<E: DomainError>(e: E) -> Self {
        CommandError::Domain {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// Returns the unique values a state holds, as (scope, value).
pub type ClaimsOf<A> = fn(&A) -> Vec<(&'static str, String)>;

/// Renders the response to store with the events, for idempotent replay.
pub type RenderReply<'a, A> = &'a (dyn Fn(&A, &[<A as Aggregate>::Event]) -> Reply + Sync);

#[derive(Clone)]
pub struct CommandBus {
    store: EventStore,
    cache: Arc<AggregateCache>,
    conflicts: Arc<AtomicU64>,
    appended: Arc<AtomicU64>,
    /// Commands on one aggregate queue here instead of racing to conflicts inside a process;
    /// optimistic concurrency still guards against other processes.
    stripes: Arc<Vec<tokio::sync::Mutex<()>>>,
    /// The per-user posting limit (`commands::message::post`), per process.
    messages: Arc<crate::ratelimit::RateLimiter>,
    /// When a command last found the database unavailable.
    outages: Arc<OutageClock>,
}

/// When a command last failed with a database outage, so that the commands queued behind it on
/// one aggregate fail at once (503) instead of each waiting for the pool in turn.
#[derive(Debug)]
struct OutageClock {
    epoch: std::time::Instant,
    /// Nanoseconds after `epoch` of the last outage, plus one (0: none yet).
    last: AtomicU64,
}

impl Default for OutageClock {
    fn default() -> Self {
        Self {
            epoch: std::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl OutageClock {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    fn note(&self) {
        self.last.fetch_max(self.now(), Ordering::Relaxed);
    }

    /// Whether an outage was noted at or after `t` (a value of [`OutageClock::now`]).
    fn since(&self, t: u64) -> bool {
        self.last.load(Ordering::Relaxed) >= t
    }
}

impl CommandBus {
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            cache: Default::default(),
            conflicts: Default::default(),
            appended: Default::default(),
            stripes: Arc::new(
                (0..LOCK_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            ),
            messages: Arc::new(crate::ratelimit::messages()),
            outages: Default::default(),
        }
    }

    /// The per-user posting limiter every edge's message goes through.
    pub fn message_limiter(&self) -> &crate::ratelimit::RateLimiter {
        &self.messages
    }

    fn stripe(&self, ty: &str, id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (ty, id).hash(&mut h);
        &self.stripes[(h.finish() as usize) % self.stripes.len()]
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Optimistic-concurrency conflicts retried so far.
    pub fn conflicts_retried(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Events appended by this process.
    pub fn events_appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    /// Loads the current state of one aggregate, caught up with the store.
    pub async fn load<A>(&self, aggregate_id: &str) -> Result<(i64, A), CommandError>
    where
        A: Aggregate + Clone + 'static,
    {
        let (seq, _, state) = self.load_fresh::<A>(aggregate_id).await?;
        Ok((seq, state))
    }

    /// The cached state (if any) caught up with every event stored after it.
    async fn load_fresh<A>(
        &self,
        aggregate_id: &str,
    ) -> Result<(i64, Option<Vec<u8>>, A), CommandError>
    where
        A: Aggregate + Clone + 'static,
    {
        let (mut seq, mut hash, mut state) = self
            .cache
            .get::<A>(A::TYPE, aggregate_id)
            .unwrap_or_else(|| (0, Some(Vec::new()), A::default()));
        let events = self.store.load::<A>(aggregate_id, seq).await?;
        for e in events {
            let event: A::Event =
                domain::codec::decode(&e.event_type, e.payload).map_err(|err| {
                    anyhow::anyhow!("cannot decode {} event {}: {err}", A::TYPE, e.event_type)
                })?;
            state.apply(event);
            seq = e.sequence;
            hash = e.hash;
        }
        Ok((seq, hash, state))
    }

    /// Runs `command` on aggregate `aggregate_id`, retrying conflicts.
    #[instrument(skip_all, fields(aggregate = A::TYPE, id = %aggregate_id, actor = %ctx.actor.user_id))]
    pub async fn execute<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        ctx: &Context,
        claims_of: Option<ClaimsOf<A>>,
        idempotency: Option<(&Idempotency, RenderReply<'_, A>)>,
    ) -> Result<Executed<A>, CommandError>
    where
        A: Aggregate<Services = ()> + Clone + 'static,
        A::Command: Clone,
        A::Error: DomainError,
    {
        if let Some((idem, _)) = idempotency {
            if let Some(reply) = self.replay(&ctx.actor.user_id, idem).await? {
                return Ok(Executed::Replayed(reply));
            }
        }
        let queued_at = self.outages.now();
        let _serial = self.stripe(A::TYPE, aggregate_id).lock().await;
        if self.outages.since(queued_at) {
            // The command ahead of this one on the aggregate found the database unavailable
            // while this one queued: answer at once instead of waiting for the pool in turn.
            return Err(CommandError::Internal(anyhow::Error::new(
                eventstore::outage::Unavailable("the database was unavailable just now".into()),
            )));
        }
        let result = self
            .execute_serial::<A>(aggregate_id, command, ctx, claims_of, idempotency)
            .await;
        if let Err(CommandError::Internal(e)) = &result {
            if eventstore::outage::is_unavailable(e) {
                self.outages.note();
            }
        }
        result
    }

    /// [`CommandBus::execute`] once this process's commands on the aggregate are serialised.
    async fn execute_serial<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        ctx: &Context,
        claims_of: Option<ClaimsOf<A>>,
        idempotency: Option<(&Idempotency, RenderReply<'_, A>)>,
    ) -> Result<Executed<A>, CommandError>
    where
        A: Aggregate<Services = ()> + Clone + 'static,
        A::Command: Clone,
        A::Error: DomainError,
    {
        let mut attempt = 0;
        let mut trust_cache = true;
        while attempt < MAX_ATTEMPTS {
            let cached = if trust_cache {
                self.cache.get::<A>(A::TYPE, aggregate_id)
            } else {
                None
            };
            let verified = cached.is_none();
            let (seq, hash, before) = match cached {
                Some(c) => c,
                None => self.load_fresh::<A>(aggregate_id).await?,
            };
            let mut after = before.clone();
            let sink = EventSink::<A>::default();
            let decided = after.handle(command.clone(), &(), &sink).await;
            let events = sink.collect().await;
            if !verified && (decided.is_err() || events.is_empty()) {
                // Refusals and no-ops must hold on fresh state, not only on what this process saw.
                trust_cache = false;
                continue;
            }
            decided.map_err(CommandError::domain)?;
            if events.is_empty() {
                return Ok(Executed::Done {
                    state: after,
                    events,
                    stored: vec![],
                });
            }
            let (claims, releases) = match claims_of {
                Some(f) => diff_claims(aggregate_id, &f(&before), &f(&after)),
                None => (vec![], vec![]),
            };
            let mut new_events = Vec::with_capacity(events.len());
            for e in &events {
                let (event_type, payload) =
                    domain::codec::encode(e).map_err(anyhow::Error::from)?;
                // The last line of defence for text no validation caught: PostgreSQL stores no
                // NUL in `jsonb`, so it is bad input (422) on every backend, never a failed append.
                if domain::tea::validate::json_has_nul(&payload) {
                    return Err(CommandError::Domain {
                        kind: ErrorKind::Validation,
                        message: "text must not contain the NUL character (U+0000)".into(),
                    });
                }
                new_events.push(NewEvent {
                    event_type,
                    event_version: e.event_version(),
                    payload,
                });
            }
            let idem_record = idempotency.map(|(idem, render)| {
                let reply = render(&after, &events);
                IdempotencyRecord {
                    user_id: ctx.actor.user_id.clone(),
                    key: idem.key.clone(),
                    request_hash: idem.request_hash.clone(),
                    status: reply.status,
                    body: reply.body,
                }
            });
            let req = AppendRequest {
                aggregate_type: A::TYPE.to_string(),
                aggregate_id: aggregate_id.to_string(),
                expected_sequence: seq,
                expected_hash: hash,
                events: new_events,
                metadata: ctx.metadata(),
                claims,
                releases,
                idempotency: idem_record,
            };
            match self.store.append(req).await {
                Ok(stored) => {
                    let last = stored.last().expect("at least one event");
                    self.appended
                        .fetch_add(stored.len() as u64, Ordering::Relaxed);
                    self.cache.put(
                        A::TYPE,
                        aggregate_id,
                        last.sequence,
                        Some(last.hash.clone()),
                        after.clone(),
                    );
                    return Ok(Executed::Done {
                        state: after,
                        events,
                        stored,
                    });
                }
                Err(AppendError::Conflict) => {
                    attempt += 1;
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                    self.cache.forget(A::TYPE, aggregate_id);
                    trust_cache = false;
                    let cap = 1u64 << attempt.min(6);
                    let jitter = rand::rng().random_range(0..=cap * 1_000);
                    tokio::time::sleep(Duration::from_micros(jitter)).await;
                    tracing::debug!(attempt, "optimistic concurrency conflict; retrying");
                }
                Err(AppendError::ClaimTaken(c)) => {
                    let field = c.scope.rsplit('.').next().unwrap_or(&c.scope).to_string();
                    return Err(CommandError::Taken {
                        field,
                        value: c.value,
                    });
                }
                Err(AppendError::IdempotencyKeyUsed) => {
                    let (idem, _) = idempotency.expect("only set with a key");
                    return match self.replay(&ctx.actor.user_id, idem).await? {
                        Some(reply) => Ok(Executed::Replayed(reply)),
                        None => Err(anyhow::anyhow!("idempotency record vanished").into()),
                    };
                }
                Err(AppendError::Store(e)) => return Err(CommandError::Internal(e)),
            }
        }
        Err(CommandError::Busy)
    }

    /// The stored reply of `user_id`'s earlier request with this key, if there was one (a key
    /// used for another request is `IdempotencyMismatch`).
    pub async fn replayed(
        &self,
        user_id: &str,
        idem: &Idempotency,
    ) -> Result<Option<Reply>, CommandError> {
        self.replay(user_id, idem).await
    }

    async fn replay(
        &self,
        user_id: &str,
        idem: &Idempotency,
    ) -> Result<Option<Reply>, CommandError> {
        match self.store.idempotent_response(user_id, &idem.key).await? {
            Some(rec) if rec.request_hash == idem.request_hash => Ok(Some(Reply {
                status: rec.status,
                body: rec.body,
            })),
            Some(_) => Err(CommandError::IdempotencyMismatch),
            None => Ok(None),
        }
    }
}

fn diff_claims(
    owner: &str,
    before: &[(&'static str, String)],
    after: &[(&'static str, String)],
) -> (Vec<Claim>, Vec<Claim>) {
    let to_claim = |(scope, value): &(&'static str, String)| Claim {
        scope: scope.to_string(),
        value: value.clone(),
        owner: owner.to_string(),
    };
    let claims = after
        .iter()
        .filter(|c| !before.contains(c))
        .map(to_claim)
        .collect();
    let releases = before
        .iter()
        .filter(|c| !after.contains(c))
        .map(to_claim)
        .collect();
    (claims, releases)
}
