//! Upcasters turn stored events of older versions into the shape the current code reads.
//! Stored events are never rewritten: upcasting happens on every read.

use std::sync::Arc;

use cqrs_es::persist::{EventUpcaster, SerializedEvent};

/// The registry of upcasters applied when loading streams and reading the log.
#[derive(Clone, Default)]
pub struct Upcasters {
    list: Vec<Arc<dyn EventUpcaster>>,
}

impl Upcasters {
    pub fn new(list: Vec<Box<dyn EventUpcaster>>) -> Self {
        Self {
            list: list.into_iter().map(Arc::from).collect(),
        }
    }

    /// Applies every matching upcaster in order, so v1 → v2 → v3 chains work.
    pub fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        for u in &self.list {
            if u.can_upcast(&event.event_type, &event.event_version) {
                event = u.upcast(event);
            }
        }
        event
    }

    /// Upcasts a (type, version, payload) triple in place.
    pub fn upcast_parts(
        &self,
        event_type: &mut String,
        event_version: &mut String,
        payload: &mut serde_json::Value,
    ) {
        if self.list.is_empty() {
            return;
        }
        let ev = SerializedEvent::new(
            String::new(),
            0,
            String::new(),
            std::mem::take(event_type),
            std::mem::take(event_version),
            std::mem::take(payload),
            serde_json::Value::Null,
        );
        let ev = self.upcast(ev);
        *event_type = ev.event_type;
        *event_version = ev.event_version;
        *payload = ev.payload;
    }
}
