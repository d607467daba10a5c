//! A bounded per-process cache of aggregate states. It is only a starting point: every use
//! catches up with the events stored after the cached sequence, so it can never serve stale
//! state, even with several processes writing.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept before the cache is cleared (a crude but bounded eviction).
pub const MAX_ENTRIES: usize = 20_000;

/// (aggregate type, aggregate id) → (last sequence folded, state).
type Entries = HashMap<(&'static str, String), (i64, Box<dyn Any + Send + Sync>)>;

#[derive(Default)]
pub struct AggregateCache {
    entries: Mutex<Entries>,
}

impl AggregateCache {
    pub fn get<A: Clone + Send + Sync + 'static>(
        &self,
        ty: &'static str,
        id: &str,
    ) -> Option<(i64, A)> {
        let map = self.entries.lock().expect("cache lock");
        let (seq, state) = map.get(&(ty, id.to_string()))?;
        state.downcast_ref::<A>().map(|a| (*seq, a.clone()))
    }

    pub fn put<A: Send + Sync + 'static>(&self, ty: &'static str, id: &str, seq: i64, state: A) {
        let mut map = self.entries.lock().expect("cache lock");
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert((ty, id.to_string()), (seq, Box::new(state)));
    }

    pub fn forget(&self, ty: &'static str, id: &str) {
        self.entries
            .lock()
            .expect("cache lock")
            .remove(&(ty, id.to_string()));
    }
}
