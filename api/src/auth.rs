//! Bearer JWT authentication (HS256, claims `sub`, `roles`, `exp`) and role checks.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use domain::{Actor, Role};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: i64,
}

/// Issues a token (for `fafcab token` and tests).
pub fn issue(
    secret: &str,
    user: &str,
    roles: &[Role],
    ttl: chrono::Duration,
) -> anyhow::Result<String> {
    let claims = Claims {
        sub: user.to_string(),
        roles: roles.iter().map(|r| r.as_str().to_string()).collect(),
        exp: (chrono::Utc::now() + ttl).timestamp(),
    };
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Verifies a token and returns the actor. Unknown role names grant nothing.
pub fn verify(secret: &str, token: &str) -> Result<Actor, ApiError> {
    verify_until(secret, token).map(|(actor, _)| actor)
}

/// Like `verify`, with the token's expiry (a WebSocket ends its subscriptions then).
pub fn verify_until(
    secret: &str,
    token: &str,
) -> Result<(Actor, chrono::DateTime<chrono::Utc>), ApiError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| ApiError::Unauthorized(format!("invalid token: {e}")))?;
    let sub = data.claims.sub.trim();
    // A control character (NUL above all, which PostgreSQL cannot store) names no user.
    if sub.is_empty() || sub.len() > 128 || sub.chars().any(char::is_control) {
        return Err(ApiError::Unauthorized("invalid token: bad sub".into()));
    }
    let roles = data
        .claims
        .roles
        .iter()
        .filter_map(|r| Role::parse(r))
        .collect();
    let exp = chrono::DateTime::from_timestamp(data.claims.exp, 0)
        .ok_or_else(|| ApiError::Unauthorized("invalid token: bad exp".into()))?;
    Ok((Actor::new(sub, roles), exp))
}

/// The authenticated caller.
pub struct Auth(pub Actor);

impl Auth {
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.0.has_any(roles) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::Forbidden(format!(
                "requires role {}",
                names.join(" or ")
            )))
        }
    }

    /// Any role that takes part in the lab's life (not the read-only `auditor` alone).
    pub fn require_participant(&self) -> Result<(), ApiError> {
        if self.0.participates() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "requires role admin, executor, teacher or student".into(),
            ))
        }
    }
}

/// The bearer token of a request, or 401.
pub fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization header".into()))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    bearer_token(value)
        .ok_or_else(|| ApiError::Unauthorized("Authorization must be `Bearer <token>`".into()))
}

/// The token of an `Authorization: Bearer <token>` value (also from a GraphQL `connection_init`).
pub fn bearer_token(value: &str) -> Option<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)?;
        let actor = verify(&state.settings.jwt_secret, token)?;
        state.ensure_profile(&actor).await?;
        tracing::Span::current().record("user", actor.user_id.as_str());
        Ok(Auth(actor))
    }
}

/// Compares two digests in time that depends only on their length, never on where they first
/// differ (for the `X-Internal-Secret` check).
pub fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_compare_whole() {
        // Security review L8: equal only when every byte is.
        assert!(super::digests_equal(b"abcd", b"abcd"));
        assert!(!super::digests_equal(b"abcd", b"abce"));
        assert!(!super::digests_equal(b"xbcd", b"abcd"));
        assert!(!super::digests_equal(b"abc", b"abcd"));
    }

    use super::*;

    #[test]
    fn tokens_round_trip_and_fail_closed() {
        let t = issue("s", "u_1", &[Role::Admin], chrono::Duration::minutes(5)).unwrap();
        let a = verify("s", &t).unwrap();
        assert_eq!(a, Actor::new("u_1", vec![Role::Admin]));
        assert!(verify("other", &t).is_err());
        let expired = issue("s", "u_1", &[], chrono::Duration::minutes(-5)).unwrap();
        assert!(verify("s", &expired).is_err());
        assert!(verify("s", "garbage").is_err());
    }
}
