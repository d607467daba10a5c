//! Per-user token buckets. Writing messages (posting, editing, reacting, all from one bucket): at
//! most [`MESSAGES_PER_SEC`] per second per user, with bursts of up to [`MESSAGE_BURST`]; past that, [`CommandError::RateLimited`] (429
//! `RATE_LIMITED` with `Retry-After` at the edges). The posting limiter is carried by the
//! [`CommandBus`](crate::CommandBus), so every edge that posts goes through it; buckets live in the
//! process (each API replica limits on its own).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::CommandError;

pub const MESSAGES_PER_SEC: f64 = 10.0;
pub const MESSAGE_BURST: f64 = 10.0;
/// Users tracked before full (idle) buckets are dropped.
pub const MAX_TRACKED_USERS: usize = 100_000;

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`, or says how long until one is available.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().expect("rate limiter poisoned");
        if buckets.len() >= MAX_TRACKED_USERS && !buckets.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

/// A new posting limiter: [`MESSAGES_PER_SEC`] per user, bursts of [`MESSAGE_BURST`].
pub fn messages() -> RateLimiter {
    RateLimiter::new(MESSAGES_PER_SEC, MESSAGE_BURST)
}

/// Takes a message token for `user_id` from `limiter`, or says how long to wait.
pub fn check_message(limiter: &RateLimiter, user_id: &str) -> Result<(), CommandError> {
    limiter
        .take(user_id)
        .map_err(|wait| CommandError::RateLimited {
            message: format!("at most {MESSAGES_PER_SEC} messages per second per user"),
            retry_after_secs: retry_after_secs(wait),
        })
}

/// `Retry-After` in whole seconds (at least 1).
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let l = RateLimiter::new(10.0, 10.0);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(l.take_at("u_1", t0).is_ok());
        }
        let wait = l.take_at("u_1", t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        assert!(l.take_at("u_2", t0).is_ok(), "other users are not limited");
        assert!(l.take_at("u_1", t0 + Duration::from_millis(100)).is_ok());
        assert!(l.take_at("u_1", t0 + Duration::from_millis(100)).is_err());
        assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
    }
}
