//! Scale-out: two `fafcab serve --no-workers` API processes and one `fafcab worker` on one fresh
//! PostgreSQL database. A `chatMessages` subscriber connected to one API process receives the
//! messages posted through the other, and a `stockUpdates` subscriber the stock changes made
//! there: live updates come from the shared committed log, whichever process wrote it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use benchkit::client::{Client, Frame};
use domain::Role;
use serde_json::{json, Value};
use sqlx::Connection as _;

const BIN: &str = env!("CARGO_BIN_EXE_fafcab");
const SECRET: &str = "scale-out-test-secret-of-32-bytes-at-least";
const DEADLINE: Duration = Duration::from_secs(30);

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fafcab(db: &str, port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("DATABASE_URL", db)
        .env("AUTH_JWT_SECRET", SECRET)
        .env("FAFCAB_ADDR", format!("127.0.0.1:{port}"))
        .env_remove("AMQP_URL");
    // `CHILD_LOG=info` shows the processes' logs next to the test's output.
    match std::env::var("CHILD_LOG") {
        Ok(filter) => c.env("RUST_LOG", filter).stdout(Stdio::inherit()),
        Err(_) => c.env("RUST_LOG", "warn").stdout(Stdio::null()),
    };
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_until<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "condition not met within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn token(user: &str, roles: &[Role]) -> String {
    api::auth::issue(SECRET, user, roles, chrono::Duration::hours(1)).unwrap()
}

/// The `live_subscribers` gauge of one process.
async fn live_subscribers(client: &reqwest::Client, base: &str) -> Option<i64> {
    let text = client
        .get(format!("{base}/admin/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("live_subscribers "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}

/// The next `next` frame: its subscription id and payload.
async fn next_frame(c: &mut Client) -> (String, Value) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_within(left).await {
            Some(Frame::Next(i, p)) => return (i, p),
            Some(Frame::Closed(code, reason)) => panic!("closed {code:?} {reason}"),
            Some(_) => {}
            None => panic!("no frame within {DEADLINE:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_what_another_process_wrote() {
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("fafcab_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let db = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let migrated = fafcab(&db, free_port(), &["migrate"]).status().unwrap();
    assert!(migrated.success());

    let (pa, pb) = (free_port(), free_port());
    let _a = Proc(fafcab(&db, pa, &["serve", "--no-workers"]).spawn().unwrap());
    let _b = Proc(fafcab(&db, pb, &["serve", "--no-workers"]).spawn().unwrap());
    let _w = Proc(fafcab(&db, free_port(), &["worker"]).spawn().unwrap());
    let (a, b) = (
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    );
    let http = reqwest::Client::new();
    for base in [&a, &b] {
        wait_until(|| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let r = http.get(format!("{base}/health")).send().await.ok()?;
                (r.status().as_u16() < 500).then_some(())
            }
        })
        .await;
    }

    let (u1, u2) = (
        token("u_1", &[Role::Student]),
        token("u_2", &[Role::Student]),
    );
    let admin = token("u_admin", &[Role::Admin]);
    // Set up through B.
    let chat: Value = http
        .post(format!("{b}/chats"))
        .bearer_auth(&u1)
        .json(&json!({"type": "group", "name": "kitchen", "member_ids": ["u_2"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = chat["id"].as_str().expect("chat id").to_string();
    let item: Value = http
        .post(format!("{b}/items"))
        .bearer_auth(&admin)
        .json(&json!({"name": "Tea", "unit": "bag", "category": "beverage", "min_stock_qty": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = item["id"].as_str().expect("item id").to_string();

    // Subscribe on A (its chat read model is served by the worker, through the shared tables).
    let ws_a = format!("ws://127.0.0.1:{pa}/graphql");
    let mut c = Client::connect(&ws_a, &u2).await.unwrap();
    let msgs = c
        .subscribe(
            "subscription($c: ID!) { chatMessages(chatId: $c) { id authorId text } }",
            json!({"c": chat}),
        )
        .await
        .unwrap();
    let stock = c
        .subscribe(
            "subscription($i: ID) { stockUpdates(itemId: $i) { itemId stockQty lowStock } }",
            json!({"i": item}),
        )
        .await
        .unwrap();
    wait_until(|| {
        let (http, a) = (http.clone(), a.clone());
        async move { (live_subscribers(&http, &a).await? >= 2).then_some(()) }
    })
    .await;

    // Write through B.
    for text in ["first", "second"] {
        let r = http
            .post(format!("{b}/chats/{chat}/messages"))
            .bearer_auth(&u1)
            .json(&json!({"text": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }
    let r = http
        .post(format!("{b}/items/{item}/batches"))
        .bearer_auth(&admin)
        .json(&json!({"batch_code": "PO-1", "qty_received": 3, "currency": "MDL", "cost_total": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    // The two subscriptions' frames interleave in any order: sort them by subscription.
    let (mut texts, mut stocks) = (vec![], vec![]);
    while texts.len() < 2 || stocks.is_empty() {
        let (id, p) = next_frame(&mut c).await;
        if id == msgs {
            let m = &p["data"]["chatMessages"];
            assert_eq!(m["authorId"], "u_1", "{p}");
            texts.push(m["text"].clone());
        } else {
            assert_eq!(id, stock);
            stocks.push(p["data"]["stockUpdates"].clone());
        }
    }
    assert_eq!(texts, [json!("first"), json!("second")]);
    assert_eq!(
        stocks,
        [json!({"itemId": item, "stockQty": 3, "lowStock": false})]
    );
}
