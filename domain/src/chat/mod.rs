//! Communication: user profiles (synced from User Management) and chats with their members.

pub mod conversation;
pub mod message;
pub mod profile;
pub mod retention;

pub use conversation::*;
pub use message::*;
pub use profile::*;
