//! The RabbitMQ relay against the real broker of this machine: the CloudEvents envelope and AMQP
//! properties of every published type, routing keys, a broker stop/start during writes, and the
//! server killed mid-burst; every committed event ends up on the broker. One test function,
//! because stopping the broker must not disturb other tests.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use domain::Role;
use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{json, Value};
use sqlx::Connection as _;

const BIN: &str = env!("CARGO_BIN_EXE_fafcab");
const SECRET: &str = "relay-test-secret-of-32-bytes-at-least";

fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(db: &str, port: u16, prefix: &str) -> Server {
    Server(
        Command::new(BIN)
            .arg("serve")
            .env("FAFCAB_QUEUE_PREFIX", prefix)
            .env("DATABASE_URL", db)
            .env("AMQP_URL", amqp_url())
            .env("AUTH_JWT_SECRET", SECRET)
            .env("FAFCAB_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("server starts"),
    )
}

async fn wait_until<T, F: FnMut() -> Fut, Fut: std::future::Future<Output = Option<T>>>(
    limit: Duration,
    mut f: F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rabbitmqctl(cmd: &str) {
    let ok = Command::new("rabbitmqctl")
        .arg(cmd)
        .stdout(Stdio::null())
        .status()
        .expect("rabbitmqctl runs");
    assert!(ok.success(), "rabbitmqctl {cmd} failed");
}

async fn channel(queue: &str) -> (Connection, Channel) {
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("broker reachable");
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "fafcab.events".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        queue.into(),
        "fafcab.events".into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    (conn, ch)
}

/// A received message: routing key, AMQP properties we check, and the raw JSON body.
struct Received {
    routing_key: String,
    content_type: Option<String>,
    message_id: Option<String>,
    delivery_mode: Option<u8>,
    body: Value,
}

async fn drain(ch: &Channel, queue: &str, into: &mut Vec<Received>) {
    while let Ok(Some(m)) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
    {
        let d = m.delivery;
        into.push(Received {
            routing_key: d.routing_key.to_string(),
            content_type: d.properties.content_type().as_ref().map(|s| s.to_string()),
            message_id: d.properties.message_id().as_ref().map(|s| s.to_string()),
            delivery_mode: *d.properties.delivery_mode(),
            body: serde_json::from_slice(&d.data).expect("body is JSON"),
        });
    }
}

async fn all_event_ids(client: &reqwest::Client, base: &str, token: &str) -> Vec<String> {
    let mut ids = vec![];
    let mut after = 0i64;
    loop {
        let page: Value = client
            .get(format!("{base}/admin/events?after={after}&limit=200"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            return ids;
        }
        ids.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        after = page["next_after"].as_i64().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_delivers_every_committed_event_through_outages_and_crashes() {
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("fafcab_t_{}", uuid::Uuid::new_v4().simple());
    let mut c = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    let db = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let queue = format!("fafcab-test-{}", uuid::Uuid::new_v4().simple());
    let prefix = format!("{queue}-sinks");
    let (_conn, ch) = channel(&queue).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let token = api::auth::issue(
        SECRET,
        "u_admin",
        &[Role::Admin],
        chrono::Duration::hours(1),
    )
    .unwrap();
    let mut server = start(&db, port, &prefix);
    let health = |client: reqwest::Client, base: String| async move {
        let r = client.get(format!("{base}/health")).send().await.ok()?;
        r.json::<Value>().await.ok()
    };
    wait_until(Duration::from_secs(30), || {
        let (c, b) = (client.clone(), base.clone());
        async move { health(c, b).await.filter(|h| h["checks"]["events"] == "ok") }
    })
    .await;

    // 1. A tea flow: every type it emits arrives with the envelope and properties of DESIGN.md.
    let post = |path: String, body: Value| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            let r = client
                .post(format!("{base}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await?;
            Ok::<_, reqwest::Error>((
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            ))
        }
    };
    let (s, item) = post(
        "/items".into(),
        json!({"name": "Tea", "unit": "bag", "category": "b", "min_stock_qty": 50}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201);
    let id = item["id"].as_str().unwrap().to_string();
    let (s, _) = post(format!("/items/{id}/batches"), serde_json::from_str(r#"{"batch_code": "PO", "qty_received": 60, "currency": "USD", "cost_total": 49.90, "expiry_date": "2030-01-01"}"#).unwrap()).await.unwrap();
    assert_eq!(s, 201);
    let (s, _) = post(
        format!("/items/{id}/consume"),
        json!({"qty": 20, "user_id": "u_1"}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201);
    let patch = client
        .patch(format!("{base}/items/{id}"))
        .bearer_auth(&token)
        .json(&json!({"tags": ["kitchen"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    let (s, _) = post("/thresholds".into(), json!({"item_id": id, "min_qty": 45}))
        .await
        .unwrap();
    assert_eq!(s, 201);
    let (s, _) = post(
        "/announcements".into(),
        json!({"title": "New tea", "body": "Jasmine", "item_ids": [id]}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201);
    let mut got: Vec<Received> = vec![];
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 7 {
        assert!(
            Instant::now() < deadline,
            "only {} messages arrived",
            got.len()
        );
        drain(&ch, &queue, &mut got).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let by_type: HashMap<String, &Received> =
        got.iter().map(|m| (m.routing_key.clone(), m)).collect();
    for ty in [
        "inventory.item.created",
        "inventory.restocked",
        "inventory.consumed",
        "inventory.low_stock",
    ] {
        let m = by_type.get(ty).unwrap_or_else(|| panic!("{ty} published"));
        assert_eq!(m.body["type"], ty, "routing key = CloudEvent type");
        assert_eq!(
            m.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
        assert_eq!(m.delivery_mode, Some(2), "persistent");
        // Checked on the raw message: an SDK would fill these in silently.
        assert_eq!(m.body["specversion"], "1.0");
        assert!(uuid::Uuid::parse_str(m.body["id"].as_str().unwrap()).is_ok());
        assert_eq!(
            m.message_id.as_deref(),
            m.body["id"].as_str(),
            "message_id = CloudEvent id"
        );
        assert!(chrono::DateTime::parse_from_rfc3339(m.body["time"].as_str().unwrap()).is_ok());
        assert_eq!(m.body["source"], "tea-svc");
        if ty != "inventory.announcement.published" {
            assert_eq!(m.body["subject"], id.as_str());
        }
        assert_eq!(m.body["datacontenttype"], "application/json");
    }
    assert_eq!(
        by_type["inventory.low_stock"].body["data"],
        json!({"item_id": id, "current_qty": 40, "threshold": 50})
    );
    assert_eq!(
        by_type["inventory.restocked"].body["data"]["cost_total"].to_string(),
        "49.90",
        "money stays exact on the wire"
    );

    // 2. The broker goes away: writes keep succeeding, /health says so, nothing is lost.
    rabbitmqctl("stop_app");
    for n in 0..10 {
        let (s, _) = post(
            format!("/items/{id}/consume"),
            json!({"qty": 1, "user_id": format!("u_{n}")}),
        )
        .await
        .unwrap();
        assert_eq!(s, 201, "writes do not depend on the broker");
    }
    wait_until(Duration::from_secs(30), || {
        let (c, b) = (client.clone(), base.clone());
        async move {
            health(c, b)
                .await
                .filter(|h| h["checks"]["events"] == "down")
        }
    })
    .await;
    rabbitmqctl("start_app");
    let (_conn2, ch2) = wait_until(Duration::from_secs(60), || {
        let q = queue.clone();
        async move {
            let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
                .await
                .ok()?;
            let ch = conn.create_channel().await.ok()?;
            ch.queue_declare(
                q.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()?;
            Some((conn, ch))
        }
    })
    .await;

    // 3. The server is killed in the middle of a burst, then restarted: the relay resumes from
    //    its checkpoint.
    let mut tasks = vec![];
    for n in 0..60 {
        let fut = post(
            format!("/items/{id}/consume"),
            json!({"qty": 1, "user_id": format!("v_{n}")}),
        );
        tasks.push(tokio::spawn(fut));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    for t in tasks {
        let _ = t.await; // some succeeded, some were cut off: only committed events count
    }
    server = start(&db, port, &prefix);
    wait_until(Duration::from_secs(30), || {
        let (c, b) = (client.clone(), base.clone());
        async move { health(c, b).await.filter(|h| h["checks"]["events"] == "ok") }
    })
    .await;
    let committed: HashSet<String> = all_event_ids(&client, &base, &token)
        .await
        .into_iter()
        .collect();
    let mut seen: HashSet<String> = got
        .iter()
        .map(|m| m.body["id"].as_str().unwrap().to_string())
        .collect();
    let mut more = vec![];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !committed.is_subset(&seen) {
        assert!(
            Instant::now() < deadline,
            "{} committed events never reached the broker",
            committed.difference(&seen).count()
        );
        drain(&ch2, &queue, &mut more).await;
        seen.extend(
            more.drain(..)
                .map(|m| m.body["id"].as_str().unwrap().to_string()),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        committed.len() >= 4 + 10,
        "{} events committed",
        committed.len()
    );
    drop(server);
    for q in [
        queue.clone(),
        format!("{prefix}.notifications"),
        format!("{prefix}.notifications.dlq"),
    ] {
        ch2.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("test queues are removed");
    }
}
