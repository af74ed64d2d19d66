//! The ports: what the use cases need from the outside world. Adapters implement them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ServiceError, StoreError};
use crate::jenkins::{BuildStatus, JenkinsError, LogWindow, QueueItem, SinkClosed};
use crate::record::BuildRecord;

#[async_trait]
pub trait BuildStore: Send + Sync {
    /// Stores a new build unless one with its `source_id` exists; `Ok(false)` when it does.
    async fn insert(&self, record: &BuildRecord) -> Result<bool, StoreError>;
    async fn get(&self, source_id: Uuid) -> Result<Option<BuildRecord>, StoreError>;
    /// The newest build of `app_key` numbered `number` (the controller's numbers can repeat).
    async fn find_by_number(&self, app_key: &str, number: u64) -> Result<Option<BuildRecord>, StoreError>;
    /// Every build of `app_key`, oldest first.
    async fn list_by_app(&self, app_key: &str) -> Result<Vec<BuildRecord>, StoreError>;
    /// Writes `record` if the stored version still is `record.version`, and returns it as
    /// stored (version + 1). [`StoreError::Conflict`] when someone else wrote first.
    async fn update(&self, record: &BuildRecord) -> Result<BuildRecord, StoreError>;
    /// Builds the poller still has work for ([`BuildRecord::needs_polling`]) whose last poll was
    /// before `polled_before_ms` and that no poll holds at `now_ms` (no lease unexpired), stalest
    /// first, at most `limit`: a build held by a poll does not take a place. A build that cannot
    /// be read is logged and skipped: it does not keep the others from the schedule.
    async fn stale_builds(&self, polled_before_ms: u64, now_ms: u64, limit: usize) -> Result<Vec<BuildRecord>, StoreError>;
}

/// The end of a build log, as the logs endpoints serve it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogTail {
    pub text: String,
    /// The length of the whole archived log.
    pub total_bytes: u64,
    /// Whether `text` is only the end of the log.
    pub truncated: bool,
}

/// What [`SourceStore::put_log_chunk`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkWrite {
    Written,
    /// A chunk of this length was already stored at the offset.
    Exists {
        len: u64,
    },
}

#[async_trait]
pub trait SourceStore: Send + Sync {
    /// Caches a build's sources. The first write wins: an existing object is left as it is.
    async fn put_source(&self, source_id: Uuid, bytes: Bytes) -> Result<(), ServiceError>;
    async fn source_exists(&self, source_id: Uuid) -> Result<bool, ServiceError>;
    /// A presigned GET of the cached sources, valid for `ttl`.
    async fn presign_source(&self, source_id: Uuid, ttl: Duration) -> Result<String, ServiceError>;
    /// Copies another build's cached sources (a rebuild); `Ok(false)` when it has none.
    /// An existing copy is left as it is.
    async fn copy_source(&self, from: Uuid, to: Uuid) -> Result<bool, ServiceError>;
    /// Writes one chunk of the log archive: the log bytes that start at `offset`. A chunk that
    /// already starts there (written by an interrupted poll) is kept: its length is returned
    /// and nothing is written.
    async fn put_log_chunk(&self, source_id: Uuid, offset: u64, chunk: Bytes) -> Result<ChunkWrite, ServiceError>;
    /// At most the last `max_bytes` of the archived log.
    async fn read_log_tail(&self, source_id: Uuid, max_bytes: u64) -> Result<LogTail, ServiceError>;
    /// The archived log from byte `from`, at most `max_bytes` of it (empty at or past the end).
    async fn read_log_range(&self, source_id: Uuid, from: u64, max_bytes: u64) -> Result<Bytes, ServiceError>;
}

/// What the poller is told: a reference to a build, never its contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollMessage {
    pub source_id: Uuid,
    /// The build's [`crate::record::Progress::round`] this poll is for (0: the first).
    #[serde(default)]
    pub round: u64,
}

/// Why sources could not be cached.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The sources cannot be had (404, too large, too many redirects, not an archive URL): the
    /// build fails with this reason, already redacted.
    #[error("{0}")]
    Failed(String),
    /// Our own storage failed: worth trying again.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Downloads `http(s)` sources into the source cache.
#[async_trait]
pub trait SourceFetcher: Send + Sync {
    /// Streams the body at `url` (at most 5 redirects, each re-checked; only a 2xx is taken;
    /// at most the size cap) into the cache as the sources of `source_id`. Sources already
    /// cached are left as they are.
    async fn fetch(&self, url: &str, source_id: Uuid) -> Result<(), FetchError>;

    /// Checks a docker registry the build names (`host[:port]`) after resolving it (SPEC §7):
    /// `Failed` when it resolves to an address the SSRF guard refuses. Jenkins, not the shuttle,
    /// connects to it, so a name that does not resolve here is left to Jenkins' own DNS.
    async fn check_registry(&self, registry: &str) -> Result<(), FetchError> {
        let _ = registry;
        Ok(())
    }
}

#[async_trait]
pub trait PollQueue: Send + Sync {
    async fn enqueue(&self, message: &PollMessage, delay: Duration) -> Result<(), ServiceError>;
    /// Moves a message that is not a poll message to the dead-letter queue, as it came.
    async fn dead_letter(&self, body: &str) -> Result<(), ServiceError>;
}

/// Envelope encryption of secrets at rest (a KMS data key per sealed value), bound to the build
/// it belongs to: a value sealed for one `source_id` does not open for another, so a sealed spec
/// copied into another build's item is refused.
#[async_trait]
pub trait Sealer: Send + Sync {
    async fn seal(&self, plaintext: &[u8], source_id: Uuid) -> Result<Vec<u8>, ServiceError>;
    async fn open(&self, sealed: &[u8], source_id: Uuid) -> Result<Vec<u8>, OpenError>;
}

/// Why a sealed value did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// It never will: malformed, altered, or sealed for another build (KMS refused the data key,
    /// or AES-GCM the ciphertext). Retrying cannot help.
    #[error("the sealed value cannot be opened: {0}")]
    Refused(String),
    /// KMS could not be asked: try again.
    #[error(transparent)]
    Unavailable(#[from] ServiceError),
}

/// An HTTP receiver's answer to a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
}

/// A delivery that got no answer (connection refused or broken, timed out, a broker unreachable):
/// worth trying again — unless the SSRF guard refused the target (SPEC §7), which no retry
/// changes. The message never shows credentials.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub message: String,
    /// Final: the target's address is refused (a range `ALLOWED_PRIVATE_CIDRS` does not open),
    /// or no request can be made to it (a URL or a header value no HTTP request can carry).
    pub refused: bool,
}

impl SendError {
    /// No answer: worth trying again.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), refused: false }
    }

    /// The SSRF guard refused the target, or no request can ever be made to it: given up at once.
    pub fn refused(message: impl Into<String>) -> Self {
        Self { message: message.into(), refused: true }
    }
}

/// A log stream being sent: a chunked `POST` whose body is what is written to `body`.
pub struct LogStream {
    /// Body frames, sent as they are written; dropping the sender ends the body.
    pub body: tokio::sync::mpsc::Sender<Bytes>,
    /// The receiver's answer, once the body has ended (or the request failed).
    pub answer: tokio::sync::oneshot::Receiver<Result<Answer, SendError>>,
}

/// Sends webhooks over `http(s)`. Userinfo in a URL is sent as HTTP Basic auth (unless the
/// headers carry an `Authorization`); redirects are never followed.
#[async_trait]
pub trait WebhookClient: Send + Sync {
    /// One JSON `POST`, within the client's per-request timeout.
    async fn post_json(&self, url: &str, headers: Vec<(String, String)>, body: Bytes) -> Result<Answer, SendError>;
    /// Opens a streamed `text/plain; charset=utf-8` `POST` (`Transfer-Encoding: chunked`).
    fn stream(&self, url: &str, headers: Vec<(String, String)>) -> LogStream;
}

/// One Kafka record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaMessage {
    /// Shared by every message of a call (the build's metadata, up to 4 KiB): never copied per line.
    pub key: Arc<str>,
    pub payload: Bytes,
    pub headers: Vec<(String, String)>,
}

/// Produces to Kafka through producers kept across invocations (one per bootstrap list).
#[async_trait]
pub trait KafkaClient: Send + Sync {
    /// Produces `messages`, in order, to `topic` through a producer bootstrapped from every one
    /// of `brokers`, and awaits their delivery reports. `Ok(())` when all were delivered; else
    /// how many of the first messages were (every one before the first that was not) and why.
    async fn produce(&self, brokers: &[String], topic: &str, messages: Vec<KafkaMessage>) -> Result<(), (usize, SendError)>;
}

/// The Jenkins REST API as the shuttle uses it.
#[async_trait]
pub trait Jenkins: Send + Sync {
    /// Creates the job from the template unless it exists.
    async fn ensure_job(&self, job: &str) -> Result<(), JenkinsError>;
    /// `buildWithParameters`: the id of the queue item.
    async fn trigger(&self, job: &str, parameters: &[(String, String)]) -> Result<u64, JenkinsError>;
    async fn queue_item(&self, queue_id: u64) -> Result<QueueItem, JenkinsError>;
    /// The build of `job` whose `BUILD_UUID` parameter is `build_uuid`, if any.
    async fn find_build(&self, job: &str, build_uuid: &str) -> Result<Option<u64>, JenkinsError>;
    /// The queue item of `job` still waiting whose `BUILD_UUID` parameter is `build_uuid`, if any
    /// (`GET /queue/api/json`).
    async fn find_queued(&self, job: &str, build_uuid: &str) -> Result<Option<u64>, JenkinsError>;
    async fn build_status(&self, job: &str, number: u64) -> Result<BuildStatus, JenkinsError>;
    /// Streams the log from `start` into `sink`.
    async fn read_log(&self, job: &str, number: u64, start: u64, sink: &mut dyn LogSink) -> Result<LogWindow, JenkinsError>;
    async fn stop_build(&self, job: &str, number: u64) -> Result<(), JenkinsError>;
    async fn cancel_queue_item(&self, queue_id: u64) -> Result<(), JenkinsError>;
    /// Deletes the job; a job already gone is fine.
    async fn delete_job(&self, job: &str) -> Result<(), JenkinsError>;
}

/// Receives log text as it streams in from Jenkins, in order.
#[async_trait]
pub trait LogSink: Send {
    /// Takes the next text; [`SinkClosed`] ends the read.
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkClosed>;
}
