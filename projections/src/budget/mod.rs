//! Budgeting read models: transactions, debts, settings and the double-entry lines every ledger
//! event posts (`budget_lines`, from which balances and reports are computed).

mod cloud;
mod projection;
pub mod queries;

pub use cloud::cloud_data;
pub(crate) use cloud::money;
pub use projection::{cents, BudgetProjection};
