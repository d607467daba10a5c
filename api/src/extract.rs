//! Extractors that turn every malformed input into the error envelope: JSON bodies (422, or 413
//! when too large), query strings (422), the `Idempotency-Key` header, and (as a layer over every
//! route) paths and query strings PostgreSQL could not store: a NUL byte or bytes that are not
//! UTF-8 once percent-decoded are 422 `VALIDATION_ERROR` before any handler runs.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A JSON body, with its raw bytes kept for idempotency hashing.
pub struct ApiJson<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let raw = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(state.settings.body_limit_bytes)
            } else {
                ApiError::validation(format!("cannot read request body: {rejection}"))
            }
        })?;
        if raw.is_empty() {
            return Err(ApiError::validation("request body must be a JSON object"));
        }
        if json_has_nul_escape(&raw) {
            return Err(ApiError::validation(NUL_REFUSED));
        }
        let value = serde_json::from_slice(&raw)
            .map_err(|e| ApiError::validation(format!("invalid JSON body: {e}")))?;
        Ok(ApiJson { value, raw })
    }
}

const NUL_REFUSED: &str = "text must not contain the NUL character (U+0000)";

/// Whether JSON text holds a `\u0000` escape inside a string (the only way JSON carries NUL; an
/// escaped backslash followed by `u0000` is not one).
pub fn json_has_nul_escape(raw: &[u8]) -> bool {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            if raw.get(i + 1) == Some(&b'u') && raw.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Percent-decodes `s` (a malformed escape is kept as it is).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Why a path or query string cannot be served, if it cannot: once percent-decoded it holds a
/// NUL byte, or bytes that are not UTF-8.
pub fn unstorable_uri_part(s: &str) -> Option<&'static str> {
    if !s.contains('%') {
        return None;
    }
    let decoded = percent_decode(s);
    if decoded.contains(&0) {
        Some("the URL must not contain the NUL character (%00)")
    } else if std::str::from_utf8(&decoded).is_err() {
        Some("the URL must be UTF-8 once percent-decoded")
    } else {
        None
    }
}

/// Middleware over every route: refuses a path or query string [`unstorable_uri_part`] names.
pub async fn refuse_unstorable_uri(
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let uri = req.uri();
    let why = unstorable_uri_part(uri.path()).or_else(|| uri.query().and_then(unstorable_uri_part));
    match why {
        Some(why) => ApiError::validation(why).into_response(),
        None => next.run(req).await,
    }
}

/// A typed query string; bad values are 422.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_from_str(q)
            .map(ApiQuery)
            .map_err(|e| ApiError::validation(format!("invalid query string: {e}")))
    }
}

fn serde_urlencoded_from_str<T: DeserializeOwned>(q: &str) -> Result<T, String> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| "bad uri".to_string())?,
    )
    .map(|axum::extract::Query(v)| v)
    .map_err(|e| e.body_text())
}

/// The optional `Idempotency-Key` header, with the route it was sent to.
///
/// The route is the fingerprint's first part and comes from the router, never from a string typed
/// in a handler: the method and the matched path with its parameters filled in (a parameter that
/// is a UUID in its canonical form), e.g. `POST /campaigns/0190…/donations`.
pub struct IdempotencyKey {
    pub key: Option<String>,
    pub route: String,
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let route = matched_route(parts, state).await;
        let Some(v) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey { key: None, route });
        };
        let s = v
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|s| {
                !s.is_empty()
                    && s.len() <= MAX_IDEMPOTENCY_KEY
                    && s.bytes().all(|b| b.is_ascii_graphic())
            })
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ))
            })?;
        Ok(IdempotencyKey {
            key: Some(s.to_string()),
            route,
        })
    }
}

/// `METHOD /matched/path` with the path parameters substituted (UUIDs canonical).
async fn matched_route<S: Send + Sync>(parts: &mut Parts, state: &S) -> String {
    let method = parts.method.as_str().to_string();
    let Some(template) = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        // Not routed (cannot happen for a handler's extractor): the literal path.
        return format!("{method} {}", parts.uri.path());
    };
    let mut path = template;
    if let Ok(params) = RawPathParams::from_request_parts(parts, state).await {
        for (name, value) in &params {
            let value = match value.parse::<uuid::Uuid>() {
                Ok(id) => id.to_string(),
                Err(_) => value.to_string(),
            };
            path = path.replace(&format!("{{{name}}}"), &value);
        }
    }
    format!("{method} {path}")
}

impl IdempotencyKey {
    /// Binds the key to this route and body: reusing it for another request is a 422.
    pub fn for_body(&self, raw: &[u8]) -> Option<commands::Idempotency> {
        self.key.as_ref().map(|key| {
            let mut h = Sha256::new();
            h.update(self.route.as_bytes());
            h.update([0]);
            h.update(raw);
            commands::Idempotency {
                key: key.clone(),
                request_hash: hex::encode(h.finalize()),
            }
        })
    }
}

/// Parses a path id as a UUID; anything else cannot name a resource, so it is a 404.
pub fn path_uuid(raw: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found(what))
}
