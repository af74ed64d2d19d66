//! The poller's use cases (SPEC §4): one poll of one build, and the scheduled re-drive.
//!
//! A poll takes a lease on the build, moves it as far as it can in one go — sources cached,
//! job ensured, build triggered, queue item watched, log tailed for one window — and hands it
//! to the next poll through the queue until it is finished. SQS may deliver a message twice or
//! to two pollers at once, so every step is a conditional write and every message names the
//! round it was sent for: a message of an older round, or for a build someone else holds, is
//! dropped.
//!
//! Here: one poll (the lease taken, the build advanced while the relay delivers, handed over)
//! and the build record's writes during it. Beside it, one concern a file:
//! - `lease`: taking the lease on a build;
//! - `steps`: the steps of the state machine (prepare, watch the queue, tail the log);
//! - `jenkins_params`: the job parameters and the legacy image tag;
//! - `archive`: the log archive sink;
//! - `redrive`: the scheduled run and giving up on stuck builds.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::PollPolicy;
use crate::error::{ServiceError, StoreError};
use crate::jenkins::JenkinsResult;
use crate::ports::{BuildStore, Jenkins, OpenError, PollMessage, PollQueue, Sealer, SourceFetcher, SourceStore};
use crate::record::{now_ms, ApiKind, BuildRecord};
use crate::redact::redact;
use crate::relay::{Relay, Webhooks};
use crate::request::BuildSpec;
use crate::state::{BuildState, StopIntent};

mod archive;
mod jenkins_params;
mod lease;
mod redrive;
mod steps;

use archive::ArchiveSink;
pub use archive::ARCHIVE_CHUNK_BYTES;
pub use redrive::STUCK_MARGIN;

const MAX_WRITE_ATTEMPTS: usize = 8;

/// The longest SQS message delay.
const MAX_QUEUE_DELAY: Duration = Duration::from_secs(15 * 60);

/// The least time deliveries in flight get to finish when a poll ends.
const MIN_GRACE: Duration = Duration::from_secs(1);

/// The poller function's timeout (`template.yaml`): no poll outlives it.
pub const POLLER_TIMEOUT: Duration = Duration::from_secs(90);

/// The time a poll keeps, before its invocation's deadline, to hand the build over: the save of
/// its positions and the next poll's message.
pub const HAND_OVER_RESERVE: Duration = Duration::from_secs(3);

/// The poller function's use cases: every port, and what it decides with.
pub struct Poller {
    pub store: Arc<dyn BuildStore>,
    /// The sources cache and the log archive.
    pub sources: Arc<dyn SourceStore>,
    pub queue: Arc<dyn PollQueue>,
    pub sealer: Arc<dyn Sealer>,
    pub jenkins: Arc<dyn Jenkins>,
    /// Downloads `http(s)` sources into the sources store.
    pub fetcher: Arc<dyn SourceFetcher>,
    pub webhooks: Webhooks,
    pub policy: PollPolicy,
}

/// What became of a poll message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Polled {
    /// The build moved; `next` is when it is polled again (`None`: it is finished).
    Moved { state: BuildState, next: Option<Duration> },
    /// Nothing to do: the message is a duplicate, late, or for a build someone else holds.
    Dropped(&'static str),
}

/// What one scheduled run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redriven {
    pub requeued: Vec<Uuid>,
    pub failed: Vec<Uuid>,
    /// Finished builds no poll could deliver for longer than any delivery is retried: their
    /// deliveries were given up.
    pub abandoned: Vec<Uuid>,
}

/// Where a step leaves the build.
enum Next {
    /// Go on with the next step in this poll.
    Continue,
    /// Poll again after this delay.
    Wait(Duration),
    /// Finished.
    Done,
}

/// Why a poll (or the scheduled run) could not do its work: the poll message comes back.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("the build kept changing under the poll")]
    Contended,
    #[error("the build is no longer stored")]
    Vanished,
    #[error("a backing service failed")]
    Unavailable(#[source] ServiceError),
}

impl From<StoreError> for PollError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict => Self::Contended,
            too_large @ StoreError::TooLarge { .. } => Self::Unavailable(ServiceError::new("build store", too_large.to_string())),
            StoreError::Unavailable(e) => Self::Unavailable(e),
        }
    }
}

impl From<ServiceError> for PollError {
    fn from(error: ServiceError) -> Self {
        Self::Unavailable(error)
    }
}

/// A step could not complete, and the poll ends: see [`judge`].
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("another poll took over the build")]
    LostLease,
    #[error(transparent)]
    Failed(#[from] PollError),
}

impl From<StoreError> for StepError {
    fn from(error: StoreError) -> Self {
        Self::Failed(error.into())
    }
}

impl From<ServiceError> for StepError {
    fn from(error: ServiceError) -> Self {
        Self::Failed(error.into())
    }
}

/// The one place a poll that ended early is judged: a lost lease drops the message (the poll
/// that took the build over carries on with it); any other failure brings the message back, and
/// the lease lapses by itself.
fn judge(failure: StepError) -> Result<Polled, PollError> {
    match failure {
        StepError::LostLease => Ok(Polled::Dropped("another poll took over the build")),
        StepError::Failed(error) => Err(error),
    }
}

impl Poller {
    /// Handles one poll message with the poller's whole timeout from now: see [`Poller::poll_until`].
    pub async fn poll(&self, message: &PollMessage) -> Result<Polled, PollError> {
        self.poll_until(message, Instant::now() + POLLER_TIMEOUT).await
    }

    /// Handles one poll message, returning before `deadline` (the invocation's). An error means
    /// the message should be retried.
    ///
    /// The steps get the time left once the hand-over is provided for (the relay's grace and
    /// [`HAND_OVER_RESERVE`]); a step still running then is cut short, as an interrupted poll
    /// would be, and the build handed over with its positions saved. Every step is written to
    /// be resumed from what was saved, so nothing is lost, only picked up by the next poll.
    #[tracing::instrument(name = "poll", skip_all, fields(build = %message.source_id, round = message.round))]
    pub async fn poll_until(&self, message: &PollMessage, deadline: Instant) -> Result<Polled, PollError> {
        let owner = Uuid::new_v4().to_string();
        let Some(record) = self.take_lease(message, &owner).await? else {
            return Ok(Polled::Dropped("duplicate, late, or held by another poll"));
        };
        let spec = match open_spec(self.sealer.as_ref(), &record).await {
            Ok(spec) => spec,
            Err(OpenError::Refused(reason)) => return self.fail_unopened(record, &reason).await,
            Err(OpenError::Unavailable(error)) => return Err(error.into()),
        };
        let signing = self.policy.webhook_signing_secret.get().await?;
        let record = Arc::new(record);
        let policy = &self.policy;
        let grace = policy.pacing.interval.max(MIN_GRACE);
        let relay = Relay::new(
            &self.webhooks,
            self.sources.as_ref(),
            signing.as_ref().as_ref(),
            &spec,
            &policy.kafka_topic,
            Arc::clone(&record),
            grace,
        );
        let work_end = deadline.checked_sub(grace + HAND_OVER_RESERVE).unwrap_or(deadline).max(Instant::now());
        let window_end = (Instant::now() + policy.pacing.window).min(work_end);
        let mut build = Build { poller: self, record, owner, spec, relay: &relay, work_end };
        // The build moves while the relay delivers; a finished build's deliveries get the rest
        // of the window, an unfinished one's an interval (its next poll comes soon).
        let (advanced, ()) = tokio::join!(
            async {
                let advanced = match tokio::time::timeout_at(work_end, build.advance()).await {
                    Ok(advanced) => advanced,
                    Err(_) => {
                        let state = build.record.state;
                        tracing::warn!(build = %build.record.source_id, %state, "the invocation's time ran out during a step; handing the build over");
                        Ok(Next::Wait(policy.pacing.interval))
                    }
                };
                let until = if build.record.state.is_terminal() { window_end } else { Instant::now() + policy.pacing.interval };
                relay.settle(until.min(work_end)).await;
                relay.close();
                advanced
            },
            relay.run()
        );
        match advanced {
            Ok(next) => build.hand_over(next).await.or_else(judge),
            Err(failure) => judge(failure),
        }
    }
}

impl Poller {
    /// A build whose spec can never be opened: without it there is nothing to build and no
    /// webhook to tell, so it fails at once with the reason (its status shows it) instead of
    /// coming back until the give-up. Logged as an error: an item altered or copied by hand.
    async fn fail_unopened(&self, mut record: BuildRecord, reason: &str) -> Result<Polled, PollError> {
        tracing::error!(build = %record.source_id, reason, "the build's spec cannot be opened: the build fails without its webhooks being told");
        record.move_to(BuildState::Failed);
        if record.state == BuildState::Failed && record.failure.is_none() {
            record.failure = Some(format!("the build's stored request cannot be opened: {reason}"));
        }
        record.progress.lease = None;
        record.progress.round += 1;
        record.progress.polled_at_ms = now_ms();
        // Nothing can be delivered without the spec (the targets are in it).
        record.progress.deliveries.give_up_all();
        record.updated_at_ms = now_ms();
        self.store.update(&record).await?;
        Ok(Polled::Moved { state: record.state, next: None })
    }
}

/// The build's spec, unsealed.
async fn open_spec(sealer: &dyn Sealer, record: &BuildRecord) -> Result<BuildSpec, OpenError> {
    let plaintext = sealer.open(&record.sealed_spec, record.source_id).await?;
    // serde's message may quote a value (a secret): name only where it failed.
    serde_json::from_slice(&plaintext).map_err(|e| {
        OpenError::Refused(format!("the build spec does not parse ({:?} at line {}, column {})", e.classify(), e.line(), e.column()))
    })
}

/// One build during one poll, with the lease held.
struct Build<'a> {
    poller: &'a Poller,
    /// The build as last saved: this poll's one record, which the relay reads and only
    /// [`Build::save`] replaces.
    record: Arc<BuildRecord>,
    owner: String,
    spec: BuildSpec,
    relay: &'a Relay<'a>,
    /// When the steps must be done, for the hand-over to make the invocation's deadline.
    work_end: Instant,
}

impl Build<'_> {
    fn job(&self) -> String {
        self.record.app_key.clone()
    }

    /// Moves the build through as many steps as it can take now.
    async fn advance(&mut self) -> Result<Next, StepError> {
        loop {
            let next = match self.record.state {
                BuildState::Accepted | BuildState::Pending if self.record.progress.queue_item.is_none() => self.prepare().await?,
                // Triggered: `queued` once the item is seen waiting in Jenkins' queue.
                BuildState::Pending | BuildState::Queued => self.watch_queue().await?,
                BuildState::Building => self.tail().await?,
                _ => Next::Done,
            };
            match next {
                Next::Continue if !self.record.state.is_terminal() => continue,
                Next::Continue => return Ok(Next::Done),
                other => return Ok(other),
            }
        }
    }

    /// Ends the poll: a finished build keeps no lease; another is handed to the next poll.
    async fn hand_over(&mut self, next: Next) -> Result<Polled, StepError> {
        self.save(|r| {
            r.progress.lease = None;
            r.progress.round += 1;
            r.progress.polled_at_ms = now_ms();
        })
        .await?;
        // Judged on the record as saved: an unfinished build is polled again, and a finished
        // one while a target still has something coming.
        let state = self.record.state;
        let deliveries = &self.record.progress.deliveries;
        let delay = match next {
            Next::Wait(delay) if !state.is_terminal() => Some(delay),
            _ if self.record.needs_polling() => {
                let at = deliveries.next_attempt_ms().unwrap_or(0);
                Some(Duration::from_millis(at.saturating_sub(now_ms())).min(MAX_QUEUE_DELAY))
            }
            _ => None,
        };
        if let Some(delay) = delay {
            let message = PollMessage { source_id: self.record.source_id, round: self.record.progress.round };
            if let Err(error) = self.poller.queue.enqueue(&message, delay).await {
                // The round is saved: a retry of this message would be dropped as late. The
                // schedule re-drives the build once its last poll is stale.
                tracing::error!(build = %self.record.source_id, %error, "could not enqueue the next poll; the schedule will re-drive the build");
            }
        }
        Ok(Polled::Moved { state, next: delay })
    }

    /// Writes `change` applied to the latest record. A concurrent write (a stop being recorded)
    /// is read back and the change applied again; a lease taken over by another poll ends the poll.
    async fn save(&mut self, change: impl Fn(&mut BuildRecord)) -> Result<(), StepError> {
        let mut current = BuildRecord::clone(&self.record);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let mut next = current.clone();
            change(&mut next);
            self.relay.positions(&mut next.progress.deliveries);
            next.updated_at_ms = now_ms();
            match self.poller.store.update(&next).await {
                Ok(stored) => {
                    self.record = Arc::new(stored);
                    self.relay.publish(Arc::clone(&self.record));
                    return Ok(());
                }
                Err(StoreError::Conflict) => {
                    current = self.poller.store.get(self.record.source_id).await?.ok_or(PollError::Vanished)?;
                    if current.progress.lease.as_ref().is_none_or(|l| l.owner != self.owner) {
                        return Err(StepError::LostLease);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(PollError::Contended.into())
    }

    /// Moves the build on to `state` when the state machine allows it.
    async fn move_to(&mut self, state: BuildState) -> Result<(), StepError> {
        self.save(|r| {
            r.move_to(state);
        })
        .await
    }

    /// Ends the build before Jenkins ran anything: the reason goes into its log too.
    async fn fail_early(&mut self, reason: String) -> Result<Next, StepError> {
        let reason = redact(&reason);
        let line = Bytes::from(format!("[build shuttle] {reason}\n"));
        let mut sink = ArchiveSink::new(self.poller.sources.as_ref(), self.relay, self.record.source_id, self.record.progress.archive_len);
        sink.append(line).await?;
        let end = sink.finish().await?;
        self.save(|r| r.progress.archive_len = r.progress.archive_len.max(end)).await?;
        self.end(None, &reason).await
    }

    /// Ends the build: by Jenkins' `result` when there is one, else by the recorded intent
    /// (`otherwise` being the failure when nothing was recorded). The intent is read from the
    /// record as written, so a stop recorded meanwhile is never lost.
    async fn end(&mut self, result: Option<JenkinsResult>, otherwise: &str) -> Result<Next, StepError> {
        // A v2 build's terminal status carries its whole log's digest: no byte is added after.
        let digest = match self.record.kind {
            ApiKind::V2 => Some(self.archive_digest().await?),
            ApiKind::Legacy => None,
        };
        self.save(|r| {
            if !r.state.is_terminal() {
                r.progress.log_sha256.clone_from(&digest);
            }
            let state = match &result {
                Some(result) => result.terminal_state(r.stop),
                None => match r.stop {
                    Some(StopIntent::Stop) => BuildState::Stopped,
                    Some(StopIntent::Timeout) => BuildState::TimedOut,
                    None => BuildState::Failed,
                },
            };
            if r.move_to(state) && state == BuildState::Failed {
                r.failure = Some(match &result {
                    Some(result) => format!("Jenkins ended the build: {result:?}"),
                    None => otherwise.to_owned(),
                });
            }
        })
        .await?;
        Ok(Next::Done)
    }

    /// The SHA-256 of the archived log, its saved `archive_len` bytes, read back chunk by chunk.
    async fn archive_digest(&self) -> Result<String, StepError> {
        use sha2::Digest;
        let (id, len) = (self.record.source_id, self.record.progress.archive_len);
        let mut hasher = sha2::Sha256::new();
        let mut at = 0;
        while at < len {
            let want = (len - at).min(ARCHIVE_CHUNK_BYTES as u64);
            let chunk = self.poller.sources.read_log_range(id, at, want).await?;
            if chunk.is_empty() {
                return Err(ServiceError::new("log archive", format!("the archive of {id} ends at {at} of its {len} bytes")).into());
            }
            let take = chunk.len().min(usize::try_from(want).unwrap_or(usize::MAX));
            hasher.update(&chunk[..take]);
            at += take as u64;
        }
        Ok(crate::access::hex(&hasher.finalize()))
    }

    /// The terminal state of a build that ended without a Jenkins result, by the recorded intent.
    async fn end_by_intent(&mut self, otherwise: &str) -> Result<Next, StepError> {
        self.end(None, otherwise).await
    }
}

fn as_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
