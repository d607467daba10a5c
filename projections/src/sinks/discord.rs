//! The Discord sink: posts selected events to `DISCORD_WEBHOOK_URL` as webhook messages with an
//! embed, within Discord's limits. Honours rate limits (429: waits `retry_after` /
//! `Retry-After`, then retries the same message), retries 5xx and network errors with backoff,
//! dead-letters a 400, and disables itself on 401/403/404 (revoked or wrong webhook), saying so in
//! the logs and `/health`. A message is acknowledged only once Discord accepted it, and an event
//! that was posted is never posted again.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use eventstore::{db_fetch_optional, tx_exec, Db, EventStore};
use serde_json::{json, Value};

use super::{Incoming, Outcome, Sink};

/// Discord's limits for one webhook message.
pub const MAX_CONTENT: usize = 2_000;
pub const MAX_TITLE: usize = 256;
pub const MAX_DESCRIPTION: usize = 4_096;
pub const MAX_FIELDS: usize = 25;
pub const MAX_FIELD_NAME: usize = 256;
pub const MAX_FIELD_VALUE: usize = 1_024;
pub const MAX_EMBED_TOTAL: usize = 6_000;
/// Per request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Posted unless `DISCORD_EVENT_TYPES` says otherwise.
pub const DEFAULT_TYPES: [&str; 5] = [
    "inventory.low_stock",
    "inventory.restocked",
    "inventory.announcement.published",
    "chat.notice.published",
    "chat.moderation.sanction.applied",
];

pub struct DiscordSink {
    client: reqwest::Client,
    url: String,
    types: Vec<String>,
    db: Db,
    failures: AtomicU32,
}

impl DiscordSink {
    pub fn new(store: &EventStore, url: String, types: Option<Vec<String>>) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .build()
                .expect("http client"),
            url,
            types: types.unwrap_or_else(|| DEFAULT_TYPES.iter().map(|s| s.to_string()).collect()),
            db: store.db(),
            failures: AtomicU32::new(0),
        }
    }

    fn backoff(&self) -> Duration {
        let n = self.failures.fetch_add(1, Ordering::Relaxed).min(6);
        Duration::from_millis(500 << n)
    }

    async fn posted(&self, id: &str) -> bool {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[allow(dead_code)]
            event_id: String,
        }
        matches!(
            db_fetch_optional!(
                &self.db,
                Row,
                "SELECT event_id FROM discord_posted WHERE event_id = $1",
                id
            ),
            Ok(Some(_))
        )
    }

    async fn mark_posted(&self, id: &str) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        tx_exec!(
            &mut tx,
            "INSERT INTO discord_posted (event_id, posted_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            id,
            Utc::now()
        )?;
        tx.commit().await?;
        Ok(())
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn colour(event_type: &str) -> u32 {
    match event_type {
        "inventory.low_stock" | "chat.moderation.sanction.applied" => 0xE7_4C_3C,
        "inventory.restocked" => 0x2E_CC_71,
        _ => 0x34_98_DB,
    }
}

/// Whether an event is the lab's business: a chat's own sanctions (applied by whoever owns or
/// moderates that chat, any user can create one) are not posted, so a chat owner cannot push
/// free text (`reason`) or a private chat's id to the lab's Discord. Global sanctions (admins
/// only) still are.
pub fn for_the_lab(event_type: &str, body: &Value) -> bool {
    !(event_type == "chat.moderation.sanction.applied" && body["data"]["scope"] != "global")
}

/// The webhook body for one event, cut to Discord's limits.
pub fn payload(event_type: &str, title: &str, text: &str, body: &Value) -> Value {
    let title = cut(title, MAX_TITLE);
    let description = cut(text, MAX_DESCRIPTION);
    let mut budget =
        MAX_EMBED_TOTAL.saturating_sub(title.chars().count() + description.chars().count());
    let mut fields = vec![];
    if let Some(data) = body["data"].as_object() {
        for (k, v) in data.iter().take(MAX_FIELDS) {
            let name = cut(k, MAX_FIELD_NAME);
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let value = cut(
                if value.is_empty() { "—" } else { &value },
                MAX_FIELD_VALUE.min(budget.saturating_sub(name.chars().count())),
            );
            let used = name.chars().count() + value.chars().count();
            if used == 0 || used > budget || value.is_empty() {
                break;
            }
            budget -= used;
            fields.push(json!({"name": name, "value": value, "inline": true}));
        }
    }
    json!({
        "content": cut(&format!("**{title}**"), MAX_CONTENT),
        "embeds": [{
            "title": title,
            "description": description,
            "color": colour(event_type),
            "timestamp": body["time"],
            "footer": {"text": cut(&format!("{} · {}", body["source"].as_str().unwrap_or("fafcab"), event_type), 2_048)},
            "fields": fields,
        }],
        "allowed_mentions": {"parse": []},
    })
}

#[async_trait]
impl Sink for DiscordSink {
    fn name(&self) -> &'static str {
        "discord"
    }

    fn bindings(&self) -> Vec<String> {
        self.types.clone()
    }

    fn wants(&self, event_type: &str) -> bool {
        self.types.iter().any(|t| t == event_type)
    }

    async fn handle(&self, msg: &Incoming) -> Outcome {
        if self.posted(&msg.id).await || !for_the_lab(&msg.event_type, &msg.body) {
            return Outcome::Done;
        }
        let (title, text) = super::describe(&self.db, &msg.event_type, &msg.body["data"]).await;
        let body = payload(&msg.event_type, &title, &text, &msg.body);
        let resp = match self
            .client
            .post(&self.url)
            .query(&[("wait", "true")])
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let wait = self.backoff();
                tracing::warn!(error = %e.without_url(), ?wait, "Discord unreachable; retrying");
                return Outcome::Retry(wait);
            }
        };
        let status = resp.status().as_u16();
        match status {
            200..=299 => {
                self.failures.store(0, Ordering::Relaxed);
                if let Err(e) = self.mark_posted(&msg.id).await {
                    tracing::warn!(error = format!("{e:#}"), "posted, but could not record it");
                }
                Outcome::Done
            }
            429 => {
                let header = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<f64>().ok());
                let json_wait = resp
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["retry_after"].as_f64());
                let secs = json_wait.or(header).unwrap_or(1.0).clamp(0.0, 60.0);
                tracing::info!(retry_after = secs, "Discord rate limit; waiting");
                Outcome::Retry(Duration::from_secs_f64(secs))
            }
            401 | 403 | 404 => {
                Outcome::Disable(format!("Discord answered {status} to the webhook"))
            }
            400..=499 => {
                let text = resp.text().await.unwrap_or_default();
                Outcome::Dead(format!(
                    "Discord refused the message ({status}): {}",
                    cut(&text, 300)
                ))
            }
            _ => {
                let wait = self.backoff();
                tracing::warn!(status, ?wait, "Discord error; retrying");
                Outcome::Retry(wait)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_respects_discord_limits() {
        let huge = "x".repeat(10_000);
        let mut data = serde_json::Map::new();
        for i in 0..40 {
            data.insert(format!("f{i}"), json!(huge));
        }
        let body = json!({"time": "2025-09-11T12:00:01Z", "source": "tea-svc", "data": data});
        let p = payload("inventory.low_stock", &huge, &huge, &body);
        assert!(p["content"].as_str().unwrap().chars().count() <= MAX_CONTENT);
        let e = &p["embeds"][0];
        let title = e["title"].as_str().unwrap().chars().count();
        let desc = e["description"].as_str().unwrap().chars().count();
        assert!(title <= MAX_TITLE && desc <= MAX_DESCRIPTION);
        let fields = e["fields"].as_array().unwrap();
        assert!(fields.len() <= MAX_FIELDS);
        let total: usize = title
            + desc
            + fields
                .iter()
                .map(|f| {
                    f["name"].as_str().unwrap().chars().count()
                        + f["value"].as_str().unwrap().chars().count()
                })
                .sum::<usize>();
        assert!(total <= MAX_EMBED_TOTAL, "{total}");
        assert_eq!(p["embeds"].as_array().unwrap().len(), 1);
    }
}
