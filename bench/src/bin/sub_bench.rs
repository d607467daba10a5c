//! `fafcab-sub-bench`: GraphQL subscription delivery. Starts `fafcab serve` (next to this
//! binary) on a fresh database, opens `--subscribers` graphql-transport-ws connections (one
//! subscription each: half `chatMessages` spread over `--chats` chats, half `stockUpdates` spread
//! over `--items` items), then sends `--rate` HTTP commands per second for `--seconds` (messages
//! posted to the chats and consumptions of the items, alternately; one command per item or chat
//! in flight at a time, so each frame names the command it answers). Prints the delivery latency
//! from sending the HTTP command to receiving the subscription frame (p50/p95/p99/max), and the
//! frames expected, received and lost.
//!
//! ```text
//! cargo build --release -p api
//! target/release/fafcab-sub-bench --backend postgres
//! target/release/fafcab-sub-bench --backend sqlite
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use benchkit::client::{Client, Frame};
use clap::Parser;
use domain::Role;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "GraphQL subscription delivery bench for fafcab")]
struct Args {
    /// sqlite or postgres
    #[arg(long, default_value = "postgres")]
    backend: String,
    /// Subscriptions (one connection each).
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    #[arg(long, default_value_t = 50)]
    chats: usize,
    #[arg(long, default_value_t = 50)]
    items: usize,
    /// HTTP commands per second.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg: String,
    /// Port for the server under test (0: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

const SECRET: &str = "fafcab-bench-secret-of-at-least-32-bytes";

/// What a frame answers: a posted message's text, or an item's stock after a consumption.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Message(String),
    Stock(String, i64),
}

fn token(user: &str, roles: &[Role]) -> anyhow::Result<String> {
    api::auth::issue(SECRET, user, roles, chrono::Duration::hours(2))
}

async fn post(
    client: &reqwest::Client,
    url: String,
    tok: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let r = client.post(url).bearer_auth(tok).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{status}: {v}");
    }
    Ok(v)
}

async fn live_subscribers(client: &reqwest::Client, base: &str) -> i64 {
    let Ok(r) = client.get(format!("{base}/admin/metrics")).send().await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("live_subscribers "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as i64
}

type Received = Arc<Mutex<Vec<(Key, Instant)>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = benchkit::fresh_db(&args.backend, &args.pg, "fafcab_bench").await?;
    let server = benchkit::Server::start(
        &db,
        args.port,
        SECRET,
        &[("FAFCAB_WS_MAX_SUBSCRIPTIONS", "10")],
    )
    .await?;
    let base = server.base.clone();
    let ws = format!("ws://{}/graphql", server.addr);
    let client = reqwest::Client::new();
    let admin = token("u_bench", &[Role::Admin])?;

    // Chats (each with its poster and its share of subscribers) and items with plenty of stock.
    let chat_subs = args.subscribers / 2;
    let item_subs = args.subscribers - chat_subs;
    let per_chat = chat_subs.div_ceil(args.chats.max(1));
    let mut chats = vec![];
    for c in 0..args.chats {
        let members: Vec<String> = (0..per_chat).map(|k| format!("u_s{c}_{k}")).collect();
        let poster = format!("u_p{c}");
        let r = post(
            &client,
            format!("{base}/chats"),
            &token(&poster, &[Role::Student])?,
            json!({"type": "group", "name": format!("bench {c}"), "member_ids": members}),
        )
        .await?;
        chats.push((r["id"].as_str().context("chat id")?.to_string(), poster));
    }
    const STOCK: i64 = 1_000_000;
    let mut items = vec![];
    for i in 0..args.items {
        let r = post(&client, format!("{base}/items"), &admin,
            json!({"name": format!("bench item {i}"), "unit": "u", "category": "bench", "min_stock_qty": 1})).await?;
        let id = r["id"].as_str().context("item id")?.to_string();
        post(
            &client,
            format!("{base}/items/{id}/batches"),
            &admin,
            json!({"batch_code": "B", "qty_received": STOCK, "currency": "EUR", "cost_total": 1}),
        )
        .await?;
        items.push(id);
    }

    // Subscribers, opened 50 at a time.
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let lagged = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut subs = vec![];
    let open = Arc::new(tokio::sync::Semaphore::new(50));
    for s in 0..args.subscribers {
        let (ws, received, lagged, open) =
            (ws.clone(), received.clone(), lagged.clone(), open.clone());
        let (user, query, vars) = if s < chat_subs {
            let c = s % args.chats;
            let k = s / args.chats;
            (
                format!("u_s{c}_{k}"),
                "subscription($c: ID!) { chatMessages(chatId: $c) { text } }",
                json!({"c": chats[c].0}),
            )
        } else {
            (
                format!("u_i{s}"),
                "subscription($i: ID) { stockUpdates(itemId: $i) { itemId stockQty } }",
                json!({"i": items[s % args.items]}),
            )
        };
        let tok = token(&user, &[Role::Student])?;
        subs.push(tokio::spawn(async move {
            let mut c = {
                let _permit = open.acquire().await.expect("open");
                let mut c = Client::connect(&ws, &tok).await?;
                c.subscribe(query, vars).await?;
                c
            };
            loop {
                match c.next().await {
                    Frame::Next(_, p) => {
                        let at = Instant::now();
                        let d = &p["data"];
                        let key = if let Some(m) = d["chatMessages"].as_object() {
                            Key::Message(m["text"].as_str().unwrap_or_default().to_string())
                        } else if let Some(u) = d["stockUpdates"].as_object() {
                            Key::Stock(
                                u["itemId"].as_str().unwrap_or_default().to_string(),
                                u["stockQty"].as_i64().unwrap_or_default(),
                            )
                        } else {
                            lagged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            eprintln!("error frame: {p}");
                            continue;
                        };
                        received.lock().expect("received").push((key, at));
                    }
                    Frame::Closed(code, reason) => {
                        eprintln!("closed by the server: {code:?} {reason}");
                        return Ok::<_, anyhow::Error>(());
                    }
                    _ => {}
                }
            }
        }));
    }
    let wait = Instant::now();
    while live_subscribers(&client, &base).await < args.subscribers as i64 {
        if wait.elapsed() > Duration::from_secs(120) {
            bail!(
                "only {} of {} subscribers came up",
                live_subscribers(&client, &base).await,
                args.subscribers
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{} subscribers up in {:.1} s",
        args.subscribers,
        wait.elapsed().as_secs_f64()
    );

    // The load: alternate a message and a consumption, round-robin over chats and items.
    let sent: Arc<Mutex<HashMap<Key, Instant>>> = Arc::default();
    let mut expected = 0usize;
    let mut stock: Vec<i64> = vec![STOCK; items.len()];
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate.max(1)));
    let total = args.rate * args.seconds;
    let mut cmds = vec![];
    for n in 0..total as usize {
        tick.tick().await;
        let (client, base, sent) = (client.clone(), base.clone(), sent.clone());
        if n % 2 == 0 {
            let c = (n / 2) % chats.len();
            let text = format!("b-{n}");
            expected += (0..chat_subs).filter(|s| s % args.chats == c).count();
            let (chat, poster) = chats[c].clone();
            let tok = token(&poster, &[Role::Student])?;
            cmds.push(tokio::spawn(async move {
                sent.lock()
                    .expect("sent")
                    .insert(Key::Message(text.clone()), Instant::now());
                post(
                    &client,
                    format!("{base}/chats/{chat}/messages"),
                    &tok,
                    json!({"text": text}),
                )
                .await
            }));
        } else {
            let i = (n / 2) % items.len();
            stock[i] -= 1;
            let key = Key::Stock(items[i].clone(), stock[i]);
            expected += (chat_subs..args.subscribers)
                .filter(|s| s % args.items == i)
                .count();
            let (item, admin) = (items[i].clone(), admin.clone());
            cmds.push(tokio::spawn(async move {
                sent.lock().expect("sent").insert(key, Instant::now());
                post(
                    &client,
                    format!("{base}/items/{item}/consume"),
                    &admin,
                    json!({"qty": 1}),
                )
                .await
            }));
        }
    }
    let mut failed = 0;
    for c in cmds {
        match c.await {
            Ok(Ok(_)) => {}
            other => {
                if failed == 0 {
                    eprintln!("first failed command: {other:?}");
                }
                failed += 1;
            }
        }
    }
    // Let the last frames arrive.
    let settle = Instant::now();
    while received.lock().expect("received").len() < expected
        && settle.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = received.lock().expect("received").clone();
    let sent = sent.lock().expect("sent").clone();
    let latency = |(k, at): &(Key, Instant)| {
        sent.get(k)
            .map(|t0| at.saturating_duration_since(*t0).as_secs_f64() * 1000.0)
    };
    let mut lat: Vec<f64> = got.iter().filter_map(latency).collect();
    let by_kind = |chat: bool| {
        let mut v: Vec<f64> = got
            .iter()
            .filter(|(k, _)| matches!(k, Key::Message(_)) == chat)
            .filter_map(latency)
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        let p = |q: f64| {
            v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        format!("p50 {:.1}  p95 {:.1}  p99 {:.1}", p(0.5), p(0.95), p(0.99))
    };
    let unmatched = got.len() - lat.len();
    lat.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!("backend              {}", args.backend);
    println!(
        "subscribers          {} ({} chatMessages over {} chats, {} stockUpdates over {} items)",
        args.subscribers, chat_subs, args.chats, item_subs, args.items
    );
    println!(
        "commands             {total} at {}/s ({failed} failed)",
        args.rate
    );
    println!("frames expected      {expected}");
    println!(
        "frames received      {} ({} not matching a command)",
        got.len(),
        unmatched
    );
    println!(
        "frames lost          {}",
        expected.saturating_sub(lat.len())
    );
    println!(
        "error frames         {}",
        lagged.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "latency ms           p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        pct(0.50),
        pct(0.95),
        pct(0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    println!("  chatMessages       {}", by_kind(true));
    println!("  stockUpdates       {}", by_kind(false));
    for s in subs {
        s.abort();
    }
    Ok(())
}
