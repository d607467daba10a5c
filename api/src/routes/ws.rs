//! `WS /ws` (seed 000 §9): live chat events over a WebSocket, fed by the process's
//! [`LiveHub`](projections::live::LiveHub), so only committed events (of any process) are sent.
//!
//! Auth: `Authorization: Bearer <jwt>` on the upgrade request, or `?access_token=<jwt>`; without
//! a valid token the upgrade is answered 401 in the error envelope.
//!
//! Client → server (text frames, JSON, at most [`MAX_CLIENT_FRAME_BYTES`]; an optional `"ref"`
//! is echoed in the answer):
//! - `{"op":"subscribe","chat_id"}` → `{"event":"ack","data":{"op":"subscribe","chat_id"}}`, then
//!   the chat's events. A chat the caller may not read answers an error frame (`NOT_FOUND`: a
//!   private chat does not exist for a non-member) and delivers nothing.
//! - `{"op":"unsubscribe","chat_id"}` → ack.
//! - `{"op":"typing","chat_id","state":"on"|"off"}` → `chat.typing` to the chat's subscribers on
//!   this process (not persisted; no ack). Members only; at most [`TYPING_PER_WINDOW`] per 10 s.
//!   The other ops: at most [`OPS_PER_WINDOW`] per 10 s per connection (`RATE_LIMITED` frame).
//! - `{"op":"read","chat_id","message_id"}` → the same command as `PUT /chats/{id}/read`; ack with
//!   the position, and `chat.read.update` to the chat's subscribers when it moved.
//!
//! Server → client: `chat.message.created` `{chat_id, msg_id, id, author_id, created_at, type,
//! text, attachments, metadata, filtered, filter_matches}`, `chat.message.edited` `{chat_id,
//! msg_id, text, edited_at}`, `chat.message.deleted` `{chat_id, msg_id, deleted_at}`,
//! `chat.read.update` `{chat_id, user_id, last_read_message_id, last_read_at}`, `chat.typing`
//! `{chat_id, user_id, state}`, `ack`, and `error` `{code, message, op?, chat_id?, ref?}`.
//! A malformed frame gets an error frame, never a disconnect. If the connection's outbound queue
//! ([`OUTBOUND_QUEUE`] frames) overflows or a subscription lagged in the hub, the client gets an
//! error frame (`SLOW_CONSUMER`, `LAGGED`) and the connection is closed (1008): it must re-read
//! over REST, nothing is silently skipped. The server pings every [`PING_INTERVAL`] and closes a
//! connection silent for [`IDLE_TIMEOUT`]. A subscription ends with an error frame
//! (`SUBSCRIPTION_ENDED`) when the caller can no longer read the chat (decided on the `Chat`
//! aggregate by the shared [`ChatFeed`](crate::livechat::ChatFeed), never on a lagging read
//! model); `chat.typing` and `chat.read.update` reach members only. The connection closes (an
//! `UNAUTHORIZED` error frame, then 1008) when its token expires, and one user holds at most
//! [`MAX_SOCKETS_PER_USER`](crate::livechat::MAX_SOCKETS_PER_USER) live connections (more: 429).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use domain::Actor;
use futures::{SinkExt, StreamExt};
use projections::live::{LiveEvent, Topic};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::livechat::{Access, ChatFeed, FeedEnd};
use crate::state::AppState;

/// Largest client text frame handled; a longer one gets an error frame.
pub const MAX_CLIENT_FRAME_BYTES: usize = 4_096;
/// Largest WebSocket message the protocol layer accepts at all (beyond it: closed, 1009).
pub const MAX_WS_MESSAGE_BYTES: usize = 65_536;
/// Chats one connection may subscribe to.
pub const MAX_SUBSCRIPTIONS: usize = 100;
/// Frames queued for one connection before it counts as a slow consumer.
pub const OUTBOUND_QUEUE: usize = 256;
/// Server ping period.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A connection from which nothing (not even a pong) arrived for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a single write to the client may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Typing signals one connection may send per 10 s window.
pub const TYPING_PER_WINDOW: u32 = 20;
/// Other ops (`subscribe`, `unsubscribe`, `read`) one connection may send per 10 s window; each
/// reads the database or runs a command.
pub const OPS_PER_WINDOW: u32 = 100;

static WS_CONNECTIONS: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    let g = prometheus::IntGauge::new("ws_connections", "Open /ws connections (this process)")
        .expect("valid metric");
    projections::metrics::REGISTRY
        .register(Box::new(g.clone()))
        .expect("metric registers once");
    g
});

pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

#[derive(Debug, Deserialize)]
struct WsQuery {
    access_token: Option<String>,
}

async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = match (&q.access_token, headers.contains_key("authorization")) {
        (_, true) => crate::auth::bearer(&headers)?,
        (Some(t), false) => t.as_str(),
        (None, false) => {
            return Err(ApiError::Unauthorized(
                "missing Authorization header or access_token".into(),
            ))
        }
    };
    let (actor, expires_at) = crate::auth::verify_until(&state.settings.jwt_secret, token)?;
    let ws = ws.map_err(|e| ApiError::validation(format!("not a WebSocket upgrade: {e}")))?;
    let slot = crate::livechat::take_socket(&actor.user_id)?;
    state.ensure_profile(&actor).await?;
    Ok(ws
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            connection(state, actor, expires_at, socket).await
        }))
}

fn frame(event: &str, data: Value) -> String {
    json!({"event": event, "data": data}).to_string()
}

fn error_frame(code: &str, message: &str, extra: Value) -> String {
    let mut data = json!({"code": code, "message": message});
    if let (Some(d), Value::Object(more)) = (data.as_object_mut(), extra) {
        d.extend(more.into_iter().filter(|(_, v)| !v.is_null()));
    }
    frame("error", data)
}

/// The frames bound for one client: bounded; overflowing it ends the connection with a reason.
#[derive(Clone)]
struct Outbound {
    tx: mpsc::Sender<String>,
    kill: watch::Sender<Option<String>>,
}

impl Outbound {
    /// Queues a frame; `false` if the connection is over (closed, or just killed as too slow).
    fn push(&self, f: String) -> bool {
        match self.tx.try_send(f) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.fail(error_frame(
                    "SLOW_CONSUMER",
                    &format!("more than {OUTBOUND_QUEUE} frames waited for this connection; re-read over REST and reconnect"),
                    Value::Null,
                ));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Tells the client why and closes the connection.
    fn fail(&self, error: String) {
        self.kill.send_if_modified(|k| {
            if k.is_none() {
                *k = Some(error);
                true
            } else {
                false
            }
        });
    }
}

/// Forgets the connection (presence, gauge) however its task ends, even by a panic.
struct ConnGuard {
    state: AppState,
    id: Uuid,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        WS_CONNECTIONS.dec();
        let (connections, id) = (self.state.connections.clone(), self.id);
        tokio::spawn(async move {
            if let Err(e) = connections.close(id).await {
                tracing::warn!(error = %e, "cannot forget a closed /ws connection");
            }
        });
    }
}

async fn connection(
    state: AppState,
    actor: Actor,
    expires_at: chrono::DateTime<chrono::Utc>,
    socket: WebSocket,
) {
    WS_CONNECTIONS.inc();
    let conn_id = Uuid::now_v7();
    let _guard = ConnGuard {
        state: state.clone(),
        id: conn_id,
    };
    if let Err(e) = state.connections.open(conn_id, &actor.user_id).await {
        tracing::warn!(error = %e, "cannot record a /ws connection for presence");
    }
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let (kill, kill_rx) = watch::channel(None);
    let out = Outbound { tx, kill };
    let mut writer = tokio::spawn(write_loop(sink, rx, kill_rx));
    let mut writer_done = false;
    let mut conn = Conn {
        state,
        actor,
        out: out.clone(),
        subs: HashMap::new(),
        typing_window: (Instant::now(), 0),
        ops_window: (Instant::now(), 0),
    };
    // The token's expiry ends the connection, as on the GraphQL transport.
    let left = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let expiry = tokio::time::sleep(left);
    tokio::pin!(expiry);
    loop {
        let next = tokio::select! {
            m = tokio::time::timeout(IDLE_TIMEOUT, stream.next()) => m,
            _ = &mut writer => { writer_done = true; break }
            _ = &mut expiry => {
                out.fail(error_frame("UNAUTHORIZED", "the token expired", Value::Null));
                break;
            }
        };
        match next {
            Err(_) => {
                out.fail(error_frame(
                    "IDLE_TIMEOUT",
                    "nothing received (not even a pong) for too long",
                    Value::Null,
                ));
                break;
            }
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(Message::Text(t)))) => conn.handle(t.as_str()).await,
            Ok(Some(Ok(Message::Binary(_)))) => {
                out.push(error_frame(
                    "VALIDATION_ERROR",
                    "binary frames are not supported: send JSON text frames",
                    Value::Null,
                ));
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
        }
    }
    // Subscriptions end with the connection; the writer gets a moment to send a kill reason.
    drop(conn);
    drop(out);
    if !writer_done
        && tokio::time::timeout(Duration::from_secs(1), &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
}

async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<String>,
    mut kill: watch::Receiver<Option<String>>,
) {
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    loop {
        let msg = tokio::select! {
            biased;
            _ = kill.changed() => {
                let reason = kill.borrow().clone();
                if let Some(f) = reason {
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Text(f.into()))).await;
                }
                let close = Message::Close(Some(CloseFrame { code: 1008, reason: "closed by the server".into() }));
                let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(close)).await;
                return;
            }
            f = rx.recv() => match f {
                Some(f) => Message::Text(f.into()),
                None => return,
            },
            _ = ping.tick() => Message::Ping(Default::default()),
        };
        match tokio::time::timeout(WRITE_TIMEOUT, sink.send(msg)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum ClientFrame {
    Subscribe { chat_id: String },
    Unsubscribe { chat_id: String },
    Typing { chat_id: String, state: TypingState },
    Read { chat_id: String, message_id: String },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TypingState {
    On,
    Off,
}

struct Conn {
    state: AppState,
    actor: Actor,
    out: Outbound,
    /// Subscribed chats and their forwarding tasks (aborted when dropped).
    subs: HashMap<Uuid, AbortOnDrop>,
    typing_window: (Instant, u32),
    ops_window: (Instant, u32),
}

/// Counts one more use of a 10 s window; false when `max` were used already.
fn within(window: &mut (Instant, u32), max: u32) -> bool {
    let (start, n) = window;
    if start.elapsed() > Duration::from_secs(10) {
        *start = Instant::now();
        *n = 0;
    }
    if *n >= max {
        return false;
    }
    *n += 1;
    true
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Conn {
    async fn handle(&mut self, text: &str) {
        if text.len() > MAX_CLIENT_FRAME_BYTES {
            self.out.push(error_frame(
                "VALIDATION_ERROR",
                &format!("a client frame is at most {MAX_CLIENT_FRAME_BYTES} bytes"),
                Value::Null,
            ));
            return;
        }
        let raw: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.out.push(error_frame(
                    "VALIDATION_ERROR",
                    &format!("a frame is a JSON object: {e}"),
                    Value::Null,
                ));
                return;
            }
        };
        let r#ref = raw.get("ref").cloned().unwrap_or(Value::Null);
        let op = raw.get("op").cloned().unwrap_or(Value::Null);
        let frame: ClientFrame = match serde_json::from_value(raw) {
            Ok(f) => f,
            Err(e) => {
                self.out.push(error_frame(
                    "VALIDATION_ERROR",
                    &format!("invalid frame (ops: subscribe, unsubscribe, typing, read): {e}"),
                    json!({"op": op, "ref": r#ref}),
                ));
                return;
            }
        };
        let (op, chat) = match &frame {
            ClientFrame::Subscribe { chat_id } => ("subscribe", chat_id),
            ClientFrame::Unsubscribe { chat_id } => ("unsubscribe", chat_id),
            ClientFrame::Typing { chat_id, .. } => ("typing", chat_id),
            ClientFrame::Read { chat_id, .. } => ("read", chat_id),
        };
        let ctx = json!({"op": op, "chat_id": chat, "ref": r#ref});
        if op != "typing" && !within(&mut self.ops_window, OPS_PER_WINDOW) {
            self.out.push(error_frame(
                "RATE_LIMITED",
                &format!("at most {OPS_PER_WINDOW} subscribe, unsubscribe and read ops per 10 s"),
                ctx,
            ));
            return;
        }
        let answer = match frame {
            ClientFrame::Subscribe { chat_id } => self.subscribe(&chat_id, &ctx).await,
            ClientFrame::Unsubscribe { chat_id } => self.unsubscribe(&chat_id),
            ClientFrame::Typing { chat_id, state } => self.typing(&chat_id, state).await,
            ClientFrame::Read {
                chat_id,
                message_id,
            } => self.read(&chat_id, &message_id).await,
        };
        match answer {
            Ok(None) => {}
            Ok(Some(mut data)) => {
                if let (Some(d), Value::Object(c)) = (data.as_object_mut(), ctx) {
                    d.extend(c.into_iter().filter(|(_, v)| !v.is_null()));
                }
                self.out.push(frame_ack(data));
            }
            Err(e) => {
                self.out
                    .push(error_frame(e.code(), &e.public_message(), ctx));
            }
        }
    }

    /// Subscribes and queues the ack (with `ctx`) itself: before the forwarder can send anything.
    async fn subscribe(&mut self, raw: &str, ctx: &Value) -> Result<Option<Value>, ApiError> {
        let chat_id = crate::extract::path_uuid(raw, "chat")?;
        if !self.subs.contains_key(&chat_id) {
            if self.subs.len() >= MAX_SUBSCRIPTIONS {
                return Err(ApiError::validation(format!(
                    "at most {MAX_SUBSCRIPTIONS} subscriptions per connection"
                )));
            }
            let feed = ChatFeed::open(&self.state, &self.actor, raw, Access::Read).await?;
            let mut ack = json!({"chat_id": chat_id});
            if let (Some(a), Some(c)) = (ack.as_object_mut(), ctx.as_object()) {
                a.extend(
                    c.iter()
                        .filter(|(k, v)| !v.is_null() && *k != "chat_id")
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
            }
            self.out.push(frame_ack(ack));
            let task = tokio::spawn(forward(feed, self.out.clone()));
            self.subs.insert(chat_id, AbortOnDrop(task));
            return Ok(None);
        }
        Ok(Some(json!({})))
    }

    fn unsubscribe(&mut self, raw: &str) -> Result<Option<Value>, ApiError> {
        let chat_id = crate::extract::path_uuid(raw, "chat")?;
        self.subs.remove(&chat_id);
        Ok(Some(json!({})))
    }

    async fn typing(&mut self, raw: &str, s: TypingState) -> Result<Option<Value>, ApiError> {
        if !within(&mut self.typing_window, TYPING_PER_WINDOW) {
            return Err(ApiError::RateLimited(
                format!("at most {TYPING_PER_WINDOW} typing signals per 10 s"),
                10,
            ));
        }
        // Members only (decided on the aggregate), subscribed or not.
        let chat_id = crate::livechat::require_member(&self.state, &self.actor, raw).await?;
        let state = match s {
            TypingState::On => "on",
            TypingState::Off => "off",
        };
        self.state.live.publish_ephemeral(
            Topic::Chat(chat_id),
            "chat.typing",
            json!({"chat_id": chat_id, "user_id": self.actor.user_id, "state": state}),
        );
        Ok(None)
    }

    async fn read(&mut self, raw: &str, message: &str) -> Result<Option<Value>, ApiError> {
        let (chat_id, _) = super::chat::visible(&self.state, raw, &self.actor).await?;
        let position =
            crate::service::chat::mark_read(&self.state, &self.actor, chat_id, message).await?;
        Ok(Some(position))
    }
}

fn frame_ack(data: Value) -> String {
    frame("ack", data)
}

/// Forwards one chat's live events to the connection until it ends (access re-checked by the
/// shared [`ChatFeed`]; typing and read receipts only while the caller is a member).
async fn forward(mut feed: ChatFeed, out: Outbound) {
    let chat_id = feed.chat_id;
    loop {
        let ev = match feed.next().await {
            Ok(ev) => ev,
            Err(FeedEnd::Lagged(missed)) => {
                out.fail(error_frame(
                    "LAGGED",
                    &format!("{missed} events of this chat could not be delivered in time; re-read over REST and reconnect"),
                    json!({"chat_id": chat_id}),
                ));
                return;
            }
            Err(FeedEnd::Closed) => {
                out.fail(error_frame(
                    "UNAVAILABLE",
                    "the server is shutting down",
                    Value::Null,
                ));
                return;
            }
            Err(FeedEnd::Lost) => {
                out.push(error_frame(
                    "SUBSCRIPTION_ENDED",
                    "you can no longer read this chat",
                    json!({"chat_id": chat_id}),
                ));
                return;
            }
        };
        let members_only = ev.ephemeral || ev.aggregate_type == "read_position";
        if members_only && !feed.member {
            continue;
        }
        if let Some(f) = chat_frame(&ev, chat_id) {
            if !out.push(f) {
                return;
            }
        }
    }
}

/// The frame a chat subscriber gets for `ev`, if any.
pub fn chat_frame(ev: &LiveEvent, chat_id: Uuid) -> Option<String> {
    let p = &ev.payload;
    let msg = &ev.aggregate_id;
    let data = match (ev.aggregate_type.as_str(), ev.event_type.as_str()) {
        (_, "chat.typing") if ev.ephemeral => return Some(frame("chat.typing", p.clone())),
        ("message", "MessagePosted") => {
            let s = &p["submission"];
            let filtered = s["filter_matches"]
                .as_array()
                .is_some_and(|m| !m.is_empty());
            (
                "chat.message.created",
                json!({
                    "chat_id": chat_id, "msg_id": msg, "id": msg, "author_id": s["author_id"],
                    "created_at": p["created_at"], "type": s["kind"], "text": s["text"],
                    "attachments": s["attachments"], "metadata": s["metadata"],
                    "filtered": filtered, "filter_matches": s["filter_matches"],
                }),
            )
        }
        ("message", "MessageEdited") => (
            "chat.message.edited",
            json!({"chat_id": chat_id, "msg_id": msg, "text": p["text"], "edited_at": p["at"]}),
        ),
        ("message", "MessageDeleted") => (
            "chat.message.deleted",
            json!({"chat_id": chat_id, "msg_id": msg, "deleted_at": p["at"]}),
        ),
        ("read_position", "ReadPositionMoved") => (
            "chat.read.update",
            json!({
                "chat_id": chat_id, "user_id": p["user_id"],
                "last_read_message_id": p["message_id"], "last_read_at": p["at"],
            }),
        ),
        _ => return None,
    };
    Some(frame(data.0, data.1))
}
