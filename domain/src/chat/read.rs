//! Read receipts: one `ReadPosition` stream per (chat, user), id [`read_position_id`]. The
//! position is the last message the user has read; it only moves forward, by the messages'
//! order (`created_at`, then id): moving it to an earlier message (or the same one) records
//! nothing and leaves it where it is.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{DomainError, ErrorKind};

/// The stream id of `user_id`'s read position in `chat_id`.
pub fn read_position_id(chat_id: Uuid, user_id: &str) -> String {
    format!("{chat_id}/{user_id}")
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReadCommand {
    /// The caller read up to `message_id` (a message of `chat_id`, created at
    /// `message_created_at`); the edge checked both.
    MarkRead {
        chat_id: Uuid,
        user_id: String,
        message_id: Uuid,
        message_created_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReadEvent {
    ReadPositionMoved {
        chat_id: Uuid,
        user_id: String,
        message_id: Uuid,
        message_created_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ReadEvent {
    fn event_type(&self) -> String {
        match self {
            ReadEvent::ReadPositionMoved { .. } => "ReadPositionMoved",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReadError {
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for ReadError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Validation
    }
}

/// Where one user has read up to in one chat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadPosition {
    pub chat_id: Option<Uuid>,
    pub user_id: Option<String>,
    pub last_read_message_id: Option<Uuid>,
    pub last_read_message_created_at: Option<DateTime<Utc>>,
    pub last_read_at: Option<DateTime<Utc>>,
}

impl ReadPosition {
    /// Whether `(created_at, id)` is after the current position.
    pub fn is_ahead(&self, created_at: DateTime<Utc>, id: Uuid) -> bool {
        match (self.last_read_message_created_at, self.last_read_message_id) {
            (Some(c), Some(m)) => (created_at, id) > (c, m),
            _ => true,
        }
    }
}

impl Aggregate for ReadPosition {
    const TYPE: &'static str = "read_position";
    type Command = ReadCommand;
    type Event = ReadEvent;
    type Error = ReadError;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: ReadCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ReadError> {
        let ReadCommand::MarkRead {
            chat_id,
            user_id,
            message_id,
            message_created_at,
            at,
        } = cmd;
        if self.chat_id.is_some_and(|c| c != chat_id)
            || self.user_id.as_ref().is_some_and(|u| *u != user_id)
        {
            return Err(ReadError::Invalid(
                "a read position belongs to one chat and one user".into(),
            ));
        }
        // Backwards (or the same message again): the position stays, nothing is recorded.
        if self.is_ahead(message_created_at, message_id) {
            sink.write(
                ReadEvent::ReadPositionMoved {
                    chat_id,
                    user_id,
                    message_id,
                    message_created_at,
                    at,
                },
                self,
            )
            .await;
        }
        Ok(())
    }

    fn apply(&mut self, e: ReadEvent) {
        let ReadEvent::ReadPositionMoved {
            chat_id,
            user_id,
            message_id,
            message_created_at,
            at,
        } = e;
        self.chat_id = Some(chat_id);
        self.user_id = Some(user_id);
        self.last_read_message_id = Some(message_id);
        self.last_read_message_created_at = Some(message_created_at);
        self.last_read_at = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn mark(msg: Uuid, created: i64) -> ReadCommand {
        ReadCommand::MarkRead {
            chat_id: Uuid::nil(),
            user_id: "u_1".into(),
            message_id: msg,
            message_created_at: t(created),
            at: t(100),
        }
    }

    fn moved(msg: Uuid, created: i64) -> ReadEvent {
        ReadEvent::ReadPositionMoved {
            chat_id: Uuid::nil(),
            user_id: "u_1".into(),
            message_id: msg,
            message_created_at: t(created),
            at: t(100),
        }
    }

    #[tokio::test]
    async fn the_position_only_moves_forward() {
        let (m1, m2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        TestFramework::<ReadPosition>::with(())
            .given_no_previous_events()
            .when_async(mark(m1, 10))
            .await
            .then_expect_events(vec![moved(m1, 10)]);
        TestFramework::<ReadPosition>::with(())
            .given(vec![moved(m1, 10)])
            .when_async(mark(m2, 20))
            .await
            .then_expect_events(vec![moved(m2, 20)]);
        // Earlier message, the same message, or the same time with a lower id: nothing.
        for (m, c) in [(m1, 10), (m2, 20), (m1, 20)] {
            TestFramework::<ReadPosition>::with(())
                .given(vec![moved(m1, 10), moved(m2, 20)])
                .when_async(mark(m, c))
                .await
                .then_expect_events(vec![]);
        }
    }

    #[tokio::test]
    async fn another_chat_or_user_is_refused() {
        let ReadCommand::MarkRead {
            chat_id,
            message_id,
            message_created_at,
            at,
            ..
        } = mark(Uuid::from_u128(3), 30);
        let cmd = ReadCommand::MarkRead {
            chat_id,
            user_id: "u_2".into(),
            message_id,
            message_created_at,
            at,
        };
        TestFramework::<ReadPosition>::with(())
            .given(vec![moved(Uuid::from_u128(1), 10)])
            .when_async(cmd)
            .await
            .then_expect_error(ReadError::Invalid(
                "a read position belongs to one chat and one user".into(),
            ));
    }
}
