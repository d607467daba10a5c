//! The `fafcab` binary's subcommands, run as a user would, on SQLite and PostgreSQL.

use std::process::Command;

use commands::{CommandBus, Context};
use domain::tea::{BatchSpec, ItemSpec};
use domain::{Actor, Role};
use eventstore::EventStore;
use uuid::Uuid;

mod common;
use common::{fresh, run, BIN};

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
        .env("AUTH_JWT_SECRET", "s3cret")
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    let actor = api::auth::verify("s3cret", token.trim()).unwrap();
    assert_eq!(actor, Actor::new("u_1", vec![Role::Admin, Role::Auditor]));
    let bad = Command::new(BIN)
        .args(["token", "--user", "u_1", "--role", "root"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
