//! The poller's two triggers, played as AWS plays them: the SQS event source mapping of the
//! poll queue and the EventBridge schedule, both invoking the very handler the Lambda runs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shuttle_core::poll::Poller;

use crate::mapping::{run_sqs_mapping, MappingOptions};
use crate::schedule::run_schedule;

/// The schedule of the template (`rate(1 minute)`).
pub const SCHEDULE_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct PollerTriggers {
    pub mapping: MappingOptions,
    pub schedule_every: Duration,
}

impl Default for PollerTriggers {
    fn default() -> Self {
        Self { mapping: MappingOptions::default(), schedule_every: SCHEDULE_EVERY }
    }
}

/// Runs the poller on `queue_url` and on its schedule until the future is dropped.
pub async fn run_poller(poller: Arc<Poller>, sqs: aws_sdk_sqs::Client, queue_url: String, triggers: PollerTriggers) {
    let invoke = move |event: Value| {
        let poller = poller.clone();
        async move { poller::handler::handle(&poller, event).await.map_err(|error| error.to_string()) }
    };
    let scheduled = invoke.clone();
    tokio::join!(run_sqs_mapping(sqs, queue_url, triggers.mapping, invoke), run_schedule(triggers.schedule_every, scheduled));
}
