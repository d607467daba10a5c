//! Shared application state handed to every handler.

use std::sync::Arc;

use commands::CommandBus;
use eventstore::{Db, EventStore, StoredEvent};
use projections::relay::Relay;
use projections::ProjectionRunner;

use crate::settings::Settings;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: EventStore,
    pub db: Db,
    pub bus: CommandBus,
    pub runner: ProjectionRunner,
    pub relay: Relay,
    pub graphql: crate::graphql::FafcabSchema,
    /// Users known to have a profile (bounded; a miss costs one idempotent command).
    pub known_profiles: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Live fan-out of committed events (and typing signals) to `/ws` and subscriptions; one per
    /// API process, also with `--no-workers`.
    pub live: projections::live::LiveHub,
    /// This process's open `/ws` connections, recorded for presence.
    pub connections: crate::presence::Connections,
    /// Sinks running in this process, with their status.
    pub sinks: Vec<(&'static str, projections::sinks::SinkStatus)>,
}

/// Users remembered as having a profile before the set is cleared.
pub const MAX_KNOWN_PROFILES: usize = 100_000;

impl AppState {
    /// A user who calls the API with a valid token and has no profile yet gets a minimal one.
    pub async fn ensure_profile(&self, actor: &domain::Actor) {
        if self
            .known_profiles
            .lock()
            .expect("profiles")
            .contains(&actor.user_id)
        {
            return;
        }
        let ctx = commands::Context::new(actor.clone());
        match commands::chat::ensure_profile(&self.bus, &ctx).await {
            Ok(exec) => {
                // Once per user and process: let the profile be readable before answering.
                if let commands::Executed::Done { stored, .. } = &exec {
                    self.settle("chat", stored).await;
                }
                let mut known = self.known_profiles.lock().expect("profiles");
                if known.len() >= MAX_KNOWN_PROFILES {
                    known.clear();
                }
                known.insert(actor.user_id.clone());
            }
            // Not worth failing the request over; the next call tries again.
            Err(e) => tracing::warn!(error = %e, "could not create a minimal profile"),
        }
    }

    /// Read-your-writes: waits (bounded) until projection `name` has applied `stored`, so that a
    /// client reading right after a write sees it.
    pub async fn settle(&self, name: &str, stored: &[StoredEvent]) {
        if let Some(last) = stored.iter().map(|e| e.checkpoint()).max() {
            self.settle_at(name, last).await;
        }
    }

    /// Waits (bounded) until projection `name` has passed checkpoint `cp`.
    pub async fn settle_at(&self, name: &str, cp: eventstore::Checkpoint) {
        if !self
            .runner
            .wait_for(name, cp, self.settings.read_your_writes)
            .await
        {
            tracing::warn!(
                projection = name,
                position = cp.position,
                "read model did not catch up in time"
            );
        }
    }
}
