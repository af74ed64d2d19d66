//! Delivering a build's webhooks during one poll (SPEC §5): every status change to every status
//! target, in order, and the log to every log target from the offset that target acknowledged.
//!
//! Each target has its own loop, so a slow, failing or dead target holds back nobody else. The
//! poll feeds the relay as it goes ([`Relay::publish`] after every write of the build,
//! [`Relay::add_log`] as log text is archived) and closes it before the handler returns: no new
//! delivery starts then, and what is in flight gets [`Relay::grace`] to finish. The positions
//! the loops reached are saved with the build ([`Relay::positions`]); what is left is resumed by
//! the next poll.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::join_all;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::delivery::{verdict, LogTarget, RetryPolicy, SigningSecret, StatusTarget, Verdict};
use crate::ports::{Answer, KafkaClient, KafkaMessage, SendError, SourceStore, WebhookClient};
use crate::record::{now_ms, BuildRecord, Deliveries, Delivery, Notice};
use crate::redact::redact;
use crate::request::BuildSpec;
use crate::state::Audience;
use crate::webhook::WebhookTarget;

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
/// The most log bytes one Kafka log message carries: a longer line goes in pieces
/// ([`complete_lines`]). Well under the 1,000,000 bytes a producer and a broker take by default
/// even in the legacy envelope, whose JSON escapes can make a byte six (`\u0000`), and under
/// [`READ_BYTES`], so every read of the log either holds a whole line or fills a piece: a
/// Kafka target never waits on a line that no read can complete.
const KAFKA_LINE_MAX_BYTES: usize = 128 * 1024;
// A read of the log fills a piece, and a piece's legacy envelope fits the default limit.
const _: () = assert!((KAFKA_LINE_MAX_BYTES as u64) < READ_BYTES && 6 * KAFKA_LINE_MAX_BYTES + 1024 < 1_000_000);
/// The most the relay keeps of the log archived during the poll: the chunks some target has not
/// read yet, and no more than this (issue 7: a build's memory is bounded whatever its log). Only
/// a burst the targets have not been sent yet comes near it; a target further behind reads the
/// archive back from S3.
const FEED_MAX_BYTES: usize = 8 * 1024 * 1024;

/// `X-Build-Metadata` is the metadata percent-encoded: controls, non-ASCII and separators.
const HEADER_VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%').add(b',').add(b';').add(b'\\');

/// What the poll tells the relay, and where the targets are.
struct Shared {
    record: BuildRecord,
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
        record: &BuildRecord,
        grace: Duration,
    ) -> Self {
        let (changed, _) = watch::channel(0);
        let status_targets = spec.status_targets();
        let log_targets = spec.log_targets(kafka_topic);
        let mut record = record.clone();
        let deliveries = &mut record.progress.deliveries;
        if deliveries.status.len() != status_targets.len() || deliveries.logs.len() != log_targets.len() {
            // Positions that do not match the targets (a build stored before they were kept) start over.
            let fresh = spec.deliveries(kafka_topic);
            (deliveries.status, deliveries.logs) = (fresh.status, fresh.logs);
        }
        let cursors = deliveries.logs.iter().map(|t| if t.closed { u64::MAX } else { t.done }).collect();
        Self {
            webhooks,
            sources,
            signing,
            status_targets,
            log_targets,
            grace,
            shared: Mutex::new(Shared {
                archived: record.progress.archive_len,
                record,
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

    /// The build as just written: new status events, the archive's length, whether it ended.
    /// The targets' positions stay the relay's own.
    pub fn publish(&self, record: &BuildRecord) {
        {
            let mut shared = self.lock();
            let positions = (shared.record.progress.deliveries.status.clone(), shared.record.progress.deliveries.logs.clone());
            shared.record = record.clone();
            (shared.record.progress.deliveries.status, shared.record.progress.deliveries.logs) = positions;
            shared.archived = shared.archived.max(record.progress.archive_len);
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
        let ours = &shared.record.progress.deliveries;
        into.status.clone_from(&ours.status);
        into.logs.clone_from(&ours.logs);
    }

    /// Whether a target could be sent something now (or is sending).
    pub fn busy(&self) -> bool {
        let shared = self.lock();
        let record = &shared.record;
        record.progress.deliveries.due(now_ms(), record.state, shared.archived)
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
        change(&mut self.lock().record.progress.deliveries.status[index]);
        self.notify();
    }

    fn update_log(&self, index: usize, change: impl FnOnce(&mut Delivery)) {
        {
            let mut shared = self.lock();
            let target = &mut shared.record.progress.deliveries.logs[index];
            change(target);
            let cursor = if target.closed { u64::MAX } else { target.done };
            shared.cursors[index] = cursor;
            shared.trim_feed();
        }
        self.notify();
    }

    /// Tells status target `index` every event it has not been told, in order.
    async fn status_loop(&self, index: usize) {
        let mut changes = self.changed.subscribe();
        changes.mark_changed();
        let target = &self.status_targets[index];
        loop {
            let next = {
                let shared = self.lock();
                let deliveries = &shared.record.progress.deliveries;
                let Some(position) = deliveries.status.get(index).copied() else { return };
                let notice = deliveries.events_for(&position).get(position.done as usize).copied();
                (position, notice, shared.record.clone())
            };
            let (position, Some(notice), record) = next else {
                if self.wait(&mut changes, None).await {
                    continue;
                }
                return;
            };
            if position.closed {
                return;
            }
            match self.next_step(&mut changes, position.retry_at_ms).await {
                Step::Attempt => {}
                Step::LookAgain => continue,
                Step::Stop => return,
            }
            let sent = tokio::select! {
                sent = self.send_status(target, &record, notice) => sent,
                () = self.cut_off() => return,
            };
            let callback = matches!(target, StatusTarget::Callback { .. });
            let policy = if callback { RetryPolicy::LEGACY } else { RetryPolicy::V2 };
            // A legacy callback's bound runs from the build's creation: `callback_auth` expires.
            let since = if callback { record.created_at_ms } else { position.failing_since_ms };
            let outcome = judge(sent, position, policy, since);
            match &outcome {
                Outcome::Delivered => {}
                Outcome::Retry(problem, _) => {
                    tracing::info!(build = %record.source_id, target = %target_name(target), %problem, "status webhook failed; will retry")
                }
                Outcome::GiveUp(problem) => {
                    tracing::warn!(build = %record.source_id, target = %target_name(target), %problem, "status webhook given up")
                }
                Outcome::Refused(problem) => {
                    tracing::warn!(build = %record.source_id, target = %target_name(target), %problem, "status target refused by the SSRF guard; it is told nothing more")
                }
            }
            self.update_status(index, |t| match outcome {
                Outcome::Delivered | Outcome::GiveUp(_) => *t = Delivery { done: t.done + 1, callback: t.callback, ..Delivery::default() },
                Outcome::Retry(_, delay) => *t = retried(*t, delay),
                Outcome::Refused(_) => t.closed = true,
            });
        }
    }

    async fn send_status(&self, target: &StatusTarget, record: &BuildRecord, notice: Notice) -> Result<Answer, SendError> {
        let audience = match target {
            StatusTarget::Callback { .. } => Audience::LegacyCallback,
            StatusTarget::Webhook(_) => Audience::V2Webhook,
        };
        let body = Bytes::from(serde_json::to_vec(&record.status_body(notice.event, audience)).expect("a status body serialises"));
        let id = notice.webhook_id(record.source_id);
        match target {
            StatusTarget::Webhook(WebhookTarget::Kafka { brokers, topic }) => {
                let message = KafkaMessage { key: record.metadata.clone(), payload: body, headers: vec![("webhook-id".to_owned(), id)] };
                self.webhooks
                    .kafka
                    .produce(brokers, topic, vec![message])
                    .await
                    .map(|()| Answer { status: 200, retry_after: None })
                    .map_err(|(_, e)| e)
            }
            StatusTarget::Webhook(WebhookTarget::Http { url }) => self.webhooks.http.post_json(url, self.signature(&id, &body), body).await,
            StatusTarget::Callback { url, auth } => {
                let mut headers = self.signature(&id, &body);
                if let Some(auth) = auth {
                    headers.push(("Authorization".to_owned(), auth.clone()));
                }
                self.webhooks.http.post_json(url, headers, body).await
            }
        }
    }

    /// Standard Webhooks headers, when a signing secret is configured.
    fn signature(&self, id: &str, body: &[u8]) -> Vec<(String, String)> {
        let Some(secret) = self.signing else { return Vec::new() };
        let timestamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        vec![
            ("webhook-id".to_owned(), id.to_owned()),
            ("webhook-timestamp".to_owned(), timestamp.to_string()),
            ("webhook-signature".to_owned(), secret.sign(id, timestamp, body)),
        ]
    }

    /// Sends log target `index` the log from the offset it acknowledged, as it grows.
    async fn log_loop(&self, index: usize) {
        let mut changes = self.changed.subscribe();
        changes.mark_changed();
        loop {
            let (position, end, finished) = {
                let shared = self.lock();
                let Some(position) = shared.record.progress.deliveries.logs.get(index).copied() else { return };
                (position, shared.archived, shared.record.state.is_terminal())
            };
            if position.closed {
                return;
            }
            if position.done >= end && !finished {
                if self.wait(&mut changes, None).await {
                    continue;
                }
                return;
            }
            match self.next_step(&mut changes, position.retry_at_ms).await {
                Step::Attempt => {}
                Step::LookAgain => continue,
                Step::Stop => return,
            }
            let source_id = self.lock().record.source_id;
            let target = &self.log_targets[index];
            if finished && position.done >= end && matches!(target, LogTarget::Webhook(WebhookTarget::Http { .. })) {
                // The whole log is acknowledged: nothing to stream.
                self.update_log(index, |t| t.closed = true);
                return;
            }
            let sent = tokio::select! {
                sent = self.send_log(index, position.done, &mut changes) => sent,
                () = self.cut_off() => return,
            };
            let (reached, result) = sent;
            let outcome = match result {
                Ok(LogSent::Waiting) => {
                    if self.wait(&mut changes, None).await {
                        continue;
                    }
                    return;
                }
                Ok(LogSent::Finished) => {
                    self.update_log(index, |t| *t = Delivery { done: reached, closed: true, ..Delivery::default() });
                    return;
                }
                Ok(LogSent::Delivered) => Outcome::Delivered,
                Err(refused) => judge(refused.attempt(), position, RetryPolicy::V2, position.failing_since_ms),
            };
            match &outcome {
                Outcome::Delivered => {}
                Outcome::Retry(problem, _) => {
                    tracing::info!(build = %source_id, target = %log_target_name(target), %problem, "log delivery failed; will resend from byte {reached}")
                }
                Outcome::GiveUp(problem) => {
                    tracing::warn!(build = %source_id, target = %log_target_name(target), %problem, "log delivery given up")
                }
                Outcome::Refused(problem) => {
                    tracing::warn!(build = %source_id, target = %log_target_name(target), %problem, "log target refused by the SSRF guard; given up")
                }
            }
            self.update_log(index, |t| match outcome {
                Outcome::Delivered => *t = Delivery { done: reached, ..Delivery::default() },
                Outcome::Retry(_, delay) => *t = Delivery { done: reached.max(t.done), ..retried(*t, delay) },
                Outcome::GiveUp(_) | Outcome::Refused(_) => *t = Delivery { done: reached.max(t.done), closed: true, ..*t },
            });
        }
    }

    /// The archived log from `from` for log target `index`, at most [`READ_BYTES`]: from the
    /// feed when it holds it ([`feed_range`]), else read back from the archive.
    /// Empty when there is nothing past `from` yet. The feed before `from` is no longer kept for
    /// this target.
    async fn log_from(&self, index: usize, from: u64) -> Result<Bytes, SendError> {
        let (end, slice) = {
            let mut shared = self.lock();
            shared.cursors[index] = from;
            shared.trim_feed();
            let end = shared.archived;
            let feed_start = shared.feed.front().map_or(u64::MAX, |(offset, _)| *offset);
            let feed_end = shared.feed.back().map_or(0, |(offset, chunk)| offset + chunk.len() as u64);
            let stop = feed_end.min(end).min(from.saturating_add(READ_BYTES));
            let slice = (from >= feed_start && from < stop).then(|| feed_range(&shared.feed, from, stop));
            (end, slice)
        };
        if let Some(slice) = slice {
            return Ok(slice);
        }
        if from >= end {
            return Ok(Bytes::new());
        }
        // A whole read, even past where the feed starts: stopping there could leave a line cut
        // in two, which a Kafka target holds back and waits on.
        let source_id = self.lock().record.source_id;
        self.sources
            .read_log_range(source_id, from, (end - from).min(READ_BYTES))
            .await
            .map_err(|e| SendError::new(format!("could not read the log archive: {e}")))
    }

    /// One delivery of the log from `from`: a stream (HTTP) or a run of lines (Kafka). Returns
    /// how far the target has acknowledged, and whether it is done with the whole log.
    async fn send_log(&self, index: usize, from: u64, changes: &mut watch::Receiver<u64>) -> (u64, Result<LogSent, Refused>) {
        match &self.log_targets[index] {
            LogTarget::Webhook(WebhookTarget::Http { url }) => self.stream_log(index, url, from, changes).await,
            LogTarget::Webhook(WebhookTarget::Kafka { brokers, topic }) => self.produce_lines(index, brokers, topic, None, from).await,
            LogTarget::LegacyKafka { brokers, topic, key } => self.produce_lines(index, brokers, topic, Some(key), from).await,
        }
    }

    /// One chunked `POST` of the log from `from`, held open while the log grows, until the
    /// relay closes or the build's whole log is sent.
    async fn stream_log(&self, index: usize, url: &str, from: u64, changes: &mut watch::Receiver<u64>) -> (u64, Result<LogSent, Refused>) {
        let metadata = self.lock().record.metadata.clone();
        let headers = vec![
            ("X-Build-Metadata".to_owned(), utf8_percent_encode(&metadata, HEADER_VALUE).to_string()),
            ("X-Log-Offset".to_owned(), from.to_string()),
        ];
        let stream = self.webhooks.http.stream(url, headers);
        let mut sent = from;
        let whole = loop {
            let text = match self.log_from(index, sent).await {
                Ok(text) => text,
                Err(problem) => return (from, Err(problem.into())),
            };
            if text.is_empty() {
                let (end, finished) = {
                    let shared = self.lock();
                    (shared.archived, shared.record.state.is_terminal())
                };
                if finished && sent >= end {
                    break true;
                }
                if !self.wait(changes, None).await {
                    break false;
                }
                continue;
            }
            for start in (0..text.len()).step_by(FRAME_BYTES) {
                let frame = text.slice(start..text.len().min(start + FRAME_BYTES));
                if stream.body.send(frame).await.is_err() {
                    // The request ended early: its answer says why.
                    let problem = match stream.answer.await {
                        Ok(Ok(answer)) => Ok(answer),
                        Ok(Err(problem)) => Err(problem),
                        Err(_) => Err(SendError::new("the stream ended without an answer".to_owned())),
                    };
                    return (from, Err(Refused::from_attempt(problem)));
                }
            }
            sent += text.len() as u64;
        };
        drop(stream.body);
        let answer = match stream.answer.await {
            Ok(answer) => answer,
            Err(_) => Err(SendError::new("the stream ended without an answer".to_owned())),
        };
        match answer {
            Ok(answer) if (200..300).contains(&answer.status) => (sent, Ok(if whole { LogSent::Finished } else { LogSent::Delivered })),
            other => (from, Err(Refused::from_attempt(other))),
        }
    }

    /// The complete lines from `from` (the last one too, once the build's log is whole), one
    /// message each and a line too long for one in pieces ([`complete_lines`]), their delivery
    /// reports awaited. `legacy`: the key of SPEC §3's envelope.
    async fn produce_lines(
        &self,
        index: usize,
        brokers: &[String],
        topic: &str,
        legacy: Option<&String>,
        from: u64,
    ) -> (u64, Result<LogSent, Refused>) {
        let text = match self.log_from(index, from).await {
            Ok(text) => text,
            Err(problem) => return (from, Err(problem.into())),
        };
        let (end, finished, metadata, number) = {
            let shared = self.lock();
            let record = &shared.record;
            (shared.archived, record.state.is_terminal(), record.metadata.clone(), record.number)
        };
        let whole = finished && from + text.len() as u64 >= end;
        let (lines, offset) = complete_lines(&text, from, whole, KAFKA_LINE_MAX_BYTES);
        let mut messages: Vec<KafkaMessage> = lines
            .iter()
            .map(|(offset, line)| match legacy {
                None => KafkaMessage {
                    key: metadata.clone(),
                    payload: Bytes::copy_from_slice(line.strip_suffix(b"\n").unwrap_or(line)),
                    headers: vec![("log-offset".to_owned(), offset.to_string())],
                },
                Some(key) => legacy_message(key, number, line),
            })
            .collect();
        if whole {
            if let Some(key) = legacy {
                messages.push(legacy_message(key, number, b"Build finished"));
            }
        }
        if messages.is_empty() {
            return (from, Ok(if whole { LogSent::Finished } else { LogSent::Waiting }));
        }
        let ends: Vec<u64> = lines.iter().map(|(offset, line)| offset + line.len() as u64).collect();
        tracing::debug!(from, lines = messages.len(), "producing log lines");
        match self.webhooks.kafka.produce(brokers, topic, messages).await {
            Ok(()) if whole => (offset, Ok(LogSent::Finished)),
            Ok(()) => (offset, Ok(LogSent::Delivered)),
            Err((delivered, problem)) => {
                (delivered.checked_sub(1).and_then(|i| ends.get(i).copied()).unwrap_or(from).max(from), Err(problem.into()))
            }
        }
    }
}

/// The messages of `text` (log bytes from offset `from`), each with its offset: its complete
/// lines, and the last one too when `whole` (the build's log is complete). A line longer than
/// `max_bytes` ([`KAFKA_LINE_MAX_BYTES`]; its newline not counted) goes in pieces of at most
/// that many bytes, the newline with the last piece: a line with no newline within a read would
/// otherwise be held back for good, and a broker refuses a message past its size limit. Each
/// piece has its own offset, so a consumer tells the pieces of a line by offsets that follow on
/// with no newline between. Also the offset reached: a partial last line of at most `max_bytes`
/// is held back until it is complete.
///
/// Where a line is cut depends only on the line, not on how its bytes arrived, so a retry sends
/// the same messages.
fn complete_lines(text: &[u8], from: u64, whole: bool, max_bytes: usize) -> (Vec<(u64, &[u8])>, u64) {
    let max_bytes = max_bytes.max(1);
    let mut lines = Vec::new();
    let mut offset = from;
    let mut rest = text;
    while !rest.is_empty() {
        // The limit and the newline that may end the line there.
        let window = &rest[..rest.len().min(max_bytes + 1)];
        let length = match window.iter().position(|b| *b == b'\n') {
            Some(newline) => newline + 1,
            None if window.len() > max_bytes => without_cut_char(&window[..max_bytes]),
            None if whole => rest.len(),
            None => break,
        };
        let (line, after) = rest.split_at(length);
        lines.push((offset, line));
        offset += length as u64;
        rest = after;
    }
    (lines, offset)
}

/// The length of `piece` without the UTF-8 character its end cuts in two, if any, so that the
/// pieces of a long line split no character (the legacy envelope would make each half U+FFFD).
/// All of `piece` when its end cuts no character, when that character is all it holds, or when
/// the text is not UTF-8 before its end.
fn without_cut_char(piece: &[u8]) -> usize {
    match std::str::from_utf8(piece) {
        // `error_len() == None`: the text ends inside a character that is valid so far.
        Err(cut) if cut.error_len().is_none() && cut.valid_up_to() > 0 => cut.valid_up_to(),
        _ => piece.len(),
    }
}

/// What a target's loop does next.
enum Step {
    Attempt,
    LookAgain,
    Stop,
}

/// Why a log delivery did not go through: the receiver's answer (not a 2xx), or no answer.
enum Refused {
    Answer(Answer),
    NoAnswer(SendError),
}

impl From<SendError> for Refused {
    fn from(problem: SendError) -> Self {
        Self::NoAnswer(problem)
    }
}

impl Refused {
    fn from_attempt(attempt: Result<Answer, SendError>) -> Self {
        attempt.map_or_else(Self::NoAnswer, Self::Answer)
    }

    /// The attempt, to be judged as a status delivery's is.
    fn attempt(self) -> Result<Answer, SendError> {
        match self {
            Self::Answer(answer) => Ok(answer),
            Self::NoAnswer(problem) => Err(problem),
        }
    }
}

/// What a log delivery achieved.
enum LogSent {
    /// Delivered up to where it reached; more may come.
    Delivered,
    /// Nothing to send yet (a line not complete).
    Waiting,
    /// The build is finished and the target has its whole log.
    Finished,
}

enum Outcome {
    Delivered,
    /// Try again after the delay.
    Retry(String, Duration),
    GiveUp(String),
    /// The SSRF guard refused the target's address (SPEC §7): nothing more goes to it.
    Refused(String),
}

/// The outcome of an attempt for a target at `position`, under `policy`, failing since `since`.
fn judge(sent: Result<Answer, SendError>, position: Delivery, policy: RetryPolicy, since: u64) -> Outcome {
    let answer = match sent {
        Ok(answer) => answer,
        Err(problem) if problem.refused => return Outcome::Refused(problem.message),
        Err(problem) => return retry_or_give_up(problem.message, position, policy, since, None),
    };
    match verdict(answer.status, answer.retry_after.as_deref(), SystemTime::now()) {
        Verdict::Delivered => Outcome::Delivered,
        Verdict::Final { status } => Outcome::GiveUp(format!("answered {status}, which is final")),
        Verdict::Retry { after } => retry_or_give_up(format!("answered {}", answer.status), position, policy, since, after),
    }
}

fn retry_or_give_up(problem: String, position: Delivery, policy: RetryPolicy, since: u64, after: Option<Duration>) -> Outcome {
    let now = now_ms();
    let since = if since == 0 { now } else { since };
    match policy.next_delay(position.attempts + 1, Duration::from_millis(now.saturating_sub(since)), after, jitter()) {
        Some(delay) => Outcome::Retry(problem, delay),
        None => Outcome::GiveUp(format!("{problem}; {} attempts", position.attempts + 1)),
    }
}

/// The position after one more failed attempt, to be tried again after `delay`.
fn retried(position: Delivery, delay: Duration) -> Delivery {
    let now = now_ms();
    Delivery {
        attempts: position.attempts + 1,
        failing_since_ms: if position.failing_since_ms == 0 { now } else { position.failing_since_ms },
        retry_at_ms: now + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        ..position
    }
}

/// A number in `[0, 1)` that differs between pollers and attempts.
fn jitter() -> f64 {
    (Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0
}

/// When a retry time `at_ms` (epoch ms) is still to come, that moment.
fn not_before(at_ms: u64) -> Option<Instant> {
    let now = now_ms();
    (at_ms > now).then(|| Instant::now() + Duration::from_millis(at_ms - now))
}

/// SPEC §3: `{"metadata":"{app}-{space}","build":n,"job":"n","message":"<line>"}`.
fn legacy_message(key: &str, number: Option<u64>, line: &[u8]) -> KafkaMessage {
    #[derive(Serialize)]
    struct Envelope<'a> {
        metadata: &'a str,
        build: Option<u64>,
        job: String,
        message: String,
    }
    // The line's end, `\n` or `\r\n`; a piece of a longer line keeps a `\r` it ends in.
    let line = line.strip_suffix(b"\n").map_or(line, |line| line.strip_suffix(b"\r").unwrap_or(line));
    let envelope = Envelope {
        metadata: key,
        build: number,
        job: number.map(|n| n.to_string()).unwrap_or_default(),
        message: String::from_utf8_lossy(line).into_owned(),
    };
    KafkaMessage {
        key: key.to_owned(),
        payload: Bytes::from(serde_json::to_vec(&envelope).expect("the envelope serialises")),
        headers: Vec::new(),
    }
}

fn target_name(target: &StatusTarget) -> String {
    match target {
        StatusTarget::Webhook(target) => target.redacted(),
        StatusTarget::Callback { url, .. } => redact(url),
    }
}

fn log_target_name(target: &LogTarget) -> String {
    match target {
        LogTarget::Webhook(target) => target.redacted(),
        LogTarget::LegacyKafka { brokers, topic, .. } => redact(&format!("kafka://{}/{topic}", brokers.join(","))),
    }
}

#[cfg(test)]
mod tests;
