//! Messages and the operations that submit them. `POST /chats/{id}/messages` records a
//! `MessageSubmitted` operation at once (202); a worker then posts the message (re-checking the
//! author's membership) and completes or rejects the operation.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{DomainError, ErrorKind};

pub const MAX_TEXT: usize = 4_000;
pub const MAX_ATTACHMENTS: usize = 10;
pub const MAX_ATTACHMENT_BYTES: i64 = 25 * 1024 * 1024;
/// Largest `extra` object of one attachment, as JSON text.
pub const MAX_ATTACHMENT_EXTRA: usize = 4_096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Normal,
    Notice,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Normal => "normal",
            MessageType::Notice => "notice",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: Uuid,
    pub url: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub extra: serde_json::Value,
}

/// What was submitted, with the ids the message will have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub operation_id: Uuid,
    pub message_id: Uuid,
    pub chat_id: Uuid,
    pub author_id: String,
    pub kind: MessageType,
    #[serde(deserialize_with = "super::retention::redacted_text")]
    pub text: String,
    pub attachments: Vec<Attachment>,
    pub metadata: serde_json::Value,
    /// The filter phrases the text matched when it was submitted (the text is stored masked).
    #[serde(default)]
    pub filter_matches: Vec<String>,
}

impl Submission {
    pub fn validate(&self) -> Result<(), String> {
        if self.text.trim().is_empty() && self.attachments.is_empty() {
            return Err("a message needs text or an attachment".into());
        }
        if self.text.chars().count() > MAX_TEXT {
            return Err(format!("text must be at most {MAX_TEXT} characters"));
        }
        crate::tea::validate::no_nul("text", &self.text)?;
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(format!("at most {MAX_ATTACHMENTS} attachments"));
        }
        for a in &self.attachments {
            if !(a.url.starts_with("https://") || a.url.starts_with("http://"))
                || a.url.len() > 2_048
            {
                return Err("attachment url must be an http(s) URL of at most 2048 bytes".into());
            }
            if a.content_type.is_empty()
                || a.content_type.len() > 128
                || !a.content_type.contains('/')
            {
                return Err("attachment content_type must be a media type".into());
            }
            if !(0..=MAX_ATTACHMENT_BYTES).contains(&a.size_bytes) {
                return Err(format!(
                    "attachment size_bytes must be 0 to {MAX_ATTACHMENT_BYTES}"
                ));
            }
            if a.extra.to_string().len() > MAX_ATTACHMENT_EXTRA {
                return Err(format!(
                    "attachment extra must be at most {MAX_ATTACHMENT_EXTRA} bytes of JSON"
                ));
            }
            crate::tea::validate::no_nul("attachment url", &a.url)?;
            crate::tea::validate::no_nul("attachment content_type", &a.content_type)?;
            crate::tea::validate::json_no_nul("attachment extra", &a.extra)?;
        }
        if !self.metadata.is_object() || self.metadata.to_string().len() > 4_096 {
            return Err("metadata must be an object of at most 4096 bytes".into());
        }
        crate::tea::validate::json_no_nul("metadata", &self.metadata)?;
        Ok(())
    }
}

// ---------- the operation ----------

#[derive(Debug, Clone, PartialEq)]
pub enum OperationCommand {
    Submit {
        submission: Submission,
        at: DateTime<Utc>,
    },
    Complete {
        message_id: Uuid,
        at: DateTime<Utc>,
    },
    Reject {
        error: String,
        at: DateTime<Utc>,
    },
    /// Retention: a rejected submission past its chat's retention (its text is redacted).
    Expire {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OperationEvent {
    MessageSubmitted {
        submission: Submission,
        at: DateTime<Utc>,
    },
    OperationCompleted {
        message_id: Uuid,
        at: DateTime<Utc>,
    },
    OperationRejected {
        error: String,
        at: DateTime<Utc>,
    },
    OperationExpired {
        at: DateTime<Utc>,
    },
}

impl DomainEvent for OperationEvent {
    fn event_type(&self) -> String {
        match self {
            OperationEvent::MessageSubmitted { .. } => "MessageSubmitted",
            OperationEvent::OperationCompleted { .. } => "OperationCompleted",
            OperationEvent::OperationRejected { .. } => "OperationRejected",
            OperationEvent::OperationExpired { .. } => "OperationExpired",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OperationError {
    #[error("operation already exists")]
    AlreadyExists,
    #[error("operation not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for OperationError {
    fn kind(&self) -> ErrorKind {
        match self {
            OperationError::AlreadyExists => ErrorKind::Conflict,
            OperationError::NotFound => ErrorKind::NotFound,
            OperationError::Invalid(_) => ErrorKind::Validation,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub submission: Option<Submission>,
    /// "accepted", "completed" or "rejected".
    pub status: String,
}

impl Aggregate for Operation {
    const TYPE: &'static str = "operation";
    type Command = OperationCommand;
    type Event = OperationEvent;
    type Error = OperationError;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: OperationCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), OperationError> {
        match cmd {
            OperationCommand::Submit { submission, at } => {
                if self.submission.is_some() {
                    return Err(OperationError::AlreadyExists);
                }
                submission.validate().map_err(OperationError::Invalid)?;
                sink.write(OperationEvent::MessageSubmitted { submission, at }, self)
                    .await;
            }
            // Settling twice (a worker retrying after a crash) records nothing more.
            OperationCommand::Complete { message_id, at } => {
                if self.submission.is_none() {
                    return Err(OperationError::NotFound);
                }
                if self.status == "accepted" {
                    sink.write(OperationEvent::OperationCompleted { message_id, at }, self)
                        .await;
                }
            }
            OperationCommand::Reject { error, at } => {
                if self.submission.is_none() {
                    return Err(OperationError::NotFound);
                }
                if self.status == "accepted" {
                    sink.write(OperationEvent::OperationRejected { error, at }, self)
                        .await;
                }
            }
            // Only settled operations expire; expiring twice records nothing more.
            OperationCommand::Expire { at } => {
                if self.submission.is_none() {
                    return Err(OperationError::NotFound);
                }
                if self.status == "completed" || self.status == "rejected" {
                    sink.write(OperationEvent::OperationExpired { at }, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, e: OperationEvent) {
        match e {
            OperationEvent::MessageSubmitted { submission, .. } => {
                self.submission = Some(submission);
                self.status = "accepted".into();
            }
            OperationEvent::OperationCompleted { .. } => self.status = "completed".into(),
            OperationEvent::OperationRejected { .. } => self.status = "rejected".into(),
            OperationEvent::OperationExpired { .. } => {
                self.status = "expired".into();
                if let Some(sub) = &mut self.submission {
                    sub.text.clear();
                }
            }
        }
    }
}

// ---------- the message ----------

#[derive(Debug, Clone, PartialEq)]
pub enum MessageCommand {
    /// `author_is_member` is what the worker found in the chat when it posted.
    Post {
        submission: Submission,
        author_is_member: bool,
        at: DateTime<Utc>,
    },
    /// Only the author edits; the earlier texts stay in the events.
    Edit {
        by: String,
        text: String,
        filter_matches: Vec<String>,
        at: DateTime<Utc>,
    },
    /// Members react; one reaction per user and emoji.
    React {
        by: String,
        emoji: String,
        reaction_id: Uuid,
        is_member: bool,
        at: DateTime<Utc>,
    },
    Unreact {
        by: String,
        emoji: String,
        at: DateTime<Utc>,
    },
    /// Soft delete; `moderates` says whether `by` is an owner or moderator of the chat, or an admin.
    Delete {
        by: String,
        moderates: bool,
        at: DateTime<Utc>,
    },
    /// The chat's retention period passed (the retention job); the message is gone for good.
    Expire {
        retention_days: i64,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MessageEvent {
    MessagePosted {
        submission: Submission,
        created_at: DateTime<Utc>,
    },
    MessageDeleted {
        by: String,
        at: DateTime<Utc>,
    },
    MessageEdited {
        #[serde(deserialize_with = "super::retention::redacted_text")]
        text: String,
        at: DateTime<Utc>,
        #[serde(default)]
        filter_matches: Vec<String>,
    },
    /// Retention: the message stops being served and its texts are redacted from the log.
    MessageExpired {
        retention_days: i64,
        at: DateTime<Utc>,
    },
    /// The text (as posted or edited) matched the moderation filters and was stored masked.
    MessageFlagged {
        chat_id: Uuid,
        author_id: String,
        matches: Vec<String>,
        at: DateTime<Utc>,
    },
    ReactionAdded {
        reaction: Reaction,
    },
    ReactionRemoved {
        reaction_id: Uuid,
        user_id: String,
        emoji: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reaction {
    pub id: Uuid,
    pub user_id: String,
    pub emoji: String,
    pub created_at: DateTime<Utc>,
}

/// Distinct reactions one message holds.
pub const MAX_REACTIONS: usize = 200;

/// An emoji: 1 to 32 bytes, no whitespace or control characters, no `/`.
pub fn valid_emoji(e: &str) -> bool {
    !e.is_empty()
        && e.len() <= 32
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
}

impl DomainEvent for MessageEvent {
    fn event_type(&self) -> String {
        match self {
            MessageEvent::MessagePosted { .. } => "MessagePosted",
            MessageEvent::MessageDeleted { .. } => "MessageDeleted",
            MessageEvent::MessageEdited { .. } => "MessageEdited",
            MessageEvent::MessageFlagged { .. } => "MessageFlagged",
            MessageEvent::ReactionAdded { .. } => "ReactionAdded",
            MessageEvent::ReactionRemoved { .. } => "ReactionRemoved",
            MessageEvent::MessageExpired { .. } => "MessageExpired",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("message already posted")]
    AlreadyPosted,
    #[error("only members of the chat may post")]
    NotAMember,
    #[error("message not found")]
    NotFound,
    #[error("only the author, the chat's owners and moderators, or admins may delete a message")]
    NotAllowed,
    #[error("only the author may edit a message")]
    NotAuthor,
    #[error("only members of the chat may react")]
    NotAMemberToReact,
    #[error("reaction not found")]
    ReactionNotFound,
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for MessageError {
    fn kind(&self) -> ErrorKind {
        match self {
            MessageError::AlreadyPosted => ErrorKind::Conflict,
            MessageError::NotAMember
            | MessageError::NotAllowed
            | MessageError::NotAuthor
            | MessageError::NotAMemberToReact => ErrorKind::Forbidden,
            MessageError::ReactionNotFound => ErrorKind::NotFound,
            MessageError::Invalid(_) => ErrorKind::Validation,
            MessageError::NotFound => ErrorKind::NotFound,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub submission: Option<Submission>,
    pub created_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reactions: Vec<Reaction>,
    #[serde(default)]
    pub expired_at: Option<DateTime<Utc>>,
}

impl Message {
    fn live(&self) -> Result<&Submission, MessageError> {
        match &self.submission {
            Some(s) if self.deleted_at.is_none() && self.expired_at.is_none() => Ok(s),
            _ => Err(MessageError::NotFound),
        }
    }
}

impl Aggregate for Message {
    const TYPE: &'static str = "message";
    type Command = MessageCommand;
    type Event = MessageEvent;
    type Error = MessageError;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: MessageCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), MessageError> {
        match cmd {
            MessageCommand::Post {
                submission,
                author_is_member,
                at,
            } => {
                if self.submission.is_some() {
                    return Err(MessageError::AlreadyPosted);
                }
                if !author_is_member {
                    return Err(MessageError::NotAMember);
                }
                let matches = submission.filter_matches.clone();
                let (chat_id, author_id) = (submission.chat_id, submission.author_id.clone());
                sink.write(
                    MessageEvent::MessagePosted {
                        submission,
                        created_at: at,
                    },
                    self,
                )
                .await;
                if !matches.is_empty() {
                    let flagged = MessageEvent::MessageFlagged {
                        chat_id,
                        author_id,
                        matches,
                        at,
                    };
                    sink.write(flagged, self).await;
                }
            }
            MessageCommand::Edit {
                by,
                text,
                filter_matches,
                at,
            } => {
                let sub = self.live()?;
                if sub.author_id != by {
                    return Err(MessageError::NotAuthor);
                }
                let mut next = sub.clone();
                next.text = text.clone();
                next.validate().map_err(MessageError::Invalid)?;
                if text != sub.text {
                    let matches = filter_matches.clone();
                    let (chat_id, author_id) = (sub.chat_id, sub.author_id.clone());
                    sink.write(
                        MessageEvent::MessageEdited {
                            text,
                            at,
                            filter_matches,
                        },
                        self,
                    )
                    .await;
                    if !matches.is_empty() {
                        let flagged = MessageEvent::MessageFlagged {
                            chat_id,
                            author_id,
                            matches,
                            at,
                        };
                        sink.write(flagged, self).await;
                    }
                }
            }
            MessageCommand::React {
                by,
                emoji,
                reaction_id,
                is_member,
                at,
            } => {
                self.live()?;
                if !is_member {
                    return Err(MessageError::NotAMemberToReact);
                }
                if !valid_emoji(&emoji) {
                    return Err(MessageError::Invalid(
                        "emoji must be 1 to 32 bytes without spaces or '/'".into(),
                    ));
                }
                if self
                    .reactions
                    .iter()
                    .any(|r| r.user_id == by && r.emoji == emoji)
                {
                    // Reacting twice with the same emoji is one reaction.
                    return Ok(());
                }
                if self.reactions.len() >= MAX_REACTIONS {
                    return Err(MessageError::Invalid(format!(
                        "a message holds at most {MAX_REACTIONS} reactions"
                    )));
                }
                let reaction = Reaction {
                    id: reaction_id,
                    user_id: by,
                    emoji,
                    created_at: at,
                };
                sink.write(MessageEvent::ReactionAdded { reaction }, self)
                    .await;
            }
            MessageCommand::Unreact { by, emoji, at } => {
                self.live()?;
                let Some(r) = self
                    .reactions
                    .iter()
                    .find(|r| r.user_id == by && r.emoji == emoji)
                else {
                    return Err(MessageError::ReactionNotFound);
                };
                let reaction_id = r.id;
                sink.write(
                    MessageEvent::ReactionRemoved {
                        reaction_id,
                        user_id: by,
                        emoji,
                        at,
                    },
                    self,
                )
                .await;
            }
            MessageCommand::Delete { by, moderates, at } => {
                let Some(sub) = &self.submission else {
                    return Err(MessageError::NotFound);
                };
                // A deleted message is gone: deleting it again finds nothing.
                if self.deleted_at.is_some() || self.expired_at.is_some() {
                    return Err(MessageError::NotFound);
                }
                if sub.author_id != by && !moderates {
                    return Err(MessageError::NotAllowed);
                }
                sink.write(MessageEvent::MessageDeleted { by, at }, self)
                    .await;
            }
            // Expiring twice (a job retrying) records nothing more.
            MessageCommand::Expire { retention_days, at } => {
                if self.submission.is_none() {
                    return Err(MessageError::NotFound);
                }
                if self.expired_at.is_none() {
                    let e = MessageEvent::MessageExpired { retention_days, at };
                    sink.write(e, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, e: MessageEvent) {
        match e {
            MessageEvent::MessagePosted {
                submission,
                created_at,
            } => {
                self.submission = Some(submission);
                self.created_at = Some(created_at);
            }
            MessageEvent::MessageDeleted { at, .. } => self.deleted_at = Some(at),
            MessageEvent::MessageEdited {
                text,
                filter_matches,
                ..
            } => {
                if let Some(sub) = &mut self.submission {
                    sub.text = text;
                    sub.filter_matches = filter_matches;
                }
            }
            MessageEvent::MessageFlagged { .. } => {}
            MessageEvent::ReactionAdded { reaction } => self.reactions.push(reaction),
            MessageEvent::ReactionRemoved { reaction_id, .. } => {
                self.reactions.retain(|r| r.id != reaction_id)
            }
            MessageEvent::MessageExpired { at, .. } => {
                self.expired_at = Some(at);
                if let Some(sub) = &mut self.submission {
                    sub.text.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn sub() -> Submission {
        Submission {
            operation_id: Uuid::nil(),
            message_id: Uuid::nil(),
            chat_id: Uuid::nil(),
            author_id: "u_2".into(),
            kind: MessageType::Normal,
            text: "tea's out, restock pls".into(),
            attachments: vec![],
            metadata: serde_json::json!({"mentions": ["u_1"]}),
            filter_matches: vec![],
        }
    }

    #[tokio::test]
    async fn operations_settle_once_and_only_members_post() {
        let t = DateTime::UNIX_EPOCH;
        let submitted = OperationEvent::MessageSubmitted {
            submission: sub(),
            at: t,
        };
        TestFramework::<Operation>::with(())
            .given(vec![
                submitted.clone(),
                OperationEvent::OperationCompleted {
                    message_id: Uuid::nil(),
                    at: t,
                },
            ])
            .when_async(OperationCommand::Complete {
                message_id: Uuid::nil(),
                at: t,
            })
            .await
            .then_expect_events(vec![]);
        TestFramework::<Operation>::with(())
            .given(vec![submitted])
            .when_async(OperationCommand::Reject {
                error: "x".into(),
                at: t,
            })
            .await
            .then_expect_events(vec![OperationEvent::OperationRejected {
                error: "x".into(),
                at: t,
            }]);
        TestFramework::<Message>::with(())
            .given_no_previous_events()
            .when_async(MessageCommand::Post {
                submission: sub(),
                author_is_member: false,
                at: t,
            })
            .await
            .then_expect_error(MessageError::NotAMember);
        let posted = MessageEvent::MessagePosted {
            submission: sub(),
            created_at: t,
        };
        let delete = |by: &str, moderates: bool| MessageCommand::Delete {
            by: by.into(),
            moderates,
            at: t,
        };
        TestFramework::<Message>::with(())
            .given(vec![posted.clone()])
            .when_async(delete("u_3", false))
            .await
            .then_expect_error(MessageError::NotAllowed);
        TestFramework::<Message>::with(())
            .given(vec![posted.clone()])
            .when_async(delete("u_2", false))
            .await
            .then_expect_events(vec![MessageEvent::MessageDeleted {
                by: "u_2".into(),
                at: t,
            }]);
        TestFramework::<Message>::with(())
            .given(vec![
                posted,
                MessageEvent::MessageDeleted {
                    by: "u_2".into(),
                    at: t,
                },
            ])
            .when_async(delete("u_mod", true))
            .await
            .then_expect_error(MessageError::NotFound);
        let edit = |by: &str, text: &str| MessageCommand::Edit {
            by: by.into(),
            text: text.into(),
            filter_matches: vec![],
            at: t,
        };
        TestFramework::<Message>::with(())
            .given(vec![MessageEvent::MessagePosted {
                submission: sub(),
                created_at: t,
            }])
            .when_async(edit("u_1", "mine now"))
            .await
            .then_expect_error(MessageError::NotAuthor);
        TestFramework::<Message>::with(())
            .given(vec![MessageEvent::MessagePosted {
                submission: sub(),
                created_at: t,
            }])
            .when_async(edit("u_2", "tea's back"))
            .await
            .then_expect_events(vec![MessageEvent::MessageEdited {
                text: "tea's back".into(),
                at: t,
                filter_matches: vec![],
            }]);
        let r = TestFramework::<Message>::with(())
            .given(vec![MessageEvent::MessagePosted {
                submission: sub(),
                created_at: t,
            }])
            .when_async(edit("u_2", " "))
            .await
            .inspect_result();
        assert!(matches!(r, Err(MessageError::Invalid(_))));
        // A filtered submission is posted and flagged in one command.
        let flagged = Submission {
            text: "a ******* here".into(),
            filter_matches: vec!["badword".into()],
            ..sub()
        };
        TestFramework::<Message>::with(())
            .given_no_previous_events()
            .when_async(MessageCommand::Post {
                submission: flagged.clone(),
                author_is_member: true,
                at: t,
            })
            .await
            .then_expect_events(vec![
                MessageEvent::MessagePosted {
                    submission: flagged,
                    created_at: t,
                },
                MessageEvent::MessageFlagged {
                    chat_id: Uuid::nil(),
                    author_id: "u_2".into(),
                    matches: vec!["badword".into()],
                    at: t,
                },
            ]);
        let react = |by: &str, emoji: &str, is_member: bool| MessageCommand::React {
            by: by.into(),
            emoji: emoji.into(),
            reaction_id: Uuid::nil(),
            is_member,
            at: t,
        };
        let posted = || MessageEvent::MessagePosted {
            submission: sub(),
            created_at: t,
        };
        let reaction = Reaction {
            id: Uuid::nil(),
            user_id: "u_1".into(),
            emoji: "👍".into(),
            created_at: t,
        };
        TestFramework::<Message>::with(())
            .given(vec![posted()])
            .when_async(react("u_1", "👍", true))
            .await
            .then_expect_events(vec![MessageEvent::ReactionAdded {
                reaction: reaction.clone(),
            }]);
        TestFramework::<Message>::with(())
            .given(vec![posted(), MessageEvent::ReactionAdded { reaction }])
            .when_async(react("u_1", "👍", true))
            .await
            .then_expect_events(vec![]);
        TestFramework::<Message>::with(())
            .given(vec![posted()])
            .when_async(react("u_9", "👍", false))
            .await
            .then_expect_error(MessageError::NotAMemberToReact);
        TestFramework::<Message>::with(())
            .given(vec![posted()])
            .when_async(MessageCommand::Unreact {
                by: "u_1".into(),
                emoji: "👍".into(),
                at: t,
            })
            .await
            .then_expect_error(MessageError::ReactionNotFound);
        let r = TestFramework::<Message>::with(())
            .given(vec![posted()])
            .when_async(react("u_1", "two words", true))
            .await
            .inspect_result();
        assert!(matches!(r, Err(MessageError::Invalid(_))));
        let mut empty = sub();
        empty.text = " ".into();
        assert!(empty.validate().is_err());
        let mut long = sub();
        long.text = "x".repeat(MAX_TEXT + 1);
        assert!(long.validate().is_err());
    }
}
