//! Feeding a [`Sink`]: from its RabbitMQ queue, or from the log when there is no broker.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use eventstore::{tx_exec, EventStore};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use super::{Incoming, Outcome, Sink, StatusCell};
use crate::relay::{Message, EXCHANGE};
use crate::runtime::{load_checkpoint_db, save_checkpoint};

/// Dead-letter exchange shared by the sinks' queues.
pub const DLX: &str = "fafcab.dlx";
/// How long a log-driven sink waits after a wake-up before reading, to take a larger batch.
pub const GATHER: Duration = Duration::from_millis(50);
/// Unacknowledged messages a sink holds at once.
pub const PREFETCH: u16 = 32;

pub type SinkStatus = StatusCell;

/// Starts feeding `sink`; returns its status ("starting", "ok", "reconnecting: …", "disabled: …").
pub fn spawn_sink(
    store: EventStore,
    amqp_url: Option<String>,
    queue_prefix: &str,
    sink: Arc<dyn Sink>,
) -> SinkStatus {
    let prefix = queue_prefix.to_string();
    let status = StatusCell::default();
    status.set("starting");
    let st = status.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let result = match &amqp_url {
                Some(url) => from_queue(url, &prefix, sink.as_ref(), &st).await,
                None => from_log(&store, sink.as_ref(), &st).await,
            };
            match result {
                Ok(Stop::Disabled) => return,
                Ok(Stop::Ended) => backoff = Duration::from_millis(200),
                Err(e) => {
                    st.set(format!("reconnecting: {e:#}"));
                    tracing::warn!(
                        sink = sink.name(),
                        error = format!("{e:#}"),
                        "sink interrupted; retrying"
                    );
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    status
}

enum Stop {
    Ended,
    Disabled,
}

enum Verdict {
    Ack,
    Dead(String),
    Disabled(String),
}

/// Runs the sink on one message until it is done, dead, or the sink disables itself.
async fn settle(sink: &dyn Sink, msg: &Incoming) -> Verdict {
    loop {
        match sink.handle(msg).await {
            Outcome::Done => return Verdict::Ack,
            Outcome::Retry(after) => tokio::time::sleep(after.min(super::MAX_RETRY_WAIT)).await,
            Outcome::Dead(reason) => return Verdict::Dead(reason),
            Outcome::Disable(reason) => return Verdict::Disabled(reason),
        }
    }
}

async fn from_queue(
    url: &str,
    prefix: &str,
    sink: &dyn Sink,
    status: &StatusCell,
) -> anyhow::Result<Stop> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("failed to connect to RabbitMQ")?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        EXCHANGE.into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        DLX.into(),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await?;
    let queue = format!("{prefix}.{}", sink.name());
    let dlq = format!("{queue}.dlq");
    let qopts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(dlq.as_str().into(), qopts, FieldTable::default())
        .await?;
    ch.queue_bind(
        dlq.as_str().into(),
        DLX.into(),
        queue.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DLX.into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(queue.as_str().into()),
    );
    ch.queue_declare(queue.as_str().into(), qopts, args).await?;
    for key in sink.bindings() {
        ch.queue_bind(
            queue.as_str().into(),
            EXCHANGE.into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            format!("fafcab-{}", sink.name()).as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    status.set("ok");
    tracing::info!(sink = sink.name(), queue, "sink consuming");
    while let Some(delivery) = consumer.next().await {
        let d = delivery.context("consumer failed")?;
        let body: serde_json::Value = match serde_json::from_slice(&d.data) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(sink = sink.name(), error = %e, "message is not JSON; dead-lettering");
                d.acker
                    .nack(BasicNackOptions {
                        requeue: false,
                        ..Default::default()
                    })
                    .await?;
                continue;
            }
        };
        let id = d
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .or_else(|| body["id"].as_str().map(String::from))
            .unwrap_or_default();
        let msg = Incoming {
            id,
            event_type: d.routing_key.to_string(),
            body,
        };
        if !sink.wants(&msg.event_type) {
            d.acker.ack(BasicAckOptions::default()).await?;
            continue;
        }
        match settle(sink, &msg).await {
            Verdict::Ack => {
                d.acker.ack(BasicAckOptions::default()).await?;
            }
            Verdict::Dead(reason) => {
                tracing::warn!(sink = sink.name(), id = msg.id, reason, "dead-lettering");
                d.acker
                    .nack(BasicNackOptions {
                        requeue: false,
                        ..Default::default()
                    })
                    .await?;
            }
            Verdict::Disabled(reason) => {
                tracing::error!(
                    sink = sink.name(),
                    reason,
                    "sink disabled; its messages stay queued"
                );
                status.set(format!("disabled: {reason}"));
                d.acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
                let _ = conn.close(200, "sink disabled".into()).await;
                return Ok(Stop::Disabled);
            }
        }
    }
    Ok(Stop::Ended)
}

async fn from_log(
    store: &EventStore,
    sink: &dyn Sink,
    status: &StatusCell,
) -> anyhow::Result<Stop> {
    let name = format!("sink.{}", sink.name());
    let Some(_lead) = store.try_lead(&name).await? else {
        tokio::time::sleep(Duration::from_millis(500)).await;
        return Ok(Stop::Ended);
    };
    let db = store.db();
    let mut wake = store.subscribe();
    let mut cp = load_checkpoint_db(&db, &name).await?;
    let mut saved = cp;
    let mut last_saved = std::time::Instant::now();
    status.set("ok");
    loop {
        wake.borrow_and_update();
        let batch = store.read_log(cp, 200).await?;
        if batch.events.is_empty() {
            if batch.pending {
                tokio::time::sleep(Duration::from_millis(2)).await;
            } else if tokio::time::timeout(Duration::from_secs(2), wake.changed())
                .await
                .is_ok()
            {
                // Notifications need not be instant: gathering keeps this reader off the hot path.
                tokio::time::sleep(GATHER).await;
            }
            continue;
        }
        let mut handled = false;
        for e in &batch.events {
            if !sink.wants(&crate::cloudevents::cloud_type(e)) {
                continue;
            }
            handled = true;
            let m = Message::of(e)?;
            let msg = Incoming {
                id: m.id.clone(),
                event_type: m.routing_key.clone(),
                body: serde_json::from_slice(&m.body)?,
            };
            match settle(sink, &msg).await {
                Verdict::Ack => {}
                Verdict::Dead(reason) => {
                    tracing::warn!(sink = sink.name(), id = msg.id, reason, "dead-lettering");
                    let mut tx = db.begin().await?;
                    tx_exec!(
                        &mut tx,
                        "INSERT INTO dead_letters (sink, event_id, type, reason, body, failed_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                        sink.name(),
                        &msg.id,
                        &msg.event_type,
                        reason,
                        msg.body.to_string(),
                        Utc::now()
                    )?;
                    tx.commit().await?;
                }
                Verdict::Disabled(reason) => {
                    tracing::error!(sink = sink.name(), reason, "sink disabled");
                    status.set(format!("disabled: {reason}"));
                    return Ok(Stop::Disabled);
                }
            }
        }
        cp = batch.events.last().expect("non-empty").checkpoint();
        if handled || last_saved.elapsed() > crate::runtime::LAZY_SAVE {
            let mut tx = db.begin().await?;
            save_checkpoint(&mut tx, &name, saved, cp).await?;
            tx.commit().await?;
            saved = cp;
            last_saved = std::time::Instant::now();
        }
    }
}
