//! Budgeting (issue #6, `budget-svc`) over HTTP on SQLite and PostgreSQL: transactions and
//! reversals, balances at a point in time, debts, the low-balance alert, reports, the tea-batch
//! policy, and the read model against a fresh fold of the log.

use std::collections::BTreeMap;
use std::time::Duration;

use domain::budget::{postings, LedgerEvent};
use domain::Role;
use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(
    transactions_reversals_and_balances,
    debts_payments_and_visibility,
    low_balance_settings_and_reports,
    tea_batches_are_booked_once,
    read_model_equals_a_fresh_fold_of_the_log
);

const DEADLINE: Duration = Duration::from_secs(10);

async fn put(app: &TestApp, path: &str, tok: &str, body: Value) -> Res {
    app.send("PUT", path, Some(tok), Some(body), &[]).await
}

async fn book(app: &TestApp, body: Value) -> Value {
    let r = app.post("/budget/transactions", &admin(), body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

fn balance_of<'a>(body: &'a Value, currency: &str) -> &'a Value {
    body["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .find(|b| b["currency"] == currency)
        .unwrap_or_else(|| panic!("no {currency} balance in {body}"))
}

async fn transactions_reversals_and_balances(b: Backend) {
    let app = spawn_app(b).await;
    let income = json!({"kind": "income", "amount": 100, "currency": "MDL", "category": "membership",
                        "description": "fees", "reference": "inv-1"});
    // Who may book: admins and executors; auditors and students read or nothing.
    assert_error(
        &app.post("/budget/transactions", &auditor(), income.clone())
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.post("/budget/transactions", &student("u_1"), income.clone())
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.get("/budget/transactions", &student("u_1")).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.get("/budget/balance", &student("u_1")).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.send("GET", "/budget/balance", None, None, &[]).await,
        401,
        "UNAUTHORIZED",
    );
    // Bad input is 422.
    for bad in [
        json!({"kind": "income", "amount": 0, "currency": "MDL", "category": "x"}),
        json!({"kind": "income", "amount": -5, "currency": "MDL", "category": "x"}),
        json!({"kind": "income", "amount": 1.005, "currency": "MDL", "category": "x"}),
        json!({"kind": "income", "amount": 1, "currency": "mdl", "category": "x"}),
        json!({"kind": "income", "amount": 1, "currency": "MDLX", "category": "x"}),
        json!({"kind": "gift", "amount": 1, "currency": "MDL", "category": "x"}),
        json!({"kind": "income", "amount": 1, "currency": "MDL", "category": "Not OK"}),
        json!({"kind": "income", "amount": "ten", "currency": "MDL", "category": "x"}),
        json!({"kind": "income", "amount": 1, "currency": "MDL", "category": "x", "occurred_at": "2999-01-01T00:00:00Z"}),
        json!({"kind": "income", "amount": 1, "currency": "MDL"}),
    ] {
        assert_error(
            &app.post("/budget/transactions", &admin(), bad.clone())
                .await,
            422,
            "VALIDATION_ERROR",
        );
    }

    // 201 with id, recorded_by, recorded_at; Idempotency-Key replays the same answer.
    let r = app
        .send(
            "POST",
            "/budget/transactions",
            Some(&admin()),
            Some(income.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let t1 = r.body.clone();
    assert_eq!(t1["recorded_by"], "u_admin");
    assert!(t1["recorded_at"].is_string() && t1["id"].is_string());
    assert_eq!(num(&t1["amount"]), "100.00");
    let again = app
        .send(
            "POST",
            "/budget/transactions",
            Some(&admin()),
            Some(income.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body["id"], t1["id"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");

    let r = app
        .post("/budget/transactions", &executor(), json!({"kind": "expense", "amount": 30.5, "currency": "MDL", "category": "consumables"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let expense = r.body.clone();
    assert_eq!(expense["recorded_by"], "u_exec");
    book(
        &app,
        json!({"kind": "donation", "amount": 20, "currency": "MDL", "category": "campaigns"}),
    )
    .await;
    book(
        &app,
        json!({"kind": "income", "amount": 7.25, "currency": "EUR", "category": "membership"}),
    )
    .await;
    // Occurred long ago: only counted by an as_of after it.
    book(
        &app,
        json!({"kind": "income", "amount": 5, "currency": "MDL", "category": "membership",
                      "occurred_at": "2026-01-15T10:00:00Z"}),
    )
    .await;

    let bal = app.get("/budget/balance", &auditor()).await;
    assert_eq!(bal.status, 200, "{}", bal.text);
    let mdl = balance_of(&bal.body, "MDL");
    assert_eq!(num(&mdl["balance"]), "94.50");
    assert_eq!(num(&mdl["income"]), "105.00");
    assert_eq!(num(&mdl["expenses"]), "30.50");
    assert_eq!(num(&mdl["donations"]), "20.00");
    assert_eq!(num(&mdl["debts_outstanding"]), "0.00");
    assert_eq!(num(&balance_of(&bal.body, "EUR")["balance"]), "7.25");
    assert!(bal.body["as_of"].is_string());

    // as_of counts what occurred up to then.
    let old = app
        .get("/budget/balance?as_of=2026-02-01T00:00:00Z", &admin())
        .await;
    assert_eq!(old.status, 200, "{}", old.text);
    assert_eq!(num(&balance_of(&old.body, "MDL")["balance"]), "5.00");
    assert_eq!(old.body["balances"].as_array().unwrap().len(), 1);
    assert_error(
        &app.get("/budget/balance?as_of=yesterday", &admin()).await,
        422,
        "VALIDATION_ERROR",
    );

    // Filters and pagination.
    let r = app
        .get("/budget/transactions?currency=MDL&kind=income", &auditor())
        .await;
    assert_eq!(
        r.body["transactions"].as_array().unwrap().len(),
        2,
        "{}",
        r.text
    );
    let r = app
        .get("/budget/transactions?category=consumables", &auditor())
        .await;
    assert_eq!(r.body["transactions"][0]["id"], expense["id"]);
    let r = app
        .get(
            "/budget/transactions?from=2026-01-01&to=2026-01-31",
            &auditor(),
        )
        .await;
    assert_eq!(
        r.body["transactions"].as_array().unwrap().len(),
        1,
        "{}",
        r.text
    );
    let p1 = app.get("/budget/transactions?limit=3", &auditor()).await;
    assert_eq!(p1.body["transactions"].as_array().unwrap().len(), 3);
    let cursor = p1.body["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let p2 = app
        .get(
            &format!("/budget/transactions?limit=3&cursor={cursor}"),
            &auditor(),
        )
        .await;
    assert_eq!(p2.body["transactions"].as_array().unwrap().len(), 2);
    assert!(p2.body["next_cursor"].is_null());
    assert_error(
        &app.get("/budget/transactions?kind=gift", &auditor()).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get("/budget/transactions?limit=0", &auditor()).await,
        422,
        "VALIDATION_ERROR",
    );

    // Reversal: a new entry; the original is never edited except for the link to it.
    let before_reversal = chrono::Utc::now();
    let eid = expense["id"].as_str().unwrap();
    assert_error(
        &app.post(
            &format!("/budget/transactions/{eid}/reverse"),
            &auditor(),
            json!({"reason": "typo"}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.post(
            &format!("/budget/transactions/{eid}/reverse"),
            &admin(),
            json!({"reason": ""}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    let rev = app
        .post(
            &format!("/budget/transactions/{eid}/reverse"),
            &admin(),
            json!({"reason": "typo"}),
        )
        .await;
    assert_eq!(rev.status, 201, "{}", rev.text);
    assert_eq!(rev.body["reversal_of"], expense["id"]);
    assert_eq!(num(&rev.body["amount"]), "30.50");
    assert_ne!(rev.body["id"], expense["id"]);
    assert_error(
        &app.post(
            &format!("/budget/transactions/{eid}/reverse"),
            &admin(),
            json!({"reason": "again"}),
        )
        .await,
        409,
        "CONFLICT",
    );
    let rid = rev.body["id"].as_str().unwrap();
    assert_error(
        &app.post(
            &format!("/budget/transactions/{rid}/reverse"),
            &admin(),
            json!({"reason": "x"}),
        )
        .await,
        409,
        "CONFLICT",
    );
    assert_error(
        &app.post(
            &format!("/budget/transactions/{}/reverse", uuid::Uuid::now_v7()),
            &admin(),
            json!({"reason": "x"}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    let orig = app
        .get(&format!("/budget/transactions/{eid}"), &auditor())
        .await;
    assert_eq!(orig.body["reversed_by"], rev.body["id"]);
    assert_eq!(num(&orig.body["amount"]), "30.50");
    let bal = app.get("/budget/balance", &admin()).await;
    assert_eq!(num(&balance_of(&bal.body, "MDL")["balance"]), "125.00");
    assert_eq!(num(&balance_of(&bal.body, "MDL")["expenses"]), "0.00");
    // known_at: what the books said before the reversal was recorded.
    let known = app
        .get(
            &format!(
                "/budget/balance?known_at={}",
                before_reversal.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            ),
            &admin(),
        )
        .await;
    assert_eq!(known.status, 200, "{}", known.text);
    assert_eq!(num(&balance_of(&known.body, "MDL")["balance"]), "94.50");
    assert!(known.body["known_at"].is_string());

    // The audit feed: budget-svc events.
    let events = app.audit_feed().await;
    let budget: Vec<&Value> = events
        .iter()
        .filter(|e| e["source"] == "budget-svc")
        .collect();
    let types: Vec<&str> = budget.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "budget.transaction.recorded")
            .count(),
        5,
        "{types:?}"
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "budget.transaction.reversed")
            .count(),
        1
    );
    let rec = budget.iter().find(|e| e["data"]["id"] == t1["id"]).unwrap();
    assert_eq!(num(&rec["data"]["amount"]), "100.00");
    assert_eq!(rec["data"]["reference"], "inv-1");
}

async fn debts_payments_and_visibility(b: Backend) {
    let app = spawn_app(b).await;
    let body = json!({"user_id": "u_1", "amount": 40, "currency": "MDL", "reason": "broken kettle", "source_ref": "asset:k1"});
    assert_error(
        &app.post("/budget/debts", &student("u_1"), body.clone())
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.post("/budget/debts", &auditor(), body.clone()).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.post(
            "/budget/debts",
            &admin(),
            json!({"user_id": "u_1", "amount": 0.001, "currency": "MDL", "reason": "x"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(
            "/budget/debts",
            &admin(),
            json!({"user_id": "u_1", "amount": 1, "currency": "MDL", "reason": ""}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    let r = app.post("/budget/debts", &executor(), body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let d1 = r.body.clone();
    for k in [
        "id",
        "user_id",
        "amount",
        "amount_paid",
        "outstanding",
        "currency",
        "reason",
        "source_ref",
        "status",
        "created_at",
    ] {
        assert!(d1.get(k).is_some(), "{k} missing in {d1}");
    }
    assert_eq!(d1["status"], "open");
    assert_eq!(num(&d1["outstanding"]), "40.00");
    let r = app
        .post(
            "/budget/debts",
            &admin(),
            json!({"user_id": "u_2", "amount": 15, "currency": "MDL", "reason": "lost mug"}),
        )
        .await;
    let d2 = r.body.clone();
    let id1 = d1["id"].as_str().unwrap();
    let id2 = d2["id"].as_str().unwrap();

    // A student sees only their own debts.
    let mine = app.get("/budget/debts", &student("u_1")).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    let list = mine.body["debts"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], d1["id"]);
    assert_error(
        &app.get("/budget/debts?user_id=u_2", &student("u_1")).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.get(&format!("/budget/debts/{id2}"), &student("u_1"))
            .await,
        404,
        "NOT_FOUND",
    );
    assert_eq!(
        app.get(&format!("/budget/debts/{id1}"), &student("u_1"))
            .await
            .status,
        200
    );
    for who in [admin(), executor(), auditor()] {
        let all = app.get("/budget/debts", &who).await;
        assert_eq!(
            all.body["debts"].as_array().unwrap().len(),
            2,
            "{}",
            all.text
        );
    }
    assert_eq!(
        app.get("/budget/debts?user_id=u_2", &auditor()).await.body["debts"][0]["id"],
        d2["id"]
    );
    assert_error(
        &app.get("/budget/debts?status=paid", &admin()).await,
        422,
        "VALIDATION_ERROR",
    );

    // Payments: partial, overpaying is 422, full settles, then 409.
    let pay = |amount: f64| json!({"amount": amount});
    assert_error(
        &app.post(
            &format!("/budget/debts/{id1}/payments"),
            &student("u_1"),
            pay(1.0),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    let r = app
        .post(
            &format!("/budget/debts/{id1}/payments"),
            &admin(),
            pay(15.5),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(num(&r.body["amount_paid"]), "15.50");
    assert_eq!(num(&r.body["outstanding"]), "24.50");
    assert_eq!(num(&r.body["payment"]["amount"]), "15.50");
    assert_error(
        &app.post(
            &format!("/budget/debts/{id1}/payments"),
            &admin(),
            pay(24.51),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(&format!("/budget/debts/{id1}/payments"), &admin(), pay(0.0))
            .await,
        422,
        "VALIDATION_ERROR",
    );
    let r = app
        .post(
            &format!("/budget/debts/{id1}/payments"),
            &admin(),
            pay(24.5),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], "settled");
    assert_error(
        &app.post(&format!("/budget/debts/{id1}/payments"), &admin(), pay(1.0))
            .await,
        409,
        "CONFLICT",
    );
    assert_error(
        &app.post(
            &format!("/budget/debts/{}/payments", uuid::Uuid::now_v7()),
            &admin(),
            pay(1.0),
        )
        .await,
        404,
        "NOT_FOUND",
    );

    // Forgiving: admins only, open debts only.
    let forgive = json!({"reason": "first time"});
    assert_error(
        &app.post(
            &format!("/budget/debts/{id2}/forgive"),
            &executor(),
            forgive.clone(),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.post(
            &format!("/budget/debts/{id1}/forgive"),
            &admin(),
            forgive.clone(),
        )
        .await,
        409,
        "CONFLICT",
    );
    let r = app
        .post(
            &format!("/budget/debts/{id2}/forgive"),
            &admin(),
            forgive.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "forgiven");
    assert_eq!(num(&r.body["outstanding"]), "0.00");

    let r = app
        .post(
            "/budget/debts",
            &admin(),
            json!({"user_id": "u_3", "amount": 9.99, "currency": "MDL", "reason": "cups"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let statuses = |s: &str| format!("/budget/debts?status={s}");
    assert_eq!(
        app.get(&statuses("open"), &admin()).await.body["debts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get(&statuses("settled"), &admin()).await.body["debts"][0]["id"],
        d1["id"]
    );
    assert_eq!(
        app.get(&statuses("forgiven"), &admin()).await.body["debts"][0]["id"],
        d2["id"]
    );

    // A debt payment is income (debt_payments); open debts are outstanding.
    let bal = app.get("/budget/balance", &auditor()).await;
    let mdl = balance_of(&bal.body, "MDL");
    assert_eq!(num(&mdl["balance"]), "40.00");
    assert_eq!(num(&mdl["income"]), "40.00");
    assert_eq!(num(&mdl["debts_outstanding"]), "9.99");
    let rep = app
        .get("/budget/reports?group_by=category", &auditor())
        .await;
    let row = rep.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["category"] == "debt_payments")
        .cloned();
    assert_eq!(num(&row.expect("debt_payments row")["income"]), "40.00");

    let types: Vec<String> = app
        .audit_feed()
        .await
        .iter()
        .filter(|e| e["source"] == "budget-svc")
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    for t in [
        "budget.debt.created",
        "budget.debt.payment.recorded",
        "budget.debt.forgiven",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} missing in {types:?}");
    }
}

async fn low_balance_settings_and_reports(b: Backend) {
    let app = spawn_app(b).await;
    let s = json!({"low_balance_threshold": 50, "currency": "MDL"});
    assert_error(
        &put(&app, "/budget/settings", &executor(), s.clone()).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &put(&app, "/budget/settings", &auditor(), s.clone()).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &put(
            &app,
            "/budget/settings",
            &admin(),
            json!({"low_balance_threshold": -1, "currency": "MDL"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &put(
            &app,
            "/budget/settings",
            &admin(),
            json!({"low_balance_threshold": 1, "currency": "md"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    let r = put(&app, "/budget/settings", &admin(), s).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(num(&r.body["low_balance_threshold"]), "50.00");
    let g = app.get("/budget/settings", &auditor()).await;
    assert_eq!(g.body["settings"][0]["currency"], "MDL", "{}", g.text);

    book(
        &app,
        json!({"kind": "income", "amount": 100, "currency": "MDL", "category": "membership",
                      "occurred_at": "2026-10-05T09:00:00Z"}),
    )
    .await;
    book(
        &app,
        json!({"kind": "expense", "amount": 50, "currency": "MDL", "category": "consumables",
                      "occurred_at": "2026-10-20T09:00:00Z"}),
    )
    .await;
    let low = |events: &[Value]| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["type"] == "budget.low_balance")
            .cloned()
            .collect()
    };
    assert!(
        low(&app.audit_feed().await).is_empty(),
        "50 is not below 50"
    );
    book(
        &app,
        json!({"kind": "expense", "amount": 0.01, "currency": "MDL", "category": "consumables"}),
    )
    .await;
    book(
        &app,
        json!({"kind": "expense", "amount": 10, "currency": "MDL", "category": "equipment"}),
    )
    .await;
    let alerts = low(&app.audit_feed().await);
    assert_eq!(alerts.len(), 1, "one alert per crossing: {alerts:?}");
    assert_eq!(alerts[0]["source"], "budget-svc");
    assert_eq!(alerts[0]["data"]["currency"], "MDL");
    assert_eq!(num(&alerts[0]["data"]["balance"]), "49.99");
    assert_eq!(num(&alerts[0]["data"]["threshold"]), "50.00");
    assert!(app
        .audit_feed()
        .await
        .iter()
        .any(|e| e["type"] == "budget.settings.updated"));

    // Reports.
    let r = app.get("/budget/reports?group_by=month", &auditor()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = r.body["rows"].as_array().unwrap();
    let oct = rows
        .iter()
        .find(|x| x["period"] == "2026-10")
        .expect("October");
    assert_eq!(num(&oct["income"]), "100.00");
    assert_eq!(num(&oct["expenses"]), "50.00");
    assert_eq!(num(&oct["net"]), "50.00");
    let r = app
        .get(
            "/budget/reports?group_by=month&from=2026-10-01&to=2026-10-31",
            &auditor(),
        )
        .await;
    assert_eq!(r.body["rows"].as_array().unwrap().len(), 1, "{}", r.text);
    let r = app
        .get(
            "/budget/reports?group_by=category&from=2026-11-01",
            &admin(),
        )
        .await;
    let cats: Vec<&str> = r.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["category"].as_str().unwrap())
        .collect();
    assert_eq!(cats, vec!["consumables", "equipment"], "{}", r.text);
    let csv = app
        .get("/budget/reports?group_by=category&format=csv", &admin())
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "category,currency,income,expenses,donations,net");
    assert!(
        lines.contains(&"consumables,MDL,0.00,50.01,0.00,-50.01"),
        "{}",
        csv.text
    );
    assert_error(
        &app.get("/budget/reports?group_by=week", &admin()).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get("/budget/reports", &admin()).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get("/budget/reports?group_by=month&format=xml", &admin())
            .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get(
            "/budget/reports?group_by=month&from=2026-12-01&to=2026-11-01",
            &admin(),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get("/budget/reports?group_by=month", &student("u_1"))
            .await,
        403,
        "FORBIDDEN",
    );
}

async fn consumables(app: &TestApp) -> Vec<Value> {
    app.get(
        "/budget/transactions?category=consumables&limit=200",
        &admin(),
    )
    .await
    .body["transactions"]
        .as_array()
        .unwrap()
        .clone()
}

async fn tea_batches_are_booked_once(b: Backend) {
    let app = spawn_app(b).await;
    let item = app.item("Green tea", 0).await;
    let batch = app.batch(&item, 10, None).await; // cost_total 10.5 USD
    let free = app
        .post(
            &format!("/items/{item}/batches"),
            &admin(),
            json!({"batch_code": "GIFT", "qty_received": 5, "currency": "USD", "cost_total": 0}),
        )
        .await;
    assert_eq!(free.status, 201, "{}", free.text);
    let last = app.batch(&item, 3, None).await;
    // The policy reads the log in order: once the last batch is booked, all were considered.
    let booked = eventually(DEADLINE, || async {
        let list = consumables(&app).await;
        list.iter()
            .any(|t| t["reference"] == format!("tea-batch:{last}"))
            .then_some(list)
    })
    .await;
    assert_eq!(booked.len(), 2, "the free batch is not booked: {booked:?}");
    let first = booked
        .iter()
        .find(|t| t["reference"] == format!("tea-batch:{batch}"))
        .unwrap();
    assert_eq!(first["kind"], "expense");
    assert_eq!(first["currency"], "USD");
    assert_eq!(num(&first["amount"]), "10.50");
    assert_eq!(
        first["id"],
        commands::budget::tea_batch_transaction_id(batch.parse().unwrap()).to_string()
    );

    // Replaying every event of the log through the policy books nothing twice.
    let mut replayed = 0;
    for e in &app.whole_log().await {
        assert!(!commands::budget::book_tea_batch(&app.state.bus, e)
            .await
            .unwrap());
        replayed += 1;
    }
    assert!(replayed > 3);
    assert_eq!(consumables(&app).await.len(), 2);
    let bal = app.get("/budget/balance", &admin()).await;
    assert_eq!(num(&balance_of(&bal.body, "USD")["expenses"]), "21.00");
}

/// Debit and credit cents per (currency, account), folded straight from the log.
async fn fold_log(app: &TestApp) -> BTreeMap<(String, String), (i64, i64)> {
    let mut out: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for e in app
        .whole_log()
        .await
        .iter()
        .filter(|e| e.aggregate_type == "budget_ledger")
    {
        let ev: LedgerEvent = domain::codec::decode(&e.event_type, e.payload.clone()).unwrap();
        for l in postings(&ev) {
            let t = out
                .entry((e.aggregate_id.clone(), l.account.clone()))
                .or_default();
            t.0 += projections::budget::cents(l.debit);
            t.1 += projections::budget::cents(l.credit);
        }
    }
    out
}

async fn read_model_equals_a_fresh_fold_of_the_log(b: Backend) {
    let app = spawn_app(b).await;
    let t = book(
        &app,
        json!({"kind": "income", "amount": 250, "currency": "MDL", "category": "membership"}),
    )
    .await;
    book(
        &app,
        json!({"kind": "expense", "amount": 12.34, "currency": "MDL", "category": "consumables"}),
    )
    .await;
    book(
        &app,
        json!({"kind": "donation", "amount": 3, "currency": "EUR", "category": "campaigns"}),
    )
    .await;
    let tid = t["id"].as_str().unwrap();
    assert_eq!(
        app.post(
            &format!("/budget/transactions/{tid}/reverse"),
            &admin(),
            json!({"reason": "dup"})
        )
        .await
        .status,
        201
    );
    let d = app
        .post(
            "/budget/debts",
            &admin(),
            json!({"user_id": "u_9", "amount": 20, "currency": "MDL", "reason": "r"}),
        )
        .await;
    let did = d.body["id"].as_str().unwrap();
    assert_eq!(
        app.post(
            &format!("/budget/debts/{did}/payments"),
            &admin(),
            json!({"amount": 5})
        )
        .await
        .status,
        201
    );
    let d2 = app
        .post(
            "/budget/debts",
            &admin(),
            json!({"user_id": "u_8", "amount": 2, "currency": "EUR", "reason": "r"}),
        )
        .await;
    let did2 = d2.body["id"].as_str().unwrap();
    assert_eq!(
        app.post(
            &format!("/budget/debts/{did2}/forgive"),
            &admin(),
            json!({"reason": "ok"})
        )
        .await
        .status,
        200
    );

    let fold = fold_log(&app).await;
    let rows = projections::budget::queries::account_totals(&app.state.db)
        .await
        .unwrap();
    let model: BTreeMap<(String, String), (i64, i64)> = rows
        .into_iter()
        .map(|r| ((r.currency, r.key), (r.debit, r.credit)))
        .collect();
    assert_eq!(model, fold);
    // A rebuild from the log gives the same books.
    let applied = app.state.runner.rebuild("budget").await.unwrap();
    assert!(applied > 0);
    let rows = projections::budget::queries::account_totals(&app.state.db)
        .await
        .unwrap();
    let rebuilt: BTreeMap<(String, String), (i64, i64)> = rows
        .into_iter()
        .map(|r| ((r.currency, r.key), (r.debit, r.credit)))
        .collect();
    assert_eq!(rebuilt, fold);
    assert_eq!(
        app.get("/budget/transactions", &admin()).await.body["transactions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // Debits equal credits per currency.
    let mut per_currency: BTreeMap<&str, i64> = BTreeMap::new();
    for ((c, _), (dr, cr)) in &model {
        *per_currency.entry(c.as_str()).or_default() += dr - cr;
    }
    assert_eq!(per_currency, BTreeMap::from([("EUR", 0), ("MDL", 0)]));
    assert_eq!(
        model[&("MDL".to_string(), "cash".to_string())],
        (25_000 + 500, 1_234 + 25_000)
    );
    assert_eq!(
        model[&("MDL".to_string(), "receivable:u_9".to_string())],
        (20_00, 5_00)
    );
}

/// Two command buses (as two API processes) on one PostgreSQL database spend from one currency at
/// once: optimistic concurrency makes the loser of each race decide again on the new balance, so
/// the books stay exact and the crossing below the threshold is reported exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_processes_cross_the_threshold_once() {
    use commands::{CommandBus, Context};
    use domain::budget::{TransactionSpec, TxKind};
    use rust_decimal::Decimal;

    let url = fresh_database(Backend::Postgres).await;
    let app = spawn_app_on(&url).await;
    assert_eq!(
        put(
            &app,
            "/budget/settings",
            &admin(),
            json!({"low_balance_threshold": 100, "currency": "MDL"})
        )
        .await
        .status,
        200
    );
    book(
        &app,
        json!({"kind": "income", "amount": 300, "currency": "MDL", "category": "membership"}),
    )
    .await;
    let mut buses = vec![];
    for _ in 0..2 {
        let store = eventstore::EventStore::connect(&url, 4).await.unwrap();
        buses.push(CommandBus::new(store));
    }
    let mut tasks = vec![];
    for n in 0..20 {
        let bus = buses[n % 2].clone();
        tasks.push(tokio::spawn(async move {
            let ctx = Context::new(domain::Actor::new("u_exec", vec![Role::Executor]));
            let spec = TransactionSpec {
                transaction_id: uuid::Uuid::now_v7(),
                kind: TxKind::Expense,
                amount: Decimal::new(1_000, 2),
                currency: "MDL".into(),
                category: "misc".into(),
                description: None,
                occurred_at: chrono::Utc::now(),
                reference: None,
                recorded_by: "u_exec".into(),
            };
            commands::budget::record_transaction(&bus, &ctx, spec, None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let (_, ledger) = buses[0]
        .load::<domain::budget::Ledger>("MDL")
        .await
        .unwrap();
    assert_eq!(ledger.balance, Decimal::new(10_000, 2));
    let alerts = app
        .whole_log()
        .await
        .iter()
        .filter(|e| e.event_type == "LowBalanceDetected")
        .count();
    assert_eq!(alerts, 0, "300 - 20 × 10 = 100 is not below 100");
    let spec = |id| TransactionSpec {
        transaction_id: id,
        kind: TxKind::Expense,
        amount: Decimal::new(1, 2),
        currency: "MDL".into(),
        category: "misc".into(),
        description: None,
        occurred_at: chrono::Utc::now(),
        reference: None,
        recorded_by: "u_exec".into(),
    };
    let ctx = Context::new(domain::Actor::new("u_exec", vec![Role::Executor]));
    let (a, b) = tokio::join!(
        commands::budget::record_transaction(&buses[0], &ctx, spec(uuid::Uuid::now_v7()), None),
        commands::budget::record_transaction(&buses[1], &ctx, spec(uuid::Uuid::now_v7()), None)
    );
    a.unwrap();
    b.unwrap();
    let alerts: Vec<_> = app
        .whole_log()
        .await
        .into_iter()
        .filter(|e| e.event_type == "LowBalanceDetected")
        .collect();
    assert_eq!(alerts.len(), 1, "exactly one crossing");
    assert_eq!(alerts[0].payload["balance"], "99.99");
    // Written by other processes: the API's read model catches up on its own.
    eventually(DEADLINE, || async {
        let bal = app.get("/budget/balance", &auditor()).await;
        (num(&balance_of(&bal.body, "MDL")["balance"]) == "99.98").then_some(())
    })
    .await;
}
