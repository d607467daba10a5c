//! The relay: publishes every committed domain event, in log order, as a CloudEvents 1.0
//! structured-mode message on the durable topic exchange `fafcab.events` (routing key = the
//! CloudEvent type, AMQP `message_id` = the CloudEvent id, persistent delivery), and moves its
//! checkpoint only after the broker confirmed the whole batch. At-least-once: after a crash or a
//! broker outage it republishes from the checkpoint, and consumers deduplicate by id.
//!
//! Without `AMQP_URL` the same messages go to an in-process broadcast bus, so the embedded
//! default keeps working.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use eventstore::{EventStore, StoredEvent};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use tokio::sync::broadcast;

use crate::cloudevents::to_cloud_event;
use crate::metrics::REGISTRY;
use crate::runtime::{load_checkpoint_db, save_checkpoint};

pub const EXCHANGE: &str = "fafcab.events";
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// Checkpoint and leadership name of the relay.
pub const NAME: &str = "relay";
/// Events published (and confirmed) per batch.
pub const BATCH: i64 = 500;
/// Messages the in-process bus keeps for a slow subscriber before it reports `Lagged`.
pub const LOCAL_BUS_CAPACITY: usize = 4_096;

/// One message as it leaves the system.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub position: i64,
}

impl Message {
    pub fn of(e: &StoredEvent) -> anyhow::Result<Message> {
        let ce = to_cloud_event(e);
        Ok(Message {
            id: ce.id.clone(),
            routing_key: ce.event_type.clone(),
            body: serde_json::to_vec(&ce)?,
            position: e.position,
        })
    }
}

fn counter(name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("registers once");
    c
}

static PUBLISHED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "relay_events_published_total",
        "Events confirmed by the bus",
    )
});
static RECONNECTS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "relay_reconnects_total",
        "Connections to the broker opened after a failure",
    )
});
static BACKLOG: LazyLock<IntGauge> = LazyLock::new(|| {
    let g = IntGauge::new(
        "relay_backlog_events",
        "Log head position minus the relay's checkpoint",
    )
    .expect("valid");
    REGISTRY
        .register(Box::new(g.clone()))
        .expect("registers once");
    g
});
static LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    let h = Histogram::with_opts(
        HistogramOpts::new(
            "relay_publish_latency_seconds",
            "Event commit to broker confirmation",
        )
        .buckets(vec![
            0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
        ]),
    )
    .expect("valid metric");
    REGISTRY
        .register(Box::new(h.clone()))
        .expect("registers once");
    h
});

/// Where messages go.
#[derive(Clone)]
pub enum Bus {
    InProcess(broadcast::Sender<Arc<Message>>),
    Amqp { url: String },
}

/// The relay's view of the bus, for `/health`.
#[derive(Clone, Default)]
pub struct BusStatus(Arc<AtomicBool>);

impl BusStatus {
    pub fn up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct Relay {
    store: EventStore,
    bus: Bus,
    status: BusStatus,
}

impl Relay {
    pub fn new(store: EventStore, amqp_url: Option<String>) -> Self {
        let bus = match amqp_url {
            Some(url) => Bus::Amqp { url },
            None => Bus::InProcess(broadcast::channel(LOCAL_BUS_CAPACITY).0),
        };
        let status = BusStatus::default();
        // The in-process bus is always there.
        status.set(matches!(bus, Bus::InProcess(_)));
        Self { store, bus, status }
    }

    pub fn status(&self) -> BusStatus {
        self.status.clone()
    }

    /// Subscribes to the in-process bus (None when the bus is RabbitMQ).
    pub fn subscribe_local(&self) -> Option<broadcast::Receiver<Arc<Message>>> {
        match &self.bus {
            Bus::InProcess(tx) => Some(tx.subscribe()),
            Bus::Amqp { .. } => None,
        }
    }

    pub fn spawn(&self) {
        let relay = self.clone();
        tokio::spawn(async move { relay.run_forever().await });
    }

    async fn run_forever(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let lead = match self.store.try_lead(NAME).await {
                Ok(Some(l)) => l,
                Ok(None) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relay cannot try leadership; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            match self.lead().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    self.status.set(matches!(self.bus, Bus::InProcess(_)));
                    tracing::warn!(error = format!("{e:#}"), retry_in = ?backoff, "relay interrupted; will resume from its checkpoint");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            drop(lead);
        }
    }

    /// Publishes from the checkpoint on, for as long as the bus and the database answer.
    async fn lead(&self) -> anyhow::Result<()> {
        let mut amqp = match &self.bus {
            Bus::Amqp { url } => {
                let link = open_channel(url).await?;
                RECONNECTS.inc();
                self.status.set(true);
                tracing::info!("relay connected to RabbitMQ");
                Some(link)
            }
            Bus::InProcess(_) => None,
        };
        let db = self.store.db();
        let mut wake = self.store.subscribe();
        let mut cp = load_checkpoint_db(&db, NAME).await?;
        loop {
            wake.borrow_and_update();
            let batch = self.store.read_log(cp, BATCH).await?;
            if let Ok(head) = self.store.head_position().await {
                BACKLOG.set((head - cp.position).max(0));
            }
            if batch.events.is_empty() {
                if batch.pending {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                } else {
                    let _ = tokio::time::timeout(Duration::from_secs(2), wake.changed()).await;
                }
                if let Some((_, ch)) = &amqp {
                    anyhow::ensure!(ch.status().connected(), "the channel to RabbitMQ closed");
                }
                continue;
            }
            let messages = batch
                .events
                .iter()
                .map(Message::of)
                .collect::<anyhow::Result<Vec<_>>>()?;
            match (&self.bus, amqp.as_mut()) {
                (Bus::Amqp { .. }, Some((_, ch))) => publish_confirmed(ch, &messages).await?,
                (Bus::InProcess(tx), _) => {
                    for m in messages {
                        // No subscriber is not an error: nothing in this process listens yet.
                        let _ = tx.send(Arc::new(m));
                    }
                }
                (Bus::Amqp { .. }, None) => unreachable!("channel opened above"),
            }
            let now = Utc::now();
            for e in &batch.events {
                LATENCY.observe(
                    (now - e.recorded_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6,
                );
            }
            PUBLISHED.inc_by(batch.events.len() as u64);
            let to = batch.events.last().expect("non-empty").checkpoint();
            let mut tx = db.begin().await?;
            save_checkpoint(&mut tx, NAME, cp, to).await?;
            tx.commit().await?;
            cp = to;
        }
    }
}

/// Connects, declares the exchange and enables publisher confirms. The connection is returned
/// with the channel so that it lives (and closes) with it.
async fn open_channel(url: &str) -> anyhow::Result<(Connection, Channel)> {
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .context("connecting to RabbitMQ timed out")?
    .context("failed to connect to RabbitMQ")?;
    let ch = conn
        .create_channel()
        .await
        .context("failed to open a channel")?;
    ch.exchange_declare(
        EXCHANGE.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .context("failed to declare the exchange")?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .context("failed to enable publisher confirms")?;
    Ok((conn, ch))
}

/// Publishes a batch and waits until the broker confirmed every message of it.
async fn publish_confirmed(ch: &Channel, messages: &[Message]) -> anyhow::Result<()> {
    let mut confirms = Vec::with_capacity(messages.len());
    for m in messages {
        let props = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_message_id(m.id.clone().into())
            .with_delivery_mode(2)
            .with_app_id("fafcab".into())
            .with_timestamp(Utc::now().timestamp() as u64);
        let confirm = ch
            .basic_publish(
                EXCHANGE.into(),
                m.routing_key.clone().into(),
                BasicPublishOptions::default(),
                &m.body,
                props,
            )
            .await
            .context("publish failed")?;
        confirms.push(confirm);
    }
    for c in confirms {
        let confirmation = c.await.context("lost the broker's confirmation")?;
        anyhow::ensure!(confirmation.is_ack(), "the broker refused a message (nack)");
    }
    Ok(())
}
