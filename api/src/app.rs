//! Building and running the server: `Application::build(settings)` binds (port 0 in tests),
//! opens the store, starts the workers, and serves until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request};
use axum::Router;
use commands::CommandBus;
use eventstore::EventStore;
use projections::budget::BudgetProjection;
use projections::chat::ChatProjection;
use projections::fundraising::FundraisingProjection;
use projections::relay::Relay;
use projections::sharing::SharingProjection;
use projections::sinks::notifications::{InboxProjection, NotificationSink};
use projections::sinks::{discord::DiscordSink, spawn_sink, SinkStatus};
use projections::tea::TeaProjection;
use projections::{Projection, ProjectionRunner};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::settings::Settings;
use crate::state::AppState;

/// Opens the event store with the settings' pool size and acquisition timeout.
pub async fn open_store(settings: &Settings) -> anyhow::Result<EventStore> {
    settings.check_timeouts()?;
    EventStore::connect_with(
        &settings.database_url,
        settings.db_max_connections,
        settings.db_acquire_timeout,
    )
    .await
}

pub fn projections_for(store: &EventStore) -> ProjectionRunner {
    projections_with(store, 0)
}

/// The read models, plus `extra_noop` projections that write nothing (`noop.<n>`, interested in
/// an aggregate type nobody writes): what one more consumer of the log follower costs.
pub fn projections_with(store: &EventStore, extra_noop: usize) -> ProjectionRunner {
    let mut list: Vec<Arc<dyn Projection>> = vec![
        Arc::new(TeaProjection),
        Arc::new(InboxProjection),
        Arc::new(ChatProjection),
        Arc::new(BudgetProjection),
        Arc::new(FundraisingProjection),
        Arc::new(SharingProjection),
    ];
    for n in 0..extra_noop {
        // Bounded by `MAX_EXTRA_NOOP_PROJECTIONS`; a projection's name is `'static`.
        let name: &'static str = Box::leak(format!("noop.{n}").into_boxed_str());
        list.push(Arc::new(NoopProjection(name)));
    }
    ProjectionRunner::new(store.clone(), list)
}

/// A projection that applies nothing (see [`projections_with`]).
struct NoopProjection(&'static str);

#[async_trait::async_trait]
impl Projection for NoopProjection {
    fn name(&self) -> &'static str {
        self.0
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["bench_noop"])
    }

    async fn apply(
        &self,
        _tx: &mut eventstore::Tx,
        _e: &eventstore::StoredEvent,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    async fn reset(&self, _tx: &mut eventstore::Tx) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Starts the notification sink and, with a webhook configured, the Discord sink (or only the one
/// named by `only`).
pub fn spawn_sinks(
    store: &EventStore,
    settings: &Settings,
    only: Option<&str>,
) -> Vec<(&'static str, SinkStatus)> {
    let mut out = vec![];
    if only.is_none_or(|n| n == "notifications") {
        let sink = Arc::new(NotificationSink::new(store));
        out.push((
            "notifications",
            spawn_sink(
                store.clone(),
                settings.amqp_url.clone(),
                &settings.queue_prefix,
                sink,
            ),
        ));
    }
    if let Some(url) = &settings.discord_webhook_url {
        if only.is_none_or(|n| n == "discord") {
            let sink = Arc::new(DiscordSink::new(
                store,
                url.clone(),
                settings.discord_event_types.clone(),
            ));
            out.push((
                "discord",
                spawn_sink(
                    store.clone(),
                    settings.amqp_url.clone(),
                    &settings.queue_prefix,
                    sink,
                ),
            ));
        }
    }
    out
}

pub fn router(state: AppState) -> Router {
    let limit = state.settings.body_limit_bytes;
    Router::new()
        .merge(crate::routes::admin::router())
        .merge(crate::routes::tea::router())
        .merge(crate::routes::notifications::router())
        .merge(crate::routes::chat::router())
        .merge(crate::routes::moderation::router())
        .merge(crate::routes::retention::router())
        .merge(crate::routes::budget::router())
        .merge(crate::routes::fundraising::router())
        .merge(crate::routes::sharing::router())
        .merge(crate::routes::audit::router())
        .merge(crate::routes::ws::router())
        .route("/graphql", axum::routing::post(crate::graphql::execute).get(crate::graphql::get))
        .route("/graphql/schema.graphql", axum::routing::get(crate::graphql::sdl))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(crate::extract::refuse_unstorable_uri))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), user = tracing::field::Empty)
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.settings.request_timeout,
            request_timeout,
        ))
        .with_state(state)
}

/// Bounds every request: past the timeout it answers 503 `UNAVAILABLE` with `Retry-After` in
/// the error envelope (a WebSocket's upgrade answers at once, so its connection is not bound).
async fn request_timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Unavailable(format!(
            "the request did not complete within {} s; retry later",
            limit.as_secs_f64()
        ))
        .into_response(),
    }
}

pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
    pub state: AppState,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = open_store(&settings).await?;
        let runner = projections_with(&store, settings.extra_noop_projections);
        let relay = Relay::new(store.clone(), settings.amqp_url.clone());
        let mut sinks = vec![];
        let bus = CommandBus::new(store.clone());
        if settings.run_workers {
            runner.spawn();
            commands::message::spawn_worker(bus.clone());
            crate::retention::spawn_worker(bus.clone(), settings.retention_interval);
            commands::budget::spawn_tea_policy(bus.clone());
            commands::fundraising::spawn_policy(bus.clone());
            commands::sharing::spawn_policy(bus.clone());
            // Without a broker the sinks read the log themselves: nothing to relay to.
            if settings.amqp_url.is_some() {
                relay.spawn();
            }
            sinks = spawn_sinks(&store, &settings, None);
        }
        let state = AppState {
            relay,
            sinks,
            live: projections::live::LiveHub::start(store.clone()).await?,
            connections: crate::presence::Connections::start(store.db()),
            known_profiles: Default::default(),
            graphql: crate::graphql::schema_with(&settings.graphql),
            db: store.db(),
            bus,
            store,
            runner,
            settings: Arc::new(settings),
        };
        let listener = tokio::net::TcpListener::bind(state.settings.addr)
            .await
            .with_context(|| format!("failed to bind {}", state.settings.addr))?;
        Ok(Self {
            router: router(state.clone()),
            listener,
            state,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let limits = self.state.settings.http.clone();
        crate::serve::serve(self.listener, self.router, limits, shutdown)
            .await
            .context("server failed")
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
