//! Tea Management read models: the projection that writes them and the queries that read them.

mod projection;
pub mod queries;

pub use projection::TeaProjection;
