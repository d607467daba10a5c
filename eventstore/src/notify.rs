//! Coalescing cross-process wake-ups on PostgreSQL. Readers in this process are woken at once by
//! a watch channel; other processes get a `NOTIFY`, at most one per channel every
//! [`COALESCE`], sent after the commit it announces, from a connection of its own. The listener
//! ignores what this process's notifiers sent. A lost or late notification only delays a reader
//! (every reader also polls), it never loses an event.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::sync::Notify;

/// Minimum spacing of two NOTIFYs on one channel.
pub const COALESCE: Duration = Duration::from_millis(5);

pub const EVENTS_CHANNEL: &str = "fafcab_events";
pub const CHECKPOINTS_CHANNEL: &str = "fafcab_checkpoints";

/// Backend PIDs of this process's notifier connections.
pub(crate) type OwnPids = Arc<Mutex<HashSet<u32>>>;

#[derive(Clone)]
pub(crate) struct Notifier {
    pending: Arc<Notify>,
}

impl Notifier {
    pub fn spawn(url: String, channel: &'static str, own: OwnPids) -> Self {
        let pending = Arc::new(Notify::new());
        let task_pending = pending.clone();
        tokio::spawn(async move {
            let mut conn: Option<(PgConnection, u32)> = None;
            loop {
                // A permit stored by any number of pings is consumed here once: coalescing.
                task_pending.notified().await;
                if conn.is_none() {
                    conn = connect(&url).await;
                    if let Some((_, pid)) = &conn {
                        own.lock().expect("pids").insert(*pid);
                    }
                }
                let Some((c, pid)) = conn.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    task_pending.notify_one();
                    continue;
                };
                if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(channel)
                    .execute(&mut *c)
                    .await
                {
                    tracing::warn!(channel, error = %e, "cannot notify other processes; they will poll");
                    own.lock().expect("pids").remove(pid);
                    conn = None;
                    task_pending.notify_one();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                tokio::time::sleep(COALESCE).await;
            }
        });
        Self { pending }
    }

    pub fn ping(&self) {
        self.pending.notify_one();
    }
}

async fn connect(url: &str) -> Option<(PgConnection, u32)> {
    let mut c = PgConnection::connect(url).await.ok()?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut c)
        .await
        .ok()?;
    Some((c, pid as u32))
}
