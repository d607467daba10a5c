//! The security review of 2026-11-30 (`docs/SECURITY.md`): each finding's repro, as a test that
//! failed on 7502907 and passes now. Backend-independent findings run on SQLite and PostgreSQL;
//! NUL bytes (L1) are a PostgreSQL failure, so they also run on both (the rule is the same).

use std::time::Duration;

use benchkit::client::{Client, Frame};
use fafcab_tests::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

on_both_backends!(
    h1_damage_charges_only_a_past_holder,
    m4_auditors_are_read_only,
    m2_moderators_cannot_act_on_owners_or_moderators,
    m3_sanctions_and_membership_apply_to_edits_and_reactions,
    m3_edits_and_reactions_share_the_posting_rate_limit,
    m8_member_ids_are_capped_before_de_duplication,
    l1_nul_is_a_validation_error,
    l10_a_retried_post_replays_before_the_checks,
    m1_ws_closes_when_the_token_expires,
    l6_typing_and_read_receipts_reach_members_only,
    m7_live_connections_per_user_are_capped,
    l9_filter_tests_are_rate_limited,
    m3_ws_ops_are_budgeted,
);

const DEADLINE: Duration = Duration::from_secs(20);

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

/// Posts a message and waits until it is posted; its id.
async fn posted(app: &TestApp, token: &str, chat: &str, text: &str) -> String {
    app.posted_message(token, chat, text).await
}

async fn debts_of(app: &TestApp, user: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/budget/debts?user_id={user}"), &admin())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["debts"].as_array().unwrap().clone()
}

/// H1: owning an asset is no way to book a debt against a stranger; the sum charged to one
/// user never exceeds the replacement cost.
async fn h1_damage_charges_only_a_past_holder(b: Backend) {
    let app = spawn_app(b).await;
    let stu = student("u_stu");
    let r = app
        .post(
            "/assets",
            &stu,
            json!({"name": "x", "category": "c", "owner_id": "u_stu",
                   "replacement_cost": 1_000_000_000, "currency": "MDL"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let a = r.body["id"].as_str().unwrap().to_string();
    let damage = format!("/assets/{a}/damage");
    // The review's repro: a debt of 1e9 against a user who never borrowed it.
    assert_error(
        &app.post(
            &damage,
            &stu,
            json!({"user_id": "u_victim", "description": "broke it", "cost": 1_000_000_000}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    // Someone who did borrow it may be charged, by the owner, up to the replacement cost in all.
    let due = json!({"due_at": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()});
    let r = app
        .post(&format!("/assets/{a}/take"), &student("u_b"), due)
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            &format!("/assets/{a}/return"),
            &student("u_b"),
            json!({"condition": "damaged"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .post(
            &damage,
            &stu,
            json!({"user_id": "u_b", "description": "cracked", "cost": 600_000_000}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_error(
        &app.post(
            &damage,
            &stu,
            json!({"user_id": "u_b", "description": "again", "cost": 400_000_000.01}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    // Staff may still charge anyone (within the same bound).
    let r = app
        .post(
            &damage,
            &executor(),
            json!({"user_id": "u_c", "description": "seen on camera", "cost": 5}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    eventually(DEADLINE, || async {
        (debts_of(&app, "u_b").await.len() == 1 && debts_of(&app, "u_c").await.len() == 1)
            .then_some(())
    })
    .await;
    assert!(debts_of(&app, "u_victim").await.is_empty());
}

/// M4: an auditor changes nothing, in Tea or Chat, whatever the route.
async fn m4_auditors_are_read_only(b: Backend) {
    let app = spawn_app(b).await;
    let item = app.item("Green tea", 0).await;
    app.batch(&item, 10, None).await;
    let aud = auditor();
    assert_error(
        &app.post(&format!("/items/{item}/consume"), &aud, json!({"qty": 5}))
            .await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        app.get(&format!("/items/{item}"), &aud).await.body["stock_qty"],
        10
    );
    assert_error(
        &app.post("/chats", &aud, json!({"type": "group", "name": "x"}))
            .await,
        403,
        "FORBIDDEN",
    );
    // Even as a moderator of a chat an admin put them in.
    let chat = group(&app, &admin(), "lab", &["u_1"]).await;
    let r = app
        .post(
            &format!("/chats/{chat}/members"),
            &admin(),
            json!({"user_id": "u_audit", "role": "moderator"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let m = posted(&app, &student("u_1"), &chat, "hello").await;
    let forbidden = [
        app.post(
            &format!("/chats/{chat}/messages"),
            &aud,
            json!({"text": "hi"}),
        )
        .await,
        app.post(
            &format!("/chats/{chat}/messages/{m}/reactions"),
            &aud,
            json!({"emoji": "👍"}),
        )
        .await,
        app.post("/reports", &aud, json!({"reason": "spam", "message_id": m}))
            .await,
        app.send(
            "PUT",
            &format!("/chats/{chat}/read"),
            Some(&aud),
            Some(json!({"message_id": m})),
            &[],
        )
        .await,
        app.send(
            "PUT",
            "/retention",
            Some(&aud),
            Some(json!({"chat_id": chat, "retention_days": 7})),
            &[],
        )
        .await,
        app.patch(&format!("/chats/{chat}"), &aud, json!({"name": "mine"}))
            .await,
        app.post(
            "/moderation/actions/mute",
            &aud,
            json!({"user_id": "u_1", "scope": "chat", "chat_id": chat}),
        )
        .await,
    ];
    for r in &forbidden {
        assert_error(r, 403, "FORBIDDEN");
    }
    // GraphQL goes through the same commands.
    let r = app
        .post(
            "/graphql",
            &aud,
            json!({"query": format!("mutation {{ consume(itemId: \"{item}\", qty: 1) {{ id }} }}")}),
        )
        .await;
    assert_eq!(
        r.body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{}",
        r.text
    );
}

/// M2: owner > moderator > member. A moderator cannot remove, ban, mute or undo the sanctions
/// of the owner or another moderator; the owner (and admins) can.
async fn m2_moderators_cannot_act_on_owners_or_moderators(b: Backend) {
    let app = spawn_app(b).await;
    let (owner, m1, m2) = (student("u_owner"), student("u_mod"), student("u_mod2"));
    let chat = group(&app, &owner, "club", &["u_3"]).await;
    for m in ["u_mod", "u_mod2"] {
        let r = app
            .post(
                &format!("/chats/{chat}/members"),
                &owner,
                json!({"user_id": m, "role": "moderator"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // The review's repro: a moderator bans the owner.
    for kind in ["ban", "mute"] {
        for target in ["u_owner", "u_mod2"] {
            assert_error(
                &app.post(
                    &format!("/moderation/actions/{kind}"),
                    &m1,
                    json!({"user_id": target, "scope": "chat", "chat_id": chat}),
                )
                .await,
                403,
                "FORBIDDEN",
            );
        }
    }
    for target in ["u_owner", "u_mod2"] {
        assert_error(
            &app.send(
                "DELETE",
                &format!("/chats/{chat}/members/{target}"),
                Some(&m1),
                None,
                &[],
            )
            .await,
            403,
            "FORBIDDEN",
        );
    }
    // A moderator still moderates plain members.
    let r = app
        .post(
            "/moderation/actions/mute",
            &m1,
            json!({"user_id": "u_3", "scope": "chat", "chat_id": chat}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The owner's sanction is not a moderator's to revoke; their own is.
    let by_owner = app
        .post(
            "/moderation/actions/mute",
            &owner,
            json!({"user_id": "u_mod2", "scope": "chat", "chat_id": chat}),
        )
        .await;
    assert_eq!(by_owner.status, 201, "{}", by_owner.text);
    let sid = by_owner.body["id"].as_str().unwrap();
    assert_error(
        &app.post(
            &format!("/moderation/sanctions/{sid}/revoke"),
            &m1,
            json!({}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    let own = r.body["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/moderation/sanctions/{own}/revoke"),
            &m1,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The owner removes a moderator; an admin removes the owner.
    let r = app
        .send(
            "DELETE",
            &format!("/chats/{chat}/members/u_mod2"),
            Some(&owner),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app
        .send(
            "DELETE",
            &format!("/chats/{chat}/members/u_owner"),
            Some(&admin()),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    // Leaving stays open to everyone.
    let r = app
        .send(
            "DELETE",
            &format!("/chats/{chat}/members/u_mod"),
            Some(&m1),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let _ = m2;
}

/// M3: a muted or banned author (in the chat or globally) and an ex-member neither edit nor react.
async fn m3_sanctions_and_membership_apply_to_edits_and_reactions(b: Backend) {
    let app = spawn_app(b).await;
    let (owner, x) = (student("u_owner"), student("u_x"));
    let chat = group(&app, &owner, "club", &["u_x"]).await;
    let m = posted(&app, &x, &chat, "hello").await;
    let edit = |tok: String| {
        let (app, path) = (&app, format!("/chats/{chat}/messages/{m}"));
        async move { app.patch(&path, &tok, json!({"text": "spam"})).await }
    };
    let react = |tok: String| {
        let (app, path) = (&app, format!("/chats/{chat}/messages/{m}/reactions"));
        async move { app.post(&path, &tok, json!({"emoji": "👍"})).await }
    };
    // The review's repro: a global mute, then an edit.
    let g = app
        .post(
            "/moderation/actions/mute",
            &admin(),
            json!({"user_id": "u_x", "scope": "global"}),
        )
        .await;
    assert_eq!(g.status, 201, "{}", g.text);
    assert_error(&edit(x.clone()).await, 403, "FORBIDDEN");
    assert_error(&react(x.clone()).await, 403, "FORBIDDEN");
    let gid = g.body["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/moderation/sanctions/{gid}/revoke"),
            &admin(),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(edit(x.clone()).await.status, 200);
    // A chat mute.
    let r = app
        .post(
            "/moderation/actions/mute",
            &owner,
            json!({"user_id": "u_x", "scope": "chat", "chat_id": chat}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_error(&edit(x.clone()).await, 403, "FORBIDDEN");
    assert_error(&react(x.clone()).await, 403, "FORBIDDEN");
    // An ex-member of a public channel still reads it, but no longer edits or reacts.
    let r = app
        .post(
            "/chats",
            &owner,
            json!({"type": "channel", "name": "news", "slug": "news", "member_ids": ["u_y"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let ch = r.body["id"].as_str().unwrap().to_string();
    let y = student("u_y");
    let my = posted(&app, &y, &ch, "mine").await;
    let r = app
        .send(
            "DELETE",
            &format!("/chats/{ch}/members/u_y"),
            Some(&y),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_error(
        &app.patch(
            &format!("/chats/{ch}/messages/{my}"),
            &y,
            json!({"text": "rewritten"}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
}

/// M3: edits and reactions draw from the same per-user bucket as posting.
async fn m3_edits_and_reactions_share_the_posting_rate_limit(b: Backend) {
    let app = spawn_app(b).await;
    let u = student("u_fast");
    let chat = group(&app, &u, "spam", &["u_2"]).await;
    let m = posted(&app, &u, &chat, "first").await;
    let path = format!("/chats/{chat}/messages/{m}");
    let edits = (0..40).map(|i| app.patch(&path, &u, json!({"text": format!("e{i}")})));
    let results = futures::future::join_all(edits).await;
    let limited: Vec<&Res> = results.iter().filter(|r| r.status == 429).collect();
    assert!(!limited.is_empty(), "edits past the rate are refused");
    assert_error(limited[0], 429, "RATE_LIMITED");
    assert!(limited[0].headers.contains_key("retry-after"));
    // The same bucket (the server runs in this process): once it is empty, posting and
    // reacting are refused too. The bucket refills at 10 tokens/s, so on a loaded machine a
    // request can arrive after a refill: drain and try again (a few times) until one is refused.
    let drain = || while app.state.bus.message_limiter().take("u_fast").is_ok() {};
    let post_path = format!("/chats/{chat}/messages");
    let react_path = format!("{path}/reactions");
    for (what, target, body) in [
        ("posting", &post_path, json!({"text": "x"})),
        ("reacting", &react_path, json!({"emoji": "👍"})),
    ] {
        let mut last = None;
        for _ in 0..5 {
            drain();
            let r = app.post(target, &u, body.clone()).await;
            if r.status == 429 {
                assert_error(&r, 429, "RATE_LIMITED");
                last = None;
                break;
            }
            last = Some(r.status);
        }
        assert!(
            last.is_none(),
            "{what} with an empty bucket was never refused: {last:?}"
        );
    }
}

/// M8: `member_ids` over the cap is refused before any de-duplication (REST and GraphQL).
async fn m8_member_ids_are_capped_before_de_duplication(b: Backend) {
    let app = spawn_app(b).await;
    let ids: Vec<String> = (0..35_000).map(|i| format!("{i:x}")).collect();
    let started = std::time::Instant::now();
    let r = app
        .post(
            "/chats",
            &student("u_1"),
            json!({"type": "group", "name": "x", "member_ids": ids}),
        )
        .await;
    assert_error(&r, 422, "VALIDATION_ERROR");
    assert!(r.text.contains("at most 500"), "{}", r.text);
    let q = "mutation($ids: [String!]!) { createChat(input: {type: GROUP, name: \"x\", memberIds: $ids}) { id } }";
    let r = app
        .post(
            "/graphql",
            &student("u_1"),
            json!({"query": q, "variables": {"ids": ids}}),
        )
        .await;
    assert_eq!(
        r.body["errors"][0]["extensions"]["code"], "VALIDATION_ERROR",
        "{}",
        r.text
    );
    // Linear work: far below the seconds the quadratic loop took (generous for a loaded box).
    assert!(started.elapsed() < Duration::from_secs(10));
    // Duplicates below the cap are still folded.
    let r = app
        .post(
            "/chats",
            &student("u_1"),
            json!({"type": "group", "name": "x", "member_ids": ["u_2", "u_2", "u_1"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["member_count"], 2);
}

/// L1: NUL (and other bytes PostgreSQL cannot store) is 422 `VALIDATION_ERROR`, never 500.
async fn l1_nul_is_a_validation_error(b: Backend) {
    let app = spawn_app(b).await;
    let u = student("u_1");
    for path in [
        "/profiles/%00",
        "/operations/%00",
        "/items?q=%00",
        "/users/search?q=a%00",
        "/chats?member=%00",
        "/consumption?user_id=%00",
        "/loans?user_id=%00",
        "/profiles/%FF",
    ] {
        assert_error(&app.get(path, &u).await, 422, "VALIDATION_ERROR");
    }
    let item = app.item("Green tea", 0).await;
    app.batch(&item, 10, None).await;
    assert_error(
        &app.post(
            &format!("/items/{item}/consume"),
            &u,
            json!({"qty": 1, "notes": "a\u{0}b"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    let chat = group(&app, &u, "club", &["u_2"]).await;
    assert_error(
        &app.post(
            &format!("/chats/{chat}/messages"),
            &u,
            json!({"text": "a\u{0}"}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
    // A literal backslash-u-0000 is ordinary text.
    let m = posted(&app, &u, &chat, "a\\u0000").await;
    assert!(!m.is_empty());
    // GraphQL: a NUL in a string literal, and one in variables (the commands refuse it too).
    let r = app
        .post(
            "/graphql",
            &u,
            json!({"query": "{ profile(userId: \"a\\u0000\") { userId } }"}),
        )
        .await;
    assert_error(&r, 422, "VALIDATION_ERROR");
    let bus_refuses = commands::chat::create_chat(
        &app.state.bus,
        &commands::Context::new(domain::Actor::new("u_1", vec![domain::Role::Student])),
        domain::chat::NewChat {
            chat_id: uuid::Uuid::now_v7(),
            kind: domain::chat::ChatType::Group,
            name: Some("x".into()),
            slug: None,
            is_private: true,
            member_ids: vec!["u_\u{0}".into()],
        },
        None,
    )
    .await;
    assert!(
        matches!(
            bus_refuses,
            Err(commands::CommandError::Domain {
                kind: domain::ErrorKind::Validation,
                ..
            })
        ),
        "the command layer refuses NUL in any event payload"
    );
}

/// L10: a retried post (same `Idempotency-Key`) answers the stored 202 even when the checks
/// would now refuse it (here: the author was muted since).
async fn l10_a_retried_post_replays_before_the_checks(b: Backend) {
    let app = spawn_app(b).await;
    let (owner, x) = (student("u_owner"), student("u_x"));
    let chat = group(&app, &owner, "club", &["u_x"]).await;
    let path = format!("/chats/{chat}/messages");
    let send = || {
        app.send(
            "POST",
            &path,
            Some(&x),
            Some(json!({"text": "once"})),
            &[("Idempotency-Key", "post-1")],
        )
    };
    let first = send().await;
    assert_eq!(first.status, 202, "{}", first.text);
    let r = app
        .post(
            "/moderation/actions/mute",
            &owner,
            json!({"user_id": "u_x", "scope": "chat", "chat_id": chat}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let again = send().await;
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(again.body["operation_id"], first.body["operation_id"]);
    // A new post is refused.
    assert_error(
        &app.post(&path, &x, json!({"text": "new"})).await,
        403,
        "FORBIDDEN",
    );
}

// ---------- live streams ----------

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn try_ws(app: &TestApp, token: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("{}/ws", app.base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

async fn ws(app: &TestApp, token: &str) -> Ws {
    try_ws(app, token).await.expect("ws connects")
}

/// The next text frame as JSON (pings skipped); panics after 15 s.
async fn frame(ws: &mut Ws) -> Value {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match ws.next().await.expect("open").expect("frame") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    })
    .await
    .expect("a frame within 15 s")
}

async fn op(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// M1: `/ws` ends the connection when the token expires, as the GraphQL transport does.
async fn m1_ws_closes_when_the_token_expires(b: Backend) {
    let app = spawn_app(b).await;
    let owner = student("u_1");
    let chat = group(&app, &owner, "club", &["u_2"]).await;
    let short = api::auth::issue(
        SECRET,
        "u_2",
        &[domain::Role::Student],
        chrono::Duration::seconds(2),
    )
    .unwrap();
    let mut w = ws(&app, &short).await;
    op(&mut w, json!({"op": "subscribe", "chat_id": chat})).await;
    assert_eq!(frame(&mut w).await["event"], "ack");
    let f = frame(&mut w).await;
    assert_eq!(f["event"], "error", "{f}");
    assert_eq!(f["data"]["code"], "UNAUTHORIZED", "{f}");
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match w.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection closes at expiry");
}

/// L6: read receipts and typing are for members: a reader of a public channel who is not a
/// member neither receives nor sends them.
async fn l6_typing_and_read_receipts_reach_members_only(b: Backend) {
    let app = spawn_app(b).await;
    let (owner, u2, out) = (student("u_1"), student("u_2"), student("u_9"));
    let r = app
        .post(
            "/chats",
            &owner,
            json!({"type": "channel", "name": "news", "slug": "news", "member_ids": ["u_2"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let ch = r.body["id"].as_str().unwrap().to_string();
    let m1 = posted(&app, &owner, &ch, "one").await;
    let mut w = ws(&app, &out).await;
    op(&mut w, json!({"op": "subscribe", "chat_id": ch})).await;
    assert_eq!(frame(&mut w).await["event"], "ack");
    // The outsider may not type, nor hold a read position.
    op(
        &mut w,
        json!({"op": "typing", "chat_id": ch, "state": "on", "ref": "t"}),
    )
    .await;
    let f = frame(&mut w).await;
    assert_eq!(f["data"]["code"], "FORBIDDEN", "{f}");
    assert_error(
        &app.send(
            "PUT",
            &format!("/chats/{ch}/read"),
            Some(&out),
            Some(json!({"message_id": m1})),
            &[],
        )
        .await,
        403,
        "FORBIDDEN",
    );
    let r = app
        .post(
            "/graphql",
            &out,
            json!({"query": format!("mutation {{ typing(chatId: \"{ch}\") }}")}),
        )
        .await;
    assert_eq!(
        r.body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{}",
        r.text
    );
    // A member's receipt and typing do not reach the outsider; the next message does.
    let r = app
        .send(
            "PUT",
            &format!("/chats/{ch}/read"),
            Some(&u2),
            Some(json!({"message_id": m1})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut member = ws(&app, &u2).await;
    op(
        &mut member,
        json!({"op": "typing", "chat_id": ch, "state": "on"}),
    )
    .await;
    let m2 = posted(&app, &owner, &ch, "two").await;
    let f = frame(&mut w).await;
    assert_eq!(f["event"], "chat.message.created", "{f}");
    assert_eq!(f["data"]["msg_id"], m2.as_str());
    // GraphQL: the outsider's readReceipts and typing subscriptions are refused.
    let mut c = Client::connect(&app.ws_url(), &out).await.unwrap();
    for q in [
        "subscription($c: ID!) { readReceipts(chatId: $c) { userId } }",
        "subscription($c: ID!) { typing(chatId: $c) { userId } }",
    ] {
        let id = c.subscribe(q, json!({"c": ch})).await.unwrap();
        let first = loop {
            match c.next_within(Duration::from_secs(15)).await {
                Some(Frame::Next(i, p)) if i == id => break p,
                Some(Frame::Error(i, p)) if i == id => break json!({"errors": p}),
                Some(_) => {}
                None => panic!("no answer for {q}"),
            }
        };
        assert_eq!(
            first["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{first}"
        );
    }
}

/// M7: one user holds at most `MAX_SOCKETS_PER_USER` live connections.
async fn m7_live_connections_per_user_are_capped(b: Backend) {
    let app = spawn_app(b).await;
    let tok = student("u_many");
    let mut open = vec![];
    for _ in 0..api::livechat::MAX_SOCKETS_PER_USER {
        open.push(ws(&app, &tok).await);
    }
    match try_ws(&app, &tok).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429)
        }
        Ok(_) => panic!("one connection too many was accepted"),
        Err(e) => panic!("unexpected error {e}"),
    }
    // The GraphQL transport counts against the same cap.
    let mut c = Client::open(&app.ws_url()).await.unwrap();
    assert!(c.init(&tok).await.is_err(), "refused after connection_init");
    // Others are not affected; a closed connection gives its slot back.
    drop(ws(&app, &student("u_other")).await);
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    eventually(DEADLINE, || async {
        try_ws(&app, &tok).await.ok().map(|_| ())
    })
    .await;
}

/// H2 (PostgreSQL: the `chat` read model is held back by locking its members table against
/// writes while reads go on, as a lagging projection would): a removed member's live streams end
/// at the removal, and a subscription taken after it is refused, whatever the stale row says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_a_lagging_read_model_never_keeps_a_removed_member_subscribed() {
    use sqlx::Connection;
    let app = spawn_app(Backend::Postgres).await;
    let (owner, m) = (student("u_owner"), student("u_m"));
    let chat = group(&app, &owner, "private", &["u_m"]).await;
    let mut w = ws(&app, &m).await;
    op(&mut w, json!({"op": "subscribe", "chat_id": chat})).await;
    assert_eq!(frame(&mut w).await["event"], "ack");
    let mut g = Client::connect(&app.ws_url(), &m).await.unwrap();
    let gid = g
        .subscribe(
            "subscription($c: ID!) { chatMessages(chatId: $c) { text } }",
            json!({"c": chat}),
        )
        .await
        .unwrap();
    eventually(DEADLINE, || async {
        (app.state.live.subscriber_count() >= 2).then_some(())
    })
    .await;

    let mut lock = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let mut tx = lock.begin().await.unwrap();
    sqlx::query("LOCK TABLE chat_members IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let ctx = commands::Context::new(domain::Actor::new("u_owner", vec![domain::Role::Student]));
    let chat_id: uuid::Uuid = chat.parse().unwrap();
    commands::chat::remove_member(&app.state.bus, &ctx, chat_id, "u_m".into())
        .await
        .unwrap();
    // The stale read model still lists u_m as a member.
    let stale = projections::chat::queries::visible_chat(&app.state.db, &chat, "u_m", false)
        .await
        .unwrap();
    assert!(stale.is_some(), "the read model lags (the test's premise)");
    // The owner keeps posting.
    let sub = domain::chat::Submission {
        operation_id: uuid::Uuid::now_v7(),
        message_id: uuid::Uuid::now_v7(),
        chat_id,
        author_id: "u_owner".into(),
        kind: domain::chat::MessageType::Normal,
        text: "secret".into(),
        attachments: vec![],
        metadata: json!({}),
        filter_matches: vec![],
    };
    commands::message::submit(&app.state.bus, &ctx, sub, None)
        .await
        .unwrap();
    let f = frame(&mut w).await;
    assert_eq!(f["event"], "error", "{f}");
    assert_eq!(f["data"]["code"], "SUBSCRIPTION_ENDED", "{f}");
    let first = loop {
        match g.next_within(Duration::from_secs(15)).await {
            Some(Frame::Next(i, p)) if i == gid => break p,
            Some(Frame::Error(i, p)) if i == gid => break json!({"errors": p}),
            Some(_) => {}
            None => panic!("no frame for chatMessages"),
        }
    };
    assert_eq!(
        first["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{first}"
    );
    // Subscribing now (the row still stale) is refused on both transports.
    let mut w2 = ws(&app, &m).await;
    op(&mut w2, json!({"op": "subscribe", "chat_id": chat})).await;
    let f = frame(&mut w2).await;
    assert_eq!(f["data"]["code"], "NOT_FOUND", "{f}");
    let id2 = g
        .subscribe(
            "subscription($c: ID!) { chatMessages(chatId: $c) { text } }",
            json!({"c": chat}),
        )
        .await
        .unwrap();
    let again = loop {
        match g.next_within(Duration::from_secs(15)).await {
            Some(Frame::Next(i, p)) if i == id2 => break p,
            Some(Frame::Error(i, p)) if i == id2 => break json!({"errors": p}),
            Some(_) => {}
            None => panic!("no frame for the second chatMessages"),
        }
    };
    assert_eq!(
        again["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{again}"
    );
    tx.rollback().await.unwrap();
}

/// L9: testing the filters costs a token of the posting bucket.
async fn l9_filter_tests_are_rate_limited(b: Backend) {
    let app = spawn_app(b).await;
    let u = student("u_filters");
    let r = app
        .post("/moderation/filters/test", &u, json!({"text": "hello"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    while app.state.bus.message_limiter().take("u_filters").is_ok() {}
    let r = app
        .post("/moderation/filters/test", &u, json!({"text": "hello"}))
        .await;
    assert_error(&r, 429, "RATE_LIMITED");
}

/// L3: a chat's own sanctions (free text by any chat owner) are not posted to the lab's Discord;
/// global ones (admins only) are.
#[test]
fn l3_chat_sanctions_stay_out_of_discord() {
    use projections::sinks::discord::for_the_lab;
    let chat = json!({"data": {"scope": "chat", "reason": "https://phish.example"}});
    let global = json!({"data": {"scope": "global", "reason": "abuse"}});
    assert!(!for_the_lab("chat.moderation.sanction.applied", &chat));
    assert!(for_the_lab("chat.moderation.sanction.applied", &global));
    assert!(for_the_lab("inventory.low_stock", &json!({"data": {}})));
}

/// M3: `/ws` ops other than typing have a per-connection budget too.
async fn m3_ws_ops_are_budgeted(b: Backend) {
    let app = spawn_app(b).await;
    let mut w = ws(&app, &student("u_1")).await;
    let max = api::routes::ws::OPS_PER_WINDOW as usize;
    let chat = uuid::Uuid::now_v7().to_string();
    for _ in 0..=max {
        op(&mut w, json!({"op": "unsubscribe", "chat_id": chat})).await;
    }
    let mut limited = 0;
    for _ in 0..=max {
        let f = frame(&mut w).await;
        if f["data"]["code"] == "RATE_LIMITED" {
            limited += 1;
        }
    }
    assert!(limited >= 1, "past {max} ops in 10 s: RATE_LIMITED");
}
