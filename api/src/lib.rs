//! The HTTP edge of FAFCab: the REST compatibility layer (seed 000's contracts), auth, health,
//! metrics and the audit feed, on axum.

pub mod app;
pub mod audit;
pub mod auth;
pub mod error;
pub mod extract;
pub mod graphql;
pub mod livechat;
pub mod metrics;
pub mod presence;
pub mod progress;
pub mod ratelimit;
pub mod retention;
pub mod routes;
pub mod serve;
pub mod service;
pub mod settings;
pub mod state;

pub use app::Application;
pub use settings::Settings;
