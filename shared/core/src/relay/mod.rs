//! Delivering a build's webhooks during one poll (SPEC §5): every status change to every status
//! target, in order, and the log to every log target from the offset that target acknowledged.
//!
//! Each target has its own loop, so a slow, failing or dead target holds back nobody else. The
//! poll feeds the relay as it goes ([`Relay::publish`] after every write of the build,
//! [`Relay::add_log`] as log text is archived) and closes it before the handler returns: no new
//! delivery starts then, and what is in flight gets [`Relay::grace`] to finish.
//!
//! The poll owns the build record; the relay reads the one it last saved (shared, never copied
//! or changed here) and owns only its targets' positions, which the poll saves with the build
//! ([`Relay::positions`]); what is left is resumed by the next poll.
//!
//! Beside this file, one concern a file: `status` (the status loop and its signed deliveries),
//! `status_body` (the status body, which the status endpoints answer too),
//! `logs` (the log loop), `http_log` (a log stream over HTTP), `kafka_log` (log lines to Kafka,
//! the legacy envelope), `outcome` (judging an attempt: delivered, retried or given up).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::delivery::{LogTarget, SigningSecret, StatusTarget};
use crate::ports::{KafkaClient, SourceStore, WebhookClient};
use crate::record::{now_ms, BuildRecord, Deliveries, Delivery};
use crate::request::BuildSpec;

mod http_log;
mod kafka_log;
mod logs;
mod outcome;
mod status;
mod status_body;

pub use status_body::{LogDigest, StatusBody, StatusId};

/// Bytes `from..stop` of the feed, which holds them: a part of one chunk as it is, or, across a
/// chunk's end (where a line may be cut), a copy.
fn feed_range(feed: &VecDeque<(u64, Bytes)>, from: u64, stop: u64) -> Bytes {
    let mut parts = feed.iter().filter(|(offset, chunk)| *offset < stop && offset + chunk.len() as u64 > from).map(|(offset, chunk)| {
        let start = usize::try_from(from.saturating_sub(*offset)).unwrap_or(usize::MAX).min(chunk.len());
        let end = usize::try_from(stop - offset).unwrap_or(usize::MAX).min(chunk.len());
        chunk.slice(start..end)
    });
    let first = parts.next().unwrap_or_default();
    match parts.next() {
        None => first,
        Some(second) => {
            let mut joined = Vec::with_capacity(usize::try_from(stop - from).unwrap_or(0));
            for part in [first, second].into_iter().chain(parts) {
                joined.extend_from_slice(&part);
            }
            Bytes::from(joined)
        }
    }
}

/// The senders: HTTP and Kafka.
#[derive(Clone)]
pub struct Webhooks {
    pub http: Arc<dyn WebhookClient>,
    pub kafka: Arc<dyn KafkaClient>,
}

/// The largest body frame of a log stream, and the most log one read from the archive yields.
const FRAME_BYTES: usize = 64 * 1024;

const READ_BYTES: u64 = 1024 * 1024;

/// The most the relay keeps of the log archived during the poll: the chunks some target has not
/// read yet, and no more than this (issue 7: a build's memory is bounded whatever its log). Only
/// a burst the targets have not been sent yet comes near it; a target further behind reads the
/// archive back from S3.
const FEED_MAX_BYTES: usize = 8 * 1024 * 1024;

/// What the poll tells the relay, and where the targets are.
struct Shared {
    /// The build as the poll last saved it: its status events, state and metadata. The poll's
    /// own record, shared: read here, never changed.
    build: Arc<BuildRecord>,
    /// Where each status target and each log target is: the relay's own during the poll.
    status: Vec<Delivery>,
    logs: Vec<Delivery>,
    /// Chunks of log archived during this poll, contiguous, at their archive offsets: those some
    /// log target has yet to read, within [`FEED_MAX_BYTES`].
    feed: VecDeque<(u64, Bytes)>,
    feed_bytes: usize,
    /// How far the log is archived: the build's saved `archive_len`, or further once this poll
    /// archives more. A chunk in the archive is never rewritten (a later poll that reads the same
    /// bytes keeps it), so what lies before this is sent without waiting for the build's save; a
    /// target's position is saved with the build, after the archive's length, as before.
    archived: u64,
    /// Where each log target reads next (`u64::MAX` once it is done): the feed before the
    /// smallest is dropped.
    cursors: Vec<u64>,
    closing: bool,
}

impl Shared {
    fn trim_feed(&mut self) {
        let needed_from = self.cursors.iter().copied().min().unwrap_or(u64::MAX);
        while let Some((offset, chunk)) = self.feed.front() {
            if offset + chunk.len() as u64 > needed_from && self.feed_bytes <= FEED_MAX_BYTES {
                break;
            }
            self.feed_bytes -= chunk.len();
            self.feed.pop_front();
        }
    }
}

pub struct Relay<'a> {
    webhooks: &'a Webhooks,
    sources: &'a dyn SourceStore,
    signing: Option<&'a SigningSecret>,
    status_targets: Vec<StatusTarget>,
    log_targets: Vec<LogTarget>,
    grace: Duration,
    shared: Mutex<Shared>,
    changed: watch::Sender<u64>,
}

impl<'a> Relay<'a> {
    pub fn new(
        webhooks: &'a Webhooks,
        sources: &'a dyn SourceStore,
        signing: Option<&'a SigningSecret>,
        spec: &BuildSpec,
        kafka_topic: &str,
        build: Arc<BuildRecord>,
        grace: Duration,
    ) -> Self {
        let (changed, _) = watch::channel(0);
        let status_targets = spec.status_targets();
        let log_targets = spec.log_targets(kafka_topic);
        let saved = &build.progress.deliveries;
        let (status, logs) = if saved.status.len() == status_targets.len() && saved.logs.len() == log_targets.len() {
            (saved.status.clone(), saved.logs.clone())
        } else {
            // Positions that do not match the targets (a build stored before they were kept) start over.
            let fresh = spec.deliveries(kafka_topic);
            (fresh.status, fresh.logs)
        };
        let cursors = logs.iter().map(|t| if t.closed { u64::MAX } else { t.done }).collect();
        Self {
            webhooks,
            sources,
            signing,
            status_targets,
            log_targets,
            grace,
            shared: Mutex::new(Shared {
                archived: build.progress.archive_len,
                build,
                status,
                logs,
                feed: VecDeque::new(),
                feed_bytes: 0,
                cursors,
                closing: false,
            }),
            changed,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// The build as just saved: new status events, the archive's length, whether it ended.
    /// The positions saved in it are the relay's own, as they were at the save.
    pub fn publish(&self, build: Arc<BuildRecord>) {
        {
            let mut shared = self.lock();
            shared.archived = shared.archived.max(build.progress.archive_len);
            shared.build = build;
        }
        self.notify();
    }

    /// A chunk of log just archived at `offset` (kept as it is, not copied): the log targets
    /// may be sent it now.
    pub fn add_log(&self, offset: u64, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        {
            let mut shared = self.lock();
            if shared.feed.back().is_some_and(|(at, last)| at + last.len() as u64 != offset) {
                shared.feed.clear();
                shared.feed_bytes = 0;
            }
            shared.archived = shared.archived.max(offset + chunk.len() as u64);
            shared.feed_bytes += chunk.len();
            shared.feed.push_back((offset, chunk));
            shared.trim_feed();
        }
        self.notify();
    }

    /// The targets' positions, to be saved with the build.
    pub fn positions(&self, into: &mut Deliveries) {
        let shared = self.lock();
        into.status.clone_from(&shared.status);
        into.logs.clone_from(&shared.logs);
    }

    /// Whether a target could be sent something now (or is sending): a status target with
    /// events not yet told, a log target once the archive is past its offset or the build is
    /// over (its end to tell); not one waiting out a retry.
    pub fn busy(&self) -> bool {
        let shared = self.lock();
        let (events, finished) = (&shared.build.progress.deliveries.events, shared.build.state.is_terminal());
        let status = shared.status.iter().filter(|t| t.has_news(events));
        let logs = shared.logs.iter().filter(|t| !t.closed && (t.done < shared.archived || finished));
        let now = now_ms();
        status.chain(logs).any(|t| t.retry_at_ms <= now)
    }

    /// Waits until no target has anything to send now, or `deadline`.
    pub async fn settle(&self, deadline: Instant) {
        let mut changes = self.changed.subscribe();
        while self.busy() && Instant::now() < deadline {
            let _ = tokio::time::timeout_at(deadline.min(Instant::now() + Duration::from_millis(100)), changes.changed()).await;
        }
    }

    /// No delivery starts from now on; those in flight get the grace period.
    pub fn close(&self) {
        self.lock().closing = true;
        self.notify();
    }

    /// Runs every target's loop until the relay is closed and each has stopped.
    pub async fn run(&self) {
        let status = (0..self.status_targets.len()).map(|i| self.status_loop(i));
        let logs = (0..self.log_targets.len()).map(|i| self.log_loop(i));
        let (_, _) = tokio::join!(join_all(status), join_all(logs));
    }

    /// Resolves `grace` after the relay was closed: work still in flight then is abandoned (and
    /// resumed by the next poll; a delivery cut short counts as not delivered).
    async fn cut_off(&self) {
        let mut changes = self.changed.subscribe();
        while !self.lock().closing {
            if changes.changed().await.is_err() {
                break;
            }
        }
        tokio::time::sleep(self.grace).await;
    }

    /// Waits for a change, until `until` at most; false once the relay is closed.
    async fn wait(&self, changes: &mut watch::Receiver<u64>, until: Option<Instant>) -> bool {
        if self.lock().closing {
            return false;
        }
        match until {
            Some(until) => {
                let _ = tokio::time::timeout_at(until, changes.changed()).await;
            }
            None => {
                let _ = changes.changed().await;
            }
        }
        !self.lock().closing
    }

    /// Whether a target's attempt may start now: not before its retry time (a change ends that
    /// wait early, to look again), and not once the relay is closed.
    async fn next_step(&self, changes: &mut watch::Receiver<u64>, retry_at_ms: u64) -> Step {
        if let Some(until) = not_before(retry_at_ms) {
            return if self.wait(changes, Some(until)).await { Step::LookAgain } else { Step::Stop };
        }
        if self.lock().closing {
            Step::Stop
        } else {
            Step::Attempt
        }
    }

    fn update_status(&self, index: usize, change: impl FnOnce(&mut Delivery)) {
        change(&mut self.lock().status[index]);
        self.notify();
    }

    fn update_log(&self, index: usize, change: impl FnOnce(&mut Delivery)) {
        {
            let mut shared = self.lock();
            let target = &mut shared.logs[index];
            change(target);
            let cursor = if target.closed { u64::MAX } else { target.done };
            shared.cursors[index] = cursor;
            shared.trim_feed();
        }
        self.notify();
    }
}

/// What a target's loop does next.
enum Step {
    Attempt,
    LookAgain,
    Stop,
}

/// When a retry time `at_ms` (epoch ms) is still to come, that moment.
fn not_before(at_ms: u64) -> Option<Instant> {
    let now = now_ms();
    (at_ms > now).then(|| Instant::now() + Duration::from_millis(at_ms - now))
}

#[cfg(test)]
mod tests;
