//! The retention job: finds messages older than their chat's `retention_days`, redacts their
//! texts from the stored events (`MessageSubmitted`, `MessagePosted`, `MessageEdited`) and appends
//! `MessageExpired`, after which the read model drops them. One leader per database runs it every
//! `FAFCAB_RETENTION_INTERVAL_SECS`; `fafcab retention run [--now T]` runs one pass.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use commands::{CommandBus, Context};
use domain::chat::{Message, Operation, OperationCommand};
use domain::{Actor, Role};
use eventstore::{RedactRequest, MAX_REDACTIONS_PER_CALL};
use projections::chat::retention as rq;
use serde::Serialize;

/// Leadership lock of the periodic job.
pub const LEADER: &str = "job.retention";
/// The acting user recorded in the events the job appends.
pub const ACTOR: &str = "system:retention";
/// Delay before the first pass after start-up.
pub const FIRST_PASS_AFTER: Duration = Duration::from_secs(30);

/// Explicit bounds of one pass.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages read (and then expired) per query.
    pub batch: i64,
    /// Messages expired per pass at most; the next pass continues.
    pub max_messages: u64,
    /// Chats read per query.
    pub chat_page: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            batch: 100,
            max_messages: 10_000,
            chat_page: 500,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub chats_scanned: u64,
    pub messages_expired: u64,
    /// Rejected submissions past retention (they never became messages, but hold a text).
    pub operations_expired: u64,
    pub events_redacted: u64,
    /// `max_messages` was reached: more expired messages may be left for the next pass.
    pub limit_reached: bool,
}

/// One pass: every message created before `now - retention_days` of its chat is expired.
/// `now` is a parameter so that tests and operators can look ahead; the events record real time.
pub async fn run_once(
    bus: &CommandBus,
    now: DateTime<Utc>,
    limits: Limits,
) -> anyhow::Result<Report> {
    let store = bus.store();
    let db = store.db();
    let ctx = Context::new(Actor::new(ACTOR, vec![Role::Admin]));
    let mut report = Report::default();
    let mut after_chat = String::new();
    'chats: loop {
        let chats = rq::chats(&db, &after_chat, limits.chat_page).await?;
        let Some(last) = chats.last() else { break };
        after_chat = last.id.clone();
        for chat in chats {
            report.chats_scanned += 1;
            let cutoff = rq::cutoff(chat.retention_days, now);
            let reason = format!(
                "retention: chat {} keeps messages {} days",
                chat.id, chat.retention_days
            );
            let mut after_seq = 0;
            loop {
                let batch =
                    rq::expired_messages(&db, &chat.id, cutoff, after_seq, limits.batch).await?;
                let Some(last) = batch.last() else { break };
                after_seq = last.seq;
                for m in batch {
                    if report.messages_expired >= limits.max_messages {
                        report.limit_reached = true;
                        break 'chats;
                    }
                    report.events_redacted += redact_message(bus, &m.id, &reason).await?;
                    commands::retention::expire(bus, &ctx, &m.id, chat.retention_days)
                        .await
                        .map_err(|e| anyhow::anyhow!("failed to expire message {}: {e}", m.id))?;
                    report.messages_expired += 1;
                }
            }
            let mut after_op = String::new();
            loop {
                let batch =
                    rq::expired_rejections(&db, &chat.id, cutoff, &after_op, limits.batch).await?;
                let Some(last) = batch.last() else { break };
                after_op = last.clone();
                for op in batch {
                    if report.messages_expired + report.operations_expired >= limits.max_messages {
                        report.limit_reached = true;
                        break 'chats;
                    }
                    report.events_redacted += redact_submission(store, &op, &reason).await?;
                    let cmd = OperationCommand::Expire { at: now_micros() };
                    bus.execute::<Operation>(&op, cmd, &ctx, None, None)
                        .await
                        .map_err(|e| anyhow::anyhow!("failed to expire operation {op}: {e}"))?;
                    report.operations_expired += 1;
                }
            }
        }
    }
    Ok(report)
}

/// Blanks the texts of one message in the log: its posting, its edits, and its submission.
/// Safe to repeat (already redacted values are left alone). Returns the events changed.
pub async fn redact_message(
    bus: &CommandBus,
    message_id: &str,
    reason: &str,
) -> anyhow::Result<u64> {
    let store = bus.store();
    let mut requests = vec![];
    let mut operation_id = None;
    for e in store.load::<Message>(message_id, 0).await? {
        let path = match e.event_type.as_str() {
            "MessagePosted" => {
                operation_id = e
                    .payload
                    .pointer("/submission/operation_id")
                    .and_then(|v| v.as_str())
                    .map(String::from);
                "/submission/text"
            }
            "MessageEdited" => "/text",
            _ => continue,
        };
        requests.push(RedactRequest {
            aggregate_type: <Message as cqrs_es::Aggregate>::TYPE.into(),
            aggregate_id: message_id.to_string(),
            sequence: e.sequence,
            paths: vec![path.into()],
        });
    }
    if let Some(op) = operation_id {
        requests.extend(submission_redactions(store, &op).await?);
    }
    let mut changed = 0;
    for chunk in requests.chunks(MAX_REDACTIONS_PER_CALL) {
        changed += store
            .redact(chunk, reason, Utc::now())
            .await
            .with_context(|| format!("failed to redact message {message_id}"))?;
    }
    Ok(changed)
}

async fn submission_redactions(
    store: &eventstore::EventStore,
    operation_id: &str,
) -> anyhow::Result<Vec<RedactRequest>> {
    Ok(store
        .load::<Operation>(operation_id, 0)
        .await?
        .into_iter()
        .filter(|e| e.event_type == "MessageSubmitted")
        .map(|e| RedactRequest {
            aggregate_type: <Operation as cqrs_es::Aggregate>::TYPE.into(),
            aggregate_id: operation_id.to_string(),
            sequence: e.sequence,
            paths: vec!["/submission/text".into()],
        })
        .collect())
}

/// Blanks the text of a submission that never became a message (it was rejected).
async fn redact_submission(
    store: &eventstore::EventStore,
    operation_id: &str,
    reason: &str,
) -> anyhow::Result<u64> {
    let requests = submission_redactions(store, operation_id).await?;
    store
        .redact(&requests, reason, Utc::now())
        .await
        .with_context(|| format!("failed to redact operation {operation_id}"))
}

fn now_micros() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// Runs a pass every `interval` (the first one shortly after start-up) while this process holds
/// the job's leadership; a failed pass (or lock attempt) is retried sooner, with the workers'
/// back-off, never later than `interval`.
pub fn spawn_worker(bus: CommandBus, interval: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(FIRST_PASS_AFTER.min(interval)).await;
        let mut backoff = eventstore::Backoff::new(Duration::from_secs(1), interval);
        loop {
            let ok = match bus.store().try_lead(LEADER).await {
                Ok(Some(_lead)) => match run_once(&bus, Utc::now(), Limits::default()).await {
                    Ok(r) => {
                        tracing::info!(
                            chats = r.chats_scanned,
                            expired = r.messages_expired,
                            operations = r.operations_expired,
                            redacted = r.events_redacted,
                            limit_reached = r.limit_reached,
                            "retention pass done"
                        );
                        true
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retention pass failed; retrying");
                        false
                    }
                },
                Ok(None) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "retention job cannot take its lock");
                    false
                }
            };
            if ok {
                backoff.reset();
                tokio::time::sleep(interval).await;
            } else {
                backoff.wait().await;
            }
        }
    });
}
