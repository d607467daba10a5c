//! The command side: loads an aggregate, lets it decide, appends the events (with unique-value
//! claims and the idempotency record in the same transaction) and retries optimistic-concurrency
//! conflicts, bounded and with jitter. Authorization of the acting user happens here too, so REST
//! and GraphQL share one implementation of every rule.

pub mod budget;
mod bus;
mod cache;
pub mod chat;
pub mod fundraising;
pub mod inbox;
pub mod message;
pub mod moderation;
pub mod policy;
pub mod ratelimit;
pub mod retention;
pub mod sharing;
pub mod tea;

pub use bus::{CommandBus, CommandError, Context, Executed, Idempotency, RenderReply, Reply};
