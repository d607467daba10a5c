//! GraphQL subscriptions over `graphql-transport-ws` with a real client, on both backends:
//! `chatMessages` (posted, edited, flagged, deleted; privacy; a member removed is cut off),
//! `stockUpdates` (one item and every item), `typing`, `notifications` (by audience), the
//! per-connection limit, and a token that expires mid-subscription.

use std::time::Duration;

use api::Settings;
use benchkit::client::{Client, Frame};
use domain::Role;
use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(
    chat_messages_are_live_and_private,
    stock_updates_for_one_item_and_for_all,
    typing_and_notifications_reach_their_audience,
    read_receipts_are_live,
    expired_token_ends_subscriptions,
    subscriptions_per_connection_are_bounded
);

const DEADLINE: Duration = Duration::from_secs(15);

/// Waits until the hub holds `n` subscribers (a subscription is live once its resolver ran).
async fn subscribers(app: &TestApp, n: usize) {
    eventually(DEADLINE, || async {
        (app.state.live.subscriber_count() >= n).then_some(())
    })
    .await;
}

/// The next `next` frame of subscription `id` (other frames are skipped).
async fn next_of(c: &mut Client, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_within(left).await {
            Some(Frame::Next(i, payload)) if i == id => return payload,
            Some(Frame::Closed(code, reason)) => panic!("closed {code:?} {reason}"),
            Some(_) => {}
            None => panic!("no frame for subscription {id} within {DEADLINE:?}"),
        }
    }
}

/// Frames of `id` until it completes.
async fn rest_of(c: &mut Client, id: &str) -> Vec<Value> {
    let mut out = vec![];
    loop {
        match c.next_within(DEADLINE).await {
            Some(Frame::Next(i, p)) if i == id => out.push(p),
            Some(Frame::Complete(i)) if i == id => return out,
            Some(Frame::Closed(code, reason)) => panic!("closed {code:?} {reason}"),
            Some(_) => {}
            None => panic!("subscription {id} did not complete"),
        }
    }
}

fn err_code(p: &Value) -> &str {
    p["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("none")
}

/// A private group chat of u_1 (whose token is `owner`) and u_2.
async fn kitchen(app: &TestApp, owner: &str) -> String {
    let chat = app
        .post(
            "/chats",
            owner,
            json!({"type": "group", "name": "kitchen", "member_ids": ["u_2"]}),
        )
        .await;
    assert_eq!(chat.body["is_private"], true, "{}", chat.text);
    chat.body["id"].as_str().unwrap().to_string()
}

async fn post(app: &TestApp, tok: &str, chat: &str, text: &str) {
    let r = app
        .post(
            &format!("/chats/{chat}/messages"),
            tok,
            json!({"text": text}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
}

const MESSAGES: &str = "subscription($c: ID!) { chatMessages(chatId: $c) { id chatId authorId text createdAt editedAt deletedAt flaggedAt } }";

async fn chat_messages_are_live_and_private(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, out) = (student("u_1"), student("u_2"), student("u_9"));
    let chat = kitchen(&app, &u1).await;
    let filters = app
        .send(
            "PUT",
            "/moderation/filters",
            Some(&admin()),
            Some(json!({"phrases": ["badword"], "version": 1})),
            &[],
        )
        .await;
    assert_eq!(filters.status, 200, "{}", filters.text);

    // The outsider's subscription ends with NOT_FOUND and delivers nothing.
    let mut outsider = Client::connect(&app.ws_url(), &out).await.unwrap();
    let oid = outsider
        .subscribe(MESSAGES, json!({"c": chat}))
        .await
        .unwrap();
    let frames = rest_of(&mut outsider, &oid).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(err_code(&frames[0]), "NOT_FOUND", "{frames:?}");
    assert_eq!(frames[0]["data"], Value::Null);

    let mut member = Client::connect(&app.ws_url(), &u2).await.unwrap();
    let sid = member
        .subscribe(MESSAGES, json!({"c": chat}))
        .await
        .unwrap();
    subscribers(&app, 1).await;

    post(&app, &u1, &chat, "hello").await;
    let m = next_of(&mut member, &sid).await;
    let m = &m["data"]["chatMessages"];
    assert_eq!(
        (
            m["chatId"].clone(),
            m["authorId"].clone(),
            m["text"].clone()
        ),
        (json!(chat), json!("u_1"), json!("hello")),
        "{m}"
    );
    assert!(m["createdAt"].is_string() && m["editedAt"].is_null() && m["deletedAt"].is_null());
    let msg = m["id"].as_str().unwrap().to_string();

    let path = format!("/chats/{chat}/messages/{msg}");
    let r = app.patch(&path, &u1, json!({"text": "hello, all"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let m = next_of(&mut member, &sid).await;
    let m = &m["data"]["chatMessages"];
    assert_eq!(
        (m["id"].clone(), m["text"].clone()),
        (json!(msg), json!("hello, all"))
    );
    assert!(m["editedAt"].is_string(), "{m}");

    // A filtered message is stored masked and flagged; the subscriber sees it flagged.
    post(&app, &u1, &chat, "a badword here").await;
    let flagged = loop {
        let m = next_of(&mut member, &sid).await;
        let m = m["data"]["chatMessages"].clone();
        if m["flaggedAt"].is_string() {
            break m;
        }
    };
    assert!(
        !flagged["text"].as_str().unwrap().contains("badword"),
        "{flagged}"
    );

    let r = app.send("DELETE", &path, Some(&u1), None, &[]).await;
    assert!(r.status < 300, "{}", r.text);
    // (The flagged message may have a second frame: its posting and its flag are two events.)
    let m = loop {
        let m = next_of(&mut member, &sid).await["data"]["chatMessages"].clone();
        if m["id"] == json!(msg) {
            break m;
        }
        assert_eq!(m["id"], flagged["id"], "{m}");
    };
    assert!(m["deletedAt"].is_string() && m["text"].is_null(), "{m}");

    // Removed from the chat: the subscription ends with NOT_FOUND, nothing after it.
    let r = app
        .send(
            "DELETE",
            &format!("/chats/{chat}/members/u_2"),
            Some(&u1),
            None,
            &[],
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    let last = rest_of(&mut member, &sid).await;
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(err_code(&last[0]), "NOT_FOUND", "{last:?}");
}

const STOCK: &str = "subscription($i: ID) { stockUpdates(itemId: $i) { itemId stockQty lowStock reason at item { name } } }";

async fn stock_updates_for_one_item_and_for_all(b: Backend) {
    let app = spawn_app(b).await;
    let (tea, sugar) = (app.item("Tea", 5).await, app.item("Sugar", 0).await);
    let mut c = Client::connect(&app.ws_url(), &student("u_1"))
        .await
        .unwrap();
    let missing = c
        .subscribe(STOCK, json!({"i": uuid::Uuid::now_v7()}))
        .await
        .unwrap();
    let frames = rest_of(&mut c, &missing).await;
    assert_eq!(err_code(&frames[0]), "NOT_FOUND", "{frames:?}");
    let one = c.subscribe(STOCK, json!({"i": tea})).await.unwrap();
    let all = c.subscribe(STOCK, json!({})).await.unwrap();
    subscribers(&app, 2).await;

    app.batch(&tea, 10, None).await;
    app.batch(&sugar, 4, None).await;
    let r = app
        .post(
            &format!("/items/{tea}/consume"),
            &student("u_1"),
            json!({"qty": 6}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // `all` sees the three changes in log order; `one` only Tea's two.
    let mut seen_all = vec![];
    let mut seen_one = vec![];
    while seen_all.len() < 3 || seen_one.len() < 2 {
        match c.next_within(DEADLINE).await {
            Some(Frame::Next(id, p)) => {
                let u = p["data"]["stockUpdates"].clone();
                assert!(u.is_object(), "{p}");
                let v = (
                    u["itemId"].as_str().unwrap().to_string(),
                    u["stockQty"].as_i64().unwrap(),
                    u["lowStock"].as_bool().unwrap(),
                    u["reason"].as_str().unwrap().to_string(),
                );
                if id == all {
                    seen_all.push(v);
                } else {
                    assert_eq!(id, one);
                    seen_one.push(v);
                }
            }
            other => panic!("expected stock frames, got {other:?}"),
        }
    }
    let t = |q, low, r: &str| (tea.clone(), q, low, r.to_string());
    assert_eq!(
        seen_one,
        vec![t(10, false, "restocked"), t(4, true, "consumed")]
    );
    assert_eq!(
        seen_all,
        vec![
            t(10, false, "restocked"),
            (sugar.clone(), 4, false, "restocked".into()),
            t(4, true, "consumed")
        ]
    );
    assert_eq!(c.next_within(Duration::from_millis(300)).await, None);
}

async fn typing_and_notifications_reach_their_audience(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, out) = (student("u_1"), student("u_2"), student("u_9"));
    let chat = kitchen(&app, &u1).await;
    let mut c2 = Client::connect(&app.ws_url(), &u2).await.unwrap();
    let typing = c2
        .subscribe(
            "subscription($c: ID!) { typing(chatId: $c) { chatId userId typing } }",
            json!({"c": chat}),
        )
        .await
        .unwrap();
    let mut cadmin = Client::connect(&app.ws_url(), &admin()).await.unwrap();
    let ninbox = "subscription { notifications { type title data } }";
    let admin_inbox = cadmin.subscribe(ninbox, json!({})).await.unwrap();
    let mut c9 = Client::connect(&app.ws_url(), &out).await.unwrap();
    let student_inbox = c9.subscribe(ninbox, json!({})).await.unwrap();
    // typing, and the two inboxes (each listens to its user's topic for early wake-ups).
    subscribers(&app, 3).await;

    let send = "mutation($c: ID!) { typing(chatId: $c) }";
    let r = app
        .send(
            "POST",
            "/graphql",
            Some(&out),
            Some(json!({"query": send, "variables": {"c": chat}})),
            &[],
        )
        .await;
    assert_eq!(
        r.body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{}",
        r.text
    );
    let r = app
        .send(
            "POST",
            "/graphql",
            Some(&u1),
            Some(json!({"query": send, "variables": {"c": chat}})),
            &[],
        )
        .await;
    assert_eq!(r.body["data"]["typing"], true, "{}", r.text);
    assert_eq!(
        next_of(&mut c2, &typing).await["data"]["typing"],
        json!({"chatId": chat, "userId": "u_1", "typing": true})
    );

    // Low stock goes to admins; a restock to everyone.
    let tea = app.item("Tea", 5).await;
    app.batch(&tea, 6, None).await;
    let r = app
        .post(
            &format!("/items/{tea}/consume"),
            &admin(),
            json!({"qty": 3}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut admin_types = vec![];
    while admin_types.len() < 2 {
        let p = next_of(&mut cadmin, &admin_inbox).await;
        admin_types.push(
            p["data"]["notifications"]["type"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(admin_types, ["inventory.restocked", "inventory.low_stock"]);
    app.batch(&tea, 1, None).await;
    let p = next_of(&mut c9, &student_inbox).await;
    assert_eq!(
        p["data"]["notifications"]["type"], "inventory.restocked",
        "{p}"
    );
    // The student's second restock arrives, never the admins' low-stock notice.
    let p = next_of(&mut c9, &student_inbox).await;
    assert_eq!(
        p["data"]["notifications"]["type"], "inventory.restocked",
        "{p}"
    );
    assert_eq!(c9.next_within(Duration::from_millis(1500)).await, None);
}

async fn gql(app: &TestApp, tok: &str, query: &str, variables: Value) -> Value {
    let r = app
        .send(
            "POST",
            "/graphql",
            Some(tok),
            Some(json!({"query": query, "variables": variables})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn read_receipts_are_live(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, out) = (student("u_1"), student("u_2"), student("u_9"));
    let chat = kitchen(&app, &u1).await;
    let mut c1 = Client::connect(&app.ws_url(), &u1).await.unwrap();
    let receipts = c1
        .subscribe(
            "subscription($c: ID!) { readReceipts(chatId: $c) { chatId userId lastReadMessageId lastReadAt } }",
            json!({"c": chat}),
        )
        .await
        .unwrap();
    let mut c2 = Client::connect(&app.ws_url(), &u2).await.unwrap();
    let msgs = c2.subscribe(MESSAGES, json!({"c": chat})).await.unwrap();
    subscribers(&app, 2).await;
    post(&app, &u1, &chat, "read me").await;
    let msg = next_of(&mut c2, &msgs).await["data"]["chatMessages"]["id"].clone();
    let unread = "query($c: ID!) { unreadCount(chatId: $c) }";
    assert_eq!(
        gql(&app, &u2, unread, json!({"c": chat})).await["data"]["unreadCount"],
        1
    );
    let mark = "mutation($c: ID!, $m: ID!) { markRead(chatId: $c, messageId: $m) { userId lastReadMessageId } }";
    let vars = json!({"c": chat, "m": msg});
    let refused = gql(&app, &out, mark, vars.clone()).await;
    assert_eq!(err_code(&refused), "NOT_FOUND", "{refused}");
    let marked = gql(&app, &u2, mark, vars).await;
    assert_eq!(
        marked["data"]["markRead"],
        json!({"userId": "u_2", "lastReadMessageId": msg})
    );
    let r = next_of(&mut c1, &receipts).await;
    let r = &r["data"]["readReceipts"];
    assert_eq!(
        (
            r["chatId"].clone(),
            r["userId"].clone(),
            r["lastReadMessageId"].clone()
        ),
        (json!(chat), json!("u_2"), msg)
    );
    assert!(r["lastReadAt"].is_string(), "{r}");
    assert_eq!(
        gql(&app, &u2, unread, json!({"c": chat})).await["data"]["unreadCount"],
        0
    );
}

async fn expired_token_ends_subscriptions(b: Backend) {
    let app = spawn_app(b).await;
    let tea = app.item("Tea", 0).await;
    let short = api::auth::issue(
        SECRET,
        "u_1",
        &[Role::Student],
        chrono::Duration::seconds(3),
    )
    .unwrap();
    let mut c = Client::connect(&app.ws_url(), &short).await.unwrap();
    let id = c.subscribe(STOCK, json!({"i": tea})).await.unwrap();
    subscribers(&app, 1).await;
    app.batch(&tea, 2, None).await;
    assert_eq!(
        next_of(&mut c, &id).await["data"]["stockUpdates"]["stockQty"],
        2
    );
    let (frames, closed) = c.until_closed(DEADLINE).await;
    assert_eq!(
        frames.first().map(|f| match f {
            Frame::Next(_, p) => err_code(p).to_string(),
            other => format!("{other:?}"),
        }),
        Some("UNAUTHORIZED".to_string()),
        "{frames:?}"
    );
    assert_eq!(frames.get(1), Some(&Frame::Complete(id)));
    assert!(
        matches!(closed, Some(Frame::Closed(Some(4403), _))),
        "{closed:?}"
    );
}

async fn subscriptions_per_connection_are_bounded(b: Backend) {
    let mut settings = Settings::for_tests(&fresh_database(b).await);
    settings.graphql.max_subscriptions = 1;
    let app = spawn_with(settings).await;
    let mut c = Client::connect(&app.ws_url(), &student("u_1"))
        .await
        .unwrap();
    let first = c.subscribe(STOCK, json!({})).await.unwrap();
    subscribers(&app, 1).await;
    let second = c.subscribe(STOCK, json!({})).await.unwrap();
    let frames = rest_of(&mut c, &second).await;
    assert_eq!(err_code(&frames[0]), "RATE_LIMITED", "{frames:?}");
    // Stopping the first frees its place.
    c.complete(&first).await.unwrap();
    eventually(DEADLINE, || async {
        (app.state.live.subscriber_count() == 0).then_some(())
    })
    .await;
    let third = c.subscribe(STOCK, json!({})).await.unwrap();
    subscribers(&app, 1).await;
    let tea = app.item("Tea", 0).await;
    assert_eq!(
        next_of(&mut c, &third).await["data"]["stockUpdates"]["itemId"],
        json!(tea)
    );
}
