//! The auditor (issue #6, "For auditors") over HTTP on SQLite and PostgreSQL: `GET /audit/digest`
//! for auditors and admins only, the digest it returns matches the log and moves with it, and the
//! auditor reads the audit feed and the books but changes nothing; a log whose chains are broken
//! gets no digest (409 naming every broken stream).

use domain::Role;
use fafcab_tests::*;
use serde_json::json;

on_both_backends!(
    digest_is_for_auditors_and_admins,
    auditor_reads_but_never_writes,
    no_digest_for_a_broken_log
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

async fn no_digest_for_a_broken_log(b: Backend) {
    let app = spawn_app(b).await;
    for (amount, currency) in [(12.5, "MDL"), (3.0, "MDL"), (7.0, "EUR")] {
        let r = app
            .post(
                "/budget/transactions",
                &admin(),
                json!({"kind": "income", "amount": amount, "currency": currency, "category": "membership"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let ok = app.get("/audit/digest", &auditor()).await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    // Two streams edited in the database: one payload, one stored chain hash.
    let store = &app.state.store;
    let mdl = store
        .load::<domain::budget::Ledger>("MDL", 0)
        .await
        .unwrap();
    let mut forged = mdl[1].payload.clone();
    forged["transaction"]["amount"] = "3000".into();
    store
        .tamper_payload_for_tests("budget_ledger", "MDL", 2, forged)
        .await
        .unwrap();
    let sql = "UPDATE events SET hash = $1 WHERE aggregate_type = 'budget_ledger' AND aggregate_id = 'EUR'";
    match store.db() {
        eventstore::Db::Pg(p) => sqlx::query(sql)
            .bind(vec![0u8; 32])
            .execute(&p)
            .await
            .map(|_| ()),
        eventstore::Db::Sqlite { write, .. } => sqlx::query(sql)
            .bind(vec![0u8; 32])
            .execute(&write)
            .await
            .map(|_| ()),
    }
    .unwrap();

    let r = app.get("/audit/digest", &auditor()).await;
    assert_error(&r, 409, "CONFLICT");
    assert!(r.body["error"]["details"]["hash"].is_null(), "{}", r.text);
    assert!(
        !r.text.contains(ok.body["hash"].as_str().unwrap()),
        "{}",
        r.text
    );
    let broken = &r.body["error"]["details"]["broken"];
    assert_eq!(
        r.body["error"]["details"]["broken_streams"], 2,
        "{}",
        r.text
    );
    assert_eq!(broken[0]["stream"], "budget_ledger/MDL", "{}", r.text);
    assert_eq!(broken[0]["sequence"], 2, "{}", r.text);
    assert_eq!(broken[0]["hash"], "content", "{}", r.text);
    assert_eq!(broken[1]["stream"], "budget_ledger/EUR", "{}", r.text);
    assert_eq!(broken[1]["sequence"], 1, "{}", r.text);
    assert_eq!(broken[1]["hash"], "chain", "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("budget_ledger/MDL at sequence 2"),
        "{}",
        r.text
    );
    // verify_log names both too; the raw fold of stored hashes is still available to it.
    let report = store
        .verify_log(r.body["error"]["details"]["position"].as_i64().unwrap())
        .await
        .unwrap();
    assert_eq!(report.breaks.len(), 2);
    assert_eq!(report.digest, None);
}
