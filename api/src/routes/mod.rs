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
use chrono::{DateTime, NaiveDate, Utc};
use commands::{CommandError, Executed, Idempotency, RenderReply, Reply};
use cqrs_es::Aggregate;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ApiResult;
use crate::extract::IdempotencyKey;
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

/// The shape of every create-with-`Idempotency-Key` handler, in one place:
///
/// ```ignore
/// let reply = Idempotent::new(&idem, &body.raw, StatusCode::CREATED, render);
/// let exec = cmd::create(&state.bus, &ctx, spec, reply.arg()).await;
/// reply.answer(&state, PROJECTION, exec).await
/// ```
///
/// The key is bound to the matched route and the raw body ([`IdempotencyKey::for_body`]); the
/// reply stored with the events is `render`'s output under `status`, and a request repeating the
/// key gets that stored reply (a different request with it is a 422, from the bus).
/// Renders the reply stored with a command's events.
type StoredReply<'r, A> = Box<dyn Fn(&A, &[<A as Aggregate>::Event]) -> Reply + Send + Sync + 'r>;

pub struct Idempotent<'r, A: Aggregate> {
    idem: Option<Idempotency>,
    status: StatusCode,
    render: StoredReply<'r, A>,
}

impl<'r, A: Aggregate> Idempotent<'r, A> {
    pub fn new<T: Serialize>(
        key: &IdempotencyKey,
        raw: &[u8],
        status: StatusCode,
        render: impl Fn(&A, &[A::Event]) -> T + Send + Sync + 'r,
    ) -> Self {
        Idempotent {
            idem: key.for_body(raw),
            status,
            render: Box::new(move |a, ev| reply(status, &render(a, ev))),
        }
    }

    /// The idempotency argument every command takes.
    pub fn arg(&self) -> Option<(&Idempotency, RenderReply<'_, A>)> {
        self.idem.as_ref().map(|i| (i, &*self.render as _))
    }

    /// Answers the command: the fresh result once `projection` has applied it, or the stored reply.
    pub async fn answer(
        self,
        state: &AppState,
        projection: &str,
        executed: Result<Executed<A>, CommandError>,
    ) -> ApiResult<Response> {
        match executed? {
            Executed::Done {
                state: agg,
                events,
                stored,
            } => {
                state.settle(projection, &stored).await;
                let fresh = (self.render)(&agg, &events);
                Ok(Response::builder()
                    .status(self.status)
                    .header("content-type", "application/json")
                    .body(Body::from(fresh.body))
                    .expect("valid response"))
            }
            Executed::Replayed(reply) => Ok(replayed(reply)),
        }
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

pub use crate::service::money;

/// Times are kept to the microsecond, as PostgreSQL stores them.
pub fn trunc(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

/// `from` (inclusive) / `to` (exclusive): an RFC 3339 instant, or a date (`to` includes that day).
pub fn parse_bound(s: &str, end: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(day) => {
            let day = if end {
                day.succ_opt().unwrap_or(day)
            } else {
                day
            };
            Ok(day.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        }
        Err(_) => Err(format!(
            "{s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"
        )),
    }
}

/// `from` in a query (`deserialize_with`): an RFC 3339 instant, or a date (that day's start, UTC).
pub fn range_start<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_bound(&s, false).map_err(serde::de::Error::custom))
        .transpose()
}

/// `to` in a query (exclusive): an RFC 3339 instant, or a date, which includes that whole day.
pub fn range_end<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_bound(&s, true).map_err(serde::de::Error::custom))
        .transpose()
}

/// Builds the reply stored with the events for idempotent replay.
pub fn reply<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    Reply {
        status: status.as_u16(),
        body: serde_json::to_string(value).unwrap_or_else(|_| "{}".into()),
    }
}
