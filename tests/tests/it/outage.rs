//! A database outage under load: a private PostgreSQL instance (initdb + pg_ctl, never the shared
//! server) is stopped for a few seconds while writers consume stock. Every answer meanwhile is a
//! success or 503 `UNAVAILABLE` with `Retry-After`, within the request timeout (never a 500 or a
//! hang); after the restart health and writes recover by themselves, the projections resume from
//! their checkpoints, and every acknowledged consumption is in the log and the stock.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::Settings;
use fafcab_tests::{admin, eventually, spawn_with, student};
use serde_json::{json, Value};

/// Where the PostgreSQL server binaries are (`PG_BIN` overrides).
fn pg_bin() -> PathBuf {
    let dir = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let dir = PathBuf::from(dir);
    for tool in ["initdb", "pg_ctl", "postgres"] {
        assert!(
            dir.join(tool).is_file(),
            "the outage test needs the PostgreSQL server binaries: {} is missing (install \
             postgresql-15, or set PG_BIN to the directory holding initdb and pg_ctl)",
            dir.join(tool).display()
        );
    }
    dir
}

/// A PostgreSQL instance of this test alone, in a temporary directory, on a free port; run as the
/// `postgres` OS user when the test runs as root (initdb refuses root). Dropping it stops it
/// (immediate mode) and removes its directory.
struct PrivatePg {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePg {
    fn command(&self, tool: &str) -> std::process::Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("failed to run {tool} (runuser needed as root): {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn init() -> Self {
        let bin = pg_bin();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir =
            std::env::temp_dir().join(format!("fafcab-outage-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .expect("id -u");
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_postgres {
            let st = std::process::Command::new("chown")
                .args(["postgres:", dir.to_str().expect("utf-8 path")])
                .status()
                .expect("chown");
            assert!(
                st.success(),
                "chown of {} to postgres failed",
                dir.display()
            );
        }
        let pg = Self {
            bin,
            dir,
            port,
            as_postgres,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                pg.data().to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60 \
             -c shared_buffers=16MB",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// Fast shutdown: sessions are ended with 57P01 and the server goes away.
    fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "-t",
                "30",
                "stop",
            ],
        );
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(Path::new(&self.dir));
    }
}

/// One answer seen by the load.
struct Seen {
    status: u16,
    elapsed: Duration,
    code: Value,
    retry_after: Option<String>,
    what: &'static str,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
const WRITERS: usize = 8;
const STOCK: i64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_recovers_losing_nothing() {
    let pg = tokio::task::spawn_blocking(PrivatePg::init)
        .await
        .expect("init");
    let mut settings = Settings::for_tests(&pg.url());
    settings.request_timeout = REQUEST_TIMEOUT;
    settings.db_acquire_timeout = Duration::from_millis(1000);
    settings.read_your_writes = Duration::from_millis(500);
    let app = spawn_with(settings).await;
    let item = app.item("Outage tea", 0).await;
    app.batch(&item, STOCK, None).await;

    let client = reqwest::Client::builder()
        // Far past the request timeout: a hang shows as a measured delay, not a client error.
        .timeout(REQUEST_TIMEOUT * 4)
        .build()
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let ok_count = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![];
    for w in 0..WRITERS {
        let (client, stop, acked, seen, ok_count) = (
            client.clone(),
            stop.clone(),
            acked.clone(),
            seen.clone(),
            ok_count.clone(),
        );
        let url = app.url(&format!("/items/{item}/consume"));
        let token = student(&format!("u_writer_{w}"));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"qty": 1}))
                    .send()
                    .await;
                let r = r.unwrap_or_else(|e| {
                    panic!("consume got no answer after {:?}: {e}", t.elapsed())
                });
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap_or("").to_string());
                let body: Value = r.json().await.unwrap_or(Value::Null);
                if status == 201 {
                    ok_count.fetch_add(1, Ordering::Relaxed);
                    acked
                        .lock()
                        .unwrap()
                        .insert(body["id"].as_str().expect("consumption id").to_string());
                }
                seen.lock().unwrap().push(Seen {
                    status,
                    elapsed: t.elapsed(),
                    code: body["error"]["code"].clone(),
                    retry_after,
                    what: "consume",
                });
            }
        }));
    }
    // A reader on REST and GraphQL beside the writers.
    {
        let (client, stop, seen) = (client.clone(), stop.clone(), seen.clone());
        let (rest, gql) = (app.url(&format!("/items/{item}")), app.url("/graphql"));
        let token = admin();
        let query = json!({"query": format!("{{ item(id: \"{item}\") {{ id }} }}")});
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = client
                    .get(&rest)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("answer");
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap_or("").to_string());
                let body: Value = r.json().await.unwrap_or(Value::Null);
                seen.lock().unwrap().push(Seen {
                    status,
                    elapsed: t.elapsed(),
                    code: body["error"]["code"].clone(),
                    retry_after,
                    what: "GET item",
                });
                let t = Instant::now();
                let r = client
                    .post(&gql)
                    .bearer_auth(&token)
                    .json(&query)
                    .send()
                    .await
                    .expect("answer");
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap_or("").to_string());
                let body: Value = r.json().await.unwrap_or(Value::Null);
                // GraphQL answers 200 with errors; each error's code must be UNAVAILABLE.
                let (status, code) = match body["errors"].as_array() {
                    Some(errs) if status == 200 => {
                        let codes: HashSet<_> = errs
                            .iter()
                            .map(|e| e["extensions"]["code"].to_string())
                            .collect();
                        assert_eq!(codes.len(), 1, "GraphQL errors: {body}");
                        (503, errs[0]["extensions"]["code"].clone())
                    }
                    _ => (status, body["error"]["code"].clone()),
                };
                // GraphQL carries no Retry-After (its answer is a 200); the code says it all.
                let retry_after = if body["errors"].is_array() {
                    Some("(GraphQL: extensions.code)".into())
                } else {
                    retry_after
                };
                seen.lock().unwrap().push(Seen {
                    status,
                    elapsed: t.elapsed(),
                    code,
                    retry_after,
                    what: "GraphQL item",
                });
            }
        }));
    }

    let wait_ok = |n: u64| {
        let ok_count = ok_count.clone();
        async move {
            let from = ok_count.load(Ordering::Relaxed);
            eventually(Duration::from_secs(20), || {
                let ok_count = ok_count.clone();
                async move { (ok_count.load(Ordering::Relaxed) >= from + n).then_some(()) }
            })
            .await
        }
    };
    wait_ok(20).await;
    let pg = Arc::new(pg);
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.stop())
        .await
        .expect("stop");
    let down_at = Instant::now();
    let before_outage = seen.lock().unwrap().len();
    // The outage lasts until the load has seen 503s for a few seconds.
    eventually(Duration::from_secs(20), || {
        let seen = seen.clone();
        async move {
            let s = seen.lock().unwrap();
            let unavailable = s[before_outage..]
                .iter()
                .filter(|x| x.status == 503)
                .count();
            (unavailable >= 10 && down_at.elapsed() >= Duration::from_secs(3)).then_some(())
        }
    })
    .await;
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.start())
        .await
        .expect("start");
    let up_at = Instant::now();

    // Health and writes recover by themselves.
    eventually(Duration::from_secs(20), || {
        let (client, url) = (client.clone(), app.url("/health"));
        async move {
            let r = client.get(url).send().await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    wait_ok(50).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let recovered_in = up_at.elapsed();

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let unavailable = seen.iter().filter(|s| s.status == 503).count();
    assert!(
        unavailable >= 10,
        "the outage was not seen: {unavailable} answers of 503"
    );
    for s in &seen {
        match s.status {
            200 | 201 => {}
            503 => {
                assert_eq!(
                    s.code, "UNAVAILABLE",
                    "{} answered 503 without the UNAVAILABLE envelope",
                    s.what
                );
                assert!(
                    s.retry_after.is_some(),
                    "{} answered 503 without Retry-After",
                    s.what
                );
            }
            other => panic!(
                "{} answered {other} (code {}) during the outage",
                s.what, s.code
            ),
        }
        // Strictly below: an answer of the request-timeout layer itself (at the timeout) means
        // the request hung on the database instead of failing fast.
        assert!(
            s.elapsed < REQUEST_TIMEOUT,
            "{} took {:?}: it hung until the request timeout of {REQUEST_TIMEOUT:?}",
            s.what,
            s.elapsed
        );
    }
    for what in ["consume", "GET item", "GraphQL item"] {
        let n = seen
            .iter()
            .filter(|s| s.what == what && s.status == 503)
            .count();
        assert!(n > 0, "no {what} request met the outage");
    }
    let slowest = seen.iter().map(|s| s.elapsed).max().unwrap_or_default();
    for s in seen.iter().filter(|s| s.elapsed > Duration::from_secs(2)) {
        eprintln!("slow: {} {} {} {:?}", s.what, s.status, s.code, s.elapsed);
    }

    // Nothing acknowledged is lost: every acknowledged consumption is in the log, and the stock
    // (once the projection, resumed from its checkpoint, has caught up) is what the log says.
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let log = app.whole_log().await;
    let consumed: HashSet<String> = log
        .iter()
        .filter(|e| e.event_type == "StockConsumed")
        .map(|e| {
            let p = &e.payload;
            let c = p.get("StockConsumed").unwrap_or(p);
            c["consumption_id"]
                .as_str()
                .expect("consumption_id")
                .to_string()
        })
        .collect();
    let lost: Vec<_> = acked.difference(&consumed).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged consumptions are not in the log: {lost:?}",
        lost.len()
    );
    let expected = STOCK - consumed.len() as i64;
    eventually(Duration::from_secs(20), || {
        let app = &app;
        let item = &item;
        async move {
            let r = app.get(&format!("/items/{item}"), &admin()).await;
            (r.status == 200 && r.body["stock_qty"] == expected).then_some(())
        }
    })
    .await;
    // The hash chains survived the outage (`audit verify`).
    let report = app.state.store.verify_chains().await.expect("verify");
    assert_eq!(report.first_break, None, "a chain broke across the outage");
    assert!(report.events >= log.len() as u64, "{report:?}");

    // The workers resume from their checkpoints by themselves: every projection reaches the head.
    let head = app.state.store.head_position().await.expect("head");
    eventually(Duration::from_secs(20), || {
        let runner = &app.state.runner;
        async move {
            runner
                .names()
                .into_iter()
                .all(|n| runner.progress(n).is_some_and(|c| c.position >= head))
                .then_some(())
        }
    })
    .await;
    eprintln!(
        "outage: {} answers ({unavailable} of 503), {} acknowledged, {} in the log, slowest {slowest:?}, \
         recovered {recovered_in:?} after the restart",
        seen.len(),
        acked.len(),
        consumed.len()
    );
}
