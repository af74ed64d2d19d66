//! The build shuttle's domain. Pure: no AWS SDK, no Lambda types.
//!
//! - [`request`]: the two create request shapes, parsed into one [`request::BuildSpec`].
//! - [`state`]: the build state machine; [`record`]: a build as stored.
//! - [`webhook`], [`source`]: webhook targets, sources and images; [`redact`]: credential redaction.
//! - [`access`]: callers' tokens and signed sources links.
//! - [`ports`]: what the use cases need from outside; [`api`]: the API's use cases, one per
//!   file; [`poll`]: the poller's. [`config`]: the settings each of them reads.

pub mod access;
pub mod api;
pub mod config;
pub mod delivery;
pub mod error;
pub mod ids;
pub mod jenkins;
pub mod netguard;
pub mod poll;
pub mod ports;
pub mod record;
pub mod redact;
pub mod relay;
pub mod request;
pub mod secrets;
pub mod source;
pub mod state;
pub mod webhook;

#[cfg(any(test, feature = "fakes"))]
pub mod contract;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;

pub use error::{ShuttleError, ValidationError};
