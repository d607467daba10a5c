//! The one error type at the edge and its envelope:
//! `{"error": {"code": …, "message": …, "details": …}}` (DESIGN.md §3).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::CommandError;
use domain::ErrorKind;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String, Option<Value>),
    #[error("{0}")]
    Validation(String, Option<Value>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Unavailable(String),
    /// Too many requests; retry after this many seconds.
    #[error("{0}")]
    RateLimited(String, u64),
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// The one mapping of store failures: an outage (see `eventstore::outage`: pool timed out,
/// connection refused or dropped, PostgreSQL shutting down or starting) is 503 `UNAVAILABLE`
/// with `Retry-After`, anything else a 500 `INTERNAL`. REST, GraphQL (through `gql_error`) and
/// `/ws` frames all come through here.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        if eventstore::outage::is_unavailable(&e) {
            tracing::warn!(error = format!("{e:#}"), "database unavailable");
            ApiError::Unavailable("the database is unavailable; retry later".into())
        } else {
            ApiError::Internal(e)
        }
    }
}

impl ApiError {
    pub fn validation(msg: impl Into<String>) -> Self {
        ApiError::Validation(msg.into(), None)
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    /// The envelope's `code` (also used in `/ws` error frames).
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// The envelope's `message`; an internal error is logged here and never described.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::Conflict(..) => (StatusCode::CONFLICT, "CONFLICT"),
            ApiError::Validation(..) => (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "VALIDATION_ERROR"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "VALIDATION_ERROR"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            ApiError::RateLimited(..) => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(anyhow::Error::new(e).context("read model query failed"))
    }
}

impl From<projections::page::PageError> for ApiError {
    fn from(e: projections::page::PageError) -> Self {
        ApiError::validation(e.to_string())
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain { kind, message } => match kind {
                ErrorKind::NotFound => ApiError::NotFound(message),
                ErrorKind::Conflict => ApiError::Conflict(message, None),
                ErrorKind::Validation => ApiError::Validation(message, None),
                ErrorKind::Forbidden => ApiError::Forbidden(message),
            },
            CommandError::Forbidden(m) => ApiError::Forbidden(m),
            CommandError::Taken { field, value } => ApiError::Conflict(
                format!("{field} {value:?} is already taken"),
                Some(json!({"field": field})),
            ),
            e @ CommandError::IdempotencyMismatch => ApiError::Validation(e.to_string(), None),
            e @ CommandError::Busy => ApiError::Unavailable(e.to_string()),
            CommandError::RateLimited {
                message,
                retry_after_secs,
            } => ApiError::RateLimited(message, retry_after_secs),
            CommandError::Internal(e) => ApiError::from(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let (message, details) = match &self {
            ApiError::Internal(e) => {
                // Logged once here, never sent to the client.
                tracing::error!(error = format!("{e:#}"), "internal error");
                ("internal error".to_string(), Value::Null)
            }
            ApiError::Conflict(m, d) | ApiError::Validation(m, d) => {
                (m.clone(), d.clone().unwrap_or(Value::Null))
            }
            ApiError::RateLimited(m, secs) => (m.clone(), json!({"retry_after": secs})),
            other => (other.to_string(), Value::Null),
        };
        let body = json!({"error": {"code": code, "message": message, "details": details}});
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::RateLimited(_, secs) = &self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
