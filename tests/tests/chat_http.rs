//! Communication, first part: profiles from User Management, search, presence, chats, members and
//! privacy, over HTTP on SQLite and PostgreSQL.

use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(
    profiles_sync_search_and_presence,
    chats_membership_and_privacy
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
