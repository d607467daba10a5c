//! The `Ledger` aggregate: the books of one currency (stream `budget_ledger/<CUR>`).
//!
//! Why one stream per currency: the balance is what decides `LowBalanceDetected`, and every
//! transaction, reversal and debt payment changes it. Keeping them in one aggregate makes the
//! balance exact when a command decides: commands on it are serialised in a process, and between
//! processes the append's optimistic concurrency makes the loser retry on the new balance. So a
//! crossing below the threshold is detected exactly once, by the command that crossed it. The
//! price is that writes of one currency are serial, which is far beyond a lab's volume.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::tea::validate;
use crate::{DomainError, ErrorKind};

/// Income category of debt payments.
pub const DEBT_PAYMENTS: &str = "debt_payments";
/// Largest amount of one booking (and of a threshold).
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// How far in the future `occurred_at` may be (clock skew).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);
pub const MAX_CATEGORY: usize = 64;
pub const MAX_DESCRIPTION: usize = 2_000;
pub const MAX_REFERENCE: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxKind {
    Income,
    Expense,
    Donation,
}

impl TxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Income => "income",
            TxKind::Expense => "expense",
            TxKind::Donation => "donation",
        }
    }

    pub fn parse(s: &str) -> Option<TxKind> {
        [TxKind::Income, TxKind::Expense, TxKind::Donation]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// The account type a transaction of this kind posts to besides cash.
    pub fn account_type(self) -> &'static str {
        self.as_str()
    }

    /// +1 when it adds to cash, -1 when it takes from it.
    fn cash_sign(self) -> Decimal {
        match self {
            TxKind::Income | TxKind::Donation => Decimal::ONE,
            TxKind::Expense => Decimal::NEGATIVE_ONE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DebtStatus {
    Open,
    Settled,
    Forgiven,
}

impl DebtStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DebtStatus::Open => "open",
            DebtStatus::Settled => "settled",
            DebtStatus::Forgiven => "forgiven",
        }
    }

    pub fn parse(s: &str) -> Option<DebtStatus> {
        [DebtStatus::Open, DebtStatus::Settled, DebtStatus::Forgiven]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionSpec {
    pub transaction_id: Uuid,
    pub kind: TxKind,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub category: String,
    pub description: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub reference: Option<String>,
    pub recorded_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DebtSpec {
    pub debt_id: Uuid,
    pub user_id: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub reason: String,
    pub source_ref: Option<String>,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LedgerCommand {
    /// Records a transaction; recording an id that is already booked does nothing (policies
    /// derive ids from their source, so a redelivered event books nothing twice).
    Record {
        transaction: TransactionSpec,
        at: DateTime<Utc>,
    },
    Reverse {
        transaction_id: Uuid,
        reversal_id: Uuid,
        reason: String,
        by: String,
        at: DateTime<Utc>,
    },
    CreateDebt {
        debt: DebtSpec,
        at: DateTime<Utc>,
    },
    PayDebt {
        debt_id: Uuid,
        payment_id: Uuid,
        amount: Decimal,
        by: String,
        at: DateTime<Utc>,
    },
    ForgiveDebt {
        debt_id: Uuid,
        reason: String,
        by: String,
        at: DateTime<Utc>,
    },
    SetThreshold {
        currency: String,
        threshold: Decimal,
        by: String,
        at: DateTime<Utc>,
    },
}

/// Events of a `budget_ledger` stream. Type names and versions are a stored contract. Each event
/// carries what its double-entry lines need, so the books can be folded from the log alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LedgerEvent {
    TransactionRecorded {
        transaction: TransactionSpec,
        recorded_at: DateTime<Utc>,
    },
    /// The reversing entry of `transaction_id` (same kind, category and amount, opposite lines).
    TransactionReversed {
        reversal_id: Uuid,
        transaction_id: Uuid,
        kind: TxKind,
        category: String,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        reason: String,
        reversed_by: String,
        reversed_at: DateTime<Utc>,
    },
    DebtCreated {
        debt: DebtSpec,
        created_at: DateTime<Utc>,
    },
    DebtPaymentRecorded {
        debt_id: Uuid,
        payment_id: Uuid,
        user_id: String,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        outstanding_after: Decimal,
        recorded_by: String,
        paid_at: DateTime<Utc>,
    },
    /// What was still outstanding is written off.
    DebtForgiven {
        debt_id: Uuid,
        user_id: String,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        reason: String,
        forgiven_by: String,
        forgiven_at: DateTime<Utc>,
    },
    ThresholdSet {
        currency: String,
        #[serde(with = "rust_decimal::serde::str")]
        threshold: Decimal,
        set_by: String,
        at: DateTime<Utc>,
    },
    LowBalanceDetected {
        currency: String,
        #[serde(with = "rust_decimal::serde::str")]
        balance: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        threshold: Decimal,
        detected_at: DateTime<Utc>,
    },
}

impl DomainEvent for LedgerEvent {
    fn event_type(&self) -> String {
        match self {
            LedgerEvent::TransactionRecorded { .. } => "TransactionRecorded",
            LedgerEvent::TransactionReversed { .. } => "TransactionReversed",
            LedgerEvent::DebtCreated { .. } => "DebtCreated",
            LedgerEvent::DebtPaymentRecorded { .. } => "DebtPaymentRecorded",
            LedgerEvent::DebtForgiven { .. } => "DebtForgiven",
            LedgerEvent::ThresholdSet { .. } => "ThresholdSet",
            LedgerEvent::LowBalanceDetected { .. } => "LowBalanceDetected",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LedgerError {
    #[error("transaction not found")]
    TransactionNotFound,
    #[error("debt not found")]
    DebtNotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for LedgerError {
    fn kind(&self) -> ErrorKind {
        match self {
            LedgerError::TransactionNotFound | LedgerError::DebtNotFound => ErrorKind::NotFound,
            LedgerError::Conflict(_) => ErrorKind::Conflict,
            LedgerError::Invalid(_) => ErrorKind::Validation,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxState {
    pub kind: TxKind,
    pub amount: Decimal,
    pub category: String,
    /// The reversing entry, once reversed.
    pub reversed_by: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DebtState {
    pub spec: DebtSpec,
    pub amount_paid: Decimal,
    pub status: DebtStatus,
    pub created_at: DateTime<Utc>,
}

impl DebtState {
    pub fn outstanding(&self) -> Decimal {
        match self.status {
            DebtStatus::Open => self.spec.amount - self.amount_paid,
            _ => Decimal::ZERO,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub currency: Option<String>,
    /// Cash on hand: the `cash` account.
    pub balance: Decimal,
    pub threshold: Option<Decimal>,
    pub threshold_updated_at: Option<DateTime<Utc>>,
    pub threshold_updated_by: Option<String>,
    pub transactions: HashMap<Uuid, TxState>,
    /// Ids of reversing entries.
    pub reversals: HashMap<Uuid, Uuid>,
    pub debts: HashMap<Uuid, DebtState>,
}

/// An amount must be positive, have at most two decimals and stay below [`MAX_AMOUNT`].
pub fn check_amount(field: &str, amount: Decimal) -> Result<(), LedgerError> {
    if amount <= Decimal::ZERO || amount.normalize().scale() > 2 || amount > MAX_AMOUNT {
        return Err(LedgerError::Invalid(format!(
            "{field} must be a positive amount with at most two decimals, at most {MAX_AMOUNT}"
        )));
    }
    Ok(())
}

fn check_category(category: &str) -> Result<(), LedgerError> {
    let ok = !category.is_empty()
        && category.len() <= MAX_CATEGORY
        && category
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(LedgerError::Invalid(format!(
            "category must be 1-{MAX_CATEGORY} lower-case letters, digits, '_' or '-'"
        )))
    }
}

fn invalid(e: String) -> LedgerError {
    LedgerError::Invalid(e)
}

impl Ledger {
    fn check_currency(&self, currency: &str) -> Result<(), LedgerError> {
        validate::currency(currency).map_err(invalid)?;
        match &self.currency {
            Some(c) if c != currency => Err(LedgerError::Invalid(format!(
                "this ledger keeps {c}, not {currency}"
            ))),
            _ => Ok(()),
        }
    }

    /// Sum of what open debts still owe.
    pub fn debts_outstanding(&self) -> Decimal {
        self.debts.values().map(DebtState::outstanding).sum()
    }

    fn amount_fits(&self, amount: Decimal) -> Result<(), LedgerError> {
        // Keeps every sum far from Decimal's range.
        if (self.balance.abs() + amount) > MAX_AMOUNT * Decimal::from(1_000_000) {
            return Err(LedgerError::Invalid(
                "the ledger's balance would exceed its limit".into(),
            ));
        }
        Ok(())
    }

    /// After a command changed the balance: the alert, if it crossed below the threshold.
    async fn check_low(&mut self, before: Decimal, at: DateTime<Utc>, sink: &EventSink<Self>) {
        if let (Some(threshold), Some(currency)) = (self.threshold, self.currency.clone()) {
            if before >= threshold && self.balance < threshold {
                sink.write(
                    LedgerEvent::LowBalanceDetected {
                        currency,
                        balance: self.balance,
                        threshold,
                        detected_at: at,
                    },
                    self,
                )
                .await;
            }
        }
    }
}

impl Aggregate for Ledger {
    const TYPE: &'static str = "budget_ledger";
    type Command = LedgerCommand;
    type Event = LedgerEvent;
    type Error = LedgerError;
    type Services = ();

    async fn handle(
        &mut self,
        command: LedgerCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), LedgerError> {
        let before = self.balance;
        match command {
            LedgerCommand::Record { transaction: t, at } => {
                if self.transactions.contains_key(&t.transaction_id)
                    || self.reversals.contains_key(&t.transaction_id)
                {
                    return Ok(());
                }
                self.check_currency(&t.currency)?;
                check_amount("amount", t.amount)?;
                check_category(&t.category)?;
                validate::optional_text("description", t.description.as_deref(), MAX_DESCRIPTION)
                    .map_err(invalid)?;
                validate::optional_text("reference", t.reference.as_deref(), MAX_REFERENCE)
                    .map_err(invalid)?;
                if t.occurred_at > at + MAX_FUTURE_SKEW {
                    return Err(invalid("occurred_at must not be in the future".into()));
                }
                self.amount_fits(t.amount)?;
                sink.write(
                    LedgerEvent::TransactionRecorded {
                        transaction: t,
                        recorded_at: at,
                    },
                    self,
                )
                .await;
                self.check_low(before, at, sink).await;
            }
            LedgerCommand::Reverse {
                transaction_id,
                reversal_id,
                reason,
                by,
                at,
            } => {
                let t = self
                    .transactions
                    .get(&transaction_id)
                    .ok_or(if self.reversals.contains_key(&transaction_id) {
                        LedgerError::Conflict("a reversing entry cannot be reversed".into())
                    } else {
                        LedgerError::TransactionNotFound
                    })?
                    .clone();
                if t.reversed_by.is_some() {
                    return Err(LedgerError::Conflict(
                        "transaction is already reversed".into(),
                    ));
                }
                validate::text("reason", &reason, MAX_DESCRIPTION).map_err(invalid)?;
                sink.write(
                    LedgerEvent::TransactionReversed {
                        reversal_id,
                        transaction_id,
                        kind: t.kind,
                        category: t.category,
                        amount: t.amount,
                        reason,
                        reversed_by: by,
                        reversed_at: at,
                    },
                    self,
                )
                .await;
                self.check_low(before, at, sink).await;
            }
            LedgerCommand::CreateDebt { debt, at } => {
                if self.debts.contains_key(&debt.debt_id) {
                    return Ok(());
                }
                self.check_currency(&debt.currency)?;
                check_amount("amount", debt.amount)?;
                validate::text("user_id", &debt.user_id, validate::MAX_SHORT).map_err(invalid)?;
                validate::text("reason", &debt.reason, MAX_DESCRIPTION).map_err(invalid)?;
                validate::optional_text("source_ref", debt.source_ref.as_deref(), MAX_REFERENCE)
                    .map_err(invalid)?;
                sink.write(
                    LedgerEvent::DebtCreated {
                        debt,
                        created_at: at,
                    },
                    self,
                )
                .await;
            }
            LedgerCommand::PayDebt {
                debt_id,
                payment_id,
                amount,
                by,
                at,
            } => {
                let d = self.debts.get(&debt_id).ok_or(LedgerError::DebtNotFound)?;
                if d.status != DebtStatus::Open {
                    return Err(LedgerError::Conflict(format!(
                        "debt is {}",
                        d.status.as_str()
                    )));
                }
                check_amount("amount", amount)?;
                let outstanding = d.outstanding();
                if amount > outstanding {
                    return Err(LedgerError::Invalid(format!(
                        "amount exceeds what is outstanding ({outstanding})"
                    )));
                }
                self.amount_fits(amount)?;
                let user_id = d.spec.user_id.clone();
                sink.write(
                    LedgerEvent::DebtPaymentRecorded {
                        debt_id,
                        payment_id,
                        user_id,
                        amount,
                        outstanding_after: outstanding - amount,
                        recorded_by: by,
                        paid_at: at,
                    },
                    self,
                )
                .await;
            }
            LedgerCommand::ForgiveDebt {
                debt_id,
                reason,
                by,
                at,
            } => {
                let d = self.debts.get(&debt_id).ok_or(LedgerError::DebtNotFound)?;
                if d.status != DebtStatus::Open {
                    return Err(LedgerError::Conflict(format!(
                        "debt is {}",
                        d.status.as_str()
                    )));
                }
                validate::text("reason", &reason, MAX_DESCRIPTION).map_err(invalid)?;
                let (user_id, amount) = (d.spec.user_id.clone(), d.outstanding());
                sink.write(
                    LedgerEvent::DebtForgiven {
                        debt_id,
                        user_id,
                        amount,
                        reason,
                        forgiven_by: by,
                        forgiven_at: at,
                    },
                    self,
                )
                .await;
            }
            LedgerCommand::SetThreshold {
                currency,
                threshold,
                by,
                at,
            } => {
                self.check_currency(&currency)?;
                if threshold.is_sign_negative()
                    || threshold.normalize().scale() > 2
                    || threshold > MAX_AMOUNT
                {
                    return Err(invalid(format!(
                        "low_balance_threshold must be a non-negative amount with at most two decimals, at most {MAX_AMOUNT}"
                    )));
                }
                sink.write(
                    LedgerEvent::ThresholdSet {
                        currency,
                        threshold,
                        set_by: by,
                        at,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: LedgerEvent) {
        match event {
            LedgerEvent::TransactionRecorded { transaction: t, .. } => {
                self.currency.get_or_insert(t.currency);
                self.balance += t.kind.cash_sign() * t.amount;
                self.transactions.insert(
                    t.transaction_id,
                    TxState {
                        kind: t.kind,
                        amount: t.amount,
                        category: t.category,
                        reversed_by: None,
                    },
                );
            }
            LedgerEvent::TransactionReversed {
                reversal_id,
                transaction_id,
                kind,
                amount,
                ..
            } => {
                self.balance -= kind.cash_sign() * amount;
                if let Some(t) = self.transactions.get_mut(&transaction_id) {
                    t.reversed_by = Some(reversal_id);
                }
                self.reversals.insert(reversal_id, transaction_id);
            }
            LedgerEvent::DebtCreated { debt, created_at } => {
                self.currency.get_or_insert(debt.currency.clone());
                self.debts.insert(
                    debt.debt_id,
                    DebtState {
                        spec: debt,
                        amount_paid: Decimal::ZERO,
                        status: DebtStatus::Open,
                        created_at,
                    },
                );
            }
            LedgerEvent::DebtPaymentRecorded {
                debt_id, amount, ..
            } => {
                self.balance += amount;
                if let Some(d) = self.debts.get_mut(&debt_id) {
                    d.amount_paid += amount;
                    if d.amount_paid >= d.spec.amount {
                        d.status = DebtStatus::Settled;
                    }
                }
            }
            LedgerEvent::DebtForgiven { debt_id, .. } => {
                if let Some(d) = self.debts.get_mut(&debt_id) {
                    d.status = DebtStatus::Forgiven;
                }
            }
            LedgerEvent::ThresholdSet {
                currency,
                threshold,
                set_by,
                at,
            } => {
                self.currency.get_or_insert(currency);
                self.threshold = Some(threshold);
                self.threshold_updated_at = Some(at);
                self.threshold_updated_by = Some(set_by);
            }
            LedgerEvent::LowBalanceDetected { .. } => {}
        }
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
