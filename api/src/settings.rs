//! Typed settings, read once from the environment in `main` (and nowhere else).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

/// Signing secret used when `AUTH_JWT_SECRET` is unset: for development only.
pub const DEV_JWT_SECRET: &str = "fafcab-development-secret-do-not-use-in-production";

#[derive(Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub database_url: String,
    pub db_max_connections: u32,
    pub amqp_url: Option<String>,
    pub jwt_secret: String,
    pub jwt_secret_is_dev: bool,
    pub discord_webhook_url: Option<String>,
    /// Lets User Management call `POST /users/sync` with `X-Internal-Secret` instead of a token.
    pub internal_api_secret: Option<String>,
    /// Prefix of the sinks' RabbitMQ queue names (`<prefix>.notifications`, `….dlq`).
    pub queue_prefix: String,
    /// Event types the Discord sink posts (`DISCORD_EVENT_TYPES`, comma-separated).
    pub discord_event_types: Option<Vec<String>>,
    pub body_limit_bytes: usize,
    pub expiry_window_days: i64,
    /// How long a write waits for its read model before answering anyway.
    pub read_your_writes: Duration,
    /// Run projection workers in this process (`serve --no-workers` turns them off).
    pub run_workers: bool,
    /// Time between two passes of the retention job (`FAFCAB_RETENTION_INTERVAL_SECS`).
    pub retention_interval: Duration,
    /// GraphQL limits and WebSocket timings (`FAFCAB_GRAPHQL_*`).
    pub graphql: GraphqlSettings,
    /// No-op projections added to the log follower, to measure what a consumer costs
    /// (`FAFCAB_EXTRA_NOOP_PROJECTIONS`, 0 to [`MAX_EXTRA_NOOP_PROJECTIONS`]; benches only).
    pub extra_noop_projections: usize,
}

/// Most no-op projections `FAFCAB_EXTRA_NOOP_PROJECTIONS` may add.
pub const MAX_EXTRA_NOOP_PROJECTIONS: usize = 100;

/// Bounds of the GraphQL endpoint and its `graphql-transport-ws` connections.
#[derive(Debug, Clone)]
pub struct GraphqlSettings {
    pub max_depth: usize,
    pub max_complexity: usize,
    /// Longest query text, in bytes.
    pub max_query_bytes: usize,
    pub introspection: bool,
    /// A WebSocket that sends no `connection_init` within this is closed with 4408.
    pub init_timeout: Duration,
    /// The server pings every interval; a client silent for three intervals is dropped.
    pub ping_interval: Duration,
    /// Subscriptions one connection may run at once.
    pub max_subscriptions: usize,
    /// A client that takes longer than this to take one frame is disconnected.
    pub send_timeout: Duration,
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        Self {
            max_depth: 10,
            max_complexity: 500,
            max_query_bytes: 16_384,
            introspection: true,
            init_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            max_subscriptions: 100,
            send_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for Settings {
    // Secrets never reach logs: only whether they are set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("addr", &self.addr)
            .field("database", &redact_url(&self.database_url))
            .field("db_max_connections", &self.db_max_connections)
            .field("amqp_url", &self.amqp_url.as_deref().map(redact_url))
            .field(
                "jwt_secret",
                &if self.jwt_secret_is_dev {
                    "<development default>"
                } else {
                    "<set>"
                },
            )
            .field(
                "discord_webhook_url",
                &self.discord_webhook_url.as_ref().map(|_| "<set>"),
            )
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("expiry_window_days", &self.expiry_window_days)
            .field("run_workers", &self.run_workers)
            .field("extra_noop_projections", &self.extra_noop_projections)
            .field("graphql", &self.graphql)
            .finish()
    }
}

/// Drops the password from a URL for logging.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl Settings {
    /// Reads the environment (after an optional `.env` was loaded by the caller).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let parse = |k: &str, default: &str| -> anyhow::Result<i64> {
            var(k)
                .as_deref()
                .unwrap_or(default)
                .parse::<i64>()
                .with_context(|| format!("{k} must be an integer"))
        };
        let jwt = var("AUTH_JWT_SECRET");
        Ok(Self {
            addr: var("FAFCAB_ADDR")
                .as_deref()
                .unwrap_or("127.0.0.1:8080")
                .parse()
                .context("FAFCAB_ADDR must be host:port")?,
            database_url: var("DATABASE_URL").unwrap_or_else(|| "sqlite://data/fafcab.db".into()),
            db_max_connections: parse("FAFCAB_DB_MAX_CONNECTIONS", "8")?.clamp(2, 500) as u32,
            amqp_url: var("AMQP_URL"),
            jwt_secret_is_dev: jwt.is_none(),
            jwt_secret: jwt.unwrap_or_else(|| DEV_JWT_SECRET.into()),
            discord_webhook_url: var("DISCORD_WEBHOOK_URL"),
            internal_api_secret: var("INTERNAL_API_SECRET"),
            queue_prefix: var("FAFCAB_QUEUE_PREFIX").unwrap_or_else(|| "fafcab".into()),
            discord_event_types: var("DISCORD_EVENT_TYPES").map(|v| {
                v.split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            }),
            body_limit_bytes: parse("FAFCAB_BODY_LIMIT_BYTES", "262144")?.clamp(1024, 64 << 20)
                as usize,
            expiry_window_days: parse("TEA_EXPIRY_WINDOW_DAYS", "30")?.clamp(0, 3650),
            read_your_writes: Duration::from_millis(
                parse("FAFCAB_READ_YOUR_WRITES_MS", "2000")?.clamp(0, 60_000) as u64,
            ),
            run_workers: true,
            retention_interval: Duration::from_secs(
                parse("FAFCAB_RETENTION_INTERVAL_SECS", "3600")?.clamp(10, 30 * 86_400) as u64,
            ),
            graphql: GraphqlSettings {
                max_depth: parse("FAFCAB_GRAPHQL_MAX_DEPTH", "10")?.clamp(2, 100) as usize,
                max_complexity: parse("FAFCAB_GRAPHQL_MAX_COMPLEXITY", "500")?.clamp(10, 100_000)
                    as usize,
                max_query_bytes: parse("FAFCAB_GRAPHQL_MAX_QUERY_BYTES", "16384")?
                    .clamp(256, 1 << 20) as usize,
                introspection: match var("FAFCAB_GRAPHQL_INTROSPECTION").as_deref() {
                    None | Some("true") | Some("1") => true,
                    Some("false") | Some("0") => false,
                    Some(_) => anyhow::bail!("FAFCAB_GRAPHQL_INTROSPECTION must be true or false"),
                },
                init_timeout: Duration::from_secs(
                    parse("FAFCAB_WS_INIT_TIMEOUT_SECS", "10")?.clamp(1, 300) as u64,
                ),
                ping_interval: Duration::from_secs(
                    parse("FAFCAB_WS_PING_SECS", "15")?.clamp(1, 300) as u64,
                ),
                max_subscriptions: parse("FAFCAB_WS_MAX_SUBSCRIPTIONS", "100")?.clamp(1, 10_000)
                    as usize,
                ..GraphqlSettings::default()
            },
            extra_noop_projections: match parse("FAFCAB_EXTRA_NOOP_PROJECTIONS", "0")? {
                n @ 0..=100 => n as usize,
                n => anyhow::bail!(
                    "FAFCAB_EXTRA_NOOP_PROJECTIONS must be 0 to {MAX_EXTRA_NOOP_PROJECTIONS}, got {n}"
                ),
            },
        })
    }

    /// Defaults for tests: port 0, a given database, a fixed secret.
    pub fn for_tests(database_url: &str) -> Self {
        Self {
            addr: "127.0.0.1:0".parse().expect("valid"),
            database_url: database_url.to_string(),
            db_max_connections: 8,
            amqp_url: None,
            jwt_secret: "test-secret".into(),
            jwt_secret_is_dev: false,
            discord_webhook_url: None,
            discord_event_types: None,
            internal_api_secret: Some("internal-test-secret".into()),
            queue_prefix: format!("fafcab-test-{}", uuid::Uuid::new_v4().simple()),
            body_limit_bytes: 262_144,
            expiry_window_days: 30,
            read_your_writes: Duration::from_secs(5),
            run_workers: true,
            retention_interval: Duration::from_secs(3600),
            graphql: GraphqlSettings::default(),
            extra_noop_projections: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://u:pw@h:5432/db"),
            "postgres://***@h:5432/db"
        );
        assert_eq!(
            super::redact_url("sqlite://data/x.db"),
            "sqlite://data/x.db"
        );
    }
}
