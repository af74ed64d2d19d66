//! The status loop: every status change to a status target, in order, signed where asked.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::delivery::{RetryPolicy, StatusTarget};
use crate::ports::{Answer, KafkaMessage, SendError};
use crate::record::{notices, BuildRecord, Delivery, Notice};
use crate::redact::redact;
use crate::state::Audience;
use crate::webhook::WebhookTarget;

use super::outcome::{judge, retried, Outcome};
use super::{Relay, Step};

impl Relay<'_> {
    /// Tells status target `index` every event it has not been told, in order.
    pub(super) async fn status_loop(&self, index: usize) {
        let mut changes = self.changed.subscribe();
        changes.mark_changed();
        let target = &self.status_targets[index];
        loop {
            let next = {
                let shared = self.lock();
                let Some(position) = shared.status.get(index).copied() else { return };
                let notice = notices(&shared.build.progress.deliveries.events, &position).get(position.done as usize).copied();
                (position, notice, Arc::clone(&shared.build))
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
                let message =
                    KafkaMessage { key: record.metadata.as_str().into(), payload: body, headers: vec![("webhook-id".to_owned(), id)] };
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
}

fn target_name(target: &StatusTarget) -> String {
    match target {
        StatusTarget::Webhook(target) => target.redacted(),
        StatusTarget::Callback { url, .. } => redact(url),
    }
}
