use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use super::*;
use crate::fakes::{fakes, Fakes, MemorySources, RecordingWebhooks, ReversingSealer};
use crate::ids::v2_source_id;
use crate::jenkins::{JenkinsError, LogWindow, QueueItem};
use crate::ports::BuildStore;
use crate::ports::{Answer, FetchError, KafkaMessage, SourceStore};
use crate::record::Lease;

struct Unreachable;

#[async_trait::async_trait]
impl SourceFetcher for Unreachable {
    async fn fetch(&self, url: &str, _source_id: Uuid) -> Result<(), FetchError> {
        Err(FetchError::Failed(format!("the sources at {} answered 404 Not Found", redact(url))))
    }

    async fn check_registry(&self, registry: &str) -> Result<(), FetchError> {
        match registry {
            "rebinding.example" => Err(FetchError::Failed("the registry rebinding.example is refused: it resolves to private".into())),
            _ => Ok(()),
        }
    }
}

fn poller() -> (Poller, Fakes) {
    let fake = fakes();
    let webhooks = Arc::new(RecordingWebhooks::default()).webhooks();
    (fake.poller(Arc::new(Unreachable), webhooks), fake)
}

fn v2_body(source: &str) -> Vec<u8> {
    json!({"source": {"url": source}, "destination": {"url": "docker://registry.example/org/app:1"}}).to_string().into_bytes()
}

async fn written(sink: &mut ArchiveSink<'_>, parts: &[&'static [u8]]) -> u64 {
    for part in parts {
        sink.append(Bytes::from_static(part)).await.unwrap();
    }
    sink.finish().await.unwrap()
}

/// A build, its spec and webhooks without targets: what an archive sink's relay needs.
async fn a_build() -> (BuildSpec, BuildRecord, Webhooks) {
    let fake = fakes();
    fake.create().v2("app", "1", &v2_body("docker://registry.example/org/base:1")).await.unwrap();
    let record = fake.store.get(v2_source_id("app", "1")).await.unwrap().unwrap();
    let spec = open_spec(&ReversingSealer, &record).await.unwrap();
    (spec, record, Arc::new(RecordingWebhooks::default()).webhooks())
}

#[tokio::test]
async fn the_archive_keeps_what_an_interrupted_poll_wrote_and_adds_only_the_rest() {
    let (spec, record, webhooks) = a_build().await;
    let sources = MemorySources::default();
    let relay = Relay::new(&webhooks, &sources, None, &spec, "logs", Arc::new(record.clone()), Duration::ZERO);
    let id = Uuid::new_v4();
    // An interrupted poll archived the first 6 bytes of the log, then died before saving.
    assert_eq!(written(&mut ArchiveSink::new(&sources, &relay, id, 0), &[b"line1\n"]).await, 6);
    // The next poll reads from the same cursor and gets more.
    let mut sink = ArchiveSink::new(&sources, &relay, id, 0);
    assert_eq!(written(&mut sink, &[b"line1\nline2\n"]).await, 12);
    assert_eq!(sink.skip, 0);
    assert_eq!(sources.log(id), b"line1\nline2\n");
}

#[tokio::test]
async fn a_longer_chunk_already_archived_moves_the_cursor_past_it() {
    let (spec, record, webhooks) = a_build().await;
    let sources = MemorySources::default();
    let relay = Relay::new(&webhooks, &sources, None, &spec, "logs", Arc::new(record.clone()), Duration::ZERO);
    let id = Uuid::new_v4();
    assert_eq!(written(&mut ArchiveSink::new(&sources, &relay, id, 0), &[b"line1\nline2\nline3\n"]).await, 18);
    // A poll that read less from the same cursor (the log was shorter for it).
    let mut sink = ArchiveSink::new(&sources, &relay, id, 0);
    assert_eq!(written(&mut sink, &[b"line1\n"]).await, 18);
    assert_eq!(sink.skip, 12, "the next 12 bytes from Jenkins are archived already");
    assert_eq!(sources.log(id), b"line1\nline2\nline3\n", "no byte archived twice");
}

#[tokio::test]
async fn a_large_read_is_archived_in_chunks_of_at_most_the_chunk_size() {
    let (spec, record, webhooks) = a_build().await;
    let sources = MemorySources::default();
    let relay = Relay::new(&webhooks, &sources, None, &spec, "logs", Arc::new(record.clone()), Duration::ZERO);
    let id = Uuid::new_v4();
    let log: Vec<u8> = (0..3 * ARCHIVE_CHUNK_BYTES + 1000).map(|i| b"0123456789\n"[i % 11]).collect();
    let mut sink = ArchiveSink::new(&sources, &relay, id, 0);
    // As Jenkins' body arrives: parts of any size, one of them larger than a chunk.
    for part in [&log[..1000], &log[1000..ARCHIVE_CHUNK_BYTES + 5000], &log[ARCHIVE_CHUNK_BYTES + 5000..]] {
        sink.append(Bytes::copy_from_slice(part)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), log.len() as u64);
    let chunks: Vec<(u64, usize)> = sources.logs.lock().unwrap()[&id].iter().map(|(at, bytes)| (*at, bytes.len())).collect();
    let size = ARCHIVE_CHUNK_BYTES as u64;
    assert_eq!(chunks, [(0, ARCHIVE_CHUNK_BYTES), (size, ARCHIVE_CHUNK_BYTES), (2 * size, ARCHIVE_CHUNK_BYTES), (3 * size, 1000)]);
    assert_eq!(sources.log(id), log);
}

/// A v2 build of `fake` whose log goes to one Kafka target: its id, record and spec.
async fn a_build_logging_to_kafka(fake: &Fakes) -> (Uuid, BuildRecord, BuildSpec) {
    let body = json!({
        "source": {"url": "docker://registry.example/org/base:1"}, "destination": {"url": "docker://registry.example/org/app:1"},
        "webhooks": {"logs": ["kafka://k:9092/logs"]},
    });
    fake.create().v2("app", "1", body.to_string().as_bytes()).await.unwrap();
    let id = v2_source_id("app", "1");
    let record = fake.store.get(id).await.unwrap().unwrap();
    let spec = open_spec(&ReversingSealer, &record).await.unwrap();
    (id, record, spec)
}

/// Waits (10 s at most) until `recording` holds a Kafka message whose payload is `payload`, then
/// closes `relay`. Whether the message came.
async fn kafka_received(relay: &Relay<'_>, recording: &RecordingWebhooks, payload: &[u8]) -> bool {
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        while !recording.kafka.lock().unwrap().iter().any(|(_, message)| message.payload == payload) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    relay.close();
    received.is_ok()
}

#[tokio::test]
async fn archived_log_goes_to_the_log_targets_before_the_build_is_saved() {
    let fake = fakes();
    let (id, record, spec) = a_build_logging_to_kafka(&fake).await;
    let recording = Arc::new(RecordingWebhooks::default());
    let webhooks = recording.webhooks();
    let relay = Relay::new(&webhooks, fake.sources.as_ref(), None, &spec, "logs", Arc::new(record.clone()), Duration::ZERO);
    let sent_unsaved = async {
        // A read archived, and the build not saved yet (a poll saves both positions after the read).
        written(&mut ArchiveSink::new(fake.sources.as_ref(), &relay, id, 0), &[b"line1\n"]).await;
        kafka_received(&relay, &recording, b"line1").await
    };
    let ((), sent) = tokio::join!(relay.run(), sent_unsaved);
    assert!(sent, "the archived line reached the log target without waiting for the save");
    assert_eq!(&recording.kafka.lock().unwrap()[0].1.payload[..], b"line1");
    assert_eq!(fake.store.get(id).await.unwrap().unwrap().progress.archive_len, 0, "the build was not saved meanwhile");
    let mut positions = record.progress.deliveries.clone();
    relay.positions(&mut positions);
    assert_eq!(positions.logs[0].done, 6, "the position saved next is past the line");
}

#[tokio::test]
async fn a_line_begun_in_an_earlier_poll_is_read_back_whole_from_the_archive() {
    // An earlier poll archived a line and the start of the next, and delivered nothing; this poll
    // archives the rest. The feed starts inside the line, which only a read-back from the archive
    // that goes past the feed's start gets whole.
    let (sent, messages, _) = relayed_to_kafka(b"first\nhalf of a li", b"ne\nend\n").await;
    assert!(sent, "the lines after the one cut by the feed's start reached Kafka while the build runs");
    let payloads: Vec<Bytes> = messages.into_iter().map(|message| message.payload).collect();
    assert_eq!(payloads, [&b"first"[..], b"half of a line", b"end"], "each line once, whole, in order");
}

/// What a Kafka log target of a running build was sent while one poll archived `log` in one
/// read after the `earlier` log an earlier poll archived (and delivered none of), the relay
/// running until the message `end` came (10 s at most): whether it came, the messages, and the
/// target's position to be saved.
async fn relayed_to_kafka(earlier: &'static [u8], log: &[u8]) -> (bool, Vec<KafkaMessage>, u64) {
    let (sent, messages, position, _) = relayed_to_kafka_in_calls(earlier, log).await;
    (sent, messages, position)
}

/// As [`relayed_to_kafka`], with how many messages each produce call carried.
async fn relayed_to_kafka_in_calls(earlier: &'static [u8], log: &[u8]) -> (bool, Vec<KafkaMessage>, u64, Vec<usize>) {
    let fake = fakes();
    let (id, mut record, spec) = a_build_logging_to_kafka(&fake).await;
    if !earlier.is_empty() {
        fake.sources.put_log_chunk(id, 0, Bytes::from_static(earlier)).await.unwrap();
        record.progress.archive_len = earlier.len() as u64;
    }
    let recording = Arc::new(RecordingWebhooks::default());
    let webhooks = recording.webhooks();
    let relay = Relay::new(&webhooks, fake.sources.as_ref(), None, &spec, "logs", Arc::new(record.clone()), Duration::ZERO);
    let sent = async {
        let mut sink = ArchiveSink::new(fake.sources.as_ref(), &relay, id, earlier.len() as u64);
        sink.append(Bytes::copy_from_slice(log)).await.unwrap();
        assert_eq!(sink.finish().await.unwrap(), (earlier.len() + log.len()) as u64);
        kafka_received(&relay, &recording, b"end").await
    };
    let ((), sent) = tokio::join!(relay.run(), sent);
    let messages = recording.kafka.lock().unwrap().iter().map(|(_, message)| message.clone()).collect();
    let mut positions = record.progress.deliveries.clone();
    relay.positions(&mut positions);
    let calls = recording.kafka_calls.lock().unwrap().clone();
    (sent, messages, positions.logs[0].done, calls)
}

#[tokio::test]
async fn a_read_of_many_short_lines_goes_to_kafka_in_bounded_calls_sharing_one_key() {
    let lines = 5_000;
    let mut log: Vec<u8> = (0..lines).flat_map(|i| format!("{i}\n").into_bytes()).collect();
    log.extend_from_slice(b"end\n");
    let (sent, messages, position, calls) = relayed_to_kafka_in_calls(b"", &log).await;
    assert!(sent);
    assert!(calls.iter().all(|&n| n <= 2_000) && calls.len() >= 3, "messages per call: {calls:?}");
    assert_eq!(messages.len(), lines + 1, "every line, once");
    assert!(messages.iter().enumerate().take(lines).all(|(i, m)| m.payload == i.to_string().as_bytes()), "in order");
    let mut at = 0;
    for &count in &calls {
        let call = &messages[at..at + count];
        assert!(call.iter().all(|m| Arc::ptr_eq(&m.key, &call[0].key)), "one key a call, shared, not copied per line");
        at += count;
    }
    assert_eq!(position, log.len() as u64);
}

#[tokio::test]
async fn a_line_across_two_archive_chunks_reaches_kafka_whole() {
    // Lines of 1,000 bytes: the 1,049th starts before the first chunk's end (1 MiB) and ends after it.
    let lines = 1100;
    let mut log: Vec<u8> = (0..lines).flat_map(|i| format!("{i:0>999}\n").into_bytes()).collect();
    log.extend_from_slice(b"end\n");
    let (sent, messages, _) = relayed_to_kafka(b"", &log).await;
    assert!(sent, "the lines after the one across the chunks reached Kafka while the build runs");
    assert_eq!(messages.len(), lines + 1, "one message a line");
    assert_eq!(messages[1048].payload, format!("{:0>999}", 1048).as_bytes(), "the line across the chunks, whole");
}

#[tokio::test]
async fn a_line_longer_than_a_read_of_the_log_reaches_kafka_in_pieces_while_the_build_runs() {
    // 2.5 MiB without a newline (more than one read of the log, and than a Kafka message may
    // hold), then a short line.
    let mut log: Vec<u8> = (0..5 * 512 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    log.extend_from_slice(b"end\n");
    let (sent, messages, position) = relayed_to_kafka(b"", &log).await;
    assert!(sent, "the line after the long one reached Kafka while the build runs");
    // What a consumer does: each message's text at its `log-offset`, a newline where the next
    // offset leaves one byte between them (the newline the message does not carry).
    let mut received = Vec::new();
    for message in &messages {
        let offset: usize = message.headers.iter().find(|(name, _)| name == "log-offset").unwrap().1.parse().unwrap();
        if offset == received.len() + 1 {
            received.push(b'\n');
        }
        assert_eq!(offset, received.len(), "the messages follow each other");
        assert!(message.payload.len() < 1_000_000, "every message fits Kafka's default limit");
        received.extend_from_slice(&message.payload);
    }
    received.push(b'\n');
    assert_eq!(received, log, "every byte of the log reached Kafka, in order");
    assert_eq!(position, log.len() as u64);
}

#[tokio::test]
async fn sources_that_cannot_be_cached_fail_the_build_with_the_reason_in_its_log() {
    let (poller, fake) = poller();
    let id = v2_source_id("app", "1");
    fake.create().v2("app", "1", &v2_body("https://user:secret@src.example/a.tgz")).await.unwrap();
    let polled = poller.poll(&PollMessage { source_id: id, round: 0 }).await.unwrap();
    assert_eq!(polled, Polled::Moved { state: BuildState::Failed, next: None });
    let record = fake.store.get(id).await.unwrap().unwrap();
    let log = String::from_utf8(fake.sources.log(id)).unwrap();
    assert_eq!(
        log,
        "[build shuttle] the sources could not be cached: the sources at https://user:***@src.example/a.tgz answered 404 Not Found\n"
    );
    assert_eq!(record.progress.archive_len, log.len() as u64);
    assert!(record.progress.lease.is_none());
    assert!(fake.jenkins.calls.lock().unwrap().is_empty(), "nothing was triggered");
}

#[tokio::test]
async fn a_build_stopped_while_pending_is_never_triggered() {
    let (poller, fake) = poller();
    let id = v2_source_id("app", "1");
    fake.create().v2("app", "1", &v2_body("docker://registry.example/org/base:1")).await.unwrap();
    let mut record = fake.store.get(id).await.unwrap().unwrap();
    (record.state, record.stop) = (BuildState::Pending, Some(StopIntent::Stop));
    fake.store.builds.lock().unwrap().insert(id, record);
    let polled = poller.poll(&PollMessage { source_id: id, round: 0 }).await.unwrap();
    assert_eq!(polled, Polled::Moved { state: BuildState::Stopped, next: None });
    assert!(fake.jenkins.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn messages_of_another_round_or_for_a_leased_build_are_dropped() {
    let (poller, fake) = poller();
    let id = v2_source_id("app", "1");
    fake.create().v2("app", "1", &v2_body("docker://registry.example/org/base:1")).await.unwrap();
    assert!(matches!(poller.poll(&PollMessage { source_id: id, round: 1 }).await.unwrap(), Polled::Dropped(_)));
    let mut record = fake.store.get(id).await.unwrap().unwrap();
    record.progress.lease = Some(Lease { owner: "another poll".into(), until_ms: now_ms() + 60_000 });
    fake.store.builds.lock().unwrap().insert(id, record);
    assert!(matches!(poller.poll(&PollMessage { source_id: id, round: 0 }).await.unwrap(), Polled::Dropped(_)));
    assert_eq!(fake.store.get(id).await.unwrap().unwrap().state, BuildState::Accepted, "untouched");
}

#[tokio::test]
async fn the_schedule_requeues_stale_builds_with_their_round_and_fails_stuck_ones() {
    let (poller, fake) = poller();
    fake.create().v2("app", "stale", &v2_body("docker://registry.example/org/base:1")).await.unwrap();
    fake.create().v2("app", "stuck", &v2_body("docker://registry.example/org/base:1")).await.unwrap();
    fake.create().v2("app", "fresh", &v2_body("docker://registry.example/org/base:1")).await.unwrap();
    let (stale, stuck) = (v2_source_id("app", "stale"), v2_source_id("app", "stuck"));
    let now = now_ms();
    {
        let mut builds = fake.store.builds.lock().unwrap();
        let record = builds.get_mut(&stale).unwrap();
        (record.progress.round, record.progress.polled_at_ms) = (4, now - 600_000);
        let record = builds.get_mut(&stuck).unwrap();
        (record.created_at_ms, record.progress.polled_at_ms) = (now - 10 * 3_600_000, now - 600_000);
    }
    fake.queue.sent.lock().unwrap().clear();
    let redriven = poller.redrive(Duration::from_secs(300)).await.unwrap();
    assert_eq!(redriven, Redriven { requeued: vec![stale], failed: vec![stuck], abandoned: vec![] });
    assert_eq!(*fake.queue.sent.lock().unwrap(), vec![(PollMessage { source_id: stale, round: 4 }, Duration::ZERO)]);
    let stuck = fake.store.get(stuck).await.unwrap().unwrap();
    assert_eq!(stuck.state, BuildState::Failed);
    assert!(stuck.failure.unwrap().contains("gave up"));
}

#[tokio::test]
async fn the_schedule_gives_up_the_deliveries_of_a_finished_build_no_poll_could_save_for_hours() {
    let (poller, fake) = poller();
    let body = |n: &str| {
        json!({"source": {"url": "docker://r.example/base:1"}, "destination": {"url": format!("docker://r.example/app:{n}")}, "webhooks": {"status": ["https://hooks.example/s"]}})
            .to_string()
            .into_bytes()
    };
    fake.create().v2("app", "dead", &body("1")).await.unwrap();
    fake.create().v2("app", "slow", &body("2")).await.unwrap();
    let (dead, slow) = (v2_source_id("app", "dead"), v2_source_id("app", "slow"));
    let now = now_ms();
    for (id, idle_ms) in [(dead, 3 * 3_600_000), (slow, 3_600_000)] {
        let mut builds = fake.store.builds.lock().unwrap();
        let record = builds.get_mut(&id).unwrap();
        record.move_to(BuildState::Failed);
        (record.updated_at_ms, record.progress.polled_at_ms) = (now - idle_ms, now - idle_ms);
        assert!(record.needs_polling(), "its status target has not been told");
    }
    fake.queue.sent.lock().unwrap().clear();
    let redriven = poller.redrive(Duration::from_secs(300)).await.unwrap();
    assert_eq!(redriven, Redriven { requeued: vec![slow], failed: vec![], abandoned: vec![dead] });
    let dead = fake.store.get(dead).await.unwrap().unwrap();
    assert!(!dead.needs_polling(), "given up: the schedule comes back for it no more");
    assert!(dead.progress.deliveries.status.iter().all(|t| t.closed));
    assert_eq!(poller.redrive(Duration::from_secs(300)).await.unwrap().abandoned, Vec::<Uuid>::new());
}

/// A poller whose webhooks are recorded, and its fakes.
fn poller_with_webhooks() -> (Poller, Fakes, Arc<RecordingWebhooks>) {
    let fake = fakes();
    let webhooks = Arc::new(RecordingWebhooks::default());
    (fake.poller(Arc::new(Unreachable), webhooks.webhooks()), fake, webhooks)
}

#[tokio::test]
async fn a_status_answered_500_is_resent_by_a_later_poll_with_the_same_id_then_the_rest_in_order() {
    let (poller, fake, webhooks) = poller_with_webhooks();
    let id = v2_source_id("app", "1");
    let body = json!({
        "source": {"url": "https://src.example/a.tgz"}, "destination": {"url": "docker://registry.example/org/app:1"},
        "metadata": "meta", "webhooks": {"status": "https://hooks.example/status", "logs": ["https://hooks.example/logs", "kafka://k:9092/logs"]},
    });
    fake.create().v2("app", "1", body.to_string().as_bytes()).await.unwrap();
    webhooks.answers.lock().unwrap().push_back(Answer { status: 500, retry_after: None });
    let polled = poller.poll(&PollMessage { source_id: id, round: 0 }).await.unwrap();
    let Polled::Moved { state: BuildState::Failed, next: Some(delay) } = polled else { panic!("{polled:?}") };
    assert!(delay >= Duration::from_millis(400), "the retry waits: {delay:?}");
    let record = fake.store.get(id).await.unwrap().unwrap();
    assert!(record.needs_polling(), "a finished build is polled while a target waits");
    assert_eq!(record.progress.deliveries.status[0].done, 0);
    assert_eq!(record.progress.deliveries.status[0].attempts, 1);
    let log = fake.sources.log(id);
    assert_eq!(webhooks.streams.lock().unwrap()[0].body, log, "the log target has the whole log");
    let lines = webhooks.kafka.lock().unwrap().clone();
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0].0.as_str(), &*lines[0].1.key), ("logs", "meta"));
    assert_eq!(&lines[0].1.payload[..], &log[..log.len() - 1], "one message per line, without its newline");

    tokio::time::sleep(delay).await;
    let polled = poller.poll(&PollMessage { source_id: id, round: record.progress.round }).await.unwrap();
    assert_eq!(polled, Polled::Moved { state: BuildState::Failed, next: None });
    let posts = webhooks.posts.lock().unwrap().clone();
    let bodies: Vec<serde_json::Value> = posts.iter().map(|p| serde_json::from_slice(&p.body).unwrap()).collect();
    let status = |s: &str| json!({"id": "meta", "type": "build system", "building": false, "status": s});
    // The end carries the digest of the log the log target received.
    let sha256: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&log).iter().map(|b| format!("{b:02x}")).collect()
    };
    let mut failed = status("failed");
    failed["log"] = json!({"bytes": log.len(), "sha256": sha256});
    assert_eq!(bodies, vec![status("pending"), status("pending"), failed]);
    assert!(!fake.store.get(id).await.unwrap().unwrap().needs_polling());
    assert_eq!(webhooks.streams.lock().unwrap().len(), 1, "a log delivered to the end is not sent again");
}

#[test]
fn a_legacy_callback_hears_pending_once_the_number_is_known_then_the_end() {
    let event = |state, number| crate::record::StatusEvent { state, number };
    let mut deliveries = crate::record::Deliveries::for_targets([true, false], 0);
    deliveries.events = vec![
        event(BuildState::Pending, None),
        event(BuildState::Queued, None),
        event(BuildState::Building, Some(3)),
        event(BuildState::Succeeded, Some(3)),
    ];
    let seqs = |target| deliveries.events_for(target).into_iter().map(|notice| notice.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&deliveries.status[0]), vec![2, 3], "the callback");
    assert_eq!(seqs(&deliveries.status[1]), vec![0, 1, 2, 3], "a v2 target");
}

#[test]
fn a_legacy_callback_of_a_build_that_ends_before_a_numbered_pending_hears_pending_first() {
    use crate::record::{Deliveries, StatusEvent};
    let event = |state, number| StatusEvent { state, number };
    let told = |events: Vec<StatusEvent>| {
        let mut deliveries = Deliveries::for_targets([true], 0);
        deliveries.events = events;
        deliveries.events_for(&deliveries.status[0])
    };
    // Failed at once, before Jenkins numbered it: `pending` then `failed`, both build 0.
    let failed = told(vec![event(BuildState::Pending, None), event(BuildState::Failed, None)]);
    let states: Vec<_> = failed.iter().map(|n| (n.event.state, n.event.number, n.implied)).collect();
    assert_eq!(states, [(BuildState::Pending, None, true), (BuildState::Failed, None, false)]);
    let id = Uuid::nil();
    assert_ne!(failed[0].webhook_id(id), failed[1].webhook_id(id), "each notice has its own webhook-id");
    // Finished between two polls: numbered only at its end, the implied pending carries the number.
    let quick = told(vec![event(BuildState::Pending, None), event(BuildState::Queued, None), event(BuildState::Succeeded, Some(4))]);
    assert_eq!(
        quick.iter().map(|n| (n.event.state, n.event.number)).collect::<Vec<_>>(),
        [(BuildState::Pending, Some(4)), (BuildState::Succeeded, Some(4))]
    );
    // Stopped before it reached Jenkins: its one event is the end.
    assert_eq!(told(vec![event(BuildState::Stopped, Some(2))]).len(), 2);
    // Still running and unnumbered: nothing yet.
    assert!(told(vec![event(BuildState::Pending, None), event(BuildState::Queued, None)]).is_empty());
}

/// A v2 build whose sources cannot be fetched (it fails at once), with these webhooks.
async fn failing_build_with(fake: &Fakes, webhooks: serde_json::Value) -> Uuid {
    let body = json!({
        "source": {"url": "https://src.example/a.tgz"}, "destination": {"url": "docker://registry.example/org/app:1"},
        "metadata": "meta", "webhooks": webhooks,
    });
    fake.create().v2("app", "1", body.to_string().as_bytes()).await.unwrap();
    v2_source_id("app", "1")
}

#[tokio::test]
async fn a_status_retry_waits_as_long_as_retry_after_says() {
    let (poller, fake, webhooks) = poller_with_webhooks();
    let id = failing_build_with(&fake, json!({"status": "https://hooks.example/status"})).await;
    webhooks.answers.lock().unwrap().push_back(Answer { status: 503, retry_after: Some("30".into()) });
    let before = now_ms();
    let polled = poller.poll(&PollMessage { source_id: id, round: 0 }).await.unwrap();
    let Polled::Moved { next: Some(delay), .. } = polled else { panic!("{polled:?}") };
    assert!(delay >= Duration::from_secs(29), "the next poll waits for the receiver: {delay:?}");
    let position = fake.store.get(id).await.unwrap().unwrap().progress.deliveries.status[0];
    assert!(position.retry_at_ms >= before + 30_000, "not before Retry-After: {position:?}");
}

#[tokio::test]
async fn a_log_target_answering_403_is_given_up_not_retried() {
    let (poller, fake, webhooks) = poller_with_webhooks();
    let id = failing_build_with(&fake, json!({"logs": "https://hooks.example/logs"})).await;
    webhooks.stream_answers.lock().unwrap().push_back(403);
    let polled = poller.poll(&PollMessage { source_id: id, round: 0 }).await.unwrap();
    assert_eq!(polled, Polled::Moved { state: BuildState::Failed, next: None }, "nothing left to deliver");
    let record = fake.store.get(id).await.unwrap().unwrap();
    assert!(record.progress.deliveries.logs[0].closed, "a 403 is final");
    assert_eq!(record.progress.deliveries.logs[0].done, 0, "and acknowledged nothing");
    assert_eq!(webhooks.streams.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_legacy_build_naming_refused_hosts_fails_with_the_reasons_in_its_log() {
    let (poller, fake) = poller();
    let build_uuid = "0b9e8c2a-6c84-4a3f-9a55-6d6a4c1b2e10";
    let body = json!({
        "app": "myapp", "space": "default", "app_uuid": "7d1f3b5c-2a4e-4c6d-8e0f-1a2b3c4d5e6f", "build_uuid": build_uuid,
        "sources": "docker://registry.example/org/base:3", "gm_registry_host": "registry.example", "gm_registry_repo": "org",
        "callback": "http://token:canarypw@2852039166/cb", "kafka_hosts": "kafka.example:9092,0x7f.1:9092",
    });
    fake.create().legacy(body.to_string().as_bytes()).await.unwrap();
    let id = Uuid::parse_str(build_uuid).unwrap();
    let polled = poller.poll(&PollMessage { source_id: id, round: 0 }).await.unwrap();
    assert!(matches!(polled, Polled::Moved { state: BuildState::Failed, .. }), "{polled:?}");
    let log = String::from_utf8(fake.sources.log(id)).unwrap();
    assert_eq!(
        log,
        "[build shuttle] callback http://token:***@2852039166/cb is refused: 169.254.169.254 is link-local (instance metadata); \
         kafka_hosts 0x7f.1:9092 is refused: 127.0.0.1 is loopback\n"
    );
    assert_eq!(fake.store.get(id).await.unwrap().unwrap().failure.as_deref(), Some(log.trim_start_matches("[build shuttle] ").trim_end()));
    assert!(fake.jenkins.calls.lock().unwrap().is_empty(), "nothing was triggered");
}

#[tokio::test]
async fn a_registry_resolving_to_a_refused_address_fails_the_build_before_jenkins() {
    let (poller, fake) = poller();
    let body =
        json!({"source": {"url": "docker://registry.example/org/base:1"}, "destination": {"url": "docker://rebinding.example/org/app:1"}});
    fake.create().v2("app", "1", body.to_string().as_bytes()).await.unwrap();
    let id = v2_source_id("app", "1");
    let polled = poller.poll(&PollMessage { source_id: id, round: 0 }).await.unwrap();
    assert!(matches!(polled, Polled::Moved { state: BuildState::Failed, .. }), "{polled:?}");
    let log = String::from_utf8(fake.sources.log(id)).unwrap();
    assert_eq!(log, "[build shuttle] the registry rebinding.example is refused: it resolves to private\n");
    assert!(fake.jenkins.calls.lock().unwrap().is_empty(), "nothing was triggered");
}

#[tokio::test]
async fn a_status_target_the_guard_refuses_is_given_up_at_once_and_the_others_are_told() {
    let (poller, fake, webhooks) = poller_with_webhooks();
    webhooks.refused.lock().unwrap().push("https://rebinding.example/status".to_owned());
    let targets = json!({"status": ["https://rebinding.example/status", "https://hooks.example/status"]});
    let id = failing_build_with(&fake, targets).await;
    let polled = poller.poll(&PollMessage { source_id: id, round: 0 }).await.unwrap();
    assert_eq!(polled, Polled::Moved { state: BuildState::Failed, next: None }, "no retry is scheduled");
    let deliveries = fake.store.get(id).await.unwrap().unwrap().progress.deliveries;
    assert!(deliveries.status[0].closed && deliveries.status[0].attempts == 0, "refused is final: {:?}", deliveries.status[0]);
    let posts = webhooks.posts.lock().unwrap().clone();
    assert!(!posts.is_empty() && posts.iter().all(|sent| sent.url == "https://hooks.example/status"), "{posts:?}");
}

/// Jenkins as seen by a poll that loses its lease while it reads the log: the read returns
/// text, and meanwhile another poll has taken the build over.
struct LeaseTakenDuringTheRead {
    store: Arc<crate::fakes::MemoryStore>,
    inner: crate::fakes::FakeJenkins,
}

#[async_trait::async_trait]
impl crate::ports::Jenkins for LeaseTakenDuringTheRead {
    async fn ensure_job(&self, job: &str) -> Result<(), JenkinsError> {
        self.inner.ensure_job(job).await
    }
    async fn trigger(&self, job: &str, parameters: &[(String, String)]) -> Result<u64, JenkinsError> {
        self.inner.trigger(job, parameters).await
    }
    async fn queue_item(&self, queue_id: u64) -> Result<QueueItem, JenkinsError> {
        self.inner.queue_item(queue_id).await
    }
    async fn find_build(&self, job: &str, build_uuid: &str) -> Result<Option<u64>, JenkinsError> {
        self.inner.find_build(job, build_uuid).await
    }
    async fn find_queued(&self, job: &str, build_uuid: &str) -> Result<Option<u64>, JenkinsError> {
        self.inner.find_queued(job, build_uuid).await
    }
    async fn build_status(&self, job: &str, number: u64) -> Result<crate::jenkins::BuildStatus, JenkinsError> {
        self.inner.build_status(job, number).await
    }
    async fn read_log(
        &self,
        _job: &str,
        _number: u64,
        start: u64,
        sink: &mut dyn crate::ports::LogSink,
    ) -> Result<LogWindow, JenkinsError> {
        sink.write(Bytes::from_static(b"step 1\n")).await?;
        let mut builds = self.store.builds.lock().unwrap();
        for build in builds.values_mut() {
            build.progress.lease = Some(Lease { owner: "another poll".into(), until_ms: now_ms() + 60_000 });
            build.version += 1;
        }
        Ok(LogWindow { start, next_start: start + 7, more_data: true })
    }
    async fn stop_build(&self, job: &str, number: u64) -> Result<(), JenkinsError> {
        self.inner.stop_build(job, number).await
    }
    async fn cancel_queue_item(&self, queue_id: u64) -> Result<(), JenkinsError> {
        self.inner.cancel_queue_item(queue_id).await
    }
    async fn delete_job(&self, job: &str) -> Result<(), JenkinsError> {
        self.inner.delete_job(job).await
    }
}

#[tokio::test]
async fn a_lease_lost_during_a_log_read_drops_the_message_instead_of_retrying_it() {
    let fake = fakes();
    let mut poller = fake.poller(Arc::new(Unreachable), Arc::new(RecordingWebhooks::default()).webhooks());
    poller.jenkins = Arc::new(LeaseTakenDuringTheRead { store: fake.store.clone(), inner: Default::default() });
    let id = v2_source_id("app", "1");
    fake.create().v2("app", "1", &v2_body("docker://registry.example/org/base:1")).await.unwrap();
    let mut record = fake.store.get(id).await.unwrap().unwrap();
    record.state = BuildState::Building;
    (record.progress.queue_item, record.progress.jenkins_number, record.progress.started_at_ms) = (Some(1), Some(1), Some(now_ms()));
    fake.store.builds.lock().unwrap().insert(id, record);

    let polled = poller.poll(&PollMessage { source_id: id, round: 0 }).await;
    assert!(matches!(polled, Ok(Polled::Dropped(_))), "the other poll has the build: {polled:?}");
    let now = fake.store.get(id).await.unwrap().unwrap();
    assert_eq!(now.progress.lease.map(|l| l.owner).as_deref(), Some("another poll"), "its lease stands");
    assert_eq!(now.progress.log_cursor, 0, "this poll saved no position");
}

/// Downloads in `took`, counting its downloads.
struct SlowDownload {
    sources: Arc<MemorySources>,
    took: Duration,
    downloads: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl SourceFetcher for SlowDownload {
    async fn fetch(&self, _url: &str, source_id: Uuid) -> Result<(), FetchError> {
        self.downloads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(self.took).await;
        self.sources.put_source(source_id, Bytes::from_static(b"sources")).await?;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_poll_with_a_slow_download_and_a_slow_jenkins_returns_before_its_deadline_and_loses_nothing() {
    let fake = fakes();
    let id = v2_source_id("app", "1");
    fake.create().v2("app", "1", &v2_body("https://src.example/a.tgz")).await.unwrap();
    let fetcher = Arc::new(SlowDownload { sources: fake.sources.clone(), took: Duration::from_secs(50), downloads: Default::default() });
    *fake.jenkins.ensure_job_takes.lock().unwrap() = Some(Duration::from_secs(60));
    *fake.jenkins.queue_waiting.lock().unwrap() = Some("Waiting for next available executor".into());
    let poller = fake.poller(fetcher.clone(), Arc::new(RecordingWebhooks::default()).webhooks());

    // 50 s of download and 60 s of Jenkins do not fit in the function's 90 s.
    let deadline = Instant::now() + POLLER_TIMEOUT;
    let polled = poller.poll_until(&PollMessage { source_id: id, round: 0 }, deadline).await.unwrap();
    assert!(Instant::now() < deadline, "the poll returned {:?} after its deadline", Instant::now() - deadline);
    let interval = poller.policy.pacing.interval;
    assert_eq!(polled, Polled::Moved { state: BuildState::Pending, next: Some(interval) });
    let record = fake.store.get(id).await.unwrap().unwrap();
    assert!(record.progress.lease.is_none(), "the build was handed over");
    assert_eq!(record.progress.round, 1);
    assert_eq!(
        fake.queue.sent.lock().unwrap().last(),
        Some(&(PollMessage { source_id: id, round: 1 }, interval)),
        "its next poll is queued"
    );
    assert!(fake.sources.source_exists(id).await.unwrap(), "the download was kept");

    // Jenkins answers in time again: the next poll triggers the build without downloading again.
    *fake.jenkins.ensure_job_takes.lock().unwrap() = None;
    let polled = poller.poll_until(&PollMessage { source_id: id, round: 1 }, Instant::now() + POLLER_TIMEOUT).await.unwrap();
    assert_eq!(polled, Polled::Moved { state: BuildState::Queued, next: Some(interval) });
    assert_eq!(fetcher.downloads.load(std::sync::atomic::Ordering::SeqCst), 1, "downloaded once");
    assert_eq!(*fake.jenkins.calls.lock().unwrap(), ["ensure_job app", "trigger app"]);
}

#[tokio::test]
async fn a_build_whose_spec_never_opens_fails_at_once_and_is_not_polled_again() {
    let (poller, fake) = poller();
    let id = v2_source_id("app", "1");
    fake.create()
        .v2("app", "1", &json!({"source": {"url": "docker://r.example/base:1"}, "destination": {"url": "docker://r.example/app:1"}, "webhooks": {"status": ["https://hooks.example/s"]}}).to_string().into_bytes())
        .await
        .unwrap();
    // The sealed spec of another build, copied into this one's item.
    let other = ReversingSealer.seal(b"{}", Uuid::new_v4()).await.unwrap();
    fake.store.builds.lock().unwrap().get_mut(&id).unwrap().sealed_spec = Bytes::from(other);
    let polled = poller.poll(&PollMessage { source_id: id, round: 0 }).await.expect("not retried");
    assert_eq!(polled, Polled::Moved { state: BuildState::Failed, next: None });
    let record = fake.store.get(id).await.unwrap().unwrap();
    assert!(record.failure.as_deref().is_some_and(|f| f.contains("cannot be opened")), "{:?}", record.failure);
    assert!(!record.needs_polling(), "nothing left to deliver without the spec");
    assert!(record.progress.lease.is_none());
    assert!(fake.queue.sent.lock().unwrap().iter().all(|(m, _)| m.round == 0), "no next poll");
    assert!(fake.jenkins.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn jenkins_refusing_the_credentials_is_retried_until_the_queue_timeout_then_fails_the_build() {
    let fake = fakes();
    let id = v2_source_id("app", "1");
    fake.create().v2("app", "1", &v2_body("docker://registry.example/org/base:1")).await.unwrap();
    *fake.jenkins.refusing.lock().unwrap() = true;
    let poller = fake.poller(Arc::new(Unreachable), Arc::new(RecordingWebhooks::default()).webhooks());
    let interval = poller.policy.pacing.interval;

    // A token being rotated: the build waits for it.
    let polled = poller.poll(&PollMessage { source_id: id, round: 0 }).await.unwrap();
    assert_eq!(polled, Polled::Moved { state: BuildState::Pending, next: Some(interval) });

    // Still refused past QUEUE_TIMEOUT: the build fails with the reason.
    let queue_timeout = as_ms(poller.policy.queue_timeout);
    fake.store.builds.lock().unwrap().get_mut(&id).unwrap().created_at_ms -= queue_timeout + 1000;
    let polled = poller.poll(&PollMessage { source_id: id, round: 1 }).await.unwrap();
    assert_eq!(polled, Polled::Moved { state: BuildState::Failed, next: None });
    let record = fake.store.get(id).await.unwrap().unwrap();
    assert!(record.failure.as_deref().is_some_and(|f| f.contains("401")), "{:?}", record.failure);
}

#[tokio::test]
async fn a_queued_build_keeps_jenkins_reason_redacted_and_its_times() {
    let fake = fakes();
    let id = v2_source_id("app", "1");
    fake.create().v2("app", "1", &v2_body("docker://registry.example/org/base:1")).await.unwrap();
    *fake.jenkins.queue_waiting.lock().unwrap() = Some("Waiting for https://bot:s3cret@agents.example/ to come online".into());
    let poller = fake.poller(Arc::new(Unreachable), Arc::new(RecordingWebhooks::default()).webhooks());
    assert!(matches!(
        poller.poll(&PollMessage { source_id: id, round: 0 }).await.unwrap(),
        Polled::Moved { state: BuildState::Queued, .. }
    ));
    let record = fake.store.get(id).await.unwrap().unwrap();
    let timings = record.timings();
    assert_eq!(timings.why, Some("Waiting for https://bot:***@agents.example/ to come online"));
    assert!(timings.queued_at.is_some() && timings.started_at.is_none() && timings.queue_seconds.is_none());

    // Jenkins' reason changes: saved again; the build ends: the reason goes, the end is timed.
    *fake.jenkins.queue_waiting.lock().unwrap() = Some("Waiting for next available executor".into());
    poller.poll(&PollMessage { source_id: id, round: 1 }).await.unwrap();
    assert_eq!(fake.store.get(id).await.unwrap().unwrap().timings().why, Some("Waiting for next available executor"));
    fake.stop().build("app", "1").await.unwrap();
    poller.poll(&PollMessage { source_id: id, round: 2 }).await.unwrap();
    let record = fake.store.get(id).await.unwrap().unwrap();
    assert!(record.state.is_terminal(), "{:?}", record.state);
    let timings = record.timings();
    assert!(timings.why.is_none() && timings.finished_at.is_some(), "{timings:?}");
}
