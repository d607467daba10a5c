//! Communication: user profiles (synced from User Management) and chats with their members.

pub mod conversation;
pub mod filters;
pub mod message;
pub mod moderation;
pub mod profile;
pub mod read;
pub mod report;
pub mod retention;

pub use conversation::*;
pub use filters::{
    FilterCommand, FilterEvent, FilterSet, Filtered, Matcher, MatcherCache, FILTERS_ID,
};
pub use message::*;
pub use moderation::*;
pub use profile::*;
pub use read::*;
pub use report::*;
