//! In-memory ports for handler and use-case unit tests (feature `fakes`). The contract tests in
//! `tests/` run the real adapters against the local AWS emulator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use url::Url;
use uuid::Uuid;

use crate::access::LinkSigner;
use crate::api::{Create, Delete, Logs, SourceLinks, Status, Stop};
use crate::config::{CreatePolicy, Pacing, PollPolicy, Secret};
use crate::error::{ServiceError, StoreError};
use crate::jenkins::{BuildStatus, JenkinsError, LogWindow, QueueItem};
use crate::netguard::AllowedNetworks;
use crate::poll::Poller;
use crate::ports::{
    Answer, BuildStore, ChunkWrite, Jenkins, KafkaClient, KafkaMessage, LogSink, LogStream, LogTail, OpenError, PollMessage, PollQueue,
    Sealer, SendError, SourceFetcher, SourceStore, WebhookClient,
};
use crate::record::{ApiKind, BuildRecord};
use crate::relay::Webhooks;
use crate::secrets::Keyed;

#[derive(Default)]
pub struct MemoryStore {
    pub builds: Mutex<HashMap<Uuid, BuildRecord>>,
}

#[async_trait]
impl BuildStore for MemoryStore {
    async fn insert(&self, record: &BuildRecord) -> Result<bool, StoreError> {
        let mut builds = self.builds.lock().unwrap();
        if builds.contains_key(&record.source_id) {
            return Ok(false);
        }
        builds.insert(record.source_id, record.clone());
        Ok(true)
    }

    async fn get(&self, source_id: Uuid) -> Result<Option<BuildRecord>, StoreError> {
        Ok(self.builds.lock().unwrap().get(&source_id).cloned())
    }

    async fn find_by_number(&self, app_key: &str, number: u64) -> Result<Option<BuildRecord>, StoreError> {
        let builds = self.builds.lock().unwrap();
        Ok(builds
            .values()
            .filter(|b| b.app_key == app_key && b.kind == ApiKind::Legacy && b.number.unwrap_or(0) == number)
            .max_by_key(|b| b.created_at_ms)
            .cloned())
    }

    async fn list_by_app(&self, app_key: &str) -> Result<Vec<BuildRecord>, StoreError> {
        let mut found: Vec<_> = self.builds.lock().unwrap().values().filter(|b| b.app_key == app_key).cloned().collect();
        found.sort_by_key(|b| b.created_at_ms);
        Ok(found)
    }

    async fn update(&self, record: &BuildRecord) -> Result<BuildRecord, StoreError> {
        let mut builds = self.builds.lock().unwrap();
        match builds.get(&record.source_id) {
            Some(stored) if stored.version == record.version => {
                let next = BuildRecord { version: record.version + 1, ..record.clone() };
                builds.insert(record.source_id, next.clone());
                Ok(next)
            }
            _ => Err(StoreError::Conflict),
        }
    }

    async fn stale_builds(&self, polled_before_ms: u64, now_ms: u64, limit: usize) -> Result<Vec<BuildRecord>, StoreError> {
        let builds = self.builds.lock().unwrap();
        let stale =
            |b: &&BuildRecord| b.needs_polling() && b.progress.polled_at_ms < polled_before_ms && !b.progress.leased_by_other("", now_ms);
        let mut stale: Vec<_> = builds.values().filter(stale).cloned().collect();
        stale.sort_by_key(|b| b.progress.polled_at_ms);
        stale.truncate(limit);
        Ok(stale)
    }
}

#[derive(Default)]
pub struct MemorySources {
    pub objects: Mutex<HashMap<Uuid, Bytes>>,
    pub logs: Mutex<HashMap<Uuid, Vec<(u64, Bytes)>>>,
}

#[async_trait]
impl SourceStore for MemorySources {
    async fn put_source(&self, source_id: Uuid, bytes: Bytes) -> Result<(), ServiceError> {
        self.objects.lock().unwrap().entry(source_id).or_insert(bytes);
        Ok(())
    }

    async fn source_exists(&self, source_id: Uuid) -> Result<bool, ServiceError> {
        Ok(self.objects.lock().unwrap().contains_key(&source_id))
    }

    async fn presign_source(&self, source_id: Uuid, ttl: Duration) -> Result<String, ServiceError> {
        Ok(format!("https://sources.invalid/{source_id}?expires={}", ttl.as_secs()))
    }

    async fn copy_source(&self, from: Uuid, to: Uuid) -> Result<bool, ServiceError> {
        let mut objects = self.objects.lock().unwrap();
        let Some(bytes) = objects.get(&from).cloned() else { return Ok(false) };
        objects.entry(to).or_insert(bytes);
        Ok(true)
    }

    async fn put_log_chunk(&self, source_id: Uuid, offset: u64, chunk: Bytes) -> Result<ChunkWrite, ServiceError> {
        let mut logs = self.logs.lock().unwrap();
        let chunks = logs.entry(source_id).or_default();
        if let Some((_, existing)) = chunks.iter().find(|(at, _)| *at == offset) {
            return Ok(ChunkWrite::Exists { len: existing.len() as u64 });
        }
        chunks.push((offset, chunk));
        chunks.sort_by_key(|(at, _)| *at);
        Ok(ChunkWrite::Written)
    }

    async fn read_log_tail(&self, source_id: Uuid, max_bytes: u64) -> Result<LogTail, ServiceError> {
        let whole = self.log(source_id);
        let total_bytes = whole.len() as u64;
        let start = whole.len().saturating_sub(usize::try_from(max_bytes).unwrap_or(usize::MAX));
        Ok(LogTail { text: String::from_utf8_lossy(&whole[start..]).into_owned(), total_bytes, truncated: start > 0 })
    }

    async fn read_log_range(&self, source_id: Uuid, from: u64, max_bytes: u64) -> Result<Bytes, ServiceError> {
        let whole = self.log(source_id);
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(whole.len());
        let end = start.saturating_add(usize::try_from(max_bytes).unwrap_or(usize::MAX)).min(whole.len());
        Ok(Bytes::copy_from_slice(&whole[start..end]))
    }
}

impl MemorySources {
    /// The whole archived log; panics on a gap or an overlap between chunks.
    pub fn log(&self, source_id: Uuid) -> Vec<u8> {
        let logs = self.logs.lock().unwrap();
        let mut whole = Vec::new();
        for (offset, chunk) in logs.get(&source_id).into_iter().flatten() {
            assert_eq!(*offset, whole.len() as u64, "the log archive of {source_id} has a gap or an overlap");
            whole.extend_from_slice(chunk);
        }
        whole
    }
}

#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<(PollMessage, Duration)>>,
    pub dead_letters: Mutex<Vec<String>>,
}

#[async_trait]
impl PollQueue for MemoryQueue {
    async fn enqueue(&self, message: &PollMessage, delay: Duration) -> Result<(), ServiceError> {
        self.sent.lock().unwrap().push((message.clone(), delay));
        Ok(())
    }

    async fn dead_letter(&self, body: &str) -> Result<(), ServiceError> {
        self.dead_letters.lock().unwrap().push(body.to_owned());
        Ok(())
    }
}

/// Reverses the bytes: enough to show that what is stored is not the plaintext.
#[derive(Default)]
pub struct ReversingSealer;

#[async_trait]
impl Sealer for ReversingSealer {
    /// The build's id, then the plaintext reversed: bound to the build, as KMS seals.
    async fn seal(&self, plaintext: &[u8], source_id: Uuid) -> Result<Vec<u8>, ServiceError> {
        Ok(source_id.as_bytes().iter().chain(plaintext.iter().rev()).copied().collect())
    }

    async fn open(&self, sealed: &[u8], source_id: Uuid) -> Result<Vec<u8>, OpenError> {
        match sealed.strip_prefix(source_id.as_bytes()) {
            Some(reversed) => Ok(reversed.iter().rev().copied().collect()),
            None => Err(OpenError::Refused("sealed for another build".into())),
        }
    }
}

/// In-memory ports, kept for inspection, and the use cases on them.
pub struct Fakes {
    pub store: Arc<MemoryStore>,
    pub sources: Arc<MemorySources>,
    pub queue: Arc<MemoryQueue>,
    pub jenkins: Arc<FakeJenkins>,
}

pub fn fakes() -> Fakes {
    Fakes {
        store: Arc::new(MemoryStore::default()),
        sources: Arc::new(MemorySources::default()),
        queue: Arc::new(MemoryQueue::default()),
        jenkins: Arc::new(FakeJenkins::default()),
    }
}

impl Fakes {
    pub fn create(&self) -> Create {
        Create {
            store: self.store.clone(),
            sources: self.sources.clone(),
            queue: self.queue.clone(),
            sealer: Arc::new(ReversingSealer),
            policy: test_create_policy(),
        }
    }

    pub fn stop(&self) -> Stop {
        Stop { store: self.store.clone(), jenkins: self.jenkins.clone() }
    }

    pub fn delete(&self) -> Delete {
        Delete { stop: self.stop() }
    }

    pub fn status(&self) -> Status {
        Status { store: self.store.clone() }
    }

    pub fn logs(&self) -> Logs {
        Logs { store: self.store.clone(), sources: self.sources.clone() }
    }

    pub fn source_links(&self) -> SourceLinks {
        SourceLinks { sources: self.sources.clone(), ttl: Duration::from_secs(900), signer: test_poll_policy().sources_signer }
    }

    /// The poller on these ports, downloading through `fetcher`.
    pub fn poller(&self, fetcher: Arc<dyn SourceFetcher>, webhooks: Webhooks) -> Poller {
        Poller {
            store: self.store.clone(),
            sources: self.sources.clone(),
            queue: self.queue.clone(),
            sealer: Arc::new(ReversingSealer),
            jenkins: self.jenkins.clone(),
            fetcher,
            webhooks,
            policy: test_poll_policy(),
        }
    }
}

fn shuttle_host() -> Url {
    Url::parse("https://shuttle.example").expect("valid URL")
}

pub fn test_create_policy() -> CreatePolicy {
    CreatePolicy { shuttle_host: shuttle_host(), allowed_private: AllowedNetworks::none(), kafka_topic: "alamobuildlogs".into() }
}

pub fn test_poll_policy() -> PollPolicy {
    PollPolicy {
        shuttle_host: shuttle_host(),
        extra_build_args: Default::default(),
        image_tag_prefix: "1".into(),
        kafka_topic: "alamobuildlogs".into(),
        webhook_signing_secret: Keyed::given(None),
        build_timeout: Duration::from_secs(1200),
        queue_timeout: Duration::from_secs(1800),
        sources_signer: Keyed::given(Some(LinkSigner::new(Secret::from("a-sources-signing-key-of-32-chars!")))),
        allowed_private: AllowedNetworks::none(),
        pacing: Pacing { interval: Duration::from_secs(2), window: Duration::from_secs(20), stale_after: Duration::from_secs(300) },
    }
}

/// Records the calls that act on Jenkins; the queries answer as for a build that never reached it.
/// (The poller's behaviour against a Jenkins REST API is tested end to end with the stand-in.)
/// A test may make `ensure_job` slow, or refuse the credentials, and triggered builds wait in
/// the queue, for the reason given, when `queue_waiting` is set.
#[derive(Default)]
pub struct FakeJenkins {
    pub calls: Mutex<Vec<String>>,
    pub ensure_job_takes: Mutex<Option<Duration>>,
    pub refusing: Mutex<bool>,
    pub queue_waiting: Mutex<Option<String>>,
}

impl FakeJenkins {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait]
impl Jenkins for FakeJenkins {
    async fn ensure_job(&self, job: &str) -> Result<(), JenkinsError> {
        let takes = *self.ensure_job_takes.lock().unwrap();
        if let Some(takes) = takes {
            tokio::time::sleep(takes).await;
        }
        if *self.refusing.lock().unwrap() {
            return Err(JenkinsError::Rejected("401 for the job: check JENKINS_USER and JENKINS_TOKEN".into()));
        }
        self.record(format!("ensure_job {job}"));
        Ok(())
    }

    async fn trigger(&self, job: &str, _parameters: &[(String, String)]) -> Result<u64, JenkinsError> {
        self.record(format!("trigger {job}"));
        Ok(1)
    }

    async fn queue_item(&self, _queue_id: u64) -> Result<QueueItem, JenkinsError> {
        Ok(match self.queue_waiting.lock().unwrap().clone() {
            Some(why) => QueueItem::Waiting { why: Some(why) },
            None => QueueItem::Forgotten,
        })
    }

    async fn find_build(&self, _job: &str, _build_uuid: &str) -> Result<Option<u64>, JenkinsError> {
        Ok(None)
    }

    async fn find_queued(&self, _job: &str, _build_uuid: &str) -> Result<Option<u64>, JenkinsError> {
        Ok(None)
    }

    async fn build_status(&self, job: &str, number: u64) -> Result<BuildStatus, JenkinsError> {
        Err(JenkinsError::NotFound(format!("{job} #{number}")))
    }

    async fn read_log(&self, job: &str, number: u64, _start: u64, _sink: &mut dyn LogSink) -> Result<LogWindow, JenkinsError> {
        Err(JenkinsError::NotFound(format!("{job} #{number}")))
    }

    async fn stop_build(&self, job: &str, number: u64) -> Result<(), JenkinsError> {
        self.record(format!("stop_build {job} {number}"));
        Ok(())
    }

    async fn cancel_queue_item(&self, queue_id: u64) -> Result<(), JenkinsError> {
        self.record(format!("cancel_queue_item {queue_id}"));
        // Jenkins forgets a cancelled item's wait.
        *self.queue_waiting.lock().unwrap() = None;
        Ok(())
    }

    async fn delete_job(&self, job: &str) -> Result<(), JenkinsError> {
        self.record(format!("delete_job {job}"));
        Ok(())
    }
}

/// What a [`RecordingWebhooks`] was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Webhook receivers in memory: every JSON post and every log stream is recorded; posts are
/// answered by `answers` in turn and streams by `stream_answers` (then 200); Kafka messages are
/// kept by topic. Posts to a URL in `refused` fail as the SSRF guard's refusal, unsent.
#[derive(Default)]
pub struct RecordingWebhooks {
    pub refused: Mutex<Vec<String>>,
    pub posts: Mutex<Vec<Sent>>,
    pub answers: Mutex<std::collections::VecDeque<Answer>>,
    pub stream_answers: Arc<Mutex<std::collections::VecDeque<u16>>>,
    pub streams: Arc<Mutex<Vec<Sent>>>,
    pub kafka: Mutex<Vec<(String, KafkaMessage)>>,
    /// How many messages each produce call carried.
    pub kafka_calls: Mutex<Vec<usize>>,
}

impl RecordingWebhooks {
    pub fn webhooks(self: &Arc<Self>) -> Webhooks {
        Webhooks { http: self.clone(), kafka: self.clone() }
    }
}

#[async_trait]
impl WebhookClient for RecordingWebhooks {
    async fn post_json(&self, url: &str, headers: Vec<(String, String)>, body: Bytes) -> Result<Answer, SendError> {
        if self.refused.lock().unwrap().iter().any(|refused| refused == url) {
            return Err(SendError::refused(format!("{url} resolves only to refused addresses")));
        }
        self.posts.lock().unwrap().push(Sent { url: url.to_owned(), headers, body });
        Ok(self.answers.lock().unwrap().pop_front().unwrap_or(Answer { status: 200, retry_after: None }))
    }

    fn stream(&self, url: &str, headers: Vec<(String, String)>) -> LogStream {
        let (body, mut frames) = tokio::sync::mpsc::channel::<Bytes>(16);
        let (answer, answered) = tokio::sync::oneshot::channel();
        let (streams, answers, url) = (self.streams.clone(), self.stream_answers.clone(), url.to_owned());
        tokio::spawn(async move {
            let mut received = Vec::new();
            while let Some(frame) = frames.recv().await {
                received.extend_from_slice(&frame);
            }
            streams.lock().unwrap().push(Sent { url, headers, body: received.into() });
            let status = answers.lock().unwrap().pop_front().unwrap_or(200);
            let _ = answer.send(Ok(Answer { status, retry_after: None }));
        });
        LogStream { body, answer: answered }
    }
}

#[async_trait]
impl KafkaClient for RecordingWebhooks {
    async fn produce(&self, _brokers: &[String], topic: &str, messages: Vec<KafkaMessage>) -> Result<(), (usize, SendError)> {
        self.kafka_calls.lock().unwrap().push(messages.len());
        self.kafka.lock().unwrap().extend(messages.into_iter().map(|m| (topic.to_owned(), m)));
        Ok(())
    }
}

/// A log capture for the handlers' span tests (feature `fakes`, which brings `tracing-subscriber`).
#[cfg(feature = "fakes")]
mod logs {
    /// What the calling thread logs from now on, as the text subscriber writes it (spans included,
    /// and a line for each span's close, so a span with no event inside still shows).
    ///
    /// One process-wide subscriber, installed at the first capture, writes each thread's lines apart
    /// (a `#[tokio::test]` runs on its own thread). A scoped subscriber (`set_default`) is not enough:
    /// a callsite that a test on another thread reached first, with no subscriber, can stay off for
    /// it, and the span under test goes missing from the capture.
    pub fn capture_logs() -> CapturedLogs {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
                .with_writer(|| ThreadLines)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other subscriber is installed in a handler's tests");
        });
        CapturedLogs { from: THREAD_LINES.with(|lines| lines.borrow().len()) }
    }

    thread_local! {
        static THREAD_LINES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Writes into the calling thread's captured lines.
    struct ThreadLines;

    impl std::io::Write for ThreadLines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            THREAD_LINES.with(|lines| lines.borrow_mut().extend_from_slice(bytes));
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines a thread logged since [`capture_logs`].
    pub struct CapturedLogs {
        from: usize,
    }

    impl CapturedLogs {
        pub fn text(&self) -> String {
            THREAD_LINES.with(|lines| String::from_utf8_lossy(&lines.borrow()[self.from..]).into_owned())
        }
    }
}

#[cfg(feature = "fakes")]
pub use logs::{capture_logs, CapturedLogs};
