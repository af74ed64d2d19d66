//! The stores' contract: the same assertions run against the in-memory stores of [`crate::fakes`]
//! (this crate's tests) and against the DynamoDB and S3 adapters on the AWS emulator
//! (`tests/tests/e2e/adapters.rs`), so the fakes the use-case tests run on cannot drift from the
//! real stores. Each check panics with a message naming what broke; each wants an empty store.

use bytes::Bytes;
use uuid::Uuid;

use crate::error::StoreError;
use crate::ports::{BuildStore, ChunkWrite, SourceStore};
use crate::record::{ApiKind, BuildRecord, Deliveries, Delivery, Lease, Progress, StatusEvent};
use crate::state::{BuildState, StopIntent};

/// A new legacy build of `app_key`, created at `created_at_ms`, with text that must round-trip.
pub fn record(app_key: &str, number: Option<u64>, created_at_ms: u64) -> BuildRecord {
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

/// Every check of the build store, each on its own builds; `store` starts empty.
pub async fn build_store(store: &dyn BuildStore) {
    insert_is_conditional(store).await;
    update_with_a_stale_version_conflicts(store).await;
    lookups_by_id_number_and_app(store).await;
    positions_round_trip_and_stale_builds_are_found(store).await;
    builds_held_by_a_poll_take_no_place_among_the_stale(store).await;
}

async fn insert_is_conditional(store: &dyn BuildStore) {
    let build = record("conditional", Some(1), 1_000);
    assert!(store.insert(&build).await.unwrap(), "first insert creates");
    let mut other = build.clone();
    other.metadata = "someone else".into();
    assert!(!store.insert(&other).await.unwrap(), "second insert finds the first");
    assert_eq!(store.get(build.source_id).await.unwrap(), Some(build), "the first build stands, every field round-trips");
}

async fn update_with_a_stale_version_conflicts(store: &dyn BuildStore) {
    let build = record("versions", None, 1_000);
    store.insert(&build).await.unwrap();

    let mut running = build.clone();
    running.state = BuildState::Building;
    let stored = store.update(&running).await.unwrap();
    assert_eq!(stored.version, 1, "an update answers the build as stored");

    let mut stale = build.clone();
    stale.stop = Some(StopIntent::Stop);
    assert_eq!(store.update(&stale).await, Err(StoreError::Conflict), "a stale version conflicts");
    let now = store.get(build.source_id).await.unwrap().unwrap();
    assert_eq!((now.state, now.stop, now.version), (BuildState::Building, None, 1), "a conflict writes nothing");

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

    let mut missing = record("versions", None, 1_000);
    missing.version = 0;
    assert_eq!(store.update(&missing).await, Err(StoreError::Conflict), "an update never creates a build");
    assert_eq!(store.get(missing.source_id).await.unwrap(), None);
}

async fn lookups_by_id_number_and_app(store: &dyn BuildStore) {
    let older = record("app-a", Some(7), 1_000);
    let newer = record("app-a", Some(7), 2_000);
    let other_number = record("app-a", Some(8), 3_000);
    let unnumbered = record("app-a", None, 3_500);
    let other_app = record("app-b", Some(7), 4_000);
    for build in [&newer, &older, &other_number, &unnumbered, &other_app] {
        store.insert(build).await.unwrap();
    }
    assert_eq!(store.get(older.source_id).await.unwrap().map(|b| b.source_id), Some(older.source_id));
    assert_eq!(store.get(Uuid::new_v4()).await.unwrap(), None);

    let found = store.find_by_number("app-a", 7).await.unwrap().unwrap();
    assert_eq!(found.source_id, newer.source_id, "the newest build with that number");
    let found = store.find_by_number("app-a", 0).await.unwrap().map(|b| b.source_id);
    assert_eq!(found, Some(unnumbered.source_id), "a legacy build Jenkins never numbered is build 0");
    assert_eq!(store.find_by_number("app-a", 9).await.unwrap(), None);
    assert_eq!(store.find_by_number("app-c", 7).await.unwrap(), None);

    let listed: Vec<Uuid> = store.list_by_app("app-a").await.unwrap().into_iter().map(|b| b.source_id).collect();
    assert_eq!(listed, vec![older.source_id, newer.source_id, other_number.source_id, unnumbered.source_id], "oldest first");
    assert!(store.list_by_app("nobody").await.unwrap().is_empty());
}

async fn positions_round_trip_and_stale_builds_are_found(store: &dyn BuildStore) {
    let (old, fresh, done) = (record("polled", None, 1_000), record("polled", None, 5_000), record("polled", None, 500));
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
        finished_at_ms: Some(1_950),
        log_sha256: Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()),
        queue_why: Some("Waiting for next available executor".into()),
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
    let untold = record("polled", None, 600);
    assert!(store.insert(&untold).await.unwrap());
    let mut ended = untold.clone();
    ended.progress.deliveries = Deliveries::for_targets([false], 0);
    assert!(ended.move_to(BuildState::Failed));
    let ended = store.update(&ended).await.unwrap();

    // The other checks' builds are unfinished too, and were polled at their creation (≤ 4000).
    let ours =
        |builds: Vec<BuildRecord>| -> Vec<Uuid> { builds.into_iter().filter(|b| b.app_key == "polled").map(|b| b.source_id).collect() };
    let stale = ours(store.stale_builds(3_000, 10_000, 100).await.unwrap());
    assert_eq!(
        stale,
        vec![ended.source_id, old.source_id],
        "polled before 3000 and unfinished or untold; the finished build is not listed"
    );
    let stale = ours(store.stale_builds(10_000, 10_000, 100).await.unwrap());
    assert_eq!(stale, vec![ended.source_id, old.source_id, fresh.source_id], "stalest first");
    assert_eq!(store.stale_builds(10_000, 10_000, 1).await.unwrap().len(), 1, "at most the limit");
    let stale = ours(store.stale_builds(3_000, 5_000, 100).await.unwrap());
    assert_eq!(stale, vec![ended.source_id], "a build whose lease runs until 9000 is held by a poll at 5000");
}

/// A build held by a poll takes no place among the stale ones: the page is filled past it.
async fn builds_held_by_a_poll_take_no_place_among_the_stale(store: &dyn BuildStore) {
    let (held, next, last) = (record("held", None, 10), record("held", None, 20), record("held", None, 30));
    for r in [&held, &next, &last] {
        assert!(store.insert(r).await.unwrap());
    }
    let mut leased = held.clone();
    leased.progress.lease = Some(Lease { owner: "a poll".into(), until_ms: 50_000 });
    store.update(&leased).await.unwrap();
    // Only these builds were polled before 100 (the other checks' at 500 or later).
    let ids = |builds: Vec<BuildRecord>| builds.into_iter().map(|b| b.source_id).collect::<Vec<_>>();
    assert_eq!(ids(store.stale_builds(100, 10_000, 1).await.unwrap()), vec![next.source_id], "the held one is passed over");
    assert_eq!(ids(store.stale_builds(100, 60_000, 2).await.unwrap()), vec![held.source_id, next.source_id], "once its lease ran out");
}

/// Every check of the source store that its port can show (presigned links and what they serve
/// are the S3 adapter's own tests); `sources` starts empty.
pub async fn source_store(sources: &dyn SourceStore) {
    sources_exist_once_written_and_copy(sources).await;
    log_archive_is_chunks_by_offset(sources).await;
}

async fn sources_exist_once_written_and_copy(sources: &dyn SourceStore) {
    let (from, to, missing) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert!(!sources.source_exists(from).await.unwrap(), "nothing cached yet");
    sources.put_source(from, Bytes::from_static(b"archive bytes")).await.unwrap();
    sources.put_source(from, Bytes::from_static(b"second write")).await.unwrap();
    assert!(sources.source_exists(from).await.unwrap());
    assert!(sources.copy_source(from, to).await.unwrap(), "a rebuild copies the sources");
    assert!(sources.source_exists(to).await.unwrap());
    assert!(!sources.copy_source(missing, Uuid::new_v4()).await.unwrap(), "nothing to copy");
    assert!(!sources.source_exists(missing).await.unwrap());
}

async fn log_archive_is_chunks_by_offset(sources: &dyn SourceStore) {
    let source_id = Uuid::new_v4();
    let empty = sources.read_log_tail(source_id, 100).await.unwrap();
    assert_eq!((empty.text.as_str(), empty.total_bytes, empty.truncated), ("", 0, false), "no log yet");
    assert!(sources.read_log_range(source_id, 0, 100).await.unwrap().is_empty());

    let put = |offset, chunk: &'static [u8]| sources.put_log_chunk(source_id, offset, Bytes::from_static(chunk));
    assert_eq!(put(0, b"line 1\n").await.unwrap(), ChunkWrite::Written);
    assert_eq!(put(7, b"line 2\n").await.unwrap(), ChunkWrite::Written);
    assert_eq!(put(14, b"line 3\n").await.unwrap(), ChunkWrite::Written);
    assert_eq!(put(7, b"XXXXXXXXXX\n").await.unwrap(), ChunkWrite::Exists { len: 7 }, "an existing chunk stands");

    let whole = sources.read_log_tail(source_id, 1_000).await.unwrap();
    assert_eq!((whole.text.as_str(), whole.total_bytes, whole.truncated), ("line 1\nline 2\nline 3\n", 21, false));
    let tail = sources.read_log_tail(source_id, 10).await.unwrap();
    assert_eq!((tail.text.as_str(), tail.total_bytes, tail.truncated), (" 2\nline 3\n", 21, true));

    let range = |from, max| sources.read_log_range(source_id, from, max);
    assert_eq!(range(0, 1_000).await.unwrap().as_ref(), b"line 1\nline 2\nline 3\n");
    assert_eq!(range(3, 8).await.unwrap().as_ref(), b"e 1\nline", "a range across two chunks");
    assert_eq!(range(7, 7).await.unwrap().as_ref(), b"line 2\n", "a range that is one chunk");
    assert_eq!(range(20, 100).await.unwrap().as_ref(), b"\n", "a range cut at the end");
    assert!(range(21, 100).await.unwrap().is_empty(), "at the end");
    assert!(range(500, 100).await.unwrap().is_empty(), "past the end");
}

#[cfg(test)]
mod tests {
    use crate::fakes::{MemorySources, MemoryStore};

    #[tokio::test]
    async fn the_in_memory_build_store_keeps_the_contract() {
        super::build_store(&MemoryStore::default()).await;
    }

    #[tokio::test]
    async fn the_in_memory_source_store_keeps_the_contract() {
        super::source_store(&MemorySources::default()).await;
    }
}
