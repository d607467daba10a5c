//! Communication read models: profiles, chats and memberships.

mod projection;
pub mod queries;
pub mod retention;

pub use projection::ChatProjection;
