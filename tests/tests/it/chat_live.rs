//! Communication, live part: `WS /ws` (auth, subscribe, privacy, typing, read, malformed frames),
//! read receipts over REST (`PUT /chats/{id}/read`, `GET /chats/{id}/unread-count`) and
//! presence from open connections, on SQLite and PostgreSQL.

use std::time::Duration;

use fafcab_tests::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

on_both_backends!(
    upgrade_requires_a_valid_token,
    messages_reach_subscribers_and_never_outsiders,
    malformed_frames_get_error_frames_and_the_connection_survives,
    typing_and_read_receipts_over_ws_and_rest,
    removed_member_loses_the_subscription,
    presence_follows_open_connections
);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(app: &TestApp) -> String {
    format!("{}/ws", app.base.replace("http://", "ws://"))
}

async fn connect(app: &TestApp, token: &str) -> Ws {
    let mut req = ws_url(app).into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("ws connects");
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// The next text frame as JSON (pings and pongs skipped); panics after 15 s.
async fn next(ws: &mut Ws) -> Value {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match ws.next().await.expect("connection open").expect("frame") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    })
    .await
    .expect("a frame within 15 s")
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn subscribe(ws: &mut Ws, chat: &str) {
    send(ws, json!({"op": "subscribe", "chat_id": chat, "ref": "s1"})).await;
    let ack = next(ws).await;
    assert_eq!(
        ack,
        json!({"event": "ack", "data": {"op": "subscribe", "chat_id": chat, "ref": "s1"}})
    );
}

async fn chat(app: &TestApp, owner: &str, body: Value) -> String {
    let r = app.post("/chats", owner, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

/// Posts a message and returns its id once the worker posted it.
async fn post(app: &TestApp, token: &str, chat: &str, text: &str) -> String {
    app.posted_message(token, chat, text).await
}

async fn upgrade_requires_a_valid_token(b: Backend) {
    let app = spawn_app(b).await;
    let refused = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body: Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            (resp.status().as_u16(), body["error"]["code"].clone())
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade accepted"),
    };
    let none = tokio_tungstenite::connect_async(ws_url(&app)).await;
    assert_eq!(refused(none), (401, json!("UNAUTHORIZED")));
    let bad =
        tokio_tungstenite::connect_async(format!("{}?access_token=garbage", ws_url(&app))).await;
    assert_eq!(refused(bad), (401, json!("UNAUTHORIZED")));
    let forged = api::auth::issue("other-secret", "u_1", &[], chrono::Duration::hours(1)).unwrap();
    let mut req = ws_url(&app).into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {forged}").parse().unwrap());
    assert_eq!(
        refused(tokio_tungstenite::connect_async(req).await),
        (401, json!("UNAUTHORIZED"))
    );
    // The query-string token works (browsers cannot set headers on a WebSocket).
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{}?access_token={}",
        ws_url(&app),
        student("u_1")
    ))
    .await
    .expect("query token accepted");
    let c = chat(&app, &student("u_1"), json!({"type": "group", "name": "g"})).await;
    subscribe(&mut ws, &c).await;
    // A plain GET with a valid token is not an upgrade: 4xx in the envelope.
    assert_error(
        &app.get("/ws", &student("u_1")).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.send("GET", "/ws", None, None, &[]).await,
        401,
        "UNAUTHORIZED",
    );
}

async fn messages_reach_subscribers_and_never_outsiders(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, out) = (student("u_1"), student("u_2"), student("u_9"));
    let private = chat(
        &app,
        &u1,
        json!({"type": "group", "name": "kitchen", "member_ids": ["u_2"]}),
    )
    .await;
    let public = chat(
        &app,
        &u1,
        json!({"type": "channel", "name": "news", "slug": "news"}),
    )
    .await;

    let mut member = connect(&app, &u2).await;
    subscribe(&mut member, &private).await;
    let mut outsider = connect(&app, &out).await;
    send(
        &mut outsider,
        json!({"op": "subscribe", "chat_id": private, "ref": 7}),
    )
    .await;
    let err = next(&mut outsider).await;
    assert_eq!(err["event"], "error", "{err}");
    assert_eq!(err["data"]["code"], "NOT_FOUND", "{err}");
    assert_eq!(err["data"]["op"], "subscribe");
    assert_eq!(err["data"]["chat_id"], private.as_str());
    assert_eq!(err["data"]["ref"], 7);
    // An unknown chat looks exactly the same.
    send(
        &mut outsider,
        json!({"op": "subscribe", "chat_id": uuid::Uuid::now_v7()}),
    )
    .await;
    assert_eq!(next(&mut outsider).await["data"]["code"], "NOT_FOUND");
    // A public channel is readable by anyone.
    subscribe(&mut outsider, &public).await;

    let secret = post(&app, &u1, &private, "private matters").await;
    let f = next(&mut member).await;
    assert_eq!(f["event"], "chat.message.created", "{f}");
    let d = &f["data"];
    assert_eq!(d["chat_id"], private.as_str());
    assert_eq!(d["msg_id"], secret.as_str());
    assert_eq!(d["author_id"], "u_1");
    assert_eq!(d["text"], "private matters");
    assert_eq!(d["type"], "normal");
    assert!(d["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    // The frame and the REST listing agree.
    let list = app.get(&format!("/chats/{private}/messages"), &u1).await;
    assert_eq!(list.body["messages"][0]["id"], secret.as_str());
    assert_eq!(list.body["messages"][0]["created_at"], d["created_at"]);

    // The outsider's next frame is the public message, posted after the private one: nothing of
    // the private chat was delivered in between.
    let news = post(&app, &u1, &public, "lab open").await;
    let f = next(&mut outsider).await;
    assert_eq!(f["event"], "chat.message.created", "{f}");
    assert_eq!(f["data"]["msg_id"], news.as_str());
    assert_eq!(f["data"]["chat_id"], public.as_str());

    // Edits and deletes reach subscribers too (their payloads carry no chat id).
    let r = app
        .patch(
            &format!("/chats/{private}/messages/{secret}"),
            &u1,
            json!({"text": "edited"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let f = next(&mut member).await;
    assert_eq!(f["event"], "chat.message.edited", "{f}");
    assert_eq!(f["data"]["chat_id"], private.as_str());
    assert_eq!(f["data"]["text"], "edited");
    let r = app
        .send(
            "DELETE",
            &format!("/chats/{private}/messages/{secret}"),
            Some(&u1),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204);
    let f = next(&mut member).await;
    assert_eq!(f["event"], "chat.message.deleted", "{f}");
    assert_eq!(f["data"]["msg_id"], secret.as_str());

    // Unsubscribed: nothing more from the private chat; the public one still arrives.
    subscribe(&mut member, &public).await;
    send(
        &mut member,
        json!({"op": "unsubscribe", "chat_id": private}),
    )
    .await;
    assert_eq!(next(&mut member).await["data"]["op"], "unsubscribe");
    post(&app, &u1, &private, "not for the socket").await;
    let last = post(&app, &u1, &public, "for the socket").await;
    let f = next(&mut member).await;
    assert_eq!(f["data"]["msg_id"], last.as_str(), "{f}");

    let metrics = app.send("GET", "/admin/metrics", None, None, &[]).await;
    assert!(
        metrics.text.contains("live_subscribers"),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("ws_connections"));
}

async fn malformed_frames_get_error_frames_and_the_connection_survives(b: Backend) {
    let app = spawn_app(b).await;
    let u1 = student("u_1");
    let c = chat(&app, &u1, json!({"type": "group", "name": "g"})).await;
    let mut ws = connect(&app, &u1).await;
    for bad in [
        Message::Text("not json".into()),
        Message::Text("[1,2]".into()),
        Message::Text(json!({"op": "dance"}).to_string().into()),
        Message::Text(json!({"op": "subscribe"}).to_string().into()),
        Message::Text(
            json!({"op": "typing", "chat_id": c, "state": "maybe"})
                .to_string()
                .into(),
        ),
        Message::Text(
            json!({"op": "subscribe", "chat_id": "x".repeat(5_000)})
                .to_string()
                .into(),
        ),
        Message::Binary(vec![1, 2, 3].into()),
    ] {
        ws.send(bad.clone()).await.unwrap();
        let f = next(&mut ws).await;
        assert_eq!(f["event"], "error", "{bad:?} → {f}");
        assert_eq!(f["data"]["code"], "VALIDATION_ERROR", "{bad:?} → {f}");
        assert!(f["data"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    send(&mut ws, json!({"op": "subscribe", "chat_id": "not-a-uuid"})).await;
    assert_eq!(next(&mut ws).await["data"]["code"], "NOT_FOUND");
    // Still alive and serving.
    subscribe(&mut ws, &c).await;
    // Subscribing twice is harmless: acked, and each event still arrives once.
    subscribe(&mut ws, &c).await;
    let m = post(&app, &u1, &c, "once").await;
    assert_eq!(next(&mut ws).await["data"]["msg_id"], m.as_str());
    let m2 = post(&app, &u1, &c, "twice").await;
    assert_eq!(next(&mut ws).await["data"]["msg_id"], m2.as_str());
}

async fn typing_and_read_receipts_over_ws_and_rest(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, out) = (student("u_1"), student("u_2"), student("u_9"));
    let c = chat(
        &app,
        &u1,
        json!({"type": "group", "name": "kitchen", "member_ids": ["u_2"]}),
    )
    .await;
    let other = chat(&app, &u1, json!({"type": "group", "name": "other"})).await;
    let mut w1 = connect(&app, &u1).await;
    let mut w2 = connect(&app, &u2).await;
    subscribe(&mut w1, &c).await;
    subscribe(&mut w2, &c).await;

    send(
        &mut w2,
        json!({"op": "typing", "chat_id": c, "state": "on"}),
    )
    .await;
    assert_eq!(
        next(&mut w1).await,
        json!({"event": "chat.typing", "data": {"chat_id": c, "user_id": "u_2", "state": "on"}})
    );
    assert_eq!(next(&mut w2).await["event"], "chat.typing");
    // An outsider cannot type into a private chat.
    let mut wo = connect(&app, &out).await;
    send(
        &mut wo,
        json!({"op": "typing", "chat_id": c, "state": "on"}),
    )
    .await;
    assert_eq!(next(&mut wo).await["data"]["code"], "NOT_FOUND");

    let unread = |t: String| {
        let app = &app;
        let c = c.clone();
        async move {
            let r = app.get(&format!("/chats/{c}/unread-count"), &t).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.body["chat_id"], c.as_str());
            r.body["unread"].as_i64().unwrap()
        }
    };
    assert_eq!(unread(u2.clone()).await, 0);
    let m1 = post(&app, &u1, &c, "one").await;
    let m2 = post(&app, &u1, &c, "two").await;
    for w in [&mut w1, &mut w2] {
        assert_eq!(next(w).await["data"]["msg_id"], m1.as_str());
        assert_eq!(next(w).await["data"]["msg_id"], m2.as_str());
    }
    assert_eq!(unread(u2.clone()).await, 2);
    assert_eq!(unread(u1.clone()).await, 0, "one's own messages are read");

    let r = app
        .send(
            "PUT",
            &format!("/chats/{c}/read"),
            Some(&u2),
            Some(json!({"message_id": m1})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["chat_id"], c.as_str());
    assert_eq!(r.body["user_id"], "u_2");
    assert_eq!(r.body["last_read_message_id"], m1.as_str());
    let read_at = r.body["last_read_at"].clone();
    assert!(read_at.is_string());
    let f = next(&mut w1).await;
    assert_eq!(
        f,
        json!({"event": "chat.read.update", "data": {"chat_id": c, "user_id": "u_2", "last_read_message_id": m1, "last_read_at": read_at}})
    );
    assert_eq!(unread(u2.clone()).await, 1);

    // The ws `read` op: the same command; acked with the position, broadcast to subscribers.
    send(
        &mut w2,
        json!({"op": "read", "chat_id": c, "message_id": m2, "ref": "r"}),
    )
    .await;
    // w2 first drains the update of its REST read, then gets the ack and the new update.
    assert_eq!(
        next(&mut w2).await["data"]["last_read_message_id"],
        m1.as_str()
    );
    let mut seen = [next(&mut w2).await, next(&mut w2).await];
    seen.sort_by_key(|f| f["event"].as_str().unwrap().to_string());
    assert_eq!(seen[0]["event"], "ack");
    assert_eq!(seen[0]["data"]["op"], "read");
    assert_eq!(seen[0]["data"]["ref"], "r");
    assert_eq!(seen[0]["data"]["last_read_message_id"], m2.as_str());
    assert_eq!(seen[1]["event"], "chat.read.update");
    let f = next(&mut w1).await;
    assert_eq!(f["event"], "chat.read.update");
    assert_eq!(f["data"]["last_read_message_id"], m2.as_str());
    assert_eq!(unread(u2.clone()).await, 0);

    // Backwards: the position stays (200 with the unchanged position), nothing is recorded.
    let before = app.state.store.head_position().await.unwrap();
    let r = app
        .send(
            "PUT",
            &format!("/chats/{c}/read"),
            Some(&u2),
            Some(json!({"message_id": m1})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["last_read_message_id"], m2.as_str());
    assert_eq!(app.state.store.head_position().await.unwrap(), before);

    // "Read position moved" is a domain event in the audit feed.
    let feed = app.get("/admin/events?limit=200", &admin()).await;
    let moved: Vec<&Value> = feed.body["events"]
        .as_array()
        .or_else(|| feed.body["items"].as_array())
        .map(|a| {
            a.iter()
                .filter(|e| e["type"] == "chat.read.update")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(moved.len(), 2, "{}", feed.text);

    // Errors.
    let put = |token: String, chat: String, body: Value| {
        let app = &app;
        async move {
            app.send(
                "PUT",
                &format!("/chats/{chat}/read"),
                Some(&token),
                Some(body),
                &[],
            )
            .await
        }
    };
    let m_other = post(&app, &u1, &other, "elsewhere").await;
    assert_error(
        &put(u2.clone(), c.clone(), json!({"message_id": m_other})).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &put(
            u2.clone(),
            c.clone(),
            json!({"message_id": uuid::Uuid::now_v7()}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &put(u2.clone(), c.clone(), json!({"message_id": "nope"})).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &put(u2.clone(), c.clone(), json!({})).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &put(out.clone(), c.clone(), json!({"message_id": m1})).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.get(&format!("/chats/{c}/unread-count"), &out).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.send("GET", &format!("/chats/{c}/unread-count"), None, None, &[])
            .await,
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &app.send(
            "PUT",
            &format!("/chats/{c}/read"),
            None,
            Some(json!({"message_id": m1})),
            &[],
        )
        .await,
        401,
        "UNAUTHORIZED",
    );
    send(
        &mut wo,
        json!({"op": "read", "chat_id": c, "message_id": m1}),
    )
    .await;
    assert_eq!(next(&mut wo).await["data"]["code"], "NOT_FOUND");
    send(
        &mut w2,
        json!({"op": "read", "chat_id": c, "message_id": m_other}),
    )
    .await;
    let f = next(&mut w2).await;
    assert_eq!(f["event"], "error");
    assert_eq!(f["data"]["code"], "NOT_FOUND");
    assert_eq!(f["data"]["op"], "read");
}

async fn removed_member_loses_the_subscription(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2) = (student("u_1"), student("u_2"));
    let c = chat(
        &app,
        &u1,
        json!({"type": "group", "name": "kitchen", "member_ids": ["u_2"]}),
    )
    .await;
    let public = chat(
        &app,
        &u1,
        json!({"type": "channel", "name": "news", "slug": "news"}),
    )
    .await;
    let mut w2 = connect(&app, &u2).await;
    subscribe(&mut w2, &c).await;
    subscribe(&mut w2, &public).await;
    let r = app
        .send(
            "DELETE",
            &format!("/chats/{c}/members/u_2"),
            Some(&u1),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let f = next(&mut w2).await;
    assert_eq!(f["event"], "error", "{f}");
    assert_eq!(f["data"]["code"], "SUBSCRIPTION_ENDED");
    assert_eq!(f["data"]["chat_id"], c.as_str());
    post(&app, &u1, &c, "after you left").await;
    let news = post(&app, &u1, &public, "public").await;
    assert_eq!(next(&mut w2).await["data"]["msg_id"], news.as_str());
}

async fn presence_follows_open_connections(b: Backend) {
    let app = spawn_app(b).await;
    let u3 = student("u_3");
    let presence = |who: &'static str| {
        let app = &app;
        async move {
            let r = app.get(&format!("/profiles/{who}"), &student("u_1")).await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.body["presence"].as_str().unwrap().to_string()
        }
    };
    // A first authenticated call creates the profile.
    assert_eq!(app.get("/chats", &u3).await.status, 200);
    assert_eq!(presence("u_3").await, "offline");
    let ws = connect(&app, &u3).await;
    eventually(Duration::from_secs(10), || async {
        (presence("u_3").await == "online").then_some(())
    })
    .await;
    drop(ws);
    eventually(Duration::from_secs(10), || async {
        (presence("u_3").await == "offline").then_some(())
    })
    .await;
    // A heartbeat alone also counts.
    let r = app
        .send("POST", "/presence/heartbeat", Some(&u3), None, &[])
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(presence("u_3").await, "online");
}

/// Two API processes on one PostgreSQL database: a subscriber on one receives what is posted
/// through the other, and its connection makes the user online for the other one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_another_process_delivers_and_counts_presence() {
    let one = spawn_app(Backend::Postgres).await;
    let two = spawn_app_on(&one.database_url).await;
    let (u1, u2) = (student("u_1"), student("u_2"));
    let c = chat(
        &one,
        &u1,
        json!({"type": "group", "name": "kitchen", "member_ids": ["u_2"]}),
    )
    .await;
    let mut w2 = connect(&two, &u2).await;
    subscribe(&mut w2, &c).await;
    let m = post(&one, &u1, &c, "across processes").await;
    let f = next(&mut w2).await;
    assert_eq!(f["event"], "chat.message.created", "{f}");
    assert_eq!(f["data"]["msg_id"], m.as_str());
    let r = one
        .send(
            "PUT",
            &format!("/chats/{c}/read"),
            Some(&u2),
            Some(json!({"message_id": m})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(next(&mut w2).await["event"], "chat.read.update");
    eventually(Duration::from_secs(10), || async {
        let p = one.get("/profiles/u_2", &u1).await;
        (p.body["presence"] == "online").then_some(())
    })
    .await;
    drop(w2);
    eventually(Duration::from_secs(10), || async {
        let p = one.get("/profiles/u_2", &u1).await;
        (p.body["presence"] == "offline").then_some(())
    })
    .await;
}
