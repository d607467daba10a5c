//! Tea Management over HTTP, every endpoint and error path, on SQLite and PostgreSQL.

use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(
    items_contract_and_errors,
    auth_and_roles,
    lots_fifo_and_low_stock,
    concurrent_consumers_never_oversell,
    idempotency_keys,
    consumption_queries_totals_and_pagination,
    thresholds_and_announcements,
    reports_json_and_csv,
    health_metrics_and_edges,
    audit_feed,
    state_survives_restart,
);

const ITEM_KEYS: [&str; 13] = [
    "id",
    "name",
    "unit",
    "category",
    "sku",
    "active",
    "track_expiry",
    "min_stock_qty",
    "tags",
    "stock_qty",
    "soon_expiring",
    "created_at",
    "updated_at",
];

fn keys(v: &Value) -> Vec<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

async fn items_contract_and_errors(b: Backend) {
    let app = spawn_app(b).await;
    let a = admin();
    let seed = json!({"name": "Tea Bags", "unit": "bag", "category": "beverage", "sku": "TEA-001", "active": true,
                      "track_expiry": false, "min_stock_qty": 50, "tags": ["kitchen", "green"]});
    let r = app.post("/items", &a, seed.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(keys(&r.body), ITEM_KEYS);
    assert_eq!(r.body["stock_qty"], 0);
    assert_eq!(r.body["tags"], json!(["kitchen", "green"]));
    assert_eq!(r.body["soon_expiring"], json!([]));
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok());

    // Read your write: immediately visible.
    let g = app.get(&format!("/items/{id}"), &a).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, r.body);

    // Duplicates: name (any case) and sku.
    let d = app
        .post(
            "/items",
            &a,
            json!({"name": "tea bags", "unit": "bag", "category": "x"}),
        )
        .await;
    assert_error(&d, 409, "CONFLICT");
    let d = app
        .post(
            "/items",
            &a,
            json!({"name": "Other", "unit": "bag", "category": "x", "sku": "TEA-001"}),
        )
        .await;
    assert_error(&d, 409, "CONFLICT");

    // Validation.
    assert_error(
        &app.post("/items", &a, json!({"unit": "bag", "category": "x"}))
            .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(
            "/items",
            &a,
            json!({"name": "N", "unit": "bag", "category": "x", "min_stock_qty": "many"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(
            "/items",
            &a,
            json!({"name": "N", "unit": "bag", "category": "x", "min_stock_qty": -1}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(
            "/items",
            &a,
            json!({"name": "", "unit": "bag", "category": "x"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    let raw = app
        .client
        .post(app.url("/items"))
        .bearer_auth(&a)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 422);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");

    // Unknown ids are 404, malformed ids too.
    assert_error(
        &app.get("/items/9b2f1b53-3f8a-4e5a-93d7-4a7a5b1f8f0e", &a)
            .await,
        404,
        "NOT_FOUND",
    );
    assert_error(&app.get("/items/not-a-uuid", &a).await, 404, "NOT_FOUND");
    assert_error(
        &app.patch(
            "/items/9b2f1b53-3f8a-4e5a-93d7-4a7a5b1f8f0e",
            &a,
            json!({"name": "x"}),
        )
        .await,
        404,
        "NOT_FOUND",
    );

    // PATCH: partial, validated, frees the old name, rejects unknown fields.
    let p = app
        .patch(&format!("/items/{id}"), &a, json!({"name": "Tea Bags (Jasmine)", "min_stock_qty": 80, "tags": ["kitchen", "jasmine"]}))
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(keys(&p.body), ITEM_KEYS);
    assert_eq!(p.body["name"], "Tea Bags (Jasmine)");
    assert_eq!(p.body["min_stock_qty"], 80);
    assert_eq!(p.body["sku"], "TEA-001");
    assert_eq!(app.get(&format!("/items/{id}"), &a).await.body, p.body);
    assert_error(
        &app.patch(&format!("/items/{id}"), &a, json!({"min_stock_qty": -5}))
            .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.patch(&format!("/items/{id}"), &a, json!({"stock_qty": 5}))
            .await,
        422,
        "VALIDATION_ERROR",
    );
    let p = app
        .patch(&format!("/items/{id}"), &a, json!({"sku": null}))
        .await;
    assert_eq!(p.body["sku"], Value::Null);
    let again = app
        .post(
            "/items",
            &a,
            json!({"name": "Tea Bags", "unit": "bag", "category": "beverage", "sku": "TEA-001"}),
        )
        .await;
    assert_eq!(
        again.status, 201,
        "old name and sku are free after the rename: {}",
        again.text
    );

    // List with filters.
    let sugar = app
        .post(
            "/items",
            &a,
            json!({"name": "Sugar", "unit": "g", "category": "sweetener", "active": false}),
        )
        .await;
    assert_eq!(sugar.status, 201);
    let all = app.get("/items", &a).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 3);
    assert_eq!(all.body["next_cursor"], Value::Null);
    let jas = app.get("/items?q=JASMINE", &a).await;
    assert_eq!(jas.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(jas.body["items"][0]["id"], id.as_str());
    assert_eq!(
        app.get("/items?category=sweetener", &a).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get("/items?active=false", &a).await.body["items"][0]["name"],
        "Sugar"
    );
    // Every item has stock 0; low when 0 < min_stock_qty (Tea Bags 80 and the new Tea Bags 0 → only one).
    let low = app.get("/items?low_stock=true", &a).await;
    assert_eq!(
        low.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        low.text
    );
    assert_eq!(
        app.get("/items?q=%25", &a).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "LIKE wildcards are literal"
    );
    let p1 = app.get("/items?limit=2", &a).await;
    assert_eq!(p1.body["items"].as_array().unwrap().len(), 2);
    let cursor = p1.body["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let p2 = app
        .get(&format!("/items?limit=2&cursor={cursor}"), &a)
        .await;
    assert_eq!(p2.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(p2.body["next_cursor"], Value::Null);
    assert_error(
        &app.get("/items?limit=0", &a).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get("/items?limit=201", &a).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get("/items?cursor=garbage", &a).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get("/items?low_stock=maybe", &a).await,
        422,
        "VALIDATION_ERROR",
    );
}

async fn auth_and_roles(b: Backend) {
    let app = spawn_app(b).await;
    let body = json!({"name": "Cups", "unit": "cup", "category": "kitchen"});
    assert_error(
        &app.send("POST", "/items", None, Some(body.clone()), &[])
            .await,
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &app.send("GET", "/items", Some("not.a.jwt"), None, &[])
            .await,
        401,
        "UNAUTHORIZED",
    );
    let wrong_key = api::auth::issue(
        "other-secret",
        "u_1",
        &[domain::Role::Admin],
        chrono::Duration::hours(1),
    )
    .unwrap();
    assert_error(&app.get("/items", &wrong_key).await, 401, "UNAUTHORIZED");
    let expired = api::auth::issue(
        SECRET,
        "u_1",
        &[domain::Role::Admin],
        chrono::Duration::hours(-1),
    )
    .unwrap();
    assert_error(&app.get("/items", &expired).await, 401, "UNAUTHORIZED");
    let basic = app
        .send(
            "GET",
            "/items",
            None,
            None,
            &[("authorization", "Basic dTpw")],
        )
        .await;
    assert_error(&basic, 401, "UNAUTHORIZED");

    let s = student("u_42");
    assert_error(
        &app.post("/items", &s, body.clone()).await,
        403,
        "FORBIDDEN",
    );
    let teacher = token("u_t", &[domain::Role::Teacher]);
    assert_error(
        &app.post("/items", &teacher, body.clone()).await,
        403,
        "FORBIDDEN",
    );
    let exec = token("u_exec", &[domain::Role::Executor]);
    let r = app.post("/items", &exec, body).await;
    assert_eq!(r.status, 201);
    let id = r.body["id"].as_str().unwrap();
    assert_error(
        &app.patch(&format!("/items/{id}"), &s, json!({"name": "Mugs"}))
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.post(
            &format!("/items/{id}/batches"),
            &s,
            json!({"batch_code": "x", "qty_received": 5, "currency": "USD", "cost_total": 1}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.post("/thresholds", &s, json!({"item_id": id, "min_qty": 3}))
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.post("/announcements", &s, json!({"title": "t", "body": "b"}))
            .await,
        403,
        "FORBIDDEN",
    );
    app.batch(id, 10, None).await;
    // Students read and consume for themselves only.
    assert_eq!(app.get("/items", &s).await.status, 200);
    assert_error(
        &app.post(
            &format!("/items/{id}/consume"),
            &s,
            json!({"qty": 1, "user_id": "u_7"}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    let own = app
        .post(
            &format!("/items/{id}/consume"),
            &s,
            json!({"qty": 1, "user_id": "u_42"}),
        )
        .await;
    assert_eq!(own.status, 201, "{}", own.text);
    let implicit = app
        .post(&format!("/items/{id}/consume"), &s, json!({"qty": 1}))
        .await;
    assert_eq!(implicit.body["user_id"], "u_42");
    let for_other = app
        .post(
            &format!("/items/{id}/consume"),
            &exec,
            json!({"qty": 1, "user_id": "u_7", "source": "admin"}),
        )
        .await;
    assert_eq!(for_other.status, 201);
    assert_eq!(for_other.body["user_id"], "u_7");
}

async fn lots_fifo_and_low_stock(b: Backend) {
    let app = spawn_app(b).await;
    let a = admin();
    let id = app.item("Tea Bags", 50).await;
    let soon = (chrono::Utc::now() + chrono::Duration::days(10))
        .date_naive()
        .to_string();
    let r = app
        .post(
            &format!("/items/{id}/batches"),
            &a,
            json!({"batch_code": "PO-9876", "supplier_ref": "SUP-1", "expiry_date": "2099-12-31", "qty_received": 30,
                   "currency": "USD", "cost_total": 49.90}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        keys(&r.body),
        [
            "id",
            "item_id",
            "batch_code",
            "supplier_ref",
            "expiry_date",
            "qty_received",
            "qty_remaining",
            "currency",
            "cost_total",
            "received_at"
        ]
    );
    assert!(
        r.text.contains("\"cost_total\":49.90"),
        "money keeps two decimals as a number: {}",
        r.text
    );
    assert_eq!(r.body["qty_remaining"], 30);
    let b1 = r.body["id"].as_str().unwrap().to_string();
    let b2 = app.batch(&id, 40, Some(&soon)).await;
    assert_error(
        &app.post(
            &format!("/items/{id}/batches"),
            &a,
            json!({"batch_code": "x", "qty_received": 0, "currency": "USD", "cost_total": 1}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(
            &format!("/items/{id}/batches"),
            &a,
            json!({"batch_code": "x", "qty_received": 1, "currency": "USD", "cost_total": 1.234}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(
            "/items/9b2f1b53-3f8a-4e5a-93d7-4a7a5b1f8f0e/batches",
            &a,
            json!({"batch_code": "x", "qty_received": 1, "currency": "USD", "cost_total": 1}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    let item = app.get(&format!("/items/{id}"), &a).await;
    assert_eq!(item.body["stock_qty"], 70);
    assert_eq!(
        item.body["soon_expiring"],
        json!([{"batch_id": b2, "expiry_date": soon, "qty_remaining": 40}])
    );
    let lots = app.get(&format!("/items/{id}/batches"), &a).await;
    assert_eq!(lots.body["batches"].as_array().unwrap().len(), 2);
    assert_eq!(lots.body["batches"][0]["cost_total"].as_f64(), Some(49.9));

    // FIFO by receipt (the item does not track expiry): 35 = 30 from b1 + 5 from b2.
    let c = app.post(&format!("/items/{id}/consume"), &a, json!({"qty": 35, "user_id": "u_42", "source": "self_service", "notes": "afternoon tea", "consumed_at": "2025-09-11T12:00:00Z"})).await;
    assert_eq!(c.status, 201, "{}", c.text);
    for k in [
        "id",
        "item_id",
        "batch_id",
        "qty",
        "user_id",
        "source",
        "notes",
        "consumed_at",
        "created_at",
    ] {
        assert!(
            c.body.get(k).is_some(),
            "consume response has {k}: {}",
            c.text
        );
    }
    assert_eq!(c.body["batch_id"], b1.as_str());
    assert_eq!(
        c.body["allocations"],
        json!([{"batch_id": b1, "qty": 30}, {"batch_id": b2, "qty": 5}])
    );
    assert_eq!(c.body["consumed_at"], "2025-09-11T12:00:00Z");
    // A named lot, an unknown lot, too much.
    let named = app
        .post(
            &format!("/items/{id}/consume"),
            &a,
            json!({"qty": 2, "batch_id": b2, "user_id": "u_1"}),
        )
        .await;
    assert_eq!(named.body["batch_id"], b2.as_str());
    assert_error(
        &app.post(
            &format!("/items/{id}/consume"),
            &a,
            json!({"qty": 1, "batch_id": "9b2f1b53-3f8a-4e5a-93d7-4a7a5b1f8f0e", "user_id": "u_1"}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.post(
            &format!("/items/{id}/consume"),
            &a,
            json!({"qty": 1, "batch_id": b1, "user_id": "u_1"}),
        )
        .await,
        409,
        "CONFLICT",
    );
    assert_error(
        &app.post(
            &format!("/items/{id}/consume"),
            &a,
            json!({"qty": 34, "user_id": "u_1"}),
        )
        .await,
        409,
        "CONFLICT",
    );
    assert_error(
        &app.post(
            &format!("/items/{id}/consume"),
            &a,
            json!({"qty": 0, "user_id": "u_1"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(
            &format!("/items/{id}/consume"),
            &a,
            json!({"qty": 1.5, "user_id": "u_1"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(
            &format!("/items/{id}/consume"),
            &a,
            json!({"qty": 1, "source": "vending"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(
            "/items/9b2f1b53-3f8a-4e5a-93d7-4a7a5b1f8f0e/consume",
            &a,
            json!({"qty": 1}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_eq!(
        app.get(&format!("/items/{id}"), &a).await.body["stock_qty"],
        33
    );
    assert_eq!(
        app.get("/items?low_stock=true", &a).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Exactly one low_stock alert (crossing 70 → 35), one restocked per lot, seed field names.
    let feed = app.get("/admin/events?limit=200", &a).await;
    let events = feed.body["events"].as_array().unwrap();
    let low: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "inventory.low_stock")
        .collect();
    assert_eq!(low.len(), 1);
    assert_eq!(
        low[0]["data"],
        json!({"item_id": id, "current_qty": 35, "threshold": 50})
    );
    assert_eq!(low[0]["source"], "tea-svc");
    let restocked: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "inventory.restocked")
        .collect();
    assert_eq!(restocked.len(), 2);
    assert_eq!(
        restocked[0]["data"],
        json!({"item_id": id, "batch_id": b1, "qty": 30, "currency": "USD", "cost_total": 49.90, "expiry_date": "2099-12-31"})
    );
}

async fn concurrent_consumers_never_oversell(b: Backend) {
    let app = spawn_app(b).await;
    let id = app.item("Kettle descaler", 0).await;
    app.batch(&id, 100, None).await;
    // 40 clients each take 3: exactly 33 can succeed (99 units), 7 must get 409.
    let mut tasks = vec![];
    for n in 0..40 {
        let client = app.client.clone();
        let url = app.url(&format!("/items/{id}/consume"));
        let t = student(&format!("u_{n}"));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(t)
                .json(&json!({"qty": 3}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    let mut conflict = 0;
    for t in tasks {
        match t.await.unwrap() {
            201 => ok += 1,
            409 => conflict += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, conflict), (33, 7));
    let item = app.get(&format!("/items/{id}"), &admin()).await;
    assert_eq!(item.body["stock_qty"], 1);
    let totals = app
        .get(&format!("/consumption?item_id={id}"), &admin())
        .await;
    assert_eq!(totals.body["totals"]["qty"], 99);
}

async fn idempotency_keys(b: Backend) {
    let app = spawn_app(b).await;
    let a = admin();
    let id = app.item("Markers", 0).await;
    app.batch(&id, 10, None).await;
    let path = format!("/items/{id}/consume");
    let body = json!({"qty": 2, "user_id": "u_1"});
    let first = app
        .send(
            "POST",
            &path,
            Some(&a),
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(first.status, 201);
    let second = app
        .send(
            "POST",
            &path,
            Some(&a),
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(second.status, 201);
    assert_eq!(second.body, first.body, "the original response is returned");
    assert_eq!(second.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(
        app.get(&format!("/items/{id}"), &a).await.body["stock_qty"],
        8,
        "nothing appended twice"
    );
    // Same key, other request: refused.
    let other = app
        .send(
            "POST",
            &path,
            Some(&a),
            Some(json!({"qty": 3, "user_id": "u_1"})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_error(&other, 422, "VALIDATION_ERROR");
    // Same key, other user: independent.
    let s = student("u_9");
    let mine = app
        .send(
            "POST",
            &path,
            Some(&s),
            Some(json!({"qty": 1})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(mine.status, 201);
    assert_ne!(mine.body["id"], first.body["id"]);
    // Concurrent duplicates: one effect.
    let mut tasks = vec![];
    for _ in 0..8 {
        let client = app.client.clone();
        let url = app.url("/items");
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(a)
                .header("idempotency-key", "create-once")
                .json(&json!({"name": "Paper", "unit": "sheet", "category": "office"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 201, "{body}");
        ids.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "every duplicate got the same item");
    assert_eq!(
        app.get("/items?q=paper", &a).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let bad = app
        .send(
            "POST",
            "/items",
            Some(&a),
            Some(json!({"name": "X", "unit": "u", "category": "c"})),
            &[("idempotency-key", &"k".repeat(300))],
        )
        .await;
    assert_error(&bad, 422, "VALIDATION_ERROR");
}

async fn consumption_queries_totals_and_pagination(b: Backend) {
    let app = spawn_app(b).await;
    let a = admin();
    let tea = app.item("Tea", 0).await;
    let sugar = app.item("Sugar", 0).await;
    app.batch(&tea, 100, None).await;
    app.batch(&sugar, 100, None).await;
    let rows = [
        (&tea, "u_1", 2, "2025-09-01T08:00:00Z"),
        (&tea, "u_2", 3, "2025-09-01T09:00:00Z"),
        (&sugar, "u_1", 5, "2025-09-02T10:00:00Z"),
        (&tea, "u_1", 1, "2025-09-10T10:00:00Z"),
        (&sugar, "u_2", 4, "2025-10-05T10:00:00Z"),
    ];
    for (item, user, qty, at) in rows {
        let r = app
            .post(
                &format!("/items/{item}/consume"),
                &a,
                json!({"qty": qty, "user_id": user, "consumed_at": at}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let all = app.get("/consumption", &a).await;
    assert_eq!(all.body["events"].as_array().unwrap().len(), 5);
    assert_eq!(all.body["totals"]["qty"], 15);
    assert_eq!(all.body["totals"]["by_user"], json!({"u_1": 8, "u_2": 7}));
    assert_eq!(all.body["totals"]["by_item"][&tea], 6);
    let e = &all.body["events"][0];
    for k in ["id", "item_id", "qty", "user_id", "source", "consumed_at"] {
        assert!(e.get(k).is_some(), "event has {k}");
    }
    let u1 = app
        .get(&format!("/consumption?user_id=u_1&item_id={tea}"), &a)
        .await;
    assert_eq!(u1.body["totals"]["qty"], 3);
    let sept = app
        .get(
            "/consumption?from=2025-09-01T00:00:00Z&to=2025-10-01T00:00:00Z&aggregate=day",
            &a,
        )
        .await;
    assert_eq!(sept.body["totals"]["qty"], 11);
    assert_eq!(
        sept.body["buckets"],
        json!([{"period": "2025-09-01", "qty": 5}, {"period": "2025-09-02", "qty": 5}, {"period": "2025-09-10", "qty": 1}])
    );
    // Plain dates work too: `to` includes its whole day.
    let by_dates = app
        .get("/consumption?from=2025-09-01&to=2025-09-02", &a)
        .await;
    assert_eq!(by_dates.status, 200, "{}", by_dates.text);
    assert_eq!(by_dates.body["totals"]["qty"], 10);
    let one_day = app
        .get(
            "/reports/consumption?group_by=day&from=2025-09-10&to=2025-09-10",
            &a,
        )
        .await;
    assert_eq!(
        one_day.body["rows"],
        json!([{"key": "2025-09-10", "qty": 1}])
    );
    let weeks = app.get("/consumption?aggregate=week", &a).await;
    assert_eq!(
        weeks.body["buckets"],
        json!([{"period": "2025-09-01", "qty": 10}, {"period": "2025-09-08", "qty": 1}, {"period": "2025-09-29", "qty": 4}])
    );
    let months = app.get("/consumption?aggregate=month", &a).await;
    assert_eq!(
        months.body["buckets"],
        json!([{"period": "2025-09", "qty": 11}, {"period": "2025-10", "qty": 4}])
    );
    // Pagination keeps totals over the whole filter.
    let p1 = app.get("/consumption?limit=2", &a).await;
    assert_eq!(p1.body["events"].as_array().unwrap().len(), 2);
    assert_eq!(p1.body["totals"]["qty"], 15);
    let mut seen: Vec<Value> = p1.body["events"].as_array().unwrap().clone();
    let mut cursor = p1.body["next_cursor"].as_str().map(String::from);
    while let Some(c) = cursor {
        let p = app
            .get(&format!("/consumption?limit=2&cursor={c}"), &a)
            .await;
        seen.extend(p.body["events"].as_array().unwrap().iter().cloned());
        cursor = p.body["next_cursor"].as_str().map(String::from);
    }
    assert_eq!(seen.len(), 5);
    assert_error(
        &app.get("/consumption?aggregate=year", &a).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get("/consumption?from=yesterday", &a).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get(
            "/consumption?from=2025-10-01T00:00:00Z&to=2025-09-01T00:00:00Z",
            &a,
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get("/consumption?item_id=nope", &a).await,
        422,
        "VALIDATION_ERROR",
    );
}

async fn thresholds_and_announcements(b: Backend) {
    let app = spawn_app(b).await;
    let a = admin();
    let id = app.item("Tea Bags", 50).await;
    app.batch(&id, 100, None).await;
    let body = json!({"item_id": id, "min_qty": 95, "notify_config": {"channels": ["tea-room"], "notify_roles": ["inventory_admin"]}});
    let t = app.post("/thresholds", &a, body).await;
    assert_eq!(t.status, 201, "{}", t.text);
    assert_eq!(
        keys(&t.body),
        [
            "id",
            "item_id",
            "min_qty",
            "notify_config",
            "created_at",
            "updated_at"
        ]
    );
    let tid = t.body["id"].clone();
    let t2 = app
        .post("/thresholds", &a, json!({"item_id": id, "min_qty": 97}))
        .await;
    assert_eq!(t2.body["id"], tid, "upsert keeps the rule's id");
    assert_eq!(t2.body["min_qty"], 97);
    assert_eq!(t2.body["created_at"], t.body["created_at"]);
    let list = app.get("/thresholds", &a).await;
    assert_eq!(list.body["thresholds"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["thresholds"][0]["min_qty"], 97);
    assert_eq!(list.body["next_cursor"], Value::Null);
    assert_error(
        &app.post(
            "/thresholds",
            &a,
            json!({"item_id": "9b2f1b53-3f8a-4e5a-93d7-4a7a5b1f8f0e", "min_qty": 1}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.post("/thresholds", &a, json!({"item_id": id, "min_qty": -1}))
            .await,
        422,
        "VALIDATION_ERROR",
    );
    // The rule's min_qty (97), not min_stock_qty (50), decides: 100 → 96 crosses it.
    app.post(
        &format!("/items/{id}/consume"),
        &a,
        json!({"qty": 4, "user_id": "u_1"}),
    )
    .await;
    let low = app.get("/admin/events?limit=200", &a).await;
    let lows: Vec<&Value> = low.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "inventory.low_stock")
        .collect();
    assert_eq!(lows.len(), 1);
    assert_eq!(lows[0]["data"]["threshold"], 97);

    let an = app
        .post("/announcements", &a, json!({"title": "New tea arrived!", "body": "Try jasmine.", "effective_from": "2025-09-12T09:00:00Z", "item_ids": [id]}))
        .await;
    assert_eq!(an.status, 201, "{}", an.text);
    assert_eq!(
        keys(&an.body),
        [
            "id",
            "title",
            "body",
            "published_by",
            "effective_from",
            "created_at",
            "item_ids"
        ]
    );
    assert_eq!(an.body["published_by"], "u_admin");
    assert_eq!(an.body["effective_from"], "2025-09-12T09:00:00Z");
    let list = app.get("/announcements", &a).await;
    assert_eq!(list.body["announcements"][0], an.body);
    let bad = app.post("/announcements", &a, json!({"title": "x", "body": "y", "item_ids": ["9b2f1b53-3f8a-4e5a-93d7-4a7a5b1f8f0e"]})).await;
    assert_error(&bad, 422, "VALIDATION_ERROR");
    assert_error(
        &app.post("/announcements", &a, json!({"title": "", "body": "y"}))
            .await,
        422,
        "VALIDATION_ERROR",
    );
}

async fn reports_json_and_csv(b: Backend) {
    let app = spawn_app(b).await;
    let a = admin();
    let tea = app.item("Tea, \"green\"", 0).await;
    let cups = app.item("Cups", 0).await;
    let soon = (chrono::Utc::now() + chrono::Duration::days(3))
        .date_naive()
        .to_string();
    let lot = app.batch(&tea, 20, Some(&soon)).await;
    app.batch(&cups, 5, None).await;
    app.post(
        &format!("/items/{tea}/consume"),
        &a,
        json!({"qty": 2, "user_id": "u_1", "consumed_at": "2025-09-11T12:00:00Z"}),
    )
    .await;
    app.post(
        &format!("/items/{cups}/consume"),
        &a,
        json!({"qty": 1, "user_id": "u_2", "consumed_at": "2025-09-12T12:00:00Z"}),
    )
    .await;
    let stock = app.get("/reports/stock", &a).await;
    assert_eq!(stock.status, 200);
    assert!(stock.body["generated_at"].is_string());
    let rows = stock.body["items"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let tea_row = rows.iter().find(|r| r["item_id"] == tea.as_str()).unwrap();
    assert_eq!(tea_row["on_hand"], 18);
    assert_eq!(tea_row["unit"], "bag");
    assert_eq!(
        tea_row["soon_expiring"],
        json!([{"batch_id": lot, "expiry_date": soon, "qty": 18}])
    );
    let csv = app.get("/reports/stock?format=csv", &a).await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(csv
        .text
        .starts_with("item_id,name,unit,on_hand,soon_expiring_qty,next_expiry_date\n"));
    assert!(
        csv.text
            .contains(&format!("{tea},\"Tea, \"\"green\"\"\",bag,18,18,{soon}")),
        "{}",
        csv.text
    );
    assert_error(
        &app.get("/reports/stock?format=xml", &a).await,
        422,
        "VALIDATION_ERROR",
    );

    let by_item = app.get("/reports/consumption?group_by=item", &a).await;
    assert_eq!(by_item.body["group_by"], "item");
    assert_eq!(
        by_item.body["rows"],
        json!([{"key": "Cups", "qty": 1}, {"key": "Tea, \"green\"", "qty": 2}])
    );
    let by_user = app
        .get(
            "/reports/consumption?group_by=user&from=2025-09-12T00:00:00Z",
            &a,
        )
        .await;
    assert_eq!(by_user.body["rows"], json!([{"key": "u_2", "qty": 1}]));
    let by_day = app
        .get(
            "/reports/consumption?group_by=day&to=2025-09-12T00:00:00Z",
            &a,
        )
        .await;
    assert_eq!(
        by_day.body["rows"],
        json!([{"key": "2025-09-11", "qty": 2}])
    );
    let csv = app
        .get("/reports/consumption?group_by=user&format=csv", &a)
        .await;
    assert_eq!(csv.text, "key,qty\nu_1,2\nu_2,1\n");
    assert_error(
        &app.get("/reports/consumption?group_by=week", &a).await,
        422,
        "VALIDATION_ERROR",
    );
}

async fn health_metrics_and_edges(b: Backend) {
    let app = spawn_app(b).await;
    let h = app.send("GET", "/health", None, None, &[]).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.body["status"], "ok");
    assert_eq!(h.body["checks"]["db"], "ok");
    assert_eq!(h.body["checks"]["events"], "ok");
    assert!(h.body["version"].is_string() && h.body["time"].is_string());
    app.get("/items", &admin()).await;
    let m = app.send("GET", "/admin/metrics", None, None, &[]).await;
    assert_eq!(m.status, 200);
    assert!(m.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(
        m.text
            .contains("app_requests_total{route=\"/items\",method=\"GET\"} "),
        "the seed's label order: {}",
        m.text
    );
    for metric in [
        "app_request_duration_seconds_bucket",
        "events_appended_total",
        "projection_lag_events{projection=\"tea\"}",
        "events_head_position",
    ] {
        assert!(m.text.contains(metric), "metrics expose {metric}");
    }
    assert_error(&app.get("/no/such/route", &admin()).await, 404, "NOT_FOUND");
    assert_error(
        &app.send("DELETE", "/items", Some(&admin()), None, &[])
            .await,
        405,
        "VALIDATION_ERROR",
    );
    // Oversized bodies: 413 in the envelope, nothing appended.
    let big = "x".repeat(300_000);
    let r = app
        .post(
            "/items",
            &admin(),
            json!({"name": big, "unit": "u", "category": "c"}),
        )
        .await;
    assert_error(&r, 413, "VALIDATION_ERROR");
    assert_eq!(app.get("/items", &admin()).await.body["items"], json!([]));
}

async fn audit_feed(b: Backend) {
    let app = spawn_app(b).await;
    let a = admin();
    let id = app.item("Tea", 0).await;
    app.batch(&id, 10, None).await;
    app.post(
        &format!("/items/{id}/consume"),
        &a,
        json!({"qty": 1, "user_id": "u_1"}),
    )
    .await;
    assert_error(
        &app.get("/admin/events", &student("u_1")).await,
        403,
        "FORBIDDEN",
    );
    let auditor = token("u_audit", &[domain::Role::Auditor]);
    let all = app.get("/admin/events?limit=200", &auditor).await;
    assert_eq!(all.status, 200);
    let events = all.body["events"].as_array().unwrap().clone();
    for e in &events {
        for k in [
            "id",
            "type",
            "source",
            "time",
            "specversion",
            "data",
            "subject",
            "position",
        ] {
            assert!(e.get(k).is_some(), "envelope has {k}: {e}");
        }
        assert_eq!(e["specversion"], "1.0");
    }
    let tea: Vec<&Value> = events.iter().filter(|e| e["source"] == "tea-svc").collect();
    let types: Vec<&str> = tea.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "inventory.item.created",
            "inventory.restocked",
            "inventory.consumed"
        ]
    );
    assert!(tea.iter().all(|e| e["subject"] == id.as_str()));
    // First calls of u_admin, u_1 and u_audit created their minimal profiles.
    let users: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "user.profile.synced")
        .map(|e| e["data"]["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["u_admin", "u_1", "u_audit"]);
    assert!(events
        .iter()
        .filter(|e| e["type"] == "user.profile.synced")
        .all(|e| e["source"] == "user-svc"));
    // Paging by position visits every event once, in the same order.
    let mut seen = vec![];
    let mut after = 0;
    loop {
        let p = app
            .get(&format!("/admin/events?after={after}&limit=2"), &auditor)
            .await;
        let page = p.body["events"].as_array().unwrap().clone();
        if page.is_empty() {
            assert_eq!(
                p.body["next_after"], after,
                "an empty page keeps the position"
            );
            break;
        }
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|e| e["id"].clone()));
        after = p.body["next_after"].as_i64().unwrap();
    }
    assert_eq!(
        seen,
        events.iter().map(|e| e["id"].clone()).collect::<Vec<_>>()
    );
    assert_error(
        &app.get("/admin/events?limit=1000", &auditor).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get("/admin/events?after=-1", &auditor).await,
        422,
        "VALIDATION_ERROR",
    );
}

async fn state_survives_restart(b: Backend) {
    let app = spawn_app(b).await;
    let id = app.item("Tea", 5).await;
    app.batch(&id, 10, None).await;
    app.post(
        &format!("/items/{id}/consume"),
        &admin(),
        json!({"qty": 4, "user_id": "u_1"}),
    )
    .await;
    let before = app.get(&format!("/items/{id}"), &admin()).await.body;
    let url = app.database_url.clone();
    drop(app);
    let again = spawn_app_on(&url).await;
    assert_eq!(
        again.get(&format!("/items/{id}"), &admin()).await.body,
        before
    );
    let c = again
        .post(
            &format!("/items/{id}/consume"),
            &admin(),
            json!({"qty": 6, "user_id": "u_1"}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    assert_error(
        &again
            .post(
                &format!("/items/{id}/consume"),
                &admin(),
                json!({"qty": 1, "user_id": "u_1"}),
            )
            .await,
        409,
        "CONFLICT",
    );
    assert_eq!(
        again.get(&format!("/items/{id}"), &admin()).await.body["stock_qty"],
        0
    );
}
