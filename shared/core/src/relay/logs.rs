//! The log loop: the log to a log target from the offset it acknowledged, by HTTP or Kafka.

use bytes::Bytes;
use tokio::sync::watch;

use crate::delivery::{LogTarget, RetryPolicy};
use crate::ports::SendError;
use crate::record::Delivery;
use crate::redact::redact;
use crate::webhook::WebhookTarget;

use super::outcome::{judge, retried, Outcome, Undelivered};
use super::{feed_range, Relay, Step, READ_BYTES};

impl Relay<'_> {
    /// Sends log target `index` the log from the offset it acknowledged, as it grows.
    pub(super) async fn log_loop(&self, index: usize) {
        let mut changes = self.changed.subscribe();
        changes.mark_changed();
        loop {
            let (position, end, finished) = {
                let shared = self.lock();
                let Some(position) = shared.logs.get(index).copied() else { return };
                (position, shared.archived, shared.build.state.is_terminal())
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
            let source_id = self.lock().build.source_id;
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
    pub(super) async fn log_from(&self, index: usize, from: u64) -> Result<Bytes, SendError> {
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
        let source_id = self.lock().build.source_id;
        self.sources
            .read_log_range(source_id, from, (end - from).min(READ_BYTES))
            .await
            .map_err(|e| SendError::new(format!("could not read the log archive: {e}")))
    }

    /// One delivery of the log from `from`: a stream (HTTP) or a run of lines (Kafka). Returns
    /// how far the target has acknowledged, and whether it is done with the whole log.
    async fn send_log(&self, index: usize, from: u64, changes: &mut watch::Receiver<u64>) -> (u64, Result<LogSent, Undelivered>) {
        match &self.log_targets[index] {
            LogTarget::Webhook(WebhookTarget::Http { url }) => self.stream_log(index, url, from, changes).await,
            LogTarget::Webhook(WebhookTarget::Kafka { brokers, topic }) => self.produce_lines(index, brokers, topic, None, from).await,
            LogTarget::LegacyKafka { brokers, topic, key } => self.produce_lines(index, brokers, topic, Some(key), from).await,
        }
    }
}

/// What a log delivery achieved.
pub(super) enum LogSent {
    /// Delivered up to where it reached; more may come.
    Delivered,
    /// Nothing to send yet (a line not complete).
    Waiting,
    /// The build is finished and the target has its whole log.
    Finished,
}

fn log_target_name(target: &LogTarget) -> String {
    match target {
        LogTarget::Webhook(target) => target.redacted(),
        LogTarget::LegacyKafka { brokers, topic, .. } => redact(&format!("kafka://{}/{topic}", brokers.join(","))),
    }
}
