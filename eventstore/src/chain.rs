//! Canonical event bytes and the per-stream SHA-256 hash chain.
//!
//! `hash = SHA-256(prev_hash ‖ canonical(header) ‖ payload_hash)`. The payload is hashed on its
//! own so that a redacted payload keeps its recorded `payload_hash` without breaking the chain.
//! Hash version 1 (rows written before retention existed): `payload_hash =
//! SHA-256(canonical(payload))`. Version 2 (every new row): `payload_hash` is the root of a Merkle
//! hash over the payload's JSON tree ([`payload_hash`]), so a redaction can blank one value, record
//! that value's subtree hash, and the root still recomputes from what is left.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
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

/// The hash version new rows are written with.
pub const HASH_VERSION: i16 = 2;

/// Version 1: the SHA-256 of the canonical payload (rows written before hash version 2).
pub fn payload_hash_v1(payload: &Value) -> Vec<u8> {
    Sha256::digest(canonical_json(payload)).to_vec()
}

/// Version 2 (current): the Merkle root of the payload. Scalars hash as `SHA-256("s" ‖
/// canonical(v))`, arrays as `SHA-256("a" ‖ h(item)…)`, objects as `SHA-256("o" ‖ (json(key) ‖
/// h(value))…)` with keys sorted.
pub fn payload_hash(payload: &Value) -> Vec<u8> {
    merkle_root(payload, &BTreeMap::new())
}

/// The Merkle root with the subtree hashes of redacted values (by JSON pointer) taken as given.
pub fn merkle_root(payload: &Value, overrides: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut path = String::new();
    node_hash(payload, &mut path, overrides).to_vec()
}

/// A node's hash. Writes keys and scalars straight into the hasher (no intermediate strings);
/// an override that is not a SHA-256 (32 bytes) is used as it is, like any other.
fn node_hash(v: &Value, path: &mut String, ov: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    if !ov.is_empty() {
        if let Some(h) = ov.get(path.as_str()) {
            return h.clone();
        }
    }
    let mut h = Sha256::new();
    match v {
        Value::Object(map) => {
            h.update(b"o");
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (k, v) in entries {
                let len = path.len();
                if !ov.is_empty() {
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                }
                serde_json::to_writer(&mut h, k).expect("a key serializes");
                h.update(node_hash(v, path, ov));
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            h.update(b"a");
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                if !ov.is_empty() {
                    path.push('/');
                    path.push_str(&i.to_string());
                }
                h.update(node_hash(item, path, ov));
                path.truncate(len);
            }
        }
        other => {
            h.update(b"s");
            // A scalar's compact JSON is its canonical form.
            serde_json::to_writer(&mut h, other).expect("a scalar serializes");
        }
    }
    h.finalize().to_vec()
}

/// What a redaction removed from one stored event, when and why (the `events.redaction` column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redaction {
    /// JSON pointer of each blanked value → hex subtree hash of the value it had (hash version
    /// 2), or `null` (version 1, where no subtree hash exists).
    pub paths: BTreeMap<String, Option<String>>,
    pub at: DateTime<Utc>,
    pub reason: String,
    /// Version 1 only: SHA-256 of the canonical redacted payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_payload_hash: Option<String>,
}

/// Blanks the values at `paths` (JSON pointers) of a stored payload and returns the row's new
/// redaction record, or `None` if there was nothing left to blank (missing or already null).
pub fn redact_payload(
    hash_version: i16,
    payload: &mut Value,
    existing: Option<Redaction>,
    paths: &[String],
    reason: &str,
    at: DateTime<Utc>,
) -> Option<Redaction> {
    let mut rec = existing.unwrap_or_else(|| Redaction {
        paths: BTreeMap::new(),
        at,
        reason: reason.to_string(),
        redacted_payload_hash: None,
    });
    let mut changed = false;
    for path in paths {
        let known = overrides_of(&rec);
        let Some(target) = payload.pointer(path) else {
            continue;
        };
        if target.is_null() {
            continue;
        }
        let subtree = (hash_version >= 2).then(|| {
            // The subtree's hash as the chain saw it: earlier redactions below it count.
            let mut p = path.clone();
            hex::encode(node_hash(target, &mut p, &known))
        });
        // Redactions below this one are now covered by it.
        rec.paths.retain(|k, _| !k.starts_with(&format!("{path}/")));
        rec.paths.insert(path.clone(), subtree);
        if let Some(v) = payload.pointer_mut(path) {
            *v = Value::Null;
        }
        changed = true;
    }
    if !changed {
        return None;
    }
    rec.at = at;
    rec.reason = reason.to_string();
    if hash_version < 2 {
        rec.redacted_payload_hash = Some(hex::encode(payload_hash_v1(payload)));
    }
    Some(rec)
}

fn overrides_of(r: &Redaction) -> BTreeMap<String, Vec<u8>> {
    r.paths
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), hex::decode(v.as_ref()?).ok()?)))
        .collect()
}

/// Whether a stored payload (possibly redacted) still matches its recorded `payload_hash`.
pub fn payload_matches(
    hash_version: i16,
    payload: &Value,
    redaction: Option<&Redaction>,
    recorded: &[u8],
) -> bool {
    // A redacted value must really be gone: otherwise its recorded hash would vouch for
    // whatever was written there afterwards.
    if let Some(r) = redaction {
        if !r
            .paths
            .keys()
            .all(|p| payload.pointer(p).is_some_and(Value::is_null))
        {
            return false;
        }
    }
    match (hash_version, redaction) {
        (1, None) => payload_hash_v1(payload) == recorded,
        // The original payload is gone, so only the redacted one can be checked; the chain still
        // covers the original through the recorded payload_hash.
        (1, Some(r)) => r
            .redacted_payload_hash
            .as_deref()
            .is_some_and(|h| h == hex::encode(payload_hash_v1(payload))),
        (2, None) => payload_hash(payload) == recorded,
        (2, Some(r)) => {
            let ov = overrides_of(r);
            ov.len() == r.paths.len() && merkle_root(payload, &ov) == recorded
        }
        _ => false,
    }
}

/// Recorded times are kept to the microsecond, the precision PostgreSQL stores.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("a string serializes");
}

/// The canonical header of an event: the JSON object `{aggregate_id, aggregate_type, event_id,
/// event_type, event_version, metadata: {actor, causation_id, command_id, correlation_id},
/// recorded_at, sequence}`, keys sorted, no whitespace — byte for byte what
/// `canonical_json(json!({...}))` gives, written without building a `Value`.
#[allow(clippy::too_many_arguments)]
pub fn canonical_header(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    event_type: &str,
    event_version: &str,
    event_id: Uuid,
    recorded_at: &DateTime<Utc>,
    metadata: &EventMetadata,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(400);
    let mut uuid = Uuid::encode_buffer();
    out.extend_from_slice(b"{\"aggregate_id\":");
    push_json_str(&mut out, aggregate_id);
    out.extend_from_slice(b",\"aggregate_type\":");
    push_json_str(&mut out, aggregate_type);
    out.extend_from_slice(b",\"event_id\":\"");
    out.extend_from_slice(event_id.hyphenated().encode_lower(&mut uuid).as_bytes());
    out.extend_from_slice(b"\",\"event_type\":");
    push_json_str(&mut out, event_type);
    out.extend_from_slice(b",\"event_version\":");
    push_json_str(&mut out, event_version);
    out.extend_from_slice(b",\"metadata\":{\"actor\":");
    push_json_str(&mut out, &metadata.actor);
    for (key, id) in [
        ("causation_id", metadata.causation_id),
        ("command_id", metadata.command_id),
        ("correlation_id", metadata.correlation_id),
    ] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":\"");
        out.extend_from_slice(id.hyphenated().encode_lower(&mut uuid).as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"},\"recorded_at\":\"");
    out.extend_from_slice(format_time(recorded_at).as_bytes());
    out.extend_from_slice(b"\",\"sequence\":");
    out.extend_from_slice(sequence.to_string().as_bytes());
    out.push(b'}');
    out
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
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical_header(
        aggregate_type,
        aggregate_id,
        sequence,
        event_type,
        event_version,
        event_id,
        recorded_at,
        metadata,
    ));
    h.update(payload_hash);
    h.finalize().to_vec()
}

/// Row shape of the unit tests' verifier.
#[cfg(test)]
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
    pub hash_version: i16,
    /// The row's `redaction` column, if any.
    pub redaction: Option<Value>,
}

/// Folds rows ordered by (aggregate_type, aggregate_id, sequence) and checks every link.
#[cfg(test)]
pub(crate) struct ChainVerifier {
    current: Option<(String, String)>,
    prev_hash: Vec<u8>,
    pub report: crate::VerifyReport,
}

#[cfg(test)]
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
        let redaction = match row.redaction.map(serde_json::from_value::<Redaction>) {
            None => Ok(None),
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err(e)) => Err(e),
        };
        let payload_ok = redaction.as_ref().is_ok_and(|r| {
            payload_matches(
                row.hash_version,
                &row.payload,
                r.as_ref(),
                &row.payload_hash,
            )
        });
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
            &row.payload_hash,
        );
        if !payload_ok || expected != row.hash {
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
         payload, metadata, event_id, recorded_at, payload_hash, hash, hash_version) VALUES ",
    );
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        let b = i * 11;
        let params: Vec<String> = (1..=11).map(|k| format!("${}", b + k)).collect();
        sql.push('(');
        sql.push_str(&params.join(", "));
        sql.push_str(&format!(", {HASH_VERSION})"));
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

    fn row(payload: Value, version: i16, prev: &[u8]) -> ChainRow {
        let meta = EventMetadata {
            actor: "u_1".into(),
            correlation_id: Uuid::nil(),
            causation_id: Uuid::nil(),
            command_id: Uuid::nil(),
        };
        let ph = if version == 1 {
            payload_hash_v1(&payload)
        } else {
            payload_hash(&payload)
        };
        let at = DateTime::UNIX_EPOCH;
        let hash = event_hash(
            prev,
            "message",
            "m",
            1,
            "MessagePosted",
            "1.0",
            Uuid::nil(),
            &at,
            &meta,
            &ph,
        );
        ChainRow {
            aggregate_type: "message".into(),
            aggregate_id: "m".into(),
            sequence: 1,
            event_type: "MessagePosted".into(),
            event_version: "1.0".into(),
            event_id: Uuid::nil(),
            recorded_at: at,
            metadata: meta,
            payload,
            payload_hash: ph,
            hash,
            hash_version: version,
            redaction: None,
        }
    }

    fn verifies(r: &ChainRow) -> bool {
        let mut v = ChainVerifier::new();
        let copy = ChainRow {
            aggregate_type: r.aggregate_type.clone(),
            aggregate_id: r.aggregate_id.clone(),
            event_type: r.event_type.clone(),
            event_version: r.event_version.clone(),
            metadata: r.metadata.clone(),
            payload: r.payload.clone(),
            payload_hash: r.payload_hash.clone(),
            hash: r.hash.clone(),
            redaction: r.redaction.clone(),
            ..*r
        };
        v.check(copy)
    }

    fn redact(r: &mut ChainRow, paths: &[&str]) -> bool {
        let existing = r
            .redaction
            .clone()
            .map(|v| serde_json::from_value(v).unwrap());
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        match redact_payload(
            r.hash_version,
            &mut r.payload,
            existing,
            &paths,
            "test",
            DateTime::UNIX_EPOCH,
        ) {
            Some(rec) => {
                r.redaction = Some(serde_json::to_value(rec).unwrap());
                true
            }
            None => false,
        }
    }

    fn posted() -> Value {
        serde_json::json!({"submission": {"text": "secret tea plans", "author_id": "u_2",
            "attachments": [{"url": "https://x/y.png"}]}, "created_at": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn merkle_root_differs_from_v1_and_detects_any_change() {
        let p = posted();
        assert_ne!(payload_hash(&p), payload_hash_v1(&p));
        let mut q = p.clone();
        q["submission"]["attachments"][0]["url"] = "https://x/z.png".into();
        assert_ne!(payload_hash(&p), payload_hash(&q));
        // Key order does not matter, as for canonical_json.
        let r: Value = serde_json::from_str(
            r#"{"created_at":"2026-01-01T00:00:00Z","submission":{"attachments":[{"url":"https://x/y.png"}],"author_id":"u_2","text":"secret tea plans"}}"#,
        )
        .unwrap();
        assert_eq!(payload_hash(&p), payload_hash(&r));
    }

    #[test]
    fn a_redacted_v2_row_still_verifies_and_tampering_is_caught() {
        let mut r = row(posted(), 2, &[]);
        assert!(verifies(&r));
        assert!(redact(&mut r, &["/submission/text"]));
        assert_eq!(r.payload["submission"]["text"], Value::Null);
        assert!(!r.payload.to_string().contains("secret"));
        assert!(verifies(&r), "the chain survives the redaction");
        // Redacting again changes nothing.
        assert!(!redact(&mut r, &["/submission/text", "/nope"]));
        // Any other field changed afterwards is caught.
        let mut t = r.payload.clone();
        t["submission"]["author_id"] = "u_3".into();
        let mut bad = row(posted(), 2, &[]);
        bad.payload = t;
        bad.redaction = r.redaction.clone();
        assert!(!verifies(&bad));
        // So is new text written into the redacted slot.
        let mut bad = row(posted(), 2, &[]);
        bad.payload = r.payload.clone();
        bad.payload["submission"]["text"] = "forged".into();
        bad.redaction = r.redaction.clone();
        assert!(!verifies(&bad));
        // And a redaction record claiming another subtree hash.
        let mut bad = row(posted(), 2, &[]);
        bad.payload = r.payload.clone();
        let mut rec = r.redaction.clone().unwrap();
        rec["paths"]["/submission/text"] = hex::encode([0u8; 32]).into();
        bad.redaction = Some(rec);
        assert!(!verifies(&bad));
        // Or without the record at all.
        let mut bad = row(posted(), 2, &[]);
        bad.payload = r.payload.clone();
        assert!(!verifies(&bad));
    }

    #[test]
    fn a_wider_redaction_covers_an_earlier_one() {
        let mut r = row(posted(), 2, &[]);
        assert!(redact(&mut r, &["/submission/text"]));
        assert!(redact(&mut r, &["/submission"]));
        let rec: Redaction = serde_json::from_value(r.redaction.clone().unwrap()).unwrap();
        assert_eq!(rec.paths.keys().collect::<Vec<_>>(), ["/submission"]);
        assert!(verifies(&r));
    }

    #[test]
    fn v1_rows_verify_before_and_after_redaction() {
        let mut r = row(posted(), 1, &[]);
        assert!(verifies(&r));
        let mut tampered = row(posted(), 1, &[]);
        tampered.payload["submission"]["author_id"] = "u_9".into();
        assert!(!verifies(&tampered));
        assert!(redact(&mut r, &["/submission/text"]));
        assert!(!r.payload.to_string().contains("secret"));
        assert!(verifies(&r));
        let mut bad = row(posted(), 1, &[]);
        bad.payload = r.payload.clone();
        bad.payload["submission"]["author_id"] = "u_9".into();
        bad.redaction = r.redaction.clone();
        assert!(!verifies(&bad));
        // An unknown hash version never verifies.
        let mut odd = row(posted(), 2, &[]);
        odd.hash_version = 3;
        assert!(!verifies(&odd));
    }

    #[test]
    fn canonical_header_is_the_canonical_json_of_the_header() {
        let meta = EventMetadata {
            actor: "u_\"1\"\n\u{e9}".into(),
            correlation_id: Uuid::now_v7(),
            causation_id: Uuid::new_v4(),
            command_id: Uuid::nil(),
        };
        let at = now_micros();
        let id = Uuid::now_v7();
        let header = serde_json::json!({
            "aggregate_type": "budget_ledger",
            "aggregate_id": "M\tDL",
            "sequence": 42,
            "event_type": "TransactionRecorded",
            "event_version": "1.0",
            "event_id": id,
            "recorded_at": format_time(&at),
            "metadata": meta,
        });
        assert_eq!(
            String::from_utf8(canonical_header(
                "budget_ledger",
                "M\tDL",
                42,
                "TransactionRecorded",
                "1.0",
                id,
                &at,
                &meta
            ))
            .unwrap(),
            String::from_utf8(canonical_json(&header)).unwrap()
        );
    }

    #[test]
    fn decimal_text_is_kept_exactly() {
        let v: Value = serde_json::from_str(r#"{"cost":49.90}"#).unwrap();
        assert_eq!(canonical_json(&v), br#"{"cost":49.90}"#.to_vec());
    }
}
