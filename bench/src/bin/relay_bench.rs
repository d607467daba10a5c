//! `fafcab-relay-bench`: appends events to a fresh PostgreSQL log as fast as it can (concurrent
//! writers, 50 events per append) while the relay publishes them to RabbitMQ with publisher
//! confirms, and prints the relay's throughput (events confirmed by the broker per second, until
//! its checkpoint covers the whole log) and latency from commit to a consumer's receipt.
//!
//! ```text
//! cargo build --release -p api
//! target/release/fafcab-relay-bench --events 100000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use eventstore::{AppendRequest, Checkpoint, EventMetadata, EventStore, NewEvent};
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use projections::relay::Relay;
use sqlx::Connection as _;

#[derive(Parser)]
struct Args {
    /// Events to append.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Total append rate in events/s (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg: String,
    #[arg(
        long,
        env = "TEST_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp: String,
}

const PER_APPEND: usize = 50;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let name = format!("fafcab_bench_{}", uuid::Uuid::new_v4().simple());
    let mut c = sqlx::PgConnection::connect(&args.pg)
        .await
        .context("PostgreSQL")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await?;
    let url = format!("{}/{name}", args.pg.rsplit_once('/').context("bad --pg")?.0);
    let store = EventStore::connect(&url, 16).await?;

    // A consumer of everything, to measure commit → receipt.
    let conn = Connection::connect(&args.amqp, ConnectionProperties::default())
        .await
        .context("RabbitMQ")?;
    let ch = conn.create_channel().await?;
    ch.exchange_declare(
        "fafcab.events".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    let queue = format!("fafcab-bench-{}", uuid::Uuid::new_v4().simple());
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        queue.as_str().into(),
        "fafcab.events".into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "bench".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let expected = (args.events / PER_APPEND) * PER_APPEND;
    let receiver = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(expected);
        let mut ids = std::collections::HashSet::with_capacity(expected);
        while ids.len() < expected {
            let Some(Ok(d)) = consumer.next().await else {
                break;
            };
            let now = chrono::Utc::now();
            let v: serde_json::Value = serde_json::from_slice(&d.data).unwrap_or_default();
            if let Some(t) = v["time"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            {
                lat.push(
                    (now - t.with_timezone(&chrono::Utc))
                        .num_microseconds()
                        .unwrap_or(0),
                );
            }
            ids.insert(v["id"].as_str().unwrap_or_default().to_string());
        }
        (lat, ids.len())
    });

    Relay::new(store.clone(), Some(args.amqp.clone())).spawn();
    let start = Instant::now();
    let appends = expected / PER_APPEND;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // With a rate, append i is due at start + i * PER_APPEND / rate.
    let rate = args.rate;
    let mut writers = vec![];
    for w in 0..args.writers {
        let (store, next) = (store.clone(), next.clone());
        writers.push(tokio::spawn(async move {
            let mut seq = 0i64;
            let stream = format!("bench-{w}");
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= appends {
                    return Ok::<_, anyhow::Error>(());
                }
                if rate > 0 {
                    let due =
                        start + Duration::from_secs_f64((i * PER_APPEND) as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let events = (0..PER_APPEND)
                    .map(|k| NewEvent {
                        event_type: "Pinged".into(),
                        event_version: "1.0".into(),
                        payload: serde_json::json!({"n": i * PER_APPEND + k}),
                    })
                    .collect();
                let req = AppendRequest {
                    aggregate_type: "bench".into(),
                    aggregate_id: stream.clone(),
                    expected_sequence: seq,
                    expected_hash: None,
                    events,
                    metadata: EventMetadata {
                        actor: "bench".into(),
                        correlation_id: uuid::Uuid::now_v7(),
                        causation_id: uuid::Uuid::now_v7(),
                        command_id: uuid::Uuid::now_v7(),
                    },
                    claims: vec![],
                    releases: vec![],
                    idempotency: None,
                };
                seq = store
                    .append(req)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .last()
                    .expect("events")
                    .sequence;
            }
        }));
    }
    for w in writers {
        w.await??;
    }
    let appended_in = start.elapsed();
    // Done when the relay's checkpoint covers the last event (i.e. the broker confirmed it).
    let last = store.read_log(Checkpoint::START, 1).await?; // warm
    drop(last);
    let head = store.head_position().await?;
    let db = store.db();
    loop {
        let cp = projections::runtime::load_checkpoint_db(&db, "relay").await?;
        if cp.position >= head {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "relay did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let relayed_in = start.elapsed();
    let (mut lat, received) = tokio::time::timeout(Duration::from_secs(60), receiver).await??;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "events appended     {expected} ({} writers, {PER_APPEND} per append, rate {})",
        args.writers,
        if rate > 0 {
            format!("{rate}/s")
        } else {
            "unlimited".into()
        }
    );
    println!(
        "append rate         {:.0} events/s",
        expected as f64 / appended_in.as_secs_f64()
    );
    println!(
        "relay throughput    {:.0} events/s confirmed by the broker",
        expected as f64 / relayed_in.as_secs_f64()
    );
    println!("received            {received} distinct ids");
    println!(
        "commit → receipt    p50 {:.1} ms, p99 {:.1} ms",
        pct(0.50),
        pct(0.99)
    );
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    Ok(())
}
