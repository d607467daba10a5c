//! Projection runtime: rebuilds equal incremental builds, the read model agrees with the
//! aggregates after any sequence of commands, and several processes share one database.

use std::time::Duration;

use api::Settings;
use commands::Context;
use domain::tea::{BatchSpec, ConsumptionSource, ConsumptionSpec, Item, ItemSpec};
use domain::{Actor, Role};
use eventstore::EventStore;
use fafcab_tests::*;
use projections::tea::queries;
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

on_both_backends!(
    rebuild_equals_incremental,
    read_model_agrees_with_aggregates,
    ten_consumers_survive_a_kill_mid_batch
);

async fn rebuild_equals_incremental(b: Backend) {
    let app = spawn_app(b).await;
    let a = admin();
    let tea = app.item("Tea", 5).await;
    let cups = app.item("Cups", 0).await;
    app.batch(&tea, 10, Some("2099-01-01")).await;
    app.batch(&cups, 3, None).await;
    app.post(
        &format!("/items/{tea}/consume"),
        &a,
        json!({"qty": 7, "user_id": "u_1"}),
    )
    .await;
    app.patch(
        &format!("/items/{cups}"),
        &a,
        json!({"name": "Mugs", "tags": ["x"]}),
    )
    .await;
    app.post("/thresholds", &a, json!({"item_id": cups, "min_qty": 2}))
        .await;
    app.post(
        "/announcements",
        &a,
        json!({"title": "t", "body": "b", "item_ids": [tea]}),
    )
    .await;
    let incremental = queries::dump(&app.state.db).await.unwrap();
    assert_eq!(
        incremental.len(),
        7,
        "2 items, 2 lots, 1 consumption, 1 rule, 1 announcement: {incremental:?}"
    );
    let applied = app.state.runner.rebuild("tea").await.unwrap();
    let log = app
        .state
        .store
        .read_log(eventstore::Checkpoint::START, 1000)
        .await
        .unwrap();
    assert_eq!(applied as usize, log.events.len());
    let rebuilt = queries::dump(&app.state.db).await.unwrap();
    assert_eq!(rebuilt, incremental);
    // The worker carries on from the rebuilt checkpoint without applying anything twice.
    app.post(
        &format!("/items/{tea}/consume"),
        &a,
        json!({"qty": 1, "user_id": "u_1"}),
    )
    .await;
    assert_eq!(
        app.get(&format!("/items/{tea}"), &a).await.body["stock_qty"],
        2
    );
    assert!(app.state.runner.rebuild("nope").await.is_err());
}

fn spec(name: &str) -> ItemSpec {
    ItemSpec {
        name: name.into(),
        unit: "u".into(),
        category: "c".into(),
        sku: None,
        active: true,
        track_expiry: false,
        min_stock_qty: 3,
        tags: vec![],
    }
}

/// A deterministic pseudo-random walk of receipts and consumptions (batch named or FIFO) over
/// three items; afterwards every item's stock and every lot agree between the write model and
/// the read model.
async fn read_model_agrees_with_aggregates(b: Backend) {
    let app = spawn_app(b).await;
    let bus = &app.state.bus;
    let ctx = Context::new(Actor::new("u_admin", vec![Role::Admin]));
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (i, id) in ids.iter().enumerate() {
        commands::tea::create_item(bus, &ctx, *id, spec(&format!("item{i}")), None)
            .await
            .unwrap();
    }
    let mut seed: u64 = 0x9E3779B97F4A7C15;
    let mut next = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    for _ in 0..150 {
        let id = ids[next(3) as usize];
        if next(3) == 0 {
            let batch = BatchSpec {
                batch_id: Uuid::now_v7(),
                batch_code: "b".into(),
                supplier_ref: None,
                expiry_date: None,
                qty_received: 1 + next(20) as i64,
                currency: "EUR".into(),
                cost_total: Decimal::new(next(10_000) as i64, 2),
                received_at: chrono::Utc::now(),
            };
            commands::tea::receive_batch(bus, &ctx, id, batch, None)
                .await
                .unwrap();
        } else {
            let (_, item) = bus.load::<Item>(&id.to_string()).await.unwrap();
            let batch_id = if next(2) == 0 && !item.batches.is_empty() {
                Some(item.batches[next(item.batches.len() as u64) as usize].batch_id)
            } else {
                None
            };
            let c = ConsumptionSpec {
                consumption_id: Uuid::now_v7(),
                qty: 1 + next(8) as i64,
                batch_id,
                user_id: "u_admin".into(),
                source: ConsumptionSource::Admin,
                notes: None,
                consumed_at: chrono::Utc::now(),
            };
            // Refusals (insufficient stock) are part of the walk.
            let _ = commands::tea::consume(bus, &ctx, id, c, None).await;
        }
    }
    // Wait (bounded) until the read model has caught up with every aggregate's stock.
    eventually(Duration::from_secs(20), || async {
        for id in &ids {
            let (_, item) = bus.load::<Item>(&id.to_string()).await.unwrap();
            let row = queries::get_item(&app.state.db, &id.to_string())
                .await
                .unwrap()?;
            if row.stock_qty != item.stock() {
                return None;
            }
        }
        Some(())
    })
    .await;
    for id in &ids {
        let (_, item) = bus.load::<Item>(&id.to_string()).await.unwrap();
        assert!(item.stock() >= 0);
        let row = queries::get_item(&app.state.db, &id.to_string())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.stock_qty, item.stock(), "stock of {id}");
        let (lots, _) = queries::list_batches(
            &app.state.db,
            &id.to_string(),
            projections::page::Page {
                after: 0,
                limit: 200,
            },
        )
        .await
        .unwrap();
        assert_eq!(lots.len(), item.batches.len());
        for (lot, state) in lots.iter().zip(&item.batches) {
            assert_eq!(lot.id, state.batch_id.to_string());
            assert_eq!(lot.qty_remaining, state.qty_remaining);
            assert!(lot.qty_remaining >= 0);
        }
    }
}

/// PostgreSQL scale-out: an API process without workers, two worker processes. Writes through
/// the API are visible through it (it waits on the shared checkpoint), and the two workers never
/// apply an event twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_api_without_workers_and_two_workers() {
    let url = fresh_database(Backend::Postgres).await;
    let mut settings = Settings::for_tests(&url);
    settings.run_workers = false;
    let app = spawn_with(settings).await;
    let mut runners = vec![];
    for _ in 0..2 {
        let store = EventStore::connect(&url, 4).await.unwrap();
        let runner = api::app::projections_for(&store);
        runner.spawn();
        runners.push(runner);
    }
    let a = admin();
    let id = app.item("Tea", 0).await;
    app.batch(&id, 200, None).await;
    let mut tasks = vec![];
    for n in 0..20 {
        let client = app.client.clone();
        let url = app.url(&format!("/items/{id}/consume"));
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(a)
                .json(&json!({"qty": 2, "user_id": format!("u_{n}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let item = app.get(&format!("/items/{id}"), &a).await;
    assert_eq!(item.body["stock_qty"], 160, "{}", item.text);
    let c = app
        .get(&format!("/consumption?item_id={id}&limit=200"), &a)
        .await;
    assert_eq!(c.body["events"].as_array().unwrap().len(), 20);
    assert_eq!(c.body["totals"]["qty"], 40);
    let errors = prometheus_value("projection_errors_total");
    assert_eq!(errors, 0.0, "no batch was applied twice or failed");
}

fn prometheus_value(name: &str) -> f64 {
    projections::metrics::REGISTRY
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
        .sum()
}

/// Consumers on the log follower in the crash test.
const CONSUMERS: usize = 10;

fn counted(id: &str, expected: i64, n: usize) -> eventstore::AppendRequest {
    let meta = eventstore::EventMetadata {
        actor: "u_1".into(),
        correlation_id: Uuid::now_v7(),
        causation_id: Uuid::now_v7(),
        command_id: Uuid::now_v7(),
    };
    eventstore::AppendRequest {
        aggregate_type: fafcab_tests::counting::COUNTED.into(),
        aggregate_id: id.into(),
        expected_sequence: expected,
        expected_hash: None,
        events: (0..n)
            .map(|i| eventstore::NewEvent {
                event_type: "Counted".into(),
                event_version: "1.0".into(),
                payload: json!({"n": expected + i as i64 + 1}),
            })
            .collect(),
        metadata: meta,
        claims: vec![],
        releases: vec![],
        idempotency: None,
    }
}

/// Appends `rounds` × 10 streams × 50 events (and one event of another type per round, which
/// the counting projections skip); `seq` holds each stream's last sequence.
async fn append_rounds(store: &EventStore, seq: &mut [i64], rounds: usize) {
    for _ in 0..rounds {
        for (s, last) in seq.iter_mut().enumerate() {
            store
                .append(counted(&format!("s{s}"), *last, 50))
                .await
                .unwrap();
            *last += 50;
        }
        let mut other = counted(&Uuid::now_v7().to_string(), 0, 1);
        other.aggregate_type = "other".into();
        store.append(other).await.unwrap();
    }
}

/// What every counting read model must hold: per stream, its events and the sum of their
/// positions, folded from the log.
async fn fold(store: &EventStore) -> Vec<(String, i64, i64)> {
    let mut per: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    let mut cp = eventstore::Checkpoint::START;
    loop {
        let batch = store.read_log(cp, 1_000).await.unwrap();
        let Some(last) = batch.events.last() else {
            break;
        };
        cp = last.checkpoint();
        for e in &batch.events {
            if e.aggregate_type == fafcab_tests::counting::COUNTED {
                let r = per.entry(e.aggregate_id.clone()).or_default();
                r.0 += 1;
                r.1 += e.position;
            }
        }
    }
    per.into_iter().map(|(k, (n, s))| (k, n, s)).collect()
}

async fn counts(store: &EventStore, projection: &str) -> Vec<(String, i64, i64)> {
    eventstore::db_fetch_all!(
        &store.db(),
        (String, i64, i64),
        "SELECT aggregate_id, n, pos_sum FROM follow_counts WHERE projection = $1 ORDER BY aggregate_id",
        projection
    )
    .unwrap()
}

/// Kills a child process (SIGKILL) when dropped, so a failing test leaves none behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Ten projections on one process's log follower; the process is killed (SIGKILL) while they
/// apply batches, more events are appended, a new follower takes over from the stored
/// checkpoints: every read model equals a fresh fold of the log (nothing lost, nothing applied
/// twice).
async fn ten_consumers_survive_a_kill_mid_batch(b: Backend) {
    let url = fresh_database(b).await;
    let store = EventStore::connect(&url, 4).await.unwrap();
    fafcab_tests::counting::create_table(&store.db())
        .await
        .unwrap();
    let mut seq = vec![0i64; 10];
    // SQLite is single-process: its writers would collide, so the log is written before the
    // child starts (it is killed while catching up alone). On PostgreSQL appends go on while
    // the child follows the shared tail.
    let concurrent = b == Backend::Postgres;
    append_rounds(&store, &mut seq, if concurrent { 2 } else { 8 }).await;
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_follower-crash-child"))
            .arg(CONSUMERS.to_string())
            .env("DATABASE_URL", &url)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let names: Vec<String> = (0..CONSUMERS).map(|i| format!("count.{i}")).collect();
    let db = store.db();
    // Kill the child as soon as some consumer committed a batch (of the later rounds, when
    // appending concurrently) while others are still behind: they are inside a batch.
    let first_phase = if concurrent {
        store.log_head().await.unwrap()
    } else {
        eventstore::Checkpoint::START
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let behind = loop {
        if concurrent {
            append_rounds(&store, &mut seq, 1).await;
        } else {
            // Polling with a deadline: the child works in another process.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let head = store.log_head().await.unwrap();
        let mut cps = vec![];
        for n in &names {
            cps.push(
                projections::runtime::load_checkpoint_db(&db, n)
                    .await
                    .unwrap(),
            );
        }
        if cps.iter().any(|c| *c > first_phase) && cps.iter().any(|c| *c < head) {
            child.0.kill().unwrap();
            child.0.wait().unwrap();
            break cps.iter().filter(|c| **c < head).count();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child applied nothing in time: {cps:?}"
        );
    };
    assert!(behind > 0);
    append_rounds(&store, &mut seq, 1).await;
    // Restart: a new follower with the same consumers resumes from the stored checkpoints.
    let restarted = EventStore::connect(&url, 16).await.unwrap();
    let runner = projections::ProjectionRunner::new(
        restarted.clone(),
        fafcab_tests::counting::counting(CONSUMERS),
    );
    runner.spawn();
    let head = store.log_head().await.unwrap();
    for n in &names {
        assert!(
            runner.wait_for(n, head, Duration::from_secs(120)).await,
            "{n} did not catch up after the restart"
        );
    }
    let expected = fold(&store).await;
    assert_eq!(expected.len(), 10);
    assert_eq!(
        expected.iter().map(|r| r.1).sum::<i64>(),
        seq.iter().sum::<i64>()
    );
    for n in &names {
        assert_eq!(
            counts(&store, n).await,
            expected,
            "read model {n} after the kill"
        );
    }
}
