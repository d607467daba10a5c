//! Per-chat retention and posting policy (seed 000 §9, `GET/PUT /retention`): how long messages
//! are kept, and who may post. Also how a redacted message text reads back.

use serde::{Deserialize, Deserializer};

use super::{Chat, ChatSettings, MemberRole};
use crate::{Actor, Role};

pub const MIN_RETENTION_DAYS: i64 = 1;
pub const MAX_RETENTION_DAYS: i64 = 3_650;
/// Largest `extra` object, serialized.
pub const MAX_SETTINGS_EXTRA_BYTES: usize = 4_096;
pub const POST_POLICIES: [&str; 2] = ["any", "mods"];

/// Checks new settings: retention 1 to 3,650 days, policy `any` or `mods`, `extra` an object of
/// at most 4 KiB.
pub fn validate_settings(s: &ChatSettings) -> Result<(), String> {
    if !(MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS).contains(&s.retention_days) {
        return Err(format!(
            "retention_days must be {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS}"
        ));
    }
    if !POST_POLICIES.contains(&s.post_policy.as_str()) {
        return Err("post_policy must be \"any\" or \"mods\"".into());
    }
    if !s.extra.is_object() || s.extra.to_string().len() > MAX_SETTINGS_EXTRA_BYTES {
        return Err(format!(
            "extra must be an object of at most {MAX_SETTINGS_EXTRA_BYTES} bytes"
        ));
    }
    Ok(())
}

impl Chat {
    /// Whether the post policy lets this author post a normal message: under `mods`, only the
    /// chat's owners and moderators (and admins) post. Membership is checked separately.
    pub fn policy_allows(&self, actor: &Actor) -> bool {
        self.settings.post_policy != "mods"
            || actor.has(Role::Admin)
            || self
                .member(&actor.user_id)
                .is_some_and(|m| matches!(m.role, MemberRole::Owner | MemberRole::Moderator))
    }
}

impl super::Message {
    /// Whether the message is gone for retention: expired by the job, or older than the chat's
    /// retention period at `now` (before the job got to it).
    pub fn past_retention(
        &self,
        settings: &ChatSettings,
        now: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        self.expired_at.is_some()
            || self
                .created_at
                .is_some_and(|c| c < now - chrono::Duration::days(settings.retention_days))
    }
}

/// A message text removed by retention is stored as `null`; it reads back as "".
pub fn redacted_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use cqrs_es::test::TestFramework;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::chat::{
        ChatCommand, ChatError, ChatEvent, ChatType, Member, Message, MessageCommand, MessageError,
        MessageEvent, MessageType, Submission,
    };

    fn t() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

    fn member(user_id: &str, role: MemberRole) -> Member {
        Member {
            user_id: user_id.into(),
            role,
            membership_id: Uuid::nil(),
            joined_at: t(),
        }
    }

    fn created() -> ChatEvent {
        ChatEvent::ChatCreated {
            chat_id: Uuid::nil(),
            kind: ChatType::Group,
            name: Some("kitchen".into()),
            slug: None,
            is_private: true,
            created_by: "u_1".into(),
            members: vec![
                member("u_1", MemberRole::Owner),
                member("u_2", MemberRole::Member),
                member("u_3", MemberRole::Moderator),
            ],
            settings: ChatSettings::default(),
            at: t(),
        }
    }

    fn settings(days: i64, policy: &str, extra: serde_json::Value) -> ChatSettings {
        ChatSettings {
            retention_days: days,
            post_policy: policy.into(),
            extra,
        }
    }

    async fn change(by: Actor, s: ChatSettings) -> Result<Vec<ChatEvent>, ChatError> {
        TestFramework::<Chat>::with(())
            .given(vec![created()])
            .when_async(ChatCommand::ChangeSettings {
                settings: s,
                actor: by,
                at: t(),
            })
            .await
            .inspect_result()
    }

    fn user(id: &str) -> Actor {
        Actor::new(id, vec![Role::Student])
    }

    #[tokio::test]
    async fn owners_moderators_and_admins_change_settings_members_do_not() {
        let s = settings(30, "mods", json!({"note": "kitchen"}));
        for by in [
            user("u_1"),
            user("u_3"),
            Actor::new("u_admin", vec![Role::Admin]),
        ] {
            let e = change(by.clone(), s.clone()).await.unwrap();
            assert_eq!(
                e,
                vec![ChatEvent::SettingsChanged {
                    settings: s.clone(),
                    by: by.user_id.clone(),
                    at: t()
                }]
            );
        }
        assert!(matches!(
            change(user("u_2"), s.clone()).await,
            Err(ChatError::Forbidden(_))
        ));
        assert!(matches!(
            change(user("u_9"), s).await,
            Err(ChatError::Forbidden(_))
        ));
        // Unchanged settings record nothing.
        assert_eq!(
            change(user("u_1"), ChatSettings::default()).await.unwrap(),
            vec![]
        );
        // An unknown chat.
        let r = TestFramework::<Chat>::with(())
            .given_no_previous_events()
            .when_async(ChatCommand::ChangeSettings {
                settings: ChatSettings::default(),
                actor: user("u_1"),
                at: t(),
            })
            .await
            .inspect_result();
        assert_eq!(r, Err(ChatError::NotFound));
    }

    #[tokio::test]
    async fn settings_are_validated() {
        for bad in [
            settings(0, "any", json!({})),
            settings(3_651, "any", json!({})),
            settings(-5, "any", json!({})),
            settings(30, "admins", json!({})),
            settings(30, "", json!({})),
            settings(30, "any", json!([1])),
            settings(30, "any", json!("x")),
            settings(
                30,
                "any",
                json!({"k": "x".repeat(MAX_SETTINGS_EXTRA_BYTES)}),
            ),
        ] {
            assert!(
                matches!(
                    change(user("u_1"), bad.clone()).await,
                    Err(ChatError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        for good in [
            settings(1, "any", json!({})),
            settings(3_650, "mods", json!({"a": [1, 2]})),
        ] {
            assert_eq!(change(user("u_1"), good).await.unwrap().len(), 1);
        }
    }

    #[test]
    fn under_mods_only_owners_moderators_and_admins_post() {
        let mut chat = Chat::default();
        cqrs_es::Aggregate::apply(&mut chat, created());
        assert!(chat.policy_allows(&user("u_2")), "policy any: everyone");
        cqrs_es::Aggregate::apply(
            &mut chat,
            ChatEvent::SettingsChanged {
                settings: settings(90, "mods", json!({})),
                by: "u_1".into(),
                at: t(),
            },
        );
        assert_eq!(chat.settings_changed_at, Some(t()));
        assert!(chat.policy_allows(&user("u_1")));
        assert!(chat.policy_allows(&user("u_3")));
        assert!(chat.policy_allows(&Actor::new("u_admin", vec![Role::Admin])));
        assert!(!chat.policy_allows(&user("u_2")));
    }

    fn sub() -> Submission {
        Submission {
            operation_id: Uuid::nil(),
            message_id: Uuid::nil(),
            chat_id: Uuid::nil(),
            author_id: "u_2".into(),
            kind: MessageType::Normal,
            text: "hello".into(),
            attachments: vec![],
            metadata: json!({}),
            filter_matches: vec![],
        }
    }

    #[tokio::test]
    async fn an_expired_message_is_gone_and_expires_once() {
        let posted = MessageEvent::MessagePosted {
            submission: sub(),
            created_at: t(),
        };
        let expired = MessageEvent::MessageExpired {
            retention_days: 30,
            at: t(),
        };
        TestFramework::<Message>::with(())
            .given(vec![posted.clone()])
            .when_async(MessageCommand::Expire {
                retention_days: 30,
                at: t(),
            })
            .await
            .then_expect_events(vec![expired.clone()]);
        TestFramework::<Message>::with(())
            .given(vec![posted.clone(), expired.clone()])
            .when_async(MessageCommand::Expire {
                retention_days: 30,
                at: t(),
            })
            .await
            .then_expect_events(vec![]);
        TestFramework::<Message>::with(())
            .given(vec![posted.clone(), expired.clone()])
            .when_async(MessageCommand::Edit {
                by: "u_2".into(),
                text: "again".into(),
                filter_matches: vec![],
                at: t(),
            })
            .await
            .then_expect_error(MessageError::NotFound);
        TestFramework::<Message>::with(())
            .given(vec![posted, expired])
            .when_async(MessageCommand::Delete {
                by: "u_2".into(),
                moderates: true,
                at: t(),
            })
            .await
            .then_expect_error(MessageError::NotFound);
        TestFramework::<Message>::with(())
            .given_no_previous_events()
            .when_async(MessageCommand::Expire {
                retention_days: 30,
                at: t(),
            })
            .await
            .then_expect_error(MessageError::NotFound);
    }

    #[test]
    fn a_message_is_past_retention_once_older_than_the_period_or_expired() {
        let mut m = Message::default();
        cqrs_es::Aggregate::apply(
            &mut m,
            MessageEvent::MessagePosted {
                submission: sub(),
                created_at: t(),
            },
        );
        let s = settings(30, "any", json!({}));
        assert!(!m.past_retention(&s, t() + chrono::Duration::days(30)));
        assert!(m.past_retention(
            &s,
            t() + chrono::Duration::days(30) + chrono::Duration::seconds(1)
        ));
        assert!(!m.past_retention(
            &settings(31, "any", json!({})),
            t() + chrono::Duration::days(31)
        ));
        cqrs_es::Aggregate::apply(
            &mut m,
            MessageEvent::MessageExpired {
                retention_days: 30,
                at: t(),
            },
        );
        assert!(m.past_retention(&settings(3_650, "any", json!({})), t()));
    }

    #[tokio::test]
    async fn only_settled_operations_expire_and_once() {
        use crate::chat::{Operation, OperationCommand, OperationError, OperationEvent};
        let submitted = OperationEvent::MessageSubmitted {
            submission: sub(),
            at: t(),
        };
        let rejected = OperationEvent::OperationRejected {
            error: "x".into(),
            at: t(),
        };
        let expired = OperationEvent::OperationExpired { at: t() };
        TestFramework::<Operation>::with(())
            .given(vec![submitted.clone(), rejected.clone()])
            .when_async(OperationCommand::Expire { at: t() })
            .await
            .then_expect_events(vec![expired.clone()]);
        TestFramework::<Operation>::with(())
            .given(vec![submitted.clone(), rejected, expired])
            .when_async(OperationCommand::Expire { at: t() })
            .await
            .then_expect_events(vec![]);
        TestFramework::<Operation>::with(())
            .given(vec![submitted])
            .when_async(OperationCommand::Expire { at: t() })
            .await
            .then_expect_events(vec![]);
        TestFramework::<Operation>::with(())
            .given_no_previous_events()
            .when_async(OperationCommand::Expire { at: t() })
            .await
            .then_expect_error(OperationError::NotFound);
    }

    #[test]
    fn redacted_texts_decode_as_empty() {
        let posted = json!({"submission": {"operation_id": Uuid::nil(), "message_id": Uuid::nil(),
            "chat_id": Uuid::nil(), "author_id": "u_2", "kind": "normal", "text": null,
            "attachments": [], "metadata": {}}, "created_at": "2026-01-01T00:00:00Z"});
        let e: MessageEvent = crate::codec::decode("MessagePosted", posted).unwrap();
        let MessageEvent::MessagePosted { submission, .. } = e else {
            panic!("posted")
        };
        assert_eq!(submission.text, "");
        let e: MessageEvent = crate::codec::decode(
            "MessageEdited",
            json!({"text": null, "at": "2026-01-01T00:00:00Z"}),
        )
        .unwrap();
        assert!(matches!(e, MessageEvent::MessageEdited { text, .. } if text.is_empty()));
    }
}
