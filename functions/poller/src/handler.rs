//! One invocation: an SQS batch of poll messages, handled concurrently, answered with the
//! partial batch failures; or the schedule's event, answered by re-driving stale builds.
//!
//! The events are AWS's own types (`aws_lambda_events`), as the two triggers of the poller in
//! `template.yaml` deliver them: its SQS event source mapping, and its EventBridge Scheduler
//! schedule, whose target `Input` is [`RedriveInput`].

use std::time::SystemTime;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use lambda_runtime::{Context, Error};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use shuttle_core::error::with_causes;
use shuttle_core::poll::{Polled, Poller};
use shuttle_core::ports::PollMessage;
use tokio::time::Instant;

/// What the poller is invoked with.
#[derive(Debug)]
pub enum PollerEvent {
    /// A batch of the poll queue, from the SQS event source mapping.
    Polls(SqsEvent),
    /// The schedule's own payload: the target `Input` of `template.yaml`'s schedule.
    Redrive(RedriveInput),
    /// A scheduled event in EventBridge's shape: a rule's (`aws.events`), or EventBridge
    /// Scheduler's default one (`aws.scheduler`, a target without `Input`). Accepted so that a
    /// schedule declared either way re-drives.
    Scheduled(EventBridgeEvent<Value>),
}

impl PollerEvent {
    /// What the event is, for its span.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Polls(_) => "sqs",
            Self::Redrive(_) => "redrive",
            Self::Scheduled(_) => "schedule",
        }
    }
}

/// The schedule's payload, `{"action": "redrive"}` (`template.yaml`, `Redrive` event, `Input`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveInput {
    pub action: RedriveAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedriveAction {
    Redrive,
}

/// The sources a scheduled EventBridge-shaped event may come from.
const SCHEDULE_SOURCES: [&str; 2] = ["aws.events", "aws.scheduler"];

impl<'de> Deserialize<'de> for PollerEvent {
    /// Tells the three apart by their shape, then reads each as its own type, so that an event
    /// that is none of them is refused with what it lacks.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let event = Value::deserialize(deserializer)?;
        let Some(fields) = event.as_object() else {
            return Err(D::Error::custom("the poller is invoked with a JSON object (an SQS batch or the schedule's payload)"));
        };
        let read = |what: &str, error: serde_json::Error| D::Error::custom(format!("not {what}: {error}"));
        if fields.contains_key("Records") {
            return serde_json::from_value(event).map(Self::Polls).map_err(|e| read("an SQS batch", e));
        }
        if fields.contains_key("action") {
            return serde_json::from_value(event).map(Self::Redrive).map_err(|e| read("the schedule's input", e));
        }
        if fields.contains_key("source") {
            let scheduled: EventBridgeEvent<Value> = serde_json::from_value(event).map_err(|e| read("an EventBridge event", e))?;
            if !SCHEDULE_SOURCES.contains(&scheduled.source.as_str()) || scheduled.detail_type != "Scheduled Event" {
                return Err(D::Error::custom(format!(
                    "an EventBridge event of source '{}' and detail-type '{}' is not a scheduled event (source aws.events or aws.scheduler, detail-type Scheduled Event)",
                    scheduled.source, scheduled.detail_type
                )));
            }
            return Ok(Self::Scheduled(scheduled));
        }
        Err(D::Error::custom(
            "the poller handles SQS batches (Records) and its schedule's input ({\"action\":\"redrive\"}); this event is neither",
        ))
    }
}

/// The poller's answer: the batch's failures, or what the re-drive did.
#[derive(Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PollerAnswer {
    Batch(SqsBatchResponse),
    Redriven { requeued: usize, failed: usize, abandoned: usize },
}

/// The invocation's deadline as an [`Instant`]: the runtime's context gives it in epoch
/// milliseconds. One already past (or a clock behind) leaves no time, never a panic.
pub fn deadline_of(context: &Context) -> Instant {
    let left = context.deadline().duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + left
}

/// Handles one invocation, returning before `deadline`: the invocation's, from the runtime's
/// context (`Lambda-Runtime-Deadline-Ms`). A batch's polls run at once and share it.
#[tracing::instrument(name = "poller", skip_all, fields(event = event.kind()))]
pub async fn handle(poller: &Poller, event: PollerEvent, deadline: Instant) -> Result<PollerAnswer, Error> {
    match event {
        PollerEvent::Polls(batch) => Ok(PollerAnswer::Batch(handle_batch(poller, &batch.records, deadline).await)),
        PollerEvent::Redrive(_) | PollerEvent::Scheduled(_) => {
            let redriven = poller
                .redrive(poller.policy.pacing.stale_after)
                .await
                .inspect_err(|error| tracing::error!(error = %with_causes(error), "scheduled re-drive failed"))?;
            let (requeued, failed, abandoned) = (redriven.requeued.len(), redriven.failed.len(), redriven.abandoned.len());
            tracing::info!(requeued, failed, abandoned, "scheduled re-drive");
            Ok(PollerAnswer::Redriven { requeued, failed, abandoned })
        }
    }
}

/// The messages SQS should deliver again.
async fn handle_batch(poller: &Poller, records: &[SqsMessage], deadline: Instant) -> SqsBatchResponse {
    let outcomes = join_all(records.iter().map(|record| handle_record(poller, record, deadline))).await;
    let mut response = SqsBatchResponse::default();
    for message_id in outcomes.into_iter().flatten() {
        response.add_failure(message_id);
    }
    response
}

/// The message id when the message must come back. One span per message.
#[tracing::instrument(name = "sqs_message", skip_all, fields(message_id = record.message_id.as_deref().unwrap_or_default(), build))]
async fn handle_record(poller: &Poller, record: &SqsMessage, deadline: Instant) -> Option<String> {
    let message_id = record.message_id.clone().unwrap_or_default();
    let body = record.body.as_deref().unwrap_or_default();
    let message: PollMessage = match serde_json::from_str::<PollMessage>(body) {
        Ok(message) => {
            tracing::Span::current().record("build", tracing::field::display(message.source_id));
            message
        }
        Err(error) => {
            // A message that can never be handled must not come back again and again.
            tracing::error!(%message_id, %error, "not a poll message: moving it to the dead-letter queue");
            return match poller.queue.dead_letter(body).await {
                Ok(()) => None,
                Err(error) => {
                    tracing::error!(%message_id, %error, "could not move the message to the dead-letter queue; SQS will after its retries");
                    Some(message_id)
                }
            };
        }
    };
    match poller.poll_until(&message, deadline).await {
        Ok(Polled::Moved { state, next }) => {
            tracing::info!(build = %message.source_id, state = %state, next_poll_ms = next.map(|d| d.as_millis() as u64), "polled");
            None
        }
        Ok(Polled::Dropped(why)) => {
            tracing::info!(build = %message.source_id, round = message.round, why, "poll message dropped");
            None
        }
        Err(error) => {
            tracing::warn!(build = %message.source_id, error = %with_causes(&error), "poll failed; the message will be retried");
            Some(message_id)
        }
    }
}

#[cfg(test)]
mod tests;
