//! Events are stored as (type name, version, payload) with the payload holding only the event's
//! fields. These helpers map an externally tagged serde enum to and from that shape.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Splits `{"Variant": {...}}` into `("Variant", {...})`.
pub fn encode<E: Serialize>(event: &E) -> Result<(String, Value), serde_json::Error> {
    match serde_json::to_value(event)? {
        Value::Object(map) if map.len() == 1 => {
            let (k, v) = map.into_iter().next().expect("one entry");
            Ok((k, v))
        }
        Value::String(unit) => Ok((unit, Value::Object(Default::default()))),
        other => Err(serde::ser::Error::custom(format!(
            "event must be an externally tagged enum, got {other}"
        ))),
    }
}

/// Rebuilds an event from its type name and payload.
pub fn decode<E: DeserializeOwned>(
    event_type: &str,
    payload: Value,
) -> Result<E, serde_json::Error> {
    let mut map = serde_json::Map::with_capacity(1);
    map.insert(event_type.to_string(), payload);
    serde_json::from_value(Value::Object(map))
}
