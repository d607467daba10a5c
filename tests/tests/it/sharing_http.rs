//! Sharing (issue #6, `sharing-svc`) over HTTP on SQLite and PostgreSQL: assets, taking and
//! returning, loan history and overdue loans, damage reports becoming debts in the budget, and a
//! replayed log booking nothing twice.

use std::time::Duration;

use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(
    assets_are_registered_listed_and_found,
    taking_returning_and_history,
    overdue_loans_are_listed,
    damage_becomes_a_debt_once,
    concurrent_takes_have_one_winner
);

const DEADLINE: Duration = Duration::from_secs(10);

fn due_in(d: chrono::Duration) -> Value {
    json!({"due_at": (chrono::Utc::now() + d).to_rfc3339()})
}

fn asset_body(name: &str, owner: &str) -> Value {
    json!({"name": name, "category": "tools", "owner_id": owner, "replacement_cost": 300,
           "currency": "MDL", "notes": "in the red box"})
}

async fn register(app: &TestApp, tok: &str, body: Value) -> String {
    let r = app.post("/assets", tok, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

async fn take(app: &TestApp, id: &str, tok: &str, body: Value) -> Res {
    app.post(&format!("/assets/{id}/take"), tok, body).await
}

async fn give_back(app: &TestApp, id: &str, tok: &str, body: Value) -> Res {
    app.post(&format!("/assets/{id}/return"), tok, body).await
}

fn ids(body: &Value, key: &str) -> Vec<String> {
    body[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {body}"))
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

async fn assets_are_registered_listed_and_found(b: Backend) {
    let app = spawn_app(b).await;
    assert_error(
        &app.send("GET", "/assets", None, None, &[]).await,
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &app.post("/assets", &auditor(), asset_body("Iron", "lab"))
            .await,
        403,
        "FORBIDDEN",
    );
    // Students share their own things; only admins and executors register for others or the lab.
    assert_error(
        &app.post("/assets", &student("u_1"), asset_body("Iron", "lab"))
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.post("/assets", &student("u_1"), asset_body("Iron", "u_2"))
            .await,
        403,
        "FORBIDDEN",
    );
    for bad in [
        json!({"name": "", "category": "tools", "owner_id": "lab", "replacement_cost": 1, "currency": "MDL"}),
        json!({"name": "x", "category": "tools", "owner_id": "lab", "replacement_cost": 0, "currency": "MDL"}),
        json!({"name": "x", "category": "tools", "owner_id": "lab", "replacement_cost": 1.001, "currency": "MDL"}),
        json!({"name": "x", "category": "tools", "owner_id": "lab", "replacement_cost": 1, "currency": "lei"}),
        json!({"name": "x", "owner_id": "lab", "replacement_cost": 1, "currency": "MDL"}),
        json!({"name": "x", "category": "tools", "owner_id": "lab", "replacement_cost": "a lot", "currency": "MDL"}),
        json!({"name": "x", "category": "tools", "owner_id": "lab", "replacement_cost": 1, "currency": "MDL", "price": 3}),
    ] {
        assert_error(
            &app.post("/assets", &admin(), bad.clone()).await,
            422,
            "VALIDATION_ERROR",
        );
    }
    let r = app
        .post("/assets", &admin(), asset_body("Soldering iron", "lab"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["owner_id"], "lab");
    assert_eq!(num(&r.body["replacement_cost"]), "300.00");
    assert_eq!(r.body["available"], true);
    assert!(r.body["holder_id"].is_null());
    let iron = r.body["id"].as_str().unwrap().to_string();
    let mine = register(
        &app,
        &student("u_1"),
        json!({"name": "Board games", "category": "games", "owner_id": "u_1", "replacement_cost": 45.5, "currency": "MDL"}),
    )
    .await;
    let lamp = register(&app, &executor(), asset_body("Desk lamp 100%", "u_7")).await;

    let all = app.get("/assets", &student("u_9")).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(
        ids(&all.body, "assets"),
        vec![iron.clone(), mine.clone(), lamp.clone()]
    );
    let r = app.get("/assets?q=SOLDER", &auditor()).await;
    assert_eq!(ids(&r.body, "assets"), vec![iron.clone()]);
    let r = app.get("/assets?q=100%25", &auditor()).await;
    assert_eq!(ids(&r.body, "assets"), vec![lamp.clone()], "% is literal");
    let r = app.get("/assets?category=games", &auditor()).await;
    assert_eq!(ids(&r.body, "assets"), vec![mine.clone()]);
    let p1 = app.get("/assets?limit=2", &auditor()).await;
    assert_eq!(ids(&p1.body, "assets").len(), 2);
    let cursor = p1.body["next_cursor"].as_str().unwrap().to_string();
    let p2 = app
        .get(&format!("/assets?limit=2&cursor={cursor}"), &auditor())
        .await;
    assert_eq!(ids(&p2.body, "assets"), vec![lamp.clone()]);
    assert_error(
        &app.get("/assets?available=maybe", &auditor()).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.get("/assets?cursor=zzz", &auditor()).await,
        422,
        "VALIDATION_ERROR",
    );

    let one = app.get(&format!("/assets/{iron}"), &student("u_9")).await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body["name"], "Soldering iron");
    assert!(one.body["holder"].is_null());
    assert_eq!(one.body["loans"], json!([]));
    assert_error(&app.get("/assets/x", &admin()).await, 404, "NOT_FOUND");
    assert_error(
        &app.get(&format!("/assets/{}", uuid::Uuid::now_v7()), &admin())
            .await,
        404,
        "NOT_FOUND",
    );

    let events = app.audit_feed().await;
    let registered: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "sharing.asset.registered")
        .collect();
    assert_eq!(registered.len(), 3);
    assert_eq!(registered[0]["source"], "sharing-svc");
    assert_eq!(registered[0]["data"]["asset_id"], iron.as_str());
    assert_eq!(num(&registered[0]["data"]["replacement_cost"]), "300.00");
}

async fn taking_returning_and_history(b: Backend) {
    let app = spawn_app(b).await;
    let iron = register(&app, &admin(), asset_body("Soldering iron", "lab")).await;
    let games = register(&app, &admin(), asset_body("Board games", "u_own")).await;
    let week = chrono::Duration::days(7);

    assert_error(
        &take(&app, &iron, &auditor(), due_in(week)).await,
        403,
        "FORBIDDEN",
    );
    for bad in [
        due_in(-chrono::Duration::hours(1)),
        due_in(chrono::Duration::days(400)),
        json!({"due_at": "tomorrow"}),
        json!({}),
    ] {
        assert_error(
            &take(&app, &iron, &student("u_1"), bad).await,
            422,
            "VALIDATION_ERROR",
        );
    }
    assert_error(
        &take(
            &app,
            &uuid::Uuid::now_v7().to_string(),
            &student("u_1"),
            due_in(week),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    let r = take(&app, &iron, &student("u_1"), due_in(week)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let loan1 = r.body.clone();
    assert_eq!(loan1["user_id"], "u_1");
    assert_eq!(loan1["asset_id"], iron.as_str());
    assert_eq!(loan1["overdue"], false);
    assert!(loan1["returned_at"].is_null());
    // One holder at a time, the holder included.
    let again = take(&app, &iron, &student("u_1"), due_in(week)).await;
    assert_error(&again, 409, "CONFLICT");
    assert!(again.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already hold"));
    assert_error(
        &take(&app, &iron, &student("u_2"), due_in(week)).await,
        409,
        "CONFLICT",
    );
    // Owners do not take their own things.
    assert_error(
        &take(&app, &games, &student("u_own"), due_in(week)).await,
        409,
        "CONFLICT",
    );

    let one = app.get(&format!("/assets/{iron}"), &student("u_9")).await;
    assert_eq!(one.body["available"], false);
    assert_eq!(one.body["holder_id"], "u_1");
    assert_eq!(one.body["holder"]["id"], loan1["id"]);
    assert_eq!(one.body["holder"]["user_id"], "u_1");
    let avail = app.get("/assets?available=true", &student("u_9")).await;
    assert_eq!(ids(&avail.body, "assets"), vec![games.clone()]);
    let taken = app.get("/assets?available=false", &student("u_9")).await;
    assert_eq!(ids(&taken.body, "assets"), vec![iron.clone()]);

    // Returning: the holder, the owner or an admin; auditors never.
    let ok = json!({"condition": "ok", "notes": "clean"});
    assert_error(
        &give_back(&app, &iron, &student("u_2"), ok.clone()).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &give_back(&app, &iron, &executor(), ok.clone()).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &give_back(&app, &iron, &auditor(), ok.clone()).await,
        403,
        "FORBIDDEN",
    );
    for bad in [json!({"condition": "broken"}), json!({"notes": "x"})] {
        assert_error(
            &give_back(&app, &iron, &student("u_1"), bad).await,
            422,
            "VALIDATION_ERROR",
        );
    }
    let r = give_back(&app, &iron, &student("u_1"), ok.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["id"], loan1["id"]);
    assert_eq!(r.body["condition"], "ok");
    assert_eq!(r.body["returned_by"], "u_1");
    assert!(r.body["returned_at"].is_string());
    assert_error(
        &give_back(&app, &iron, &student("u_1"), ok.clone()).await,
        409,
        "CONFLICT",
    );

    // An admin returns someone's loan; an owner returns their own thing.
    let r = take(&app, &iron, &student("u_2"), due_in(week)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = give_back(
        &app,
        &iron,
        &admin(),
        json!({"condition": "damaged", "notes": "bent tip"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["condition"], "damaged");
    assert_eq!(
        take(&app, &games, &student("u_1"), due_in(week))
            .await
            .status,
        201
    );
    let r = give_back(&app, &games, &student("u_own"), ok.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // History, newest first.
    let one = app.get(&format!("/assets/{iron}"), &student("u_9")).await;
    assert!(one.body["holder"].is_null());
    assert_eq!(one.body["available"], true);
    let loans = one.body["loans"].as_array().unwrap();
    assert_eq!(loans.len(), 2);
    assert_eq!(loans[0]["user_id"], "u_2");
    assert_eq!(loans[0]["condition"], "damaged");
    assert_eq!(loans[0]["notes"], "bent tip");
    assert_eq!(loans[1]["id"], loan1["id"]);
    let by_user = app.get("/loans?user_id=u_1", &student("u_9")).await;
    assert_eq!(by_user.body["loans"].as_array().unwrap().len(), 2);
    let open = app.get("/loans?active=true", &student("u_9")).await;
    assert!(open.body["loans"].as_array().unwrap().is_empty());

    let events = app.audit_feed().await;
    let taken: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "sharing.item.taken")
        .collect();
    assert_eq!(taken.len(), 3);
    assert_eq!(taken[0]["source"], "sharing-svc");
    assert_eq!(taken[0]["data"]["user_id"], "u_1");
    assert_eq!(taken[0]["data"]["asset_id"], iron.as_str());
    assert!(taken[0]["data"]["due_at"].is_string());
    let returned: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "sharing.item.returned")
        .collect();
    assert_eq!(returned.len(), 3);
    assert_eq!(returned[1]["data"]["condition"], "damaged");
    assert_eq!(returned[1]["data"]["returned_by"], "u_admin");
    assert_eq!(returned[1]["data"]["user_id"], "u_2");

    // The read model rebuilt from the log is the same.
    let before_rebuild = app.get(&format!("/assets/{iron}"), &admin()).await.body;
    let loans = app.get("/loans", &admin()).await.body;
    assert!(app.state.runner.rebuild("sharing").await.unwrap() > 0);
    assert_eq!(
        app.get(&format!("/assets/{iron}"), &admin()).await.body,
        before_rebuild
    );
    assert_eq!(app.get("/loans", &admin()).await.body, loans);
}

async fn overdue_loans_are_listed(b: Backend) {
    let app = spawn_app(b).await;
    let iron = register(&app, &admin(), asset_body("Soldering iron", "lab")).await;
    let lamp = register(&app, &admin(), asset_body("Lamp", "lab")).await;
    // Far enough ahead that the take is accepted even on a loaded machine.
    let due = chrono::Utc::now() + chrono::Duration::seconds(3);
    let r = take(
        &app,
        &iron,
        &student("u_1"),
        json!({"due_at": due.to_rfc3339()}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let late = r.body["id"].clone();
    assert_eq!(
        take(
            &app,
            &lamp,
            &student("u_2"),
            due_in(chrono::Duration::days(3))
        )
        .await
        .status,
        201
    );
    // Polls until the loan is past `due_at` and listed as overdue (bounded).
    let list = eventually(Duration::from_secs(10), || async {
        let r = app.get("/loans?overdue=true", &student("u_9")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let l = r.body["loans"].as_array()?.clone();
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], late);
    assert_eq!(list[0]["overdue"], true);
    let r = app.get("/loans?overdue=false", &student("u_9")).await;
    assert_eq!(r.body["loans"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["loans"][0]["overdue"], false);
    let one = app.get(&format!("/assets/{iron}"), &student("u_9")).await;
    assert_eq!(one.body["holder"]["overdue"], true);
    assert_error(
        &app.get("/loans?overdue=yes", &student("u_9")).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.send("GET", "/loans", None, None, &[]).await,
        401,
        "UNAUTHORIZED",
    );
    // Returned, it is no longer overdue.
    let r = give_back(&app, &iron, &student("u_1"), json!({"condition": "ok"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.get("/loans?overdue=true", &auditor()).await;
    assert!(r.body["loans"].as_array().unwrap().is_empty(), "{}", r.text);
}

async fn debts_of(app: &TestApp, user: &str) -> Vec<Value> {
    app.get(&format!("/budget/debts?user_id={user}"), &auditor())
        .await
        .body["debts"]
        .as_array()
        .unwrap()
        .clone()
}

async fn damage_becomes_a_debt_once(b: Backend) {
    let app = spawn_app(b).await;
    let iron = register(&app, &admin(), asset_body("Soldering iron", "lab")).await;
    let games = register(&app, &admin(), asset_body("Board games", "u_own")).await;
    let report = json!({"user_id": "u_1", "description": "cracked tip", "cost": 45.5});
    let path = format!("/assets/{iron}/damage");
    for who in [student("u_1"), auditor()] {
        assert_error(
            &app.post(&path, &who, report.clone()).await,
            403,
            "FORBIDDEN",
        );
    }
    for bad in [
        json!({"user_id": "u_1", "description": "x", "cost": 300.01}),
        json!({"user_id": "u_1", "description": "x", "cost": 0}),
        json!({"user_id": "", "description": "x", "cost": 1}),
        json!({"user_id": "u_1", "description": "", "cost": 1}),
        json!({"user_id": "u_1", "cost": 1}),
        json!({"user_id": "lab", "description": "x", "cost": 1}),
    ] {
        assert_error(
            &app.post(&path, &executor(), bad).await,
            422,
            "VALIDATION_ERROR",
        );
    }
    assert_error(
        &app.post(
            &format!("/assets/{}/damage", uuid::Uuid::now_v7()),
            &admin(),
            report.clone(),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    let r = app.post(&path, &executor(), report).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(num(&r.body["cost"]), "45.50");
    assert_eq!(r.body["currency"], "MDL");
    assert_eq!(r.body["reported_by"], "u_exec");
    let report_id = r.body["id"].as_str().unwrap().to_string();
    // The owner of a private asset may report too, against someone who held it.
    let r = take(
        &app,
        &games,
        &student("u_2"),
        due_in(chrono::Duration::days(1)),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            &format!("/assets/{games}/damage"),
            &student("u_own"),
            json!({"user_id": "u_2", "description": "lost pieces", "cost": 12}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // The debt lands in the budget for that user, naming its source.
    let debts = eventually(DEADLINE, || async {
        let d = debts_of(&app, "u_1").await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(debts.len(), 1);
    assert_eq!(num(&debts[0]["amount"]), "45.50");
    assert_eq!(debts[0]["currency"], "MDL");
    assert_eq!(debts[0]["status"], "open");
    assert_eq!(
        debts[0]["source_ref"],
        format!("asset:{iron}:damage:{report_id}")
    );
    assert_eq!(
        debts[0]["id"],
        commands::sharing::damage_debt_id(report_id.parse().unwrap()).to_string()
    );
    let own = app.get("/budget/debts", &student("u_1")).await;
    assert_eq!(own.body["debts"][0]["id"], debts[0]["id"]);
    eventually(DEADLINE, || async {
        (debts_of(&app, "u_2").await.len() == 1).then_some(())
    })
    .await;
    // The user who owes it is told.
    let note = app
        .notification_of(&student("u_1"), "sharing.damage.reported")
        .await;
    assert_eq!(note["title"], "Damage reported");
    assert!(
        note["body"].as_str().unwrap().contains("45.50 MDL"),
        "{note}"
    );
    assert!(
        app.get("/notifications", &student("u_9")).await.body["notifications"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Who owes how much is private, as the debt is: the charged user sees it, others do not.
    let other = app.get(&format!("/assets/{iron}"), &student("u_9")).await;
    assert_eq!(other.body["damage_reports"], json!([]));
    let one = app.get(&format!("/assets/{iron}"), &student("u_1")).await;
    assert_eq!(one.body["damage_reports"][0]["id"], report_id.as_str());
    assert_eq!(num(&one.body["damage_reports"][0]["cost"]), "45.50");

    // The policy from a reset checkpoint, through a fresh bus: nothing is booked twice.
    let bus = app.second_bus().await;
    let log = app.whole_log().await;
    for e in &log {
        assert!(!commands::sharing::book_damage(&bus, e).await.unwrap());
    }
    let replayed = log.len();
    assert!(replayed >= 4);
    assert_eq!(debts_of(&app, "u_1").await.len(), 1);
    let bal = app.get("/budget/balance", &auditor()).await;
    let mdl = bal.body["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["currency"] == "MDL")
        .cloned()
        .unwrap();
    assert_eq!(num(&mdl["debts_outstanding"]), "57.50");

    // The read model rebuilt from the log is the same.
    let path = format!("/assets/{iron}");
    let before_rebuild = app.get(&path, &admin()).await.body;
    assert!(app.state.runner.rebuild("sharing").await.unwrap() > 0);
    assert_eq!(app.get(&path, &admin()).await.body, before_rebuild);

    let events = app.audit_feed().await;
    let reported: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "sharing.damage.reported")
        .collect();
    assert_eq!(reported.len(), 2);
    assert_eq!(reported[0]["source"], "sharing-svc");
    assert_eq!(reported[0]["data"]["user_id"], "u_1");
    assert_eq!(num(&reported[0]["data"]["cost"]), "45.50");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "budget.debt.created")
            .count(),
        2
    );
}

/// Ten users take one asset at once: one holds it, nine are told it is taken.
async fn concurrent_takes_have_one_winner(b: Backend) {
    let app = std::sync::Arc::new(spawn_app(b).await);
    let iron = register(&app, &admin(), asset_body("Soldering iron", "lab")).await;
    let tasks: Vec<_> = (0..10)
        .map(|n| {
            let (app, iron) = (app.clone(), iron.clone());
            tokio::spawn(async move {
                let r = take(
                    &app,
                    &iron,
                    &student(&format!("u_{n}")),
                    due_in(chrono::Duration::days(1)),
                )
                .await;
                (r.status, r.body["user_id"].clone())
            })
        })
        .collect();
    let mut winners = vec![];
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            (201, user) => winners.push(user),
            (409, _) => conflicts += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((winners.len(), conflicts), (1, 9));
    let one = app.get(&format!("/assets/{iron}"), &admin()).await;
    assert_eq!(one.body["holder_id"], winners[0]);
    assert_eq!(one.body["loans"].as_array().unwrap().len(), 1);
}
