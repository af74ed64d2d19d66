use std::sync::Arc;

use serde_json::{json, Value};
use shuttle_core::fakes::{capture_logs, fakes, Fakes, RecordingWebhooks};
use shuttle_core::poll::Poller;
use shuttle_core::ports::{FetchError, SourceFetcher};
use uuid::Uuid;

use super::{handle, PollerEvent};

struct NoDownloads;

#[async_trait::async_trait]
impl SourceFetcher for NoDownloads {
    async fn fetch(&self, _url: &str, _source_id: Uuid) -> Result<(), FetchError> {
        Err(FetchError::Failed("no downloads in unit tests".into()))
    }
}

fn poller() -> (Poller, Fakes) {
    let fake = fakes();
    let webhooks = Arc::new(RecordingWebhooks::default()).webhooks();
    (fake.poller(Arc::new(NoDownloads), webhooks), fake)
}

fn sqs_event(bodies: &[(&str, &str)]) -> PollerEvent {
    let records: Vec<_> =
        bodies.iter().map(|(id, body)| json!({"messageId": id, "receiptHandle": "r", "body": body, "eventSource": "aws:sqs"})).collect();
    event(json!({"Records": records}))
}

/// `raw` read as the Lambda runtime reads the poller's event.
fn event(raw: Value) -> PollerEvent {
    serde_json::from_value(raw).expect("an event the poller takes")
}

/// The poller's answer as the Lambda runtime writes it.
async fn answer(poller: &Poller, event: PollerEvent) -> Value {
    let deadline = tokio::time::Instant::now() + shuttle_core::poll::POLLER_TIMEOUT;
    serde_json::to_value(handle(poller, event, deadline).await.expect("an answer")).expect("an answer serialises")
}

#[tokio::test]
async fn a_malformed_message_goes_to_the_dead_letter_queue_and_is_not_retried() {
    let (poller, fake) = poller();
    let response = answer(&poller, sqs_event(&[("m1", "not json"), ("m2", r#"{"source_id":"nope"}"#)])).await;
    assert_eq!(response, json!({"batchItemFailures": []}));
    assert_eq!(*fake.queue.dead_letters.lock().unwrap(), vec!["not json".to_owned(), r#"{"source_id":"nope"}"#.to_owned()]);
}

#[tokio::test]
async fn a_message_for_an_unknown_build_is_dropped() {
    let (poller, fake) = poller();
    let body = json!({"source_id": Uuid::new_v4(), "round": 0}).to_string();
    let response = answer(&poller, sqs_event(&[("m1", &body)])).await;
    assert_eq!(response, json!({"batchItemFailures": []}));
    assert!(fake.queue.sent.lock().unwrap().is_empty(), "nothing re-enqueued");
}

/// The schedule's target `Input` in `template.yaml` (the gateway's tests hold the template to it).
const TEMPLATE_INPUT: &str = r#"{"action": "redrive"}"#;

#[tokio::test]
async fn the_schedules_input_an_eventbridge_rules_event_and_the_schedulers_default_event_redrive() {
    let (poller, _fake) = poller();
    let rule = json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2015-10-08T16:53:06Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/my-scheduled-rule"], "detail": {}
    });
    // EventBridge Scheduler without an Input: its `detail` is the string "{}".
    let scheduler = json!({
        "version": "0", "id": "d41b2c5e-6f2a-4b7e-9b0e-1c2d3e4f5a6b", "detail-type": "Scheduled Event", "source": "aws.scheduler",
        "account": "123456789012", "time": "2026-12-02T06:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/shuttle-redrive"], "detail": "{}"
    });
    let input: Value = serde_json::from_str(TEMPLATE_INPUT).unwrap();
    for raw in [input, rule, scheduler] {
        assert_eq!(answer(&poller, event(raw.clone())).await, json!({"requeued": 0, "failed": 0, "abandoned": 0}), "{raw}");
    }
}

#[test]
fn an_event_that_is_neither_is_refused_with_what_it_is() {
    for (raw, says) in [
        (json!({"hello": "world"}), "neither"),
        (json!([1, 2]), "JSON object"),
        (json!({"action": "rebuild"}), "the schedule's input"),
        (json!({"action": "redrive", "extra": 1}), "the schedule's input"),
        (json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}), "not a scheduled event"),
        (json!({"source": "aws.events"}), "an EventBridge event"),
        (json!({"Records": [1]}), "an SQS batch"),
    ] {
        let error = serde_json::from_value::<PollerEvent>(raw.clone()).unwrap_err().to_string();
        assert!(error.contains(says), "{raw}: {error}");
    }
}

#[tokio::test]
async fn each_message_is_handled_in_a_span_naming_the_message_and_its_build() {
    let (poller, fake) = poller();
    fake.create()
        .v2(
            "app",
            "1",
            br#"{"source":{"url":"docker://registry.example/org/base:1"},"destination":{"url":"docker://registry.example/org/app:1"}}"#,
        )
        .await
        .unwrap();
    let id = shuttle_core::ids::v2_source_id("app", "1");
    let logs = capture_logs();
    let body = json!({"source_id": id, "round": 0}).to_string();
    answer(&poller, sqs_event(&[("m-7", &body)])).await;
    let logged = logs.text();
    let polled = logged
        .lines()
        .find(|line| line.ends_with(" polled") || line.contains(" polled "))
        .unwrap_or_else(|| panic!("no 'polled' line in:\n{logged}"));
    assert!(polled.contains(&format!(r#"sqs_message{{message_id="m-7" build={id}}}"#)), "{polled}");
    let poll_span = format!(r#"sqs_message{{message_id="m-7" build={id}}}:poll{{build={id} round=0}}: "#);
    assert!(
        logged.lines().any(|line| line.contains(&poll_span) && line.contains("close")),
        "the poll's own span, in the message's: {logged}"
    );
}

#[test]
fn the_deadline_is_the_runtime_contexts_and_one_already_past_leaves_no_time() {
    let epoch_ms = |at: std::time::SystemTime| at.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut context = lambda_runtime::Context::default();
    context.deadline = epoch_ms(std::time::SystemTime::now()) + 30_000;
    let left = super::deadline_of(&context) - tokio::time::Instant::now();
    assert!(left > std::time::Duration::from_secs(29) && left <= std::time::Duration::from_secs(30), "{left:?} left of 30 s");
    context.deadline = epoch_ms(std::time::SystemTime::now()) - 5_000;
    assert!(super::deadline_of(&context) <= tokio::time::Instant::now());
}
