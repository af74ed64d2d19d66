//! The status webhook's body (SPEC §2, §3), which the status endpoints answer too.

use serde::Serialize;

use crate::record::{ApiKind, BuildRecord, StatusEvent};
use crate::state::Audience;

/// A status webhook's body, serialised as it is (no intermediate JSON tree).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StatusBody<'a> {
    pub id: StatusId<'a>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub building: bool,
    pub status: &'static str,
    /// A finished v2 build's whole log: its length and SHA-256, so that a receiver knows it
    /// holds all of it, byte for byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogDigest<'a>>,
}

/// The archived log as served: its length in bytes and its SHA-256 (lowercase hex).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LogDigest<'a> {
    pub bytes: u64,
    pub sha256: &'a str,
}

/// A status body's `id`: the build's metadata (v2), or its build number (legacy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StatusId<'a> {
    Metadata(&'a str),
    Number(u64),
}

impl BuildRecord {
    /// The body `audience` is told of `event` (SPEC §2, §3): v2 bodies carry the metadata as
    /// `id`, legacy ones the build number (`0` until Jenkins numbers the build, the
    /// controller's own placeholder).
    pub fn status_body(&self, event: StatusEvent, audience: Audience) -> StatusBody<'_> {
        let (id, kind) = match audience {
            Audience::V2Webhook | Audience::V2Endpoint => (StatusId::Metadata(&self.metadata), "build system"),
            Audience::LegacyCallback | Audience::LegacyEndpoint => (StatusId::Number(event.number.unwrap_or(0)), "jenkins"),
        };
        let v2 = matches!(audience, Audience::V2Webhook | Audience::V2Endpoint);
        let log = match (&self.progress.log_sha256, v2 && event.state.is_terminal()) {
            (Some(sha256), true) => Some(LogDigest { bytes: self.progress.archive_len, sha256 }),
            _ => None,
        };
        StatusBody { id, kind, building: event.state.building(), status: event.state.status_for(audience), log }
    }

    /// The build as it is now, as the status endpoint of its API answers it (the v2 endpoint
    /// adds fields).
    pub fn endpoint_status_body(&self) -> StatusBody<'_> {
        let audience = match self.kind {
            ApiKind::V2 => Audience::V2Endpoint,
            ApiKind::Legacy => Audience::LegacyEndpoint,
        };
        self.status_body(StatusEvent { state: self.state, number: self.number }, audience)
    }
}
