//! Communication, moderation part: filters, sanctions, reactions, reports, notices, search and the
//! posting rate limit, over HTTP on SQLite and PostgreSQL.

use std::time::Duration;

use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(
    filters_mask_and_flag_messages,
    sanctions_mute_ban_and_revoke,
    reactions_on_messages,
    reports_are_filed_and_triaged,
    notices_and_search,
    posting_is_rate_limited
);

async fn group(app: &TestApp, owner: &str, name: &str, members: &[&str]) -> String {
    let r = app
        .post(
            "/chats",
            owner,
            json!({"type": "group", "name": name, "member_ids": members}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

/// Posts a message and waits for its operation to settle; the settled operation.
async fn post(app: &TestApp, token: &str, chat: &str, text: &str) -> Value {
    app.post_message(token, chat, text).await
}

async fn message(app: &TestApp, token: &str, chat: &str, id: &str) -> Value {
    eventually(Duration::from_secs(20), || async {
        let l = app.get(&format!("/chats/{chat}/messages"), token).await;
        l.body["messages"]
            .as_array()?
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
    })
    .await
}

/// Every CloudEvent in the audit feed, in log order.
async fn feed(app: &TestApp) -> Vec<Value> {
    let mut out = vec![];
    let mut after = 0;
    loop {
        let r = app
            .get(&format!("/admin/events?after={after}&limit=200"), &admin())
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let events = r.body["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return out;
        }
        after = events.last().unwrap()["position"].as_i64().unwrap();
        out.extend(events);
    }
}

async fn filters_mask_and_flag_messages(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2) = (student("u_1"), student("u_2"));
    let initial = app.get("/moderation/filters", &u1).await;
    assert_eq!(initial.body, json!({"phrases": [], "version": 0}));

    let phrases = json!(["badword", "regex:^foo.*$"]);
    assert_error(
        &app.send(
            "PUT",
            "/moderation/filters",
            Some(&u1),
            Some(json!({"phrases": phrases, "version": 1})),
            &[],
        )
        .await,
        403,
        "FORBIDDEN",
    );
    let put = |body: Value| {
        let app = &app;
        async move {
            app.send(
                "PUT",
                "/moderation/filters",
                Some(&admin()),
                Some(body),
                &[],
            )
            .await
        }
    };
    assert_error(
        &put(json!({"phrases": phrases, "version": 2})).await,
        409,
        "CONFLICT",
    );
    assert_error(
        &put(json!({"phrases": ["regex:(unclosed"], "version": 1})).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &put(json!({"phrases": ["regex:\\w{1000}\\w{1000}\\w{1000}"], "version": 1})).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &put(json!({"phrases": "badword", "version": 1})).await,
        422,
        "VALIDATION_ERROR",
    );
    let ok = put(json!({"phrases": phrases, "version": 1})).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body, json!({"phrases": phrases, "version": 1}));
    assert_eq!(app.get("/moderation/filters", &u2).await.body["version"], 1);
    assert_error(
        &put(json!({"phrases": [], "version": 1})).await,
        409,
        "CONFLICT",
    );

    let t = app
        .post(
            "/moderation/filters/test",
            &u1,
            json!({"text": "hello world"}),
        )
        .await;
    assert_eq!(t.status, 200);
    assert_eq!(t.body["filtered"], false);
    assert_eq!(t.body["matches"], json!([]));
    let t = app
        .post(
            "/moderation/filters/test",
            &u1,
            json!({"text": "what a BadWord"}),
        )
        .await;
    assert_eq!(t.body["filtered"], true);
    assert_eq!(t.body["matches"], json!(["badword"]));
    assert_eq!(t.body["masked_text"], "what a *******");

    let chat = group(&app, &u1, "kitchen", &["u_2"]).await;
    let op = post(&app, &u2, &chat, "this BADWORD tea").await;
    assert_eq!(op["status"], "completed", "{op}");
    let id = op["message_id"].as_str().unwrap().to_string();
    let m = message(&app, &u1, &chat, &id).await;
    assert_eq!(m["text"], "this ******* tea");
    assert_eq!(m["filtered"], true);
    assert_eq!(m["filter_matches"], json!(["badword"]));
    assert!(m["flagged_at"].is_string(), "{m}");
    let clean = post(&app, &u2, &chat, "badwords are fine").await;
    let c = message(&app, &u1, &chat, clean["message_id"].as_str().unwrap()).await;
    assert_eq!(c["text"], "badwords are fine");
    assert_eq!(c["filtered"], false);
    assert_eq!(c["flagged_at"], Value::Null);

    // Edits run through the filters again.
    let cid = clean["message_id"].as_str().unwrap();
    let e = app
        .patch(
            &format!("/chats/{chat}/messages/{cid}"),
            &u2,
            json!({"text": "foo is a badword"}),
        )
        .await;
    assert_eq!(e.status, 200, "{}", e.text);
    assert_eq!(e.body["text"], "****************");
    assert_eq!(e.body["filtered"], true);
    assert_eq!(
        e.body["filter_matches"],
        json!(["badword", "regex:^foo.*$"])
    );

    let events = feed(&app).await;
    let flagged: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "chat.message.flagged")
        .collect();
    assert_eq!(flagged.len(), 2, "one per filtered post or edit");
    assert_eq!(flagged[0]["source"], "chat-svc");
    assert_eq!(flagged[0]["data"]["msg_id"], id.as_str());
    assert_eq!(flagged[0]["data"]["chat_id"], chat.as_str());
    assert_eq!(flagged[0]["data"]["matches"], json!(["badword"]));
    // The banned text itself was never stored, in any event.
    let all = serde_json::to_string(&events).unwrap().to_lowercase();
    assert!(!all.contains("badword tea"), "masked before it was stored");
}

async fn sanctions_mute_ban_and_revoke(b: Backend) {
    let app = spawn_app(b).await;
    let (owner, u2, u3, out) = (
        student("u_1"),
        student("u_2"),
        student("u_3"),
        student("u_9"),
    );
    let chat = group(&app, &owner, "kitchen", &["u_2", "u_3"]).await;
    let other = group(&app, &u3, "games", &["u_2"]).await;

    let mute = |token: String, body: Value| {
        let app = &app;
        async move { app.post("/moderation/actions/mute", &token, body).await }
    };
    // A plain member does not sanction; an outsider does not even see the private chat.
    assert_error(
        &mute(
            u3.clone(),
            json!({"user_id": "u_2", "scope": "chat", "chat_id": chat}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &mute(
            out.clone(),
            json!({"user_id": "u_2", "scope": "chat", "chat_id": chat}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &mute(
            owner.clone(),
            json!({"user_id": "u_2", "scope": "chat", "chat_id": chat, "until": "2000-01-01T00:00:00Z"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &mute(owner.clone(), json!({"user_id": "u_2", "scope": "chat"})).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &mute(
            owner.clone(),
            json!({"user_id": "u_2", "scope": "planet", "chat_id": chat}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &mute(
            owner.clone(),
            json!({"user_id": "u_2", "type": "ban", "scope": "chat", "chat_id": chat}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let m = mute(
        owner.clone(),
        json!({"user_id": "u_2", "scope": "chat", "chat_id": chat, "reason": "spam", "until": until}),
    )
    .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let sid = m.body["id"].as_str().unwrap().to_string();
    assert_eq!(m.body["type"], "mute");
    assert_eq!(m.body["scope"], "chat");
    assert_eq!(m.body["chat_id"], chat.as_str());
    assert_eq!(m.body["applied_by"], "u_1");
    assert_eq!(m.body["reason"], "spam");
    assert_eq!(m.body["revoked_at"], Value::Null);
    // Muted: reads, does not post here; posts elsewhere.
    assert_error(
        &app.post(
            &format!("/chats/{chat}/messages"),
            &u2,
            json!({"text": "hi"}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        app.get(&format!("/chats/{chat}/messages"), &u2)
            .await
            .status,
        200
    );
    assert_eq!(
        post(&app, &u2, &other, "hi there").await["status"],
        "completed"
    );

    let list = app.get("/moderation/sanctions", &admin()).await;
    assert_eq!(list.body["sanctions"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["sanctions"][0]["id"], sid.as_str());
    assert_eq!(
        app.get("/moderation/sanctions?user_id=u_3", &admin())
            .await
            .body["sanctions"],
        json!([])
    );
    assert_eq!(
        app.get("/moderation/sanctions", &u2).await.body["sanctions"][0]["id"],
        sid.as_str(),
        "the sanctioned user sees their own"
    );
    assert_eq!(
        app.get("/moderation/sanctions", &out).await.body["sanctions"],
        json!([]),
        "an outsider sees nothing of a private chat"
    );

    let revoke = |token: String| {
        let app = &app;
        let sid = sid.clone();
        async move {
            app.post(
                &format!("/moderation/sanctions/{sid}/revoke"),
                &token,
                json!({}),
            )
            .await
        }
    };
    assert_error(&revoke(u3.clone()).await, 403, "FORBIDDEN");
    assert_error(&revoke(out.clone()).await, 404, "NOT_FOUND");
    let r = revoke(owner.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["revoked_by"], "u_1");
    assert!(r.body["revoked_at"].is_string());
    assert_error(&revoke(owner.clone()).await, 409, "CONFLICT");
    assert_eq!(
        app.get("/moderation/sanctions", &admin()).await.body["sanctions"],
        json!([])
    );
    assert_eq!(post(&app, &u2, &chat, "back").await["status"], "completed");

    // A chat ban ends membership and blocks re-adding.
    let ban = app
        .post(
            "/moderation/actions/ban",
            &owner,
            json!({"user_id": "u_2", "type": "ban", "scope": "chat", "chat_id": chat, "reason": "abuse"}),
        )
        .await;
    assert_eq!(ban.status, 201, "{}", ban.text);
    assert_error(
        &app.get(&format!("/chats/{chat}"), &u2).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.post(
            &format!("/chats/{chat}/members"),
            &owner,
            json!({"user_id": "u_2"}),
        )
        .await,
        409,
        "CONFLICT",
    );
    // A global ban: admins only; blocks posting everywhere.
    assert_error(
        &app.post(
            "/moderation/actions/ban",
            &owner,
            json!({"user_id": "u_2", "scope": "global"}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    let g = app
        .post(
            "/moderation/actions/ban",
            &admin(),
            json!({"user_id": "u_2", "scope": "global", "reason": "abuse"}),
        )
        .await;
    assert_eq!(g.status, 201, "{}", g.text);
    assert_eq!(g.body["chat_id"], Value::Null);
    let blocked = app
        .post(
            &format!("/chats/{other}/messages"),
            &u2,
            json!({"text": "x"}),
        )
        .await;
    assert_error(&blocked, 403, "FORBIDDEN");
    assert!(blocked.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("banned everywhere"));

    let applied: Vec<Value> = feed(&app)
        .await
        .into_iter()
        .filter(|e| e["type"] == "chat.moderation.sanction.applied")
        .collect();
    assert_eq!(applied.len(), 3);
    assert_eq!(applied[0]["source"], "chat-svc");
    let d = &applied[0]["data"];
    assert_eq!(
        (
            d["user_id"].clone(),
            d["type"].clone(),
            d["scope"].clone(),
            d["chat_id"].clone(),
            d["applied_by"].clone()
        ),
        (
            json!("u_2"),
            json!("mute"),
            json!("chat"),
            json!(chat),
            json!("u_1")
        )
    );
    assert!(d["until"].is_string());
}

async fn reactions_on_messages(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, u3) = (student("u_1"), student("u_2"), student("u_3"));
    let chat = group(&app, &u1, "kitchen", &["u_2"]).await;
    let op = post(&app, &u2, &chat, "tea's out").await;
    let id = op["message_id"].as_str().unwrap().to_string();
    let path = format!("/chats/{chat}/messages/{id}/reactions");
    let r = app.post(&path, &u1, json!({"emoji": "👍"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["user_id"], "u_1");
    assert_eq!(r.body["emoji"], "👍");
    let rid = r.body["id"].as_str().unwrap().to_string();
    let again = app.post(&path, &u1, json!({"emoji": "👍"})).await;
    assert_eq!(
        again.body["id"],
        rid.as_str(),
        "one reaction per user and emoji"
    );
    assert_eq!(
        app.post(&path, &u2, json!({"emoji": "🍵"})).await.status,
        201
    );
    assert_error(
        &app.post(&path, &u1, json!({"emoji": "two words"})).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_error(
        &app.post(&path, &u3, json!({"emoji": "👍"})).await,
        404,
        "NOT_FOUND",
    );
    let m = message(&app, &u1, &chat, &id).await;
    let reactions = m["reactions"].as_array().unwrap();
    assert_eq!(reactions.len(), 2);
    assert_eq!(
        reactions[0],
        json!({"id": rid, "user_id": "u_1", "emoji": "👍", "created_at": reactions[0]["created_at"]})
    );
    let del = app
        .send("DELETE", &format!("{path}/👍"), Some(&u1), None, &[])
        .await;
    assert_eq!(del.status, 204, "{}", del.text);
    assert_error(
        &app.send("DELETE", &format!("{path}/👍"), Some(&u1), None, &[])
            .await,
        404,
        "NOT_FOUND",
    );
    let m = message(&app, &u1, &chat, &id).await;
    assert_eq!(m["reactions"].as_array().unwrap().len(), 1);
    assert_eq!(m["reactions"][0]["emoji"], "🍵");
    // A public channel: readable by anyone, reactions by members only.
    let ch = app
        .post(
            "/chats",
            &u1,
            json!({"type": "channel", "name": "news", "slug": "news"}),
        )
        .await;
    let ch = ch.body["id"].as_str().unwrap().to_string();
    let op = post(&app, &u1, &ch, "hello").await;
    let mid = op["message_id"].as_str().unwrap();
    assert_error(
        &app.post(
            &format!("/chats/{ch}/messages/{mid}/reactions"),
            &u3,
            json!({"emoji": "👍"}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    // A message of another chat does not exist here.
    assert_error(
        &app.post(
            &format!("/chats/{chat}/messages/{mid}/reactions"),
            &u1,
            json!({"emoji": "👍"}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
}

async fn reports_are_filed_and_triaged(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, out) = (student("u_1"), student("u_2"), student("u_9"));
    let chat = group(&app, &u1, "kitchen", &["u_2"]).await;
    let op = post(&app, &u2, &chat, "buy my stuff").await;
    let mid = op["message_id"].as_str().unwrap().to_string();

    let r = app
        .post(
            "/reports",
            &u1,
            json!({"reason": "spam", "message_id": mid, "evidence": ["https://x.test/shot.png"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let rid = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.body,
        json!({"id": rid, "reporter_id": "u_1", "message_id": mid, "reported_user_id": "u_2",
               "reason": "spam", "evidence": ["https://x.test/shot.png"], "status": "open",
               "resolution_notes": null, "created_at": r.body["created_at"], "updated_at": r.body["updated_at"]})
    );
    // An outsider cannot report (or learn of) a message of a private chat.
    assert_error(
        &app.post(
            "/reports",
            &out,
            json!({"reason": "spam", "message_id": mid}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.post("/reports", &out, json!({"reason": "spam"})).await,
        422,
        "VALIDATION_ERROR",
    );
    let user_report = app
        .post(
            "/reports",
            &out,
            json!({"reason": "rude", "reported_user_id": "u_2"}),
        )
        .await;
    assert_eq!(user_report.status, 201);

    assert_error(&app.get("/reports", &u1).await, 403, "FORBIDDEN");
    let all = app.get("/reports", &admin()).await;
    assert_eq!(all.body["reports"].as_array().unwrap().len(), 2);
    assert_eq!(app.get(&format!("/reports/{rid}"), &u1).await.status, 200);
    assert_error(
        &app.get(&format!("/reports/{rid}"), &out).await,
        404,
        "NOT_FOUND",
    );

    let patch = |body: Value, token: String| {
        let app = &app;
        let rid = rid.clone();
        async move { app.patch(&format!("/reports/{rid}"), &token, body).await }
    };
    assert_error(
        &patch(json!({"status": "triaged"}), u1.clone()).await,
        403,
        "FORBIDDEN",
    );
    let t = patch(json!({"status": "triaged"}), admin()).await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["status"], "triaged");
    assert_error(
        &patch(json!({"status": "open"}), admin()).await,
        409,
        "CONFLICT",
    );
    assert_error(
        &patch(json!({"status": "closed"}), admin()).await,
        422,
        "VALIDATION_ERROR",
    );
    let done = patch(
        json!({"status": "resolved", "resolution_notes": "user warned"}),
        admin(),
    )
    .await;
    assert_eq!(done.body["status"], "resolved");
    assert_eq!(done.body["resolution_notes"], "user warned");
    assert_error(
        &patch(json!({"status": "rejected"}), admin()).await,
        409,
        "CONFLICT",
    );

    let open = app.get("/reports?status=open", &admin()).await;
    assert_eq!(open.body["reports"].as_array().unwrap().len(), 1);
    assert_eq!(open.body["reports"][0]["reason"], "rude");
    let resolved = app.get("/reports?status=resolved", &admin()).await;
    assert_eq!(resolved.body["reports"][0]["id"], rid.as_str());
    assert_error(
        &app.get("/reports?status=bogus", &admin()).await,
        422,
        "VALIDATION_ERROR",
    );
}

async fn notices_and_search(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, out) = (student("u_1"), student("u_2"), student("u_9"));
    let a = group(&app, &u1, "kitchen", &["u_2"]).await;
    let c = group(&app, &u2, "games", &[]).await;

    let body = json!({"title": "Kitchen closed", "body": "Cleaning 14:00-15:00", "chat_ids": [a, c], "roles": ["member"]});
    assert_error(
        &app.post("/notices", &u1, body.clone()).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &app.post(
            "/notices",
            &admin(),
            json!({"title": "x", "body": "y", "chat_ids": [uuid::Uuid::now_v7()]}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    let n = app.post("/notices", &admin(), body).await;
    assert_eq!(n.status, 201, "{}", n.text);
    assert_eq!(n.body["title"], "Kitchen closed");
    assert_eq!(n.body["created_by"], "u_admin");
    assert_eq!(n.body["chat_ids"], json!([a, c]));
    assert_eq!(n.body["roles"], json!(["member"]));
    assert!(n.body["created_at"].is_string());
    for (chat, token) in [(&a, &u1), (&c, &u2)] {
        let notice = eventually(Duration::from_secs(20), || async {
            let l = app.get(&format!("/chats/{chat}/messages"), token).await;
            l.body["messages"]
                .as_array()?
                .iter()
                .find(|m| m["type"] == "notice")
                .cloned()
        })
        .await;
        assert_eq!(notice["author_id"], "u_admin");
        assert_eq!(notice["text"], "Kitchen closed\n\nCleaning 14:00-15:00");
    }

    // Search: only chats the caller can read; deleted messages are not found.
    let m1 = post(&app, &u1, &a, "The jasmine tea is back").await;
    post(&app, &u2, &c, "Jasmine tournament tonight").await;
    let gone = post(&app, &u1, &a, "jasmine secret").await;
    let gone_id = gone["message_id"].as_str().unwrap();
    assert_eq!(
        app.send(
            "DELETE",
            &format!("/chats/{a}/messages/{gone_id}"),
            Some(&u1),
            None,
            &[]
        )
        .await
        .status,
        204
    );
    let ids = |r: &Res| -> Vec<String> {
        r.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let found = app.get("/messages/search?q=JASMINE%20tea", &u1).await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_eq!(
        ids(&found),
        vec![m1["message_id"].as_str().unwrap().to_string()]
    );
    assert_eq!(found.body["messages"][0]["text"], "The jasmine tea is back");
    let both = app.get("/messages/search?q=jasmine", &u2).await;
    assert_eq!(both.body["messages"].as_array().unwrap().len(), 2);
    let page = app.get("/messages/search?q=jasmine&limit=1", &u2).await;
    assert_eq!(page.body["messages"].as_array().unwrap().len(), 1);
    let cursor = page.body["next_cursor"].as_str().unwrap().to_string();
    let rest = app
        .get(
            &format!("/messages/search?q=jasmine&limit=1&cursor={cursor}"),
            &u2,
        )
        .await;
    assert_eq!(rest.body["messages"].as_array().unwrap().len(), 1);
    assert_ne!(ids(&rest), ids(&page));
    let only_c = app
        .get(&format!("/messages/search?q=jasmine&chat_id={c}"), &u2)
        .await;
    assert_eq!(only_c.body["messages"][0]["chat_id"], c.as_str());
    assert_eq!(only_c.body["messages"].as_array().unwrap().len(), 1);
    // An outsider finds nothing and the private chat does not exist for them.
    assert_eq!(
        app.get("/messages/search?q=jasmine", &out).await.body["messages"],
        json!([])
    );
    assert_error(
        &app.get(&format!("/messages/search?q=jasmine&chat_id={a}"), &out)
            .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &app.get("/messages/search?q=%20%2A%22", &u1).await,
        422,
        "VALIDATION_ERROR",
    );
    assert_eq!(
        app.get("/messages/search?q=jasmine", &admin()).await.body["messages"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "admins search every chat"
    );
}

async fn posting_is_rate_limited(b: Backend) {
    let app = spawn_app(b).await;
    let u1 = student("u_1");
    let chat = group(&app, &u1, "spam", &["u_2"]).await;
    let path = format!("/chats/{chat}/messages");
    // 60 at once: at most the burst of 10 plus what refills meanwhile gets through.
    let sends = (0..60).map(|i| app.post(&path, &u1, json!({"text": format!("m{i}")})));
    let results = futures::future::join_all(sends).await;
    let accepted = results.iter().filter(|r| r.status == 202).count();
    let limited: Vec<&Res> = results.iter().filter(|r| r.status == 429).collect();
    assert_eq!(accepted + limited.len(), 60);
    assert!(accepted >= 10, "the burst is allowed: {accepted}");
    assert!(!limited.is_empty(), "past the rate: 429");
    assert_error(limited[0], 429, "RATE_LIMITED");
    let retry: u64 = limited[0].headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // Another user is not limited by the first one's burst.
    assert_eq!(
        app.post(&path, &student("u_2"), json!({"text": "x"}))
            .await
            .status,
        202
    );
}
