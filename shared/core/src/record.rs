//! A build as stored: what the status endpoints show in plain, the spec sealed.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::state::{BuildState, StopIntent};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKind {
    V2,
    Legacy,
}

// Its name as stored: its serde name (`v2`, `legacy`).
serde_plain::derive_display_from_serialize!(ApiKind);
serde_plain::derive_fromstr_from_deserialize!(ApiKind);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildRecord {
    /// The key: a v2 build's UUIDv5 of `{app_id}/{build_id}`, a legacy build's `build_uuid`.
    /// Its sources are cached under it.
    pub source_id: Uuid,
    pub kind: ApiKind,
    /// v2: `{app_id}/{build_id}`; legacy: the `build_uuid`.
    pub build_key: String,
    /// v2: the `app_id`; legacy: the job `{app}-{app_uuid}`. Builds of one app are listed by it.
    pub app_key: String,
    /// Legacy `n`: the controller's `build_number`, else Jenkins' build number once known.
    pub number: Option<u64>,
    pub metadata: String,
    /// Shown by the status endpoint; stored redacted.
    pub human_readable_info: String,
    pub state: BuildState,
    pub stop: Option<StopIntent>,
    /// Why the build failed, redacted, for the log and the status endpoint.
    pub failure: Option<String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Incremented by every write; every write is conditional on it.
    pub version: u64,
    /// The [`crate::request::BuildSpec`] as JSON, encrypted by the [`crate::ports::Sealer`].
    /// Written once, at create: a copy of the record shares it.
    pub sealed_spec: Bytes,
    /// Where the poller is with the build.
    pub progress: Progress,
}

/// The poller's positions for one build, each moved by a conditional write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Polls completed. A poll message names the round it was sent for; a message of another
    /// round is a duplicate and is dropped.
    pub round: u64,
    /// The poller invocation working on the build, and until when.
    pub lease: Option<Lease>,
    /// When a poll last finished (or the build was created): the schedule re-drives builds
    /// whose last poll is stale.
    pub polled_at_ms: u64,
    /// Set just before `buildWithParameters`: a poll that finds it set but no queue item looks
    /// the build up in Jenkins by its `BUILD_UUID` instead of triggering it twice.
    pub triggered_at_ms: Option<u64>,
    pub queue_item: Option<u64>,
    /// Jenkins' build number, once the build left the queue.
    pub jenkins_number: Option<u64>,
    pub started_at_ms: Option<u64>,
    /// When the build reached its terminal state.
    pub finished_at_ms: Option<u64>,
    /// A finished v2 build's log digest (SHA-256, lowercase hex) over its `archive_len` bytes.
    pub log_sha256: Option<String>,
    /// Why Jenkins keeps the build in its queue (its queue item's `why`, redacted and cut), while
    /// it waits there.
    pub queue_why: Option<String>,
    /// Jenkins' `X-Text-Size`: where the next `progressiveText` read starts.
    pub log_cursor: u64,
    /// Bytes in the S3 log archive (the shuttle's own lines included, so not the cursor).
    pub archive_len: u64,
    /// What the webhook targets were told so far.
    pub deliveries: Deliveries,
}

/// The status changes to report and how far each webhook target is (SPEC §5). The targets
/// themselves live in the sealed spec (their URLs may hold credentials); these are only
/// positions, in the order of the spec's targets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliveries {
    /// Every status change, in order; an event's index is its sequence number.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<StatusEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<Delivery>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<Delivery>,
}

/// A status change: the state entered, and the legacy build number as it was then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    pub state: BuildState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
}

/// One status a target is told: the build's event number `seq`, or a `pending` implied by
/// the event `seq` (a legacy callback's, see [`Deliveries::events_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    pub seq: u64,
    pub event: StatusEvent,
    pub implied: bool,
}

impl Notice {
    /// Its Standard Webhooks `webhook-id`: the same for every attempt, unique per notice.
    pub fn webhook_id(&self, source_id: Uuid) -> String {
        match self.implied {
            false => format!("{source_id}:{}", self.seq),
            true => format!("{source_id}:{}:pending", self.seq),
        }
    }
}

/// One target's position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Status targets: events delivered (or given up); log targets: the log offset acknowledged.
    #[serde(default)]
    pub done: u64,
    /// A legacy callback: told only `pending` once the number is known, and the end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub callback: bool,
    /// Failed attempts at what comes next, and when the first of them was.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failing_since_ms: u64,
    /// Not before this (backoff, `Retry-After`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_at_ms: u64,
    /// Nothing more goes to this target: its log was delivered to the end, or it was given up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
}

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Deliveries {
    /// Nothing more goes to any target: each is given up.
    pub fn give_up_all(&mut self) {
        self.status.iter_mut().chain(self.logs.iter_mut()).for_each(|target| target.closed = true);
    }

    /// The positions of new targets: `callback` tells which status targets are legacy callbacks.
    pub fn for_targets(callbacks: impl IntoIterator<Item = bool>, log_targets: usize) -> Self {
        Self {
            events: Vec::new(),
            status: callbacks.into_iter().map(|callback| Delivery { callback, ..Delivery::default() }).collect(),
            logs: vec![Delivery::default(); log_targets],
        }
    }

    /// What a status target is told, in order: a legacy callback hears one `pending` once the
    /// build number is known, then the end; any other target hears every change. A build that
    /// ends before a numbered `pending` was told (it failed at once, or finished between two
    /// polls) still tells its callback `pending` first, implied by its end: the controller
    /// expects one before every terminal status.
    pub fn events_for(&self, target: &Delivery) -> Vec<Notice> {
        notices(&self.events, target)
    }

    /// The targets that still have something coming: status targets with events not yet
    /// told, log targets not closed (a log target is closed once it has the whole log of a
    /// finished build, or is given up).
    fn waiting(&self) -> impl Iterator<Item = &Delivery> {
        let status = self.status.iter().filter(|t| t.has_news(&self.events));
        status.chain(self.logs.iter().filter(|t| !t.closed))
    }

    pub fn pending(&self) -> bool {
        self.waiting().next().is_some()
    }

    /// The earliest time a waiting target may be tried again (`0`: now), if any waits.
    pub fn next_attempt_ms(&self) -> Option<u64> {
        self.waiting().map(|t| t.retry_at_ms).min()
    }
}

impl Delivery {
    /// A status target's: whether some of `events` are still to be told to it.
    pub fn has_news(&self, events: &[StatusEvent]) -> bool {
        !self.closed && (self.done as usize) < notices(events, self).len()
    }
}

/// What a status target is told of `events`, in order (see [`Deliveries::events_for`]).
pub fn notices(events: &[StatusEvent], target: &Delivery) -> Vec<Notice> {
    let all = events.iter().enumerate().map(|(seq, event)| Notice { seq: seq as u64, event: *event, implied: false });
    if !target.callback {
        return all.collect();
    }
    let numbered = all.clone().find(|n| !n.event.state.is_terminal() && n.event.state != BuildState::Accepted && n.event.number.is_some());
    let end = all.clone().find(|n| n.event.state.is_terminal());
    let pending = numbered.or_else(|| {
        end.map(|end| Notice { event: StatusEvent { state: BuildState::Pending, number: end.event.number }, implied: true, ..end })
    });
    pending.into_iter().chain(end).collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until_ms: u64,
}

impl Progress {
    /// Whether someone other than `owner` holds an unexpired lease at `now`.
    pub fn leased_by_other(&self, owner: &str, now: u64) -> bool {
        self.lease.as_ref().is_some_and(|lease| lease.owner != owner && lease.until_ms > now)
    }
}

impl BuildRecord {
    /// Moves the build to `state` when the state machine allows it, and records the change
    /// for the status targets. Whether it moved.
    pub fn move_to(&mut self, state: BuildState) -> bool {
        if !self.state.can_move_to(state) {
            return false;
        }
        self.state = state;
        self.progress.deliveries.events.push(StatusEvent { state, number: self.number });
        if state.is_terminal() {
            self.progress.finished_at_ms = self.progress.finished_at_ms.or(Some(now_ms()));
        }
        if state != BuildState::Queued {
            self.progress.queue_why = None;
        }
        true
    }

    /// Whether the poller still has work for the build: it is unfinished, or a webhook target
    /// has not yet been told everything.
    pub fn needs_polling(&self) -> bool {
        !self.state.is_terminal() || self.progress.deliveries.pending()
    }

    /// When the store may forget the build, in seconds since the epoch (DynamoDB's TTL): a
    /// finished build whose every target was told everything is kept `retention` after its
    /// last change; any other build is kept.
    pub fn expires_at_s(&self, retention: Duration) -> Option<u64> {
        (!self.needs_polling()).then(|| (self.updated_at_ms / 1000).saturating_add(retention.as_secs()))
    }

    /// When the build waited in Jenkins' queue and ran, and why it waits while it does: what
    /// the v2 status endpoint shows.
    pub fn timings(&self) -> Timings<'_> {
        let progress = &self.progress;
        let seconds = |from: Option<u64>, to: Option<u64>| match (from, to) {
            (Some(from), Some(to)) => Some(to.saturating_sub(from) as f64 / 1000.0),
            _ => None,
        };
        Timings {
            why: progress.queue_why.as_deref().filter(|_| self.state == BuildState::Queued),
            queued_at: progress.triggered_at_ms.map(Rfc3339Ms),
            started_at: progress.started_at_ms.map(Rfc3339Ms),
            finished_at: progress.finished_at_ms.map(Rfc3339Ms),
            queue_seconds: seconds(progress.triggered_at_ms, progress.started_at_ms),
            build_seconds: seconds(progress.started_at_ms, progress.finished_at_ms),
        }
    }
}

/// When a build waited and ran, each `null` until it is known (RFC 3339 times, seconds).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Timings<'a> {
    /// Jenkins' reason, while the build waits in its queue.
    pub why: Option<&'a str>,
    /// When it was handed to Jenkins' queue.
    pub queued_at: Option<Rfc3339Ms>,
    pub started_at: Option<Rfc3339Ms>,
    pub finished_at: Option<Rfc3339Ms>,
    pub queue_seconds: Option<f64>,
    pub build_seconds: Option<f64>,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Milliseconds since the epoch, serialised as RFC 3339 UTC with milliseconds
/// (`2026-11-23T10:00:00.123Z`, humantime's `format_rfc3339_millis`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339Ms(pub u64);

/// The last millisecond of year 9999: RFC 3339 years have four digits.
const LAST_RFC3339_MS: u64 = 253_402_300_799_999;

impl fmt::Display for Rfc3339Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = UNIX_EPOCH + Duration::from_millis(self.0.min(LAST_RFC3339_MS));
        humantime::format_rfc3339_millis(time).fmt(f)
    }
}

impl Serialize for Rfc3339Ms {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc3339_ms(ms: u64) -> String {
        Rfc3339Ms(ms).to_string()
    }

    #[test]
    fn a_kind_is_stored_by_its_serde_name() {
        assert_eq!([ApiKind::V2.to_string(), ApiKind::Legacy.to_string()], ["v2", "legacy"]);
        assert_eq!("legacy".parse::<ApiKind>().unwrap(), ApiKind::Legacy);
        assert!("V2".parse::<ApiKind>().is_err());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_392_000_123), "2026-11-23T00:00:00.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(rfc3339_ms(u64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(serde_json::to_string(&Rfc3339Ms(1_795_392_000_123)).unwrap(), r#""2026-11-23T00:00:00.123Z""#);
    }
}
