//! Policies (process managers) as consumers of the process's log follower
//! (`eventstore::follow`): under its leadership lock, each policy is handed every new batch of
//! the log with its aggregate types, and the follower saves its checkpoint after a batch that
//! booked something, and otherwise lazily. Policies derive their command ids from the source
//! event, so an event handled again after a crash (or a reset checkpoint) books nothing twice.

use async_trait::async_trait;
use eventstore::follow::{Consumer, Handled, Mode};
use eventstore::{Checkpoint, StoredEvent};
use futures::future::BoxFuture;

use crate::{CommandBus, CommandError};

/// Handles one stored event; returns whether it appended anything. Must be safe to call any
/// number of times for the same event.
pub type Handler =
    for<'a> fn(&'a CommandBus, &'a StoredEvent) -> BoxFuture<'a, Result<bool, CommandError>>;

/// Handles a batch of stored events in log order (they may include events of other types);
/// returns whether it appended anything. Must be safe to call any number of times for the same
/// events.
pub type BatchHandler =
    for<'a> fn(&'a CommandBus, &'a [StoredEvent]) -> BoxFuture<'a, Result<bool, CommandError>>;

#[derive(Clone, Copy)]
enum Handle {
    Each(Handler),
    Batch(BatchHandler),
}

struct Policy {
    bus: CommandBus,
    name: &'static str,
    types: &'static [&'static str],
    handle: Handle,
}

#[async_trait]
impl Consumer for Policy {
    fn name(&self) -> &str {
        self.name
    }

    fn wants(&self, e: &StoredEvent) -> bool {
        self.types.contains(&e.aggregate_type.as_str())
    }

    async fn handle(
        &mut self,
        _saved: Checkpoint,
        _to: Checkpoint,
        events: &[StoredEvent],
    ) -> anyhow::Result<Handled> {
        let booked = match self.handle {
            Handle::Each(handle) => {
                let mut booked = false;
                for e in events.iter().filter(|e| self.wants(e)) {
                    booked |= handle(&self.bus, e)
                        .await
                        .map_err(|err| anyhow::anyhow!("{err}"))?;
                }
                booked
            }
            Handle::Batch(handle) => handle(&self.bus, events)
                .await
                .map_err(|err| anyhow::anyhow!("{err}"))?,
        };
        Ok(if booked {
            Handled::Effects
        } else {
            Handled::Nothing
        })
    }
}

/// Runs policy `name` for as long as the process lives (one leader per database), handed each
/// event of `types` in log order.
pub fn spawn_policy(
    bus: CommandBus,
    name: &'static str,
    types: &'static [&'static str],
    handle: Handler,
) {
    spawn(bus, name, types, Handle::Each(handle));
}

/// Runs policy `name` on whole batches (to work on several of its events at once).
pub fn spawn_batch_policy(
    bus: CommandBus,
    name: &'static str,
    types: &'static [&'static str],
    handle: BatchHandler,
) {
    spawn(bus, name, types, Handle::Batch(handle));
}

fn spawn(bus: CommandBus, name: &'static str, types: &'static [&'static str], handle: Handle) {
    let follower = bus.store().follower();
    let policy = Policy {
        bus,
        name,
        types,
        handle,
    };
    follower.spawn(Box::new(policy), Mode::Durable, None);
}
