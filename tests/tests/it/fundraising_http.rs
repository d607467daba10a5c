//! Fund Raising (issue #6, `fundraising-svc`) over HTTP on SQLite and PostgreSQL: the campaign
//! life cycle and every error path, the budget check on start, anonymity, completion emitted
//! once, donations and purchases landing in the budget, and a replayed log booking nothing twice.

use std::time::Duration;

use domain::Role;
use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(
    campaign_life_cycle_and_errors,
    donations_anonymity_completion_and_budget,
    donations_after_ends_at_are_refused,
    replayed_campaign_events_book_nothing_twice,
    concurrent_donations_complete_once
);

const DEADLINE: Duration = Duration::from_secs(10);

fn in_days(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339()
}

fn campaign_body(goal: f64) -> Value {
    json!({"title": "New kettle", "description": "the old one leaks", "goal_amount": goal,
           "currency": "MDL", "ends_at": in_days(30), "purpose": "equipment"})
}

async fn create(app: &TestApp, goal: f64) -> String {
    let r = app.post("/campaigns", &admin(), campaign_body(goal)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

async fn start(app: &TestApp, id: &str) -> Value {
    let r = app
        .post(&format!("/campaigns/{id}/start"), &admin(), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// `POST /campaigns/{id}/{action}` with an empty object.
async fn act(app: &TestApp, id: &str, action: &str, tok: &str) -> Res {
    app.post(&format!("/campaigns/{id}/{action}"), tok, json!({}))
        .await
}

async fn donate(app: &TestApp, id: &str, tok: &str, body: Value) -> Res {
    app.post(&format!("/campaigns/{id}/donations"), tok, body)
        .await
}

fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == t).collect()
}

async fn campaign_life_cycle_and_errors(b: Backend) {
    let app = spawn_app(b).await;
    assert_error(
        &app.send("GET", "/campaigns", None, None, &[]).await,
        401,
        "UNAUTHORIZED",
    );
    for who in [student("u_1"), executor(), auditor()] {
        assert_error(
            &app.post("/campaigns", &who, campaign_body(100.0)).await,
            403,
            "FORBIDDEN",
        );
    }
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    for bad in [
        json!({"title": "x", "goal_amount": 0, "currency": "MDL", "ends_at": in_days(1)}),
        json!({"title": "x", "goal_amount": -3, "currency": "MDL", "ends_at": in_days(1)}),
        json!({"title": "x", "goal_amount": 1.005, "currency": "MDL", "ends_at": in_days(1)}),
        json!({"title": "x", "goal_amount": 10, "currency": "mdl", "ends_at": in_days(1)}),
        json!({"title": "x", "goal_amount": 10, "currency": "MDL", "ends_at": past}),
        json!({"title": "x", "goal_amount": 10, "currency": "MDL", "ends_at": "soon"}),
        json!({"title": "", "goal_amount": 10, "currency": "MDL", "ends_at": in_days(1)}),
        json!({"goal_amount": 10, "currency": "MDL", "ends_at": in_days(1)}),
        json!({"title": "x", "goal_amount": 10, "currency": "MDL", "ends_at": in_days(1), "colour": "red"}),
    ] {
        assert_error(
            &app.post("/campaigns", &admin(), bad.clone()).await,
            422,
            "VALIDATION_ERROR",
        );
    }
    let r = app.post("/campaigns", &admin(), campaign_body(100.0)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let c = r.body.clone();
    assert_eq!(c["status"], "draft");
    assert_eq!(num(&c["goal_amount"]), "100.00");
    assert_eq!(num(&c["raised"]), "0.00");
    assert_eq!(c["donors_count"], 0);
    assert_eq!(num(&c["progress"]), "0");
    assert!(c["budget_check"].is_null());
    assert_eq!(c["created_by"], "u_admin");
    let id = c["id"].as_str().unwrap().to_string();

    // Drafts exist only for admins, executors and auditors.
    let list = app.get("/campaigns", &student("u_1")).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert!(list.body["campaigns"].as_array().unwrap().is_empty());
    assert_error(
        &app.get(&format!("/campaigns/{id}"), &student("u_1")).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &donate(
            &app,
            &id,
            &student("u_1"),
            json!({"amount": 1, "currency": "MDL"}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    for who in [admin(), executor(), auditor()] {
        let r = app.get(&format!("/campaigns/{id}"), &who).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["status"], "draft");
    }
    assert_error(
        &app.get("/campaigns/nope", &admin()).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.get(&format!("/campaigns/{}", uuid::Uuid::now_v7()), &admin())
            .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.post(
            &format!("/campaigns/{}/start", uuid::Uuid::now_v7()),
            &admin(),
            json!({}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    // Not active yet: no donations, no purchases, no closing.
    assert_error(
        &donate(&app, &id, &admin(), json!({"amount": 1, "currency": "MDL"})).await,
        409,
        "CONFLICT",
    );
    assert_error(
        &app.post(
            &format!("/campaigns/{id}/purchases"),
            &admin(),
            json!({"amount": 1, "description": "x"}),
        )
        .await,
        409,
        "CONFLICT",
    );
    assert_error(&act(&app, &id, "close", &admin()).await, 409, "CONFLICT");

    // Start: admins only; it checks the budget of the campaign's currency.
    let income =
        json!({"kind": "income", "amount": 30, "currency": "MDL", "category": "membership"});
    assert_eq!(
        app.post("/budget/transactions", &admin(), income)
            .await
            .status,
        201
    );
    for who in [student("u_1"), executor(), auditor()] {
        assert_error(&act(&app, &id, "start", &who).await, 403, "FORBIDDEN");
    }
    let started = start(&app, &id).await;
    assert_eq!(started["status"], "active");
    assert!(started["started_at"].is_string());
    assert_eq!(num(&started["budget_check"]["available"]), "30.00");
    assert_eq!(num(&started["budget_check"]["shortfall"]), "70.00");
    assert_error(&act(&app, &id, "start", &admin()).await, 409, "CONFLICT");
    // Everyone hears of it.
    let note = app
        .notification_of(&student("u_1"), "fundraising.campaign.started")
        .await;
    assert_eq!(note["title"], "New campaign: New kettle");
    let got = app.get(&format!("/campaigns/{id}"), &student("u_1")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(num(&got.body["budget_check"]["shortfall"]), "70.00");

    // A second campaign in EUR, where the budget has nothing: the whole goal is short.
    let r = app
        .post(
            "/campaigns",
            &admin(),
            json!({"title": "Books", "goal_amount": 12.5, "currency": "EUR", "ends_at": in_days(5)}),
        )
        .await;
    let eur = r.body["id"].as_str().unwrap().to_string();
    let s = start(&app, &eur).await;
    assert_eq!(num(&s["budget_check"]["available"]), "0.00");
    assert_eq!(num(&s["budget_check"]["shortfall"]), "12.50");

    // Filters and pagination.
    let draft = create(&app, 5.0).await;
    let active = app.get("/campaigns?status=active", &auditor()).await;
    assert_eq!(active.body["campaigns"].as_array().unwrap().len(), 2);
    let drafts = app.get("/campaigns?status=draft", &admin()).await;
    assert_eq!(drafts.body["campaigns"][0]["id"], draft.as_str());
    assert!(app
        .get("/campaigns?status=draft", &student("u_1"))
        .await
        .body["campaigns"]
        .as_array()
        .unwrap()
        .is_empty());
    let p1 = app.get("/campaigns?limit=2", &admin()).await;
    assert_eq!(p1.body["campaigns"].as_array().unwrap().len(), 2);
    let cursor = p1.body["next_cursor"]
        .as_str()
        .expect("next page")
        .to_string();
    let p2 = app
        .get(&format!("/campaigns?limit=2&cursor={cursor}"), &admin())
        .await;
    assert_eq!(p2.body["campaigns"].as_array().unwrap().len(), 1);
    assert!(p2.body["next_cursor"].is_null());
    assert_error(
        &app.get("/campaigns?status=open", &admin()).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get("/campaigns?limit=500", &admin()).await,
        422,
        "VALIDATION_ERROR",
    );

    // Cancel: admins only; drafts and active campaigns.
    for who in [student("u_1"), executor(), auditor()] {
        assert_error(&act(&app, &draft, "cancel", &who).await, 403, "FORBIDDEN");
    }
    let r = app
        .post(
            &format!("/campaigns/{draft}/cancel"),
            &admin(),
            json!({"reason": "duplicate"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["cancel_reason"], "duplicate");
    assert!(r.body["cancelled_at"].is_string());
    assert_error(
        &act(&app, &draft, "cancel", &admin()).await,
        409,
        "CONFLICT",
    );
    assert_error(&act(&app, &draft, "start", &admin()).await, 409, "CONFLICT");
    assert_error(
        &app.post(
            &format!("/campaigns/{draft}/cancel"),
            &admin(),
            json!({"reason": 5}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    // A cancelled campaign is visible to everyone and takes nothing.
    assert_error(
        &donate(
            &app,
            &draft,
            &student("u_1"),
            json!({"amount": 1, "currency": "MDL"}),
        )
        .await,
        409,
        "CONFLICT",
    );
    // An active campaign can be cancelled without a body.
    let r = app
        .send(
            "POST",
            &format!("/campaigns/{eur}/cancel"),
            Some(&admin()),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let events = app.audit_feed().await;
    let ours: Vec<&Value> = events
        .iter()
        .filter(|e| e["source"] == "fundraising-svc")
        .collect();
    assert_eq!(ours.len(), 3 + 2 + 2, "3 created, 2 started, 2 cancelled");
    let started = of_type(&events, "fundraising.campaign.started");
    assert_eq!(started.len(), 2);
    let first = started
        .iter()
        .find(|e| e["subject"] == id.as_str())
        .unwrap();
    assert_eq!(first["data"]["campaign_id"], id.as_str());
    assert_eq!(num(&first["data"]["budget_check"]["shortfall"]), "70.00");
    assert_eq!(of_type(&events, "fundraising.campaign.cancelled").len(), 2);
}

async fn budget_balance(app: &TestApp, currency: &str) -> Option<Value> {
    let r = app.get("/budget/balance", &auditor()).await;
    r.body["balances"]
        .as_array()?
        .iter()
        .find(|b| b["currency"] == currency)
        .cloned()
}

async fn campaign_transactions(app: &TestApp) -> Vec<Value> {
    app.get(
        "/budget/transactions?category=campaigns&limit=200",
        &auditor(),
    )
    .await
    .body["transactions"]
        .as_array()
        .unwrap()
        .clone()
}

async fn donations_anonymity_completion_and_budget(b: Backend) {
    let app = spawn_app(b).await;
    let id = create(&app, 100.0).await;
    start(&app, &id).await;
    // Auditors change nothing; the currency must be the campaign's; amounts positive.
    assert_error(
        &donate(
            &app,
            &id,
            &auditor(),
            json!({"amount": 5, "currency": "MDL"}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    for bad in [
        json!({"amount": 5, "currency": "EUR"}),
        json!({"amount": 0, "currency": "MDL"}),
        json!({"amount": -1, "currency": "MDL"}),
        json!({"amount": 0.001, "currency": "MDL"}),
        json!({"amount": 5}),
        json!({"amount": 5, "currency": "MDL", "anonymous": "yes"}),
    ] {
        assert_error(
            &donate(&app, &id, &student("u_1"), bad.clone()).await,
            422,
            "VALIDATION_ERROR",
        );
    }
    assert_error(
        &donate(
            &app,
            &uuid::Uuid::now_v7().to_string(),
            &student("u_1"),
            json!({"amount": 1, "currency": "MDL"}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    let r = app
        .send(
            "POST",
            &format!("/campaigns/{id}/donations"),
            Some(&student("u_1")),
            Some(json!({"amount": 40, "currency": "MDL", "message": "go!"})),
            &[("idempotency-key", "d-1")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let d1 = r.body.clone();
    assert_eq!(d1["donor_id"], "u_1");
    assert_eq!(num(&d1["amount"]), "40.00");
    assert_eq!(num(&d1["campaign"]["raised"]), "40.00");
    let again = app
        .send(
            "POST",
            &format!("/campaigns/{id}/donations"),
            Some(&student("u_1")),
            Some(json!({"amount": 40, "currency": "MDL", "message": "go!"})),
            &[("idempotency-key", "d-1")],
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body["id"], d1["id"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let r = donate(
        &app,
        &id,
        &token("u_2", &[Role::Teacher]),
        json!({"amount": 10, "currency": "MDL", "anonymous": true}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let anon_id = r.body["id"].clone();

    // Anonymous donors: hidden from everyone but admins, auditors (and the donor).
    let donors = |body: &Value| -> Vec<Value> {
        body["donations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["donor_id"].clone())
            .collect()
    };
    let path = format!("/campaigns/{id}/donations");
    for (who, sees) in [
        (admin(), true),
        (auditor(), true),
        (token("u_2", &[Role::Teacher]), true),
        (student("u_1"), false),
        (executor(), false),
    ] {
        let r = app.get(&path, &who).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let expected = if sees { json!("u_2") } else { Value::Null };
        assert_eq!(donors(&r.body), vec![json!("u_1"), expected], "{}", r.text);
        assert_eq!(r.body["donations"][1]["anonymous"], true);
    }
    let p = app.get(&format!("{path}?limit=1"), &admin()).await;
    assert_eq!(p.body["donations"].as_array().unwrap().len(), 1);
    assert!(p.body["next_cursor"].is_string());

    let c = app.get(&format!("/campaigns/{id}"), &student("u_1")).await;
    assert_eq!(num(&c.body["raised"]), "50.00");
    assert_eq!(c.body["donors_count"], 2);
    assert_eq!(num(&c.body["progress"]), "0.5");

    // Reaching the goal completes the campaign, once; then it takes no more donations.
    let r = donate(
        &app,
        &id,
        &student("u_1"),
        json!({"amount": 60.5, "currency": "MDL"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["campaign"]["status"], "completed");
    assert_eq!(num(&r.body["campaign"]["progress"]), "1");
    assert_error(
        &donate(
            &app,
            &id,
            &student("u_3"),
            json!({"amount": 1, "currency": "MDL"}),
        )
        .await,
        409,
        "CONFLICT",
    );
    let c = app.get(&format!("/campaigns/{id}"), &admin()).await;
    assert_eq!(c.body["status"], "completed");
    assert_eq!(c.body["donors_count"], 2);
    assert_eq!(num(&c.body["raised"]), "110.50");

    // Purchases: admins and executors, on active, completed or closed campaigns.
    let buy = json!({"amount": 95.5, "description": "kettle", "receipt_ref": "R-17"});
    let purchases = format!("/campaigns/{id}/purchases");
    for who in [student("u_1"), auditor()] {
        assert_error(
            &app.post(&purchases, &who, buy.clone()).await,
            403,
            "FORBIDDEN",
        );
    }
    for bad in [
        json!({"amount": 0, "description": "kettle"}),
        json!({"amount": 5, "description": ""}),
        json!({"amount": 5}),
    ] {
        assert_error(
            &app.post(&purchases, &executor(), bad).await,
            422,
            "VALIDATION_ERROR",
        );
    }
    let r = app.post(&purchases, &executor(), buy).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(num(&r.body["amount"]), "95.50");
    assert_eq!(r.body["currency"], "MDL");
    assert_eq!(r.body["recorded_by"], "u_exec");
    let purchase_id = r.body["id"].as_str().unwrap().to_string();

    // Close: admins only; then a purchase may still be recorded.
    assert_error(
        &act(&app, &id, "close", &executor()).await,
        403,
        "FORBIDDEN",
    );
    let r = app
        .post(&format!("/campaigns/{id}/close"), &admin(), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "closed");
    assert_error(&act(&app, &id, "close", &admin()).await, 409, "CONFLICT");
    assert_error(&act(&app, &id, "cancel", &admin()).await, 409, "CONFLICT");
    let c = app.get(&format!("/campaigns/{id}"), &auditor()).await;
    assert_eq!(num(&c.body["spent"]), "95.50");
    assert_eq!(c.body["purchases"][0]["id"], purchase_id.as_str());
    assert_eq!(c.body["purchases"][0]["receipt_ref"], "R-17");

    // The budget: donations as donations, the purchase as an expense, each naming its source.
    let bal = eventually(DEADLINE, || async {
        let b = budget_balance(&app, "MDL").await?;
        (num(&b["donations"]) == "110.50" && num(&b["expenses"]) == "95.50").then_some(b)
    })
    .await;
    assert_eq!(num(&bal["balance"]), "15.00");
    let txs = campaign_transactions(&app).await;
    assert_eq!(txs.len(), 4, "{txs:?}");
    let d1_id = d1["id"].as_str().unwrap();
    let booked = txs
        .iter()
        .find(|t| t["reference"] == format!("campaign:{id}:donation:{d1_id}"))
        .expect("the first donation is booked");
    assert_eq!(booked["kind"], "donation");
    assert_eq!(booked["recorded_by"], "u_1");
    assert_eq!(
        booked["id"],
        commands::fundraising::donation_transaction_id(d1_id.parse().unwrap()).to_string()
    );
    let anon = txs
        .iter()
        .find(|t| t["reference"] == format!("campaign:{id}:donation:{}", anon_id.as_str().unwrap()))
        .unwrap();
    assert_eq!(anon["recorded_by"], "anonymous", "the books do not name it");
    let spent = txs.iter().find(|t| t["kind"] == "expense").unwrap();
    assert_eq!(
        spent["reference"],
        format!("campaign:{id}:purchase:{purchase_id}")
    );
    assert_eq!(spent["description"], "kettle");

    // The audit feed.
    let events = app.audit_feed().await;
    let received = of_type(&events, "fundraising.donation.received");
    assert_eq!(received.len(), 3);
    let anon_event = received
        .iter()
        .find(|e| e["data"]["donation_id"] == anon_id)
        .unwrap();
    assert!(anon_event["data"]["donor_id"].is_null());
    assert_eq!(anon_event["data"]["anonymous"], true);
    assert_eq!(anon_event["source"], "fundraising-svc");
    let named = received
        .iter()
        .find(|e| e["data"]["donation_id"] == d1["id"])
        .unwrap();
    assert_eq!(named["data"]["donor_id"], "u_1");
    assert_eq!(num(&named["data"]["amount"]), "40.00");
    let completed = of_type(&events, "fundraising.campaign.completed");
    assert_eq!(completed.len(), 1, "completed exactly once");
    assert_eq!(num(&completed[0]["data"]["raised"]), "110.50");
    assert_eq!(num(&completed[0]["data"]["goal_amount"]), "100.00");
    assert_eq!(of_type(&events, "fundraising.purchase.recorded").len(), 1);
    assert_eq!(of_type(&events, "fundraising.campaign.closed").len(), 1);
    let donation_bookings = of_type(&events, "budget.transaction.recorded")
        .into_iter()
        .filter(|e| e["data"]["kind"] == "donation")
        .count();
    assert_eq!(donation_bookings, 3);
}

async fn donations_after_ends_at_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    // Far enough ahead that creating and starting it succeed even on a loaded machine.
    let ends = chrono::Utc::now() + chrono::Duration::seconds(5);
    let r = app
        .post(
            "/campaigns",
            &admin(),
            json!({"title": "Short", "goal_amount": 10, "currency": "MDL", "ends_at": ends.to_rfc3339()}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    start(&app, &id).await;
    // Waiting for the wall clock to pass `ends_at` (not synchronising with the server).
    let left = (ends - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(50)).await;
    let r = donate(
        &app,
        &id,
        &student("u_1"),
        json!({"amount": 1, "currency": "MDL"}),
    )
    .await;
    assert_error(&r, 409, "CONFLICT");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ended"));
    assert_error(&act(&app, &id, "start", &admin()).await, 409, "CONFLICT");
    // It can still be closed.
    assert_eq!(act(&app, &id, "close", &admin()).await.status, 200);
}

async fn replayed_campaign_events_book_nothing_twice(b: Backend) {
    let app = spawn_app(b).await;
    let id = create(&app, 1_000.0).await;
    start(&app, &id).await;
    for (who, amount) in [("u_1", 10.0), ("u_2", 20.25)] {
        let r = donate(
            &app,
            &id,
            &student(who),
            json!({"amount": amount, "currency": "MDL"}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = app
        .post(
            &format!("/campaigns/{id}/purchases"),
            &admin(),
            json!({"amount": 7, "description": "cups"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    eventually(DEADLINE, || async {
        (campaign_transactions(&app).await.len() == 3).then_some(())
    })
    .await;
    let before = budget_balance(&app, "MDL").await.unwrap();
    assert_eq!(num(&before["donations"]), "30.25");

    // The policy from a reset checkpoint: every event of the log again, through a fresh bus (a
    // restarted process, no cache): nothing is booked twice.
    let bus = app.second_bus().await;
    let log = app.whole_log().await;
    for e in &log {
        assert!(!commands::fundraising::book_campaign_event(&bus, e)
            .await
            .unwrap());
    }
    let replayed = log.len();
    assert!(replayed > 5);

    // Then the running policy itself from a reset checkpoint: its next save finds the checkpoint
    // moved, so it starts again from the beginning of the log.
    let policy = commands::fundraising::FUNDRAISING_POLICY;
    let mut tx = app.state.db.begin().await.unwrap();
    let n = eventstore::tx_exec!(
        &mut tx,
        "UPDATE projection_checkpoints SET tx_id = 0, position = 0 WHERE name = $1",
        policy
    )
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(n, 1, "the policy keeps a checkpoint");
    // A donation made now is booked, and only it.
    let r = donate(
        &app,
        &id,
        &student("u_3"),
        json!({"amount": 1, "currency": "MDL"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let target = app
        .whole_log()
        .await
        .iter()
        .filter(|e| e.event_type == "DonationReceived")
        .map(|e| e.position)
        .max()
        .unwrap();
    eventually(DEADLINE, || async {
        let cp = eventstore::checkpoints::load_checkpoint_db(&app.state.db, policy)
            .await
            .unwrap();
        (cp.position >= target).then_some(())
    })
    .await;
    eventually(DEADLINE, || async {
        (campaign_transactions(&app).await.len() == 4).then_some(())
    })
    .await;
    let after = budget_balance(&app, "MDL").await.unwrap();
    assert_eq!(num(&after["donations"]), "31.25");
    assert_eq!(num(&after["expenses"]), "7.00");

    // The read model rebuilt from the log is the same.
    let path = format!("/campaigns/{id}");
    let before_rebuild = app.get(&path, &admin()).await.body;
    let donations = app.get(&format!("{path}/donations"), &admin()).await.body;
    assert!(app.state.runner.rebuild("fundraising").await.unwrap() > 0);
    assert_eq!(app.get(&path, &admin()).await.body, before_rebuild);
    assert_eq!(
        app.get(&format!("{path}/donations"), &admin()).await.body,
        donations
    );
    assert_eq!(before_rebuild["donors_count"], 3);
    assert_eq!(num(&before_rebuild["spent"]), "7.00");
}

/// Twenty donors at once on a goal of ten donations: exactly ten are taken, the campaign completes
/// once, and the books hold exactly what was taken.
async fn concurrent_donations_complete_once(b: Backend) {
    let app = spawn_app(b).await;
    let id = create(&app, 100.0).await;
    start(&app, &id).await;
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let (app, id) = (app.clone(), id.clone());
            tokio::spawn(async move {
                donate(
                    &app,
                    &id,
                    &student(&format!("u_{n}")),
                    json!({"amount": 10, "currency": "MDL"}),
                )
                .await
                .status
            })
        })
        .collect();
    let mut statuses = vec![];
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [vec![201; 10], vec![409; 10]].concat());
    let c = app.get(&format!("/campaigns/{id}"), &admin()).await;
    assert_eq!(c.body["status"], "completed");
    assert_eq!(num(&c.body["raised"]), "100.00");
    assert_eq!(c.body["donors_count"], 10);
    let events = app.audit_feed().await;
    assert_eq!(of_type(&events, "fundraising.campaign.completed").len(), 1);
    eventually(DEADLINE, || async {
        let b = budget_balance(&app, "MDL").await?;
        (num(&b["donations"]) == "100.00").then_some(())
    })
    .await;
}
