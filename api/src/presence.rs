//! Presence: a user is online while one of their `/ws` connections is open (on any process) or
//! their last `POST /presence/heartbeat` is younger than [`PRESENCE_TTL_SECS`].
//!
//! Every open connection is a row of `live_connections` (inserted when it opens, deleted when it
//! closes). Each API process refreshes the rows of its own connections every
//! [`REFRESH_INTERVAL`] in one statement; a row not refreshed for [`PRESENCE_TTL_SECS`] (its
//! process died without closing it) no longer counts, and rows older than [`SWEEP_AFTER_SECS`]
//! are deleted by whichever process refreshes next. Presence is ephemeral state, not a domain
//! event, like the heartbeat table.

use std::time::Duration;

use eventstore::{db_exec, Db};
use uuid::Uuid;

/// A heartbeat or connection refresh younger than this means online.
pub const PRESENCE_TTL_SECS: i64 = 30;
/// How often a process refreshes its connections' rows (well inside the TTL).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Stale rows (of a process that died) older than this are deleted.
pub const SWEEP_AFTER_SECS: i64 = 3_600;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// This process's open connections in `live_connections`.
#[derive(Clone)]
pub struct Connections {
    db: Db,
    process_id: String,
}

impl Connections {
    /// Registers the process (a fresh id) and starts the refresher task.
    pub fn start(db: Db) -> Self {
        let c = Self {
            db,
            process_id: Uuid::new_v4().to_string(),
        };
        let task = c.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = task.refresh().await {
                    tracing::warn!(error = %e, "cannot refresh /ws presence");
                }
            }
        });
        c
    }

    async fn refresh(&self) -> sqlx::Result<()> {
        let now = now_ms();
        db_exec!(
            &self.db,
            "UPDATE live_connections SET refreshed_ms = $2 WHERE process_id = $1",
            &self.process_id,
            now
        )?;
        db_exec!(
            &self.db,
            "DELETE FROM live_connections WHERE refreshed_ms < $1",
            now - SWEEP_AFTER_SECS * 1_000
        )?;
        Ok(())
    }

    /// Records an open connection of `user_id`.
    pub async fn open(&self, id: Uuid, user_id: &str) -> sqlx::Result<()> {
        let now = now_ms();
        db_exec!(
            &self.db,
            "INSERT INTO live_connections (id, user_id, process_id, opened_ms, refreshed_ms) VALUES ($1, $2, $3, $4, $4)",
            id.to_string(),
            user_id,
            &self.process_id,
            now
        )?;
        Ok(())
    }

    /// Forgets a closed connection.
    pub async fn close(&self, id: Uuid) -> sqlx::Result<()> {
        db_exec!(
            &self.db,
            "DELETE FROM live_connections WHERE id = $1",
            id.to_string()
        )?;
        Ok(())
    }
}

/// Whether `user_id` is online now (see the module documentation).
pub async fn is_online(db: &Db, user_id: &str) -> sqlx::Result<bool> {
    let now = chrono::Utc::now();
    let heartbeat = projections::chat::queries::last_seen(db, user_id)
        .await?
        .is_some_and(|t| now - t < chrono::Duration::seconds(PRESENCE_TTL_SECS));
    if heartbeat {
        return Ok(true);
    }
    projections::chat::queries::connected_since(
        db,
        user_id,
        now.timestamp_millis() - PRESENCE_TTL_SECS * 1_000,
    )
    .await
}
