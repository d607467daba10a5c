//! Shared application state handed to every handler.

use std::sync::Arc;

use commands::CommandBus;
use eventstore::{Db, EventStore, StoredEvent};
use projections::chat::ChatProjection;
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
    /// Fails only when the database is unavailable (503 `UNAVAILABLE` at once, rather than the
    /// request waiting for the pool a second time); any other failure is logged and retried on
    /// the next call.
    pub async fn ensure_profile(
        &self,
        actor: &domain::Actor,
    ) -> Result<(), crate::error::ApiError> {
        if self
            .known_profiles
            .lock()
            .expect("profiles")
            .contains(&actor.user_id)
        {
            return Ok(());
        }
        let ctx = commands::Context::new(actor.clone());
        match commands::chat::ensure_profile(&self.bus, &ctx).await {
            Ok(exec) => {
                // Once per user and process: let the profile be readable before answering.
                if let commands::Executed::Done { stored, .. } = &exec {
                    self.settle(ChatProjection::NAME, stored).await;
                }
                let mut known = self.known_profiles.lock().expect("profiles");
                if known.len() >= MAX_KNOWN_PROFILES {
                    known.clear();
                }
                known.insert(actor.user_id.clone());
                Ok(())
            }
            Err(e) => match crate::error::ApiError::from(e) {
                e @ crate::error::ApiError::Unavailable(_) => Err(e),
                // Not worth failing the request over; the next call tries again.
                e => {
                    tracing::warn!(error = %e, "could not create a minimal profile");
                    Ok(())
                }
            },
        }
    }

    /// Read-your-writes, the one implementation every edge uses: waits (bounded) until
    /// projection `name` (a `projections::*Projection::NAME`) has applied what `written` appended,
    /// so that a client reading right after a write sees it. A replayed command appended nothing.
    pub async fn settle<W: Written + ?Sized>(&self, name: &str, written: &W) {
        if let Some(last) = written.last_checkpoint() {
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

/// What a write appended, for [`AppState::settle`].
pub trait Written {
    /// The checkpoint of the last event appended, if any.
    fn last_checkpoint(&self) -> Option<eventstore::Checkpoint>;
}

impl Written for [StoredEvent] {
    fn last_checkpoint(&self) -> Option<eventstore::Checkpoint> {
        self.iter().map(|e| e.checkpoint()).max()
    }
}

impl Written for Vec<StoredEvent> {
    fn last_checkpoint(&self) -> Option<eventstore::Checkpoint> {
        self.as_slice().last_checkpoint()
    }
}

impl<A: cqrs_es::Aggregate> Written for commands::Executed<A> {
    fn last_checkpoint(&self) -> Option<eventstore::Checkpoint> {
        match self {
            commands::Executed::Done { stored, .. } => stored.last_checkpoint(),
            commands::Executed::Replayed(_) => None,
        }
    }
}
