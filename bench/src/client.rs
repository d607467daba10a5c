//! A minimal `graphql-transport-ws` client over tokio-tungstenite, for the tests, the
//! subscription bench and scripts: connect, `connection_init` with a token, subscribe, read
//! frames (answering the server's pings), see how the server closed.

use std::time::Duration;

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What the server sent, pings and pongs aside.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Ack,
    /// `next`: the subscription id and its GraphQL response (`data` and/or `errors`).
    Next(String, Value),
    /// `error`: the subscription id and its errors.
    Error(String, Value),
    Complete(String),
    /// The server's ping (only when `answer_pings` is off).
    Ping,
    /// The server closed the socket: its close code (none if it just went away) and reason.
    Closed(Option<u16>, String),
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
    /// Answer the server's pings with pongs (on by default); off, they are returned as frames.
    pub answer_pings: bool,
}

impl Client {
    /// Opens the WebSocket (`ws://host:port/graphql`) with the protocol; sends nothing yet.
    pub async fn open(url: &str) -> anyhow::Result<Client> {
        let mut req = url.into_client_request().context("bad url")?;
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().expect("header"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .with_context(|| format!("failed to open {url}"))?;
        Ok(Client {
            ws,
            next_id: 0,
            answer_pings: true,
        })
    }

    /// Opens and initialises with `Authorization: Bearer <token>`; fails unless acknowledged.
    pub async fn connect(url: &str, token: &str) -> anyhow::Result<Client> {
        let mut c = Client::open(url).await?;
        c.init(token).await?;
        Ok(c)
    }

    pub async fn send(&mut self, v: Value) -> anyhow::Result<()> {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .context("send failed")
    }

    /// Sends `connection_init` and waits (10 s at most) for `connection_ack`.
    pub async fn init(&mut self, token: &str) -> anyhow::Result<()> {
        self.send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}))
            .await?;
        match self.next_within(Duration::from_secs(10)).await {
            Some(Frame::Ack) => Ok(()),
            other => bail!("expected connection_ack, got {other:?}"),
        }
    }

    /// Starts a subscription (or any operation) and returns its id.
    pub async fn subscribe(&mut self, query: &str, variables: Value) -> anyhow::Result<String> {
        self.next_id += 1;
        let id = self.next_id.to_string();
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}))
            .await?;
        Ok(id)
    }

    /// Stops a subscription.
    pub async fn complete(&mut self, id: &str) -> anyhow::Result<()> {
        self.send(json!({"id": id, "type": "complete"})).await
    }

    /// The next frame; the server's pings are answered on the way.
    pub async fn next(&mut self) -> Frame {
        loop {
            let msg = match self.ws.next().await {
                None => return Frame::Closed(None, String::new()),
                Some(Err(e)) => return Frame::Closed(None, e.to_string()),
                Some(Ok(m)) => m,
            };
            let text = match msg {
                Message::Text(t) => t.to_string(),
                Message::Close(f) => {
                    return match f {
                        Some(f) => Frame::Closed(Some(u16::from(f.code)), f.reason.to_string()),
                        None => Frame::Closed(Some(u16::from(CloseCode::Status)), String::new()),
                    }
                }
                _ => continue,
            };
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let id = v["id"].as_str().unwrap_or_default().to_string();
            match v["type"].as_str() {
                Some("connection_ack") => return Frame::Ack,
                Some("next") => return Frame::Next(id, v["payload"].clone()),
                Some("error") => return Frame::Error(id, v["payload"].clone()),
                Some("complete") => return Frame::Complete(id),
                Some("ping") if !self.answer_pings => return Frame::Ping,
                Some("ping") => {
                    let _ = self.send(json!({"type": "pong"})).await;
                }
                _ => {}
            }
        }
    }

    /// The next frame within `limit`, or None.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Frame> {
        tokio::time::timeout(limit, self.next()).await.ok()
    }

    /// Reads until the server closes (within `limit`): the frames before, and the close.
    pub async fn until_closed(&mut self, limit: Duration) -> (Vec<Frame>, Option<Frame>) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = vec![];
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Err(_) => return (seen, None),
                Ok(f @ Frame::Closed(..)) => return (seen, Some(f)),
                Ok(f) => seen.push(f),
            }
        }
    }
}
