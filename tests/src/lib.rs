//! Test harness: `spawn_app(backend)` starts the real server on port 0 with a fresh database
//! (a new PostgreSQL database, or a new SQLite file), plus helpers to call it and to wait for
//! conditions with a deadline (never a bare sleep).

pub mod counting;

use std::future::Future;
use std::time::Duration;

use api::state::AppState;
use api::{Application, Settings};
use domain::Role;
use serde_json::Value;
use sqlx::Connection;

pub const SECRET: &str = "test-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Base URL of the PostgreSQL server for tests (`TEST_DATABASE_URL`, default local trust auth).
pub fn pg_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database URL for `backend`.
pub async fn fresh_database(backend: Backend) -> String {
    let name = format!("fafcab_t_{}", uuid::Uuid::new_v4().simple());
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join("fafcab-tests");
            std::fs::create_dir_all(&dir).expect("temp dir");
            format!("sqlite://{}", dir.join(format!("{name}.db")).display())
        }
        Backend::Postgres => {
            let admin = pg_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("PostgreSQL must be reachable at TEST_DATABASE_URL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin
                .rsplit_once('/')
                .map(|(b, _)| b.to_string())
                .unwrap_or(admin);
            format!("{base}/{name}")
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub database_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let url = fresh_database(backend).await;
    spawn_app_on(&url).await
}

/// Starts a server on an existing database (e.g. to test a restart).
pub async fn spawn_app_on(database_url: &str) -> TestApp {
    spawn_with(Settings::for_tests(database_url)).await
}

pub async fn spawn_with(settings: Settings) -> TestApp {
    // `TEST_LOG=debug` (or any filter) shows the server's logs next to the test's output.
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let database_url = settings.database_url.clone();
    let app = Application::build(settings).await.expect("app builds");
    let base = format!("http://{}", app.addr());
    let state = app.state.clone();
    let server = tokio::spawn(async move {
        let _ = app.run_until_stopped(std::future::pending()).await;
    });
    TestApp {
        base,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        state,
        database_url,
        server,
    }
}

pub fn token(user: &str, roles: &[Role]) -> String {
    api::auth::issue(SECRET, user, roles, chrono::Duration::hours(1)).expect("token")
}

pub fn admin() -> String {
    token("u_admin", &[Role::Admin])
}

pub fn student(user: &str) -> String {
    token(user, &[Role::Student])
}

/// A response's status, headers and JSON body (or text as a JSON string).
pub struct Res {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The `graphql-transport-ws` endpoint.
    pub fn ws_url(&self) -> String {
        format!("{}/graphql", self.base.replacen("http://", "ws://", 1))
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Res {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        Res {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Res {
        self.send("GET", path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Res {
        self.send("POST", path, Some(token), Some(body), &[]).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Res {
        self.send("PATCH", path, Some(token), Some(body), &[]).await
    }

    /// Creates an item as admin and returns its id.
    pub async fn item(&self, name: &str, min_stock_qty: i64) -> String {
        let r = self
            .post(
                "/items",
                &admin(),
                serde_json::json!({"name": name, "unit": "bag", "category": "beverage", "min_stock_qty": min_stock_qty}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_str().expect("id").to_string()
    }

    /// Receives a lot of `qty` for `item` and returns the batch id.
    pub async fn batch(&self, item: &str, qty: i64, expiry: Option<&str>) -> String {
        let r = self
            .post(
                &format!("/items/{item}/batches"),
                &admin(),
                serde_json::json!({"batch_code": "PO-1", "qty_received": qty, "currency": "USD", "cost_total": 10.5, "expiry_date": expiry}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_str().expect("id").to_string()
    }
}

/// Asserts the DESIGN.md error envelope with this status and code.
#[track_caller]
pub fn assert_error(r: &Res, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.text);
    assert_eq!(r.body["error"]["code"], code, "body: {}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {}",
        r.text
    );
}

/// Polls `check` until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Generates one `#[tokio::test]` per backend for each named async fn taking a `Backend`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::Backend::Postgres).await }
            )*
        }
    };
}

/// A read-only auditor's token.
pub fn auditor() -> String {
    token("u_audit", &[Role::Auditor])
}

/// An executor's token.
pub fn executor() -> String {
    token("u_exec", &[Role::Executor])
}

/// A JSON number as written on the wire (`40.00` stays `"40.00"`).
pub fn num(v: &Value) -> String {
    v.to_string()
}

impl TestApp {
    /// Every CloudEvent of the audit feed (they are few in a test), read as an auditor.
    pub async fn audit_feed(&self) -> Vec<Value> {
        let r = self.get("/admin/events?limit=200", &auditor()).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["events"].as_array().expect("events").clone()
    }

    /// Waits (bounded) for a notification of `event_type` in the inbox of `token`'s user.
    pub async fn notification_of(&self, token: &str, event_type: &str) -> Value {
        eventually(Duration::from_secs(20), || async {
            let r = self.get("/notifications", token).await;
            r.body["notifications"]
                .as_array()?
                .iter()
                .find(|n| n["type"] == event_type)
                .cloned()
        })
        .await
    }

    /// Waits (bounded) until message-post operation `op` is settled (completed or rejected);
    /// the operation as `GET /operations/{id}` answers it.
    pub async fn settled_operation(&self, token: &str, op: &str) -> Value {
        eventually(Duration::from_secs(20), || async {
            let r = self.get(&format!("/operations/{op}"), token).await;
            (r.status == 200 && r.body["status"] != "accepted").then_some(r.body)
        })
        .await
    }

    /// Posts `text` into `chat` as `token`'s user (202) and waits until the message worker
    /// settled it; the operation.
    pub async fn post_message(&self, token: &str, chat: &str, text: &str) -> Value {
        let r = self
            .post(
                &format!("/chats/{chat}/messages"),
                token,
                serde_json::json!({"text": text}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        let op = r.body["operation_id"].as_str().expect("operation_id");
        self.settled_operation(token, op).await
    }

    /// [`post_message`](Self::post_message) that must be posted; the message id.
    pub async fn posted_message(&self, token: &str, chat: &str, text: &str) -> String {
        let op = self.post_message(token, chat, text).await;
        assert_eq!(op["status"], "completed", "{op}");
        op["message_id"].as_str().expect("message_id").to_string()
    }

    /// Every stored event of the log, in log order.
    pub async fn whole_log(&self) -> Vec<eventstore::StoredEvent> {
        let mut out = vec![];
        let mut cp = eventstore::Checkpoint::START;
        loop {
            let batch = self.state.store.read_log(cp, 500).await.expect("log");
            let Some(last) = batch.events.last() else {
                return out;
            };
            cp = last.checkpoint();
            out.extend(batch.events);
        }
    }

    /// A command bus of its own on this app's database: a second process, with an empty cache.
    pub async fn second_bus(&self) -> commands::CommandBus {
        let store = eventstore::EventStore::connect(&self.database_url, 2)
            .await
            .expect("second store");
        commands::CommandBus::new(store)
    }
}
