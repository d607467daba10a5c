//! Sharing (`sharing-svc`): one [`Asset`] aggregate per shared item (stream `asset/<id>`) holds
//! its owner, its current loan and its damage reports, so "one holder at a time" is decided on
//! the asset's exact state.

pub mod asset;

pub use asset::*;
