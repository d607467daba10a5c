//! `fafcab-bench`: drives `POST /items/{id}/consume` over HTTP against a running `fafcab serve`
//! (started here as a child process on a fresh database) with N concurrent clients, and prints
//! commands/s, latency percentiles, errors and projection lag (commit → read model, from the
//! server's `projection_lag_seconds` histogram).
//!
//! ```text
//! cargo build --release -p api
//! target/release/fafcab-bench --backend postgres --clients 32 --items 200 --seconds 10
//! target/release/fafcab-bench --backend sqlite   --clients 32 --items 200 --seconds 10
//! target/release/fafcab-bench --backend postgres --extra-projections 10   # 10 more no-op consumers
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use domain::Role;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Consume-command load generator for fafcab")]
struct Args {
    /// sqlite or postgres
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Items the load is spread over.
    #[arg(long, default_value_t = 200)]
    items: usize,
    /// Measured duration (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// PostgreSQL server for --backend postgres (a fresh database is created on it).
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg: String,
    /// Port for the server under test.
    #[arg(long, default_value_t = 18_181)]
    port: u16,
    /// No-op projections the server adds to its log follower (what more consumers cost).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=100))]
    extra_projections: u16,
}

const SECRET: &str = "fafcab-bench-secret-of-at-least-32-bytes";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = benchkit::fresh_db(&args.backend, &args.pg, "fafcab_bench").await?;
    let extra = args.extra_projections.to_string();
    let server = benchkit::Server::start(
        &db,
        args.port,
        SECRET,
        &[("FAFCAB_EXTRA_NOOP_PROJECTIONS", &extra)],
    )
    .await?;
    let base = server.base.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .build()?;
    let admin = api::auth::issue(
        SECRET,
        "u_bench",
        &[Role::Admin],
        chrono::Duration::hours(2),
    )?;

    // Items, each with plenty of stock.
    let mut items = Vec::with_capacity(args.items);
    for i in 0..args.items {
        let r: Value = client
            .post(format!("{base}/items"))
            .bearer_auth(&admin)
            .json(&json!({"name": format!("bench item {i}"), "unit": "u", "category": "bench", "min_stock_qty": 10}))
            .send()
            .await?
            .json()
            .await?;
        let id = r["id"].as_str().context("item id")?.to_string();
        let s = client
            .post(format!("{base}/items/{id}/batches"))
            .bearer_auth(&admin)
            .json(&json!({"batch_code": "BENCH", "qty_received": 100_000_000, "currency": "EUR", "cost_total": 1.00}))
            .send()
            .await?
            .status();
        if s != 201 {
            bail!("seeding failed: {s}");
        }
        items.push(id);
    }
    let items = Arc::new(items);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![];
    for c in 0..args.clients {
        let (client, base, admin, items) =
            (client.clone(), base.clone(), admin.clone(), items.clone());
        let (measuring, stop, errors) = (measuring.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut n = c;
            while !stop.load(Ordering::Relaxed) {
                let item = &items[n % items.len()];
                n += args_stride(c);
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/items/{item}/consume"))
                    .bearer_auth(&admin)
                    .json(&json!({"qty": 1, "user_id": format!("u_{c}"), "source": "self_service"}))
                    .send()
                    .await;
                let ok = matches!(&r, Ok(resp) if resp.status() == 201);
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        lat.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lag_before = scrape_lag(&client, &base).await?;
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u64> = vec![];
    for t in tasks {
        lat.extend(t.await?);
    }
    let lag_after = scrape_lag(&client, &base).await?;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let lag = lag_after.minus(&lag_before);
    println!("backend            {}", args.backend);
    println!("clients / items    {} / {}", args.clients, args.items);
    println!("extra projections  {}", args.extra_projections);
    println!("duration           {elapsed:.1} s");
    println!("commands ok        {}", lat.len());
    println!("errors             {}", errors.load(Ordering::Relaxed));
    println!(
        "throughput         {:.0} commands/s",
        lat.len() as f64 / elapsed
    );
    println!(
        "latency p50/p95/p99  {:.2} / {:.2} / {:.2} ms (max {:.2})",
        pct(0.50),
        pct(0.95),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "projection lag p50/p99  <= {} / <= {} ms (commit to read model, histogram bucket bounds, {} events)",
        lag.quantile(0.50),
        lag.quantile(0.99),
        lag.count
    );
    Ok(())
}

/// Each client walks the items with its own stride, so clients rarely collide on one item.
fn args_stride(c: usize) -> usize {
    [1, 7, 13, 31, 37, 61, 97, 101][c % 8]
}

struct Histogram {
    bounds: Vec<f64>,
    cumulative: Vec<u64>,
    count: u64,
}

impl Histogram {
    fn minus(&self, other: &Histogram) -> Histogram {
        Histogram {
            bounds: self.bounds.clone(),
            cumulative: self
                .cumulative
                .iter()
                .zip(other.cumulative.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a - b)
                .collect(),
            count: self.count - other.count,
        }
    }

    /// Upper bound (ms) of the bucket holding quantile `q`.
    fn quantile(&self, q: f64) -> String {
        let target = (self.count as f64 * q).ceil() as u64;
        for (b, c) in self.bounds.iter().zip(&self.cumulative) {
            if *c >= target {
                return format!("{}", b * 1000.0);
            }
        }
        "inf".into()
    }
}

async fn scrape_lag(client: &reqwest::Client, base: &str) -> anyhow::Result<Histogram> {
    let text = client
        .get(format!("{base}/admin/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let mut bounds = vec![];
    let mut cumulative = vec![];
    let mut count = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("projection_lag_seconds_bucket{") {
            if !rest.contains("projection=\"tea\"") {
                continue;
            }
            let le = rest
                .split("le=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("");
            let v: u64 = line.rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0);
            if le != "+Inf" {
                bounds.push(le.parse().unwrap_or(f64::INFINITY));
                cumulative.push(v);
            }
        } else if line.starts_with("projection_lag_seconds_count{projection=\"tea\"}") {
            count = line.rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0);
        }
    }
    Ok(Histogram {
        bounds,
        cumulative,
        count,
    })
}
