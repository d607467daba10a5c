//! Budgeting: the lab's money. One [`Ledger`] aggregate per currency holds every transaction,
//! debt, payment and the low-balance threshold of that currency, so a command always decides on
//! the exact balance (and `LowBalanceDetected` fires exactly when a command crosses the threshold).
//! Every event posts balanced double-entry lines ([`postings`]).

pub mod ledger;
pub mod postings;

pub use ledger::*;
pub use postings::{postings, Line};
