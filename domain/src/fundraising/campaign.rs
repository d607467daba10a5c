//! The `Campaign` aggregate (stream `campaign/<id>`): a fund-raising campaign from draft to
//! closed, its donations and what it bought.
//!
//! Life cycle: `draft` → (start) `active` → (goal reached) `completed` → (close) `closed`;
//! `draft`/`active` → (cancel) `cancelled`; an active campaign may also be closed before its goal.
//! Donations are taken only while `active` and before `ends_at`; the donation that reaches the
//! goal also completes the campaign, so completion happens exactly once.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::budget::check_amount;
use crate::tea::validate;
use crate::{DomainError, ErrorKind};

pub const MAX_TITLE: usize = 200;
pub const MAX_DESCRIPTION: usize = 2_000;
pub const MAX_PURPOSE: usize = 200;
pub const MAX_MESSAGE: usize = 500;
pub const MAX_RECEIPT_REF: usize = 255;
/// Longest a campaign may run, counted from its creation.
pub const MAX_DURATION: Duration = Duration::days(5 * 366);
/// Donations one campaign accepts (its state keeps their ids).
pub const MAX_DONATIONS: usize = 100_000;
/// Purchases one campaign may record.
pub const MAX_PURCHASES: usize = 1_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    #[default]
    Draft,
    Active,
    Completed,
    Closed,
    Cancelled,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 5] = [
        CampaignStatus::Draft,
        CampaignStatus::Active,
        CampaignStatus::Completed,
        CampaignStatus::Closed,
        CampaignStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Draft => "draft",
            CampaignStatus::Active => "active",
            CampaignStatus::Completed => "completed",
            CampaignStatus::Closed => "closed",
            CampaignStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<CampaignStatus> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSpec {
    pub campaign_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    #[serde(with = "rust_decimal::serde::str")]
    pub goal_amount: Decimal,
    pub currency: String,
    pub ends_at: DateTime<Utc>,
    pub purpose: Option<String>,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DonationSpec {
    pub donation_id: Uuid,
    /// Always recorded; hidden from everyone but admins and auditors when `anonymous`.
    pub donor_id: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub anonymous: bool,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurchaseSpec {
    pub purchase_id: Uuid,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub description: String,
    pub receipt_ref: Option<String>,
    pub recorded_by: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CampaignCommand {
    Create {
        spec: CampaignSpec,
        at: DateTime<Utc>,
    },
    /// `available` is the budget's balance in the campaign's currency when it starts.
    Start {
        available: Decimal,
        by: String,
        at: DateTime<Utc>,
    },
    /// Donating an id that is already recorded does nothing.
    Donate {
        donation: DonationSpec,
        at: DateTime<Utc>,
    },
    Close {
        by: String,
        at: DateTime<Utc>,
    },
    Cancel {
        reason: Option<String>,
        by: String,
        at: DateTime<Utc>,
    },
    RecordPurchase {
        purchase: PurchaseSpec,
        at: DateTime<Utc>,
    },
}

/// Events of a `campaign` stream. Type names and versions are a stored contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CampaignEvent {
    CampaignCreated {
        spec: CampaignSpec,
        created_at: DateTime<Utc>,
    },
    /// Carries the budget check made when it started.
    CampaignStarted {
        #[serde(with = "rust_decimal::serde::str")]
        available: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        shortfall: Decimal,
        started_by: String,
        started_at: DateTime<Utc>,
    },
    DonationReceived {
        donation: DonationSpec,
        #[serde(with = "rust_decimal::serde::str")]
        raised_after: Decimal,
        received_at: DateTime<Utc>,
    },
    /// The goal was reached (emitted once, with the donation that reached it).
    CampaignCompleted {
        #[serde(with = "rust_decimal::serde::str")]
        goal_amount: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        raised: Decimal,
        completed_at: DateTime<Utc>,
    },
    CampaignClosed {
        #[serde(with = "rust_decimal::serde::str")]
        raised: Decimal,
        closed_by: String,
        closed_at: DateTime<Utc>,
    },
    CampaignCancelled {
        reason: Option<String>,
        cancelled_by: String,
        cancelled_at: DateTime<Utc>,
    },
    PurchaseRecorded {
        purchase: PurchaseSpec,
        currency: String,
        recorded_at: DateTime<Utc>,
    },
}

impl DomainEvent for CampaignEvent {
    fn event_type(&self) -> String {
        match self {
            CampaignEvent::CampaignCreated { .. } => "CampaignCreated",
            CampaignEvent::CampaignStarted { .. } => "CampaignStarted",
            CampaignEvent::DonationReceived { .. } => "DonationReceived",
            CampaignEvent::CampaignCompleted { .. } => "CampaignCompleted",
            CampaignEvent::CampaignClosed { .. } => "CampaignClosed",
            CampaignEvent::CampaignCancelled { .. } => "CampaignCancelled",
            CampaignEvent::PurchaseRecorded { .. } => "PurchaseRecorded",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CampaignError {
    #[error("campaign not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for CampaignError {
    fn kind(&self) -> ErrorKind {
        match self {
            CampaignError::NotFound => ErrorKind::NotFound,
            CampaignError::Conflict(_) => ErrorKind::Conflict,
            CampaignError::Invalid(_) => ErrorKind::Validation,
        }
    }
}

fn invalid(e: String) -> CampaignError {
    CampaignError::Invalid(e)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub spec: Option<CampaignSpec>,
    pub status: CampaignStatus,
    pub raised: Decimal,
    pub spent: Decimal,
    pub donors: BTreeSet<String>,
    pub donations: HashSet<Uuid>,
    pub purchases: HashSet<Uuid>,
    pub available: Option<Decimal>,
    pub shortfall: Option<Decimal>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
}

impl Campaign {
    fn spec(&self) -> Result<&CampaignSpec, CampaignError> {
        self.spec.as_ref().ok_or(CampaignError::NotFound)
    }

    fn refuse(&self, action: &str) -> CampaignError {
        CampaignError::Conflict(format!(
            "cannot {action} a campaign that is {}",
            self.status.as_str()
        ))
    }
}

fn check_spec(spec: &CampaignSpec, at: DateTime<Utc>) -> Result<(), CampaignError> {
    validate::text("title", &spec.title, MAX_TITLE).map_err(invalid)?;
    validate::optional_text("description", spec.description.as_deref(), MAX_DESCRIPTION)
        .map_err(invalid)?;
    validate::optional_text("purpose", spec.purpose.as_deref(), MAX_PURPOSE).map_err(invalid)?;
    check_amount("goal_amount", spec.goal_amount).map_err(|e| invalid(e.to_string()))?;
    validate::currency(&spec.currency).map_err(invalid)?;
    if spec.ends_at <= at {
        return Err(invalid("ends_at must be in the future".into()));
    }
    if spec.ends_at > at + MAX_DURATION {
        return Err(invalid(format!(
            "ends_at must be within {} days",
            MAX_DURATION.num_days()
        )));
    }
    Ok(())
}

impl Aggregate for Campaign {
    const TYPE: &'static str = "campaign";
    type Command = CampaignCommand;
    type Event = CampaignEvent;
    type Error = CampaignError;
    type Services = ();

    async fn handle(
        &mut self,
        command: CampaignCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CampaignError> {
        match command {
            CampaignCommand::Create { spec, at } => {
                if self.spec.is_some() {
                    return Err(CampaignError::Conflict("campaign already exists".into()));
                }
                check_spec(&spec, at)?;
                sink.write(
                    CampaignEvent::CampaignCreated {
                        spec,
                        created_at: at,
                    },
                    self,
                )
                .await;
            }
            CampaignCommand::Start { available, by, at } => {
                let spec = self.spec()?;
                if self.status != CampaignStatus::Draft {
                    return Err(self.refuse("start"));
                }
                if spec.ends_at <= at {
                    return Err(CampaignError::Conflict(
                        "the campaign's ends_at has passed".into(),
                    ));
                }
                let available = available.max(Decimal::ZERO);
                let shortfall = (spec.goal_amount - available).max(Decimal::ZERO);
                sink.write(
                    CampaignEvent::CampaignStarted {
                        available,
                        shortfall,
                        started_by: by,
                        started_at: at,
                    },
                    self,
                )
                .await;
            }
            CampaignCommand::Donate { donation: d, at } => {
                let spec = self.spec()?;
                if self.donations.contains(&d.donation_id) {
                    return Ok(());
                }
                check_amount("amount", d.amount).map_err(|e| invalid(e.to_string()))?;
                validate::currency(&d.currency).map_err(invalid)?;
                if d.currency != spec.currency {
                    return Err(invalid(format!(
                        "this campaign collects {}, not {}",
                        spec.currency, d.currency
                    )));
                }
                validate::optional_text("message", d.message.as_deref(), MAX_MESSAGE)
                    .map_err(invalid)?;
                validate::text("donor_id", &d.donor_id, validate::MAX_SHORT).map_err(invalid)?;
                if self.status != CampaignStatus::Active {
                    return Err(self.refuse("donate to"));
                }
                if at > spec.ends_at {
                    return Err(CampaignError::Conflict(
                        "the campaign ended; it takes no more donations".into(),
                    ));
                }
                if self.donations.len() >= MAX_DONATIONS {
                    return Err(CampaignError::Conflict(format!(
                        "a campaign takes at most {MAX_DONATIONS} donations"
                    )));
                }
                let goal = spec.goal_amount;
                let raised_after = self.raised + d.amount;
                sink.write(
                    CampaignEvent::DonationReceived {
                        donation: d,
                        raised_after,
                        received_at: at,
                    },
                    self,
                )
                .await;
                if raised_after >= goal {
                    sink.write(
                        CampaignEvent::CampaignCompleted {
                            goal_amount: goal,
                            raised: raised_after,
                            completed_at: at,
                        },
                        self,
                    )
                    .await;
                }
            }
            CampaignCommand::Close { by, at } => {
                self.spec()?;
                if !matches!(
                    self.status,
                    CampaignStatus::Active | CampaignStatus::Completed
                ) {
                    return Err(self.refuse("close"));
                }
                sink.write(
                    CampaignEvent::CampaignClosed {
                        raised: self.raised,
                        closed_by: by,
                        closed_at: at,
                    },
                    self,
                )
                .await;
            }
            CampaignCommand::Cancel { reason, by, at } => {
                self.spec()?;
                validate::optional_text("reason", reason.as_deref(), MAX_DESCRIPTION)
                    .map_err(invalid)?;
                if !matches!(self.status, CampaignStatus::Draft | CampaignStatus::Active) {
                    return Err(self.refuse("cancel"));
                }
                sink.write(
                    CampaignEvent::CampaignCancelled {
                        reason,
                        cancelled_by: by,
                        cancelled_at: at,
                    },
                    self,
                )
                .await;
            }
            CampaignCommand::RecordPurchase { purchase: p, at } => {
                let currency = self.spec()?.currency.clone();
                if self.purchases.contains(&p.purchase_id) {
                    return Ok(());
                }
                check_amount("amount", p.amount).map_err(|e| invalid(e.to_string()))?;
                validate::text("description", &p.description, MAX_DESCRIPTION).map_err(invalid)?;
                validate::optional_text("receipt_ref", p.receipt_ref.as_deref(), MAX_RECEIPT_REF)
                    .map_err(invalid)?;
                if !matches!(
                    self.status,
                    CampaignStatus::Active | CampaignStatus::Completed | CampaignStatus::Closed
                ) {
                    return Err(self.refuse("record a purchase for"));
                }
                if self.purchases.len() >= MAX_PURCHASES {
                    return Err(CampaignError::Conflict(format!(
                        "a campaign records at most {MAX_PURCHASES} purchases"
                    )));
                }
                sink.write(
                    CampaignEvent::PurchaseRecorded {
                        purchase: p,
                        currency,
                        recorded_at: at,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: CampaignEvent) {
        match event {
            CampaignEvent::CampaignCreated { spec, created_at } => {
                self.spec = Some(spec);
                self.status = CampaignStatus::Draft;
                self.created_at = Some(created_at);
                self.updated_at = Some(created_at);
            }
            CampaignEvent::CampaignStarted {
                available,
                shortfall,
                started_at,
                ..
            } => {
                self.status = CampaignStatus::Active;
                self.available = Some(available);
                self.shortfall = Some(shortfall);
                self.started_at = Some(started_at);
                self.updated_at = Some(started_at);
            }
            CampaignEvent::DonationReceived {
                donation,
                raised_after,
                received_at,
            } => {
                self.raised = raised_after;
                self.donations.insert(donation.donation_id);
                self.donors.insert(donation.donor_id);
                self.updated_at = Some(received_at);
            }
            CampaignEvent::CampaignCompleted { completed_at, .. } => {
                self.status = CampaignStatus::Completed;
                self.completed_at = Some(completed_at);
                self.updated_at = Some(completed_at);
            }
            CampaignEvent::CampaignClosed { closed_at, .. } => {
                self.status = CampaignStatus::Closed;
                self.closed_at = Some(closed_at);
                self.updated_at = Some(closed_at);
            }
            CampaignEvent::CampaignCancelled {
                reason,
                cancelled_at,
                ..
            } => {
                self.status = CampaignStatus::Cancelled;
                self.cancel_reason = reason;
                self.cancelled_at = Some(cancelled_at);
                self.updated_at = Some(cancelled_at);
            }
            CampaignEvent::PurchaseRecorded {
                purchase,
                recorded_at,
                ..
            } => {
                self.spent += purchase.amount;
                self.purchases.insert(purchase.purchase_id);
                self.updated_at = Some(recorded_at);
            }
        }
    }
}

#[cfg(test)]
#[path = "campaign_tests.rs"]
mod tests;
