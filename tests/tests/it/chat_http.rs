//! Communication, first part: profiles from User Management, search, presence, chats, members and
//! privacy, over HTTP on SQLite and PostgreSQL.

use std::time::Duration;

use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(
    profiles_sync_search_and_presence,
    chats_membership_and_privacy,
    messages_are_posted_asynchronously
);

const INTERNAL: &str = "internal-test-secret";

async fn profiles_sync_search_and_presence(b: Backend) {
    let app = spawn_app(b).await;
    let users = json!({"users": [
        {"user_id": "u_1", "nickname": "alice", "avatar_url": "https://x.test/a.png", "roles": ["member"], "discord_id": "1234"},
        {"user_id": "u_2", "nickname": "bob", "roles": ["member"]}
    ]});
    let r = app
        .send(
            "POST",
            "/users/sync",
            None,
            Some(users.clone()),
            &[("x-internal-secret", INTERNAL)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"synced": 2}));
    assert_error(
        &app.send(
            "POST",
            "/users/sync",
            None,
            Some(users.clone()),
            &[("x-internal-secret", "nope")],
        )
        .await,
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &app.send("POST", "/users/sync", None, Some(users.clone()), &[])
            .await,
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &app.post("/users/sync", &student("u_5"), users.clone())
            .await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        app.post("/users/sync", &admin(), users).await.status,
        200,
        "admins may sync too"
    );
    let bad = app
        .post(
            "/users/sync",
            &admin(),
            json!({"users": [{"user_id": "u_3", "nickname": " "}]}),
        )
        .await;
    assert_error(&bad, 422, "VALIDATION_ERROR");
    assert!(bad.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("users[0]"));

    let s = student("u_2");
    let found = app.get("/users/search?q=alc", &s).await;
    assert_eq!(found.status, 200);
    assert_eq!(
        found.body["profiles"],
        json!([{"user_id": "u_1", "nickname": "alice", "avatar_url": "https://x.test/a.png", "roles": ["member"]}])
    );
    assert_eq!(found.body["next_cursor"], Value::Null);
    assert_error(&app.get("/users/search", &s).await, 422, "VALIDATION_ERROR");
    assert_eq!(
        app.get("/users/search?q=zzz", &s).await.body["profiles"],
        json!([])
    );

    let p = app.get("/profiles/u_1", &s).await;
    assert_eq!(
        p.body,
        json!({"user_id": "u_1", "nickname": "alice", "avatar_url": "https://x.test/a.png", "roles": ["member"], "presence": "offline"})
    );
    let hb = app
        .send(
            "POST",
            "/presence/heartbeat",
            Some(&student("u_1")),
            None,
            &[],
        )
        .await;
    assert_eq!(hb.status, 204);
    assert_eq!(
        app.get("/profiles/u_1", &s).await.body["presence"],
        "online"
    );
    assert_error(&app.get("/profiles/u_nobody", &s).await, 404, "NOT_FOUND");
    // A user with a valid token and no profile gets a minimal one.
    app.get("/items", &student("u_new")).await;
    let minimal = app.get("/profiles/u_new", &s).await;
    assert_eq!(minimal.status, 200, "{}", minimal.text);
    assert_eq!(minimal.body["nickname"], "u_new");
}

async fn chats_membership_and_privacy(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, u3, out) = (
        student("u_1"),
        student("u_2"),
        student("u_3"),
        student("u_9"),
    );
    let r = app.post("/chats", &u1, json!({"type": "group", "name": "kitchen-talk", "slug": null, "is_private": true, "member_ids": ["u_1", "u_2"]})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "type",
            "name",
            "slug",
            "is_private",
            "created_by",
            "created_at",
            "updated_at",
            "member_count",
            "settings"
        ]
    );
    assert_eq!(r.body["member_count"], 2);
    assert_eq!(r.body["created_by"], "u_1");
    assert_eq!(
        r.body["settings"],
        json!({"retention_days": 90, "post_policy": "any", "extra": {}})
    );
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(app.get(&format!("/chats/{id}"), &u2).await.body, r.body);

    // An outsider: the private chat does not exist, on every route.
    assert_error(
        &app.get(&format!("/chats/{id}"), &out).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.patch(&format!("/chats/{id}"), &out, json!({"name": "x"}))
            .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.post(
            &format!("/chats/{id}/members"),
            &out,
            json!({"user_id": "u_9"}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.send(
            "DELETE",
            &format!("/chats/{id}/members/u_2"),
            Some(&out),
            None,
            &[],
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_eq!(app.get("/chats", &out).await.body["chats"], json!([]));
    assert_eq!(
        app.get(&format!("/chats/{id}"), &admin()).await.status,
        200,
        "admins see every chat"
    );

    // Members read; only owners/moderators/admins manage.
    assert_error(
        &app.patch(&format!("/chats/{id}"), &u2, json!({"name": "mine"}))
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.post(
            &format!("/chats/{id}/members"),
            &u2,
            json!({"user_id": "u_3"}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    let renamed = app
        .patch(
            &format!("/chats/{id}"),
            &u1,
            json!({"name": "kitchen", "is_private": false}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert_eq!(renamed.body["name"], "kitchen");
    assert_eq!(
        app.get(&format!("/chats/{id}"), &out).await.status,
        200,
        "public now"
    );
    assert_error(
        &app.patch(&format!("/chats/{id}"), &u1, json!({"topic": "x"}))
            .await,
        422,
        "VALIDATION_ERROR",
    );

    // Members come and go.
    let m = app
        .post(
            &format!("/chats/{id}/members"),
            &u1,
            json!({"user_id": "u_3", "role": "member"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let mkeys: Vec<&str> = m
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(mkeys, ["id", "user_id", "role", "joined_at", "left_at"]);
    assert_eq!(m.body["left_at"], Value::Null);
    assert_error(
        &app.post(
            &format!("/chats/{id}/members"),
            &u1,
            json!({"user_id": "u_3"}),
        )
        .await,
        409,
        "CONFLICT",
    );
    assert_error(
        &app.post(
            &format!("/chats/{id}/members"),
            &u1,
            json!({"user_id": "u_4", "role": "king"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_eq!(
        app.get(&format!("/chats/{id}"), &u3).await.body["member_count"],
        3
    );
    let left = app
        .send(
            "DELETE",
            &format!("/chats/{id}/members/u_3"),
            Some(&u3),
            None,
            &[],
        )
        .await;
    assert_eq!(left.status, 204, "{}", left.text);
    assert_eq!(
        app.get(&format!("/chats/{id}"), &u1).await.body["member_count"],
        2
    );
    assert_error(
        &app.send(
            "DELETE",
            &format!("/chats/{id}/members/u_3"),
            Some(&u1),
            None,
            &[],
        )
        .await,
        404,
        "NOT_FOUND",
    );

    // dm: exactly two, one per pair (either way round).
    let dm = app
        .post("/chats", &u1, json!({"type": "dm", "member_ids": ["u_2"]}))
        .await;
    assert_eq!(dm.status, 201, "{}", dm.text);
    assert_eq!(dm.body["is_private"], true);
    assert_error(
        &app.post("/chats", &u2, json!({"type": "dm", "member_ids": ["u_1"]}))
            .await,
        409,
        "CONFLICT",
    );
    assert_error(
        &app.post(
            "/chats",
            &u1,
            json!({"type": "dm", "member_ids": ["u_2", "u_3"]}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    // channel: unique slug.
    let ch = app
        .post(
            "/chats",
            &u1,
            json!({"type": "channel", "name": "Lab news", "slug": "lab-news"}),
        )
        .await;
    assert_eq!(ch.status, 201, "{}", ch.text);
    assert_eq!(ch.body["is_private"], false);
    assert_error(
        &app.post(
            "/chats",
            &u2,
            json!({"type": "channel", "name": "Other", "slug": "lab-news"}),
        )
        .await,
        409,
        "CONFLICT",
    );
    assert_error(
        &app.post("/chats", &u2, json!({"type": "channel", "name": "No slug"}))
            .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post("/chats", &u2, json!({"type": "forum", "name": "x"}))
            .await,
        422,
        "VALIDATION_ERROR",
    );

    // My chats, filtered.
    let mine = app.get("/chats", &u1).await;
    assert_eq!(mine.body["chats"].as_array().unwrap().len(), 3);
    assert_eq!(
        app.get("/chats?type=dm", &u1).await.body["chats"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get("/chats?member=u_2", &u1).await.body["chats"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        app.get("/chats?q=KITCH", &u1).await.body["chats"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let p1 = app.get("/chats?limit=2", &u1).await;
    let c = p1.body["next_cursor"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/chats?limit=2&cursor={c}"), &u1)
            .await
            .body["chats"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Membership events leave the system under the seed's names.
    let feed = app.get("/admin/events?limit=200", &admin()).await;
    let joined: Vec<&Value> = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "chat.member.joined")
        .collect();
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0]["source"], "chat-svc");
    assert_eq!(joined[0]["data"]["user_id"], "u_3");
    assert!(feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "chat.member.left"));
}

async fn operation_settled(app: &TestApp, token: &str, op: &str) -> Value {
    app.settled_operation(token, op).await
}

async fn messages_are_posted_asynchronously(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, out) = (student("u_1"), student("u_2"), student("u_9"));
    let chat = app
        .post(
            "/chats",
            &u1,
            json!({"type": "group", "name": "kitchen", "member_ids": ["u_2"]}),
        )
        .await;
    let id = chat.body["id"].as_str().unwrap().to_string();
    let path = format!("/chats/{id}/messages");
    let body = json!({
        "text": "tea's out, restock pls", "type": "normal",
        "attachments": [{"url": "https://x.test/photo.jpg", "content_type": "image/jpeg", "size_bytes": 12345, "extra": {}}],
        "metadata": {"mentions": ["u_1"], "client": "web"}
    });
    let r = app
        .send(
            "POST",
            &path,
            Some(&u2),
            Some(body.clone()),
            &[("idempotency-key", "m-1")],
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = r.body["operation_id"].as_str().unwrap().to_string();
    assert_eq!(
        r.body,
        json!({"operation_id": op, "status": "accepted", "poll": format!("/operations/{op}")})
    );
    assert_eq!(r.headers["operation-id"], op.as_str());
    assert_eq!(r.headers["location"], format!("/operations/{op}").as_str());
    // The same key from the same user: the same operation, one message.
    let again = app
        .send(
            "POST",
            &path,
            Some(&u2),
            Some(body.clone()),
            &[("idempotency-key", "m-1")],
        )
        .await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["operation_id"], op.as_str());
    assert_eq!(again.headers["operation-id"], op.as_str());

    let done = operation_settled(&app, &u2, &op).await;
    assert_eq!(done["status"], "completed", "{done}");
    let msg_id = done["message_id"].as_str().unwrap().to_string();
    assert_eq!(done["error"], Value::Null);
    assert_error(
        &app.get(&format!("/operations/{op}"), &u1).await,
        404,
        "NOT_FOUND",
    );

    let list = eventually(Duration::from_secs(20), || async {
        let l = app.get(&path, &u1).await;
        (l.body["messages"].as_array().map(|a| a.len()) == Some(1)).then_some(l)
    })
    .await;
    let m = &list.body["messages"][0];
    let keys: Vec<&str> = m.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "id",
            "chat_id",
            "type",
            "author_id",
            "text",
            "metadata",
            "created_at",
            "edited_at",
            "deleted_at",
            "filtered",
            "filter_matches",
            "flagged_at",
            "attachments",
            "reactions"
        ]
    );
    assert_eq!(m["id"], msg_id.as_str());
    assert_eq!(m["author_id"], "u_2");
    assert_eq!(m["text"], "tea's out, restock pls");
    assert_eq!(m["metadata"], json!({"mentions": ["u_1"], "client": "web"}));
    assert_eq!(m["filtered"], false);
    assert_eq!(m["attachments"][0]["url"], "https://x.test/photo.jpg");
    assert!(m["attachments"][0]["id"].is_string());

    // Outsiders see nothing and cannot post; bad input is 422; notices need rights.
    assert_error(&app.get(&path, &out).await, 404, "NOT_FOUND");
    assert_error(
        &app.post(&path, &out, json!({"text": "hi"})).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.post(&path, &u2, json!({"text": " "})).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(&path, &u2, json!({"text": "x".repeat(4001)}))
            .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(&path, &u2, json!({"text": "hi", "type": "shout"}))
            .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(&path, &u2, json!({"text": "hi", "type": "notice"}))
            .await,
        403,
        "FORBIDDEN",
    );
    // A second message, and paging newest first.
    let r2 = app.post(&path, &u1, json!({"text": "second"})).await;
    let op2 = r2.body["operation_id"].as_str().unwrap().to_string();
    assert_eq!(
        operation_settled(&app, &u1, &op2).await["status"],
        "completed"
    );
    let page = eventually(Duration::from_secs(20), || async {
        let p = app.get(&format!("{path}?limit=1"), &u2).await;
        (p.body["messages"][0]["text"] == "second").then_some(p)
    })
    .await;
    let c = page.body["next_cursor"].as_str().unwrap();
    let older = app.get(&format!("{path}?limit=1&cursor={c}"), &u2).await;
    assert_eq!(older.body["messages"][0]["text"], "tea's out, restock pls");

    // Edits: the author only; edited_at set; validated like a new message.
    let edit_path = format!("{path}/{msg_id}");
    assert_error(
        &app.patch(&edit_path, &u1, json!({"text": "mine"})).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.patch(&edit_path, &u2, json!({"text": "x".repeat(4001)}))
            .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.patch(&edit_path, &out, json!({"text": "x"})).await,
        404,
        "NOT_FOUND",
    );
    let edited = app
        .patch(&edit_path, &u2, json!({"text": "tea's back!"}))
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(edited.body["text"], "tea's back!");
    assert!(edited.body["edited_at"].is_string());
    let history = app.get("/admin/events?limit=200", &admin()).await;
    assert!(history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "chat.message.edited"));

    // Soft delete: not by another member; by the author; then its text is gone for everyone.
    let u3 = student("u_3");
    app.post(
        &format!("/chats/{id}/members"),
        &u1,
        json!({"user_id": "u_3"}),
    )
    .await;
    let del = format!("{path}/{msg_id}");
    assert_error(
        &app.send("DELETE", &del, Some(&u3), None, &[]).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.send("DELETE", &del, Some(&out), None, &[]).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.send(
            "DELETE",
            &format!("{path}/not-a-uuid"),
            Some(&u2),
            None,
            &[],
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_eq!(
        app.send("DELETE", &del, Some(&u2), None, &[]).await.status,
        204
    );
    assert_error(
        &app.send("DELETE", &del, Some(&u1), None, &[]).await,
        404,
        "NOT_FOUND",
    );
    let after_delete = app.get(&path, &u3).await;
    let gone_msg = after_delete.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == msg_id.as_str())
        .unwrap()
        .clone();
    assert!(gone_msg["deleted_at"].is_string());
    assert_eq!(
        gone_msg["text"],
        Value::Null,
        "the text is no longer served"
    );

    // Someone removed after submitting: the worker re-checks and rejects.
    let gone = app.post(&path, &u2, json!({"text": "bye"})).await;
    let gone_op = gone.body["operation_id"].as_str().unwrap().to_string();
    let _ = operation_settled(&app, &u2, &gone_op).await; // (races the removal below; either outcome is valid)
    assert_eq!(
        app.send(
            "DELETE",
            &format!("/chats/{id}/members/u_2"),
            Some(&u1),
            None,
            &[]
        )
        .await
        .status,
        204
    );
    let direct = domain::chat::Submission {
        operation_id: uuid::Uuid::now_v7(),
        message_id: uuid::Uuid::now_v7(),
        chat_id: id.parse().unwrap(),
        author_id: "u_2".into(),
        kind: domain::chat::MessageType::Normal,
        text: "late".into(),
        attachments: vec![],
        metadata: json!({}),
        filter_matches: vec![],
    };
    commands::message::submit(
        &app.state.bus,
        &commands::Context::new(domain::Actor::new("u_2", vec![domain::Role::Student])),
        direct.clone(),
        None,
    )
    .await
    .unwrap();
    let rejected = operation_settled(&app, &u2, &direct.operation_id.to_string()).await;
    assert_eq!(rejected["status"], "rejected");
    assert!(rejected["error"].as_str().unwrap().contains("members"));

    // chat.message.created leaves the system with the seed's data fields, without the text.
    let feed = app.get("/admin/events?limit=200", &admin()).await;
    let created: Vec<&Value> = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "chat.message.created")
        .collect();
    assert!(created.len() >= 2);
    let first = created
        .iter()
        .find(|e| e["data"]["msg_id"] == msg_id.as_str())
        .unwrap();
    assert_eq!(first["source"], "chat-svc");
    let data_keys: Vec<&str> = first["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(data_keys, ["chat_id", "msg_id", "author_id", "created_at"]);
}
