//! Property-based fuzzing of the poller's input (issue 6): whatever event the Lambda is handed,
//! and whatever an SQS message holds, the handler answers without panicking; a message that is
//! not a poll message goes to the dead-letter queue (and is not retried), and a poll message in
//! any of its serialisations is handled. `PROPTEST_CASES` sets the run length.

use std::sync::Arc;

use poller::handler::PollerEvent;
use proptest::prelude::*;
use serde_json::{json, Value};
use shuttle_core::fakes::{fakes, Fakes, RecordingWebhooks};
use shuttle_core::poll::Poller;
use shuttle_core::ports::{FetchError, PollMessage, SourceFetcher};
use uuid::Uuid;

struct NoDownloads;

#[async_trait::async_trait]
impl SourceFetcher for NoDownloads {
    async fn fetch(&self, _url: &str, _source_id: Uuid) -> Result<(), FetchError> {
        Err(FetchError::Failed("no downloads in the fuzz suite".into()))
    }
}

fn poller() -> (Poller, Fakes) {
    let fake = fakes();
    let webhooks = Arc::new(RecordingWebhooks::default()).webhooks();
    (fake.poller(Arc::new(NoDownloads), webhooks), fake)
}

/// `event` read as the Lambda runtime reads it (an event the poller cannot read is refused
/// before the handler runs), then handled, and the answer written as the runtime writes it.
fn handle(poller: &Poller, event: Value) -> Result<Value, String> {
    let event: PollerEvent = serde_json::from_value(event).map_err(|e| format!("refused: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let deadline = tokio::time::Instant::now() + shuttle_core::poll::POLLER_TIMEOUT;
    let answer = runtime.block_on(poller::handler::handle(poller, event, deadline)).map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(answer).expect("an answer serialises"))
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        Just(Value::String("aws.events".into())),
        any::<u128>().prop_map(|n| Value::String(Uuid::from_u128(n).to_string())),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("source_id|round|Records|body|messageId|source|[a-z]{0,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A poll message as some poller may have written it: compact, pretty, without `round`, its
/// fields in another order, with an upper-case id. (A field it does not know makes it junk:
/// `PollMessage` denies unknown fields.)
fn poll_message_body() -> impl Strategy<Value = String> {
    (any::<u128>(), any::<u64>(), 0u8..5).prop_map(|(id, round, form)| {
        let message = PollMessage { source_id: Uuid::from_u128(id), round };
        match form {
            0 => serde_json::to_string(&message).unwrap(),
            1 => serde_json::to_string_pretty(&message).unwrap(),
            2 => json!({"source_id": message.source_id}).to_string(),
            3 => format!(r#"{{ "round": {round}, "source_id": "{}" }}"#, message.source_id),
            _ => json!({"source_id": message.source_id.to_string().to_uppercase(), "round": round}).to_string(),
        }
    })
}

/// A message body that is not a poll message.
fn junk_body() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just(String::new()),
        poll_message_body().prop_map(|b| format!("{b} {b}")),
        any_json().prop_map(|v| v.to_string()),
        any::<u128>().prop_map(|n| json!({"source_id": Uuid::from_u128(n).simple().to_string()[..20], "round": 1}).to_string()),
        any::<u128>().prop_map(|n| json!({"source_id": Uuid::from_u128(n), "round": -1}).to_string()),
        any::<u128>().prop_map(|n| json!({"source_id": Uuid::from_u128(n), "round": "1"}).to_string()),
        any::<u128>().prop_map(|n| json!({"source_id": Uuid::from_u128(n), "round": 1, "sent_by": "a newer poller"}).to_string()),
    ]
    .prop_filter("not a poll message", |body| serde_json::from_str::<PollMessage>(body).is_err())
}

/// An SQS record: the body, and whether it is a poll message.
fn record(index: usize, body: (String, bool)) -> (Value, String, bool) {
    let id = format!("m{index}");
    (json!({"messageId": id, "receiptHandle": "r", "body": body.0, "eventSource": "aws:sqs"}), body.0, body.1)
}

fn batch() -> impl Strategy<Value = Vec<(Value, String, bool)>> {
    let body = prop_oneof![poll_message_body().prop_map(|b| (b, true)), junk_body().prop_map(|b| (b, false))];
    prop::collection::vec(body, 0..8).prop_map(|bodies| bodies.into_iter().enumerate().map(|(i, b)| record(i, b)).collect())
}

proptest! {
    #[test]
    fn fuzz_poller_any_event(event in prop_oneof![
        any_json(),
        prop::collection::vec(any_json(), 0..5).prop_map(|records| json!({"Records": records})),
    ]) {
        let (poller, _fake) = poller();
        let records = event.get("Records").and_then(Value::as_array).cloned();
        let an_sqs_event = serde_json::from_value::<aws_lambda_events::event::sqs::SqsEvent>(event.clone()).is_ok();
        let answer = handle(&poller, event);
        if let (Some(records), true) = (records, an_sqs_event) {
            // An SQS batch is always answered with its failures, each one a message of the batch.
            let answer = answer.map_err(TestCaseError::fail)?;
            let failures = answer["batchItemFailures"].as_array().ok_or_else(|| TestCaseError::fail(format!("{answer}")))?;
            for failure in failures {
                let id = &failure["itemIdentifier"];
                prop_assert!(records.iter().any(|r| r.get("messageId").unwrap_or(&json!("")) == id), "{} is not in the batch", id);
            }
        }
    }

    #[test]
    fn fuzz_poller_sqs_batch(batch in batch()) {
        let (poller, fake) = poller();
        let event = json!({"Records": batch.iter().map(|(record, _, _)| record.clone()).collect::<Vec<_>>()});
        let answer = handle(&poller, event).map_err(TestCaseError::fail)?;
        // The builds are unknown: every poll message is dropped, every other one dead-lettered,
        // and none comes back.
        prop_assert_eq!(answer, json!({"batchItemFailures": []}));
        let mut dead = fake.queue.dead_letters.lock().unwrap().clone();
        let mut junk: Vec<String> = batch.iter().filter(|(_, _, valid)| !valid).map(|(_, body, _)| body.clone()).collect();
        dead.sort();
        junk.sort();
        prop_assert_eq!(dead, junk, "exactly the messages that are not poll messages are dead-lettered");
        prop_assert!(fake.queue.sent.lock().unwrap().is_empty(), "nothing is enqueued for unknown builds");
    }
}
