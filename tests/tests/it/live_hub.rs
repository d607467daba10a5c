//! The live fan-out hub (`projections::live`): committed events reach the subscribers of their
//! topics, from this process and from another one, in log order; an overflowing subscriber is
//! told how much it missed; stopping the hub closes every receiver. On SQLite and PostgreSQL.

use std::time::Duration;

use eventstore::{AppendRequest, EventMetadata, EventStore, NewEvent};
use fafcab_tests::*;
use projections::live::{LiveError, LiveHub, LiveReceiver, Topic, SUBSCRIBER_QUEUE};
use serde_json::json;
use uuid::Uuid;

on_both_backends!(
    committed_events_reach_their_topics_in_order,
    another_process_appends_are_delivered,
    overflow_is_reported_as_lagged_then_delivery_resumes,
    stopping_the_hub_closes_receivers
);

fn meta() -> EventMetadata {
    let id = Uuid::now_v7();
    EventMetadata {
        actor: "u_1".into(),
        correlation_id: id,
        causation_id: id,
        command_id: id,
    }
}

fn req(aggregate_type: &str, id: &str, expected: i64, n: usize) -> AppendRequest {
    AppendRequest {
        aggregate_type: aggregate_type.into(),
        aggregate_id: id.into(),
        expected_sequence: expected,
        expected_hash: None,
        events: (0..n)
            .map(|i| NewEvent {
                event_type: "Touched".into(),
                event_version: "1.0".into(),
                payload: json!({"n": expected + i as i64 + 1}),
            })
            .collect(),
        metadata: meta(),
        claims: vec![],
        releases: vec![],
        idempotency: None,
    }
}

async fn recv(rx: &mut LiveReceiver) -> Result<projections::live::LiveEvent, LiveError> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event within 10 s")
}

async fn store(b: Backend) -> (EventStore, String) {
    let url = fresh_database(b).await;
    (EventStore::connect(&url, 5).await.expect("store"), url)
}

async fn committed_events_reach_their_topics_in_order(b: Backend) {
    let (s, _) = store(b).await;
    let (chat_a, chat_b, item) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    s.append(req("chat", &chat_a.to_string(), 0, 1))
        .await
        .unwrap();
    let hub = LiveHub::start(s.clone()).await.unwrap();
    let mut a = hub.subscribe(Topic::Chat(chat_a)).unwrap();
    let mut b_rx = hub.subscribe(Topic::Chat(chat_b)).unwrap();
    let mut items = hub.subscribe(Topic::Item(None)).unwrap();
    let mut one_item = hub.subscribe(Topic::Item(Some(item))).unwrap();
    assert_eq!(hub.subscriber_count(), 4);

    s.append(req("chat", &chat_b.to_string(), 0, 1))
        .await
        .unwrap();
    s.append(req("chat", &chat_a.to_string(), 1, 2))
        .await
        .unwrap();
    s.append(req("item", &item.to_string(), 0, 1))
        .await
        .unwrap();
    // A message event finds its chat in the payload.
    let mut posted = req("message", &Uuid::now_v7().to_string(), 0, 1);
    posted.events[0].event_type = "MessagePosted".into();
    posted.events[0].payload = json!({"submission": {"chat_id": chat_a.to_string()}});
    s.append(posted).await.unwrap();

    // The event committed just before may or may not come (on PostgreSQL a transaction open
    // elsewhere on the server holds the gap-safe horizon back); everything after it does.
    let mut first = recv(&mut a).await.unwrap();
    if first.payload == json!({"n": 1}) {
        first = recv(&mut a).await.unwrap();
    }
    let second = recv(&mut a).await.unwrap();
    let third = recv(&mut a).await.unwrap();
    assert_eq!(first.aggregate_id, chat_a.to_string());
    assert_eq!(first.payload, json!({"n": 2}));
    assert_eq!(second.payload, json!({"n": 3}));
    assert!(first.position < second.position && second.position < third.position);
    assert_eq!(third.event_type, "MessagePosted");
    assert_eq!(third.metadata.as_ref().unwrap().actor, "u_1");
    assert!(!third.ephemeral);
    let on_b = recv(&mut b_rx).await.unwrap();
    assert_eq!(on_b.aggregate_id, chat_b.to_string());
    assert_eq!(
        recv(&mut items).await.unwrap().aggregate_id,
        item.to_string()
    );
    assert_eq!(
        recv(&mut one_item).await.unwrap().aggregate_id,
        item.to_string()
    );

    // Ephemeral signals go to the topic's subscribers only.
    hub.publish_ephemeral(
        Topic::Chat(chat_b),
        "chat.typing",
        json!({"user_id": "u_2"}),
    );
    let typing = recv(&mut b_rx).await.unwrap();
    assert!(typing.ephemeral);
    assert_eq!(typing.event_type, "chat.typing");
    // Then a committed event on chat A arrives next on A: nothing of B's leaked into it.
    s.append(req("chat", &chat_a.to_string(), 3, 1))
        .await
        .unwrap();
    assert_eq!(recv(&mut a).await.unwrap().payload, json!({"n": 4}));

    drop(a);
    assert_eq!(hub.subscriber_count(), 3);
}

async fn another_process_appends_are_delivered(b: Backend) {
    let (s, url) = store(b).await;
    let hub = LiveHub::start(s.clone()).await.unwrap();
    let chat = Uuid::now_v7();
    let mut rx = hub.subscribe(Topic::Chat(chat)).unwrap();
    // A second connection pool with its own wake-ups: on PostgreSQL a separate "process" whose
    // appends this hub only learns about through NOTIFY (or its poll).
    let other = EventStore::connect(&url, 2).await.expect("second store");
    other
        .append(req("chat", &chat.to_string(), 0, 3))
        .await
        .unwrap();
    for n in 1..=3 {
        assert_eq!(recv(&mut rx).await.unwrap().payload, json!({"n": n}));
    }
}

async fn overflow_is_reported_as_lagged_then_delivery_resumes(b: Backend) {
    let (s, _) = store(b).await;
    let hub = LiveHub::start(s.clone()).await.unwrap();
    let chat = Uuid::now_v7();
    let mut slow = hub.subscribe(Topic::Chat(chat)).unwrap();
    let marker = Uuid::now_v7();
    let mut done = hub.subscribe(Topic::Chat(marker)).unwrap();
    let total = SUBSCRIBER_QUEUE + 76;
    let mut seq = 0;
    while seq < total as i64 {
        s.append(req("chat", &chat.to_string(), seq, 100))
            .await
            .unwrap();
        seq += 100;
    }
    // The hub fans out in log order: once the marker arrived, the flood has been handed out.
    s.append(req("chat", &marker.to_string(), 0, 1))
        .await
        .unwrap();
    recv(&mut done).await.unwrap();
    for n in 1..=SUBSCRIBER_QUEUE as i64 {
        assert_eq!(recv(&mut slow).await.unwrap().payload, json!({"n": n}));
    }
    assert_eq!(
        recv(&mut slow).await.unwrap_err(),
        LiveError::Lagged {
            missed: seq as u64 - SUBSCRIBER_QUEUE as u64
        }
    );
    s.append(req("chat", &chat.to_string(), seq, 1))
        .await
        .unwrap();
    assert_eq!(
        recv(&mut slow).await.unwrap().payload,
        json!({"n": seq + 1})
    );
}

async fn stopping_the_hub_closes_receivers(b: Backend) {
    let (s, _) = store(b).await;
    let hub = LiveHub::start(s.clone()).await.unwrap();
    let mut rx = hub.subscribe(Topic::User("u_1".into())).unwrap();
    hub.stop();
    assert_eq!(recv(&mut rx).await.unwrap_err(), LiveError::Closed);
    let mut late = hub.subscribe(Topic::User("u_1".into())).unwrap();
    assert_eq!(recv(&mut late).await.unwrap_err(), LiveError::Closed);
}
