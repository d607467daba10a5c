//! The auditor (issue #6, "For auditors") over HTTP on SQLite and PostgreSQL: `GET /audit/digest`
//! for auditors and admins only, the digest it returns matches the log and moves with it, and the
//! auditor reads the audit feed and the books but changes nothing.

use domain::Role;
use fafcab_tests::*;
use serde_json::json;

on_both_backends!(
    digest_is_for_auditors_and_admins,
    auditor_reads_but_never_writes
);

async fn digest_is_for_auditors_and_admins(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.send("GET", "/audit/digest", None, None, &[]).await;
    assert_error(&r, 401, "UNAUTHORIZED");
    for tok in [
        student("u_1"),
        token("u_exec", &[Role::Executor]),
        token("u_t", &[Role::Teacher]),
    ] {
        let r = app.get("/audit/digest", &tok).await;
        assert_error(&r, 403, "FORBIDDEN");
    }

    let r = app
        .post(
            "/budget/transactions",
            &admin(),
            json!({"kind": "income", "amount": 12.5, "currency": "MDL", "category": "membership"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let first = app.get("/audit/digest", &auditor()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let position = first.body["position"].as_i64().expect("position");
    let hash = first.body["hash"].as_str().expect("hash").to_string();
    assert_eq!(hash.len(), 64);
    assert!(
        first.body["computed_at"].as_str().is_some(),
        "{}",
        first.text
    );
    assert!(position >= 1);
    // The digest is the documented fold over the stored chain hashes, and the log verifies to it.
    let store = &app.state.store;
    assert_eq!(store.digest(position).await.unwrap().hex(), hash);
    let verified = store.verify_log(position).await.unwrap();
    assert_eq!(verified.first_break, None);
    assert_eq!(verified.digest.expect("digest").hex(), hash);

    // Admins may ask too; a new event moves the digest, the old one still proves the old prefix.
    let r = app
        .post(
            "/budget/transactions",
            &admin(),
            json!({"kind": "expense", "amount": 2, "currency": "MDL", "category": "consumables"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let second = app.get("/audit/digest", &admin()).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert!(second.body["position"].as_i64().unwrap() > position);
    assert_ne!(second.body["hash"], first.body["hash"]);
    assert_eq!(store.digest(position).await.unwrap().hex(), hash);
}

async fn auditor_reads_but_never_writes(b: Backend) {
    let app = spawn_app(b).await;
    let r = app
        .post(
            "/budget/transactions",
            &admin(),
            json!({"kind": "income", "amount": 100, "currency": "MDL", "category": "membership"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let tx_id = r.body["id"].as_str().unwrap().to_string();

    // Reads: the audit feed, the books.
    let r = app.get("/admin/events?limit=200", &auditor()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "budget.transaction.recorded"),
        "{}",
        r.text
    );
    for path in [
        "/budget/balance",
        "/budget/transactions",
        "/budget/debts",
        "/budget/settings",
        "/budget/reports?group_by=month",
    ] {
        let r = app.get(path, &auditor()).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
    }

    // Writes: every one is 403, and nothing is appended.
    let before = app.state.store.head_position().await.unwrap();
    let writes = [
        (
            "POST",
            "/budget/transactions".to_string(),
            json!({"kind": "income", "amount": 1, "currency": "MDL", "category": "x"}),
        ),
        (
            "POST",
            format!("/budget/transactions/{tx_id}/reverse"),
            json!({"reason": "no"}),
        ),
        (
            "POST",
            "/budget/debts".to_string(),
            json!({"user_id": "u_1", "amount": 1, "currency": "MDL", "reason": "x"}),
        ),
        (
            "PUT",
            "/budget/settings".to_string(),
            json!({"low_balance_threshold": 1, "currency": "MDL"}),
        ),
        (
            "POST",
            "/items".to_string(),
            json!({"name": "Tea", "unit": "bag", "category": "beverage"}),
        ),
        (
            "PUT",
            "/moderation/filters".to_string(),
            json!({"phrases": [], "version": 1}),
        ),
    ];
    for (method, path, body) in writes {
        let r = app
            .send(method, &path, Some(&auditor()), Some(body), &[])
            .await;
        assert_error(&r, 403, "FORBIDDEN");
    }
    assert_eq!(app.state.store.head_position().await.unwrap(), before);
}
