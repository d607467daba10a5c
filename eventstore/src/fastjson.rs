//! Hashing stored JSON text without building a `serde_json::Value`: the version-2 Merkle root of a
//! payload and the canonical header from the stored metadata, byte for byte what
//! [`crate::chain::payload_hash`] and [`crate::chain::canonical_header`] give for the parsed value.
//! `audit verify` runs these on every event; anything unusual (an escaped string, an exponent, a
//! duplicate key, invalid JSON) returns `None` and the caller takes the `Value` path, so the fast
//! path never decides a case differently.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Nesting deeper than serde_json's own limit goes to the `Value` path (which refuses it).
const MAX_DEPTH: usize = 120;

struct Parser<'a> {
    text: &'a str,
    s: &'a [u8],
    i: usize,
}

/// An object key: its text (for sorting) and its canonical JSON string (for hashing).
struct Key<'a> {
    text: Cow<'a, str>,
    json: Cow<'a, [u8]>,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// A string at the cursor (on its opening quote).
    fn string(&mut self) -> Option<Key<'a>> {
        let start = self.i;
        self.i += 1;
        let mut escaped = false;
        loop {
            match *self.s.get(self.i)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
        self.i += 1;
        let token = self.text.get(start..self.i)?;
        if !escaped {
            // Nothing escaped and no control character: the token is already canonical.
            return Some(Key {
                text: Cow::Borrowed(&token[1..token.len() - 1]),
                json: Cow::Borrowed(token.as_bytes()),
            });
        }
        let text: String = serde_json::from_str(token).ok()?;
        let json = serde_json::to_vec(&text).ok()?;
        Some(Key {
            text: Cow::Owned(text),
            json: Cow::Owned(json),
        })
    }

    /// A number's canonical text: the token itself unless it has an exponent (serde_json writes
    /// `e` and an explicit sign), which goes through serde_json.
    fn number(&mut self) -> Option<Cow<'a, [u8]>> {
        let start = self.i;
        while self.i < self.s.len()
            && matches!(
                self.s[self.i],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
            )
        {
            self.i += 1;
        }
        let token = &self.text[start..self.i];
        if token.contains(['e', 'E']) {
            let n: serde_json::Number = serde_json::from_str(token).ok()?;
            return Some(Cow::Owned(n.to_string().into_bytes()));
        }
        // -?(0|[1-9][0-9]*)(\.[0-9]+)?
        let b = token.as_bytes();
        let mut k = usize::from(b.first() == Some(&b'-'));
        match b.get(k)? {
            b'0' => k += 1,
            b'1'..=b'9' => {
                while b.get(k).is_some_and(u8::is_ascii_digit) {
                    k += 1;
                }
            }
            _ => return None,
        }
        if b.get(k) == Some(&b'.') {
            k += 1;
            let digits = k;
            while b.get(k).is_some_and(u8::is_ascii_digit) {
                k += 1;
            }
            if k == digits {
                return None;
            }
        }
        (k == b.len()).then_some(Cow::Borrowed(b))
    }

    fn value(&mut self, depth: usize) -> Option<[u8; 32]> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        let mut h = Sha256::new();
        match self.peek()? {
            b'{' => {
                self.i += 1;
                let mut entries: Vec<(Key<'a>, [u8; 32])> = Vec::new();
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        if self.peek()? != b'"' {
                            return None;
                        }
                        let key = self.string()?;
                        self.ws();
                        if self.peek()? != b':' {
                            return None;
                        }
                        self.i += 1;
                        let child = self.value(depth + 1)?;
                        entries.push((key, child));
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                entries.sort_unstable_by(|a, b| a.0.text.cmp(&b.0.text));
                if entries.windows(2).any(|w| w[0].0.text == w[1].0.text) {
                    // serde_json keeps the last of duplicate keys: leave that to it.
                    return None;
                }
                h.update(b"o");
                for (k, child) in &entries {
                    h.update(&k.json);
                    h.update(child);
                }
            }
            b'[' => {
                self.i += 1;
                h.update(b"a");
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                } else {
                    loop {
                        let child = self.value(depth + 1)?;
                        h.update(child);
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
            }
            b'"' => {
                let s = self.string()?;
                h.update(b"s");
                h.update(&s.json);
            }
            b't' => {
                self.literal(b"true")?;
                h.update(b"strue");
            }
            b'f' => {
                self.literal(b"false")?;
                h.update(b"sfalse");
            }
            b'n' => {
                self.literal(b"null")?;
                h.update(b"snull");
            }
            b'-' | b'0'..=b'9' => {
                let n = self.number()?;
                h.update(b"s");
                h.update(&n);
            }
            _ => return None,
        }
        Some(h.finalize().into())
    }
}

/// The version-2 content hash ([`crate::chain::payload_hash`]) of a payload given as JSON text,
/// or `None` when the text needs the `Value` path (see the module docs).
pub fn merkle_root_text(text: &str) -> Option<[u8; 32]> {
    let mut p = Parser {
        text,
        s: text.as_bytes(),
        i: 0,
    };
    let root = p.value(0)?;
    p.ws();
    (p.i == p.s.len()).then_some(root)
}

/// Stored metadata as hashed: exactly these four keys, each a string (docs/AUDIT.md).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictMetadata<'a> {
    #[serde(borrow)]
    actor: Cow<'a, str>,
    #[serde(borrow)]
    correlation_id: Cow<'a, str>,
    #[serde(borrow)]
    causation_id: Cow<'a, str>,
    #[serde(borrow)]
    command_id: Cow<'a, str>,
}

/// Whether `s` is a UUID in its canonical text: lower-case, hyphenated.
fn canonical_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
        })
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("a string serializes");
}

fn push_num(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut k = buf.len();
    let mut n = n;
    loop {
        k -= 1;
        buf[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = buf.len() - k;
    for _ in digits..width {
        out.push(b'0');
    }
    out.extend_from_slice(&buf[k..]);
}

/// [`crate::chain::format_time`] without the formatting machinery.
fn push_time(out: &mut Vec<u8>, t: &DateTime<Utc>) -> Option<()> {
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    push_num(out, year as u32, 4);
    out.push(b'-');
    push_num(out, t.month(), 2);
    out.push(b'-');
    push_num(out, t.day(), 2);
    out.push(b'T');
    push_num(out, t.hour(), 2);
    out.push(b':');
    push_num(out, t.minute(), 2);
    out.push(b':');
    push_num(out, t.second(), 2);
    out.push(b'.');
    // A leap second's nanoseconds exceed 10⁹; format_time shows them as such.
    push_num(out, t.nanosecond() / 1_000, 6);
    out.push(b'Z');
    Some(())
}

/// The canonical header ([`crate::chain::canonical_header`]) with the metadata taken from its
/// stored JSON text. `Err(())` when the metadata is not exactly the four documented string keys
/// with canonical UUIDs (a broken event); `Ok(None)` when this path cannot write the header and
/// the caller should use the general one.
#[allow(clippy::too_many_arguments, clippy::result_unit_err)]
pub fn canonical_header_text(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    event_type: &str,
    event_version: &str,
    event_id: Uuid,
    recorded_at: &DateTime<Utc>,
    metadata: &str,
) -> Result<Option<Vec<u8>>, ()> {
    let m: StrictMetadata = serde_json::from_str(metadata).map_err(|_| ())?;
    let ids = [
        ("causation_id", &m.causation_id),
        ("command_id", &m.command_id),
        ("correlation_id", &m.correlation_id),
    ];
    if !ids.iter().all(|(_, id)| canonical_uuid(id)) {
        return Err(());
    }
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
    push_json_str(&mut out, &m.actor);
    for (key, id) in ids {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":\"");
        out.extend_from_slice(id.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"},\"recorded_at\":\"");
    if push_time(&mut out, recorded_at).is_none() {
        return Ok(None);
    }
    out.extend_from_slice(b"\",\"sequence\":");
    out.extend_from_slice(sequence.to_string().as_bytes());
    out.push(b'}');
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{canonical_header, format_time, payload_hash};
    use crate::EventMetadata;
    use proptest::prelude::*;
    use serde_json::Value;

    fn same_as_value_path(text: &str) {
        let v: Value = serde_json::from_str(text).unwrap();
        let fast = merkle_root_text(text);
        if let Some(h) = fast {
            assert_eq!(h.to_vec(), payload_hash(&v), "{text}");
        }
    }

    #[test]
    fn agrees_with_the_value_path_on_awkward_json() {
        for text in [
            r#"{"b": 1, "a": {"z": [1, {"y": 2.50, "x": -0}], "c": "s"}}"#,
            r#"{"amount": "250", "n": 1e3, "m": 2.5E+2, "k": -1.5e-7, "big": 123456789012345678901234567890}"#,
            r#"{"t": "tab\there \"q\" \\ \u001f \u001F \u007f \u2028 é / \/", "e": "", "u": "\ud83d\ude00"}"#,
            r#"{"é": 1, "e": 2, "z": 3, "A": 4, "~/": [], "": {}}"#,
            r#"[true, false, null, [], {}, [[]], 0, 0.0]"#,
            r#""just a string""#,
            "  {\n\"a\" :\t[ 1 , 2 ]\r\n}  ",
            "null",
        ] {
            same_as_value_path(text);
            assert!(merkle_root_text(text).is_some(), "{text}");
        }
    }

    #[test]
    fn leaves_duplicates_and_bad_text_to_the_value_path() {
        assert_eq!(merkle_root_text(r#"{"a": 1, "a": 2}"#), None);
        for bad in [
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            "[1,]",
            "{",
            r#"{"a" 1}"#,
            "1 2",
            "",
        ] {
            assert_eq!(merkle_root_text(bad), None, "{bad}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,3})?"
                .prop_map(|n| serde_json::from_str::<Value>(&n).unwrap()),
            "\\PC{0,12}".prop_map(Value::String),
            "[\\x00-\\x7f\u{80}-\u{ff}\u{2028}]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn fast_merkle_equals_the_value_merkle(v in json_value(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
            let fast = merkle_root_text(&text);
            prop_assert!(fast.is_some(), "{}", text);
            prop_assert_eq!(fast.unwrap().to_vec(), payload_hash(&serde_json::from_str(&text).unwrap()));
        }
    }

    #[test]
    fn header_from_text_equals_the_header_from_metadata() {
        let meta = EventMetadata {
            actor: "u_\"1\"\n\u{e9}\u{1f}".into(),
            correlation_id: Uuid::now_v7(),
            causation_id: Uuid::new_v4(),
            command_id: Uuid::nil(),
        };
        let text = serde_json::to_string(&meta).unwrap();
        let id = Uuid::now_v7();
        for at in [
            crate::chain::now_micros(),
            "0001-02-03T04:05:06.000007Z".parse().unwrap(),
            "2026-12-31T23:59:59.999999Z".parse().unwrap(),
        ] {
            let fast = canonical_header_text("b", "M\tDL", 42, "T", "1.0", id, &at, &text).unwrap();
            assert_eq!(
                fast.unwrap(),
                canonical_header("b", "M\tDL", 42, "T", "1.0", id, &at, &meta)
            );
            assert!(
                String::from_utf8(canonical_header("b", "M", 1, "T", "1", id, &at, &meta))
                    .unwrap()
                    .contains(&format_time(&at))
            );
        }
    }

    #[test]
    fn metadata_must_be_exactly_the_four_keys() {
        let id = "0192f3a4-0000-7000-8000-000000000001";
        let ok = format!(
            r#"{{"actor": "u", "command_id": "{id}", "causation_id": "{id}", "correlation_id": "{id}"}}"#
        );
        let h = |m: &str| canonical_header_text("a", "b", 1, "T", "1", Uuid::nil(), &Utc::now(), m);
        assert!(matches!(h(&ok), Ok(Some(_))));
        for bad in [
            ok.replace(r#""actor": "u", "#, ""),
            ok.replace(r#""u""#, "null"),
            ok.replace(r#""u""#, "7"),
            ok.replace(r#""actor""#, r#""extra": 1, "actor""#),
            ok.replacen(id, &id.to_uppercase(), 1),
            ok.replacen(id, &id.replace('-', ""), 1),
            ok.replacen(r#""u""#, r#""u", "actor": "v""#, 1),
        ] {
            assert_eq!(h(&bad), Err(()), "{bad}");
        }
    }
}
