//! The `Announcement` aggregate: an admin's note to the lab about its consumables.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::validate;
use crate::{DomainError, ErrorKind};

/// Items one announcement may name.
pub const MAX_ITEM_IDS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnouncementSpec {
    pub announcement_id: Uuid,
    pub title: String,
    pub body: String,
    pub effective_from: DateTime<Utc>,
    pub item_ids: Vec<Uuid>,
    pub published_by: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AnnouncementCommand {
    Publish {
        spec: AnnouncementSpec,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnnouncementEvent {
    AnnouncementPublished {
        spec: AnnouncementSpec,
        created_at: DateTime<Utc>,
    },
}

impl DomainEvent for AnnouncementEvent {
    fn event_type(&self) -> String {
        "AnnouncementPublished".into()
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AnnouncementError {
    #[error("announcement already exists")]
    AlreadyExists,
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for AnnouncementError {
    fn kind(&self) -> ErrorKind {
        match self {
            AnnouncementError::AlreadyExists => ErrorKind::Conflict,
            AnnouncementError::Invalid(_) => ErrorKind::Validation,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    pub spec: Option<AnnouncementSpec>,
    pub created_at: Option<DateTime<Utc>>,
}

impl Aggregate for Announcement {
    const TYPE: &'static str = "announcement";
    type Command = AnnouncementCommand;
    type Event = AnnouncementEvent;
    type Error = AnnouncementError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AnnouncementCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), AnnouncementError> {
        let AnnouncementCommand::Publish { spec, at } = command;
        if self.spec.is_some() {
            return Err(AnnouncementError::AlreadyExists);
        }
        validate::text("title", &spec.title, validate::MAX_NAME)
            .map_err(AnnouncementError::Invalid)?;
        validate::text("body", &spec.body, validate::MAX_BODY)
            .map_err(AnnouncementError::Invalid)?;
        if spec.item_ids.len() > MAX_ITEM_IDS {
            return Err(AnnouncementError::Invalid(format!(
                "at most {MAX_ITEM_IDS} item_ids"
            )));
        }
        sink.write(
            AnnouncementEvent::AnnouncementPublished {
                spec,
                created_at: at,
            },
            self,
        )
        .await;
        Ok(())
    }

    fn apply(&mut self, event: AnnouncementEvent) {
        let AnnouncementEvent::AnnouncementPublished { spec, created_at } = event;
        self.spec = Some(spec);
        self.created_at = Some(created_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn spec() -> AnnouncementSpec {
        AnnouncementSpec {
            announcement_id: Uuid::nil(),
            title: "New tea arrived!".into(),
            body: "Try jasmine.".into(),
            effective_from: DateTime::UNIX_EPOCH,
            item_ids: vec![],
            published_by: "u_admin".into(),
        }
    }

    #[tokio::test]
    async fn publishes_once() {
        let at = DateTime::UNIX_EPOCH;
        TestFramework::<Announcement>::with(())
            .given_no_previous_events()
            .when_async(AnnouncementCommand::Publish { spec: spec(), at })
            .await
            .then_expect_events(vec![AnnouncementEvent::AnnouncementPublished {
                spec: spec(),
                created_at: at,
            }]);
        TestFramework::<Announcement>::with(())
            .given(vec![AnnouncementEvent::AnnouncementPublished {
                spec: spec(),
                created_at: at,
            }])
            .when_async(AnnouncementCommand::Publish { spec: spec(), at })
            .await
            .then_expect_error(AnnouncementError::AlreadyExists);
    }

    #[tokio::test]
    async fn rejects_empty_title_and_too_many_items() {
        let mut s = spec();
        s.title = "  ".into();
        let r = TestFramework::<Announcement>::with(())
            .given_no_previous_events()
            .when_async(AnnouncementCommand::Publish {
                spec: s,
                at: DateTime::UNIX_EPOCH,
            })
            .await
            .inspect_result();
        assert!(matches!(r, Err(AnnouncementError::Invalid(_))));
        let mut s = spec();
        s.item_ids = vec![Uuid::nil(); MAX_ITEM_IDS + 1];
        let r = TestFramework::<Announcement>::with(())
            .given_no_previous_events()
            .when_async(AnnouncementCommand::Publish {
                spec: s,
                at: DateTime::UNIX_EPOCH,
            })
            .await
            .inspect_result();
        assert!(matches!(r, Err(AnnouncementError::Invalid(_))));
    }
}
