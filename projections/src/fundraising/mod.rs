//! Fund-raising read models: campaigns (with what they raised and spent), donations and
//! purchases, and the CloudEvent `data` of campaign events (`fundraising-svc`).

mod cloud;
mod projection;
pub mod queries;

pub use cloud::cloud_data;
pub use projection::FundraisingProjection;
