//! Redaction: the one sanctioned in-place change of stored events. A retention policy blanks
//! values of expired events (a message's text); the row keeps its `payload_hash` and `hash`, and
//! records in `redaction` which values went, their subtree hashes, when and why, so
//! `verify_chains` still proves everything that is left (see `chain::payload_matches`).

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;

use crate::chain::{redact_payload, Redaction};
use crate::{Backend, EventStore};

/// Largest number of events one `redact` call may change.
pub const MAX_REDACTIONS_PER_CALL: usize = 1_000;

/// Values to blank in one stored event, by JSON pointer (e.g. `/submission/text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactRequest {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub paths: Vec<String>,
}

impl EventStore {
    /// Blanks the requested values in one transaction; returns how many events changed (an event
    /// already redacted, or without such values, is left alone). Readers of the log see the
    /// redacted payloads from then on; the hash chains still verify.
    pub async fn redact(
        &self,
        requests: &[RedactRequest],
        reason: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<u64> {
        anyhow::ensure!(
            requests.len() <= MAX_REDACTIONS_PER_CALL,
            "at most {MAX_REDACTIONS_PER_CALL} redactions per call"
        );
        let mut changed = 0;
        match &self.backend {
            Backend::Pg(s, ..) => {
                let mut tx = s.pool.begin().await.context("failed to begin")?;
                for r in requests {
                    let row = sqlx::query(
                        "SELECT payload, hash_version, redaction FROM events \
                         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3 FOR UPDATE",
                    )
                    .bind(&r.aggregate_type)
                    .bind(&r.aggregate_id)
                    .bind(r.sequence)
                    .fetch_optional(&mut *tx)
                    .await
                    .context("failed to read an event to redact")?;
                    let Some(row) = row else { continue };
                    let mut payload: Value = row.get("payload");
                    let existing = row
                        .get::<Option<Value>, _>("redaction")
                        .map(serde_json::from_value::<Redaction>)
                        .transpose()
                        .context("bad redaction record")?;
                    let version: i16 = row.get("hash_version");
                    let Some(rec) =
                        redact_payload(version, &mut payload, existing, &r.paths, reason, at)
                    else {
                        continue;
                    };
                    sqlx::query(
                        "UPDATE events SET payload = $4, redaction = $5 \
                         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
                    )
                    .bind(&r.aggregate_type)
                    .bind(&r.aggregate_id)
                    .bind(r.sequence)
                    .bind(&payload)
                    .bind(serde_json::to_value(&rec)?)
                    .execute(&mut *tx)
                    .await
                    .context("failed to redact an event")?;
                    changed += 1;
                }
                tx.commit().await.context("failed to commit redactions")?;
            }
            Backend::Sqlite(s) => {
                let mut tx = s.write.begin().await.context("failed to begin")?;
                for r in requests {
                    let row = sqlx::query(
                        "SELECT payload, hash_version, redaction FROM events \
                         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
                    )
                    .bind(&r.aggregate_type)
                    .bind(&r.aggregate_id)
                    .bind(r.sequence)
                    .fetch_optional(&mut *tx)
                    .await
                    .context("failed to read an event to redact")?;
                    let Some(row) = row else { continue };
                    let mut payload: Value =
                        serde_json::from_str(row.get::<&str, _>("payload")).context("payload")?;
                    let existing = row
                        .get::<Option<String>, _>("redaction")
                        .map(|s| serde_json::from_str::<Redaction>(&s))
                        .transpose()
                        .context("bad redaction record")?;
                    let version = row.get::<i64, _>("hash_version") as i16;
                    let Some(rec) =
                        redact_payload(version, &mut payload, existing, &r.paths, reason, at)
                    else {
                        continue;
                    };
                    sqlx::query(
                        "UPDATE events SET payload = $4, redaction = $5 \
                         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
                    )
                    .bind(&r.aggregate_type)
                    .bind(&r.aggregate_id)
                    .bind(r.sequence)
                    .bind(payload.to_string())
                    .bind(serde_json::to_string(&rec)?)
                    .execute(&mut *tx)
                    .await
                    .context("failed to redact an event")?;
                    changed += 1;
                }
                tx.commit().await.context("failed to commit redactions")?;
            }
        }
        Ok(changed)
    }
}
