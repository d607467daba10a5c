//! Communication read models: profiles, chats and memberships.

mod projection;
pub mod queries;

pub use projection::ChatProjection;
