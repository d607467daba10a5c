//! Plain data exchanged with the event store: events, appends, checkpoints, claims.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Who did what, and why: carried by every event (DESIGN.md §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub actor: String,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub command_id: Uuid,
}

/// An event to append: its type name, version and serialized payload.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
}

/// An event of one stream, as loaded to rebuild an aggregate (already upcast).
#[derive(Debug, Clone)]
pub struct LoadedEvent {
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    /// The row's chain hash, when the loader read it (postgres-es's loader does not).
    pub hash: Option<Vec<u8>>,
}

/// An event as stored in the global log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub position: i64,
    pub tx_id: u64,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
    pub hash: Vec<u8>,
}

impl StoredEvent {
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            tx_id: self.tx_id,
            position: self.position,
        }
    }
}

/// A reader's place in the global log: the (transaction, position) of the last event it took.
/// On SQLite `tx_id` is always 0 and position order is commit order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Checkpoint {
    pub tx_id: u64,
    pub position: i64,
}

impl Checkpoint {
    pub const START: Checkpoint = Checkpoint {
        tx_id: 0,
        position: 0,
    };
}

/// A batch read from the log, and whether more events exist that are not yet safe to read
/// (written by transactions still in flight).
#[derive(Debug, Clone, Default)]
pub struct LogBatch {
    pub events: Vec<StoredEvent>,
    pub pending: bool,
}

/// A unique value (an item name, a SKU) owned by one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub scope: String,
    pub value: String,
    pub owner: String,
}

/// The response to replay for a repeated `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    pub user_id: String,
    pub key: String,
    pub request_hash: String,
    pub status: u16,
    pub body: String,
}

/// One atomic append.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// Last sequence the command saw (0 for a new stream); the append fails with `Conflict`
    /// if another writer got there first.
    pub expected_sequence: i64,
    /// Hash of the event at `expected_sequence` (empty for a new stream), if the caller knows it.
    /// Lets the store append without reading the stream head first: the primary key still
    /// refuses a stale sequence, and the event at that sequence can only have this hash.
    pub expected_hash: Option<Vec<u8>>,
    pub events: Vec<NewEvent>,
    pub metadata: EventMetadata,
    pub claims: Vec<Claim>,
    pub releases: Vec<Claim>,
    pub idempotency: Option<IdempotencyRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("optimistic concurrency conflict on the stream")]
    Conflict,
    #[error("{} {:?} is already taken", .0.scope, .0.value)]
    ClaimTaken(Claim),
    #[error("idempotency key already used")]
    IdempotencyKeyUsed,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Result of `audit verify`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VerifyReport {
    pub streams: u64,
    pub events: u64,
    pub first_break: Option<crate::ChainBreak>,
}

/// Proof of leadership; dropping it releases the lock (the connection goes back closed).
#[derive(Default)]
pub struct Leadership {
    pub(crate) _conn: Option<sqlx::PgConnection>,
}
