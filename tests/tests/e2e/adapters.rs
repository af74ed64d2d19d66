//! The adapters against the local AWS emulator: DynamoDB, S3, SQS and KMS through the real SDK.
//! Each test has its own table, bucket, queue and key.

use std::time::Duration;

use bytes::Bytes;
use shuttle_adapters::{DynamoDbBuildStore, KmsSealer, S3SourceStore, SqsPollQueue};
use shuttle_core::contract::{self, record};
use shuttle_core::error::StoreError;
use shuttle_core::ports::{BuildStore, ChunkWrite, OpenError, PollMessage, PollQueue, Sealer, SourceStore};
use shuttle_core::state::BuildState;
use shuttle_tests::Stack;
use uuid::Uuid;

/// How long these tests' stores keep a finished build.
const RETENTION: Duration = Duration::from_secs(7 * 86_400);

fn store(stack: &Stack) -> DynamoDbBuildStore {
    DynamoDbBuildStore::new(stack.dynamodb.clone(), &stack.resources.table_name, RETENTION)
}

fn sources(stack: &Stack) -> S3SourceStore {
    S3SourceStore::new(stack.s3.clone(), &stack.resources.s3_bucket)
}

#[tokio::test]
async fn dynamodb_keeps_the_build_store_contract() {
    let stack = Stack::new().await;
    contract::build_store(&store(&stack)).await;
}

#[tokio::test]
async fn s3_keeps_the_source_store_contract() {
    let stack = Stack::new().await;
    contract::source_store(&sources(&stack)).await;
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

/// The archive's layout in the bucket (what it holds is the source store contract's).
#[tokio::test]
async fn s3_log_archive_is_one_object_per_chunk_named_by_its_offset() {
    let stack = Stack::new().await;
    let sources = sources(&stack);
    let source_id = Uuid::new_v4();
    let put = |offset, chunk: &'static [u8]| sources.put_log_chunk(source_id, offset, Bytes::from_static(chunk));
    assert_eq!(put(0, b"line 1\n").await.unwrap(), ChunkWrite::Written);
    assert_eq!(put(7, b"line 2\n").await.unwrap(), ChunkWrite::Written);
    assert_eq!(put(14, b"line 3\n").await.unwrap(), ChunkWrite::Written);
    assert_eq!(put(7, b"XXXXXXXXXX\n").await.unwrap(), ChunkWrite::Exists { len: 7 }, "an existing chunk stands");
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
    let build = Uuid::new_v4();
    let sealed = sealer.seal(secret, build).await.unwrap();
    assert!(!contains(&sealed, b"canary"), "the sealed value shows no plaintext");
    assert_eq!(sealer.open(&sealed, build).await.unwrap(), secret);
    assert_ne!(sealer.seal(secret, build).await.unwrap(), sealed, "each seal has its own data key and nonce");

    let mut tampered = sealed.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(matches!(sealer.open(&tampered, build).await, Err(OpenError::Refused(_))), "an altered value never opens");
    assert!(matches!(sealer.open(b"garbage", build).await, Err(OpenError::Refused(_))));
}

/// Issue 20: a sealed spec copied into another build's item does not open there. Both bindings
/// refuse it: KMS (the data key's encryption context names the build) and AES-GCM (the build's
/// id is the associated data).
#[tokio::test]
async fn a_value_sealed_for_one_build_does_not_open_for_another() {
    let stack = Stack::new().await;
    let sealer = KmsSealer::new(stack.kms.clone(), &stack.resources.kms_key_id);
    let (build, other) = (Uuid::new_v4(), Uuid::new_v4());
    let sealed = sealer.seal(b"the spec", build).await.unwrap();
    let refused = sealer.open(&sealed, other).await.expect_err("sealed for another build");
    assert!(matches!(&refused, OpenError::Refused(why) if why.contains("KMS refused")), "refused for good, not retried: {refused}");
    // KMS alone refuses it: the data key of `build`, asked for with the context of `other`.
    let key_len = usize::from(u16::from_be_bytes([sealed[1], sealed[2]]));
    let encrypted_key = aws_sdk_kms::primitives::Blob::new(&sealed[3..3 + key_len]);
    let decrypt = |id: Uuid| {
        stack
            .kms
            .decrypt()
            .key_id(&stack.resources.kms_key_id)
            .ciphertext_blob(encrypted_key.clone())
            .encryption_context("source_id", id.to_string())
            .send()
    };
    assert!(decrypt(other).await.is_err(), "KMS refuses the data key under another build's context");
    assert!(decrypt(build).await.is_ok(), "and gives it under its own");
}

/// Values sealed before the binding (format 1: a data key without a context, no associated
/// data) still open, so builds in flight across the upgrade go on.
#[tokio::test]
async fn a_value_sealed_before_the_binding_still_opens() {
    use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
    let stack = Stack::new().await;
    let data_key = stack
        .kms
        .generate_data_key()
        .key_id(&stack.resources.kms_key_id)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(data_key.plaintext().unwrap().as_ref()).unwrap();
    let nonce = aes_gcm::Aes256Gcm::generate_nonce(&mut OsRng);
    let encrypted_key = data_key.ciphertext_blob().unwrap().as_ref();
    let mut sealed = vec![1_u8];
    sealed.extend_from_slice(&u16::try_from(encrypted_key.len()).unwrap().to_be_bytes());
    sealed.extend_from_slice(encrypted_key);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&cipher.encrypt(&nonce, b"an old spec".as_slice()).unwrap());
    let sealer = KmsSealer::new(stack.kms.clone(), &stack.resources.kms_key_id);
    assert_eq!(sealer.open(&sealed, Uuid::new_v4()).await.unwrap(), b"an old spec");
}

#[tokio::test]
async fn a_stored_build_shows_no_secret_in_plain_text() {
    let stack = Stack::new().await;
    let create = stack.create("https://shuttle.example");
    let body = serde_json::json!({
        "webhooks": {"status": "https://canary-token@hooks.example/s", "logs": ["https://u:canary-logs@hooks.example/l"]},
        "metadata": "ns",
        "human_readable_info": "Build from https://git:canary-info@git.example/repo.git",
        "arguments": {"NPM_TOKEN": "canary-arg"},
        "source": {"url": "https://u:canary-src@src.example/a.tgz"},
        "destination": {"url": "docker://u:canary-dest@registry.example/org/app:1"}
    });
    create.v2("app", "1", body.to_string().as_bytes()).await.unwrap();

    let items = stack.items().await;
    assert_eq!(items.len(), 1);
    let item_text = format!("{:?}", items[0]);
    let spec = items[0]["spec"].as_b().unwrap().as_ref().to_vec();
    assert!(!item_text.contains("canary") && !contains(&spec, b"canary"), "{item_text}");
    for message in stack.queued().await {
        assert!(!message.contains("canary"), "{message}");
    }
    let record = stack.status().find("app", "1").await.unwrap();
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

#[tokio::test]
async fn dynamodb_refuses_an_item_over_its_limit_before_the_write_and_takes_one_just_under() {
    let stack = Stack::new().await;
    let store = store(&stack);
    let mut build = record("app", Some(1), 1_700_000_000_123);
    build.metadata = "m".repeat(shuttle_adapters::dynamodb::MAX_ITEM_BYTES);
    match store.insert(&build).await {
        Err(StoreError::TooLarge { size, limit }) => assert!(size > limit, "{size} over {limit}"),
        other => panic!("an item over 400 KB: {other:?}"),
    }
    assert!(stack.items().await.is_empty(), "nothing was written");
    // DynamoDB takes what the check lets through.
    build.metadata = "m".repeat(shuttle_adapters::dynamodb::MAX_ITEM_BYTES - 2048);
    assert!(store.insert(&build).await.unwrap());
    build.human_readable_info = "i".repeat(4096);
    assert!(matches!(store.update(&build).await, Err(StoreError::TooLarge { .. })), "an update over the limit too");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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

/// A build with every optional field set, as the poller leaves one that timed out.
fn a_build_with_every_field() -> shuttle_core::record::BuildRecord {
    use shuttle_core::record::{Delivery, Lease, StatusEvent};
    let mut build = record("shape", Some(7), 1_700_000_000_000);
    build.state = BuildState::TimedOut;
    build.stop = Some(shuttle_core::state::StopIntent::Timeout);
    build.failure = Some("the build ran longer than 20 min".into());
    build.updated_at_ms = 1_700_000_100_000;
    let progress = &mut build.progress;
    progress.round = 4;
    progress.lease = Some(Lease { owner: "poll-1".into(), until_ms: 1_700_000_200_000 });
    progress.triggered_at_ms = Some(1_700_000_001_000);
    progress.queue_item = Some(12);
    progress.jenkins_number = Some(7);
    progress.started_at_ms = Some(1_700_000_002_000);
    progress.log_cursor = 300;
    progress.archive_len = 320;
    progress.deliveries.events = vec![StatusEvent { state: BuildState::TimedOut, number: Some(7) }];
    progress.deliveries.status = vec![Delivery { done: 1, ..Delivery::default() }];
    build
}

/// Items already in a table stay readable, and new ones keep their shape: every attribute's
/// name and type (S, N, B), as the indexes, the TTL and earlier releases read them.
#[tokio::test]
async fn dynamodb_items_keep_their_attribute_names_and_types() {
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue::{B, N, S};
    let stack = Stack::new().await;
    let store = store(&stack);
    let build = a_build_with_every_field();
    store.insert(&build).await.unwrap();
    let id = build.source_id.to_string();
    let expected = std::collections::HashMap::from([
        ("source_id", S(id.clone())),
        ("kind", S("legacy".into())),
        ("build_key", S("key".into())),
        ("app_key", S("shape".into())),
        ("metadata", S("meta é \"x\"".into())),
        ("info", S("Build #3".into())),
        ("state", S("timed_out".into())),
        ("created_at", N("1700000000000".into())),
        ("updated_at", N("1700000100000".into())),
        ("version", N("0".into())),
        ("spec", B(Blob::new(vec![1, 2, 3, 0, 255]))),
        ("number", N("7".into())),
        ("app_number", S("shape#7".into())),
        ("stop", S("timeout".into())),
        ("failure", S("the build ran longer than 20 min".into())),
        ("round", N("4".into())),
        ("polled_at", N("1700000000000".into())),
        ("log_cursor", N("300".into())),
        ("archive_len", N("320".into())),
        ("expires_at", N((1_700_000_100 + RETENTION.as_secs()).to_string())),
        ("deliveries", S(r#"{"events":[{"state":"timed_out","number":7}],"status":[{"done":1}]}"#.into())),
        ("lease_owner", S("poll-1".into())),
        ("lease_until", N("1700000200000".into())),
        ("triggered_at", N("1700000001000".into())),
        ("queue_item", N("12".into())),
        ("jenkins_number", N("7".into())),
        ("started_at", N("1700000002000".into())),
    ]);
    let items = stack.items().await;
    let stored: std::collections::HashMap<&str, _> = items[0].iter().map(|(name, value)| (name.as_str(), value.clone())).collect();
    assert_eq!(stored, expected);
    // Written as an earlier release wrote it, with the attributes it had: read back the same.
    let raw = expected.into_iter().map(|(name, value)| (name.to_owned(), value));
    let again = Uuid::new_v4();
    let raw = raw.map(|(name, value)| if name == "source_id" { (name, S(again.to_string())) } else { (name, value) });
    stack.dynamodb.put_item().table_name(&stack.resources.table_name).set_item(Some(raw.collect())).send().await.unwrap();
    let read = store.get(again).await.unwrap().expect("the item written by hand");
    assert_eq!(read, shuttle_core::record::BuildRecord { source_id: again, ..build });
}

/// Issue 20: one build that cannot be read (a hand-edited item, a release's bug) is logged and
/// skipped by the scheduled re-drive's query; it does not keep the other stale builds from it.
#[tokio::test]
async fn an_unreadable_build_is_skipped_among_the_stale_ones() {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let stack = Stack::new().await;
    let store = store(&stack);
    let readable = record("stale", None, 20);
    store.insert(&readable).await.unwrap();
    let unreadable = std::collections::HashMap::from([
        ("source_id".to_owned(), S(Uuid::new_v4().to_string())),
        ("active".to_owned(), S("1".into())),
        ("polled_at".to_owned(), N("10".into())),
        ("state".to_owned(), S("no such state".into())),
    ]);
    stack.dynamodb.put_item().table_name(&stack.resources.table_name).set_item(Some(unreadable)).send().await.unwrap();
    let stale = store.stale_builds(100, 1_000, 10).await.expect("the readable builds, not an error");
    assert_eq!(stale.iter().map(|b| b.source_id).collect::<Vec<_>>(), vec![readable.source_id]);
}
