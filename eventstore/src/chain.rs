//! Canonical event bytes and the per-stream SHA-256 hash chain.
//!
//! `hash = SHA-256(prev_hash ‖ canonical(header) ‖ payload_hash)` with
//! `payload_hash = SHA-256(canonical(payload))`. The payload is hashed on its own so that a
//! redacted payload can later keep its recorded `payload_hash` without breaking the chain.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{AppendRequest, EventMetadata, StoredEvent};

/// The first broken link found by `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
}

/// JSON with object keys sorted and no whitespace, independent of how the database stored it.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

pub fn payload_hash(payload: &Value) -> Vec<u8> {
    Sha256::digest(canonical_json(payload)).to_vec()
}

/// Recorded times are kept to the microsecond, the precision PostgreSQL stores.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[allow(clippy::too_many_arguments)]
pub fn event_hash(
    prev_hash: &[u8],
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    event_type: &str,
    event_version: &str,
    event_id: Uuid,
    recorded_at: &DateTime<Utc>,
    metadata: &EventMetadata,
    payload_hash: &[u8],
) -> Vec<u8> {
    let header = serde_json::json!({
        "aggregate_type": aggregate_type,
        "aggregate_id": aggregate_id,
        "sequence": sequence,
        "event_type": event_type,
        "event_version": event_version,
        "event_id": event_id,
        "recorded_at": format_time(recorded_at),
        "metadata": metadata,
    });
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical_json(&header));
    h.update(payload_hash);
    h.finalize().to_vec()
}

/// Row shape used by both backends when verifying.
pub(crate) struct ChainRow {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub event_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub metadata: EventMetadata,
    pub payload: Value,
    pub payload_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Folds rows ordered by (aggregate_type, aggregate_id, sequence) and checks every link.
pub(crate) struct ChainVerifier {
    current: Option<(String, String)>,
    prev_hash: Vec<u8>,
    pub report: crate::VerifyReport,
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self {
            current: None,
            prev_hash: Vec::new(),
            report: Default::default(),
        }
    }

    /// Returns false once a break was found (the caller may stop reading).
    pub fn check(&mut self, row: ChainRow) -> bool {
        if self.report.first_break.is_some() {
            return false;
        }
        let stream = (row.aggregate_type.clone(), row.aggregate_id.clone());
        if self.current.as_ref() != Some(&stream) {
            self.current = Some(stream);
            self.prev_hash.clear();
            self.report.streams += 1;
        }
        self.report.events += 1;
        let ph = payload_hash(&row.payload);
        let expected = event_hash(
            &self.prev_hash,
            &row.aggregate_type,
            &row.aggregate_id,
            row.sequence,
            &row.event_type,
            &row.event_version,
            row.event_id,
            &row.recorded_at,
            &row.metadata,
            &ph,
        );
        if ph != row.payload_hash || expected != row.hash {
            self.report.first_break = Some(ChainBreak {
                aggregate_type: row.aggregate_type,
                aggregate_id: row.aggregate_id,
                sequence: row.sequence,
            });
            return false;
        }
        self.prev_hash = row.hash;
        true
    }
}

/// One event of an append, numbered and hashed, ready to insert.
pub(crate) struct Prepared {
    pub sequence: i64,
    pub event_id: Uuid,
    pub payload_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Numbers and chains the events of `req` after the stream's last sequence and hash.
pub(crate) fn prepare(
    req: &AppendRequest,
    last_seq: i64,
    mut prev_hash: Vec<u8>,
    recorded_at: &DateTime<Utc>,
) -> Vec<Prepared> {
    req.events
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            let sequence = last_seq + 1 + i as i64;
            let event_id = Uuid::now_v7();
            let ph = payload_hash(&ev.payload);
            let hash = event_hash(
                &prev_hash,
                &req.aggregate_type,
                &req.aggregate_id,
                sequence,
                &ev.event_type,
                &ev.event_version,
                event_id,
                recorded_at,
                &req.metadata,
                &ph,
            );
            prev_hash = hash.clone();
            Prepared {
                sequence,
                event_id,
                payload_hash: ph,
                hash,
            }
        })
        .collect()
}

/// The stored form of the `i`-th event of `req` once the database assigned its place.
pub(crate) fn stored(
    req: &AppendRequest,
    i: usize,
    p: &Prepared,
    position: i64,
    tx_id: u64,
    recorded_at: DateTime<Utc>,
) -> StoredEvent {
    let ev = &req.events[i];
    StoredEvent {
        position,
        tx_id,
        event_id: p.event_id,
        aggregate_type: req.aggregate_type.clone(),
        aggregate_id: req.aggregate_id.clone(),
        sequence: p.sequence,
        event_type: ev.event_type.clone(),
        event_version: ev.event_version.clone(),
        payload: ev.payload.clone(),
        metadata: req.metadata.clone(),
        recorded_at,
        hash: p.hash.clone(),
    }
}

/// `INSERT INTO events … VALUES (…), (…)` for `n` events, eleven parameters each.
pub(crate) fn insert_sql(n: usize, returning: &str) -> String {
    let mut sql = String::from(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata, event_id, recorded_at, payload_hash, hash) VALUES ",
    );
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        let b = i * 11;
        let params: Vec<String> = (1..=11).map(|k| format!("${}", b + k)).collect();
        sql.push('(');
        sql.push_str(&params.join(", "));
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(returning);
    sql
}

/// Now, truncated to the microsecond so both backends store and hash the same instant.
pub(crate) fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    use chrono::SubsecRound;
    now.trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"z":[1,{"y":2,"x":3}],"c":"s"}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a":{"c":"s","z":[1,{"x":3,"y":2}]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            String::from_utf8(canonical_json(&a)).unwrap(),
            r#"{"a":{"c":"s","z":[1,{"x":3,"y":2}]},"b":1}"#
        );
    }

    #[test]
    fn decimal_text_is_kept_exactly() {
        let v: Value = serde_json::from_str(r#"{"cost":49.90}"#).unwrap();
        assert_eq!(canonical_json(&v), br#"{"cost":49.90}"#.to_vec());
    }
}
