//! GraphQL over `graphql-transport-ws`: the connection's life (init timeout 4408, bad token 4403,
//! subscribe before init 4401, pings, token expiry 4403) and the request limits (size, depth,
//! complexity, introspection), with a real WebSocket client.

use std::time::Duration;

use api::Settings;
use benchkit::client::{Client, Frame};
use domain::Role;
use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(
    connection_needs_a_timely_valid_init,
    pings_keep_connections_alive,
    expired_token_closes_the_connection,
    abusive_requests_are_refused,
    introspection_can_be_disabled
);

async fn app_with(b: Backend, tune: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::for_tests(&fresh_database(b).await);
    tune(&mut settings);
    spawn_with(settings).await
}

fn close_code(f: &Option<Frame>) -> Option<u16> {
    match f {
        Some(Frame::Closed(code, _)) => *code,
        _ => None,
    }
}

async fn connection_needs_a_timely_valid_init(b: Backend) {
    let app = app_with(b, |s| s.graphql.init_timeout = Duration::from_millis(300)).await;
    // Silence: closed with 4408 once the init timeout passes.
    let mut c = Client::open(&app.ws_url()).await.unwrap();
    let (seen, closed) = c.until_closed(Duration::from_secs(10)).await;
    assert_eq!(close_code(&closed), Some(4408), "{seen:?} {closed:?}");
    // A bad, a missing and an expired token: 4403, nothing acknowledged.
    let expired = api::auth::issue(
        SECRET,
        "u_1",
        &[Role::Student],
        chrono::Duration::minutes(-10),
    )
    .unwrap();
    for payload in [
        json!({"Authorization": "Bearer not-a-jwt"}),
        json!({}),
        json!({"Authorization": format!("Bearer {expired}")}),
        json!({"Authorization": format!("Bearer {}", api::auth::issue("other-secret", "u_1", &[], chrono::Duration::hours(1)).unwrap())}),
    ] {
        let mut c = Client::open(&app.ws_url()).await.unwrap();
        c.send(json!({"type": "connection_init", "payload": payload}))
            .await
            .unwrap();
        let (seen, closed) = c.until_closed(Duration::from_secs(10)).await;
        assert!(seen.is_empty(), "{seen:?}");
        assert_eq!(close_code(&closed), Some(4403), "{payload} {closed:?}");
    }
    // Subscribing before the handshake: 4401.
    let mut c = Client::open(&app.ws_url()).await.unwrap();
    c.subscribe("{ items { edges { cursor } } }", json!({}))
        .await
        .unwrap();
    let (_, closed) = c.until_closed(Duration::from_secs(10)).await;
    assert_eq!(close_code(&closed), Some(4401), "{closed:?}");
    // A valid token: acknowledged, and queries run over the socket as the caller.
    let tea = app.item("Tea", 0).await;
    let mut c = Client::connect(&app.ws_url(), &student("u_1"))
        .await
        .unwrap();
    let id = c
        .subscribe(
            "query($id: ID!) { item(id: $id) { name } }",
            json!({"id": tea}),
        )
        .await
        .unwrap();
    assert_eq!(
        c.next_within(Duration::from_secs(10)).await,
        Some(Frame::Next(
            id.clone(),
            json!({"data": {"item": {"name": "Tea"}}})
        ))
    );
    assert_eq!(
        c.next_within(Duration::from_secs(10)).await,
        Some(Frame::Complete(id))
    );
    // A second init is a protocol error.
    c.send(json!({"type": "connection_init", "payload": {}}))
        .await
        .unwrap();
    let (_, closed) = c.until_closed(Duration::from_secs(10)).await;
    assert_eq!(close_code(&closed), Some(4429), "{closed:?}");
}

async fn pings_keep_connections_alive(b: Backend) {
    let app = app_with(b, |s| s.graphql.ping_interval = Duration::from_millis(300)).await;
    // The server pings by itself; a client that answers stays connected well past the
    // keep-alive window (three intervals) and is still served.
    let mut alive = Client::connect(&app.ws_url(), &student("u_1"))
        .await
        .unwrap();
    let (seen, closed) = alive.until_closed(Duration::from_secs(2)).await;
    assert_eq!(
        (seen, closed),
        (vec![], None),
        "answered pings are not frames; no close"
    );
    let id = alive
        .subscribe("{ items { pageInfo { hasNextPage } } }", json!({}))
        .await
        .unwrap();
    assert_eq!(
        alive.next_within(Duration::from_secs(10)).await,
        Some(Frame::Next(
            id,
            json!({"data": {"items": {"pageInfo": {"hasNextPage": false}}}})
        ))
    );
    drop(alive);
    // A client that never answers sees the pings and is dropped (3008) after the window.
    let mut mute = Client::connect(&app.ws_url(), &student("u_2"))
        .await
        .unwrap();
    mute.answer_pings = false;
    assert_eq!(
        mute.next_within(Duration::from_secs(5)).await,
        Some(Frame::Ping)
    );
    let (_, closed) = mute.until_closed(Duration::from_secs(10)).await;
    assert_eq!(close_code(&closed), Some(3008), "{closed:?}");
}

async fn expired_token_closes_the_connection(b: Backend) {
    let app = spawn_app(b).await;
    let short = api::auth::issue(
        SECRET,
        "u_1",
        &[Role::Student],
        chrono::Duration::seconds(2),
    )
    .unwrap();
    let mut c = Client::connect(&app.ws_url(), &short).await.unwrap();
    let (_, closed) = c.until_closed(Duration::from_secs(15)).await;
    assert_eq!(close_code(&closed), Some(4403), "{closed:?}");
}

fn first_error(f: &Option<Frame>) -> Value {
    match f {
        Some(Frame::Next(_, payload)) => payload["errors"][0].clone(),
        other => panic!("expected an error response, got {other:?}"),
    }
}

async fn abusive_requests_are_refused(b: Backend) {
    let app = app_with(b, |s| s.graphql.max_query_bytes = 2_000).await;
    let s = student("u_1");
    let huge = format!(
        "{{ items {{ edges {{ cursor }} }} }} #{}",
        "x".repeat(3_000)
    );
    let r = app
        .send(
            "POST",
            "/graphql",
            Some(&s),
            Some(json!({"query": huge})),
            &[],
        )
        .await;
    assert_eq!(r.body["data"], Value::Null, "{}", r.text);
    assert_eq!(
        r.body["errors"][0]["extensions"]["code"], "VALIDATION_ERROR",
        "{}",
        r.text
    );
    // Complexity: many aliases of a cheap field add up.
    let wide: String = (0..600)
        .map(|i| format!("a{i}: items(first: 1) {{ pageInfo {{ hasNextPage }} }} "))
        .collect();
    let r = app
        .send(
            "POST",
            "/graphql",
            Some(&s),
            Some(json!({"query": format!("{{ {wide} }}")})),
            &[],
        )
        .await;
    assert_eq!(
        r.body["data"],
        Value::Null,
        "{}",
        &r.text[..200.min(r.text.len())]
    );
    // The same limits hold over the socket; the connection survives the refusal.
    let mut c = Client::connect(&app.ws_url(), &s).await.unwrap();
    c.subscribe(&huge, json!({})).await.unwrap();
    let e = first_error(&c.next_within(Duration::from_secs(10)).await);
    assert_eq!(e["extensions"]["code"], "VALIDATION_ERROR", "{e}");
    let nested = "{ __schema { types { fields { type { fields { type { fields { type { fields { type { name } } } } } } } } } } }";
    c.subscribe(nested, json!({})).await.unwrap();
    let mut got = None;
    while let Some(f) = c.next_within(Duration::from_secs(10)).await {
        if matches!(f, Frame::Next(..)) {
            got = Some(f);
            break;
        }
    }
    let e = first_error(&got);
    assert!(
        e["message"].as_str().unwrap().contains("nested too deep"),
        "{e}"
    );
}

async fn introspection_can_be_disabled(b: Backend) {
    let q = json!({"query": "{ __schema { queryType { name } } }"});
    let app = spawn_app(b).await;
    let r = app
        .send("POST", "/graphql", Some(&admin()), Some(q.clone()), &[])
        .await;
    assert_eq!(
        r.body["data"]["__schema"]["queryType"]["name"], "Query",
        "{}",
        r.text
    );
    let app = app_with(b, |s| s.graphql.introspection = false).await;
    let r = app
        .send("POST", "/graphql", Some(&admin()), Some(q), &[])
        .await;
    // async-graphql answers a disabled introspection with null, not an error.
    assert_eq!(r.body["data"]["__schema"], Value::Null, "{}", r.text);
}
