//! The REST routes, mounted at the root as seed 000 writes them.

pub mod admin;
pub mod audit;
pub mod budget;
pub mod chat;
pub mod fundraising;
pub mod moderation;
pub mod notifications;
pub mod retention;
pub mod sharing;
pub mod tea;
pub mod ws;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::{Executed, Reply};
use cqrs_es::Aggregate;
use serde::Serialize;

use crate::error::ApiResult;
use crate::state::AppState;

/// Answers a command: the fresh result (after its read model caught up), or the stored reply of
/// an earlier request with the same `Idempotency-Key`.
pub async fn answer<A: Aggregate, T: Serialize>(
    state: &AppState,
    projection: &str,
    status: StatusCode,
    executed: Executed<A>,
    render: impl Fn(&A, &[A::Event]) -> T,
) -> ApiResult<Response> {
    match executed {
        Executed::Done {
            state: agg,
            events,
            stored,
        } => {
            state.settle(projection, &stored).await;
            Ok((status, axum::Json(render(&agg, &events))).into_response())
        }
        Executed::Replayed(reply) => Ok(replayed(reply)),
    }
}

pub fn replayed(reply: Reply) -> Response {
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK))
        .header("content-type", "application/json")
        .body(Body::from(reply.body))
        .expect("valid response");
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}

/// Money on the wire: a JSON number with the currency's two decimals (`serialize_with`).
pub fn money<S: serde::Serializer>(d: &rust_decimal::Decimal, s: S) -> Result<S::Ok, S::Error> {
    let mut d = *d;
    d.rescale(2);
    rust_decimal::serde::arbitrary_precision::serialize(&d, s)
}

/// Times are kept to the microsecond, as PostgreSQL stores them.
pub fn trunc(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

/// Builds the reply stored with the events for idempotent replay.
pub fn reply<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    Reply {
        status: status.as_u16(),
        body: serde_json::to_string(value).unwrap_or_else(|_| "{}".into()),
    }
}
