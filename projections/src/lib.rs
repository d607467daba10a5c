//! Projection workers and read models. Every read model is built from the committed global log,
//! and each batch of changes commits together with the projection's checkpoint.

pub mod budget;
pub mod chat;
pub mod cloudevents;
pub mod fundraising;
pub mod live;
pub mod metrics;
pub mod page;
pub mod relay;
pub mod runtime;
pub mod sharing;
pub mod sinks;
pub mod stored;
pub mod tea;

pub use runtime::{Projection, ProjectionRunner};
