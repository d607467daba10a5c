//! Sharing read models: assets with their current holder, loans and damage reports, and the
//! CloudEvent `data` of asset events (`sharing-svc`).

mod cloud;
mod projection;
pub mod queries;

pub use cloud::cloud_data;
pub use projection::SharingProjection;
