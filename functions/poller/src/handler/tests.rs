use std::sync::Arc;

use serde_json::json;
use shuttle_core::fakes::{fake_shuttle, FakeShuttle, RecordingWebhooks};
use shuttle_core::poll::Poller;
use shuttle_core::ports::{FetchError, SourceFetcher};
use uuid::Uuid;

use super::handle;

struct NoDownloads;

#[async_trait::async_trait]
impl SourceFetcher for NoDownloads {
    async fn fetch(&self, _url: &str, _source_id: Uuid) -> Result<(), FetchError> {
        Err(FetchError::Failed("no downloads in unit tests".into()))
    }
}

fn poller() -> (Poller, FakeShuttle) {
    let fake = fake_shuttle();
    let webhooks = Arc::new(RecordingWebhooks::default()).webhooks();
    (Poller::new(fake.shuttle.clone(), Arc::new(NoDownloads), webhooks), fake)
}

fn sqs_event(bodies: &[(&str, &str)]) -> serde_json::Value {
    let records: Vec<_> =
        bodies.iter().map(|(id, body)| json!({"messageId": id, "receiptHandle": "r", "body": body, "eventSource": "aws:sqs"})).collect();
    json!({"Records": records})
}

#[tokio::test]
async fn a_malformed_message_goes_to_the_dead_letter_queue_and_is_not_retried() {
    let (poller, fake) = poller();
    let response = handle(&poller, sqs_event(&[("m1", "not json"), ("m2", r#"{"source_id":"nope"}"#)])).await.unwrap();
    assert_eq!(response, json!({"batchItemFailures": []}));
    assert_eq!(*fake.queue.dead_letters.lock().unwrap(), vec!["not json".to_owned(), r#"{"source_id":"nope"}"#.to_owned()]);
}

#[tokio::test]
async fn a_message_for_an_unknown_build_is_dropped() {
    let (poller, fake) = poller();
    let body = json!({"source_id": Uuid::new_v4(), "round": 0}).to_string();
    let response = handle(&poller, sqs_event(&[("m1", &body)])).await.unwrap();
    assert_eq!(response, json!({"batchItemFailures": []}));
    assert!(fake.queue.sent.lock().unwrap().is_empty(), "nothing re-enqueued");
}

#[tokio::test]
async fn a_scheduled_event_redrives_and_anything_else_is_an_error() {
    let (poller, _fake) = poller();
    let scheduled = json!({"version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    assert_eq!(handle(&poller, scheduled).await.unwrap(), json!({"requeued": 0, "failed": 0}));
    let error = handle(&poller, json!({"hello": "world"})).await.unwrap_err();
    assert!(error.to_string().contains("neither"), "{error}");
}
