//! The `Chat` aggregate: a dm, group or channel, its members and their roles. A `dm` has exactly
//! two members and there is one per pair; a `channel` has a unique slug; the creator is `owner`;
//! only owners, moderators and admins rename, change privacy or manage members.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::tea::validate;
use crate::{Actor, DomainError, ErrorKind, Role};

/// Members one request may add at creation.
pub const MAX_INITIAL_MEMBERS: usize = 500;
pub const MAX_CHAT_NAME: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatType {
    Dm,
    Group,
    Channel,
}

impl ChatType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatType::Dm => "dm",
            ChatType::Group => "group",
            ChatType::Channel => "channel",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Moderator,
    Member,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Moderator => "moderator",
            MemberRole::Member => "member",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub user_id: String,
    pub role: MemberRole,
    pub membership_id: Uuid,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatSettings {
    pub retention_days: i64,
    pub post_policy: String,
    pub extra: serde_json::Value,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            retention_days: 90,
            post_policy: "any".into(),
            extra: serde_json::json!({}),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewChat {
    pub chat_id: Uuid,
    pub kind: ChatType,
    pub name: Option<String>,
    pub slug: Option<String>,
    pub is_private: bool,
    pub member_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChatCommand {
    Create {
        chat: NewChat,
        actor: Actor,
        at: DateTime<Utc>,
    },
    Update {
        name: Option<String>,
        is_private: Option<bool>,
        actor: Actor,
        at: DateTime<Utc>,
    },
    AddMember {
        user_id: String,
        role: MemberRole,
        membership_id: Uuid,
        actor: Actor,
        at: DateTime<Utc>,
    },
    RemoveMember {
        user_id: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// `PUT /retention`: owners, moderators and admins.
    ChangeSettings {
        settings: ChatSettings,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// Changes only the given settings, merged into the chat's current ones when the command is
    /// decided (on fresh state), so concurrent changes of different fields all land.
    PatchSettings {
        patch: SettingsPatch,
        actor: Actor,
        at: DateTime<Utc>,
    },
}

/// A partial change of [`ChatSettings`]: `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsPatch {
    pub retention_days: Option<i64>,
    pub post_policy: Option<String>,
    pub extra: Option<serde_json::Value>,
}

impl SettingsPatch {
    /// `current` with the given fields replaced.
    pub fn merged_into(&self, current: &ChatSettings) -> ChatSettings {
        ChatSettings {
            retention_days: self.retention_days.unwrap_or(current.retention_days),
            post_policy: self
                .post_policy
                .clone()
                .unwrap_or_else(|| current.post_policy.clone()),
            extra: self.extra.clone().unwrap_or_else(|| current.extra.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChatEvent {
    ChatCreated {
        chat_id: Uuid,
        kind: ChatType,
        name: Option<String>,
        slug: Option<String>,
        is_private: bool,
        created_by: String,
        members: Vec<Member>,
        settings: ChatSettings,
        at: DateTime<Utc>,
    },
    ChatUpdated {
        name: Option<String>,
        is_private: Option<bool>,
        at: DateTime<Utc>,
    },
    MemberJoined {
        member: Member,
    },
    MemberLeft {
        user_id: String,
        by: String,
        at: DateTime<Utc>,
    },
    SettingsChanged {
        settings: ChatSettings,
        by: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ChatEvent {
    fn event_type(&self) -> String {
        match self {
            ChatEvent::ChatCreated { .. } => "ChatCreated",
            ChatEvent::ChatUpdated { .. } => "ChatUpdated",
            ChatEvent::MemberJoined { .. } => "MemberJoined",
            ChatEvent::MemberLeft { .. } => "MemberLeft",
            ChatEvent::SettingsChanged { .. } => "SettingsChanged",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChatError {
    #[error("chat not found")]
    NotFound,
    #[error("member not found")]
    MemberNotFound,
    #[error("chat already exists")]
    AlreadyExists,
    #[error("user is already a member")]
    AlreadyMember,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
}

impl DomainError for ChatError {
    fn kind(&self) -> ErrorKind {
        match self {
            ChatError::NotFound | ChatError::MemberNotFound => ErrorKind::NotFound,
            ChatError::AlreadyExists | ChatError::AlreadyMember => ErrorKind::Conflict,
            ChatError::Invalid(_) => ErrorKind::Validation,
            ChatError::Forbidden(_) => ErrorKind::Forbidden,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Chat {
    pub chat_id: Option<Uuid>,
    pub kind: Option<ChatType>,
    pub name: Option<String>,
    pub slug: Option<String>,
    pub is_private: bool,
    pub created_by: String,
    pub members: Vec<Member>,
    pub settings: ChatSettings,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// When the settings last changed (the worker re-checks the post policy against it).
    #[serde(default)]
    pub settings_changed_at: Option<DateTime<Utc>>,
}

fn valid_slug(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=64).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

impl Chat {
    pub fn member(&self, user_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.user_id == user_id)
    }

    /// Members and admins can see a private chat; everyone can see a public one.
    pub fn visible_to(&self, actor: &Actor) -> bool {
        !self.is_private || actor.has(Role::Admin) || self.member(&actor.user_id).is_some()
    }

    /// Owners, moderators and admins manage a chat.
    pub fn managed_by(&self, actor: &Actor) -> bool {
        actor.has(Role::Admin)
            || self
                .member(&actor.user_id)
                .is_some_and(|m| matches!(m.role, MemberRole::Owner | MemberRole::Moderator))
    }

    /// The member's role here, if they are a member.
    pub fn role_of(&self, user_id: &str) -> Option<MemberRole> {
        self.member(user_id).map(|m| m.role)
    }

    /// Whether `actor` may remove or sanction `target` in this chat. The roles rank owner >
    /// moderator > member: admins and owners act on anyone; a moderator only on plain members and
    /// on users who are not members, never on an owner or another moderator.
    pub fn may_moderate(&self, actor: &Actor, target: &str) -> bool {
        if !self.managed_by(actor) {
            return false;
        }
        actor.has(Role::Admin)
            || self.role_of(&actor.user_id) == Some(MemberRole::Owner)
            || !matches!(
                self.role_of(target),
                Some(MemberRole::Owner | MemberRole::Moderator)
            )
    }

    /// Whether `actor` outranks every member here (an admin or an owner).
    pub fn ranks_above_moderators(&self, actor: &Actor) -> bool {
        actor.has(Role::Admin) || self.role_of(&actor.user_id) == Some(MemberRole::Owner)
    }

    /// The unique values a chat holds: its channel slug, or its dm pair.
    pub fn unique_values(&self) -> Vec<(&'static str, String)> {
        match (self.kind, &self.slug) {
            (Some(ChatType::Channel), Some(slug)) => vec![("chat.slug", slug.clone())],
            (Some(ChatType::Dm), _) if self.created_at.is_some() => {
                let mut pair: Vec<&str> = self.members.iter().map(|m| m.user_id.as_str()).collect();
                pair.sort_unstable();
                vec![("chat.dm", pair.join("|"))]
            }
            _ => vec![],
        }
    }

    fn exists(&self) -> Result<(), ChatError> {
        if self.chat_id.is_some() {
            Ok(())
        } else {
            Err(ChatError::NotFound)
        }
    }
}

fn forbidden() -> ChatError {
    ChatError::Forbidden("only the chat's owners and moderators, or admins, may do this".into())
}

fn outranked() -> ChatError {
    ChatError::Forbidden(
        "a moderator cannot act on the chat's owners or other moderators; owners and admins can"
            .into(),
    )
}

impl Aggregate for Chat {
    const TYPE: &'static str = "chat";
    type Command = ChatCommand;
    type Event = ChatEvent;
    type Error = ChatError;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: ChatCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ChatError> {
        match cmd {
            ChatCommand::Create { chat, actor, at } => {
                if self.chat_id.is_some() {
                    return Err(ChatError::AlreadyExists);
                }
                // Bounded before any work, then de-duplicated in linear time.
                if chat.member_ids.len() > MAX_INITIAL_MEMBERS {
                    return Err(ChatError::Invalid(format!(
                        "at most {MAX_INITIAL_MEMBERS} members at creation"
                    )));
                }
                let mut seen = std::collections::HashSet::with_capacity(chat.member_ids.len() + 1);
                seen.insert(actor.user_id.clone());
                let mut ids: Vec<String> = vec![actor.user_id.clone()];
                for id in chat.member_ids {
                    validate::text("member_ids[]", &id, 128).map_err(ChatError::Invalid)?;
                    if seen.insert(id.clone()) {
                        ids.push(id);
                    }
                }
                if ids.len() > MAX_INITIAL_MEMBERS {
                    return Err(ChatError::Invalid(format!(
                        "at most {MAX_INITIAL_MEMBERS} members at creation"
                    )));
                }
                if let Some(n) = &chat.name {
                    validate::text("name", n, MAX_CHAT_NAME).map_err(ChatError::Invalid)?;
                }
                match chat.kind {
                    ChatType::Dm => {
                        if ids.len() != 2 {
                            return Err(ChatError::Invalid(
                                "a dm has exactly two members: you and one other".into(),
                            ));
                        }
                        if chat.slug.is_some() || !chat.is_private {
                            return Err(ChatError::Invalid(
                                "a dm is private and has no slug".into(),
                            ));
                        }
                    }
                    ChatType::Group | ChatType::Channel => {
                        if chat.name.is_none() {
                            return Err(ChatError::Invalid("name is required".into()));
                        }
                    }
                }
                match (chat.kind, &chat.slug) {
                    (ChatType::Channel, Some(s)) if valid_slug(s) => {}
                    (ChatType::Channel, _) => return Err(ChatError::Invalid(
                        "a channel needs a slug of 2 to 64 lower-case letters, digits and dashes"
                            .into(),
                    )),
                    (_, Some(_)) => {
                        return Err(ChatError::Invalid("only channels have a slug".into()))
                    }
                    _ => {}
                }
                let members = ids
                    .into_iter()
                    .enumerate()
                    .map(|(i, user_id)| Member {
                        user_id,
                        role: if i == 0 {
                            MemberRole::Owner
                        } else {
                            MemberRole::Member
                        },
                        membership_id: Uuid::now_v7(),
                        joined_at: at,
                    })
                    .collect();
                sink.write(
                    ChatEvent::ChatCreated {
                        chat_id: chat.chat_id,
                        kind: chat.kind,
                        name: chat.name,
                        slug: chat.slug,
                        is_private: chat.is_private,
                        created_by: actor.user_id,
                        members,
                        settings: ChatSettings::default(),
                        at,
                    },
                    self,
                )
                .await;
            }
            ChatCommand::Update {
                name,
                is_private,
                actor,
                at,
            } => {
                self.exists()?;
                if !self.managed_by(&actor) {
                    return Err(forbidden());
                }
                if let Some(n) = &name {
                    validate::text("name", n, MAX_CHAT_NAME).map_err(ChatError::Invalid)?;
                }
                if self.kind == Some(ChatType::Dm) && is_private == Some(false) {
                    return Err(ChatError::Invalid("a dm stays private".into()));
                }
                let name = name.filter(|n| Some(n) != self.name.as_ref());
                let is_private = is_private.filter(|p| *p != self.is_private);
                if name.is_some() || is_private.is_some() {
                    sink.write(
                        ChatEvent::ChatUpdated {
                            name,
                            is_private,
                            at,
                        },
                        self,
                    )
                    .await;
                }
            }
            ChatCommand::AddMember {
                user_id,
                role,
                membership_id,
                actor,
                at,
            } => {
                self.exists()?;
                if !self.managed_by(&actor) {
                    return Err(forbidden());
                }
                validate::text("user_id", &user_id, 128).map_err(ChatError::Invalid)?;
                if self.kind == Some(ChatType::Dm) {
                    return Err(ChatError::Invalid("a dm has exactly two members".into()));
                }
                if self.member(&user_id).is_some() {
                    return Err(ChatError::AlreadyMember);
                }
                if role == MemberRole::Owner
                    && !actor.has(Role::Admin)
                    && self.member(&actor.user_id).map(|m| m.role) != Some(MemberRole::Owner)
                {
                    return Err(ChatError::Forbidden(
                        "only owners and admins make owners".into(),
                    ));
                }
                let member = Member {
                    user_id,
                    role,
                    membership_id,
                    joined_at: at,
                };
                sink.write(ChatEvent::MemberJoined { member }, self).await;
            }
            ChatCommand::RemoveMember { user_id, actor, at } => {
                self.exists()?;
                if self.member(&user_id).is_none() {
                    return Err(ChatError::MemberNotFound);
                }
                if user_id != actor.user_id && !self.managed_by(&actor) {
                    return Err(forbidden());
                }
                if user_id != actor.user_id && !self.may_moderate(&actor, &user_id) {
                    return Err(outranked());
                }
                if self.kind == Some(ChatType::Dm) {
                    return Err(ChatError::Invalid("a dm has exactly two members".into()));
                }
                sink.write(
                    ChatEvent::MemberLeft {
                        user_id,
                        by: actor.user_id,
                        at,
                    },
                    self,
                )
                .await;
            }
            ChatCommand::PatchSettings { patch, actor, at } => {
                self.exists()?;
                if !self.managed_by(&actor) {
                    return Err(forbidden());
                }
                let settings = patch.merged_into(&self.settings);
                super::retention::validate_settings(&settings).map_err(ChatError::Invalid)?;
                if settings != self.settings {
                    let by = actor.user_id;
                    sink.write(ChatEvent::SettingsChanged { settings, by, at }, self)
                        .await;
                }
            }
            ChatCommand::ChangeSettings {
                settings,
                actor,
                at,
            } => {
                self.exists()?;
                if !self.managed_by(&actor) {
                    return Err(forbidden());
                }
                super::retention::validate_settings(&settings).map_err(ChatError::Invalid)?;
                if settings != self.settings {
                    let by = actor.user_id;
                    sink.write(ChatEvent::SettingsChanged { settings, by, at }, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, e: ChatEvent) {
        match e {
            ChatEvent::ChatCreated {
                chat_id,
                kind,
                name,
                slug,
                is_private,
                created_by,
                members,
                settings,
                at,
            } => {
                self.chat_id = Some(chat_id);
                self.kind = Some(kind);
                self.name = name;
                self.slug = slug;
                self.is_private = is_private;
                self.created_by = created_by;
                self.members = members;
                self.settings = settings;
                self.created_at = Some(at);
                self.updated_at = Some(at);
            }
            ChatEvent::ChatUpdated {
                name,
                is_private,
                at,
            } => {
                if name.is_some() {
                    self.name = name;
                }
                if let Some(p) = is_private {
                    self.is_private = p;
                }
                self.updated_at = Some(at);
            }
            ChatEvent::MemberJoined { member } => self.members.push(member),
            ChatEvent::MemberLeft { user_id, .. } => self.members.retain(|m| m.user_id != user_id),
            ChatEvent::SettingsChanged { settings, at, .. } => {
                self.settings = settings;
                self.updated_at = Some(at);
                self.settings_changed_at = Some(at);
            }
        }
    }
}

#[cfg(test)]
#[path = "conversation_tests.rs"]
mod tests;
