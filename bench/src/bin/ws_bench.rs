//! `fafcab-ws-bench`: live delivery over `WS /ws`. Starts `fafcab serve` (a child process on a
//! fresh database, or targets `--url`), opens N WebSocket connections spread over C chats (each
//! connection a member subscribed to its chat), posts messages over HTTP at a steady rate (one
//! poster per chat, under the per-user rate limit), and prints messages/s accepted, delivery
//! latency from the start of the POST to the frame's arrival (p50/p95/p99/max), and frames lost
//! (expected − received, after a drain of up to 15 s).
//!
//! ```text
//! cargo build --release -p api
//! target/release/fafcab-ws-bench --backend postgres --connections 1000 --chats 50 --rate 250 --seconds 20
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use domain::Role;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "WebSocket fan-out benchmark for fafcab")]
struct Args {
    /// sqlite or postgres (ignored with --url).
    #[arg(long, default_value = "postgres")]
    backend: String,
    /// WebSocket connections (each a different user).
    #[arg(long, default_value_t = 1_000)]
    connections: usize,
    /// Chats the connections are spread over (round robin).
    #[arg(long, default_value_t = 50)]
    chats: usize,
    /// Messages per second posted in total (spread evenly over the chats; each chat's poster
    /// stays under the server's per-user limit of 10/s).
    #[arg(long, default_value_t = 250.0)]
    rate: f64,
    /// Measured posting duration.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// PostgreSQL server for --backend postgres (a fresh database is created on it).
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg: String,
    /// Port for the server started here.
    #[arg(long, default_value_t = 18_182)]
    port: u16,
    /// Target an already running server instead (its AUTH_JWT_SECRET must be --secret).
    #[arg(long)]
    url: Option<String>,
    #[arg(long, default_value = "fafcab-bench-secret-of-at-least-32-bytes")]
    secret: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.chats == 0 || args.connections < args.chats {
        bail!("need at least one connection per chat");
    }
    let (_server, base) = match &args.url {
        Some(u) => (None, u.trim_end_matches('/').to_string()),
        None => {
            let db = benchkit::fresh_db(&args.backend, &args.pg, "fafcab_wsbench").await?;
            let server = benchkit::Server::start(&db, args.port, &args.secret, &[]).await?;
            let base = server.base.clone();
            (Some(server), base)
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.chats * 2)
        .build()?;
    let started = Instant::now();
    while client.get(format!("{base}/health")).send().await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("server did not come up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = |user: &str| {
        api::auth::issue(
            &args.secret,
            user,
            &[Role::Student],
            chrono::Duration::hours(2),
        )
    };

    // One chat per poster, members round robin.
    let mut members: Vec<Vec<String>> = vec![vec![]; args.chats];
    for i in 0..args.connections {
        members[i % args.chats].push(format!("u_ws_{i}"));
    }
    let mut chats = Vec::with_capacity(args.chats);
    for (k, m) in members.iter().enumerate() {
        let poster = token(&format!("u_poster_{k}"))?;
        let r = client
            .post(format!("{base}/chats"))
            .bearer_auth(&poster)
            .json(&json!({"type": "group", "name": format!("bench {k}"), "member_ids": m}))
            .send()
            .await?;
        if r.status() != 201 {
            bail!("creating a chat failed: {} {}", r.status(), r.text().await?);
        }
        let v: Value = r.json().await?;
        chats.push((v["id"].as_str().context("chat id")?.to_string(), poster));
    }

    // Connections: each subscribes to its chat and records (message seq, arrival).
    let ws_base = base.replacen("http", "ws", 1);
    let received = Arc::new(AtomicU64::new(0));
    let stop_rx = Arc::new(AtomicBool::new(false));
    let arrivals: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut readers = vec![];
    let t_connect = Instant::now();
    for i in 0..args.connections {
        let chat = chats[i % args.chats].0.clone();
        let url = format!("{ws_base}/ws?access_token={}", token(&format!("u_ws_{i}"))?);
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("connection {i} failed"))?;
        ws.send(Message::Text(
            json!({"op": "subscribe", "chat_id": chat})
                .to_string()
                .into(),
        ))
        .await?;
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("\"ack\"") => {}
            other => bail!("subscription {i} not acknowledged: {other:?}"),
        }
        let (received, stop, arrivals) = (received.clone(), stop_rx.clone(), arrivals.clone());
        readers.push(tokio::spawn(async move {
            let mut mine = vec![];
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let f = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
                let Ok(f) = f else { continue };
                match f {
                    Some(Ok(Message::Text(t))) => {
                        let now = Instant::now();
                        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                        if v["event"] == "chat.message.created" {
                            if let Some(seq) = v["data"]["text"]
                                .as_str()
                                .and_then(|s| s.strip_prefix("bench "))
                                .and_then(|s| s.parse::<u64>().ok())
                            {
                                mine.push((seq, now));
                                received.fetch_add(1, Ordering::Relaxed);
                            }
                        } else if v["event"] == "error" {
                            errors += 1;
                            eprintln!("error frame: {v}");
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        errors += 1;
                        break;
                    }
                }
            }
            arrivals.lock().expect("arrivals").extend(mine);
            errors
        }));
    }
    let connect_secs = t_connect.elapsed().as_secs_f64();

    // Posters: one per chat, evenly paced.
    let per_chat = args.rate / args.chats as f64;
    if per_chat > 10.0 {
        bail!("--rate / --chats must stay under the per-user limit of 10 messages/s");
    }
    let seq = Arc::new(AtomicU64::new(0));
    let posted: Arc<Mutex<HashMap<u64, (Instant, usize)>>> = Arc::new(Mutex::new(HashMap::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let stop_post = Arc::new(AtomicBool::new(false));
    let subscribers_of: Vec<usize> = members.iter().map(Vec::len).collect();
    let n_chats = args.chats as f64;
    let mut posters = vec![];
    for (k, (chat, poster)) in chats.iter().cloned().enumerate() {
        let (client, base, seq, posted, refused, stop) = (
            client.clone(),
            base.clone(),
            seq.clone(),
            posted.clone(),
            refused.clone(),
            stop_post.clone(),
        );
        let subs = subscribers_of[k];
        let period = Duration::from_secs_f64(1.0 / per_chat);
        posters.push(tokio::spawn(async move {
            // Stagger the chats over one period.
            tokio::time::sleep(period.mul_f64(k as f64 / n_chats)).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                posted.lock().expect("posted").insert(n, (t, subs));
                let r = client
                    .post(format!("{base}/chats/{chat}/messages"))
                    .bearer_auth(&poster)
                    .json(&json!({"text": format!("bench {n}")}))
                    .send()
                    .await;
                if !matches!(&r, Ok(resp) if resp.status() == 202) {
                    posted.lock().expect("posted").remove(&n);
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop_post.store(true, Ordering::Relaxed);
    for p in posters {
        p.await?;
    }
    let post_secs = t0.elapsed().as_secs_f64();
    let accepted = posted.lock().expect("posted").len() as u64;
    let expected: u64 = posted
        .lock()
        .expect("posted")
        .values()
        .map(|(_, s)| *s as u64)
        .sum();
    // Drain: wait until every expected frame arrived, at most 15 s.
    let drain = Instant::now();
    while received.load(Ordering::Relaxed) < expected && drain.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_rx.store(true, Ordering::Relaxed);
    let mut reader_errors = 0;
    for r in readers {
        reader_errors += r.await?;
    }
    let posted = posted.lock().expect("posted");
    let mut lat: Vec<f64> = arrivals
        .lock()
        .expect("arrivals")
        .iter()
        .filter_map(|(s, at)| {
            posted
                .get(s)
                .map(|(t, _)| (*at - *t).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let got = lat.len() as u64;
    println!(
        "backend              {}",
        if args.url.is_some() {
            "external"
        } else {
            &args.backend
        }
    );
    println!(
        "connections / chats  {} / {} (connected and subscribed in {connect_secs:.1} s)",
        args.connections, args.chats
    );
    println!(
        "posting duration     {post_secs:.1} s at a target of {} messages/s",
        args.rate
    );
    println!(
        "messages accepted    {accepted} ({:.1} messages/s), refused {}",
        accepted as f64 / post_secs,
        refused.load(Ordering::Relaxed)
    );
    println!("frames expected      {expected}");
    println!(
        "frames received      {got} ({:.0} frames/s)",
        got as f64 / post_secs
    );
    println!("frames lost          {}", expected.saturating_sub(got));
    println!("connection errors    {reader_errors}");
    println!(
        "delivery latency     p50 {:.1} / p95 {:.1} / p99 {:.1} / max {:.1} ms (POST start to frame)",
        pct(0.50),
        pct(0.95),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
