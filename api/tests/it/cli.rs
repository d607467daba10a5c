//! The `fafcab` binary's subcommands, run as a user would, on SQLite and PostgreSQL.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use commands::{CommandBus, Context};
use domain::tea::{BatchSpec, ItemSpec};
use domain::{Actor, Role};
use eventstore::EventStore;
use uuid::Uuid;

use crate::common::{fresh, run, BIN};

async fn audit_and_rebuild(pg: bool) {
    let url = fresh(pg).await;
    let (code, out) = run(&url, &["migrate"]);
    assert_eq!((code, out.trim()), (0, "migrations applied"));
    let store = EventStore::connect(&url, 4).await.unwrap();
    let bus = CommandBus::new(store.clone());
    let ctx = Context::new(Actor::new("u_admin", vec![Role::Admin]));
    let id = Uuid::now_v7();
    let spec = ItemSpec {
        name: "Tea".into(),
        unit: "bag".into(),
        category: "beverage".into(),
        sku: None,
        active: true,
        track_expiry: false,
        min_stock_qty: 0,
        tags: vec![],
    };
    commands::tea::create_item(&bus, &ctx, id, spec, None)
        .await
        .unwrap();
    for qty in [5, 7] {
        let batch = BatchSpec {
            batch_id: Uuid::now_v7(),
            batch_code: "PO".into(),
            supplier_ref: None,
            expiry_date: None,
            qty_received: qty,
            currency: "USD".into(),
            cost_total: "1.50".parse().unwrap(),
            received_at: chrono::Utc::now(),
        };
        commands::tea::receive_batch(&bus, &ctx, id, batch, None)
            .await
            .unwrap();
    }
    let (code, out) = run(&url, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 1 streams, 3 events"), "{out}");

    let (code, out) = run(&url, &["projections", "rebuild", "tea"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "rebuilt tea: 3 events applied");
    let (code, _) = run(&url, &["projections", "rebuild", "nope"]);
    assert_ne!(code, 0);

    store
        .tamper_payload_for_tests(
            "item",
            &id.to_string(),
            2,
            serde_json::json!({"batch": {"qty_received": 5000}}),
        )
        .await
        .unwrap();
    let (code, out) = run(&url, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BROKEN: stream item/{id} at sequence 2")),
        "{out}"
    );
}

#[tokio::test]
async fn audit_verify_and_rebuild_on_sqlite() {
    audit_and_rebuild(false).await;
}

#[tokio::test]
async fn audit_verify_and_rebuild_on_postgres() {
    audit_and_rebuild(true).await;
}

#[test]
fn token_is_signed_with_the_configured_secret() {
    let out = Command::new(BIN)
        .args([
            "token", "--user", "u_1", "--role", "admin", "--role", "auditor",
        ])
        .env("AUTH_JWT_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    let actor = api::auth::verify("s3cret-s3cret-s3cret-s3cret-s3cret", token.trim()).unwrap();
    assert_eq!(actor, Actor::new("u_1", vec![Role::Admin, Role::Auditor]));
    let bad = Command::new(BIN)
        .args(["token", "--user", "u_1", "--role", "root"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

/// What a started `fafcab serve` printed (stdout and stderr, in arrival order) until it exited
/// or printed a line containing `until`, and its exit code if it exited. A server still running
/// after `limit` is killed and the test fails.
fn serve_until(env: &[(&str, &str)], until: &str, limit: Duration) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env_remove("AUTH_JWT_SECRET")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary runs");
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    for pipe in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + limit;
    let mut text = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                if line.contains(until) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return (None, text);
                }
            }
            // Both pipes closed: the process has exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let code = child.wait().unwrap().code();
                return (code, text);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve neither exited nor printed {until:?} within {limit:?}:\n{text}");
            }
        }
    }
}

#[tokio::test]
async fn serve_refuses_a_short_secret() {
    let url = fresh(false).await;
    let (code, out) = serve_until(
        &[
            ("DATABASE_URL", &url),
            ("FAFCAB_ADDR", "127.0.0.1:0"),
            ("AUTH_JWT_SECRET", "only-31-bytes-long-secret-xxxxx"),
        ],
        "listening",
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("AUTH_JWT_SECRET is 31 bytes long: at least 32 are required"),
        "{out}"
    );
}

#[tokio::test]
async fn serve_refuses_the_development_secret_off_loopback() {
    let url = fresh(false).await;
    let (code, out) = serve_until(
        &[("DATABASE_URL", &url), ("FAFCAB_ADDR", "0.0.0.0:0")],
        "listening",
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "AUTH_JWT_SECRET is not set and FAFCAB_ADDR 0.0.0.0:0 is not a loopback address"
        ),
        "{out}"
    );
}

/// On loopback the development secret still serves (`cargo run`), with a warning; credentials in
/// the database URL's query never reach the log.
#[tokio::test]
async fn serve_on_loopback_with_the_development_secret_warns_and_hides_url_passwords() {
    let url = fresh(true).await;
    let (code, out) = serve_until(
        &[
            ("DATABASE_URL", &format!("{url}?password=hunter2-secret")),
            ("FAFCAB_ADDR", "127.0.0.1:0"),
        ],
        "listening",
        Duration::from_secs(60),
    );
    assert_eq!(code, None, "{out}");
    assert!(out.contains("public DEVELOPMENT secret"), "{out}");
    assert!(out.contains("password=***"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn out_of_range_settings_are_refused_with_the_variable_name() {
    let out = Command::new(BIN)
        .arg("schema")
        .env("FAFCAB_DB_MAX_CONNECTIONS", "1000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FAFCAB_DB_MAX_CONNECTIONS") && err.contains("1000 is not in 2..=500"),
        "{err}"
    );
    // A blank variable still means "unset", and every setting is in --help.
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .env("FAFCAB_DB_MAX_CONNECTIONS", " ")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for var in [
        "FAFCAB_ADDR",
        "DATABASE_URL",
        "AUTH_JWT_SECRET",
        "FAFCAB_HTTP_HEADER_TIMEOUT_SECS",
        "FAFCAB_HTTP_IDLE_TIMEOUT_SECS",
        "FAFCAB_MAX_CONNECTIONS",
        "RUST_LOG",
    ] {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} missing:\n{help}"
        );
    }
}
