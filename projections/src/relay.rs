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
use async_trait::async_trait;
use chrono::Utc;
use eventstore::follow::{Consumer, Handled, Mode};
use eventstore::{Checkpoint, EventStore, StoredEvent};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use tokio::sync::broadcast;

use crate::cloudevents::to_cloud_event;
use crate::metrics::REGISTRY;
use crate::runtime::load_checkpoint_db;

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

    /// Feeds the relay from the process's log follower (one leader per database).
    pub fn spawn(&self) {
        let feed = Feed {
            relay: self.clone(),
            db: self.store.db(),
            amqp: None,
        };
        self.store
            .follower()
            .spawn(Box::new(feed), Mode::Durable, None);
    }
}

/// The relay as a consumer of the log follower: a session opens the broker channel, each batch
/// is published and confirmed before the follower saves the checkpoint.
struct Feed {
    relay: Relay,
    db: eventstore::Db,
    amqp: Option<(Connection, Channel)>,
}

#[async_trait]
impl Consumer for Feed {
    fn name(&self) -> &str {
        NAME
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        self.amqp = None;
        if let Bus::Amqp { url } = &self.relay.bus {
            let link = open_channel(url).await?;
            RECONNECTS.inc();
            self.relay.status.set(true);
            tracing::info!("relay connected to RabbitMQ");
            self.amqp = Some(link);
        }
        let cp = load_checkpoint_db(&self.db, NAME).await?;
        self.backlog(cp).await;
        Ok(())
    }

    async fn handle(
        &mut self,
        _saved: Checkpoint,
        to: Checkpoint,
        events: &[StoredEvent],
    ) -> anyhow::Result<Handled> {
        let messages = events
            .iter()
            .map(Message::of)
            .collect::<anyhow::Result<Vec<_>>>()?;
        match (&self.relay.bus, self.amqp.as_mut()) {
            (Bus::Amqp { .. }, Some((_, ch))) => publish_confirmed(ch, &messages).await?,
            (Bus::InProcess(tx), _) => {
                for m in messages {
                    // No subscriber is not an error: nothing in this process listens yet.
                    let _ = tx.send(Arc::new(m));
                }
            }
            (Bus::Amqp { .. }, None) => anyhow::bail!("no channel to RabbitMQ"),
        }
        let now = Utc::now();
        for e in events {
            LATENCY
                .observe((now - e.recorded_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6);
        }
        PUBLISHED.inc_by(events.len() as u64);
        self.backlog(to).await;
        Ok(Handled::Effects)
    }

    async fn idle(&mut self) -> anyhow::Result<()> {
        if let Some((_, ch)) = &self.amqp {
            anyhow::ensure!(ch.status().connected(), "the channel to RabbitMQ closed");
        }
        Ok(())
    }

    fn failed(&self, _e: &anyhow::Error) {
        self.relay
            .status
            .set(matches!(self.relay.bus, Bus::InProcess(_)));
    }
}

impl Feed {
    async fn backlog(&self, cp: Checkpoint) {
        if let Ok(head) = self.relay.store.head_position().await {
            BACKLOG.set((head - cp.position).max(0));
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
