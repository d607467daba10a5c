//! `fafcab retention run [--now T]`: one pass of the retention job from the command line, on
//! SQLite and PostgreSQL, followed by `audit verify`.

use commands::{CommandBus, Context};
use domain::chat::{ChatType, MessageType, NewChat, Submission};
use domain::{Actor, Role};
use eventstore::EventStore;
use uuid::Uuid;

use crate::common::{fresh, run};

async fn retention_run(pg: bool) {
    let url = fresh(pg).await;
    let store = EventStore::connect(&url, 4).await.unwrap();
    let bus = CommandBus::new(store.clone());
    let owner = Context::new(Actor::new("u_1", vec![Role::Student]));
    let chat_id = Uuid::now_v7();
    let chat = NewChat {
        chat_id,
        kind: ChatType::Group,
        name: Some("kitchen".into()),
        slug: None,
        is_private: true,
        member_ids: vec![],
    };
    commands::chat::create_chat(&bus, &owner, chat, None)
        .await
        .unwrap();
    let sub = Submission {
        operation_id: Uuid::now_v7(),
        message_id: Uuid::now_v7(),
        chat_id,
        author_id: "u_1".into(),
        kind: MessageType::Normal,
        text: "cli-secret".into(),
        attachments: vec![],
        metadata: serde_json::json!({}),
        filter_matches: vec![],
    };
    commands::message::submit(&bus, &owner, sub.clone(), None)
        .await
        .unwrap();
    commands::message::post_submitted(&bus, &sub).await.unwrap();
    // No server runs here: build the read model the job reads.
    let (code, out) = run(&url, &["projections", "rebuild", "chat"]);
    assert_eq!(code, 0, "{out}");

    let (code, out) = run(&url, &["retention", "run"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(": 1 chats scanned, 0 messages expired, 0 rejected submissions expired, 0 events redacted"),
        "{out}"
    );
    let (code, out) = run(&url, &["retention", "run", "--now", "2999-01-01T00:00:00Z"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        "retention as of 2999-01-01T00:00:00Z: 1 chats scanned, 1 messages expired, \
         0 rejected submissions expired, 2 events redacted"
    );
    let (code, out) = run(&url, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: "), "{out}");
    let (code, _) = run(&url, &["retention", "run", "--now", "yesterday"]);
    assert_ne!(code, 0);
}

#[tokio::test]
async fn retention_run_on_sqlite() {
    retention_run(false).await;
}

#[tokio::test]
async fn retention_run_on_postgres() {
    retention_run(true).await;
}
