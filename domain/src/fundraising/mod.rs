//! Fund Raising (`fundraising-svc`): one [`Campaign`] aggregate per campaign (stream
//! `campaign/<id>`) holds its goal, status, donations and purchases, so "donations only while
//! active" and "completed exactly once" are decided on the campaign's exact state.

pub mod campaign;

pub use campaign::*;
