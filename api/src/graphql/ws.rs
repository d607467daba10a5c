//! `graphql-transport-ws` on `GET /graphql`. The first frame must be `connection_init` with
//! `{"Authorization": "Bearer <JWT>"}` within `init_timeout` (else 4408; a bad token 4403; a
//! `subscribe` before it 4401). The server pings every `ping_interval` and drops a client silent
//! for three intervals; a client that does not take a frame within `send_timeout` is dropped too,
//! so a slow client holds at most one frame here, and its subscriptions fall behind in their own
//! bounded buffers (and are told so). When the token expires, every subscription ends with an
//! `UNAUTHORIZED` error and the connection closes with 4403.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::{WebSocket as GqlWebSocket, WebSocketProtocols as Protocols, WsMessage};
use async_graphql::{Context, Data, ErrorExtensions};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, Stream, StreamExt};
use serde_json::Value;
use tokio::time::Instant;

use crate::state::AppState;

pub const PROTOCOL: &str = "graphql-transport-ws";

/// Largest frame a client may send (a query is bounded further by `max_query_bytes`).
const MAX_FRAME_BYTES: usize = 256 * 1024;
/// After the token expired: how long subscriptions get to deliver their final error.
const EXPIRY_GRACE: Duration = Duration::from_secs(2);

/// What a connection's subscriptions know of it.
#[derive(Clone)]
pub struct Session {
    pub expires_at: DateTime<Utc>,
    active: Arc<AtomicUsize>,
    max: usize,
}

/// Counts one running subscription of a connection.
pub struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Session {
    fn running(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

fn coded(message: impl Into<String>, code: &'static str) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

/// Wraps a subscription's stream: it counts against the connection's limit, ends after its first
/// error, and ends with `UNAUTHORIZED` when the connection's token expires.
pub fn guard<T, S>(
    ctx: &Context<'_>,
    stream: S,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<T>> + Send + 'static>
where
    T: Send + 'static,
    S: Stream<Item = async_graphql::Result<T>> + Send + 'static,
{
    let session = ctx.data_opt::<Session>().ok_or_else(|| {
        coded(
            "subscriptions run over graphql-transport-ws",
            "VALIDATION_ERROR",
        )
    })?;
    let left = (session.expires_at - Utc::now())
        .to_std()
        .unwrap_or_default();
    if left.is_zero() {
        return Err(coded("token expired", "UNAUTHORIZED"));
    }
    if session.active.fetch_add(1, Ordering::SeqCst) >= session.max {
        session.active.fetch_sub(1, Ordering::SeqCst);
        return Err(coded(
            format!("at most {} subscriptions per connection", session.max),
            "RATE_LIMITED",
        ));
    }
    let running = Running(session.active.clone());
    let state = (
        Box::pin(stream),
        Box::pin(tokio::time::sleep(left)),
        running,
        false,
    );
    Ok(futures::stream::unfold(
        state,
        |(mut inner, mut expiry, running, done)| async move {
            if done {
                return None;
            }
            let (item, done) = tokio::select! {
                biased;
                _ = &mut expiry => (Err(coded("token expired", "UNAUTHORIZED")), true),
                item = inner.next() => match item {
                    None => return None,
                    Some(Ok(v)) => (Ok(v), false),
                    Some(Err(e)) => (Err(e), true),
                },
            };
            Some((item, (inner, expiry, running, done)))
        },
    ))
}

pub fn upgrade(state: AppState, upgrade: WebSocketUpgrade) -> Response {
    // No protocol named: assume ours. Another one named only: refuse after the handshake.
    let named = upgrade.requested_protocols().count();
    let ours = named == 0
        || upgrade
            .requested_protocols()
            .any(|p| p.as_bytes().eq_ignore_ascii_case(PROTOCOL.as_bytes()));
    upgrade
        .protocols([PROTOCOL])
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            let (mut sink, source) = socket.split();
            if ours {
                serve(state, sink, source).await;
            } else {
                close(&mut sink, 4406, "Subprotocol not acceptable").await;
            }
        })
}

async fn close(sink: &mut SplitSink<WebSocket, Message>, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.chars().take(120).collect::<String>().into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        sink.send(Message::Close(Some(frame))),
    )
    .await;
}

/// The bytes of the next data frame; None when the client closed or the socket failed.
async fn next_frame(source: &mut SplitStream<WebSocket>) -> Option<Vec<u8>> {
    loop {
        match source.next().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().as_bytes().to_vec()),
            Ok(Message::Binary(b)) => return Some(b.to_vec()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Checks the `connection_init` frame: the actor and the token's expiry, or a close code.
fn authenticate(
    state: &AppState,
    frame: &[u8],
) -> Result<(domain::Actor, DateTime<Utc>), (u16, String)> {
    let msg: Value =
        serde_json::from_slice(frame).map_err(|_| (4400, "Invalid message".to_string()))?;
    match msg["type"].as_str() {
        Some("connection_init") => {}
        Some("subscribe") => return Err((4401, "Unauthorized".into())),
        _ => return Err((4400, "Expected connection_init".into())),
    }
    let payload = &msg["payload"];
    let header = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(Value::as_str)
        .ok_or((4403, "Forbidden: missing Authorization".to_string()))?;
    let token = crate::auth::bearer_token(header).ok_or((
        4403,
        "Forbidden: Authorization must be `Bearer <token>`".into(),
    ))?;
    crate::auth::verify_until(&state.settings.jwt_secret, token)
        .map_err(|e| (4403, format!("Forbidden: {e}")))
}

async fn serve(
    state: AppState,
    mut sink: SplitSink<WebSocket, Message>,
    mut source: SplitStream<WebSocket>,
) {
    let cfg = state.settings.graphql.clone();
    let first = match tokio::time::timeout(cfg.init_timeout, next_frame(&mut source)).await {
        Err(_) => return close(&mut sink, 4408, "Connection initialisation timeout").await,
        Ok(None) => return,
        Ok(Some(frame)) => frame,
    };
    let (actor, expires_at) = match authenticate(&state, &first) {
        Ok(v) => v,
        Err((code, reason)) => return close(&mut sink, code, &reason).await,
    };
    let _slot = match crate::livechat::take_socket(&actor.user_id) {
        Ok(slot) => slot,
        Err(e) => return close(&mut sink, 4429, &e.to_string()).await,
    };
    if let Err(e) = state.ensure_profile(&actor).await {
        // 1013: try again later (the database is unavailable).
        return close(&mut sink, 1013, &e.to_string()).await;
    }
    let session = Session {
        expires_at,
        active: Arc::new(AtomicUsize::new(0)),
        max: cfg.max_subscriptions,
    };
    let mut data = Data::default();
    data.insert(state.clone());
    data.insert(actor);
    data.insert(session.clone());

    // The library sees the init frame again and answers `connection_ack`; later frames follow.
    let rest = futures::stream::unfold(source, |mut s| async move {
        next_frame(&mut s).await.map(|f| (f, s))
    });
    let input = futures::stream::iter([first]).chain(rest).boxed();
    let mut gql = GqlWebSocket::new(state.graphql.clone(), input, Protocols::GraphQLWS)
        .on_connection_init(move |_| async move { Ok(data) })
        .keepalive_timeout(cfg.ping_interval * 3);

    let mut ping = tokio::time::interval_at(Instant::now() + cfg.ping_interval, cfg.ping_interval);
    let left = (expires_at - Utc::now()).to_std().unwrap_or_default();
    let expiry = tokio::time::sleep(left);
    tokio::pin!(expiry);
    let mut expired_at: Option<Instant> = None;
    loop {
        let grace = expired_at.map(|t| t + EXPIRY_GRACE);
        let out = tokio::select! {
            m = gql.next() => match m {
                Some(WsMessage::Text(t)) => Message::Text(t.into()),
                Some(WsMessage::Close(code, reason)) => return close(&mut sink, code, &reason).await,
                None => return,
            },
            _ = ping.tick() => Message::Text(r#"{"type":"ping"}"#.into()),
            _ = &mut expiry, if expired_at.is_none() => {
                expired_at = Some(Instant::now());
                if session.running() == 0 {
                    return close(&mut sink, 4403, "Forbidden: token expired").await;
                }
                continue;
            }
            _ = tokio::time::sleep_until(grace.unwrap_or_else(Instant::now)), if grace.is_some() => {
                return close(&mut sink, 4403, "Forbidden: token expired").await;
            }
        };
        match tokio::time::timeout(cfg.send_timeout, sink.send(out)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!("graphql-transport-ws client too slow: disconnected");
                return;
            }
        }
        if expired_at.is_some() && session.running() == 0 {
            return close(&mut sink, 4403, "Forbidden: token expired").await;
        }
    }
}
