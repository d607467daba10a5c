//! One conformance suite for both event-store backends: append/load, optimistic concurrency,
//! reading the global log from a checkpoint, upcasting, the hash chain, metadata, claims,
//! idempotency records and leadership. PostgreSQL additionally proves gap-safe reads.

use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::SemanticVersionEventUpcaster;
use cqrs_es::{Aggregate, DomainEvent};
use eventstore::{
    AppendError, AppendRequest, Checkpoint, Claim, EventMetadata, EventStore, IdempotencyRecord,
    NewEvent, Upcasters,
};
use fafcab_tests::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

on_both_backends!(
    append_load_and_metadata_round_trip,
    optimistic_concurrency_conflict,
    global_log_from_checkpoint,
    upcasts_old_event_versions,
    hash_chain_detects_tampering,
    claims_and_idempotency_records,
);

/// A minimal aggregate whose `Added` event went from v1 `{n}` to v2 `{amount}`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Counter {
    total: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CounterEvent {
    Added { amount: i64 },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> String {
        "Added".into()
    }
    fn event_version(&self) -> String {
        "2.0".into()
    }
}

#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

impl Aggregate for Counter {
    const TYPE: &'static str = "counter";
    type Command = i64;
    type Event = CounterEvent;
    type Error = Never;
    type Services = ();
    async fn handle(&mut self, amount: i64, _: &(), sink: &EventSink<Self>) -> Result<(), Never> {
        sink.write(CounterEvent::Added { amount }, self).await;
        Ok(())
    }
    fn apply(&mut self, e: CounterEvent) {
        let CounterEvent::Added { amount } = e;
        self.total += amount;
    }
}

/// Reads the log from `cp` once it holds `n` events. On PostgreSQL visibility follows the
/// cluster-wide xmin horizon, so a transaction held open by another test (in another database)
/// may delay, but never reorder or drop, what a reader sees.
async fn read_n(s: &EventStore, cp: Checkpoint, n: usize) -> Vec<eventstore::StoredEvent> {
    eventually(Duration::from_secs(20), || async {
        let b = s.read_log(cp, 1000).await.unwrap();
        (b.events.len() >= n).then_some(b.events)
    })
    .await
}

async fn store(b: Backend) -> EventStore {
    let url = fresh_database(b).await;
    EventStore::connect(&url, 8).await.expect("store")
}

fn meta(actor: &str) -> EventMetadata {
    EventMetadata {
        actor: actor.into(),
        correlation_id: Uuid::now_v7(),
        causation_id: Uuid::now_v7(),
        command_id: Uuid::now_v7(),
    }
}

fn added(amount: i64) -> NewEvent {
    NewEvent {
        event_type: "Added".into(),
        event_version: "2.0".into(),
        payload: json!({"amount": amount}),
    }
}

fn req(id: &str, expected: i64, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        aggregate_type: "counter".into(),
        aggregate_id: id.into(),
        expected_sequence: expected,
        expected_hash: None,
        events,
        metadata: meta("u_1"),
        claims: vec![],
        releases: vec![],
        idempotency: None,
    }
}

async fn append_load_and_metadata_round_trip(b: Backend) {
    let s = store(b).await;
    let mut r = req("c1", 0, vec![added(1), added(2)]);
    r.metadata = meta("u_meta");
    let stored = s.append(r.clone()).await.expect("append");
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(stored[0].position < stored[1].position);
    assert_ne!(stored[0].event_id, stored[1].event_id);
    assert_eq!(
        stored[0].event_id.get_version_num(),
        7,
        "event ids are UUID v7"
    );
    let loaded = s.load::<Counter>("c1", 0).await.unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[1].payload, json!({"amount": 2}));
    assert_eq!(
        s.load::<Counter>("c1", 1).await.unwrap().len(),
        1,
        "loads after a sequence"
    );
    assert!(s.load::<Counter>("nobody", 0).await.unwrap().is_empty());
    let log = read_n(&s, Checkpoint::START, 2).await;
    assert_eq!(
        log, stored,
        "what was appended is what the log returns, metadata and all"
    );
    assert_eq!(log[0].metadata, r.metadata);
    assert!(
        (chrono::Utc::now() - log[0].recorded_at)
            .num_seconds()
            .abs()
            < 60
    );
}

async fn optimistic_concurrency_conflict(b: Backend) {
    let s = store(b).await;
    s.append(req("c1", 0, vec![added(1)])).await.unwrap();
    assert!(matches!(
        s.append(req("c1", 0, vec![added(1)])).await,
        Err(AppendError::Conflict)
    ));
    assert!(matches!(
        s.append(req("c1", 5, vec![added(1)])).await,
        Err(AppendError::Conflict)
    ));
    // Racing writers at the same sequence: exactly one wins.
    let mut tasks = vec![];
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.append(req("c1", 1, vec![added(1)])).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(AppendError::Conflict) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(s.load::<Counter>("c1", 0).await.unwrap().len(), 2);
    // The fast path (caller knows the head's hash, nothing is read first) still refuses a stale
    // sequence, and keeps the chain intact when the sequence is right.
    let head = s.load::<Counter>("c1", 1).await.unwrap().pop().unwrap();
    let mut stale = req("c1", 1, vec![added(1)]);
    stale.expected_hash = Some(head.hash.clone().unwrap());
    assert!(matches!(s.append(stale).await, Err(AppendError::Conflict)));
    let mut fresh = req("c1", 2, vec![added(1), added(2)]);
    fresh.expected_hash = head.hash.clone();
    let stored = s.append(fresh).await.unwrap();
    assert_eq!(
        stored.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [3, 4]
    );
    assert!(stored[0].position > 0 && stored[1].position > stored[0].position);
    assert_eq!(s.verify_chains().await.unwrap().first_break, None);
}

async fn global_log_from_checkpoint(b: Backend) {
    let s = store(b).await;
    for i in 0..5 {
        s.append(req(&format!("c{i}"), 0, vec![added(i)]))
            .await
            .unwrap();
    }
    let all = read_n(&s, Checkpoint::START, 5).await;
    assert_eq!(all.len(), 5);
    let first = s.read_log(Checkpoint::START, 2).await.unwrap().events;
    assert_eq!(first.len(), 2);
    let rest = s.read_log(first[1].checkpoint(), 100).await.unwrap().events;
    assert_eq!(rest.len(), 3);
    assert_eq!([first, rest].concat(), all);
    let cp = s.checkpoint_of(all[2].position).await.unwrap().unwrap();
    assert_eq!(cp, all[2].checkpoint());
    assert_eq!(s.read_log(cp, 100).await.unwrap().events, all[3..].to_vec());
    assert_eq!(s.head_position().await.unwrap(), all[4].position);
}

async fn upcasts_old_event_versions(b: Backend) {
    let url = fresh_database(b).await;
    let raw = EventStore::connect(&url, 4).await.unwrap();
    // An event written by an older release: v1 with field `n`.
    raw.append(req(
        "old",
        0,
        vec![NewEvent {
            event_type: "Added".into(),
            event_version: "1.0".into(),
            payload: json!({"n": 7}),
        }],
    ))
    .await
    .unwrap();
    let upcasters = Upcasters::new(vec![Box::new(SemanticVersionEventUpcaster::new(
        "Added",
        "2.0",
        Box::new(|mut v: serde_json::Value| {
            let n = v["n"].take();
            json!({"amount": n})
        }),
    ))]);
    let s = EventStore::connect(&url, 4)
        .await
        .unwrap()
        .with_upcasters(upcasters);
    let loaded = s.load::<Counter>("old", 0).await.unwrap();
    assert_eq!(
        loaded[0].event_version, "2.0.0",
        "SemanticVersionEventUpcaster writes a full semver"
    );
    assert_eq!(loaded[0].payload, json!({"amount": 7}));
    let logged = read_n(&s, Checkpoint::START, 1).await;
    assert_eq!(logged[0].payload, json!({"amount": 7}));
    // The stored row is untouched (events are never rewritten) and its chain still verifies.
    assert_eq!(
        read_n(&raw, Checkpoint::START, 1).await[0].payload,
        json!({"n": 7})
    );
    assert_eq!(s.verify_chains().await.unwrap().first_break, None);
    // And the command layer folds it as the current version.
    let bus = commands::CommandBus::new(s);
    let (_, state) = bus.load::<Counter>("old").await.unwrap();
    assert_eq!(state.total, 7);
}

async fn hash_chain_detects_tampering(b: Backend) {
    let s = store(b).await;
    s.append(req("a", 0, vec![added(1), added(2)]))
        .await
        .unwrap();
    s.append(req("a", 2, vec![added(3)])).await.unwrap();
    s.append(req("b", 0, vec![added(4)])).await.unwrap();
    let ok = s.verify_chains().await.unwrap();
    assert_eq!(
        (ok.streams, ok.events, ok.first_break.clone()),
        (2, 4, None)
    );
    // Each link depends on the previous one.
    let log = read_n(&s, Checkpoint::START, 4).await;
    let a: Vec<_> = log.iter().filter(|e| e.aggregate_id == "a").collect();
    let expected = eventstore::event_hash(
        &a[0].hash,
        "counter",
        "a",
        2,
        "Added",
        "2.0",
        a[1].event_id,
        &a[1].recorded_at,
        &a[1].metadata,
        &eventstore::payload_hash(&a[1].payload),
    );
    assert_eq!(a[1].hash, expected);
    s.tamper_payload_for_tests("counter", "a", 2, json!({"amount": 2000}))
        .await
        .unwrap();
    let broken = s.verify_chains().await.unwrap();
    assert_eq!(
        broken.first_break,
        Some(eventstore::ChainBreak {
            aggregate_type: "counter".into(),
            aggregate_id: "a".into(),
            sequence: 2
        })
    );
}

async fn claims_and_idempotency_records(b: Backend) {
    let s = store(b).await;
    let claim = |owner: &str, v: &str| Claim {
        scope: "item.name".into(),
        value: v.into(),
        owner: owner.into(),
    };
    let mut r = req("x", 0, vec![added(1)]);
    r.claims = vec![claim("x", "tea")];
    s.append(r).await.unwrap();
    let mut r = req("y", 0, vec![added(1)]);
    r.claims = vec![claim("y", "tea")];
    match s.append(r).await {
        Err(AppendError::ClaimTaken(c)) => assert_eq!(c.value, "tea"),
        other => panic!("expected ClaimTaken, got {other:?}"),
    }
    assert!(
        s.load::<Counter>("y", 0).await.unwrap().is_empty(),
        "a refused append leaves nothing behind"
    );
    // Renaming releases: x gives up "tea", y can take it.
    let mut r = req("x", 1, vec![added(1)]);
    r.releases = vec![claim("x", "tea")];
    r.claims = vec![claim("x", "green tea")];
    s.append(r).await.unwrap();
    let mut r = req("y", 0, vec![added(1)]);
    r.claims = vec![claim("y", "tea")];
    s.append(r).await.unwrap();

    let record = IdempotencyRecord {
        user_id: "u_1".into(),
        key: "k".into(),
        request_hash: "h".into(),
        status: 201,
        body: "{\"ok\":true}".into(),
    };
    let mut r = req("z", 0, vec![added(1)]);
    r.idempotency = Some(record.clone());
    s.append(r.clone()).await.unwrap();
    let mut again = req("z2", 0, vec![added(1)]);
    again.idempotency = Some(record.clone());
    assert!(matches!(
        s.append(again).await,
        Err(AppendError::IdempotencyKeyUsed)
    ));
    assert!(s.load::<Counter>("z2", 0).await.unwrap().is_empty());
    assert_eq!(
        s.idempotent_response("u_1", "k").await.unwrap(),
        Some(record)
    );
    assert_eq!(s.idempotent_response("u_2", "k").await.unwrap(), None);
}

/// PostgreSQL: a writer that took a lower position but commits after later writers is still
/// delivered, in order, to a reader that started before it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_log_is_gap_safe() {
    let url = fresh_database(Backend::Postgres).await;
    let s = EventStore::connect(&url, 8).await.unwrap();
    s.append(req("before", 0, vec![added(1)])).await.unwrap();
    // Delay the insert of stream "slow" inside its transaction until the test lets it go.
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION test_hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.aggregate_id = 'slow' THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF; RETURN NEW; END; $$; \
         CREATE TRIGGER test_hold BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION test_hold();",
    )
    .execute(&admin)
    .await
    .unwrap();
    let mut gate = admin.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut *gate)
        .await
        .unwrap();

    let first = read_n(&s, Checkpoint::START, 1).await;
    assert_eq!(first.len(), 1);
    let cp = first[0].checkpoint();

    let slow = {
        let s = s.clone();
        tokio::spawn(async move { s.append(req("slow", 0, vec![added(2)])).await })
    };
    // Wait until the slow writer holds its position and waits on the gate.
    eventually(Duration::from_secs(10), || {
        let admin = admin.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            )
            .fetch_one(&admin)
            .await
            .unwrap();
            (waiting > 0).then_some(())
        }
    })
    .await;
    // Later writers commit with higher positions.
    for i in 0..3 {
        s.append(req(&format!("fast{i}"), 0, vec![added(3)]))
            .await
            .unwrap();
    }
    let max_fast: i64 =
        sqlx::query_scalar("SELECT max(position) FROM events WHERE aggregate_id LIKE 'fast%'")
            .fetch_one(&admin)
            .await
            .unwrap();
    // The reader must not step past the uncommitted event: nothing new is safe yet, and it knows
    // events are pending.
    let during = s.read_log(cp, 100).await.unwrap();
    assert!(
        during.events.is_empty(),
        "read past an in-flight transaction: {:?}",
        during.events
    );
    assert!(during.pending);
    // Release the slow writer; it commits last, with a lower position than the fast ones.
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut *gate)
        .await
        .unwrap();
    let slow_event = slow.await.unwrap().unwrap();
    assert!(
        slow_event[0].position < max_fast,
        "the slow event took the lower position"
    );
    let after = eventually(Duration::from_secs(10), || {
        let s = s.clone();
        async move {
            let b = s.read_log(cp, 100).await.unwrap();
            (b.events.len() == 4).then_some(b.events)
        }
    })
    .await;
    let ids: Vec<&str> = after.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(
        ids,
        ["slow", "fast0", "fast1", "fast2"],
        "delivered, in commit-safe order, none skipped"
    );
}

/// PostgreSQL: one leader per projection across processes (advisory lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_leadership_is_exclusive() {
    let url = fresh_database(Backend::Postgres).await;
    let a = EventStore::connect(&url, 4).await.unwrap();
    let b = EventStore::connect(&url, 4).await.unwrap();
    let lead = a
        .try_lead("tea")
        .await
        .unwrap()
        .expect("first process leads");
    assert!(
        b.try_lead("tea").await.unwrap().is_none(),
        "second process must not lead"
    );
    assert!(
        b.try_lead("other").await.unwrap().is_some(),
        "locks are per projection"
    );
    drop(lead);
    eventually(Duration::from_secs(10), || {
        let b = b.clone();
        async move { b.try_lead("tea").await.unwrap() }
    })
    .await;
}
