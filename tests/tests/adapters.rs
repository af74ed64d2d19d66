//! The adapters against the local AWS emulator: DynamoDB, S3, SQS and KMS through the real SDK.
//! Each test has its own table, bucket, queue and key.

use std::time::Duration;

use bytes::Bytes;
use shuttle_adapters::{DynamoDbBuildStore, KmsSealer, S3SourceStore, SqsPollQueue};
use shuttle_core::error::StoreError;
use shuttle_core::ports::{BuildStore, ChunkWrite, PollMessage, PollQueue, Sealer, SourceStore};
use shuttle_core::record::{ApiKind, BuildRecord, Deliveries, Delivery, Lease, Progress, StatusEvent};
use shuttle_core::state::{BuildState, StopIntent};
use shuttle_tests::Stack;
use uuid::Uuid;

fn record(app_key: &str, number: Option<u64>, created_at_ms: u64) -> BuildRecord {
    BuildRecord {
        source_id: Uuid::new_v4(),
        kind: ApiKind::Legacy,
        build_key: "key".into(),
        app_key: app_key.into(),
        number,
        metadata: "meta é \"x\"".into(),
        human_readable_info: "Build #3".into(),
        state: BuildState::Accepted,
        stop: None,
        failure: None,
        created_at_ms,
        updated_at_ms: created_at_ms,
        version: 0,
        sealed_spec: vec![1, 2, 3, 0, 255].into(),
        progress: Progress { polled_at_ms: created_at_ms, ..Progress::default() },
    }
}

/// How long these tests' stores keep a finished build.
const RETENTION: Duration = Duration::from_secs(7 * 86_400);

fn store(stack: &Stack) -> DynamoDbBuildStore {
    DynamoDbBuildStore::new(stack.dynamodb.clone(), &stack.resources.table_name, RETENTION)
}

fn sources(stack: &Stack) -> S3SourceStore {
    S3SourceStore::new(stack.s3.clone(), &stack.resources.s3_bucket)
}

#[tokio::test]
async fn dynamodb_create_is_conditional() {
    let stack = Stack::new().await;
    let store = store(&stack);
    let build = record("app", Some(1), 1_000);
    assert!(store.insert(&build).await.unwrap(), "first insert creates");
    let mut other = build.clone();
    other.metadata = "someone else".into();
    assert!(!store.insert(&other).await.unwrap(), "second insert finds the first");
    assert_eq!(store.get(build.source_id).await.unwrap(), Some(build), "the first build stands, every field round-trips");
}

#[tokio::test]
async fn dynamodb_update_with_a_stale_version_conflicts() {
    let stack = Stack::new().await;
    let store = store(&stack);
    let build = record("app", None, 1_000);
    store.insert(&build).await.unwrap();

    let mut running = build.clone();
    running.state = BuildState::Building;
    let stored = store.update(&running).await.unwrap();
    assert_eq!(stored.version, 1);

    let mut stale = build.clone();
    stale.stop = Some(StopIntent::Stop);
    assert_eq!(store.update(&stale).await, Err(StoreError::Conflict));
    let now = store.get(build.source_id).await.unwrap().unwrap();
    assert_eq!((now.state, now.stop, now.version), (BuildState::Building, None, 1));

    let mut fresh = now.clone();
    fresh.state = BuildState::Failed;
    fresh.stop = Some(StopIntent::Timeout);
    fresh.failure = Some("timed out".into());
    store.update(&fresh).await.unwrap();
    let now = store.get(build.source_id).await.unwrap().unwrap();
    assert_eq!(
        (now.state, now.stop, now.failure.as_deref(), now.version),
        (BuildState::Failed, Some(StopIntent::Timeout), Some("timed out"), 2)
    );
}

#[tokio::test]
async fn dynamodb_lookups_by_id_number_and_app() {
    let stack = Stack::new().await;
    let store = store(&stack);
    let older = record("app-a", Some(7), 1_000);
    let newer = record("app-a", Some(7), 2_000);
    let other_number = record("app-a", Some(8), 3_000);
    let other_app = record("app-b", Some(7), 4_000);
    for build in [&newer, &older, &other_number, &other_app] {
        store.insert(build).await.unwrap();
    }
    assert_eq!(store.get(older.source_id).await.unwrap().map(|b| b.source_id), Some(older.source_id));
    assert_eq!(store.get(Uuid::new_v4()).await.unwrap(), None);

    let found = store.find_by_number("app-a", 7).await.unwrap().unwrap();
    assert_eq!(found.source_id, newer.source_id, "the newest build with that number");
    assert_eq!(store.find_by_number("app-a", 9).await.unwrap(), None);
    assert_eq!(store.find_by_number("app-c", 7).await.unwrap(), None);

    let listed: Vec<Uuid> = store.list_by_app("app-a").await.unwrap().into_iter().map(|b| b.source_id).collect();
    assert_eq!(listed, vec![older.source_id, newer.source_id, other_number.source_id], "oldest first");
    assert!(store.list_by_app("nobody").await.unwrap().is_empty());
}

#[tokio::test]
async fn s3_presigned_url_returns_the_stored_bytes() {
    let stack = Stack::new().await;
    let sources = sources(&stack);
    let source_id = Uuid::new_v4();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    sources.put_source(source_id, Bytes::from(bytes.clone())).await.unwrap();
    assert!(sources.source_exists(source_id).await.unwrap());
    assert!(!sources.source_exists(Uuid::new_v4()).await.unwrap());

    let link = sources.presign_source(source_id, Duration::from_secs(600)).await.unwrap();
    assert!(link.contains("X-Amz-Expires=600"), "{link}");
    assert!(link.contains("X-Amz-Signature="), "{link}");
    let fetched = shuttle_tests::get(&link).await.unwrap();
    assert_eq!(fetched.status().as_u16(), 200);
    assert_eq!(fetched.bytes().await.unwrap().to_vec(), bytes);
}

#[tokio::test]
async fn s3_sources_are_written_once() {
    let stack = Stack::new().await;
    let sources = sources(&stack);
    let source_id = Uuid::new_v4();
    sources.put_source(source_id, Bytes::from_static(b"first")).await.unwrap();
    sources.put_source(source_id, Bytes::from_static(b"second")).await.unwrap();
    let link = sources.presign_source(source_id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(shuttle_tests::get(&link).await.unwrap().bytes().await.unwrap().as_ref(), b"first");
}

#[tokio::test]
async fn s3_log_archive_is_chunks_by_offset() {
    let stack = Stack::new().await;
    let sources = sources(&stack);
    let source_id = Uuid::new_v4();
    assert_eq!(sources.read_log_tail(source_id, 100).await.unwrap().total_bytes, 0);
    let put = |offset, chunk: &'static [u8]| sources.put_log_chunk(source_id, offset, Bytes::from_static(chunk));
    assert_eq!(put(0, b"line 1\n").await.unwrap(), ChunkWrite::Written);
    assert_eq!(put(7, b"line 2\n").await.unwrap(), ChunkWrite::Written);
    assert_eq!(put(14, b"line 3\n").await.unwrap(), ChunkWrite::Written);
    assert_eq!(put(7, b"XXXXXXXXXX\n").await.unwrap(), ChunkWrite::Exists { len: 7 }, "an existing chunk stands");

    let whole = sources.read_log_tail(source_id, 1_000).await.unwrap();
    assert_eq!((whole.text.as_str(), whole.total_bytes, whole.truncated), ("line 1\nline 2\nline 3\n", 21, false));
    let tail = sources.read_log_tail(source_id, 10).await.unwrap();
    assert_eq!((tail.text.as_str(), tail.total_bytes, tail.truncated), (" 2\nline 3\n", 21, true));
    let mut keys = stack.object_keys().await;
    keys.sort();
    assert_eq!(
        keys,
        vec![
            format!("logs/{source_id}/00000000000000000000"),
            format!("logs/{source_id}/00000000000000000007"),
            format!("logs/{source_id}/00000000000000000014"),
        ]
    );
}

#[tokio::test]
async fn sqs_send_receive_delete() {
    let stack = Stack::new().await;
    let queue =
        SqsPollQueue::new(stack.sqs.clone(), &stack.resources.queues.queue_url, Some(stack.resources.queues.dead_letter_url.clone()));
    let message = PollMessage { source_id: Uuid::new_v4(), round: 3 };
    queue.enqueue(&message, Duration::ZERO).await.unwrap();

    let received = stack.sqs.receive_message().queue_url(&stack.resources.queues.queue_url).wait_time_seconds(1).send().await.unwrap();
    let [received] = received.messages() else { panic!("one message expected, got {:?}", received.messages()) };
    let body: PollMessage = serde_json::from_str(received.body().unwrap()).unwrap();
    assert_eq!(body, message);
    stack
        .sqs
        .delete_message()
        .queue_url(&stack.resources.queues.queue_url)
        .receipt_handle(received.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    let attributes = stack
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.resources.queues.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name| attributes.attributes().unwrap().get(&name).cloned().unwrap_or_default();
    assert_eq!(count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages), "0");
    assert_eq!(count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible), "0");
    assert!(count(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy).contains("\"maxReceiveCount\""));
}

#[tokio::test]
async fn sqs_delay_hides_a_message_until_it_is_due() {
    let stack = Stack::new().await;
    let queue =
        SqsPollQueue::new(stack.sqs.clone(), &stack.resources.queues.queue_url, Some(stack.resources.queues.dead_letter_url.clone()));
    queue.enqueue(&PollMessage { source_id: Uuid::new_v4(), round: 3 }, Duration::from_secs(2)).await.unwrap();
    assert!(stack.queued().await.is_empty(), "not visible before its delay");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(stack.queued().await.len(), 1, "visible after its delay");
}

#[tokio::test]
async fn kms_seals_and_opens_secret_fields() {
    let stack = Stack::new().await;
    let sealer = KmsSealer::new(stack.kms.clone(), &stack.resources.kms_key_id);
    let secret = br#"{"callback_auth":"Bearer canary-7f3a","url":"https://user:canary-pass@h.example"}"#;
    let sealed = sealer.seal(secret).await.unwrap();
    assert!(!contains(&sealed, b"canary"), "the sealed value shows no plaintext");
    assert_eq!(sealer.open(&sealed).await.unwrap(), secret);
    assert_ne!(sealer.seal(secret).await.unwrap(), sealed, "each seal has its own data key and nonce");

    let mut tampered = sealed.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(sealer.open(&tampered).await.is_err(), "an altered value does not open");
    assert!(sealer.open(b"garbage").await.is_err());
}

#[tokio::test]
async fn a_stored_build_shows_no_secret_in_plain_text() {
    let stack = Stack::new().await;
    let shuttle = stack.shuttle("https://shuttle.example");
    let body = serde_json::json!({
        "webhooks": {"status": "https://canary-token@hooks.example/s", "logs": ["https://u:canary-logs@hooks.example/l"]},
        "metadata": "ns",
        "human_readable_info": "Build from https://git:canary-info@git.example/repo.git",
        "arguments": {"NPM_TOKEN": "canary-arg"},
        "source": {"url": "https://u:canary-src@src.example/a.tgz"},
        "destination": {"url": "docker://u:canary-dest@registry.example/org/app:1"}
    });
    shuttle.create_v2("app", "1", body.to_string().as_bytes()).await.unwrap();

    let items = stack.items().await;
    assert_eq!(items.len(), 1);
    let item_text = format!("{:?}", items[0]);
    let spec = items[0]["spec"].as_b().unwrap().as_ref().to_vec();
    assert!(!item_text.contains("canary") && !contains(&spec, b"canary"), "{item_text}");
    for message in stack.queued().await {
        assert!(!message.contains("canary"), "{message}");
    }
    let record = shuttle.find("app", "1").await.unwrap();
    assert_eq!(record.human_readable_info, "Build from https://git:***@git.example/repo.git");
}

#[tokio::test]
async fn dynamodb_gives_a_finished_build_its_ttl_and_a_running_one_none() {
    let stack = Stack::new().await;
    let store = store(&stack);
    let mut build = record("app", Some(1), 1_700_000_000_123);
    store.insert(&build).await.unwrap();
    let expires_at = |items: &[std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>]| {
        items[0].get(shuttle_adapters::dynamodb::TTL_ATTRIBUTE).map(|v| v.as_n().expect("a number").clone())
    };
    assert_eq!(expires_at(&stack.items().await), None, "an unfinished build is kept");
    build.state = BuildState::Succeeded;
    build.updated_at_ms = 1_700_000_100_999;
    store.update(&build).await.unwrap();
    assert_eq!(expires_at(&stack.items().await), Some((1_700_000_100 + RETENTION.as_secs()).to_string()));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn dynamodb_keeps_the_pollers_positions_and_finds_stale_builds() {
    let stack = Stack::new().await;
    let store = store(&stack);
    let (old, fresh, done) = (record("app-a", None, 1_000), record("app-a", None, 5_000), record("app-a", None, 500));
    for r in [&old, &fresh, &done] {
        assert!(store.insert(r).await.unwrap());
    }
    let mut moved = old.clone();
    moved.progress = Progress {
        round: 7,
        lease: Some(Lease { owner: "poller-1".into(), until_ms: 9_000 }),
        polled_at_ms: 2_000,
        triggered_at_ms: Some(1_500),
        queue_item: Some(42),
        jenkins_number: Some(3),
        started_at_ms: Some(1_800),
        log_cursor: 1234,
        archive_len: 1300,
        deliveries: Deliveries {
            events: vec![
                StatusEvent { state: BuildState::Pending, number: None },
                StatusEvent { state: BuildState::Building, number: Some(3) },
            ],
            status: vec![Delivery { done: 1, callback: true, attempts: 2, failing_since_ms: 1_900, retry_at_ms: 2_500, closed: false }],
            logs: vec![Delivery { done: 1000, ..Delivery::default() }, Delivery { done: 1300, closed: true, ..Delivery::default() }],
        },
    };
    let moved = store.update(&moved).await.unwrap();
    assert_eq!(store.get(old.source_id).await.unwrap().unwrap(), moved, "every position round-trips");
    let mut finished = done.clone();
    finished.state = BuildState::Succeeded;
    store.update(&finished).await.unwrap();
    // A finished build whose status target was not told the end yet is still the poller's.
    let untold = record("app-a", None, 600);
    assert!(store.insert(&untold).await.unwrap());
    let mut ended = untold.clone();
    ended.progress.deliveries = Deliveries::for_targets([false], 0);
    assert!(ended.move_to(BuildState::Failed));
    let ended = store.update(&ended).await.unwrap();

    let stale: Vec<Uuid> = store.stale_builds(3_000, 10).await.unwrap().into_iter().map(|r| r.source_id).collect();
    assert_eq!(
        stale,
        vec![ended.source_id, old.source_id],
        "polled before 3000 and unfinished or untold; the finished build is not listed"
    );
    let stale: Vec<Uuid> = store.stale_builds(10_000, 10).await.unwrap().into_iter().map(|r| r.source_id).collect();
    assert_eq!(stale, vec![ended.source_id, old.source_id, fresh.source_id], "stalest first");
    assert_eq!(store.stale_builds(10_000, 1).await.unwrap().len(), 1, "at most the limit");
}

#[tokio::test]
async fn s3_copies_sources_for_a_rebuild() {
    let stack = Stack::new().await;
    let sources = sources(&stack);
    let (from, to, missing) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    sources.put_source(from, Bytes::from_static(b"archive bytes")).await.unwrap();
    assert!(sources.copy_source(from, to).await.unwrap());
    assert!(!sources.copy_source(missing, Uuid::new_v4()).await.unwrap(), "nothing to copy");
    let link = sources.presign_source(to, Duration::from_secs(60)).await.unwrap();
    assert_eq!(shuttle_tests::get(&link).await.unwrap().bytes().await.unwrap().as_ref(), b"archive bytes");
}
