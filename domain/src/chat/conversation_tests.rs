//! Chat rules: dm shape, channel slugs, creator as owner, who manages, membership conflicts.

use super::*;
use cqrs_es::test::TestFramework;

fn t() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

fn user(id: &str) -> Actor {
    Actor::new(id, vec![Role::Student])
}

fn new(
    kind: ChatType,
    name: Option<&str>,
    slug: Option<&str>,
    private: bool,
    members: &[&str],
) -> NewChat {
    NewChat {
        chat_id: Uuid::nil(),
        kind,
        name: name.map(String::from),
        slug: slug.map(String::from),
        is_private: private,
        member_ids: members.iter().map(|s| s.to_string()).collect(),
    }
}

async fn create(chat: NewChat, actor: Actor) -> Result<Vec<ChatEvent>, ChatError> {
    TestFramework::<Chat>::with(())
        .given_no_previous_events()
        .when_async(ChatCommand::Create {
            chat,
            actor,
            at: t(),
        })
        .await
        .inspect_result()
}

fn created(events: Vec<ChatEvent>) -> ChatEvent {
    events.into_iter().next().unwrap()
}

#[tokio::test]
async fn creator_is_owner_and_members_are_deduplicated() {
    let e = created(
        create(
            new(
                ChatType::Group,
                Some("kitchen"),
                None,
                true,
                &["u_2", "u_1", "u_2"],
            ),
            user("u_1"),
        )
        .await
        .unwrap(),
    );
    let ChatEvent::ChatCreated { members, .. } = e else {
        panic!()
    };
    let roles: Vec<(&str, MemberRole)> = members
        .iter()
        .map(|m| (m.user_id.as_str(), m.role))
        .collect();
    assert_eq!(
        roles,
        [("u_1", MemberRole::Owner), ("u_2", MemberRole::Member)]
    );
}

#[tokio::test]
async fn dm_has_exactly_two_members_and_channel_needs_a_slug() {
    assert!(
        create(new(ChatType::Dm, None, None, true, &["u_2"]), user("u_1"))
            .await
            .is_ok()
    );
    for bad in [
        new(ChatType::Dm, None, None, true, &[]),
        new(ChatType::Dm, None, None, true, &["u_2", "u_3"]),
        new(ChatType::Dm, None, None, false, &["u_2"]),
        new(ChatType::Channel, Some("news"), None, false, &[]),
        new(
            ChatType::Channel,
            Some("news"),
            Some("Bad Slug"),
            false,
            &[],
        ),
        new(ChatType::Group, Some("g"), Some("slug"), false, &[]),
        new(ChatType::Group, None, None, false, &[]),
    ] {
        assert!(
            matches!(
                create(bad.clone(), user("u_1")).await,
                Err(ChatError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    assert!(create(
        new(
            ChatType::Channel,
            Some("news"),
            Some("lab-news"),
            false,
            &[]
        ),
        user("u_1")
    )
    .await
    .is_ok());
}

fn group() -> Vec<ChatEvent> {
    let members = [
        ("u_1", MemberRole::Owner),
        ("u_2", MemberRole::Member),
        ("u_3", MemberRole::Moderator),
    ]
    .into_iter()
    .map(|(u, r)| Member {
        user_id: u.into(),
        role: r,
        membership_id: Uuid::nil(),
        joined_at: t(),
    })
    .collect();
    vec![ChatEvent::ChatCreated {
        chat_id: Uuid::nil(),
        kind: ChatType::Group,
        name: Some("g".into()),
        slug: None,
        is_private: true,
        created_by: "u_1".into(),
        members,
        settings: ChatSettings::default(),
        at: t(),
    }]
}

#[tokio::test]
async fn only_owners_moderators_and_admins_manage() {
    let rename = |who: Actor| ChatCommand::Update {
        name: Some("new".into()),
        is_private: None,
        actor: who,
        at: t(),
    };
    for ok in [
        user("u_1"),
        user("u_3"),
        Actor::new("u_admin", vec![Role::Admin]),
    ] {
        let r = TestFramework::<Chat>::with(())
            .given(group())
            .when_async(rename(ok))
            .await
            .inspect_result();
        assert!(r.is_ok());
    }
    let r = TestFramework::<Chat>::with(())
        .given(group())
        .when_async(rename(user("u_2")))
        .await
        .inspect_result();
    assert!(matches!(r, Err(ChatError::Forbidden(_))));
    let add = |who: Actor, u: &str| ChatCommand::AddMember {
        user_id: u.into(),
        role: MemberRole::Member,
        membership_id: Uuid::nil(),
        actor: who,
        at: t(),
    };
    let r = TestFramework::<Chat>::with(())
        .given(group())
        .when_async(add(user("u_2"), "u_9"))
        .await
        .inspect_result();
    assert!(matches!(r, Err(ChatError::Forbidden(_))));
    TestFramework::<Chat>::with(())
        .given(group())
        .when_async(add(user("u_1"), "u_2"))
        .await
        .then_expect_error(ChatError::AlreadyMember);
    // Anyone may leave; removing others needs rights; unknown members are 404.
    let leave = |who: Actor, u: &str| ChatCommand::RemoveMember {
        user_id: u.into(),
        actor: who,
        at: t(),
    };
    assert!(TestFramework::<Chat>::with(())
        .given(group())
        .when_async(leave(user("u_2"), "u_2"))
        .await
        .inspect_result()
        .is_ok());
    let r = TestFramework::<Chat>::with(())
        .given(group())
        .when_async(leave(user("u_2"), "u_3"))
        .await
        .inspect_result();
    assert!(matches!(r, Err(ChatError::Forbidden(_))));
    TestFramework::<Chat>::with(())
        .given(group())
        .when_async(leave(user("u_1"), "u_9"))
        .await
        .then_expect_error(ChatError::MemberNotFound);
}

#[test]
fn privacy_and_unique_values() {
    let mut chat = Chat::default();
    for e in group() {
        chat.apply(e);
    }
    assert!(chat.visible_to(&user("u_2")));
    assert!(!chat.visible_to(&user("u_9")));
    assert!(chat.visible_to(&Actor::new("u_admin", vec![Role::Admin])));
    assert!(chat.unique_values().is_empty());
    chat.kind = Some(ChatType::Dm);
    chat.members.truncate(2);
    assert_eq!(
        chat.unique_values(),
        vec![("chat.dm", "u_1|u_2".to_string())]
    );
}
