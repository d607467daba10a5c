//! Typed settings: `clap` arguments that read their environment variable when the flag is absent
//! (`fafcab --help` lists every one), parsed once in `main` (and nowhere else). A value out of
//! its range is refused at start-up with the variable's name, never clamped.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{value_parser, Args, Parser};

/// Signing secret used when `AUTH_JWT_SECRET` is unset: for development only, and only on a
/// loopback address (`serve` refuses it anywhere else).
pub const DEV_JWT_SECRET: &str = "fafcab-development-secret-do-not-use-in-production";

/// Shortest `AUTH_JWT_SECRET` accepted (HS256 wants at least the hash's 32 bytes of key).
pub const MIN_JWT_SECRET_BYTES: usize = 32;
#[derive(Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub database_url: String,
    pub db_max_connections: u32,
    /// How long a caller waits for a pooled database connection before the request answers
    /// 503 `UNAVAILABLE` (`FAFCAB_DB_ACQUIRE_TIMEOUT_MS`); always below `request_timeout`.
    pub db_acquire_timeout: Duration,
    /// Longest time any HTTP request runs before it answers 503 `UNAVAILABLE`
    /// (`FAFCAB_REQUEST_TIMEOUT_SECS`; WebSockets once upgraded are not bound by it).
    pub request_timeout: Duration,
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
    /// Connection-level limits of the HTTP server (`FAFCAB_HTTP_*`, `FAFCAB_MAX_CONNECTIONS`).
    pub http: HttpSettings,
    /// No-op projections added to the log follower, to measure what a consumer costs
    /// (`FAFCAB_EXTRA_NOOP_PROJECTIONS`, 0 to [`MAX_EXTRA_NOOP_PROJECTIONS`]; benches only).
    pub extra_noop_projections: usize,
}

/// Bounds of every HTTP connection, before and between requests (slowloris, idle sockets).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// A client must send a whole request head within this, counted from when the server starts
    /// waiting for it (the connection opened, or the previous response was sent): so an idle
    /// keep-alive connection is closed after this too.
    pub header_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed, whatever it is
    /// doing (a client that stops reading its response or sending its body). Not applied to
    /// WebSockets, which have their own pings.
    pub idle_timeout: Duration,
    /// Open connections (WebSockets included) at once; further clients wait in the listen
    /// backlog until one closes.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
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
            max_complexity: 5_000,
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
            .field("db_acquire_timeout", &self.db_acquire_timeout)
            .field("request_timeout", &self.request_timeout)
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
            .field("http", &self.http)
            .finish()
    }
}

/// Query parameters whose value is hidden in logs (any name containing one of these).
const SECRET_PARAMS: [&str; 7] = ["pass", "pwd", "secret", "token", "key", "auth", "cred"];

/// Hides the credentials of a URL for logging: the `user:password@` part and the value of any
/// query parameter named like a secret (`?password=…`, `?sslpassword=…`, `?auth_token=…`).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &base[..s], &base[at + 1..]),
        _ => base.to_string(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

/// Every setting as a command-line flag backed by its environment variable. Flattened into the
/// `fafcab` command with `global`, so each subcommand's `--help` lists them too.
#[derive(Args, Debug, Clone)]
pub struct SettingsArgs {
    /// Listen address.
    #[arg(
        long,
        global = true,
        env = "FAFCAB_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub addr: SocketAddr,
    /// `sqlite://…` (embedded, file created if missing) or `postgres://…`.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "sqlite://data/fafcab.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Database pool size (2–500); SQLite always writes through one connection.
    #[arg(long, global = true, env = "FAFCAB_DB_MAX_CONNECTIONS", default_value_t = 8,
          value_parser = value_parser!(u32).range(2..=500))]
    pub db_max_connections: u32,
    /// Milliseconds a request waits for a pooled PostgreSQL connection before answering 503
    /// `UNAVAILABLE` with `Retry-After` (100–60,000; must be below the request timeout).
    #[arg(long, global = true, env = "FAFCAB_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000,
          value_parser = value_parser!(u64).range(100..=60_000))]
    pub db_acquire_timeout_ms: u64,
    /// Seconds any HTTP request may run before it answers 503 `UNAVAILABLE` with `Retry-After`
    /// (1–300).
    #[arg(long, global = true, env = "FAFCAB_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = value_parser!(u64).range(1..=300))]
    pub request_timeout_secs: u64,
    /// HS256 key for bearer tokens, at least 32 bytes (prefer the environment to the flag).
    /// Unset: the public development secret, which `serve` accepts on a loopback address only.
    #[arg(long, global = true, env = "AUTH_JWT_SECRET", hide_env_values = true,
          value_parser = parse_jwt_secret)]
    pub jwt_secret: Option<String>,
    /// RabbitMQ URL: domain events are relayed to the topic exchange `fafcab.events`
    /// (unset: in-process bus).
    #[arg(long, global = true, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// Discord webhook the Discord sink posts to (unset: no Discord sink). Never logged.
    #[arg(
        long,
        global = true,
        env = "DISCORD_WEBHOOK_URL",
        hide_env_values = true
    )]
    pub discord_webhook_url: Option<String>,
    /// Event types posted to Discord, comma-separated (unset: the sink's default list).
    #[arg(long, global = true, env = "DISCORD_EVENT_TYPES")]
    pub discord_event_types: Option<String>,
    /// Lets User Management call `POST /users/sync` with `X-Internal-Secret` (unset: refused).
    #[arg(
        long,
        global = true,
        env = "INTERNAL_API_SECRET",
        hide_env_values = true
    )]
    pub internal_api_secret: Option<String>,
    /// Prefix of the sinks' RabbitMQ queues (`<prefix>.notifications`, each with a `.dlq`).
    #[arg(
        long,
        global = true,
        env = "FAFCAB_QUEUE_PREFIX",
        default_value = "fafcab"
    )]
    pub queue_prefix: String,
    /// Largest request body in bytes (1 KiB – 64 MiB); larger ones get 413.
    #[arg(long, global = true, env = "FAFCAB_BODY_LIMIT_BYTES", default_value_t = 262_144,
          value_parser = value_parser!(u64).range(1024..=64 << 20))]
    pub body_limit_bytes: u64,
    /// Lots expiring within this many days are listed in `soon_expiring` (0–3650).
    #[arg(long, global = true, env = "TEA_EXPIRY_WINDOW_DAYS", default_value_t = 30,
          value_parser = value_parser!(i64).range(0..=3650))]
    pub expiry_window_days: i64,
    /// How long a write waits for its read model before answering anyway, in ms (0–60,000).
    #[arg(long, global = true, env = "FAFCAB_READ_YOUR_WRITES_MS", default_value_t = 2000,
          value_parser = value_parser!(u64).range(0..=60_000))]
    pub read_your_writes_ms: u64,
    /// Seconds between two passes of the retention job (10 s – 30 days).
    #[arg(long, global = true, env = "FAFCAB_RETENTION_INTERVAL_SECS", default_value_t = 3600,
          value_parser = value_parser!(u64).range(10..=30 * 86_400))]
    pub retention_interval_secs: u64,
    /// Deepest GraphQL selection served (2–100); introspection's `ofType` chains do not count.
    #[arg(long, global = true, env = "FAFCAB_GRAPHQL_MAX_DEPTH", default_value_t = 10,
          value_parser = value_parser!(u64).range(2..=100))]
    pub graphql_max_depth: u64,
    /// Highest GraphQL query complexity (10–100,000): one point per field, and a paginated field
    /// costs 100 plus its page size times what is selected under it.
    #[arg(long, global = true, env = "FAFCAB_GRAPHQL_MAX_COMPLEXITY", default_value_t = 5_000,
          value_parser = value_parser!(u64).range(10..=100_000))]
    pub graphql_max_complexity: u64,
    /// Longest GraphQL query text in bytes (256 – 1 MiB), over HTTP and WebSocket.
    #[arg(long, global = true, env = "FAFCAB_GRAPHQL_MAX_QUERY_BYTES", default_value_t = 16_384,
          value_parser = value_parser!(u64).range(256..=1 << 20))]
    pub graphql_max_query_bytes: u64,
    /// `false` turns GraphQL introspection off.
    #[arg(long, global = true, env = "FAFCAB_GRAPHQL_INTROSPECTION", default_value = "true",
          value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub graphql_introspection: bool,
    /// Seconds a GraphQL WebSocket may take to send `connection_init` (1–300; then 4408).
    #[arg(long, global = true, env = "FAFCAB_WS_INIT_TIMEOUT_SECS", default_value_t = 10,
          value_parser = value_parser!(u64).range(1..=300))]
    pub ws_init_timeout_secs: u64,
    /// Seconds between the server's pings on a GraphQL WebSocket (1–300); a client silent for
    /// three intervals is closed.
    #[arg(long, global = true, env = "FAFCAB_WS_PING_SECS", default_value_t = 15,
          value_parser = value_parser!(u64).range(1..=300))]
    pub ws_ping_secs: u64,
    /// Subscriptions one GraphQL WebSocket may run at once (1–10,000).
    #[arg(long, global = true, env = "FAFCAB_WS_MAX_SUBSCRIPTIONS", default_value_t = 100,
          value_parser = value_parser!(u64).range(1..=10_000))]
    pub ws_max_subscriptions: u64,
    /// Seconds a client has to send a whole request head (1–300), counted from when the server
    /// starts waiting for it: an idle keep-alive connection is closed after this too.
    #[arg(long, global = true, env = "FAFCAB_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 30,
          value_parser = value_parser!(u64).range(1..=300))]
    pub http_header_timeout_secs: u64,
    /// Seconds without a byte moving either way after which a connection is closed (1–3600;
    /// not WebSockets).
    #[arg(long, global = true, env = "FAFCAB_HTTP_IDLE_TIMEOUT_SECS", default_value_t = 60,
          value_parser = value_parser!(u64).range(1..=3600))]
    pub http_idle_timeout_secs: u64,
    /// Open connections at once, WebSockets included (1–1,000,000); more wait in the backlog.
    #[arg(long, global = true, env = "FAFCAB_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Benches only: no-op projections added to the log follower, to measure what a consumer
    /// costs (0–100).
    #[arg(long, global = true, env = "FAFCAB_EXTRA_NOOP_PROJECTIONS", default_value_t = 0,
          value_parser = value_parser!(u64).range(0..=MAX_EXTRA_NOOP_PROJECTIONS as u64))]
    pub extra_noop_projections: u64,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(
        long,
        global = true,
        env = "RUST_LOG",
        default_value = "info,sqlx=warn"
    )]
    pub log: String,
}

fn parse_jwt_secret(s: &str) -> Result<String, String> {
    if s.len() < MIN_JWT_SECRET_BYTES {
        return Err(format!(
            "AUTH_JWT_SECRET is {} bytes long: at least {MIN_JWT_SECRET_BYTES} are required",
            s.len()
        ));
    }
    Ok(s.to_string())
}

/// The settings alone, for [`Settings::from_env`].
#[derive(Parser)]
struct EnvOnly {
    #[command(flatten)]
    settings: SettingsArgs,
}

impl Settings {
    /// Reads the environment alone (no flags); errors name the variable and its range.
    pub fn from_env() -> anyhow::Result<Self> {
        let args = EnvOnly::try_parse_from(["fafcab"]).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self::from_args(args.settings))
    }

    /// The typed settings of parsed arguments (every range was checked while parsing).
    pub fn from_args(a: SettingsArgs) -> Self {
        let jwt = a.jwt_secret;
        Self {
            addr: a.addr,
            database_url: a.database_url,
            db_max_connections: a.db_max_connections,
            db_acquire_timeout: Duration::from_millis(a.db_acquire_timeout_ms),
            request_timeout: Duration::from_secs(a.request_timeout_secs),
            amqp_url: a.amqp_url,
            jwt_secret_is_dev: jwt.is_none(),
            jwt_secret: jwt.unwrap_or_else(|| DEV_JWT_SECRET.into()),
            discord_webhook_url: a.discord_webhook_url,
            internal_api_secret: a.internal_api_secret,
            queue_prefix: a.queue_prefix,
            discord_event_types: a.discord_event_types.map(|v| {
                v.split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            }),
            body_limit_bytes: a.body_limit_bytes as usize,
            expiry_window_days: a.expiry_window_days,
            read_your_writes: Duration::from_millis(a.read_your_writes_ms),
            run_workers: true,
            retention_interval: Duration::from_secs(a.retention_interval_secs),
            graphql: GraphqlSettings {
                max_depth: a.graphql_max_depth as usize,
                max_complexity: a.graphql_max_complexity as usize,
                max_query_bytes: a.graphql_max_query_bytes as usize,
                introspection: a.graphql_introspection,
                init_timeout: Duration::from_secs(a.ws_init_timeout_secs),
                ping_interval: Duration::from_secs(a.ws_ping_secs),
                max_subscriptions: a.ws_max_subscriptions as usize,
                ..GraphqlSettings::default()
            },
            http: HttpSettings {
                header_timeout: Duration::from_secs(a.http_header_timeout_secs),
                idle_timeout: Duration::from_secs(a.http_idle_timeout_secs),
                max_connections: a.max_connections as usize,
            },
            extra_noop_projections: a.extra_noop_projections as usize,
        }
    }

    /// What `serve` refuses to start with: the public development secret on an address other
    /// hosts can reach. (A short `AUTH_JWT_SECRET` is refused while parsing, by every command.)
    pub fn check_serve(&self) -> anyhow::Result<()> {
        self.check_timeouts()?;
        if self.jwt_secret_is_dev && !self.addr.ip().is_loopback() {
            anyhow::bail!(
                "AUTH_JWT_SECRET is not set and FAFCAB_ADDR {} is not a loopback address: refusing \
                 to serve with the public development secret (anyone could mint tokens). Set \
                 AUTH_JWT_SECRET to a random value of at least {MIN_JWT_SECRET_BYTES} bytes.",
                self.addr
            );
        }
        Ok(())
    }

    /// A pool acquisition must give up before the request timeout, or a request during an
    /// outage would hang until the timeout instead of answering `UNAVAILABLE` promptly.
    pub fn check_timeouts(&self) -> anyhow::Result<()> {
        if self.db_acquire_timeout >= self.request_timeout {
            anyhow::bail!(
                "FAFCAB_DB_ACQUIRE_TIMEOUT_MS ({} ms) must be below FAFCAB_REQUEST_TIMEOUT_SECS \
                 ({} s)",
                self.db_acquire_timeout.as_millis(),
                self.request_timeout.as_secs()
            );
        }
        Ok(())
    }

    /// Defaults for tests: port 0, a given database, a fixed secret.
    pub fn for_tests(database_url: &str) -> Self {
        Self {
            addr: "127.0.0.1:0".parse().expect("valid"),
            database_url: database_url.to_string(),
            db_max_connections: 8,
            db_acquire_timeout: eventstore::outage::DEFAULT_ACQUIRE_TIMEOUT,
            request_timeout: Duration::from_secs(30),
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
            http: HttpSettings::default(),
            extra_noop_projections: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn credentials_in_query_parameters_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://h/db?sslmode=require&password=hunter2&sslpassword=x"),
            "postgres://h/db?sslmode=require&password=***&sslpassword=***"
        );
        assert_eq!(
            super::redact_url("amqp://u:p@h:5672/%2f?auth_token=t&heartbeat=10"),
            "amqp://***@h:5672/%2f?auth_token=***&heartbeat=10"
        );
    }

    #[test]
    fn out_of_range_values_are_refused_not_clamped() {
        let parse = |args: &[&str]| {
            super::EnvOnly::try_parse_from(std::iter::once("fafcab").chain(args.iter().copied()))
        };
        let err = parse(&["--db-max-connections", "1000"])
            .err()
            .expect("refused");
        assert!(err.to_string().contains("2..=500"), "{err}");
        assert!(parse(&["--graphql-max-depth", "1"]).is_err());
        assert!(parse(&["--jwt-secret", "short"])
            .err()
            .expect("refused")
            .to_string()
            .contains("at least 32"));
        let ok = parse(&[
            "--db-max-connections",
            "500",
            "--graphql-introspection",
            "false",
        ])
        .expect("in range");
        let s = super::Settings::from_args(ok.settings);
        assert_eq!(s.db_max_connections, 500);
        assert!(!s.graphql.introspection);
    }

    #[test]
    fn pool_acquisition_must_give_up_before_the_request_timeout() {
        let mut s = super::Settings::for_tests("sqlite::memory:");
        assert!(s.check_timeouts().is_ok());
        s.db_acquire_timeout = s.request_timeout;
        let err = s.check_timeouts().expect_err("refused");
        assert!(
            err.to_string().contains("FAFCAB_DB_ACQUIRE_TIMEOUT_MS"),
            "{err}"
        );
    }

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
