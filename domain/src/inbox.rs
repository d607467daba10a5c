//! A user's notification inbox state: what they have read and deleted. The notifications
//! themselves are derived by the notification sink from the events that leave the system.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::{DomainError, ErrorKind};

#[derive(Debug, Clone, PartialEq)]
pub enum InboxCommand {
    MarkRead {
        notification_id: String,
        at: DateTime<Utc>,
    },
    /// Everything visible to the user (their id, these roles, everyone) up to `up_to_seq`.
    MarkAllRead {
        roles: Vec<String>,
        up_to_seq: i64,
        at: DateTime<Utc>,
    },
    Delete {
        notification_id: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InboxEvent {
    NotificationRead {
        notification_id: String,
        at: DateTime<Utc>,
    },
    AllNotificationsRead {
        roles: Vec<String>,
        up_to_seq: i64,
        at: DateTime<Utc>,
    },
    NotificationDeleted {
        notification_id: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for InboxEvent {
    fn event_type(&self) -> String {
        match self {
            InboxEvent::NotificationRead { .. } => "NotificationRead",
            InboxEvent::AllNotificationsRead { .. } => "AllNotificationsRead",
            InboxEvent::NotificationDeleted { .. } => "NotificationDeleted",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InboxError {
    #[error("notification not found")]
    NotFound,
}

impl DomainError for InboxError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::NotFound
    }
}

/// Per user: the ids read or deleted one by one (bounded by what the user touches).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inbox {
    pub read: std::collections::BTreeSet<String>,
    pub deleted: std::collections::BTreeSet<String>,
}

impl Aggregate for Inbox {
    const TYPE: &'static str = "inbox";
    type Command = InboxCommand;
    type Event = InboxEvent;
    type Error = InboxError;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: InboxCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), InboxError> {
        match cmd {
            InboxCommand::MarkRead {
                notification_id,
                at,
            } => {
                if self.deleted.contains(&notification_id) {
                    return Err(InboxError::NotFound);
                }
                // Reading twice changes nothing and records nothing.
                if !self.read.contains(&notification_id) {
                    sink.write(
                        InboxEvent::NotificationRead {
                            notification_id,
                            at,
                        },
                        self,
                    )
                    .await;
                }
            }
            InboxCommand::MarkAllRead {
                roles,
                up_to_seq,
                at,
            } => {
                sink.write(
                    InboxEvent::AllNotificationsRead {
                        roles,
                        up_to_seq,
                        at,
                    },
                    self,
                )
                .await;
            }
            InboxCommand::Delete {
                notification_id,
                at,
            } => {
                if self.deleted.contains(&notification_id) {
                    return Err(InboxError::NotFound);
                }
                sink.write(
                    InboxEvent::NotificationDeleted {
                        notification_id,
                        at,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, e: InboxEvent) {
        match e {
            InboxEvent::NotificationRead {
                notification_id, ..
            } => {
                self.read.insert(notification_id);
            }
            InboxEvent::AllNotificationsRead { .. } => {}
            InboxEvent::NotificationDeleted {
                notification_id, ..
            } => {
                self.deleted.insert(notification_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn t() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

    #[tokio::test]
    async fn reading_is_recorded_once_and_deleted_is_gone() {
        let read = InboxEvent::NotificationRead {
            notification_id: "n1".into(),
            at: t(),
        };
        TestFramework::<Inbox>::with(())
            .given_no_previous_events()
            .when_async(InboxCommand::MarkRead {
                notification_id: "n1".into(),
                at: t(),
            })
            .await
            .then_expect_events(vec![read.clone()]);
        TestFramework::<Inbox>::with(())
            .given(vec![read])
            .when_async(InboxCommand::MarkRead {
                notification_id: "n1".into(),
                at: t(),
            })
            .await
            .then_expect_events(vec![]);
        let deleted = InboxEvent::NotificationDeleted {
            notification_id: "n1".into(),
            at: t(),
        };
        TestFramework::<Inbox>::with(())
            .given(vec![deleted])
            .when_async(InboxCommand::Delete {
                notification_id: "n1".into(),
                at: t(),
            })
            .await
            .then_expect_error(InboxError::NotFound);
    }
}
