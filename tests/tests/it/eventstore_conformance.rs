//! One conformance suite for both event-store backends: append/load, optimistic concurrency,
//! reading the global log from a checkpoint, upcasting, the hash chain, metadata, claims,
//! idempotency records, leadership and group commit (concurrent appends sharing a transaction,
//! each failing alone). PostgreSQL additionally proves gap-safe reads and the batch fallback.

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
    group_commit_lands_concurrent_appends_with_their_versions_and_chains,
    group_commit_failure_in_a_batch_fails_only_that_append,
    group_commit_conflict_is_retried_alone_by_the_command_bus,
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
impl domain::DomainError for Never {
    fn kind(&self) -> domain::ErrorKind {
        domain::ErrorKind::Validation
    }
}

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

/// Group commit: many tasks append to their own streams at once, each several times (one or two
/// events, with and without the head's hash). Every append lands at its sequence, the chains and
/// the log verify, and appends did share transactions.
async fn group_commit_lands_concurrent_appends_with_their_versions_and_chains(b: Backend) {
    const STREAMS: usize = 48;
    const ROUNDS: i64 = 6;
    let s = store(b).await;
    let mut tasks = vec![];
    for k in 0..STREAMS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("g{k}");
            let (mut seq, mut hash) = (0i64, Some(Vec::new()));
            let mut landed = vec![];
            for round in 0..ROUNDS {
                let n = if (k as i64 + round) % 3 == 0 { 2 } else { 1 };
                let mut r = req(&id, seq, (0..n).map(|i| added(round * 10 + i)).collect());
                // Every other stream makes the store read its head (the savepoint path).
                r.expected_hash = if k % 2 == 0 { hash.clone() } else { None };
                let stored = s.append(r).await.expect("append lands");
                assert_eq!(
                    stored.iter().map(|e| e.sequence).collect::<Vec<_>>(),
                    (seq + 1..=seq + n).collect::<Vec<_>>()
                );
                seq += n;
                hash = Some(stored.last().unwrap().hash.clone());
                landed.extend(stored);
            }
            landed
        }));
    }
    let mut landed = vec![];
    for t in tasks {
        landed.extend(t.await.unwrap());
    }
    let total = landed.len();
    let stats = s.group_commit_stats();
    assert_eq!(stats.appends, STREAMS as u64 * ROUNDS as u64);
    assert!(
        stats.largest_batch > 1 && stats.batches < stats.appends,
        "concurrent appends share transactions: {stats:?}"
    );
    assert!(stats.largest_batch <= eventstore::MAX_BATCH_APPENDS as u64);
    // The log holds exactly what each append returned, positions unique.
    let log = read_n(&s, Checkpoint::START, total).await;
    assert_eq!(log.len(), total);
    let mut by_id: std::collections::HashMap<_, _> =
        landed.iter().map(|e| (e.event_id, e)).collect();
    for e in &log {
        assert_eq!(by_id.remove(&e.event_id), Some(e), "stored as returned");
    }
    assert!(by_id.is_empty());
    if b == Backend::Postgres {
        let txs: std::collections::HashSet<_> = log.iter().map(|e| e.tx_id).collect();
        assert!(
            txs.len() < STREAMS * ROUNDS as usize,
            "appends of different streams committed in one transaction"
        );
    }
    for k in 0..STREAMS {
        let events = s.load::<Counter>(&format!("g{k}"), 0).await.unwrap();
        let seqs: Vec<i64> = events.iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    }
    let report = s.verify_chains().await.unwrap();
    assert_eq!(
        (report.streams, report.events, report.first_break),
        (STREAMS as u64, total as u64, None)
    );
}

/// One batch (one transaction) holding good appends next to a stale sequence (with and without
/// the head's hash), a claim taken by an earlier append of the same batch and a used
/// idempotency key: only those fail; the rest commit together, claims and idempotency records
/// with their events.
async fn group_commit_failure_in_a_batch_fails_only_that_append(b: Backend) {
    let s = store(b).await;
    let mut heads = vec![];
    for k in 0..4 {
        let first = s
            .append(req(&format!("b{k}"), 0, vec![added(1)]))
            .await
            .unwrap();
        heads.push(first[0].hash.clone());
    }
    let claim = |owner: &str| Claim {
        scope: "item.name".into(),
        value: "tea".into(),
        owner: owner.into(),
    };
    let record = |body: &str| IdempotencyRecord {
        user_id: "u_1".into(),
        key: "k1".into(),
        request_hash: "h".into(),
        status: 201,
        body: body.into(),
    };
    // 0: fine (hash known)   1: stale, hash known   2: stale, head read   3: fine, head read
    let mut fine = req("b0", 1, vec![added(2), added(3)]);
    fine.expected_hash = Some(heads[0].clone());
    let mut stale_hash = req("b1", 0, vec![added(2)]);
    stale_hash.expected_hash = Some(Vec::new());
    let stale_read = req("b2", 0, vec![added(2)]);
    let fine_read = req("b3", 1, vec![added(2)]);
    // 4: claims "tea"   5: claims "tea" too   6: idempotency key   7: same key again
    let mut claims_tea = req("c_x", 0, vec![added(1)]);
    claims_tea.claims = vec![claim("c_x")];
    let mut claims_again = req("c_y", 0, vec![added(1)]);
    claims_again.claims = vec![claim("c_y")];
    let mut keyed = req("k_a", 0, vec![added(1)]);
    keyed.idempotency = Some(record("first"));
    let mut keyed_again = req("k_b", 0, vec![added(1)]);
    keyed_again.idempotency = Some(record("second"));
    let results = s
        .append_batch_for_tests(vec![
            fine,
            stale_hash,
            stale_read,
            fine_read,
            claims_tea,
            claims_again,
            keyed,
            keyed_again,
        ])
        .await;
    let verdict: Vec<&str> = results
        .iter()
        .map(|r| match r {
            Ok(_) => "ok",
            Err(AppendError::Conflict) => "conflict",
            Err(AppendError::ClaimTaken(_)) => "taken",
            Err(AppendError::IdempotencyKeyUsed) => "key used",
            Err(AppendError::Store(e)) => panic!("store error: {e:#}"),
        })
        .collect();
    assert_eq!(
        verdict,
        ["ok", "conflict", "conflict", "ok", "ok", "taken", "ok", "key used"]
    );
    let ok: Vec<&eventstore::StoredEvent> = results.iter().flatten().flatten().collect();
    assert_eq!(ok.len(), 5);
    assert_eq!(
        results[0]
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.sequence)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    if b == Backend::Postgres {
        assert!(
            ok.iter().all(|e| e.tx_id == ok[0].tx_id),
            "the batch committed as one transaction"
        );
    }
    // What failed left nothing behind; what succeeded is in the log, as returned.
    for (id, n) in [
        ("b0", 3),
        ("b1", 1),
        ("b2", 1),
        ("b3", 2),
        ("c_x", 1),
        ("c_y", 0),
        ("k_a", 1),
        ("k_b", 0),
    ] {
        assert_eq!(
            s.load::<Counter>(id, 0).await.unwrap().len(),
            n,
            "stream {id}"
        );
    }
    let log = read_n(&s, Checkpoint::START, 9).await;
    for e in &ok {
        assert!(
            log.contains(e),
            "{} {} in the log",
            e.aggregate_id,
            e.sequence
        );
    }
    // The claim and the idempotency record committed with their events.
    let mut steal = req("c_z", 0, vec![added(1)]);
    steal.claims = vec![claim("c_z")];
    assert!(matches!(
        s.append(steal).await,
        Err(AppendError::ClaimTaken(_))
    ));
    assert_eq!(
        s.idempotent_response("u_1", "k1").await.unwrap(),
        Some(record("first"))
    );
    assert_eq!(s.verify_chains().await.unwrap().first_break, None);
}

/// Two processes (two stores, two command buses) on one database: process A's cached state of
/// one counter goes stale, then A runs commands on many counters at once. The stale one conflicts
/// in its batch and is retried alone; every command lands exactly once.
async fn group_commit_conflict_is_retried_alone_by_the_command_bus(b: Backend) {
    let url = fresh_database(b).await;
    let a = commands::CommandBus::new(EventStore::connect(&url, 8).await.unwrap());
    let other = commands::CommandBus::new(EventStore::connect(&url, 4).await.unwrap());
    let ctx = commands::Context::new(domain::Actor::new("u_1", vec![]));
    a.execute::<Counter>("hot", 1, &ctx, None, None)
        .await
        .unwrap();
    other
        .execute::<Counter>("hot", 10, &ctx, None, None)
        .await
        .unwrap();
    let mut tasks = vec![];
    for k in 0..24 {
        let (a, ctx) = (a.clone(), ctx.clone());
        tasks.push(tokio::spawn(async move {
            let id = if k == 0 {
                "hot".to_string()
            } else {
                format!("n{k}")
            };
            a.execute::<Counter>(&id, 100, &ctx, None, None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("every command lands");
    }
    assert!(
        a.conflicts_retried() >= 1,
        "the stale append conflicted and was retried"
    );
    let (seq, hot) = other.load::<Counter>("hot").await.unwrap();
    assert_eq!((seq, hot.total), (3, 111), "once each, in order");
    for k in 1..24 {
        let (seq, c) = other.load::<Counter>(&format!("n{k}")).await.unwrap();
        assert_eq!((seq, c.total), (1, 100));
    }
    assert_eq!(a.store().verify_chains().await.unwrap().first_break, None);
}

/// PostgreSQL: another process inserts the sequence a batched append expects to write while the
/// batch is in flight. The batch's statement fails as a whole; the store then appends each
/// request on its own: only the raced one conflicts, and the claim still commits with its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_batch_falls_back_to_single_appends_when_raced() {
    let url = fresh_database(Backend::Postgres).await;
    let s = EventStore::connect(&url, 8).await.unwrap();
    let head = s.append(req("race", 0, vec![added(1)])).await.unwrap();
    let head = &head[0];
    // Another writer takes sequence 2 of "race" and holds its transaction open.
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let mut racer = admin.begin().await.unwrap();
    let at = head.recorded_at;
    let event_id = Uuid::now_v7();
    let m = meta("u_other");
    let payload = json!({"amount": 5});
    let ph = eventstore::payload_hash(&payload);
    let hash = eventstore::event_hash(
        &head.hash, "counter", "race", 2, "Added", "2.0", event_id, &at, &m, &ph,
    );
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata, event_id, recorded_at, payload_hash, hash, hash_version) \
         VALUES ('counter', 'race', 2, 'Added', '2.0', $1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&payload)
    .bind(serde_json::to_value(&m).unwrap())
    .bind(event_id)
    .bind(at)
    .bind(&ph)
    .bind(&hash)
    .bind(eventstore::HASH_VERSION)
    .execute(&mut *racer)
    .await
    .unwrap();
    let mut raced = req("race", 1, vec![added(2)]);
    raced.expected_hash = Some(head.hash.clone());
    let mut plain = req("calm", 0, vec![added(3)]);
    plain.expected_hash = Some(Vec::new());
    let mut claiming = req("owner", 0, vec![added(4)]);
    claiming.claims = vec![Claim {
        scope: "item.name".into(),
        value: "oolong".into(),
        owner: "owner".into(),
    }];
    let batch = {
        let s = s.clone();
        tokio::spawn(async move { s.append_batch_for_tests(vec![raced, plain, claiming]).await })
    };
    // The batch waits on the racer's uncommitted row.
    eventually(Duration::from_secs(10), || {
        let admin = admin.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted",
            )
            .fetch_one(&admin)
            .await
            .unwrap();
            (waiting > 0).then_some(())
        }
    })
    .await;
    racer.commit().await.unwrap();
    let results = batch.await.unwrap();
    assert!(
        matches!(results[0], Err(AppendError::Conflict)),
        "{:?}",
        results[0]
    );
    assert_eq!(results[1].as_ref().unwrap()[0].sequence, 1);
    assert_eq!(results[2].as_ref().unwrap()[0].sequence, 1);
    assert_eq!(s.load::<Counter>("race", 0).await.unwrap().len(), 2);
    assert_eq!(s.load::<Counter>("owner", 0).await.unwrap().len(), 1);
    let mut steal = req("thief", 0, vec![added(1)]);
    steal.claims = vec![Claim {
        scope: "item.name".into(),
        value: "oolong".into(),
        owner: "thief".into(),
    }];
    assert!(matches!(
        s.append(steal).await,
        Err(AppendError::ClaimTaken(_))
    ));
    assert_eq!(s.verify_chains().await.unwrap().first_break, None);
}
