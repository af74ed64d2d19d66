//! In-memory ports for handler and use-case unit tests (feature `fakes`). The contract tests in
//! `tests/` run the real adapters against the local AWS emulator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use url::Url;
use uuid::Uuid;

use crate::access::{Access, LinkSigner};
use crate::config::{JenkinsConfig, PollerConfig, Secret, Settings};
use crate::error::{ServiceError, StoreError};
use crate::jenkins::{BuildStatus, Jenkins, JenkinsError, LogSink, LogWindow, QueueItem};
use crate::ports::{
    Answer, BuildStore, ChunkWrite, KafkaClient, KafkaMessage, LogStream, LogTail, PollMessage, PollQueue, Sealer, SendError, SourceStore,
    WebhookClient,
};
use crate::record::{ApiKind, BuildRecord};
use crate::relay::Webhooks;
use crate::shuttle::Shuttle;

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

    async fn stale_builds(&self, polled_before_ms: u64, limit: usize) -> Result<Vec<BuildRecord>, StoreError> {
        let builds = self.builds.lock().unwrap();
        let mut stale: Vec<_> =
            builds.values().filter(|b| b.needs_polling() && b.progress.polled_at_ms < polled_before_ms).cloned().collect();
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
    async fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, ServiceError> {
        Ok(plaintext.iter().rev().copied().collect())
    }

    async fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, ServiceError> {
        Ok(sealed.iter().rev().copied().collect())
    }
}

/// A [`Shuttle`] on in-memory ports, with the fakes kept for inspection.
pub struct FakeShuttle {
    pub shuttle: Shuttle,
    pub store: Arc<MemoryStore>,
    pub sources: Arc<MemorySources>,
    pub queue: Arc<MemoryQueue>,
    pub jenkins: Arc<FakeJenkins>,
}

pub fn test_settings() -> Settings {
    Settings {
        table_name: "builds".into(),
        s3_bucket: "sources".into(),
        poll_queue_url: "http://queue.invalid/poll".into(),
        kms_key_id: "key".into(),
        shuttle_host: Url::parse("https://shuttle.example").expect("valid URL"),
        extra_build_args: Default::default(),
        image_tag_prefix: "1".into(),
        kafka_topic: "alamobuildlogs".into(),
        webhook_signing_secret: None,
        build_timeout: Duration::from_secs(1200),
        queue_timeout: Duration::from_secs(1800),
        sources_link_ttl: Duration::from_secs(900),
        build_retention: crate::config::DEFAULT_BUILD_RETENTION,
        access: Access::Open,
        sources_signer: Some(LinkSigner::new(Secret::from("a-sources-signing-key-of-32-chars!"))),
        allowed_private: crate::netguard::AllowedNetworks::none(),
        jenkins: JenkinsConfig {
            url: Url::parse("https://jenkins.example").expect("valid URL"),
            user: "admin".into(),
            token: Secret::from("token"),
        },
        poller: PollerConfig {
            interval: Duration::from_secs(2),
            window: Duration::from_secs(20),
            source_max_bytes: 1 << 20,
            stale_after: Duration::from_secs(300),
            dead_letter_queue_url: None,
        },
    }
}

pub fn fake_shuttle() -> FakeShuttle {
    let (store, sources, queue) = (Arc::new(MemoryStore::default()), Arc::new(MemorySources::default()), Arc::new(MemoryQueue::default()));
    let jenkins = Arc::new(FakeJenkins::default());
    let shuttle = Shuttle {
        store: store.clone(),
        sources: sources.clone(),
        queue: queue.clone(),
        sealer: Arc::new(ReversingSealer),
        jenkins: jenkins.clone(),
        settings: Arc::new(test_settings()),
    };
    FakeShuttle { shuttle, store, sources, queue, jenkins }
}

/// Records the calls that act on Jenkins; the queries answer as for a build that never reached it.
/// (The poller's behaviour against a Jenkins REST API is tested end to end with the stand-in.)
#[derive(Default)]
pub struct FakeJenkins {
    pub calls: Mutex<Vec<String>>,
}

impl FakeJenkins {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait]
impl Jenkins for FakeJenkins {
    async fn ensure_job(&self, job: &str) -> Result<(), JenkinsError> {
        self.record(format!("ensure_job {job}"));
        Ok(())
    }

    async fn trigger(&self, job: &str, _parameters: &[(String, String)]) -> Result<u64, JenkinsError> {
        self.record(format!("trigger {job}"));
        Ok(1)
    }

    async fn queue_item(&self, _queue_id: u64) -> Result<QueueItem, JenkinsError> {
        Ok(QueueItem::Forgotten)
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
        self.kafka.lock().unwrap().extend(messages.into_iter().map(|m| (topic.to_owned(), m)));
        Ok(())
    }
}
