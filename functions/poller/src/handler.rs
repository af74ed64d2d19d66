//! One invocation: an SQS batch of poll messages, handled concurrently, answered with the
//! partial batch failures; or a scheduled event, answered by re-driving stale builds.

use futures_util::future::join_all;
use lambda_runtime::Error;
use serde_json::{json, Value};
use shuttle_core::poll::{Polled, Poller};
use shuttle_core::ports::PollMessage;

pub async fn handle(poller: &Poller, event: Value) -> Result<Value, Error> {
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        return Ok(handle_batch(poller, records).await);
    }
    if event.get("source").and_then(Value::as_str) == Some("aws.events") {
        let redriven = poller.redrive(poller.shuttle.settings.poller.stale_after).await?;
        tracing::info!(requeued = redriven.requeued.len(), failed = redriven.failed.len(), "scheduled re-drive");
        return Ok(json!({"requeued": redriven.requeued.len(), "failed": redriven.failed.len()}));
    }
    Err("the poller handles SQS batches and scheduled events; this event is neither".into())
}

/// `{"batchItemFailures": [...]}`: the messages SQS should deliver again.
async fn handle_batch(poller: &Poller, records: &[Value]) -> Value {
    let outcomes = join_all(records.iter().map(|record| handle_record(poller, record))).await;
    let failures: Vec<Value> = outcomes.into_iter().flatten().map(|id| json!({"itemIdentifier": id})).collect();
    json!({"batchItemFailures": failures})
}

/// The message id when the message must come back.
async fn handle_record(poller: &Poller, record: &Value) -> Option<String> {
    let message_id = record.get("messageId").and_then(Value::as_str).unwrap_or_default().to_owned();
    let body = record.get("body").and_then(Value::as_str).unwrap_or_default();
    let message: PollMessage = match serde_json::from_str(body) {
        Ok(message) => message,
        Err(error) => {
            // A message that can never be handled must not come back again and again.
            tracing::error!(%message_id, %error, "not a poll message: moving it to the dead-letter queue");
            return match poller.shuttle.queue.dead_letter(body).await {
                Ok(()) => None,
                Err(error) => {
                    tracing::error!(%message_id, %error, "could not move the message to the dead-letter queue; SQS will after its retries");
                    Some(message_id)
                }
            };
        }
    };
    match poller.poll(&message).await {
        Ok(Polled::Moved { state, next }) => {
            tracing::info!(build = %message.source_id, state = state.as_str(), next_poll_ms = next.map(|d| d.as_millis() as u64), "polled");
            None
        }
        Ok(Polled::Dropped(why)) => {
            tracing::info!(build = %message.source_id, round = message.round, why, "poll message dropped");
            None
        }
        Err(error) => {
            tracing::warn!(build = %message.source_id, %error, "poll failed; the message will be retried");
            Some(message_id)
        }
    }
}

#[cfg(test)]
mod tests;
