//! Communication: user profiles (synced from User Management) and chats with their members.

pub mod conversation;
pub mod profile;

pub use conversation::*;
pub use profile::*;
