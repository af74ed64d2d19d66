//! The steps of a poll: `accepted`/`pending` → sources cached, job ensured, build triggered;
//! `pending`/`queued` → the queue item watched; `building` → the log tailed for one window.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::ServiceError;
use crate::jenkins::{JenkinsError, LogWindow, QueueItem};
use crate::ports::FetchError;
use crate::record::{now_ms, ApiKind};
use crate::request::BuildSpec;
use crate::source::Source;
use crate::state::{BuildState, StopIntent};

use super::{as_ms, ArchiveSink, Build, Next, StepError};
use crate::redact::redact;

/// The most of Jenkins' queue reason kept with a build.
const MAX_QUEUE_WHY_CHARS: usize = 256;

/// `text`'s first `max` characters.
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

impl Build<'_> {
    /// `accepted`/`pending`: cache the sources, ensure the job, trigger the build.
    pub(super) async fn prepare(&mut self) -> Result<Next, StepError> {
        let spec = self.spec.clone();
        if let Some(reason) = spec.rejection.clone() {
            return self.fail_early(reason).await;
        }
        if let Source::Invalid { reason } = &spec.source {
            return self.fail_early(reason.clone()).await;
        }
        // SPEC §7: a v2 create answered 400 for these; a legacy build fails with the reason.
        let refused = spec.refused_hosts(&self.poller.policy.allowed_private);
        if !refused.is_empty() {
            return self.fail_early(refused.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")).await;
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
        let interval = self.poller.policy.pacing.interval;
        match self.cache_sources(&spec).await {
            Ok(()) => {}
            Err(FetchError::Failed(reason)) => return self.fail_early(format!("the sources could not be cached: {reason}")).await,
            Err(FetchError::Service(error)) => return Err(error.into()),
        }
        // Checked last, just before Jenkins is handed them.
        for registry in spec.registries() {
            match self.poller.fetcher.check_registry(registry).await {
                Ok(()) => {}
                Err(FetchError::Failed(reason)) => return self.fail_early(reason).await,
                Err(FetchError::Service(error)) => return Err(error.into()),
            }
        }
        let job = self.job();
        if let Err(error) = self.poller.jenkins.ensure_job(&job).await {
            return self.jenkins_trouble(error, "could not create the Jenkins job").await;
        }
        // The first attempt starts the `QUEUE_TIMEOUT` clock; retries keep it.
        self.save(|r| r.progress.triggered_at_ms = r.progress.triggered_at_ms.or(Some(now_ms()))).await?;
        if self.record.stop.is_some() {
            return self.end_by_intent("stopped").await;
        }
        let signer = self.poller.policy.sources_signer.get().await?;
        let parameters = self.parameters(&spec, signer.as_ref().as_ref());
        let queue_id = match self.poller.jenkins.trigger(&job, &parameters).await {
            Ok(id) => id,
            Err(error) if self.retries(&error) => {
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
        let jenkins = self.poller.jenkins.clone();
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
        if self.retries(&error) {
            tracing::warn!(build = %self.record.source_id, %error, "{what}; retrying");
            return Ok(Next::Wait(self.poller.policy.pacing.interval));
        }
        self.fail_early(format!("{what}: {error}")).await
    }

    /// Whether a failed Jenkins call is left to the next poll: transient trouble always; Jenkins
    /// refusing the shuttle's credentials (401, 403: a token being rotated, a permission being
    /// granted) until `QUEUE_TIMEOUT` after the build was triggered (or created), logged as an
    /// error each time, since every build being prepared waits on it.
    fn retries(&self, error: &JenkinsError) -> bool {
        match error {
            JenkinsError::Unavailable(_) => true,
            JenkinsError::Rejected(_) => {
                let since = self.record.progress.triggered_at_ms.unwrap_or(self.record.created_at_ms);
                let within = now_ms().saturating_sub(since) <= as_ms(self.poller.policy.queue_timeout);
                tracing::error!(build = %self.record.source_id, %error, retrying = within, "Jenkins refused the shuttle's credentials (JENKINS_USER, JENKINS_TOKEN, its permissions)");
                within
            }
            _ => false,
        }
    }

    async fn cache_sources(&self, spec: &BuildSpec) -> Result<(), FetchError> {
        let id = self.record.source_id;
        let sources = &self.poller.sources;
        match &spec.source {
            // An earlier poll may have cached them before its time ran out.
            Source::Http { url } => match sources.source_exists(id).await? {
                true => Ok(()),
                false => self.poller.fetcher.fetch(url, id).await,
            },
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

    /// Triggered (`pending`, then `queued` once seen waiting): wait for an executor, within
    /// `QUEUE_TIMEOUT`.
    pub(super) async fn watch_queue(&mut self) -> Result<Next, StepError> {
        let policy = &self.poller.policy;
        let Some(queue_id) = self.record.progress.queue_item else {
            return self.end_by_intent("the build has no Jenkins queue item").await;
        };
        let waited = now_ms().saturating_sub(self.record.progress.triggered_at_ms.unwrap_or(self.record.created_at_ms));
        if self.record.stop.is_none() && waited > as_ms(policy.queue_timeout) {
            self.save(|r| r.stop = r.stop.or(Some(StopIntent::Timeout))).await?;
        }
        if self.record.stop.is_some() {
            if let Err(error) = self.poller.jenkins.cancel_queue_item(queue_id).await {
                tracing::warn!(build = %self.record.source_id, %error, "could not cancel the queue item");
            }
        }
        let item = match self.poller.jenkins.queue_item(queue_id).await {
            Ok(item) => item,
            Err(error) => return self.jenkins_trouble(error, "could not read the Jenkins queue item").await,
        };
        match item {
            QueueItem::Waiting { why } => {
                // Jenkins' reason, as the status endpoint shows it: redacted, cut, saved when it changes.
                let why = why.map(|why| cut(&redact(why.trim()), MAX_QUEUE_WHY_CHARS)).filter(|why| !why.is_empty());
                if self.record.state == BuildState::Pending || self.record.progress.queue_why != why {
                    self.save(|r| {
                        r.move_to(BuildState::Queued);
                        if r.state == BuildState::Queued {
                            r.progress.queue_why.clone_from(&why);
                        }
                    })
                    .await?;
                }
                Ok(Next::Wait(policy.pacing.interval))
            }
            QueueItem::Started { number } => {
                self.started(number).await?;
                Ok(Next::Continue)
            }
            QueueItem::Cancelled => self.end_by_intent("the build was cancelled in Jenkins' queue").await,
            QueueItem::Forgotten => match self.poller.jenkins.find_build(&self.job(), &self.record.source_id.to_string()).await {
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
    pub(super) async fn tail(&mut self) -> Result<Next, StepError> {
        let policy = &self.poller.policy;
        let Some(number) = self.record.progress.jenkins_number else {
            return self.end_by_intent("the build has no Jenkins build number").await;
        };
        let job = self.job();
        let deadline = (Instant::now() + policy.pacing.window).min(self.work_end);
        let mut stop_sent = false;
        loop {
            // Reads start every interval, whatever each took: a line waits half an interval on average.
            let next_read = Instant::now() + policy.pacing.interval;
            let started = self.record.progress.started_at_ms.unwrap_or(self.record.created_at_ms);
            if self.record.stop.is_none() && now_ms().saturating_sub(started) > as_ms(policy.build_timeout) {
                self.save(|r| r.stop = r.stop.or(Some(StopIntent::Timeout))).await?;
            }
            if self.record.stop.is_some() && !stop_sent {
                match self.poller.jenkins.stop_build(&job, number).await {
                    Ok(()) => stop_sent = true,
                    Err(error) => tracing::warn!(build = %self.record.source_id, %error, "could not stop the build in Jenkins"),
                }
            }
            match self.read_log(&job, number).await? {
                Ok(window) if !window.more_data => match self.poller.jenkins.build_status(&job, number).await {
                    Ok(status) if !status.building => {
                        if let Some(result) = status.result {
                            // The log may have grown between the read and the status.
                            let last = self.read_log(&job, number).await?.map_err(|e| ServiceError::new("jenkins", e))?;
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
                Err(error) => tracing::warn!(build = %self.record.source_id, %error, "could not read the build's log"),
            }
            if next_read >= deadline {
                return Ok(Next::Wait(Duration::ZERO));
            }
            tokio::time::sleep_until(next_read).await;
        }
    }

    /// Reads the log from the Jenkins cursor into the archive, then saves both positions. The
    /// outer error is the poll's own (the archive, the store, a lost lease: the poll ends); the
    /// inner one is Jenkins' answer, for the caller to judge.
    async fn read_log(&mut self, job: &str, number: u64) -> Result<Result<LogWindow, JenkinsError>, StepError> {
        let progress = self.record.progress.clone();
        let mut sink = ArchiveSink::new(self.poller.sources.as_ref(), self.relay, self.record.source_id, progress.archive_len);
        let reading = Instant::now();
        let read = self.poller.jenkins.read_log(job, number, progress.log_cursor, &mut sink).await;
        if let Some(error) = sink.failure.take() {
            return Err(error.into());
        }
        let window = match read {
            Ok(window) => window,
            Err(error) => return Ok(Err(error)),
        };
        let end = sink.finish().await?;
        tracing::debug!(build = %self.record.source_id, bytes = end - progress.archive_len, elapsed_ms = reading.elapsed().as_millis() as u64, "log read and archived");
        if sink.skip > 0 {
            // An interrupted poll archived more than Jenkins gave this read (from the same
            // cursor). Its cursor is unknown (Jenkins counts bytes it strips from plain text),
            // so keep both positions: a later read covers those chunks and moves past them.
            return Ok(Ok(LogWindow { more_data: true, ..window }));
        }
        let cursor = window.next_start;
        if (cursor, end) != (progress.log_cursor, progress.archive_len) {
            self.save(|r| {
                r.progress.log_cursor = cursor;
                r.progress.archive_len = end;
            })
            .await?;
        }
        Ok(Ok(window))
    }
}
