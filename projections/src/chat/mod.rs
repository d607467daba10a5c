//! Communication read models: profiles, chats and memberships.

pub mod moderation;
mod projection;
pub mod queries;
pub mod retention;

pub use projection::ChatProjection;
