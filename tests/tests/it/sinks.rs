//! The notification inbox (routing by role, read/unread, delete, ownership) and the Discord sink
//! against a local stand-in for Discord that answers as Discord does (429 with `retry_after`,
//! 5xx, 400, 404), on both backends; and both sinks behind the real RabbitMQ.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::Settings;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use fafcab_tests::*;
use projections::sinks::notifications::NotificationSink;
use projections::sinks::{Incoming, Sink};
use serde_json::{json, Value};

on_both_backends!(
    inbox_routes_by_role_and_belongs_to_its_owner,
    discord_sink_honours_discord,
    discord_sink_disables_itself_on_404
);

fn titles(r: &Res) -> Vec<String> {
    r.body["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_string())
        .collect()
}

async fn inbox(app: &TestApp, token: &str, n: usize) -> Res {
    eventually(Duration::from_secs(20), || async {
        let r = app.get("/notifications", token).await;
        (r.body["notifications"].as_array().map(|a| a.len()) == Some(n)).then_some(r)
    })
    .await
}

async fn inbox_routes_by_role_and_belongs_to_its_owner(b: Backend) {
    let app = spawn_app(b).await;
    let a = admin();
    let s = student("u_s");
    let other = student("u_other");
    let id = app.item("Tea", 50).await;
    app.batch(&id, 60, None).await; // inventory.restocked → everyone
    app.post(
        &format!("/items/{id}/consume"),
        &a,
        json!({"qty": 20, "user_id": "u_1"}),
    )
    .await; // low_stock → admins
    app.post(
        "/announcements",
        &a,
        json!({"title": "New tea arrived!", "body": "Try jasmine."}),
    )
    .await; // everyone

    let mine = inbox(&app, &a, 3).await;
    assert_eq!(
        titles(&mine),
        ["New tea arrived!", "Low stock: Tea", "Restocked: Tea"],
        "newest first"
    );
    let n0 = &mine.body["notifications"][1];
    for k in [
        "id",
        "event_id",
        "type",
        "title",
        "body",
        "data",
        "created_at",
        "read_at",
    ] {
        assert!(n0.get(k).is_some(), "notification has {k}: {n0}");
    }
    assert_eq!(n0["type"], "inventory.low_stock");
    assert_eq!(n0["body"], "40 left (threshold 50)");
    assert_eq!(n0["data"]["current_qty"], 40);
    assert_eq!(mine.body["notifications"][0]["body"], "Try jasmine.");
    let student_inbox = inbox(&app, &s, 2).await;
    assert_eq!(
        titles(&student_inbox),
        ["New tea arrived!", "Restocked: Tea"],
        "low stock goes to admins only"
    );
    assert_eq!(
        app.get("/notifications/unread-count", &a).await.body,
        json!({"unread": 3})
    );
    assert_eq!(
        app.get("/notifications/unread-count", &s).await.body,
        json!({"unread": 2})
    );

    // Read one, unread_only, ownership.
    let low_id = n0["id"].as_str().unwrap().to_string();
    let r = app
        .patch(&format!("/notifications/{low_id}/read"), &a, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["read_at"].is_string());
    assert_eq!(
        app.get("/notifications/unread-count", &a).await.body,
        json!({"unread": 2})
    );
    assert_eq!(
        app.get("/notifications?unread_only=true", &a).await.body["notifications"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_error(
        &app.patch(&format!("/notifications/{low_id}/read"), &s, json!({}))
            .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.send(
            "DELETE",
            &format!("/notifications/{low_id}"),
            Some(&s),
            None,
            &[],
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.patch("/notifications/nope/read", &a, json!({})).await,
        404,
        "NOT_FOUND",
    );

    // Read all is per user; delete is per user.
    let all = app.patch("/notifications/read-all", &s, json!({})).await;
    assert_eq!(all.body, json!({"updated": 2, "unread": 0}));
    assert_eq!(
        app.get("/notifications/unread-count", &a).await.body,
        json!({"unread": 2})
    );
    assert_eq!(
        app.get("/notifications/unread-count", &other).await.body,
        json!({"unread": 2})
    );
    let restock_id = student_inbox.body["notifications"][1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = app
        .send(
            "DELETE",
            &format!("/notifications/{restock_id}"),
            Some(&s),
            None,
            &[],
        )
        .await;
    assert_eq!(d.status, 204);
    assert_eq!(
        titles(&app.get("/notifications", &s).await),
        ["New tea arrived!"]
    );
    assert_eq!(
        titles(&app.get("/notifications", &other).await).len(),
        2,
        "someone else's delete is not mine"
    );
    assert_error(
        &app.send(
            "DELETE",
            &format!("/notifications/{restock_id}"),
            Some(&s),
            None,
            &[],
        )
        .await,
        404,
        "NOT_FOUND",
    );

    // Pagination.
    let p1 = app.get("/notifications?limit=2", &a).await;
    assert_eq!(titles(&p1).len(), 2);
    let c = p1.body["next_cursor"].as_str().unwrap();
    assert_eq!(
        titles(
            &app.get(&format!("/notifications?limit=2&cursor={c}"), &a)
                .await
        ),
        ["Restocked: Tea"]
    );
    assert_error(
        &app.send("GET", "/notifications", None, None, &[]).await,
        401,
        "UNAUTHORIZED",
    );

    // A redelivered CloudEvent is stored once.
    let sink = NotificationSink::new(&app.state.store);
    let again = Incoming {
        id: n0["event_id"].as_str().unwrap().into(),
        event_type: "inventory.low_stock".into(),
        body: json!({"time": "2025-09-11T12:00:01Z", "data": {"item_id": id, "current_qty": 40, "threshold": 50}}),
    };
    sink.handle(&again).await;
    sink.handle(&again).await;
    assert_eq!(
        app.get("/notifications", &a).await.body["notifications"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

/// A stand-in for Discord's webhook endpoint: answers from a script, records what it received.
#[derive(Clone, Default)]
struct FakeDiscord {
    script: Arc<Mutex<VecDeque<(u16, Value)>>>,
    seen: Arc<Mutex<Vec<(Instant, Value)>>>,
}

async fn webhook(
    State(f): State<FakeDiscord>,
    Json(body): Json<Value>,
) -> axum::response::Response {
    // Discord's own checks on what we send.
    let content = body["content"].as_str().unwrap_or_default();
    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    let valid = content.chars().count() <= 2000
        && embeds.len() <= 10
        && !embeds.is_empty()
        && embeds.iter().all(|e| {
            e["title"]
                .as_str()
                .is_some_and(|t| t.chars().count() <= 256)
        });
    f.seen.lock().unwrap().push((Instant::now(), body));
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": 50035, "message": "Invalid Form Body"})),
        )
            .into_response();
    }
    let next = f.script.lock().unwrap().pop_front();
    match next {
        Some((429, v)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            Json(v),
        )
            .into_response(),
        Some((code, v)) => (StatusCode::from_u16(code).unwrap(), Json(v)).into_response(),
        None => (StatusCode::OK, Json(json!({"id": "1"}))).into_response(),
    }
}

async fn start_fake(script: Vec<(u16, Value)>) -> (String, FakeDiscord) {
    let fake = FakeDiscord::default();
    fake.script.lock().unwrap().extend(script);
    let app = axum::Router::new()
        .route("/api/webhooks/1/token", axum::routing::post(webhook))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/api/webhooks/1/token",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

async fn app_with_discord(b: Backend, url: &str) -> TestApp {
    let mut settings = Settings::for_tests(&fresh_database(b).await);
    settings.discord_webhook_url = Some(url.to_string());
    spawn_with(settings).await
}

async fn discord_sink_honours_discord(b: Backend) {
    let (url, fake) = start_fake(vec![
        (
            429,
            json!({"message": "You are being rate limited.", "retry_after": 0.3, "global": false}),
        ),
        (200, json!({"id": "1"})),
        (502, json!({"message": "Bad Gateway"})),
        (200, json!({"id": "2"})),
        (
            400,
            json!({"code": 50006, "message": "Cannot send an empty message"}),
        ),
    ])
    .await;
    let app = app_with_discord(b, &url).await;
    let a = admin();
    let id = app.item("Tea", 50).await;
    app.batch(&id, 60, None).await; // restocked: 429, then accepted
    app.post(
        &format!("/items/{id}/consume"),
        &a,
        json!({"qty": 20, "user_id": "u_1"}),
    )
    .await; // low stock: 502, then accepted
    app.post(
        "/announcements",
        &a,
        json!({"title": "Hi", "body": "there"}),
    )
    .await; // 400: dead letter
    app.batch(&id, 5, None).await; // restocked again: accepted, the sink went on
    let seen = eventually(Duration::from_secs(30), || async {
        let s = fake.seen.lock().unwrap().clone();
        (s.len() >= 6).then_some(s)
    })
    .await;
    let title = |i: usize| {
        seen[i].1["embeds"][0]["title"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(title(0), "Restocked: Tea");
    assert_eq!(
        seen[1].1, seen[0].1,
        "the same message is retried after a 429"
    );
    assert!(
        seen[1].0 - seen[0].0 >= Duration::from_millis(300),
        "waited retry_after"
    );
    assert_eq!(title(2), "Low stock: Tea");
    assert_eq!(seen[3].1, seen[2].1, "retried after a 5xx");
    assert!(
        seen[3].0 - seen[2].0 >= Duration::from_millis(400),
        "with backoff"
    );
    assert_eq!(title(4), "Hi");
    assert_eq!(title(5), "Restocked: Tea");
    assert_eq!(
        seen[2].1["embeds"][0]["description"],
        "40 left (threshold 50)"
    );
    assert_eq!(seen[2].1["allowed_mentions"], json!({"parse": []}));
    // The 400 is a dead letter, recorded with Discord's reason.
    #[derive(sqlx::FromRow)]
    struct Dead {
        r#type: String,
        reason: String,
    }
    let dead = eventstore::db_fetch_all!(
        &app.state.db,
        Dead,
        "SELECT type, reason FROM dead_letters WHERE sink = 'discord'"
    )
    .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].r#type, "inventory.announcement.published");
    assert!(dead[0].reason.contains("400"), "{}", dead[0].reason);
    // Nothing is posted twice: a redelivery of a posted event makes no request.
    let sink = projections::sinks::discord::DiscordSink::new(&app.state.store, url.clone(), None);
    let feed = app.get("/admin/events?limit=200", &a).await;
    let restocked = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "inventory.restocked")
        .unwrap()
        .clone();
    let before = fake.seen.lock().unwrap().len();
    let out = sink
        .handle(&Incoming {
            id: restocked["id"].as_str().unwrap().into(),
            event_type: "inventory.restocked".into(),
            body: restocked,
        })
        .await;
    assert_eq!(out, projections::sinks::Outcome::Done);
    assert_eq!(fake.seen.lock().unwrap().len(), before);
    let h = app.send("GET", "/health", None, None, &[]).await;
    assert_eq!(h.body["checks"]["discord"], "ok");
}

async fn discord_sink_disables_itself_on_404(b: Backend) {
    let (url, fake) = start_fake(vec![(
        404,
        json!({"code": 10015, "message": "Unknown Webhook"}),
    )])
    .await;
    let app = app_with_discord(b, &url).await;
    let id = app.item("Tea", 0).await;
    app.batch(&id, 5, None).await;
    let h = eventually(Duration::from_secs(20), || async {
        let h = app.send("GET", "/health", None, None, &[]).await;
        h.body["checks"]["discord"]
            .as_str()
            .is_some_and(|s| s.starts_with("disabled"))
            .then_some(h)
    })
    .await;
    assert!(h.body["checks"]["discord"]
        .as_str()
        .unwrap()
        .contains("404"));
    app.batch(&id, 5, None).await;
    app.batch(&id, 5, None).await;
    // Later events wait in the log; nothing more reaches the revoked webhook.
    let n = app.get("/items", &admin()).await; // a round trip's worth of time for the sink to misbehave
    assert_eq!(n.status, 200);
    assert_eq!(fake.seen.lock().unwrap().len(), 1);
}

/// Both sinks behind the real RabbitMQ: the inbox fills from the `<prefix>.notifications` queue,
/// and a message Discord refuses lands in `<prefix>.discord.dlq`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_consume_from_rabbitmq_with_dead_letter_queues() {
    let (url, _fake) = start_fake(vec![(
        400,
        json!({"code": 50006, "message": "Cannot send an empty message"}),
    )])
    .await;
    let mut settings = Settings::for_tests(&fresh_database(Backend::Postgres).await);
    let amqp = std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    settings.amqp_url = Some(amqp.clone());
    settings.discord_webhook_url = Some(url);
    settings.discord_event_types = Some(vec!["inventory.restocked".into()]);
    let prefix = settings.queue_prefix.clone();
    let app = spawn_with(settings).await;
    eventually(Duration::from_secs(20), || async {
        let h = app.send("GET", "/health", None, None, &[]).await;
        (h.body["checks"]["notifications"] == "ok"
            && h.body["checks"]["discord"] == "ok"
            && h.body["checks"]["events"] == "ok")
            .then_some(())
    })
    .await;
    let id = app.item("Tea", 0).await;
    app.batch(&id, 5, None).await;
    let inbox = inbox(&app, &student("u_x"), 1).await;
    assert_eq!(titles(&inbox), ["Restocked: Tea"]);
    let conn = lapin::Connection::connect(&amqp, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let dlq = format!("{prefix}.discord.dlq");
    let dead = eventually(Duration::from_secs(20), || async {
        ch.basic_get(
            dlq.as_str().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    })
    .await;
    let body: Value = serde_json::from_slice(&dead.delivery.data).unwrap();
    assert_eq!(body["type"], "inventory.restocked");
    drop(app);
    for q in [
        "notifications",
        "notifications.dlq",
        "discord",
        "discord.dlq",
    ] {
        let _ = ch
            .queue_delete(
                format!("{prefix}.{q}").as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
}
