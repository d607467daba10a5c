//! Telling a database outage (server stopped, restarting, unreachable, pool exhausted) from a
//! defect: the edge answers the first with 503 `UNAVAILABLE` and `Retry-After`, the second 500.

use std::time::Duration;

/// Default time a caller waits for a pooled connection before giving up with an outage error;
/// kept well below the HTTP request timeout so a request answers 503 instead of hanging.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Marker for an outage whose original `sqlx::Error` could not be kept (an error shared by every
/// append of a batch whose commit failed).
#[derive(Debug, thiserror::Error)]
#[error("the database is unavailable: {0}")]
pub struct Unavailable(pub String);

/// Whether this `sqlx` error means the database could not be reached or went away, rather than
/// a bad statement: pool timed out or closed, I/O or TLS failure (connection refused, reset,
/// dropped), protocol breakage from a cut connection, and the SQLSTATEs of class 08 (connection
/// exception), 57P01–57P03 (admin/crash shutdown, cannot connect now) and 53300 (too many
/// connections).
pub fn is_unavailable_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| is_unavailable_sqlstate(&c)),
        _ => false,
    }
}

/// SQLSTATEs that mean "the server cannot serve you now", not "your statement is wrong".
pub fn is_unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// Whether any error in this chain is an outage (see [`is_unavailable_sqlx`]); `std::io` errors
/// and the [`Unavailable`] marker count too.
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(is_unavailable_error)
}

/// [`is_unavailable`] for one error of a chain.
pub fn is_unavailable_error(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(s) = e.downcast_ref::<sqlx::Error>() {
        return is_unavailable_sqlx(s);
    }
    e.is::<std::io::Error>() || e.is::<Unavailable>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_told_from_defects() {
        assert!(is_unavailable(
            &anyhow::Error::new(sqlx::Error::PoolTimedOut).context("x")
        ));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_unavailable(&anyhow::Error::new(sqlx::Error::Io(
            refused
        ))));
        assert!(is_unavailable(&anyhow::Error::new(Unavailable(
            "commit".into()
        ))));
        assert!(is_unavailable_sqlstate("57P01") && is_unavailable_sqlstate("08006"));
        assert!(!is_unavailable_sqlstate("23505") && !is_unavailable_sqlstate("22P02"));
        assert!(!is_unavailable(&anyhow::Error::new(
            sqlx::Error::RowNotFound
        )));
        assert!(!is_unavailable(&anyhow::anyhow!("a bug")));
    }
}
