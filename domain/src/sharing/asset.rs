//! The `Asset` aggregate (stream `asset/<id>`): a shared item, who holds it now, and the damage
//! reported on it.
//!
//! One holder at a time: taking an asset someone (or you) already holds is a conflict, and so is
//! its owner taking it. Returning is for the holder, the owner or an admin. A damage report names
//! the user who owes its cost in the asset's currency. Only admins and executors may name anyone;
//! the owner may only name a user who held the asset (an open or a past loan), so owning an asset
//! is no way to book a debt against a stranger. What one user is charged on one asset, summed over
//! every report, never exceeds the replacement cost.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::budget::check_amount;
use crate::tea::validate;
use crate::{DomainError, ErrorKind};

/// The owner id of assets that belong to the lab.
pub const LAB: &str = "lab";
pub const MAX_NAME: usize = 200;
pub const MAX_CATEGORY: usize = 100;
pub const MAX_NOTES: usize = 2_000;
/// Shorter than a debt's reason, which repeats it.
pub const MAX_DAMAGE_DESCRIPTION: usize = 1_000;
/// Longest loan, from the moment it is taken.
pub const MAX_LOAN: Duration = Duration::days(365);
/// Damage reports one asset may carry.
pub const MAX_DAMAGE_REPORTS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Ok,
    Damaged,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Ok => "ok",
            Condition::Damaged => "damaged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetSpec {
    pub asset_id: Uuid,
    pub name: String,
    pub category: String,
    /// A user id, or [`LAB`].
    pub owner_id: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub replacement_cost: Decimal,
    pub currency: String,
    pub notes: Option<String>,
    pub registered_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loan {
    pub loan_id: Uuid,
    pub user_id: String,
    pub taken_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DamageReport {
    pub report_id: Uuid,
    /// Who owes the cost.
    pub user_id: String,
    pub description: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub cost: Decimal,
    pub currency: String,
    pub reported_by: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AssetCommand {
    Register {
        spec: AssetSpec,
        at: DateTime<Utc>,
    },
    Take {
        loan_id: Uuid,
        user_id: String,
        due_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// `is_admin`: the caller may return anyone's loan.
    Return {
        condition: Condition,
        notes: Option<String>,
        by: String,
        is_admin: bool,
        at: DateTime<Utc>,
    },
    /// `is_staff`: the caller is an admin or executor (the owner may report too).
    ReportDamage {
        report_id: Uuid,
        user_id: String,
        description: String,
        cost: Decimal,
        by: String,
        is_staff: bool,
        at: DateTime<Utc>,
    },
}

/// Events of an `asset` stream. Type names and versions are a stored contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AssetEvent {
    AssetRegistered {
        spec: AssetSpec,
        registered_at: DateTime<Utc>,
    },
    ItemTaken {
        loan: Loan,
    },
    ItemReturned {
        loan: Loan,
        condition: Condition,
        notes: Option<String>,
        returned_by: String,
        returned_at: DateTime<Utc>,
    },
    DamageReported {
        report: DamageReport,
        reported_at: DateTime<Utc>,
    },
}

impl DomainEvent for AssetEvent {
    fn event_type(&self) -> String {
        match self {
            AssetEvent::AssetRegistered { .. } => "AssetRegistered",
            AssetEvent::ItemTaken { .. } => "ItemTaken",
            AssetEvent::ItemReturned { .. } => "ItemReturned",
            AssetEvent::DamageReported { .. } => "DamageReported",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AssetError {
    #[error("asset not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for AssetError {
    fn kind(&self) -> ErrorKind {
        match self {
            AssetError::NotFound => ErrorKind::NotFound,
            AssetError::Forbidden(_) => ErrorKind::Forbidden,
            AssetError::Conflict(_) => ErrorKind::Conflict,
            AssetError::Invalid(_) => ErrorKind::Validation,
        }
    }
}

fn invalid(e: String) -> AssetError {
    AssetError::Invalid(e)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    pub spec: Option<AssetSpec>,
    pub holder: Option<Loan>,
    pub loans: u64,
    pub damage_reports: HashSet<Uuid>,
    /// Every user who ever held the asset (open or past loan).
    #[serde(default)]
    pub holders: HashSet<String>,
    /// Damage charged so far, per user.
    #[serde(default)]
    pub charged: HashMap<String, Decimal>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Asset {
    fn spec(&self) -> Result<&AssetSpec, AssetError> {
        self.spec.as_ref().ok_or(AssetError::NotFound)
    }
}

fn check_spec(s: &AssetSpec) -> Result<(), AssetError> {
    validate::text("name", &s.name, MAX_NAME).map_err(invalid)?;
    validate::text("category", &s.category, MAX_CATEGORY).map_err(invalid)?;
    validate::text("owner_id", &s.owner_id, validate::MAX_SHORT).map_err(invalid)?;
    check_amount("replacement_cost", s.replacement_cost).map_err(|e| invalid(e.to_string()))?;
    validate::currency(&s.currency).map_err(invalid)?;
    validate::optional_text("notes", s.notes.as_deref(), MAX_NOTES).map_err(invalid)
}

impl Aggregate for Asset {
    const TYPE: &'static str = "asset";
    type Command = AssetCommand;
    type Event = AssetEvent;
    type Error = AssetError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AssetCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), AssetError> {
        match command {
            AssetCommand::Register { spec, at } => {
                if self.spec.is_some() {
                    return Err(AssetError::Conflict("asset already exists".into()));
                }
                check_spec(&spec)?;
                sink.write(
                    AssetEvent::AssetRegistered {
                        spec,
                        registered_at: at,
                    },
                    self,
                )
                .await;
            }
            AssetCommand::Take {
                loan_id,
                user_id,
                due_at,
                at,
            } => {
                let spec = self.spec()?;
                if due_at <= at {
                    return Err(invalid("due_at must be in the future".into()));
                }
                if due_at > at + MAX_LOAN {
                    return Err(invalid(format!(
                        "due_at must be within {} days",
                        MAX_LOAN.num_days()
                    )));
                }
                if let Some(h) = &self.holder {
                    return Err(AssetError::Conflict(if h.user_id == user_id {
                        "you already hold this asset".into()
                    } else {
                        "the asset is already taken".into()
                    }));
                }
                if spec.owner_id == user_id {
                    return Err(AssetError::Conflict(
                        "you own this asset; there is nothing to take".into(),
                    ));
                }
                sink.write(
                    AssetEvent::ItemTaken {
                        loan: Loan {
                            loan_id,
                            user_id,
                            taken_at: at,
                            due_at,
                        },
                    },
                    self,
                )
                .await;
            }
            AssetCommand::Return {
                condition,
                notes,
                by,
                is_admin,
                at,
            } => {
                let owner = self.spec()?.owner_id.clone();
                validate::optional_text("notes", notes.as_deref(), MAX_NOTES).map_err(invalid)?;
                let Some(loan) = self.holder.clone() else {
                    return Err(AssetError::Conflict("the asset is not taken".into()));
                };
                if !(is_admin || by == loan.user_id || by == owner) {
                    return Err(AssetError::Forbidden(
                        "only the holder, the owner or an admin may return the asset".into(),
                    ));
                }
                sink.write(
                    AssetEvent::ItemReturned {
                        loan,
                        condition,
                        notes,
                        returned_by: by,
                        returned_at: at,
                    },
                    self,
                )
                .await;
            }
            AssetCommand::ReportDamage {
                report_id,
                user_id,
                description,
                cost,
                by,
                is_staff,
                at,
            } => {
                let spec = self.spec()?;
                if !(is_staff || by == spec.owner_id) {
                    return Err(AssetError::Forbidden(
                        "only admins, executors and the owner may report damage".into(),
                    ));
                }
                if self.damage_reports.contains(&report_id) {
                    return Ok(());
                }
                validate::text("user_id", &user_id, validate::MAX_SHORT).map_err(invalid)?;
                if user_id == LAB {
                    return Err(invalid("user_id must name a user, not the lab".into()));
                }
                validate::text("description", &description, MAX_DAMAGE_DESCRIPTION)
                    .map_err(invalid)?;
                check_amount("cost", cost).map_err(|e| invalid(e.to_string()))?;
                if !is_staff && !self.holders.contains(&user_id) {
                    return Err(AssetError::Forbidden(
                        "the owner may only charge a user who held the asset".into(),
                    ));
                }
                let before = self.charged.get(&user_id).copied().unwrap_or_default();
                if cost + before > spec.replacement_cost {
                    return Err(invalid(format!(
                        "cost must not exceed the replacement cost ({}); {before} is already charged to this user",
                        spec.replacement_cost
                    )));
                }
                if self.damage_reports.len() >= MAX_DAMAGE_REPORTS {
                    return Err(AssetError::Conflict(format!(
                        "an asset carries at most {MAX_DAMAGE_REPORTS} damage reports"
                    )));
                }
                let currency = spec.currency.clone();
                sink.write(
                    AssetEvent::DamageReported {
                        report: DamageReport {
                            report_id,
                            user_id,
                            description,
                            cost,
                            currency,
                            reported_by: by,
                        },
                        reported_at: at,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: AssetEvent) {
        match event {
            AssetEvent::AssetRegistered {
                spec,
                registered_at,
            } => {
                self.spec = Some(spec);
                self.created_at = Some(registered_at);
                self.updated_at = Some(registered_at);
            }
            AssetEvent::ItemTaken { loan } => {
                self.updated_at = Some(loan.taken_at);
                self.loans += 1;
                self.holders.insert(loan.user_id.clone());
                self.holder = Some(loan);
            }
            AssetEvent::ItemReturned { returned_at, .. } => {
                self.holder = None;
                self.updated_at = Some(returned_at);
            }
            AssetEvent::DamageReported {
                report,
                reported_at,
            } => {
                self.damage_reports.insert(report.report_id);
                *self.charged.entry(report.user_id).or_default() += report.cost;
                self.updated_at = Some(reported_at);
            }
        }
    }
}

#[cfg(test)]
#[path = "asset_tests.rs"]
mod tests;
