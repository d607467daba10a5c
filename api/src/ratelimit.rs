//! The per-user token buckets live in `commands::ratelimit` (posting, editing and reacting share
//! one); this is the edges' view of them.

pub use commands::ratelimit::*;

/// Takes a message token for `user_id`, or answers 429 `RATE_LIMITED` with the wait.
pub fn check_message(user_id: &str) -> Result<(), crate::error::ApiError> {
    take_message(user_id).map_err(crate::error::ApiError::from)
}
