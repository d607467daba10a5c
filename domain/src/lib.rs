//! FAFCab's domain: aggregates, commands, events and invariants. Pure: no I/O, no async runtime,
//! no SQL. Money is `rust_decimal::Decimal`, time `chrono::DateTime<Utc>`, ids UUID v7 except
//! user ids, which are opaque strings.

pub mod actor;
pub mod budget;
pub mod chat;
pub mod codec;
pub mod error;
pub mod fundraising;
pub mod inbox;
pub mod sharing;
pub mod tea;

pub use actor::{Actor, Role};
/// The aggregate trait, so crates naming an aggregate's stream type (`<A as Aggregate>::TYPE`) need
/// not depend on cqrs-es themselves.
pub use cqrs_es::Aggregate;
pub use error::{DomainError, ErrorKind};
