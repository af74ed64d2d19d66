//! The SQS event source mapping of the poller, played locally the way Lambda plays it: long-polls
//! the queue, invokes the function with the SQS event AWS sends, and honours the answer as Lambda
//! does with `ReportBatchItemFailures` — the messages reported in `batchItemFailures` stay in the
//! queue (they come back after the visibility timeout, and the queue's redrive policy moves them
//! to the dead-letter queue after `maxReceiveCount`), every other message of the batch is deleted.
//! A function error, a timeout or an answer that is not a valid batch response deletes none.
//! Message delays are SQS's own business: a delayed message is simply not received before its time.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use serde_json::Value;
use shuttle_core::poll::POLLER_TIMEOUT;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

/// How long one `ReceiveMessage` waits for messages: short, so that Ctrl-C and tests end fast.
const WAIT_TIME_SECONDS: i32 = 1;
/// The most messages one `ReceiveMessage` or `DeleteMessageBatch` takes.
const SQS_MAX_BATCH: usize = 10;
/// The backoff after an SQS error (the emulator restarting, say): doubled up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Attempts of one `DeleteMessageBatch`; a message not deleted comes back after its visibility timeout.
const DELETE_ATTEMPTS: u32 = 3;

/// The settings of the mapping, as the template would declare them.
#[derive(Clone, Debug)]
pub struct MappingOptions {
    /// Messages per invocation, 1 to 10 (one `ReceiveMessage` returns at most 10). Default 10.
    pub batch_size: usize,
    /// Invocations in flight at once, like the mapping's maximum concurrency. Default 4.
    pub max_concurrency: usize,
    /// The function's timeout: the invocation's deadline is handed to the function (as the
    /// runtime's `Lambda-Runtime-Deadline-Ms`), and one still running then fails as a whole, as
    /// in Lambda. Default: the poller's 90 s.
    pub function_timeout: Duration,
}

impl Default for MappingOptions {
    fn default() -> Self {
        Self { batch_size: SQS_MAX_BATCH, max_concurrency: 4, function_timeout: POLLER_TIMEOUT }
    }
}

/// The queue as the SQS event names it: `eventSourceARN` and `awsRegion`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueIdentity {
    /// `arn:aws:sqs:<region>:<account>:<queue name>`
    pub arn: String,
    pub region: String,
}

impl QueueIdentity {
    /// Reads the region out of a queue ARN; `None` when it is not an SQS queue ARN.
    pub fn from_arn(arn: &str) -> Option<Self> {
        match arn.split(':').collect::<Vec<_>>()[..] {
            ["arn", _partition, "sqs", region, _account, name] if !region.is_empty() && !name.is_empty() => {
                Some(Self { arn: arn.to_owned(), region: region.to_owned() })
            }
            _ => None,
        }
    }
}

/// A message to delete: its id (for logs) and its receipt handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub receipt_handle: String,
}

/// Plays the SQS event source mapping for `queue_url` until the returned future is dropped
/// (which also abandons the invocations in flight: their messages come back after the
/// visibility timeout, as after a crash). SQS errors are logged and retried; nothing here ends
/// the loop or panics.
pub async fn run_sqs_mapping<F, Fut>(sqs: aws_sdk_sqs::Client, queue_url: String, options: MappingOptions, invoke: F)
where
    F: Fn(Value, Instant) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    let invoke = Arc::new(invoke);
    let batch_size = i32::try_from(options.batch_size.clamp(1, SQS_MAX_BATCH)).unwrap_or(10);
    let permits = Arc::new(Semaphore::new(options.max_concurrency.max(1)));
    let queue = Arc::new(queue_identity(&sqs, &queue_url).await);
    tracing::info!(queue = %queue.arn, batch_size, max_concurrency = options.max_concurrency.max(1), "SQS event source mapping started");
    let mut in_flight = JoinSet::new();
    let mut backoff = Backoff::default();
    loop {
        reap(&mut in_flight);
        // The semaphore is never closed, so this always yields a permit.
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let started = Instant::now();
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(batch_size)
            .wait_time_seconds(WAIT_TIME_SECONDS)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match received {
            Ok(output) => {
                backoff.reset();
                output.messages.unwrap_or_default()
            }
            Err(error) => {
                drop(permit);
                let pause = backoff.next_pause();
                tracing::warn!(queue = %queue.arn, error = %DisplayErrorContext(&error), retry_in_ms = pause.as_millis() as u64, "could not receive from the poll queue");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        if messages.is_empty() {
            drop(permit);
            // An emulator that answers at once instead of waiting must not make this spin.
            let waited = started.elapsed();
            if waited < Duration::from_millis(200) {
                tokio::time::sleep(Duration::from_millis(200) - waited).await;
            }
            continue;
        }
        let span = tracing::info_span!("sqs_batch", queue = %queue.arn, messages = messages.len());
        let batch = Batch { sqs: sqs.clone(), queue_url: queue_url.clone(), queue: queue.clone(), messages };
        in_flight.spawn(batch.invoke(invoke.clone(), options.function_timeout, permit).instrument(span));
    }
}

/// Collects the finished invocations, reporting one that panicked (its messages stay in the queue).
fn reap(in_flight: &mut JoinSet<()>) {
    while let Some(finished) = in_flight.try_join_next() {
        if let Err(error) = finished {
            if error.is_panic() {
                tracing::error!("the function panicked: every message of its batch stays in the queue");
            }
        }
    }
}

/// Asks SQS for the queue's ARN, retrying until the emulator answers.
async fn queue_identity(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> QueueIdentity {
    let mut backoff = Backoff::default();
    loop {
        let answer = sqs.get_queue_attributes().queue_url(queue_url).attribute_names(QueueAttributeName::QueueArn).send().await;
        let why = match answer {
            Ok(output) => match output.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn)) {
                Some(arn) => match QueueIdentity::from_arn(arn) {
                    Some(identity) => return identity,
                    None => format!("'{arn}' is not an SQS queue ARN"),
                },
                None => "GetQueueAttributes returned no QueueArn".to_owned(),
            },
            Err(error) => DisplayErrorContext(&error).to_string(),
        };
        let pause = backoff.next_pause();
        tracing::warn!(queue_url, error = %why, retry_in_ms = pause.as_millis() as u64, "could not read the poll queue's ARN");
        tokio::time::sleep(pause).await;
    }
}

/// One received batch: one invocation of the function.
struct Batch {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue: Arc<QueueIdentity>,
    messages: Vec<Message>,
}

impl Batch {
    async fn invoke<F, Fut>(self, invoke: Arc<F>, limit: Duration, permit: OwnedSemaphorePermit)
    where
        F: Fn(Value, Instant) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, String>> + Send + 'static,
    {
        let event = sqs_event(&self.messages, &self.queue);
        let started = Instant::now();
        let deadline = started + limit;
        let result = tokio::time::timeout_at(deadline, (*invoke)(event, deadline))
            .await
            .unwrap_or_else(|_| Err(format!("Task timed out after {:.2} seconds", limit.as_secs_f64())));
        let elapsed_ms = started.elapsed().as_millis() as u64;
        drop(permit);
        let to_delete = match &result {
            Err(error) => {
                tracing::warn!(%error, elapsed_ms, "the function failed: every message of the batch stays in the queue");
                return;
            }
            Ok(response) => match messages_to_delete(&self.messages, response) {
                Ok(to_delete) => to_delete,
                Err(why) => {
                    tracing::warn!(error = %why, elapsed_ms, "the function's answer is not a valid batch response: every message of the batch stays in the queue");
                    return;
                }
            },
        };
        let failed = self.messages.len() - to_delete.len();
        if failed > 0 {
            tracing::info!(
                elapsed_ms,
                deleted = to_delete.len(),
                failed,
                "batch done with item failures: the failed messages stay in the queue"
            );
        } else {
            tracing::info!(elapsed_ms, deleted = to_delete.len(), "batch done");
        }
        for chunk in to_delete.chunks(SQS_MAX_BATCH) {
            delete_batch(&self.sqs, &self.queue_url, chunk).await;
        }
    }
}

/// Deletes up to 10 messages, retrying a failed call; messages SQS refuses are logged.
async fn delete_batch(sqs: &aws_sdk_sqs::Client, queue_url: &str, deliveries: &[Delivery]) {
    let entries: Vec<DeleteMessageBatchRequestEntry> = deliveries
        .iter()
        .enumerate()
        .filter_map(|(index, delivery)| {
            DeleteMessageBatchRequestEntry::builder().id(format!("m{index}")).receipt_handle(&delivery.receipt_handle).build().ok()
        })
        .collect();
    let mut backoff = Backoff::default();
    for attempt in 1..=DELETE_ATTEMPTS {
        match sqs.delete_message_batch().queue_url(queue_url).set_entries(Some(entries.clone())).send().await {
            Ok(output) => {
                for failure in output.failed() {
                    let message_id = failure
                        .id()
                        .strip_prefix('m')
                        .and_then(|index| index.parse::<usize>().ok())
                        .and_then(|index| deliveries.get(index))
                        .map_or("?", |delivery| delivery.message_id.as_str());
                    tracing::warn!(
                        message_id,
                        code = failure.code(),
                        reason = failure.message().unwrap_or_default(),
                        "SQS did not delete a handled message: it will be received again"
                    );
                }
                return;
            }
            Err(error) if attempt < DELETE_ATTEMPTS => {
                let pause = backoff.next_pause();
                tracing::warn!(error = %DisplayErrorContext(&error), retry_in_ms = pause.as_millis() as u64, "could not delete handled messages");
                tokio::time::sleep(pause).await;
            }
            Err(error) => {
                tracing::warn!(error = %DisplayErrorContext(&error), messages = deliveries.len(), "could not delete handled messages: they will be received again");
            }
        }
    }
}

/// The event Lambda sends for a batch of SQS messages, built as `aws_lambda_events`' own type
/// (the one the poller reads) and written as JSON, as Lambda hands it to the function.
pub fn sqs_event(messages: &[Message], queue: &QueueIdentity) -> Value {
    let mut event = SqsEvent::default();
    event.records = messages.iter().map(|message| sqs_record(message, queue)).collect();
    serde_json::to_value(event).expect("an SQS event serialises")
}

fn sqs_record(message: &Message, queue: &QueueIdentity) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(message.message_id().unwrap_or_default().to_owned());
    record.receipt_handle = Some(message.receipt_handle().unwrap_or_default().to_owned());
    record.body = Some(message.body().unwrap_or_default().to_owned());
    record.md5_of_body = Some(message.md5_of_body().unwrap_or_default().to_owned());
    record.md5_of_message_attributes = message.md5_of_message_attributes().map(str::to_owned);
    record.attributes = message.attributes().into_iter().flatten().map(|(name, value)| (name.as_str().to_owned(), value.clone())).collect();
    record.message_attributes =
        message.message_attributes().into_iter().flatten().map(|(name, value)| (name.clone(), message_attribute(value))).collect();
    record.event_source = Some("aws:sqs".to_owned());
    record.event_source_arn = Some(queue.arn.clone());
    record.aws_region = Some(queue.region.clone());
    record
}

/// A message attribute as Lambda writes it: binary values in base64.
fn message_attribute(value: &MessageAttributeValue) -> SqsMessageAttribute {
    let bytes = |blob: &aws_sdk_sqs::primitives::Blob| {
        let mut data = Base64Data::default();
        data.extend_from_slice(blob.as_ref());
        data
    };
    let mut attribute = SqsMessageAttribute::default();
    attribute.string_value = value.string_value().map(str::to_owned);
    attribute.binary_value = value.binary_value().map(bytes);
    attribute.string_list_values = value.string_list_values().to_vec();
    attribute.binary_list_values = value.binary_list_values().iter().map(bytes).collect();
    attribute.data_type = Some(value.data_type().to_owned());
    attribute
}

/// The message ids a function reported as failed, read as Lambda reads a `ReportBatchItemFailures`
/// answer: `null`, `{}`, or a null or empty `batchItemFailures` is complete success; anything
/// that is not such an object, or an item without a non-empty `itemIdentifier` naming a message
/// of the batch, makes the whole answer invalid (the whole batch failed).
pub fn batch_item_failures(response: &Value, messages: &[Message]) -> Result<BTreeSet<String>, String> {
    let fields = match response {
        Value::Null => return Ok(BTreeSet::new()),
        Value::Object(fields) => fields,
        other => return Err(format!("the answer is a JSON {}, not an object", json_type(other))),
    };
    let items = match fields.get("batchItemFailures") {
        None | Some(Value::Null) => return Ok(BTreeSet::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("batchItemFailures is a JSON {}, not an array", json_type(other))),
    };
    items
        .iter()
        .map(|item| {
            let id = match item.get("itemIdentifier") {
                Some(Value::String(id)) if !id.is_empty() => id,
                Some(Value::String(_)) => return Err("an itemIdentifier is empty".to_owned()),
                _ => return Err(format!("a batch item failure has no itemIdentifier string: {item}")),
            };
            if messages.iter().any(|message| message.message_id() == Some(id.as_str())) {
                Ok(id.clone())
            } else {
                Err(format!("the itemIdentifier '{id}' is not the id of a message of the batch"))
            }
        })
        .collect()
}

/// The messages of the batch to delete after the function answered `response`: every one it
/// did not report as failed, or an error when the answer is invalid (then none is deleted).
pub fn messages_to_delete(messages: &[Message], response: &Value) -> Result<Vec<Delivery>, String> {
    let failed = batch_item_failures(response, messages)?;
    Ok(messages
        .iter()
        .filter_map(|message| {
            let message_id = message.message_id().unwrap_or_default();
            let receipt_handle = message.receipt_handle()?;
            (!failed.contains(message_id))
                .then(|| Delivery { message_id: message_id.to_owned(), receipt_handle: receipt_handle.to_owned() })
        })
        .collect())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Exponential backoff between retries of an SQS call.
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST_BACKOFF }
    }
}

impl Backoff {
    fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        pause
    }

    fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn queue() -> QueueIdentity {
        QueueIdentity::from_arn("arn:aws:sqs:us-east-1:123456789012:shuttle-poll").expect("a queue ARN")
    }

    fn message(id: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("handle-{id}"))
            .body(format!("{{\"build\":\"{id}\"}}"))
            .md5_of_body("0123456789abcdef0123456789abcdef")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "1")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1545082649183")
            .attributes(MessageSystemAttributeName::SenderId, "AIDAIENQZJOLO23YVJ4VO")
            .attributes(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp, "1545082649185")
            .build()
    }

    fn batch() -> Vec<Message> {
        vec![message("a"), message("b"), message("c")]
    }

    fn deleted(response: Value) -> Result<Vec<String>, String> {
        messages_to_delete(&batch(), &response).map(|d| d.into_iter().map(|d| d.receipt_handle).collect())
    }

    #[test]
    fn the_queue_identity_comes_from_the_arn() {
        assert_eq!(queue().region, "us-east-1");
        assert_eq!(QueueIdentity::from_arn("arn:aws:sqs:eu-west-1:1:q").map(|q| q.region).as_deref(), Some("eu-west-1"));
        assert_eq!(QueueIdentity::from_arn("arn:aws:sns:us-east-1:123456789012:topic"), None);
        assert_eq!(QueueIdentity::from_arn("http://127.0.0.1:5000/123456789012/q"), None);
    }

    #[test]
    fn the_event_is_the_one_lambda_sends() {
        let event = sqs_event(&[message("059f36b4-87a3-44ab-83d2-661975830a7d")], &queue());
        assert_eq!(
            event,
            json!({"Records": [{
                "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
                "receiptHandle": "handle-059f36b4-87a3-44ab-83d2-661975830a7d",
                "body": "{\"build\":\"059f36b4-87a3-44ab-83d2-661975830a7d\"}",
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1545082649183",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1545082649185"
                },
                "messageAttributes": {},
                "md5OfBody": "0123456789abcdef0123456789abcdef",
                "md5OfMessageAttributes": null,
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:shuttle-poll",
                "awsRegion": "us-east-1"
            }]})
        );
    }

    #[test]
    fn every_message_of_the_batch_is_a_record_in_order() {
        let event = sqs_event(&batch(), &queue());
        let ids: Vec<&str> = event["Records"].as_array().expect("records").iter().filter_map(|r| r["messageId"].as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn message_attributes_are_written_as_lambda_writes_them() {
        let with_attributes = Message::builder()
            .message_id("m")
            .md5_of_message_attributes("fedcba")
            .message_attributes(
                "trace",
                MessageAttributeValue::builder().data_type("String").string_value("abc").build().expect("an attribute"),
            )
            .message_attributes(
                "blob",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(aws_sdk_sqs::primitives::Blob::new(b"hi".to_vec()))
                    .build()
                    .expect("an attribute"),
            )
            .build();
        let record = &sqs_event(&[with_attributes], &queue())["Records"][0];
        assert_eq!(
            record["messageAttributes"],
            json!({
                "trace": {"stringValue": "abc", "binaryValue": null, "stringListValues": [], "binaryListValues": [], "dataType": "String"},
                "blob": {"stringValue": null, "binaryValue": "aGk=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"}
            })
        );
        assert_eq!(record["md5OfMessageAttributes"], "fedcba");
    }

    #[test]
    fn an_answer_reporting_no_failure_deletes_the_whole_batch() {
        let all = Ok(vec!["handle-a".to_owned(), "handle-b".to_owned(), "handle-c".to_owned()]);
        assert_eq!(deleted(Value::Null), all);
        assert_eq!(deleted(json!({})), all);
        assert_eq!(deleted(json!({"batchItemFailures": null})), all);
        assert_eq!(deleted(json!({"batchItemFailures": []})), all);
    }

    #[test]
    fn reported_failures_stay_and_the_rest_is_deleted() {
        assert_eq!(
            deleted(json!({"batchItemFailures": [{"itemIdentifier": "b"}]})),
            Ok(vec!["handle-a".to_owned(), "handle-c".to_owned()])
        );
        assert_eq!(
            deleted(json!({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}, {"itemIdentifier": "c"}]})),
            Ok(vec![])
        );
        let failed = batch_item_failures(&json!({"batchItemFailures": [{"itemIdentifier": "c"}, {"itemIdentifier": "a"}]}), &batch());
        assert_eq!(failed, Ok(BTreeSet::from(["a".to_owned(), "c".to_owned()])));
    }

    #[test]
    fn an_invalid_answer_deletes_nothing() {
        for response in [
            json!("ok"),
            json!(42),
            json!([{"itemIdentifier": "a"}]),
            json!({"batchItemFailures": "a"}),
            json!({"batchItemFailures": [{"itemIdentifier": ""}]}),
            json!({"batchItemFailures": [{"itemIdentifier": null}]}),
            json!({"batchItemFailures": [{"itemIdentifer": "a"}]}),
            json!({"batchItemFailures": [{"itemIdentifier": "not-in-the-batch"}]}),
            json!({"batchItemFailures": [{"itemIdentifier": "a"}, "b"]}),
        ] {
            assert!(deleted(response.clone()).is_err(), "{response} must be refused");
        }
    }

    #[test]
    fn the_backoff_doubles_up_to_its_maximum_and_resets() {
        let mut backoff = Backoff::default();
        let pauses: Vec<Duration> = (0..7).map(|_| backoff.next_pause()).collect();
        assert_eq!(pauses[0], FIRST_BACKOFF);
        assert_eq!(pauses[1], FIRST_BACKOFF * 2);
        assert_eq!(pauses[6], MAX_BACKOFF);
        backoff.reset();
        assert_eq!(backoff.next_pause(), FIRST_BACKOFF);
    }
}
