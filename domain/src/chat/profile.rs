//! A user's public profile, synced from User Management (`POST /users/sync`), or created minimal
//! the first time a user with a valid token calls the API.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::tea::validate;
use crate::{DomainError, ErrorKind};

pub const MAX_NICKNAME: usize = 64;
pub const MAX_URL: usize = 2_048;
pub const MAX_PROFILE_ROLES: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileData {
    pub nickname: String,
    pub avatar_url: Option<String>,
    pub roles: Vec<String>,
    pub discord_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProfileCommand {
    Sync {
        user_id: String,
        data: ProfileData,
        at: DateTime<Utc>,
    },
    /// Creates `{nickname: user_id}` unless a profile exists.
    EnsureMinimal { user_id: String, at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProfileEvent {
    ProfileSynced {
        user_id: String,
        data: ProfileData,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ProfileEvent {
    fn event_type(&self) -> String {
        "ProfileSynced".into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for ProfileError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Validation
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub user_id: Option<String>,
    pub data: ProfileData,
}

fn check(data: &ProfileData) -> Result<(), ProfileError> {
    validate::text("nickname", &data.nickname, MAX_NICKNAME).map_err(ProfileError::Invalid)?;
    if let Some(url) = &data.avatar_url {
        if url.len() > MAX_URL || !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ProfileError::Invalid(format!(
                "avatar_url must be an http(s) URL of at most {MAX_URL} bytes"
            )));
        }
    }
    if data.roles.len() > MAX_PROFILE_ROLES {
        return Err(ProfileError::Invalid(format!(
            "at most {MAX_PROFILE_ROLES} roles"
        )));
    }
    for r in &data.roles {
        validate::text("role", r, 32).map_err(ProfileError::Invalid)?;
    }
    validate::optional_text("discord_id", data.discord_id.as_deref(), 64)
        .map_err(ProfileError::Invalid)
}

impl Aggregate for Profile {
    const TYPE: &'static str = "profile";
    type Command = ProfileCommand;
    type Event = ProfileEvent;
    type Error = ProfileError;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: ProfileCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ProfileError> {
        match cmd {
            ProfileCommand::Sync { user_id, data, at } => {
                check(&data)?;
                // Syncing what is already there records nothing.
                if self.user_id.is_none() || self.data != data {
                    sink.write(ProfileEvent::ProfileSynced { user_id, data, at }, self)
                        .await;
                }
            }
            ProfileCommand::EnsureMinimal { user_id, at } => {
                if self.user_id.is_none() {
                    let data = ProfileData {
                        nickname: user_id.clone(),
                        ..Default::default()
                    };
                    sink.write(ProfileEvent::ProfileSynced { user_id, data, at }, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, e: ProfileEvent) {
        let ProfileEvent::ProfileSynced { user_id, data, .. } = e;
        self.user_id = Some(user_id);
        self.data = data;
    }
}
