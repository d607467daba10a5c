//! Reports of messages or users, triaged by admins: `open → triaged → resolved | rejected`
//! (an open report may also be resolved or rejected at once); a closed report stays closed.
//! And notices: an admin's broadcast into chats, recorded once, posted as `notice` messages.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::tea::validate;
use crate::{DomainError, ErrorKind};

pub const MAX_REPORT_REASON: usize = 500;
pub const MAX_EVIDENCE: usize = 10;
pub const MAX_NOTES: usize = 2_000;
pub const MAX_NOTICE_CHATS: usize = 100;
pub const MAX_NOTICE_TITLE: usize = 200;
pub const MAX_NOTICE_BODY: usize = 3_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    Open,
    Triaged,
    Resolved,
    Rejected,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Open => "open",
            ReportStatus::Triaged => "triaged",
            ReportStatus::Resolved => "resolved",
            ReportStatus::Rejected => "rejected",
        }
    }

    /// Whether a report may move from `self` to `next`.
    pub fn may_become(self, next: ReportStatus) -> bool {
        use ReportStatus::*;
        matches!(
            (self, next),
            (Open, Triaged) | (Open | Triaged, Resolved | Rejected)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewReport {
    pub id: Uuid,
    pub reporter_id: String,
    pub message_id: Option<Uuid>,
    pub chat_id: Option<Uuid>,
    pub reported_user_id: Option<String>,
    pub reason: String,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReportCommand {
    File {
        report: NewReport,
        at: DateTime<Utc>,
    },
    /// Admins only (checked at the edge: the route needs the role).
    Move {
        status: ReportStatus,
        notes: Option<String>,
        by: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReportEvent {
    ReportFiled {
        report: NewReport,
        at: DateTime<Utc>,
    },
    ReportStatusChanged {
        status: ReportStatus,
        notes: Option<String>,
        by: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ReportEvent {
    fn event_type(&self) -> String {
        match self {
            ReportEvent::ReportFiled { .. } => "ReportFiled",
            ReportEvent::ReportStatusChanged { .. } => "ReportStatusChanged",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReportError {
    #[error("report not found")]
    NotFound,
    #[error("report already exists")]
    AlreadyExists,
    #[error("a report that is {from} cannot become {to}")]
    BadTransition { from: String, to: String },
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for ReportError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReportError::NotFound => ErrorKind::NotFound,
            ReportError::AlreadyExists | ReportError::BadTransition { .. } => ErrorKind::Conflict,
            ReportError::Invalid(_) => ErrorKind::Validation,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub report: Option<NewReport>,
    pub status: Option<ReportStatus>,
}

impl Aggregate for Report {
    const TYPE: &'static str = "report";
    type Command = ReportCommand;
    type Event = ReportEvent;
    type Error = ReportError;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: ReportCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ReportError> {
        match cmd {
            ReportCommand::File { report, at } => {
                if self.report.is_some() {
                    return Err(ReportError::AlreadyExists);
                }
                validate::text("reason", &report.reason, MAX_REPORT_REASON)
                    .map_err(ReportError::Invalid)?;
                if report.message_id.is_none() && report.reported_user_id.is_none() {
                    return Err(ReportError::Invalid(
                        "a report names a message_id or a reported_user_id".into(),
                    ));
                }
                if let Some(u) = &report.reported_user_id {
                    validate::text("reported_user_id", u, 128).map_err(ReportError::Invalid)?;
                }
                if report.evidence.len() > MAX_EVIDENCE {
                    return Err(ReportError::Invalid(format!(
                        "at most {MAX_EVIDENCE} evidence links"
                    )));
                }
                for (i, e) in report.evidence.iter().enumerate() {
                    if !(e.starts_with("https://") || e.starts_with("http://")) || e.len() > 2_048 {
                        return Err(ReportError::Invalid(format!(
                            "evidence[{i}] must be an http(s) URL of at most 2048 bytes"
                        )));
                    }
                }
                sink.write(ReportEvent::ReportFiled { report, at }, self)
                    .await;
            }
            ReportCommand::Move {
                status,
                notes,
                by,
                at,
            } => {
                let Some(current) = self.status else {
                    return Err(ReportError::NotFound);
                };
                if let Some(n) = &notes {
                    validate::text("resolution_notes", n, MAX_NOTES)
                        .map_err(ReportError::Invalid)?;
                }
                if !current.may_become(status) {
                    return Err(ReportError::BadTransition {
                        from: current.as_str().into(),
                        to: status.as_str().into(),
                    });
                }
                sink.write(
                    ReportEvent::ReportStatusChanged {
                        status,
                        notes,
                        by,
                        at,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, e: ReportEvent) {
        match e {
            ReportEvent::ReportFiled { report, .. } => {
                self.report = Some(report);
                self.status = Some(ReportStatus::Open);
            }
            ReportEvent::ReportStatusChanged { status, .. } => self.status = Some(status),
        }
    }
}

// ---------- notices ----------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewNotice {
    pub id: Uuid,
    pub title: String,
    pub body: String,
    pub created_by: String,
    pub chat_ids: Vec<Uuid>,
    pub roles: Vec<String>,
}

/// Parses the chat ids of a notice as a client sent them (`field` names the list in errors): more
/// than [`MAX_NOTICE_CHATS`] is refused before any work, each must be a chat id, and duplicates
/// are dropped (the first kept) in linear time.
pub fn notice_chat_ids(raw: &[String], field: &str) -> Result<Vec<Uuid>, String> {
    if raw.len() > MAX_NOTICE_CHATS {
        return Err(format!("{field} must list 1 to {MAX_NOTICE_CHATS} chats"));
    }
    let mut seen = std::collections::HashSet::with_capacity(raw.len());
    let mut ids = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        let id: Uuid = c
            .parse()
            .map_err(|_| format!("{field}[{i}] is not a chat id"))?;
        if seen.insert(id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

impl NewNotice {
    pub fn validate(&self) -> Result<(), String> {
        validate::text("title", &self.title, MAX_NOTICE_TITLE)?;
        validate::text("body", &self.body, MAX_NOTICE_BODY)?;
        if self.chat_ids.is_empty() || self.chat_ids.len() > MAX_NOTICE_CHATS {
            return Err(format!("chat_ids must list 1 to {MAX_NOTICE_CHATS} chats"));
        }
        for r in &self.roles {
            if !matches!(r.as_str(), "owner" | "moderator" | "member") {
                return Err(format!(
                    "roles[] must be owner, moderator or member (got {r:?})"
                ));
            }
        }
        Ok(())
    }

    /// The text of the notice message posted into each chat.
    pub fn message_text(&self) -> String {
        format!("{}\n\n{}", self.title, self.body)
    }

    /// The ids of the notice's message in `chat`: fixed by the notice, so a retry posts nothing twice.
    pub fn ids_for(&self, chat: Uuid) -> (Uuid, Uuid) {
        let op = Uuid::new_v5(&self.id, format!("op:{chat}").as_bytes());
        let msg = Uuid::new_v5(&self.id, format!("msg:{chat}").as_bytes());
        (op, msg)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NoticeCommand {
    Broadcast {
        notice: NewNotice,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NoticeEvent {
    NoticeBroadcast {
        notice: NewNotice,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for NoticeEvent {
    fn event_type(&self) -> String {
        "NoticeBroadcast".into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NoticeError {
    #[error("notice already exists")]
    AlreadyExists,
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for NoticeError {
    fn kind(&self) -> ErrorKind {
        match self {
            NoticeError::AlreadyExists => ErrorKind::Conflict,
            NoticeError::Invalid(_) => ErrorKind::Validation,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub notice: Option<NewNotice>,
    pub created_at: Option<DateTime<Utc>>,
}

impl Aggregate for Notice {
    const TYPE: &'static str = "notice";
    type Command = NoticeCommand;
    type Event = NoticeEvent;
    type Error = NoticeError;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: NoticeCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), NoticeError> {
        let NoticeCommand::Broadcast { notice, at } = cmd;
        if self.notice.is_some() {
            return Err(NoticeError::AlreadyExists);
        }
        notice.validate().map_err(NoticeError::Invalid)?;
        sink.write(NoticeEvent::NoticeBroadcast { notice, at }, self)
            .await;
        Ok(())
    }

    fn apply(&mut self, e: NoticeEvent) {
        let NoticeEvent::NoticeBroadcast { notice, at } = e;
        self.notice = Some(notice);
        self.created_at = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    #[test]
    fn report_lifecycle() {
        use ReportStatus::*;
        assert!(Open.may_become(Triaged));
        assert!(Open.may_become(Resolved));
        assert!(Triaged.may_become(Rejected));
        assert!(!Triaged.may_become(Open));
        assert!(!Resolved.may_become(Rejected));
        assert!(!Rejected.may_become(Triaged));
        assert!(!Open.may_become(Open));
    }

    #[tokio::test]
    async fn reports_need_a_target_and_move_forward_only() {
        let t = DateTime::UNIX_EPOCH;
        let report = NewReport {
            id: Uuid::nil(),
            reporter_id: "u_2".into(),
            message_id: None,
            chat_id: None,
            reported_user_id: None,
            reason: "spam".into(),
            evidence: vec![],
        };
        let r = TestFramework::<Report>::with(())
            .given_no_previous_events()
            .when_async(ReportCommand::File {
                report: report.clone(),
                at: t,
            })
            .await
            .inspect_result();
        assert!(matches!(r, Err(ReportError::Invalid(_))));
        let report = NewReport {
            reported_user_id: Some("u_99".into()),
            ..report
        };
        let filed = ReportEvent::ReportFiled {
            report: report.clone(),
            at: t,
        };
        TestFramework::<Report>::with(())
            .given(vec![
                filed.clone(),
                ReportEvent::ReportStatusChanged {
                    status: ReportStatus::Resolved,
                    notes: None,
                    by: "u_admin".into(),
                    at: t,
                },
            ])
            .when_async(ReportCommand::Move {
                status: ReportStatus::Triaged,
                notes: None,
                by: "u_admin".into(),
                at: t,
            })
            .await
            .then_expect_error(ReportError::BadTransition {
                from: "resolved".into(),
                to: "triaged".into(),
            });
        let r = TestFramework::<Report>::with(())
            .given_no_previous_events()
            .when_async(ReportCommand::File {
                report: NewReport {
                    evidence: vec!["ftp://x".into()],
                    ..report
                },
                at: t,
            })
            .await
            .inspect_result();
        assert!(matches!(r, Err(ReportError::Invalid(_))));
    }

    #[test]
    fn notices_validate_and_fix_their_ids() {
        let n = NewNotice {
            id: Uuid::from_u128(7),
            title: "Kitchen closed".into(),
            body: "Cleaning 14:00-15:00".into(),
            created_by: "u_admin".into(),
            chat_ids: vec![Uuid::from_u128(1)],
            roles: vec!["member".into()],
        };
        assert!(n.validate().is_ok());
        assert_eq!(n.ids_for(Uuid::from_u128(1)), n.ids_for(Uuid::from_u128(1)));
        assert_ne!(n.ids_for(Uuid::from_u128(1)), n.ids_for(Uuid::from_u128(2)));
        assert!(NewNotice {
            roles: vec!["janitor".into()],
            ..n.clone()
        }
        .validate()
        .is_err());
        assert!(NewNotice {
            chat_ids: vec![],
            ..n
        }
        .validate()
        .is_err());
    }
}
