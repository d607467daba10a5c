//! Communication: retention settings (`GET/PUT /retention`), the `mods` post policy, and the
//! retention job (expiry, redaction of the stored events, the hash chain still verifying), over
//! HTTP on SQLite and PostgreSQL.

use std::time::Duration;

use api::Settings;
use chrono::Utc;
use commands::Context;
use domain::chat::{MessageType, NewChat, Operation, Submission};
use domain::{Actor, Role};
use eventstore::Db;
use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(
    retention_settings_are_read_and_changed_by_managers,
    concurrent_partial_retention_changes_all_land,
    mods_policy_lets_only_owners_moderators_and_admins_post,
    worker_rejects_members_when_the_policy_changed_after_submission,
    messages_past_retention_are_not_served,
    retention_run_expires_redacts_and_keeps_the_chain_verifiable,
    rows_of_the_old_hash_scheme_still_verify_and_redact
);

async fn group(app: &TestApp, owner: &str, members: &[&str]) -> String {
    let r = app
        .post(
            "/chats",
            owner,
            json!({"type": "group", "name": "kitchen", "member_ids": members}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

async fn add(app: &TestApp, chat: &str, by: &str, user: &str, role: &str) {
    let r = app
        .post(
            &format!("/chats/{chat}/members"),
            by,
            json!({"user_id": user, "role": role}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

async fn put(app: &TestApp, token: &str, body: Value) -> Res {
    app.send("PUT", "/retention", Some(token), Some(body), &[])
        .await
}

async fn settled(app: &TestApp, token: &str, op: &str) -> Value {
    app.settled_operation(token, op).await
}

/// Posts a message and waits until it is posted; returns its id.
async fn post(app: &TestApp, chat: &str, token: &str, text: &str) -> String {
    app.posted_message(token, chat, text).await
}

async fn texts(app: &TestApp, chat: &str, token: &str) -> Vec<String> {
    let r = app.get(&format!("/chats/{chat}/messages"), token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `PUT /retention` sends only the given fields, merged in the `Chat` aggregate: three managers
/// changing three different fields at the same time all see their change kept (an edge that
/// copied the whole settings object it had read would lose two of them).
async fn concurrent_partial_retention_changes_all_land(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u3) = (student("u_1"), student("u_3"));
    let id = group(&app, &u1, &["u_2"]).await;
    add(&app, &id, &u1, "u_3", "moderator").await;
    let admin = token("u_admin", &[Role::Admin]);
    for round in 0..6i64 {
        let days = 30 + round;
        let policy = if round % 2 == 0 { "mods" } else { "any" };
        let note = format!("round {round}");
        let (a, p, e) = tokio::join!(
            put(&app, &u1, json!({"chat_id": id, "retention_days": days})),
            put(&app, &u3, json!({"chat_id": id, "post_policy": policy})),
            put(
                &app,
                &admin,
                json!({"chat_id": id, "extra": {"note": note}})
            ),
        );
        for r in [&a, &p, &e] {
            assert_eq!(r.status, 200, "{}", r.text);
        }
        let r = app.get(&format!("/retention?chat_id={id}"), &u1).await;
        assert_eq!(
            r.body,
            json!({"chat_id": id, "retention_days": days, "post_policy": policy, "extra": {"note": note}}),
            "round {round}"
        );
    }
}

async fn retention_settings_are_read_and_changed_by_managers(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, u3, out) = (
        student("u_1"),
        student("u_2"),
        student("u_3"),
        student("u_9"),
    );
    let id = group(&app, &u1, &["u_2"]).await;
    add(&app, &id, &u1, "u_3", "moderator").await;
    let get = |t: String, q: String| {
        let app = &app;
        async move { app.get(&format!("/retention{q}"), &t).await }
    };

    let r = get(u2.clone(), format!("?chat_id={id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"chat_id": id, "retention_days": 90, "post_policy": "any", "extra": {}})
    );
    // A private chat does not exist for others; nor does an unknown one.
    assert_error(
        &get(out.clone(), format!("?chat_id={id}")).await,
        404,
        "NOT_FOUND",
    );
    let unknown = uuid::Uuid::now_v7();
    assert_error(
        &get(u1.clone(), format!("?chat_id={unknown}")).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &get(u1.clone(), "?chat_id=nope".into()).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &get(u1.clone(), String::new()).await,
        422,
        "VALIDATION_ERROR",
    );

    let body = json!({"chat_id": id, "retention_days": 60, "post_policy": "mods", "extra": {"note": "kitchen"}});
    assert_error(&put(&app, &u2, body.clone()).await, 403, "FORBIDDEN");
    assert_error(&put(&app, &out, body.clone()).await, 404, "NOT_FOUND");
    assert_error(
        &put(&app, &u1, json!({"chat_id": unknown, "retention_days": 60})).await,
        404,
        "NOT_FOUND",
    );
    for bad in [
        json!({"chat_id": id, "retention_days": 0}),
        json!({"chat_id": id, "retention_days": 3651}),
        json!({"chat_id": id, "retention_days": "ten"}),
        json!({"chat_id": id, "post_policy": "admins"}),
        json!({"chat_id": id, "post_policy": 1}),
        json!({"chat_id": id, "extra": [1, 2]}),
        json!({"chat_id": id, "extra": {"big": "x".repeat(5000)}}),
        json!({"chat_id": id, "retention": 5}),
        json!({"retention_days": 5}),
    ] {
        assert_error(&put(&app, &u1, bad.clone()).await, 422, "VALIDATION_ERROR");
    }
    // Nothing changed so far.
    assert_eq!(
        get(u1.clone(), format!("?chat_id={id}")).await.body["retention_days"],
        90
    );

    // A moderator changes them.
    let r = put(&app, &u3, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["chat_id"], id.as_str());
    assert_eq!(r.body["retention_days"], 60);
    assert_eq!(r.body["post_policy"], "mods");
    assert_eq!(r.body["extra"], json!({"note": "kitchen"}));
    let updated_at = r.body["updated_at"].as_str().unwrap().to_string();
    assert!(
        updated_at.parse::<chrono::DateTime<Utc>>().is_ok(),
        "{updated_at}"
    );
    let r = get(u2.clone(), format!("?chat_id={id}")).await;
    assert_eq!(
        r.body,
        json!({"chat_id": id, "retention_days": 60, "post_policy": "mods", "extra": {"note": "kitchen"}})
    );
    let chat = app.get(&format!("/chats/{id}"), &u2).await;
    assert_eq!(
        chat.body["settings"],
        json!({"retention_days": 60, "post_policy": "mods", "extra": {"note": "kitchen"}})
    );
    // Omitted fields are kept; the owner and an admin (not a member) may change them too.
    let r = put(&app, &u1, json!({"chat_id": id, "retention_days": 7})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (
            r.body["retention_days"].clone(),
            r.body["post_policy"].clone()
        ),
        (json!(7), json!("mods"))
    );
    let r = put(&app, &admin(), json!({"chat_id": id, "post_policy": "any"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["post_policy"], "any");
    assert_eq!(r.body["extra"], json!({"note": "kitchen"}));

    // A public channel: visible to a non-member, who still may not change it.
    let ch = app
        .post(
            "/chats",
            &u1,
            json!({"type": "channel", "name": "news", "slug": "news"}),
        )
        .await;
    let ch = ch.body["id"].as_str().unwrap().to_string();
    assert_eq!(get(out.clone(), format!("?chat_id={ch}")).await.status, 200);
    assert_error(
        &put(&app, &out, json!({"chat_id": ch, "retention_days": 5})).await,
        403,
        "FORBIDDEN",
    );

    // The change is an event on the bus.
    let feed = app.get("/admin/events?limit=200", &admin()).await;
    let changes: Vec<&Value> = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "chat.retention.updated")
        .collect();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[0]["data"]["retention_days"], 60);
    assert_eq!(changes[0]["data"]["updated_by"], "u_3");
}

async fn mods_policy_lets_only_owners_moderators_and_admins_post(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, u3) = (student("u_1"), student("u_2"), student("u_3"));
    let boss = token("u_boss", &[Role::Admin]);
    let id = group(&app, &u1, &["u_2", "u_boss"]).await;
    add(&app, &id, &u1, "u_3", "moderator").await;
    // Under "any", members post.
    post(&app, &id, &u2, "before").await;
    let r = put(&app, &u1, json!({"chat_id": id, "post_policy": "mods"})).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = app
        .post(
            &format!("/chats/{id}/messages"),
            &u2,
            json!({"text": "me too"}),
        )
        .await;
    assert_error(&r, 403, "FORBIDDEN");
    post(&app, &id, &u3, "from the moderator").await;
    post(&app, &id, &u1, "from the owner").await;
    post(&app, &id, &boss, "from an admin").await;
    let mut got = texts(&app, &id, &u2).await;
    got.sort();
    assert_eq!(
        got,
        [
            "before",
            "from an admin",
            "from the moderator",
            "from the owner"
        ]
    );
    // Back to "any": members post again.
    put(&app, &u3, json!({"chat_id": id, "post_policy": "any"})).await;
    post(&app, &id, &u2, "again").await;
}

/// The worker re-checks the policy: a message accepted under "any" is rejected if the chat
/// switched to "mods" before it was posted. Driven without workers, so the order is certain.
async fn worker_rejects_members_when_the_policy_changed_after_submission(b: Backend) {
    let url = fresh_database(b).await;
    let app = spawn_with(Settings {
        run_workers: false,
        ..Settings::for_tests(&url)
    })
    .await;
    let bus = &app.state.bus;
    let owner = Context::new(Actor::new("u_1", vec![Role::Student]));
    let chat_id = uuid::Uuid::now_v7();
    let chat = NewChat {
        chat_id,
        kind: domain::chat::ChatType::Group,
        name: Some("kitchen".into()),
        slug: None,
        is_private: true,
        member_ids: vec!["u_2".into()],
    };
    commands::chat::create_chat(bus, &owner, chat, None)
        .await
        .unwrap();
    let sub = |author: &str| Submission {
        operation_id: uuid::Uuid::now_v7(),
        message_id: uuid::Uuid::now_v7(),
        chat_id,
        author_id: author.into(),
        kind: MessageType::Normal,
        text: "hi".into(),
        attachments: vec![],
        metadata: json!({}),
        filter_matches: vec![],
    };
    let early = sub("u_2");
    let ctx2 = Context::new(Actor::new("u_2", vec![Role::Student]));
    commands::message::submit(bus, &ctx2, early.clone(), None)
        .await
        .unwrap();
    let submitted_at = Utc::now() - chrono::Duration::seconds(1);
    let mods = domain::chat::ChatSettings {
        post_policy: "mods".into(),
        ..Default::default()
    };
    commands::retention::change_settings(bus, &owner, chat_id, mods)
        .await
        .unwrap();
    commands::message::post_submitted_at(bus, &early, Some(submitted_at))
        .await
        .unwrap();
    let (_, op) = bus
        .load::<Operation>(&early.operation_id.to_string())
        .await
        .unwrap();
    assert_eq!(op.status, "rejected");
    let (_, msg) = bus
        .load::<domain::chat::Message>(&early.message_id.to_string())
        .await
        .unwrap();
    assert!(msg.submission.is_none(), "nothing was posted");
    // Reading it again later (a worker restart), when the author could post, posts nothing.
    commands::retention::change_settings(bus, &owner, chat_id, Default::default())
        .await
        .unwrap();
    commands::message::post_submitted_at(bus, &early, Some(Utc::now()))
        .await
        .unwrap();
    let (_, msg) = bus
        .load::<domain::chat::Message>(&early.message_id.to_string())
        .await
        .unwrap();
    assert!(
        msg.submission.is_none(),
        "a rejected submission stays unposted"
    );
    let mods = domain::chat::ChatSettings {
        post_policy: "mods".into(),
        ..Default::default()
    };
    commands::retention::change_settings(bus, &owner, chat_id, mods)
        .await
        .unwrap();

    // The owner's message goes through; so does one submitted after the change (the API checked
    // the policy then, admins included).
    let by_owner = sub("u_1");
    commands::message::submit(bus, &owner, by_owner.clone(), None)
        .await
        .unwrap();
    commands::message::post_submitted_at(bus, &by_owner, Some(submitted_at))
        .await
        .unwrap();
    let later = sub("u_2");
    commands::message::submit(bus, &ctx2, later.clone(), None)
        .await
        .unwrap();
    commands::message::post_submitted_at(bus, &later, Some(Utc::now()))
        .await
        .unwrap();
    for s in [&by_owner, &later] {
        let (_, op) = bus
            .load::<Operation>(&s.operation_id.to_string())
            .await
            .unwrap();
        assert_eq!(op.status, "completed");
    }
}

/// Runs a statement on the test database directly (test-only: ageing read-model rows).
async fn exec(db: &Db, sql: &str, at: chrono::DateTime<Utc>, id: &str) {
    let changed = match db {
        Db::Pg(p) => sqlx::query(sql)
            .bind(at)
            .bind(id)
            .execute(p)
            .await
            .unwrap()
            .rows_affected(),
        Db::Sqlite { write, .. } => sqlx::query(sql)
            .bind(at)
            .bind(id)
            .execute(write)
            .await
            .unwrap()
            .rows_affected(),
    };
    assert_eq!(changed, 1);
}

/// Before any job ran, a message older than the chat's retention is already not served.
async fn messages_past_retention_are_not_served(b: Backend) {
    let app = spawn_app(b).await;
    let u1 = student("u_1");
    let id = group(&app, &u1, &["u_2"]).await;
    let old = post(&app, &id, &u1, "old news").await;
    post(&app, &id, &u1, "fresh").await;
    let r = put(&app, &u1, json!({"chat_id": id, "retention_days": 1})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let two_days_ago = Utc::now() - chrono::Duration::days(2);
    exec(
        &app.state.db,
        "UPDATE chat_messages SET created_at = $1 WHERE id = $2",
        two_days_ago,
        &old,
    )
    .await;
    assert_eq!(texts(&app, &id, &u1).await, ["fresh"]);
    assert!(projections::chat::queries::message(&app.state.db, &old)
        .await
        .unwrap()
        .is_none());
    // A longer retention brings it back (nothing was expired yet).
    put(&app, &u1, json!({"chat_id": id, "retention_days": 3})).await;
    let mut got = texts(&app, &id, &u1).await;
    got.sort();
    assert_eq!(got, ["fresh", "old news"]);
}

/// All stored payloads as text.
async fn payloads(db: &Db) -> Vec<String> {
    match db {
        Db::Pg(p) => sqlx::query_scalar("SELECT payload::text FROM events")
            .fetch_all(p)
            .await
            .unwrap(),
        Db::Sqlite { read, .. } => sqlx::query_scalar("SELECT payload FROM events")
            .fetch_all(read)
            .await
            .unwrap(),
    }
}

async fn redacted_rows(db: &Db) -> i64 {
    let sql = "SELECT count(*) FROM events WHERE redaction IS NOT NULL";
    match db {
        Db::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        Db::Sqlite { read, .. } => sqlx::query_scalar(sql).fetch_one(read).await.unwrap(),
    }
}

async fn retention_run_expires_redacts_and_keeps_the_chain_verifiable(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2) = (student("u_1"), student("u_2"));
    let short = group(&app, &u1, &["u_2"]).await;
    let long = group(&app, &u1, &["u_2"]).await;
    let r = put(&app, &u1, json!({"chat_id": short, "retention_days": 30})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let m1 = post(&app, &short, &u1, "secret-alpha").await;
    post(&app, &short, &u2, "secret-bravo").await;
    let m3 = post(&app, &short, &u2, "secret-charlie").await;
    let r = app
        .patch(
            &format!("/chats/{short}/messages/{m3}"),
            &u2,
            json!({"text": "secret-delta"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    post(&app, &long, &u1, "kept-echo").await;
    // A submission by a non-member (past the API's check): the worker rejects it, but its text
    // is in the log too.
    let stray = Submission {
        operation_id: uuid::Uuid::now_v7(),
        message_id: uuid::Uuid::now_v7(),
        chat_id: short.parse().unwrap(),
        author_id: "u_9".into(),
        kind: MessageType::Normal,
        text: "secret-foxtrot".into(),
        attachments: vec![],
        metadata: json!({}),
        filter_matches: vec![],
    };
    let u9 = student("u_9");
    commands::message::submit(
        &app.state.bus,
        &Context::new(Actor::new("u_9", vec![Role::Student])),
        stray.clone(),
        None,
    )
    .await
    .unwrap();
    let stray_op = stray.operation_id.to_string();
    assert_eq!(settled(&app, &u9, &stray_op).await["status"], "rejected");
    let db = app.state.db.clone();
    assert!(payloads(&db)
        .await
        .iter()
        .any(|p| p.contains("secret-delta")));

    // Nothing is due yet.
    let now = Utc::now();
    let limits = api::retention::Limits::default();
    let r = api::retention::run_once(&app.state.bus, now, limits)
        .await
        .unwrap();
    assert_eq!((r.chats_scanned, r.messages_expired), (2, 0));

    // 31 days later the short chat's messages are due, the long chat's are not.
    let later = now + chrono::Duration::days(31);
    let r = api::retention::run_once(&app.state.bus, later, limits)
        .await
        .unwrap();
    assert_eq!(
        r,
        api::retention::Report {
            chats_scanned: 2,
            messages_expired: 3,
            operations_expired: 1,
            // 4 MessageSubmitted + 3 MessagePosted + 1 MessageEdited
            events_redacted: 8,
            limit_reached: false,
        }
    );
    eventually(Duration::from_secs(20), || async {
        texts(&app, &short, &u1).await.is_empty().then_some(())
    })
    .await;
    assert_eq!(texts(&app, &long, &u1).await, ["kept-echo"]);
    assert!(projections::chat::queries::message(&db, &m1)
        .await
        .unwrap()
        .is_none());
    // Gone for good: it cannot be edited or deleted.
    let r = app
        .patch(
            &format!("/chats/{short}/messages/{m3}"),
            &u2,
            json!({"text": "back"}),
        )
        .await;
    assert_error(&r, 404, "NOT_FOUND");
    let r = app
        .send(
            "DELETE",
            &format!("/chats/{short}/messages/{m1}"),
            Some(&u1),
            None,
            &[],
        )
        .await;
    assert_error(&r, 404, "NOT_FOUND");

    // The texts are gone from the log itself; the other chat's text is not.
    let all = payloads(&db).await;
    for secret in [
        "secret-alpha",
        "secret-bravo",
        "secret-charlie",
        "secret-delta",
        "secret-foxtrot",
    ] {
        assert!(
            !all.iter().any(|p| p.contains(secret)),
            "{secret} still stored"
        );
    }
    assert!(all.iter().any(|p| p.contains("kept-echo")));
    assert_eq!(redacted_rows(&db).await, 8);
    eventually(Duration::from_secs(20), || async {
        (app.get(&format!("/operations/{stray_op}"), &u9)
            .await
            .status
            == 404)
            .then_some(())
    })
    .await;

    // The expiry is an event on the bus.
    let feed = app.get("/admin/events?limit=200", &admin()).await;
    let expired = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "chat.message.expired")
        .count();
    assert_eq!(expired, 3);

    // Every chain still verifies.
    let store = app.state.store.clone();
    let report = store.verify_chains().await.unwrap();
    assert_eq!(report.first_break, None);
    assert!(report.events >= 20, "{report:?}");

    // A second pass finds nothing more.
    let again = api::retention::run_once(&app.state.bus, later, limits)
        .await
        .unwrap();
    assert_eq!((again.messages_expired, again.events_redacted), (0, 0));

    // The read model rebuilds from the redacted log.
    let applied = app.state.runner.rebuild("chat").await.unwrap();
    assert!(applied > 0);
    assert!(texts(&app, &short, &u1).await.is_empty());
    assert_eq!(texts(&app, &long, &u1).await, ["kept-echo"]);

    // Tampering with a redacted event is still caught: a forged text in the blanked slot...
    let (_, msg) = app
        .state
        .bus
        .load::<domain::chat::Message>(&m1)
        .await
        .unwrap();
    assert!(msg.expired_at.is_some());
    let stored = store.load::<domain::chat::Message>(&m1, 0).await.unwrap();
    let mut forged = stored[0].payload.clone();
    assert_eq!(forged["submission"]["text"], Value::Null);
    forged["submission"]["text"] = json!("forged");
    store
        .tamper_payload_for_tests("message", &m1, 1, forged)
        .await
        .unwrap();
    let broken = store.verify_chains().await.unwrap();
    assert_eq!(
        broken.first_break,
        Some(eventstore::ChainBreak {
            aggregate_type: "message".into(),
            aggregate_id: m1.clone(),
            sequence: 1
        })
    );
    // ...and another field of it changed.
    let mut changed = stored[0].payload.clone();
    changed["submission"]["author_id"] = json!("u_9");
    store
        .tamper_payload_for_tests("message", &m1, 1, changed)
        .await
        .unwrap();
    let broken = store.verify_chains().await.unwrap();
    assert_eq!(
        broken.first_break.map(|b| (b.aggregate_id, b.sequence)),
        Some((m1, 1))
    );
}

/// Rewrites a stream into hash version 1, as a database written before version 2 holds it.
async fn downgrade_to_v1(store: &eventstore::EventStore, events: &[eventstore::StoredEvent]) {
    let db = store.db();
    let mut prev: Vec<u8> = vec![];
    for e in events {
        let ph = eventstore::payload_hash_v1(&e.payload);
        let hash = eventstore::event_hash(
            &prev,
            &e.aggregate_type,
            &e.aggregate_id,
            e.sequence,
            &e.event_type,
            &e.event_version,
            e.event_id,
            &e.recorded_at,
            &e.metadata,
            &ph,
        );
        let sql = "UPDATE events SET hash_version = 1, payload_hash = $1, hash = $2 \
                   WHERE aggregate_type = $3 AND aggregate_id = $4 AND sequence = $5";
        match &db {
            Db::Pg(p) => {
                sqlx::query(sql)
                    .bind(&ph)
                    .bind(&hash)
                    .bind(&e.aggregate_type)
                    .bind(&e.aggregate_id)
                    .bind(e.sequence)
                    .execute(p)
                    .await
                    .unwrap();
            }
            Db::Sqlite { write, .. } => {
                sqlx::query(sql)
                    .bind(&ph)
                    .bind(&hash)
                    .bind(&e.aggregate_type)
                    .bind(&e.aggregate_id)
                    .bind(e.sequence)
                    .execute(write)
                    .await
                    .unwrap();
            }
        }
        prev = hash;
    }
}

async fn rows_of_the_old_hash_scheme_still_verify_and_redact(b: Backend) {
    let url = fresh_database(b).await;
    let store = eventstore::EventStore::connect(&url, 4).await.unwrap();
    let meta = eventstore::EventMetadata {
        actor: "u_1".into(),
        correlation_id: uuid::Uuid::now_v7(),
        causation_id: uuid::Uuid::now_v7(),
        command_id: uuid::Uuid::now_v7(),
    };
    let ev = |text: &str| eventstore::NewEvent {
        event_type: "Said".into(),
        event_version: "1.0".into(),
        payload: json!({"submission": {"text": text, "author_id": "u_1"}}),
    };
    let stored = store
        .append(eventstore::AppendRequest {
            aggregate_type: "legacy".into(),
            aggregate_id: "l1".into(),
            expected_sequence: 0,
            expected_hash: None,
            events: vec![ev("old-secret-1"), ev("old-secret-2")],
            metadata: meta,
            claims: vec![],
            releases: vec![],
            idempotency: None,
        })
        .await
        .unwrap();
    downgrade_to_v1(&store, &stored).await;
    let ok = store.verify_chains().await.unwrap();
    assert_eq!((ok.events, ok.first_break), (2, None));

    let redact = eventstore::RedactRequest {
        aggregate_type: "legacy".into(),
        aggregate_id: "l1".into(),
        sequence: 1,
        paths: vec!["/submission/text".into()],
    };
    let n = store
        .redact(std::slice::from_ref(&redact), "test", Utc::now())
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(!payloads(&store.db())
        .await
        .iter()
        .any(|p| p.contains("old-secret-1")));
    assert_eq!(store.verify_chains().await.unwrap().first_break, None);
    // The same redaction again changes nothing.
    assert_eq!(
        store.redact(&[redact], "test", Utc::now()).await.unwrap(),
        0
    );
    store
        .tamper_payload_for_tests(
            "legacy",
            "l1",
            1,
            json!({"submission": {"text": null, "author_id": "u_2"}}),
        )
        .await
        .unwrap();
    let broken = store.verify_chains().await.unwrap();
    assert_eq!(
        broken.first_break.map(|b| (b.aggregate_id, b.sequence)),
        Some(("l1".to_string(), 1))
    );
}
