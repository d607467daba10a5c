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

/// Refuses a caller who may only read: auditors (and a token with no role) change nothing, in any
/// service. Every command a user starts checks this first, so REST, GraphQL and `/ws` agree.
/// (What a process manager or the retention job does runs with its own context and skips it.)
pub fn require_participant(ctx: &Context) -> Result<(), CommandError> {
    require_participating(&ctx.actor)
}

/// [`require_participant`] for an actor.
pub fn require_participating(actor: &domain::Actor) -> Result<(), CommandError> {
    if actor.participates() {
        Ok(())
    } else {
        Err(CommandError::Forbidden(
            "auditors are read-only: requires role admin, executor, teacher or student".into(),
        ))
    }
}
