//! The loop every policy (process manager) runs: under its leadership lock, read the log from its
//! own checkpoint, hand each event to the policy, and save the checkpoint after events that booked
//! something, every 1,000 positions, and whenever it has caught up. Policies derive their command
//! ids from the source event, so an event handled again after a crash (or a reset checkpoint)
//! books nothing twice.

use std::time::Duration;

use eventstore::checkpoints::{load_checkpoint_db, save_checkpoint};
use eventstore::StoredEvent;
use futures::future::BoxFuture;

use crate::{CommandBus, CommandError};

/// Events read per batch.
pub const POLICY_BATCH: i64 = 200;
/// Positions a policy reads without booking before it saves its checkpoint anyway (it also saves
/// whenever it has caught up with the log).
pub const SAVE_EVERY: i64 = 1_000;

/// Handles one stored event; returns whether it appended anything. Must be safe to call any
/// number of times for the same event.
pub type Handler =
    for<'a> fn(&'a CommandBus, &'a StoredEvent) -> BoxFuture<'a, Result<bool, CommandError>>;

/// Runs policy `name` for as long as the process lives (one leader per database), woken by
/// appends of `types`.
pub fn spawn_policy(
    bus: CommandBus,
    name: &'static str,
    types: &'static [&'static str],
    handle: Handler,
) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = run_policy(&bus, name, types, handle).await {
                tracing::warn!(policy = name, error = %e, "policy interrupted; resuming from its checkpoint");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

async fn run_policy(
    bus: &CommandBus,
    name: &'static str,
    types: &'static [&'static str],
    handle: Handler,
) -> anyhow::Result<()> {
    let store = bus.store();
    let Some(_lead) = store.try_lead(name).await? else {
        return Ok(());
    };
    let db = store.db();
    let mut wakes = store.subscribe_types(Some(types));
    let mut cp = load_checkpoint_db(&db, name).await?;
    let mut saved = cp;
    loop {
        for w in &mut wakes {
            w.borrow_and_update();
        }
        let batch = store.read_log(cp, POLICY_BATCH).await?;
        if batch.events.is_empty() {
            if batch.pending {
                tokio::time::sleep(Duration::from_millis(2)).await;
            } else {
                // Caught up: keep what was read without booking, so a restart does not read it
                // again (harmless, but a waste).
                if saved != cp {
                    let mut tx = db.begin().await?;
                    save_checkpoint(&mut tx, name, saved, cp).await?;
                    tx.commit().await?;
                    saved = cp;
                }
                let futs: Vec<_> = wakes.iter_mut().map(|w| Box::pin(w.changed())).collect();
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), futures::future::select_all(futs))
                        .await;
            }
            continue;
        }
        let mut handled = false;
        for e in &batch.events {
            handled |= handle(bus, e)
                .await
                .map_err(|err| anyhow::anyhow!("{err}"))?;
        }
        let to = batch.events.last().expect("non-empty").checkpoint();
        if handled || to.position - saved.position > SAVE_EVERY {
            let mut tx = db.begin().await?;
            save_checkpoint(&mut tx, name, saved, to).await?;
            tx.commit().await?;
            saved = to;
        }
        cp = to;
    }
}
