//! Sanctions: bans and mutes. One `Moderation` stream per scope: the chat's id for sanctions in
//! one chat, `global` for lab-wide ones. A sanction is active from when it is applied until its
//! `until` (if any) or its revocation. A muted user reads but does not post; a user banned from a
//! chat loses membership and cannot be re-added while banned; a global ban blocks posting
//! everywhere. Chat owners and moderators sanction in their chat; admins anywhere.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::tea::validate;
use crate::{DomainError, ErrorKind};

/// The stream of lab-wide sanctions.
pub const GLOBAL_SCOPE: &str = "global";
pub const MAX_REASON: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SanctionKind {
    Ban,
    Mute,
}

impl SanctionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SanctionKind::Ban => "ban",
            SanctionKind::Mute => "mute",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SanctionScope {
    Chat,
    Global,
}

impl SanctionScope {
    pub fn as_str(self) -> &'static str {
        match self {
            SanctionScope::Chat => "chat",
            SanctionScope::Global => "global",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sanction {
    pub id: Uuid,
    pub user_id: String,
    pub kind: SanctionKind,
    pub scope: SanctionScope,
    pub chat_id: Option<Uuid>,
    pub reason: Option<String>,
    pub applied_by: String,
    pub applied_at: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
}

impl Sanction {
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.until.is_none_or(|u| u > now)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModerationCommand {
    /// `allowed`: the actor moderates this scope (checked by the caller against the chat: owner,
    /// moderator or admin; for the global scope: admin).
    Apply { sanction: Sanction, allowed: bool },
    Revoke {
        sanction_id: Uuid,
        by: String,
        allowed: bool,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ModerationEvent {
    SanctionApplied {
        sanction: Sanction,
    },
    SanctionRevoked {
        sanction_id: Uuid,
        by: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ModerationEvent {
    fn event_type(&self) -> String {
        match self {
            ModerationEvent::SanctionApplied { .. } => "SanctionApplied",
            ModerationEvent::SanctionRevoked { .. } => "SanctionRevoked",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModerationError {
    #[error("{0}")]
    Forbidden(String),
    #[error("sanction not found")]
    NotFound,
    #[error("sanction already revoked")]
    AlreadyRevoked,
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for ModerationError {
    fn kind(&self) -> ErrorKind {
        match self {
            ModerationError::Forbidden(_) => ErrorKind::Forbidden,
            ModerationError::NotFound => ErrorKind::NotFound,
            ModerationError::AlreadyRevoked => ErrorKind::Conflict,
            ModerationError::Invalid(_) => ErrorKind::Validation,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Moderation {
    pub sanctions: Vec<Sanction>,
}

impl Moderation {
    /// The user's active sanction of this kind, if any (the one that lasts longest).
    pub fn active(
        &self,
        user_id: &str,
        kind: SanctionKind,
        now: DateTime<Utc>,
    ) -> Option<&Sanction> {
        self.sanctions
            .iter()
            .filter(|s| s.user_id == user_id && s.kind == kind && s.active_at(now))
            .max_by_key(|s| s.until.unwrap_or(DateTime::<Utc>::MAX_UTC))
    }

    /// Why the user may not post in this scope right now, if they may not.
    pub fn blocks_posting(&self, user_id: &str, now: DateTime<Utc>) -> Option<String> {
        let s = self
            .active(user_id, SanctionKind::Ban, now)
            .or_else(|| self.active(user_id, SanctionKind::Mute, now))?;
        let verb = match s.kind {
            SanctionKind::Ban => "banned",
            SanctionKind::Mute => "muted",
        };
        let scope = match s.scope {
            SanctionScope::Chat => "in this chat",
            SanctionScope::Global => "everywhere",
        };
        Some(match s.until {
            Some(u) => format!("you are {verb} {scope} until {}", u.to_rfc3339()),
            None => format!("you are {verb} {scope}"),
        })
    }
}

impl Aggregate for Moderation {
    const TYPE: &'static str = "moderation";
    type Command = ModerationCommand;
    type Event = ModerationEvent;
    type Error = ModerationError;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: ModerationCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ModerationError> {
        match cmd {
            ModerationCommand::Apply { sanction, allowed } => {
                if !allowed {
                    return Err(ModerationError::Forbidden(match sanction.scope {
                        SanctionScope::Chat => {
                            "only the chat's owners and moderators, or admins, sanction in a chat"
                        }
                        SanctionScope::Global => "only admins apply global sanctions",
                    }
                    .into()));
                }
                validate::text("user_id", &sanction.user_id, 128)
                    .map_err(ModerationError::Invalid)?;
                if sanction.user_id == sanction.applied_by {
                    return Err(ModerationError::Invalid(
                        "you cannot sanction yourself".into(),
                    ));
                }
                if let Some(r) = &sanction.reason {
                    validate::text("reason", r, MAX_REASON).map_err(ModerationError::Invalid)?;
                }
                if sanction.until.is_some_and(|u| u <= sanction.applied_at) {
                    return Err(ModerationError::Invalid(
                        "until must be in the future".into(),
                    ));
                }
                if (sanction.scope == SanctionScope::Chat) != sanction.chat_id.is_some() {
                    return Err(ModerationError::Invalid(
                        "a chat sanction needs chat_id; a global one has none".into(),
                    ));
                }
                sink.write(ModerationEvent::SanctionApplied { sanction }, self)
                    .await;
            }
            ModerationCommand::Revoke {
                sanction_id,
                by,
                allowed,
                at,
            } => {
                let Some(s) = self.sanctions.iter().find(|s| s.id == sanction_id) else {
                    return Err(ModerationError::NotFound);
                };
                if !allowed {
                    return Err(ModerationError::Forbidden(
                        "only those who may apply a sanction revoke it".into(),
                    ));
                }
                if s.revoked_at.is_some() {
                    return Err(ModerationError::AlreadyRevoked);
                }
                sink.write(
                    ModerationEvent::SanctionRevoked {
                        sanction_id,
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

    fn apply(&mut self, e: ModerationEvent) {
        match e {
            ModerationEvent::SanctionApplied { sanction } => self.sanctions.push(sanction),
            ModerationEvent::SanctionRevoked {
                sanction_id,
                by,
                at,
            } => {
                if let Some(s) = self.sanctions.iter_mut().find(|s| s.id == sanction_id) {
                    s.revoked_at = Some(at);
                    s.revoked_by = Some(by);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use cqrs_es::test::TestFramework;

    fn sanction(kind: SanctionKind, until: Option<DateTime<Utc>>) -> Sanction {
        let t = DateTime::UNIX_EPOCH;
        Sanction {
            id: Uuid::nil(),
            user_id: "u_99".into(),
            kind,
            scope: SanctionScope::Chat,
            chat_id: Some(Uuid::nil()),
            reason: Some("abuse".into()),
            applied_by: "u_mod".into(),
            applied_at: t,
            until,
            revoked_at: None,
            revoked_by: None,
        }
    }

    #[tokio::test]
    async fn who_applies_and_what_is_valid() {
        let t = DateTime::UNIX_EPOCH;
        let apply = |s: Sanction, allowed: bool| ModerationCommand::Apply {
            sanction: s,
            allowed,
        };
        let s = sanction(SanctionKind::Ban, Some(t + Duration::hours(1)));
        TestFramework::<Moderation>::with(())
            .given_no_previous_events()
            .when_async(apply(s.clone(), true))
            .await
            .then_expect_events(vec![ModerationEvent::SanctionApplied {
                sanction: s.clone(),
            }]);
        let r = TestFramework::<Moderation>::with(())
            .given_no_previous_events()
            .when_async(apply(s.clone(), false))
            .await
            .inspect_result();
        assert!(matches!(r, Err(ModerationError::Forbidden(_))));
        for bad in [
            sanction(SanctionKind::Mute, Some(t)),
            Sanction {
                user_id: "u_mod".into(),
                ..s.clone()
            },
            Sanction {
                chat_id: None,
                ..s.clone()
            },
            Sanction {
                scope: SanctionScope::Global,
                ..s.clone()
            },
        ] {
            let r = TestFramework::<Moderation>::with(())
                .given_no_previous_events()
                .when_async(apply(bad, true))
                .await
                .inspect_result();
            assert!(matches!(r, Err(ModerationError::Invalid(_))), "{r:?}");
        }
    }

    #[tokio::test]
    async fn revoking_and_expiry() {
        let t = DateTime::UNIX_EPOCH;
        let s = sanction(SanctionKind::Mute, Some(t + Duration::hours(1)));
        let applied = ModerationEvent::SanctionApplied {
            sanction: s.clone(),
        };
        let revoke = |allowed| ModerationCommand::Revoke {
            sanction_id: Uuid::nil(),
            by: "u_mod".into(),
            allowed,
            at: t,
        };
        TestFramework::<Moderation>::with(())
            .given(vec![applied.clone()])
            .when_async(revoke(true))
            .await
            .then_expect_events(vec![ModerationEvent::SanctionRevoked {
                sanction_id: Uuid::nil(),
                by: "u_mod".into(),
                at: t,
            }]);
        TestFramework::<Moderation>::with(())
            .given(vec![
                applied.clone(),
                ModerationEvent::SanctionRevoked {
                    sanction_id: Uuid::nil(),
                    by: "u_mod".into(),
                    at: t,
                },
            ])
            .when_async(revoke(true))
            .await
            .then_expect_error(ModerationError::AlreadyRevoked);
        TestFramework::<Moderation>::with(())
            .given_no_previous_events()
            .when_async(revoke(true))
            .await
            .then_expect_error(ModerationError::NotFound);

        let mut m = Moderation::default();
        m.apply(applied);
        assert!(m
            .blocks_posting("u_99", t + Duration::minutes(59))
            .is_some());
        assert!(m.blocks_posting("u_99", t + Duration::hours(1)).is_none());
        assert!(m.blocks_posting("u_1", t).is_none());
        assert!(m.active("u_99", SanctionKind::Ban, t).is_none());
        m.apply(ModerationEvent::SanctionApplied {
            sanction: Sanction {
                id: Uuid::from_u128(1),
                ..sanction(SanctionKind::Ban, None)
            },
        });
        let why = m.blocks_posting("u_99", t + Duration::days(400)).unwrap();
        assert_eq!(why, "you are banned in this chat");
    }
}
