//! Subscriptions, fed by the live hub (`projections::live`), so only committed events reach a
//! subscriber. A frame shows the object as its read model has it once the event's projection has
//! applied that event (the subscription waits for it, bounded by the read-your-writes limit).
//! Privacy as in REST: an outsider's subscription to a private chat ends with `NOT_FOUND` before
//! anything is delivered, and a member who leaves is cut off at that event. A subscriber that
//! falls behind its hub queue is told (`UNAVAILABLE`, `reason: LAGGED`, `missed`) and its
//! subscription ends: it re-reads over queries and subscribes again. Every subscription ends
//! with `UNAUTHORIZED` when the connection's token expires (see `ws`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_graphql::{Context, ErrorExtensions, Json, Object, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use projections::live::{LiveError, LiveEvent, Topic};
use projections::sinks::notifications::{self as n, NotificationRow, Reader};
use serde_json::{json, Value};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::chat::{message_by_id, Message};
use super::{actor, gql_error, state, GqlResult, Item};
use crate::error::ApiError;
use crate::livechat::{Access, ChatFeed, FeedEnd, UserReceiver};
use crate::ratelimit::RateLimiter;
use crate::service::chat::visible;
use crate::state::AppState;

/// How often the process's one inbox watcher looks for new notification rows (notifications are
/// stored by the sink, not appended to the log, so there is no event to wait for). Subscriptions
/// read their inbox only when it saw a new row, when one of the caller's own events arrives, and
/// every [`NOTIFICATION_SAFETY_POLL`] for rows that committed late (security review M7: no
/// per-subscription polling at 2 Hz).
pub const NOTIFICATION_POLL: Duration = Duration::from_millis(500);
/// How often a `notifications` subscription reads its inbox when nothing woke it.
pub const NOTIFICATION_SAFETY_POLL: Duration = Duration::from_secs(2);

/// One watcher of `MAX(seq)` of the notifications per database in this process, shared by every
/// `notifications` subscription on it; it stops when the last of them ends.
static INBOX_WATCHERS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::watch::Sender<i64>>>>> =
    LazyLock::new(Default::default);

fn inbox_watch(state: &AppState, start: i64) -> tokio::sync::watch::Receiver<i64> {
    let key = state.settings.database_url.clone();
    let mut map = INBOX_WATCHERS.lock().expect("inbox watchers");
    if let Some(tx) = map.get(&key) {
        return tx.subscribe();
    }
    let (tx, rx) = tokio::sync::watch::channel(start);
    let tx = Arc::new(tx);
    map.insert(key.clone(), tx.clone());
    let db = state.db.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(NOTIFICATION_POLL).await;
            if tx.receiver_count() == 0 {
                let mut map = INBOX_WATCHERS.lock().expect("inbox watchers");
                if tx.receiver_count() == 0 {
                    map.remove(&key);
                    return;
                }
            }
            match n::max_seq(&db).await {
                Ok(seq) => {
                    tx.send_if_modified(|s| {
                        let newer = seq > *s;
                        if newer {
                            *s = seq;
                        }
                        newer
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot watch the notifications"),
            }
        }
    });
    rx
}
/// Rows committed this long after their `seq` was taken are still picked up.
const NOTIFICATION_LOOKBACK_MICROS: i64 = 5_000_000;
/// Rendered events remembered for the other subscribers of the same event (then forgotten).
const SHARED_RENDERS: usize = 4_096;
/// Typing signals per user: 2 per second, bursts of 5.
static TYPING: LazyLock<RateLimiter> = LazyLock::new(|| RateLimiter::new(2.0, 5.0));

fn coded(message: impl Into<String>, code: &'static str) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

/// A hub subscription counted against the caller's share (`livechat::subscribe`).
fn subscribe(state: &AppState, user: &str, topic: Topic) -> GqlResult<UserReceiver> {
    crate::livechat::subscribe(state, user, topic).map_err(gql_error)
}

/// Hands each hub event to `f`, which yields a frame or nothing. Falling behind and the hub
/// stopping become errors (which end the subscription, see `ws::guard`).
fn follow<T, F, Fut>(rx: UserReceiver, f: F) -> BoxStream<'static, GqlResult<T>>
where
    T: Send + 'static,
    F: FnMut(LiveEvent) -> Fut + Send + 'static,
    Fut: Future<Output = Option<GqlResult<T>>> + Send,
{
    futures::stream::unfold((rx, f), |(mut rx, mut f)| async move {
        loop {
            let item = match rx.rx.recv().await {
                Ok(e) => match f(e).await {
                    Some(item) => item,
                    None => continue,
                },
                Err(LiveError::Lagged { missed }) => Err(async_graphql::Error::new(format!(
                    "this subscriber fell behind and missed {missed} updates; re-read and subscribe again"
                ))
                .extend_with(|_, e| {
                    e.set("code", "UNAVAILABLE");
                    e.set("reason", "LAGGED");
                    e.set("missed", missed);
                })),
                Err(LiveError::Closed) => Err(coded("live updates stopped", "UNAVAILABLE")),
            };
            return Some((item, (rx, f)));
        }
    })
    .boxed()
}

/// Follows a chat the caller may follow with `access` (else `NOT_FOUND`, or `FORBIDDEN` for a
/// readable chat they are not a member of) through the shared [`ChatFeed`]: access is re-checked
/// on the aggregate at each chat event that may change it and the subscription ends with
/// `NOT_FOUND` once it is lost; every other event goes to `f`.
async fn follow_chat<T, F, Fut>(
    ctx: &Context<'_>,
    chat_id: &ID,
    access: Access,
    f: F,
) -> async_graphql::Result<BoxStream<'static, GqlResult<T>>>
where
    T: Send + 'static,
    F: Fn(AppState, Uuid, LiveEvent) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<GqlResult<T>>> + Send,
{
    let (state, actor) = (state(ctx).clone(), actor(ctx).clone());
    let feed = ChatFeed::open(&state, &actor, chat_id.as_str(), access)
        .await
        .map_err(gql_error)?;
    let stream = futures::stream::unfold((feed, state, f), |(mut feed, state, f)| async move {
        loop {
            let e = match feed.next().await {
                Ok(e) => e,
                Err(FeedEnd::Lost) => {
                    let err = gql_error(ApiError::not_found("chat"));
                    return Some((Err(err), (feed, state, f)));
                }
                Err(FeedEnd::Lagged(missed)) => {
                    let err = async_graphql::Error::new(format!(
                        "this subscriber fell behind and missed {missed} updates; re-read and subscribe again"
                    ))
                    .extend_with(|_, e| {
                        e.set("code", "UNAVAILABLE");
                        e.set("reason", "LAGGED");
                        e.set("missed", missed);
                    });
                    return Some((Err(err), (feed, state, f)));
                }
                Err(FeedEnd::Closed) => {
                    let err = coded("live updates stopped", "UNAVAILABLE");
                    return Some((Err(err), (feed, state, f)));
                }
            };
            if let Some(item) = f(state.clone(), feed.chat_id, e).await {
                return Some((item, (feed, state, f)));
            }
        }
    });
    super::ws::guard(ctx, stream).map(StreamExt::boxed)
}

/// Renders shared by the subscribers of one event in this process: the first one to ask reads
/// the read model, the others wait for its answer (keyed by event id, so apps on different
/// databases in one process never mix). Errors are not remembered.
struct Shared<T>(Mutex<HashMap<Uuid, Arc<OnceCell<Option<T>>>>>);

impl<T: Clone> Shared<T> {
    fn new() -> Self {
        Shared(Mutex::new(HashMap::new()))
    }

    async fn get<F, Fut>(&self, e: &LiveEvent, render: F) -> GqlResult<Option<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = GqlResult<Option<T>>>,
    {
        let cell = {
            let mut map = self.0.lock().expect("shared renders");
            if map.len() >= SHARED_RENDERS {
                map.clear();
            }
            map.entry(e.event_id).or_default().clone()
        };
        cell.get_or_try_init(render).await.cloned()
    }
}

static MESSAGES: LazyLock<Shared<Message>> = LazyLock::new(Shared::new);
static ITEMS: LazyLock<Shared<Item>> = LazyLock::new(Shared::new);

/// A change of an item's stock.
#[derive(SimpleObject)]
pub struct StockUpdate {
    item_id: ID,
    stock_qty: i64,
    low_stock: bool,
    /// What changed it: `created`, `restocked`, `consumed` or `threshold`.
    reason: String,
    /// When the change was recorded.
    at: DateTime<Utc>,
    /// The item after the change.
    item: Item,
}

/// Where a member has read a chat up to.
#[derive(SimpleObject)]
pub struct ReadPosition {
    chat_id: ID,
    user_id: String,
    last_read_message_id: Option<ID>,
    last_read_at: Option<DateTime<Utc>>,
}

impl ReadPosition {
    fn from_json(v: &Value) -> Self {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        ReadPosition {
            chat_id: ID(s("chat_id").unwrap_or_default()),
            user_id: s("user_id").unwrap_or_default(),
            last_read_message_id: s("last_read_message_id").map(ID),
            last_read_at: v["last_read_at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// Someone typing in a chat (not stored: signals of this server only).
#[derive(SimpleObject)]
pub struct Typing {
    chat_id: ID,
    user_id: String,
    typing: bool,
    at: DateTime<Utc>,
}

/// A notification in the caller's inbox. The inbox is written by the notification sink, not
/// appended to the log, so `notifications` polls it (every `NOTIFICATION_POLL`, or at once when
/// one of the caller's own events arrives) and delivers each row once.
#[derive(SimpleObject)]
pub struct Notification {
    id: ID,
    #[graphql(name = "type")]
    kind: String,
    title: String,
    body: String,
    data: Json<Value>,
    created_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

impl From<NotificationRow> for Notification {
    fn from(r: NotificationRow) -> Self {
        Notification {
            id: ID(r.id),
            kind: r.kind,
            title: r.title,
            body: r.body,
            data: Json(serde_json::from_str(&r.data).unwrap_or(Value::Null)),
            created_at: r.created_at,
            read_at: r.read_at,
        }
    }
}

fn stock_reason(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "ItemCreated" => "created",
        "BatchReceived" => "restocked",
        "StockConsumed" => "consumed",
        "ThresholdSet" => "threshold",
        _ => return None,
    })
}

const MESSAGE_EVENTS: [&str; 6] = [
    "MessagePosted",
    "MessageEdited",
    "MessageDeleted",
    "MessageFlagged",
    "ReactionAdded",
    "ReactionRemoved",
];

#[derive(Default)]
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Messages of one chat as they are posted, edited, deleted, flagged or reacted to, each as
    /// the read model shows it after that change. Members (and admins) only: anyone else gets
    /// `NOT_FOUND` and nothing else.
    async fn chat_messages(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
    ) -> async_graphql::Result<BoxStream<'static, GqlResult<Message>>> {
        follow_chat(ctx, &chat_id, Access::Read, |state, _, e| async move {
            if e.ephemeral
                || e.aggregate_type != "message"
                || !MESSAGE_EVENTS.contains(&e.event_type.as_str())
            {
                return None;
            }
            let id = Uuid::parse_str(&e.aggregate_id).ok()?;
            let render = || async {
                state.settle_at("chat", e.checkpoint).await;
                message_by_id(&state, id).await
            };
            match MESSAGES.get(&e, render).await {
                Ok(Some(m)) => Some(Ok(m)),
                // Expired (retention) since: nothing left to show.
                Ok(None) => None,
                Err(err) => Some(Err(err)),
            }
        })
        .await
    }

    /// Every change of one item's stock (`itemId`), or of every item's.
    async fn stock_updates(
        &self,
        ctx: &Context<'_>,
        item_id: Option<ID>,
    ) -> async_graphql::Result<BoxStream<'static, GqlResult<StockUpdate>>> {
        let state = state(ctx).clone();
        let item = match item_id {
            None => None,
            Some(id) => {
                let id = id
                    .parse::<Uuid>()
                    .map_err(|_| gql_error(ApiError::not_found("item")))?;
                projections::tea::queries::get_item(&state.db, &id.to_string())
                    .await
                    .map_err(|e| gql_error(e.into()))?
                    .ok_or_else(|| gql_error(ApiError::not_found("item")))?;
                Some(id)
            }
        };
        let rx = subscribe(&state, &actor(ctx).user_id, Topic::Item(item))?;
        let stream = follow(rx, move |e| {
            let state = state.clone();
            async move {
                let reason = stock_reason(&e.event_type)?;
                let render = || async {
                    state.settle_at("tea", e.checkpoint).await;
                    projections::tea::queries::get_item(&state.db, &e.aggregate_id)
                        .await
                        .map(|row| row.map(Item::from))
                        .map_err(|err| gql_error(err.into()))
                };
                let row = ITEMS.get(&e, render).await;
                Some(row.and_then(|item| {
                    let item = item.ok_or_else(|| gql_error(ApiError::not_found("item")))?;
                    Ok(StockUpdate {
                        item_id: item.id.clone(),
                        stock_qty: item.stock_qty,
                        low_stock: item.low_stock,
                        reason: reason.to_string(),
                        at: e.recorded_at,
                        item,
                    })
                }))
            }
        });
        super::ws::guard(ctx, stream).map(StreamExt::boxed)
    }

    /// Typing signals of one chat (members only), sent with the `typing` mutation or over `/ws`.
    async fn typing(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
    ) -> async_graphql::Result<BoxStream<'static, GqlResult<Typing>>> {
        follow_chat(ctx, &chat_id, Access::Members, |_, chat, e| async move {
            if !e.ephemeral || e.event_type != "chat.typing" {
                return None;
            }
            Some(Ok(Typing {
                chat_id: ID(chat.to_string()),
                user_id: e.payload["user_id"].as_str()?.to_string(),
                typing: e.payload["state"].as_str() != Some("off"),
                at: e.recorded_at,
            }))
        })
        .await
    }

    /// Read receipts of one chat (members only): a member's read position each time it moves
    /// (the event carries every field).
    async fn read_receipts(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
    ) -> async_graphql::Result<BoxStream<'static, GqlResult<ReadPosition>>> {
        follow_chat(ctx, &chat_id, Access::Members, |_, chat, e| async move {
            if e.aggregate_type != "read_position" || e.event_type != "ReadPositionMoved" {
                return None;
            }
            let p = &e.payload;
            Some(Ok(ReadPosition {
                chat_id: ID(chat.to_string()),
                user_id: p["user_id"].as_str()?.to_string(),
                last_read_message_id: p["message_id"].as_str().map(|m| ID(m.to_string())),
                last_read_at: p["at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc)),
            }))
        })
        .await
    }

    /// New notifications in the caller's inbox (addressed to them, one of their roles, or
    /// everyone), oldest first, from the moment of subscribing.
    async fn notifications(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<BoxStream<'static, GqlResult<Notification>>> {
        let (state, actor) = (state(ctx).clone(), actor(ctx).clone());
        let since = n::max_seq(&state.db)
            .await
            .map_err(|e| gql_error(e.into()))?;
        let mut poll = Inbox {
            state,
            actor,
            since,
            seen: VecDeque::new(),
            ready: VecDeque::new(),
        };
        // What is already there (including the look-back window) is not news.
        poll.fetch().await?;
        poll.ready.clear();
        // The caller's own events (inbox changes, operations) wake the poller early.
        let rx = subscribe(
            &poll.state,
            &poll.actor.user_id,
            Topic::User(poll.actor.user_id.clone()),
        )?;
        let seq = inbox_watch(&poll.state, since);
        let stream = futures::stream::unfold(
            (poll, rx, seq),
            |(mut p, mut rx, mut seq)| async move {
                loop {
                    if let Some(row) = p.ready.pop_front() {
                        return Some((Ok(Notification::from(row)), (p, rx, seq)));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(NOTIFICATION_SAFETY_POLL) => {}
                        _ = seq.changed() => {}
                        r = rx.rx.recv() => if matches!(r, Err(LiveError::Closed)) {
                            return Some((Err(coded("live updates stopped", "UNAVAILABLE")), (p, rx, seq)));
                        },
                    }
                    if let Err(e) = p.fetch().await {
                        return Some((Err(e), (p, rx, seq)));
                    }
                }
            },
        );
        super::ws::guard(ctx, stream).map(StreamExt::boxed)
    }
}

/// The `notifications` poller: rows newer than `since` (minus a look-back for rows that
/// committed late), each delivered once.
struct Inbox {
    state: AppState,
    actor: domain::Actor,
    since: i64,
    seen: VecDeque<(i64, String)>,
    ready: VecDeque<NotificationRow>,
}

impl Inbox {
    async fn fetch(&mut self) -> GqlResult<()> {
        let reader = Reader {
            user_id: &self.actor.user_id,
            roles: self
                .actor
                .roles
                .iter()
                .map(|r| r.as_str().to_string())
                .collect(),
        };
        let floor = self.since - NOTIFICATION_LOOKBACK_MICROS;
        let rows = n::list_since(&self.state.db, &reader, floor, 200)
            .await
            .map_err(|e| gql_error(e.into()))?;
        let known: HashSet<&str> = self.seen.iter().map(|(_, id)| id.as_str()).collect();
        let fresh: Vec<NotificationRow> = rows
            .into_iter()
            .filter(|r| !known.contains(r.id.as_str()))
            .collect();
        for r in fresh {
            self.since = self.since.max(r.seq);
            self.seen.push_back((r.seq, r.id.clone()));
            self.ready.push_back(r);
        }
        while self
            .seen
            .front()
            .is_some_and(|(s, _)| *s < self.since - NOTIFICATION_LOOKBACK_MICROS)
        {
            self.seen.pop_front();
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct LiveQuery;

#[Object]
impl LiveQuery {
    /// Messages of a chat after the caller's read position, not their own, not deleted.
    #[graphql(complexity = "crate::graphql::limits::LOOKUP_COST + child_complexity")]
    async fn unread_count(&self, ctx: &Context<'_>, chat_id: ID) -> GqlResult<i64> {
        let (state, actor) = (state(ctx), actor(ctx));
        let (chat, _) = visible(state, chat_id.as_str(), actor)
            .await
            .map_err(gql_error)?;
        projections::chat::queries::unread_count(&state.db, &chat.to_string(), &actor.user_id)
            .await
            .map_err(|e| gql_error(e.into()))
    }
}

#[derive(Default)]
pub struct LiveMutation;

#[Object]
impl LiveMutation {
    /// Moves the caller's read position in a chat to `messageId` (never backwards); members only.
    async fn mark_read(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        message_id: ID,
    ) -> GqlResult<ReadPosition> {
        let (state, actor) = (state(ctx), actor(ctx));
        let (chat, _) = visible(state, chat_id.as_str(), actor)
            .await
            .map_err(gql_error)?;
        let position = crate::service::chat::mark_read(state, actor, chat, message_id.as_str())
            .await
            .map_err(gql_error)?;
        Ok(ReadPosition::from_json(&position))
    }

    /// Tells a chat's `typing` subscribers on this server that the caller is (or stopped)
    /// typing. Members only; at most 2 per second per user (bursts of 5).
    async fn typing(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        #[graphql(default = true)] typing: bool,
    ) -> GqlResult<bool> {
        let (state, actor) = (state(ctx), actor(ctx));
        let chat = crate::livechat::require_member(state, actor, chat_id.as_str())
            .await
            .map_err(gql_error)?;
        TYPING.take(&actor.user_id).map_err(|wait| {
            gql_error(ApiError::RateLimited(
                "too many typing signals".into(),
                wait.as_secs().max(1),
            ))
        })?;
        state.live.publish_ephemeral(
            Topic::Chat(chat),
            "chat.typing",
            json!({"chat_id": chat, "user_id": actor.user_id, "state": if typing { "on" } else { "off" }}),
        );
        Ok(true)
    }
}
