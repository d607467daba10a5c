//! A bounded per-process cache of aggregate states with the sequence and chain hash they were
//! folded up to. Commands decide on it without reading the store first; that is safe because
//! the append names the expected sequence (a stale entry makes it fail, and the command reloads),
//! and because a refusal decided on a cached entry is re-checked on fresh state.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept before the cache is cleared (a crude but bounded eviction).
pub const MAX_ENTRIES: usize = 20_000;

/// A cached aggregate: last sequence folded, that event's chain hash if known, the state.
pub type Cached<A> = (i64, Option<Vec<u8>>, A);

type Entries = HashMap<(&'static str, String), (i64, Option<Vec<u8>>, Box<dyn Any + Send + Sync>)>;

#[derive(Default)]
pub struct AggregateCache {
    entries: Mutex<Entries>,
}

impl AggregateCache {
    pub fn get<A: Clone + Send + Sync + 'static>(
        &self,
        ty: &'static str,
        id: &str,
    ) -> Option<Cached<A>> {
        let map = self.entries.lock().expect("cache lock");
        let (seq, hash, state) = map.get(&(ty, id.to_string()))?;
        state
            .downcast_ref::<A>()
            .map(|a| (*seq, hash.clone(), a.clone()))
    }

    pub fn put<A: Send + Sync + 'static>(
        &self,
        ty: &'static str,
        id: &str,
        seq: i64,
        hash: Option<Vec<u8>>,
        state: A,
    ) {
        let mut map = self.entries.lock().expect("cache lock");
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert((ty, id.to_string()), (seq, hash, Box::new(state)));
    }

    pub fn forget(&self, ty: &'static str, id: &str) {
        self.entries
            .lock()
            .expect("cache lock")
            .remove(&(ty, id.to_string()));
    }
}
