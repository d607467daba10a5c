//! Double entry: the balanced lines each ledger event posts. Accounts: `cash`,
//! `income:<category>`, `expense:<category>`, `donation:<category>`, `receivable:<user>` and
//! `deferred:debts` (the other side of a receivable until it is paid or forgiven: debts are income
//! only when paid, category `debt_payments`). Every event's lines balance: debits = credits.

use rust_decimal::Decimal;

use super::ledger::{LedgerEvent, TxKind, DEBT_PAYMENTS};

pub const CASH: &str = "cash";
pub const DEFERRED_DEBTS: &str = "deferred:debts";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub account: String,
    pub debit: Decimal,
    pub credit: Decimal,
}

impl Line {
    fn dr(account: impl Into<String>, amount: Decimal) -> Line {
        Line {
            account: account.into(),
            debit: amount,
            credit: Decimal::ZERO,
        }
    }

    fn cr(account: impl Into<String>, amount: Decimal) -> Line {
        Line {
            account: account.into(),
            debit: Decimal::ZERO,
            credit: amount,
        }
    }

    /// The account's type: the part before `:`.
    pub fn account_type(&self) -> &str {
        self.account.split(':').next().unwrap_or(&self.account)
    }

    /// The category (or user) after `:`, if any.
    pub fn category(&self) -> Option<&str> {
        self.account.split_once(':').map(|(_, c)| c)
    }
}

fn account_of(kind: TxKind, category: &str) -> String {
    format!("{}:{category}", kind.account_type())
}

/// (debit, credit) lines of a transaction of `kind`.
fn transaction_lines(kind: TxKind, category: &str, amount: Decimal) -> [Line; 2] {
    match kind {
        TxKind::Income | TxKind::Donation => [
            Line::dr(CASH, amount),
            Line::cr(account_of(kind, category), amount),
        ],
        TxKind::Expense => [
            Line::dr(account_of(kind, category), amount),
            Line::cr(CASH, amount),
        ],
    }
}

fn swap(l: Line) -> Line {
    Line {
        account: l.account,
        debit: l.credit,
        credit: l.debit,
    }
}

/// The lines an event posts (none for settings and alerts).
pub fn postings(event: &LedgerEvent) -> Vec<Line> {
    match event {
        LedgerEvent::TransactionRecorded { transaction: t, .. } => {
            transaction_lines(t.kind, &t.category, t.amount).to_vec()
        }
        LedgerEvent::TransactionReversed {
            kind,
            category,
            amount,
            ..
        } => transaction_lines(*kind, category, *amount)
            .into_iter()
            .map(swap)
            .collect(),
        LedgerEvent::DebtCreated { debt, .. } => vec![
            Line::dr(format!("receivable:{}", debt.user_id), debt.amount),
            Line::cr(DEFERRED_DEBTS, debt.amount),
        ],
        LedgerEvent::DebtPaymentRecorded {
            user_id, amount, ..
        } => vec![
            Line::dr(CASH, *amount),
            Line::cr(format!("income:{DEBT_PAYMENTS}"), *amount),
            Line::dr(DEFERRED_DEBTS, *amount),
            Line::cr(format!("receivable:{user_id}"), *amount),
        ],
        LedgerEvent::DebtForgiven {
            user_id, amount, ..
        } => vec![
            Line::dr(DEFERRED_DEBTS, *amount),
            Line::cr(format!("receivable:{user_id}"), *amount),
        ],
        LedgerEvent::ThresholdSet { .. } | LedgerEvent::LowBalanceDetected { .. } => vec![],
    }
}
