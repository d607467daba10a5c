//! Sinks: consumers of the events that leave the system. A [`Sink`] decides what to do with one
//! message; a driver feeds it either from its own durable RabbitMQ queue (with a dead-letter
//! queue; acked only once the sink is done) or, without RabbitMQ, straight from the log with its
//! own checkpoint (dead letters go to the `dead_letters` table). Either way a message is retried
//! until the sink is done with it, dead-lettered, or the sink disables itself.

pub mod discord;
mod driver;
pub mod notifications;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

pub use driver::{spawn_sink, SinkStatus};

/// Longest a sink waits between two attempts of one message.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// A message as a sink sees it: the CloudEvent's id, type and raw JSON body.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub id: String,
    pub event_type: String,
    pub body: serde_json::Value,
}

/// What a sink did with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Handled (or nothing to do): acknowledge.
    Done,
    /// Try the same message again after this long.
    Retry(Duration),
    /// It can never succeed: dead-letter it and go on.
    Dead(String),
    /// The sink cannot work at all (e.g. its credentials were revoked): stop consuming, leave the
    /// message where it is.
    Disable(String),
}

#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Queue and checkpoint name (`fafcab.<name>` on RabbitMQ).
    fn name(&self) -> &'static str;
    /// Routing-key patterns to bind (`#` for everything).
    fn bindings(&self) -> Vec<String>;
    /// Whether this sink wants a message of this type (checked again on delivery).
    fn wants(&self, event_type: &str) -> bool;
    async fn handle(&self, msg: &Incoming) -> Outcome;
}

async fn item_name(db: &eventstore::Db, data: &serde_json::Value) -> String {
    let id = data["item_id"].as_str().unwrap_or_default().to_string();
    match crate::tea::queries::get_item(db, &id).await {
        Ok(Some(row)) => row.name,
        _ => id,
    }
}

async fn campaign_title(db: &eventstore::Db, data: &serde_json::Value) -> String {
    let id = data["campaign_id"].as_str().unwrap_or_default().to_string();
    match crate::fundraising::queries::get_campaign(db, &id).await {
        Ok(Some(row)) => row.title,
        _ => id,
    }
}

/// A title and a one-line text for an event, for people (inbox, Discord).
pub async fn describe(
    db: &eventstore::Db,
    event_type: &str,
    data: &serde_json::Value,
) -> (String, String) {
    match event_type {
        "inventory.low_stock" => (
            format!("Low stock: {}", item_name(db, data).await),
            format!(
                "{} left (threshold {})",
                data["current_qty"], data["threshold"]
            ),
        ),
        "inventory.restocked" => (
            format!("Restocked: {}", item_name(db, data).await),
            format!("{} received", data["qty"]),
        ),
        "inventory.announcement.published" => (
            data["title"].as_str().unwrap_or("Announcement").to_string(),
            data["body"].as_str().unwrap_or_default().to_string(),
        ),
        "budget.low_balance" => (
            format!(
                "Low balance in {}",
                data["currency"].as_str().unwrap_or("?")
            ),
            format!("{} (threshold {})", data["balance"], data["threshold"]),
        ),
        "chat.moderation.sanction.applied" => (
            format!("Sanction: {}", data["type"].as_str().unwrap_or("sanction")),
            format!(
                "{} ({})",
                data["user_id"].as_str().unwrap_or("?"),
                data["scope"].as_str().unwrap_or("?")
            ),
        ),
        "fundraising.campaign.started" => (
            format!("New campaign: {}", campaign_title(db, data).await),
            "Donations are open.".to_string(),
        ),
        "fundraising.campaign.completed" => (
            format!("Goal reached: {}", campaign_title(db, data).await),
            format!("{} raised (goal {})", data["raised"], data["goal_amount"]),
        ),
        "sharing.damage.reported" => (
            "Damage reported".to_string(),
            format!(
                "{}: {} {} is owed to the lab",
                data["description"].as_str().unwrap_or_default(),
                data["cost"],
                data["currency"].as_str().unwrap_or_default()
            ),
        ),
        other => (other.to_string(), String::new()),
    }
}

/// Shared, human-readable state of a sink for `/health` and logs.
#[derive(Clone, Default)]
pub struct StatusCell(Arc<Mutex<String>>);

impl StatusCell {
    pub fn set(&self, s: impl Into<String>) {
        *self.0.lock().expect("status") = s.into();
    }
    pub fn get(&self) -> String {
        self.0.lock().expect("status").clone()
    }
}
