//! One live chat stream with its access re-check, shared by `WS /ws` and the GraphQL chat
//! subscriptions (`chatMessages`, `typing`, `readReceipts`), and the per-user caps on live
//! resources (sockets and hub subscriptions) both transports count against.
//!
//! Access is decided on the `Chat` **aggregate** (loaded from the log, always caught up), never
//! on the `chat` read model, which may lag: a stale row must not keep a removed member
//! subscribed. At subscribe time the hub subscription is taken *first* and access decided
//! *after*, so a revoking event is either already in the aggregate or still to come through the
//! subscription, where it is re-checked: no window in which it is missed. Every chat event that
//! may change what the caller may see (their own membership, a chat turning private, or an event
//! this build does not know) is re-checked the same way, and any failure to decide ends the
//! stream (fail closed).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use cqrs_es::Aggregate;
use domain::chat::{Chat, ChatEvent};
use domain::{Actor, Role};
use projections::live::{LiveError, LiveEvent, LiveReceiver, Topic};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Live WebSocket connections one user may hold at once in a process (`/ws` and `/graphql`).
pub const MAX_SOCKETS_PER_USER: usize = 16;
/// Live hub subscriptions one user may hold at once in a process, over every connection (1 % of
/// the hub's [`projections::live::MAX_SUBSCRIBERS`]: no single user can fill the hub).
pub const MAX_SUBSCRIPTIONS_PER_USER: usize = 1_000;

/// Who may follow a chat's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Whoever may read the chat: members, anyone for a public chat, admins.
    Read,
    /// Members (and admins) only: typing and read receipts.
    Members,
}

fn allowed(chat: &Chat, actor: &Actor, access: Access) -> bool {
    chat.chat_id.is_some()
        && match access {
            Access::Read => chat.visible_to(actor),
            Access::Members => actor.has(Role::Admin) || chat.member(&actor.user_id).is_some(),
        }
}

/// A user's count of something, decremented when its [`Held`] drops.
struct PerUser(Mutex<HashMap<String, usize>>);

impl PerUser {
    fn take(&'static self, user: &str, max: usize) -> Option<Held> {
        let mut m = self.0.lock().expect("per-user counts");
        let n = m.entry(user.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Held {
            counts: self,
            user: user.to_string(),
        })
    }

    fn held(&self, user: &str) -> usize {
        self.0
            .lock()
            .expect("per-user counts")
            .get(user)
            .copied()
            .unwrap_or(0)
    }
}

/// One unit of a per-user cap, given back on drop.
pub struct Held {
    counts: &'static PerUser,
    user: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock().expect("per-user counts");
        if let Some(n) = m.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

static SOCKETS: LazyLock<PerUser> = LazyLock::new(|| PerUser(Mutex::new(HashMap::new())));
static SUBSCRIPTIONS: LazyLock<PerUser> = LazyLock::new(|| PerUser(Mutex::new(HashMap::new())));

/// Takes one of the user's [`MAX_SOCKETS_PER_USER`] connection slots, or 429 `RATE_LIMITED`.
pub fn take_socket(user: &str) -> Result<Held, ApiError> {
    SOCKETS.take(user, MAX_SOCKETS_PER_USER).ok_or_else(|| {
        ApiError::RateLimited(
            format!("at most {MAX_SOCKETS_PER_USER} live connections per user"),
            1,
        )
    })
}

/// Connections and subscriptions `user` holds in this process now.
pub fn held_by(user: &str) -> (usize, usize) {
    (SOCKETS.held(user), SUBSCRIPTIONS.held(user))
}

/// A hub subscription counted against its user's share.
pub struct UserReceiver {
    pub rx: LiveReceiver,
    _held: Held,
}

/// Subscribes `user` to `topic`: `RATE_LIMITED` past their share, `UNAVAILABLE` when the hub is
/// full.
pub fn subscribe(state: &AppState, user: &str, topic: Topic) -> Result<UserReceiver, ApiError> {
    let held = SUBSCRIPTIONS
        .take(user, MAX_SUBSCRIPTIONS_PER_USER)
        .ok_or_else(|| {
            ApiError::RateLimited(
                format!("at most {MAX_SUBSCRIPTIONS_PER_USER} live subscriptions per user"),
                1,
            )
        })?;
    let rx = state
        .live
        .subscribe(topic)
        .ok_or_else(|| ApiError::Unavailable("too many live subscribers on this server".into()))?;
    Ok(UserReceiver { rx, _held: held })
}

/// Why a chat stream ended.
#[derive(Debug)]
pub enum FeedEnd {
    /// The caller may no longer follow the chat (or it could not be decided: fail closed).
    Lost,
    /// The subscriber fell behind the hub by this many events.
    Lagged(u64),
    /// The hub stopped (shutdown).
    Closed,
}

/// Whether a committed chat event may change what `user` may see, so access must be decided
/// again: their own membership, the chat turning private, or an event this build cannot read.
fn may_change_access(e: &LiveEvent, user: &str) -> bool {
    match domain::codec::decode::<ChatEvent>(&e.event_type, e.payload.clone()) {
        Ok(ChatEvent::MemberLeft { user_id, .. }) => user_id == user,
        Ok(ChatEvent::MemberJoined { member }) => member.user_id == user,
        Ok(ChatEvent::ChatUpdated { is_private, .. }) => is_private == Some(true),
        Ok(_) => false,
        Err(_) => true,
    }
}

/// The Chat aggregate, caught up with the log.
async fn load_chat(state: &AppState, chat_id: Uuid) -> Result<Chat, ApiError> {
    let (_, chat) = state.bus.load::<Chat>(&chat_id.to_string()).await?;
    Ok(chat)
}

/// Members (and admins) only: the chat id, or `NOT_FOUND` for a chat the caller cannot read and
/// `FORBIDDEN` for a readable one they are not a member of. Decided on the aggregate.
pub async fn require_member(
    state: &AppState,
    actor: &Actor,
    raw_chat_id: &str,
) -> Result<Uuid, ApiError> {
    let chat_id = crate::extract::path_uuid(raw_chat_id, "chat")?;
    let chat = load_chat(state, chat_id).await?;
    if !allowed(&chat, actor, Access::Read) {
        return Err(ApiError::not_found("chat"));
    }
    if !allowed(&chat, actor, Access::Members) {
        return Err(ApiError::Forbidden("members of the chat only".into()));
    }
    Ok(chat_id)
}

/// One chat's live events for one caller, for as long as they may follow it.
pub struct ChatFeed {
    state: AppState,
    actor: Actor,
    pub chat_id: Uuid,
    access: Access,
    /// Whether the caller is a member (or an admin) now: typing and read receipts go only to them.
    pub member: bool,
    rx: UserReceiver,
}

impl ChatFeed {
    /// Subscribes, then decides access on the aggregate (`NOT_FOUND` when the caller may not
    /// follow the chat; a private chat does not exist for an outsider).
    pub async fn open(
        state: &AppState,
        actor: &Actor,
        raw_chat_id: &str,
        access: Access,
    ) -> Result<Self, ApiError> {
        let chat_id = crate::extract::path_uuid(raw_chat_id, "chat")?;
        let rx = subscribe(state, &actor.user_id, Topic::Chat(chat_id))?;
        let chat = load_chat(state, chat_id).await?;
        if !allowed(&chat, actor, access) {
            return Err(if allowed(&chat, actor, Access::Read) {
                ApiError::Forbidden("members of the chat only".into())
            } else {
                ApiError::not_found("chat")
            });
        }
        Ok(Self {
            state: state.clone(),
            actor: actor.clone(),
            chat_id,
            access,
            member: allowed(&chat, actor, Access::Members),
            rx,
        })
    }

    /// The next event of the chat that is not a chat event itself (messages, read positions,
    /// typing), or why the stream ends. Chat events re-check access on the aggregate first.
    pub async fn next(&mut self) -> Result<LiveEvent, FeedEnd> {
        loop {
            let ev = match self.rx.rx.recv().await {
                Ok(ev) => ev,
                Err(LiveError::Lagged { missed }) => return Err(FeedEnd::Lagged(missed)),
                Err(LiveError::Closed) => return Err(FeedEnd::Closed),
            };
            if ev.ephemeral || ev.aggregate_type != "chat" {
                return Ok(ev);
            }
            if !may_change_access(&ev, &self.actor.user_id) {
                continue;
            }
            match load_chat(&self.state, self.chat_id).await {
                Ok(chat) => {
                    // Decided on the aggregate and on the aggregate with this event applied
                    // (again): should the load not show the event yet, the event itself decides.
                    let mut with_event = chat.clone();
                    if let Ok(ce) =
                        domain::codec::decode::<ChatEvent>(&ev.event_type, ev.payload.clone())
                    {
                        with_event.apply(ce);
                    }
                    let (a, u) = (&self.actor, self.access);
                    if !(allowed(&chat, a, u) && allowed(&with_event, a, u)) {
                        return Err(FeedEnd::Lost);
                    }
                    self.member = allowed(&chat, a, Access::Members)
                        && allowed(&with_event, a, Access::Members);
                }
                Err(e) => {
                    tracing::warn!(error = %e, chat = %self.chat_id, "cannot re-check live chat access; ending the stream");
                    return Err(FeedEnd::Lost);
                }
            }
        }
    }
}
