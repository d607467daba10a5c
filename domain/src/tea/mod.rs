//! Tea Management: consumables, their stock lots, consumption, low-stock rules, announcements.

pub mod announcement;
pub mod item;
pub mod validate;

pub use announcement::{
    Announcement, AnnouncementCommand, AnnouncementError, AnnouncementEvent, AnnouncementSpec,
};
pub use item::*;
