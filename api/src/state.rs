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
    /// Sinks running in this process, with their status.
    pub sinks: Vec<(&'static str, projections::sinks::SinkStatus)>,
}

impl AppState {
    /// Read-your-writes: waits (bounded) until projection `name` has applied `stored`, so that a
    /// client reading right after a write sees it.
    pub async fn settle(&self, name: &str, stored: &[StoredEvent]) {
        let Some(last) = stored.iter().map(|e| e.checkpoint()).max() else {
            return;
        };
        if !self
            .runner
            .wait_for(name, last, self.settings.read_your_writes)
            .await
        {
            tracing::warn!(
                projection = name,
                position = last.position,
                "read model did not catch up in time"
            );
        }
    }
}
