//! The poller's use cases (SPEC §4): one poll of one build, and the scheduled re-drive.
//!
//! A poll takes a lease on the build, moves it as far as it can in one go — sources cached,
//! job ensured, build triggered, queue item watched, log tailed for one window — and hands it
//! to the next poll through the queue until it is finished. SQS may deliver a message twice or
//! to two pollers at once, so every step is a conditional write and every message names the
//! round it was sent for: a message of an older round, or for a build someone else holds, is
//! dropped.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{ServiceError, ShuttleError, StoreError};
use crate::jenkins::{parameters, JenkinsError, JenkinsResult, LogSink, LogWindow, QueueItem};
use crate::ports::{ChunkWrite, FetchError, PollMessage, SourceFetcher, SourceStore};
use crate::record::{now_ms, ApiKind, BuildRecord, Lease};
use crate::redact::redact;
use crate::relay::{Relay, Webhooks};
use crate::request::{Api, BuildSpec};
use crate::source::Source;
use crate::state::{BuildState, StopIntent};
use crate::Shuttle;

/// The largest log archive chunk: large enough to keep S3 requests few, small enough to keep a
/// poller's memory per build bounded whatever the log size (a read larger than a chunk is
/// archived chunk by chunk).
pub const ARCHIVE_CHUNK_BYTES: usize = 1024 * 1024;

/// A build not finished this long after its timeouts is failed by the schedule.
pub const STUCK_MARGIN: Duration = Duration::from_secs(15 * 60);

/// How many stale builds one scheduled run re-drives.
const REDRIVE_BATCH: usize = 100;

const MAX_WRITE_ATTEMPTS: usize = 8;

/// The longest SQS message delay.
const MAX_QUEUE_DELAY: Duration = Duration::from_secs(15 * 60);

/// The least time deliveries in flight get to finish when a poll ends.
const MIN_GRACE: Duration = Duration::from_secs(1);

/// The poller function's timeout (`template.yaml`): no poll outlives it.
pub const POLLER_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Poller {
    pub shuttle: Shuttle,
    pub fetcher: Arc<dyn SourceFetcher>,
    pub webhooks: Webhooks,
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

/// A step could not complete: the poll ends and the message is retried.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("another poll took over the build")]
    LostLease,
    #[error(transparent)]
    Shuttle(#[from] ShuttleError),
}

impl From<StoreError> for StepError {
    fn from(error: StoreError) -> Self {
        Self::Shuttle(error.into())
    }
}

impl From<ServiceError> for StepError {
    fn from(error: ServiceError) -> Self {
        Self::Shuttle(error.into())
    }
}

impl Poller {
    pub fn new(shuttle: Shuttle, fetcher: Arc<dyn SourceFetcher>, webhooks: Webhooks) -> Self {
        Self { shuttle, fetcher, webhooks }
    }

    /// Handles one poll message. An error means the message should be retried.
    pub async fn poll(&self, message: &PollMessage) -> Result<Polled, ShuttleError> {
        let owner = Uuid::new_v4().to_string();
        let Some(record) = self.take_lease(message, &owner).await? else {
            return Ok(Polled::Dropped("duplicate, late, or held by another poll"));
        };
        let settings = &self.shuttle.settings;
        let spec = open_spec(&self.shuttle, &record).await?;
        let grace = settings.poller.interval.max(MIN_GRACE);
        let relay = Relay::new(
            &self.webhooks,
            self.shuttle.sources.as_ref(),
            settings.webhook_signing_secret.as_ref(),
            &spec,
            &settings.kafka_topic,
            &record,
            grace,
        );
        let window_end = Instant::now() + settings.poller.window;
        let mut build = Build { poller: self, record, owner, spec, relay: &relay };
        // The build moves while the relay delivers; a finished build's deliveries get the rest
        // of the window, an unfinished one's an interval (its next poll comes soon).
        let (advanced, ()) = tokio::join!(
            async {
                let advanced = build.advance().await;
                let until = if build.record.state.is_terminal() { window_end } else { Instant::now() + settings.poller.interval };
                relay.settle(until).await;
                relay.close();
                advanced
            },
            relay.run()
        );
        let next = match advanced {
            Ok(next) => next,
            Err(StepError::LostLease) => return Ok(Polled::Dropped("another poll took over the build")),
            Err(StepError::Shuttle(error)) => {
                // Let the message come back; the lease lapses by itself.
                return Err(error);
            }
        };
        build.hand_over(next).await
    }

    /// The lease on the build `message` names, or `None` when the message is not to be handled.
    async fn take_lease(&self, message: &PollMessage, owner: &str) -> Result<Option<BuildRecord>, ShuttleError> {
        let store = &self.shuttle.store;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let Some(record) = store.get(message.source_id).await? else { return Ok(None) };
            let now = now_ms();
            if !record.needs_polling() || record.progress.round != message.round || record.progress.leased_by_other(owner, now) {
                return Ok(None);
            }
            let mut leased = record.clone();
            leased.progress.lease = Some(Lease { owner: owner.to_owned(), until_ms: now + as_ms(self.lease_time()) });
            match store.update(&leased).await {
                Ok(stored) => return Ok(Some(stored)),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ShuttleError::Contended)
    }

    /// Longer than any poll can last: the poller's 90 s timeout ends it first.
    fn lease_time(&self) -> Duration {
        (self.shuttle.settings.poller.window + Duration::from_secs(60)).max(POLLER_TIMEOUT + Duration::from_secs(30))
    }

    /// The scheduled run: builds whose last poll is older than `stale_after` are polled again
    /// (their message was lost or dead-lettered, or their enqueue failed at create), and those
    /// still unfinished long past their timeouts are failed.
    pub async fn redrive(&self, stale_after: Duration) -> Result<Redriven, ShuttleError> {
        let settings = &self.shuttle.settings;
        let now = now_ms();
        let stuck_after = settings.queue_timeout + settings.build_timeout + STUCK_MARGIN;
        let mut done = Redriven::default();
        for record in self.shuttle.store.stale_builds(now.saturating_sub(as_ms(stale_after)), REDRIVE_BATCH).await? {
            if record.progress.leased_by_other("", now) {
                continue;
            }
            let id = record.source_id;
            // A finished build waits here only for its deliveries, which are bounded by themselves.
            if !record.state.is_terminal() && now.saturating_sub(record.created_at_ms) > as_ms(stuck_after) {
                let reason = format!("the build did not finish within {} s; the shuttle gave up on it", stuck_after.as_secs());
                if self.give_up(record, reason).await? {
                    done.failed.push(id);
                }
            } else {
                self.shuttle.queue.enqueue(&PollMessage { source_id: id, round: record.progress.round }, Duration::ZERO).await?;
                done.requeued.push(id);
            }
        }
        Ok(done)
    }

    /// Fails a stuck build (unless someone moved it meanwhile) and stops what Jenkins may still run.
    async fn give_up(&self, record: BuildRecord, reason: String) -> Result<bool, ShuttleError> {
        let mut failed = record.clone();
        failed.move_to(BuildState::Failed);
        failed.failure = Some(reason);
        failed.progress.lease = None;
        failed.progress.round += 1;
        failed.updated_at_ms = now_ms();
        let failed = match self.shuttle.store.update(&failed).await {
            Ok(failed) => failed,
            Err(StoreError::Conflict) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        self.shuttle.halt_in_jenkins(&record).await;
        if failed.needs_polling() {
            // The targets are told by a poll; should this enqueue fail, the schedule comes back.
            let message = PollMessage { source_id: failed.source_id, round: failed.progress.round };
            if let Err(error) = self.shuttle.queue.enqueue(&message, Duration::ZERO).await {
                tracing::warn!(build = %failed.source_id, %error, "could not enqueue the poll that tells the targets");
            }
        }
        Ok(true)
    }
}

/// The build's spec, unsealed.
async fn open_spec(shuttle: &Shuttle, record: &BuildRecord) -> Result<BuildSpec, ShuttleError> {
    let plaintext = shuttle.sealer.open(&record.sealed_spec).await?;
    // serde's message may quote a value (a secret): name only where it failed.
    serde_json::from_slice(&plaintext).map_err(|e| {
        ServiceError::new(
            "build store",
            format!("the sealed build spec does not parse ({:?} at line {}, column {})", e.classify(), e.line(), e.column()),
        )
        .into()
    })
}

/// One build during one poll, with the lease held.
struct Build<'a> {
    poller: &'a Poller,
    record: BuildRecord,
    owner: String,
    spec: BuildSpec,
    relay: &'a Relay<'a>,
}

impl Build<'_> {
    fn shuttle(&self) -> &Shuttle {
        &self.poller.shuttle
    }

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
    async fn hand_over(&mut self, next: Next) -> Result<Polled, ShuttleError> {
        let saved = self
            .save(|r| {
                r.progress.lease = None;
                r.progress.round += 1;
                r.progress.polled_at_ms = now_ms();
            })
            .await;
        match saved {
            Ok(()) => {}
            Err(StepError::LostLease) => return Ok(Polled::Dropped("another poll took over the build")),
            Err(StepError::Shuttle(e)) => return Err(e),
        }
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
            if let Err(error) = self.shuttle().queue.enqueue(&message, delay).await {
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
        let mut current = self.record.clone();
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let mut next = current.clone();
            change(&mut next);
            self.relay.positions(&mut next.progress.deliveries);
            next.updated_at_ms = now_ms();
            match self.shuttle().store.update(&next).await {
                Ok(stored) => {
                    self.relay.publish(&stored);
                    self.record = stored;
                    return Ok(());
                }
                Err(StoreError::Conflict) => {
                    current = self.shuttle().store.get(self.record.source_id).await?.ok_or(ShuttleError::NotFound)?;
                    if current.progress.lease.as_ref().is_none_or(|l| l.owner != self.owner) {
                        return Err(StepError::LostLease);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ShuttleError::Contended.into())
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
        let mut sink =
            ArchiveSink::new(self.shuttle().sources.as_ref(), self.relay, self.record.source_id, self.record.progress.archive_len);
        sink.write(line).await?;
        let end = sink.finish().await?;
        self.save(|r| r.progress.archive_len = r.progress.archive_len.max(end)).await?;
        self.end(None, &reason).await
    }

    /// Ends the build: by Jenkins' `result` when there is one, else by the recorded intent
    /// (`otherwise` being the failure when nothing was recorded). The intent is read from the
    /// record as written, so a stop recorded meanwhile is never lost.
    async fn end(&mut self, result: Option<JenkinsResult>, otherwise: &str) -> Result<Next, StepError> {
        self.save(|r| {
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

    /// The terminal state of a build that ended without a Jenkins result, by the recorded intent.
    async fn end_by_intent(&mut self, otherwise: &str) -> Result<Next, StepError> {
        self.end(None, otherwise).await
    }

    /// `accepted`/`pending`: cache the sources, ensure the job, trigger the build.
    async fn prepare(&mut self) -> Result<Next, StepError> {
        let spec = self.spec.clone();
        if let Some(reason) = spec.rejection.clone() {
            return self.fail_early(reason).await;
        }
        if let Source::Invalid { reason } = &spec.source {
            return self.fail_early(reason.clone()).await;
        }
        // SPEC §7: a v2 create answered 400 for these; a legacy build fails with the reason.
        let refused = spec.refused_hosts(&self.shuttle().settings.allowed_private);
        if !refused.is_empty() {
            return self.fail_early(refused.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")).await;
        }
        for registry in spec.registries() {
            match self.poller.fetcher.check_registry(registry).await {
                Ok(()) => {}
                Err(FetchError::Failed(reason)) => return self.fail_early(reason).await,
                Err(FetchError::Service(error)) => return Err(error.into()),
            }
        }
        if self.record.state == BuildState::Accepted {
            self.move_to(BuildState::Pending).await?;
        }
        if self.record.progress.triggered_at_ms.is_some() {
            // A trigger may have reached Jenkins: find it first, even when stopped meanwhile,
            // so that the queue item is cancelled or the build stopped.
            if let Some(next) = self.recover_trigger().await? {
                return Ok(next);
            }
        }
        if self.record.stop.is_some() {
            // Stopped before it reached Jenkins: it is never triggered.
            return self.end_by_intent("stopped").await;
        }
        let interval = self.shuttle().settings.poller.interval;
        match self.cache_sources(&spec).await {
            Ok(()) => {}
            Err(FetchError::Failed(reason)) => return self.fail_early(format!("the sources could not be cached: {reason}")).await,
            Err(FetchError::Service(error)) => return Err(error.into()),
        }
        let job = self.job();
        if let Err(error) = self.shuttle().jenkins.ensure_job(&job).await {
            return self.jenkins_trouble(error, "could not create the Jenkins job").await;
        }
        // The first attempt starts the `QUEUE_TIMEOUT` clock; retries keep it.
        self.save(|r| r.progress.triggered_at_ms = r.progress.triggered_at_ms.or(Some(now_ms()))).await?;
        if self.record.stop.is_some() {
            return self.end_by_intent("stopped").await;
        }
        let parameters = self.parameters(&spec);
        let queue_id = match self.shuttle().jenkins.trigger(&job, &parameters).await {
            Ok(id) => id,
            Err(error) if error.is_transient() => {
                // It may have reached Jenkins anyway: the next poll looks before triggering again.
                tracing::warn!(build = %self.record.source_id, %error, "trigger failed; retrying");
                return Ok(Next::Wait(interval));
            }
            Err(error) => return self.fail_early(format!("Jenkins refused to start the build: {error}")).await,
        };
        self.save(|r| r.progress.queue_item = Some(queue_id)).await?;
        Ok(Next::Continue)
    }

    /// A previous poll triggered the build but did not record the queue item: find it by its
    /// `BUILD_UUID` instead of triggering it twice. `None`: it never reached Jenkins.
    async fn recover_trigger(&mut self) -> Result<Option<Next>, StepError> {
        let (job, uuid) = (self.job(), self.record.source_id.to_string());
        let jenkins = self.shuttle().jenkins.clone();
        let found = async {
            if let Some(queue_id) = jenkins.find_queued(&job, &uuid).await? {
                return Ok::<_, JenkinsError>(Some((Some(queue_id), None)));
            }
            Ok(jenkins.find_build(&job, &uuid).await?.map(|number| (None, Some(number))))
        };
        match found.await {
            Ok(Some((queue_item, number))) => {
                // Found in the queue listing: it is waiting there.
                let waiting = queue_item.is_some();
                self.save(|r| {
                    r.progress.queue_item = r.progress.queue_item.or(queue_item);
                    if waiting {
                        r.move_to(BuildState::Queued);
                    }
                })
                .await?;
                if let Some(number) = number {
                    self.started(number).await?;
                }
                Ok(Some(Next::Continue))
            }
            Ok(None) => Ok(None),
            Err(JenkinsError::NotFound(_)) => Ok(None),
            Err(error) => self.jenkins_trouble(error, "could not look the build up in Jenkins").await.map(Some),
        }
    }

    /// A Jenkins call failed: transient trouble is retried by the next poll; anything else
    /// fails the build with the reason.
    async fn jenkins_trouble(&mut self, error: JenkinsError, what: &str) -> Result<Next, StepError> {
        if error.is_transient() {
            tracing::warn!(build = %self.record.source_id, %error, "{what}; retrying");
            return Ok(Next::Wait(self.shuttle().settings.poller.interval));
        }
        self.fail_early(format!("{what}: {error}")).await
    }

    async fn cache_sources(&self, spec: &BuildSpec) -> Result<(), FetchError> {
        let id = self.record.source_id;
        let sources = &self.shuttle().sources;
        match &spec.source {
            Source::Http { url } => self.poller.fetcher.fetch(url, id).await,
            Source::Rebuild { source_id } => match sources.copy_source(*source_id, id).await? {
                true => Ok(()),
                false => Err(FetchError::Failed(format!("the build {source_id} to rebuild from has no cached sources"))),
            },
            Source::Inline { .. } => match sources.source_exists(id).await? {
                true => Ok(()),
                false => Err(FetchError::Failed("the inline sources were not stored".to_owned())),
            },
            Source::Docker { .. } | Source::Invalid { .. } => Ok(()),
        }
    }

    /// The job parameters of `infra/jenkins/README.md`.
    fn parameters(&self, spec: &BuildSpec) -> Vec<(String, String)> {
        let settings = &self.shuttle().settings;
        let id = self.record.source_id;
        let mut arguments = settings.extra_build_args.clone();
        arguments.extend(spec.arguments.clone());
        let (destination, latest, push_credentials) = match &spec.api {
            Api::V2 { destination, .. } => (destination.reference(), false, destination.credentials.clone()),
            Api::Legacy(legacy) => {
                let number = self.record.number.map_or_else(|| "@BUILD_NUMBER@".to_owned(), |n| n.to_string());
                let image = format!(
                    "{}/{}/{}:{}.{number}",
                    legacy.registry_host.trim_end_matches('/'),
                    legacy.registry_repo.trim_matches('/'),
                    legacy.job(),
                    settings.image_tag_prefix
                );
                (image, true, legacy.registry_credentials.clone())
            }
        };
        let (sources_url, source_image, source_credentials) = match &spec.source {
            Source::Docker { image } => (String::new(), image.reference(), image.credentials.clone()),
            _ => (settings.sources_link_for_jenkins(id, now_ms()), String::new(), None),
        };
        let (source_user, source_password) = source_credentials.map(|c| (c.username, c.password)).unwrap_or_default();
        let (push_user, push_password) = push_credentials.map(|c| (c.username, c.password)).unwrap_or_default();
        [
            (parameters::BUILD_UUID, id.to_string()),
            (parameters::SOURCES_URL, sources_url),
            (parameters::SOURCE_IMAGE, source_image),
            (parameters::SOURCE_REGISTRY_USER, source_user),
            (parameters::SOURCE_REGISTRY_PASSWORD, source_password),
            (parameters::DESTINATION_IMAGE, destination),
            (parameters::DESTINATION_LATEST, latest.to_string()),
            (parameters::REGISTRY_USER, push_user),
            (parameters::REGISTRY_PASSWORD, push_password),
            (parameters::BUILD_ARGS, serde_json::to_string(&arguments).expect("a map of strings serialises")),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// Triggered (`pending`, then `queued` once seen waiting): wait for an executor, within
    /// `QUEUE_TIMEOUT`.
    async fn watch_queue(&mut self) -> Result<Next, StepError> {
        let settings = self.shuttle().settings.clone();
        let Some(queue_id) = self.record.progress.queue_item else {
            return self.end_by_intent("the build has no Jenkins queue item").await;
        };
        let waited = now_ms().saturating_sub(self.record.progress.triggered_at_ms.unwrap_or(self.record.created_at_ms));
        if self.record.stop.is_none() && waited > as_ms(settings.queue_timeout) {
            self.save(|r| r.stop = r.stop.or(Some(StopIntent::Timeout))).await?;
        }
        if self.record.stop.is_some() {
            if let Err(error) = self.shuttle().jenkins.cancel_queue_item(queue_id).await {
                tracing::warn!(build = %self.record.source_id, %error, "could not cancel the queue item");
            }
        }
        let item = match self.shuttle().jenkins.queue_item(queue_id).await {
            Ok(item) => item,
            Err(error) => return self.jenkins_trouble(error, "could not read the Jenkins queue item").await,
        };
        match item {
            QueueItem::Waiting { .. } => {
                if self.record.state == BuildState::Pending {
                    self.move_to(BuildState::Queued).await?;
                }
                Ok(Next::Wait(settings.poller.interval))
            }
            QueueItem::Started { number } => {
                self.started(number).await?;
                Ok(Next::Continue)
            }
            QueueItem::Cancelled => self.end_by_intent("the build was cancelled in Jenkins' queue").await,
            QueueItem::Forgotten => match self.shuttle().jenkins.find_build(&self.job(), &self.record.source_id.to_string()).await {
                Ok(Some(number)) => {
                    self.started(number).await?;
                    Ok(Next::Continue)
                }
                Ok(None) | Err(JenkinsError::NotFound(_)) => self.end_by_intent("Jenkins no longer knows the build").await,
                Err(error) => self.jenkins_trouble(error, "could not look the build up in Jenkins").await,
            },
        }
    }

    /// The build left the queue as Jenkins build `number`.
    async fn started(&mut self, number: u64) -> Result<(), StepError> {
        let legacy = self.record.kind == ApiKind::Legacy;
        self.save(|r| {
            r.progress.jenkins_number = Some(number);
            r.progress.started_at_ms = r.progress.started_at_ms.or(Some(now_ms()));
            if legacy && r.number.is_none() {
                r.number = Some(number);
            }
            r.move_to(BuildState::Building);
        })
        .await
    }

    /// `building`: archive the log as it grows, for one window, and end with Jenkins' result.
    async fn tail(&mut self) -> Result<Next, StepError> {
        let settings = self.shuttle().settings.clone();
        let Some(number) = self.record.progress.jenkins_number else {
            return self.end_by_intent("the build has no Jenkins build number").await;
        };
        let job = self.job();
        let deadline = Instant::now() + settings.poller.window;
        let mut stop_sent = false;
        loop {
            // Reads start every interval, whatever each took: a line waits half an interval on average.
            let next_read = Instant::now() + settings.poller.interval;
            let started = self.record.progress.started_at_ms.unwrap_or(self.record.created_at_ms);
            if self.record.stop.is_none() && now_ms().saturating_sub(started) > as_ms(settings.build_timeout) {
                self.save(|r| r.stop = r.stop.or(Some(StopIntent::Timeout))).await?;
            }
            if self.record.stop.is_some() && !stop_sent {
                match self.shuttle().jenkins.stop_build(&job, number).await {
                    Ok(()) => stop_sent = true,
                    Err(error) => tracing::warn!(build = %self.record.source_id, %error, "could not stop the build in Jenkins"),
                }
            }
            match self.read_log(&job, number).await {
                Ok(window) if !window.more_data => match self.shuttle().jenkins.build_status(&job, number).await {
                    Ok(status) if !status.building => {
                        if let Some(result) = status.result {
                            // The log may have grown between the read and the status.
                            let last = self.read_log(&job, number).await.map_err(|e| self.jenkins_step_error(e))?;
                            if !last.more_data {
                                return self.end(Some(result), "").await;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(JenkinsError::NotFound(_)) => return self.end_by_intent("the build disappeared from Jenkins").await,
                    Err(error) => tracing::warn!(build = %self.record.source_id, %error, "could not read the build's status"),
                },
                Ok(_) => {}
                Err(JenkinsError::NotFound(_)) => return self.end_by_intent("the build disappeared from Jenkins").await,
                Err(JenkinsError::Sink(error)) => return Err(error.into()),
                Err(error) => tracing::warn!(build = %self.record.source_id, %error, "could not read the build's log"),
            }
            if next_read >= deadline {
                return Ok(Next::Wait(Duration::ZERO));
            }
            tokio::time::sleep_until(next_read).await;
        }
    }

    fn jenkins_step_error(&self, error: JenkinsError) -> StepError {
        match error {
            JenkinsError::Sink(error) => error.into(),
            other => ServiceError::new("jenkins", other).into(),
        }
    }

    /// Reads the log from the Jenkins cursor into the archive, then saves both positions.
    async fn read_log(&mut self, job: &str, number: u64) -> Result<LogWindow, JenkinsError> {
        let progress = self.record.progress.clone();
        let mut sink = ArchiveSink::new(self.shuttle().sources.as_ref(), self.relay, self.record.source_id, progress.archive_len);
        let reading = Instant::now();
        let window = self.shuttle().jenkins.read_log(job, number, progress.log_cursor, &mut sink).await?;
        let end = sink.finish().await?;
        tracing::debug!(build = %self.record.source_id, bytes = end - progress.archive_len, elapsed_ms = reading.elapsed().as_millis() as u64, "log read and archived");
        if sink.skip > 0 {
            // An interrupted poll archived more than Jenkins gave this read (from the same
            // cursor). Its cursor is unknown (Jenkins counts bytes it strips from plain text),
            // so keep both positions: a later read covers those chunks and moves past them.
            return Ok(LogWindow { more_data: true, ..window });
        }
        let cursor = window.next_start;
        if (cursor, end) != (progress.log_cursor, progress.archive_len) {
            self.save(|r| {
                r.progress.log_cursor = cursor;
                r.progress.archive_len = end;
            })
            .await
            .map_err(|e| match e {
                StepError::LostLease => JenkinsError::Sink(ServiceError::new("poller", "another poll took over the build")),
                StepError::Shuttle(e) => JenkinsError::Sink(ServiceError::new("poller", e)),
            })?;
        }
        Ok(window)
    }
}

/// Writes log text to the archive in chunks of at most [`ARCHIVE_CHUNK_BYTES`], at the
/// archive's offsets, and hands each chunk written to the relay (which keeps a bounded part of
/// it): whatever one read of Jenkins yields, a build holds one chunk. A chunk already stored at
/// an offset (by an interrupted poll that read the same bytes) is kept, and only what lies past
/// it is written: no byte is archived twice.
struct ArchiveSink<'a> {
    sources: &'a dyn SourceStore,
    relay: &'a Relay<'a>,
    source_id: Uuid,
    /// The archive's length so far.
    end: u64,
    /// Bytes still to come that an earlier chunk already holds.
    skip: u64,
    buffer: Vec<u8>,
}

impl<'a> ArchiveSink<'a> {
    fn new(sources: &'a dyn SourceStore, relay: &'a Relay<'a>, source_id: Uuid, end: u64) -> Self {
        Self { sources, relay, source_id, end, skip: 0, buffer: Vec::new() }
    }

    async fn flush(&mut self) -> Result<(), ServiceError> {
        let mut bytes = Bytes::from(std::mem::take(&mut self.buffer));
        let skipped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(bytes.len());
        let _ = bytes.split_to(skipped);
        self.skip -= skipped as u64;
        while !bytes.is_empty() {
            match self.sources.put_log_chunk(self.source_id, self.end, bytes.clone()).await? {
                ChunkWrite::Written => {
                    self.relay.add_log(self.end, bytes.clone());
                    self.end += bytes.len() as u64;
                    break;
                }
                ChunkWrite::Exists { len: 0 } => {
                    return Err(ServiceError::new("log archive", format!("an empty chunk is stored at offset {}", self.end)));
                }
                ChunkWrite::Exists { len } => {
                    self.end += len;
                    let covered = usize::try_from(len).unwrap_or(usize::MAX).min(bytes.len());
                    self.skip += len - covered as u64;
                    let _ = bytes.split_to(covered);
                }
            }
        }
        Ok(())
    }

    /// Writes what is buffered; the archive's new length.
    async fn finish(&mut self) -> Result<u64, ServiceError> {
        self.flush().await?;
        Ok(self.end)
    }
}

#[async_trait::async_trait]
impl LogSink for ArchiveSink<'_> {
    async fn write(&mut self, mut chunk: Bytes) -> Result<(), ServiceError> {
        while !chunk.is_empty() {
            let room = ARCHIVE_CHUNK_BYTES - self.buffer.len();
            self.buffer.extend_from_slice(&chunk.split_to(room.min(chunk.len())));
            if self.buffer.len() == ARCHIVE_CHUNK_BYTES {
                self.flush().await?;
            }
        }
        Ok(())
    }
}

impl Shuttle {
    /// Ends what Jenkins runs for `record` — cancels its queue item or stops its build — as far
    /// as it is known. Failures are logged: the poller acts on the recorded intent again.
    pub async fn halt_in_jenkins(&self, record: &BuildRecord) {
        let result = match (record.progress.jenkins_number, record.progress.queue_item) {
            (Some(number), _) => self.jenkins.stop_build(&record.app_key, number).await,
            (None, Some(queue_id)) => self.jenkins.cancel_queue_item(queue_id).await,
            (None, None) => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(build = %record.source_id, %error, "could not stop the build in Jenkins; the poller will try again");
        }
    }
}

fn as_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(all(test, feature = "fakes"))]
mod tests;
