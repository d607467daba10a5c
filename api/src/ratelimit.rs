//! The token buckets live in `commands::ratelimit` (the posting limit is a command rule, carried by
//! the `CommandBus`); re-exported here for the edges' own limits (typing signals).

pub use commands::ratelimit::{retry_after_secs, RateLimiter, MESSAGES_PER_SEC, MESSAGE_BURST};
