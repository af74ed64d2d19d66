//! The poller's two triggers, played as AWS plays them: the SQS event source mapping of the
//! poll queue and the EventBridge Scheduler schedule, both invoking the very handler the Lambda runs.

use std::sync::Arc;
use std::time::Duration;

use poller::handler::PollerEvent;
use serde_json::Value;
use shuttle_core::poll::Poller;
use tokio::time::Instant;

use crate::invocation::within;
use crate::mapping::{run_sqs_mapping, MappingOptions};
use crate::schedule::run_schedule;
use crate::template::{poller_schedule, TEMPLATE};

#[derive(Clone, Debug, Default)]
pub struct PollerTriggers {
    pub mapping: MappingOptions,
    /// The schedule's period; `None` takes the template's.
    pub schedule_every: Option<Duration>,
}

/// Runs the poller on `queue_url` and on its schedule until the future is dropped.
pub async fn run_poller(poller: Arc<Poller>, sqs: aws_sdk_sqs::Client, queue_url: String, triggers: PollerTriggers) {
    let invoke = move |event: Value, deadline: Instant| {
        let poller = poller.clone();
        async move { invoke_poller(&poller, event, deadline).await }
    };
    // A scheduled invocation has the function's timeout too.
    let timeout = triggers.mapping.function_timeout;
    let on_schedule = invoke.clone();
    let scheduled = move |event: Value| on_schedule(event, Instant::now() + timeout);
    let schedule = poller_schedule(TEMPLATE).expect("template.yaml declares the poller's schedule (the gateway's tests check it)");
    let every = triggers.schedule_every.unwrap_or(schedule.every);
    tokio::join!(run_sqs_mapping(sqs, queue_url, triggers.mapping, invoke), run_schedule(schedule.name, every, schedule.input, scheduled));
}

/// Invokes the poller's handler with `event` as the Lambda runtime does: the JSON read as the
/// handler's event type (an event it cannot read fails the invocation), the invocation's
/// deadline given, the answer written back.
pub async fn invoke_poller(poller: &Poller, event: Value, deadline: Instant) -> Result<Value, String> {
    let event: PollerEvent = serde_json::from_value(event).map_err(|error| format!("the poller cannot read the event: {error}"))?;
    let answer = within("poller", poller::handler::handle(poller, event, deadline)).await.map_err(|error| error.to_string())?;
    serde_json::to_value(answer).map_err(|error| error.to_string())
}
