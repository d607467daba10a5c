//! Feeding a [`Sink`]: from its RabbitMQ queue, or from the log when there is no broker.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use eventstore::follow::{Backoff, Consumer, Handled, Mode};
use eventstore::{tx_exec, Checkpoint, Db, EventStore, StoredEvent};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use super::{Incoming, Outcome, Sink, StatusCell};
use crate::relay::{Message, EXCHANGE};

/// Dead-letter exchange shared by the sinks' queues.
pub const DLX: &str = "fafcab.dlx";
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
    let Some(url) = amqp_url else {
        let feed = LogFeed {
            name: format!("sink.{}", sink.name()),
            sink,
            db: store.db(),
            status: status.clone(),
        };
        store.follower().spawn(Box::new(feed), Mode::Durable, None);
        return status;
    };
    tokio::spawn(async move {
        let mut backoff = Backoff::restart();
        loop {
            match from_queue(&url, &prefix, sink.as_ref(), &st).await {
                Ok(Stop::Disabled) => return,
                Ok(Stop::Ended) => backoff.reset(),
                Err(e) => {
                    st.set(format!("reconnecting: {e:#}"));
                    tracing::warn!(
                        sink = sink.name(),
                        error = format!("{e:#}"),
                        "sink interrupted; retrying"
                    );
                }
            }
            backoff.wait().await;
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

/// A sink fed from the log by the process's follower (no broker): leadership and checkpoint
/// `sink.<name>`, dead letters in the `dead_letters` table.
struct LogFeed {
    name: String,
    sink: Arc<dyn Sink>,
    db: Db,
    status: StatusCell,
}

#[async_trait]
impl Consumer for LogFeed {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, e: &StoredEvent) -> bool {
        self.sink.wants(&crate::cloudevents::cloud_type(e))
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        self.status.set("ok");
        Ok(())
    }

    async fn handle(
        &mut self,
        _saved: Checkpoint,
        _to: Checkpoint,
        events: &[StoredEvent],
    ) -> anyhow::Result<Handled> {
        let sink = self.sink.as_ref();
        let mut handled = Handled::Nothing;
        for e in events {
            if !self.wants(e) {
                continue;
            }
            handled = Handled::Effects;
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
                    let mut tx = self.db.begin().await?;
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
                    self.status.set(format!("disabled: {reason}"));
                    return Ok(Handled::Stop);
                }
            }
        }
        Ok(handled)
    }

    fn failed(&self, e: &anyhow::Error) {
        self.status.set(format!("reconnecting: {e:#}"));
    }
}
