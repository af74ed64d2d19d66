//! The ports: what the use cases need from the outside world. Adapters implement them.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ServiceError, StoreError};
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

#[async_trait]
pub trait SourceStore: Send + Sync {
    /// Caches a build's sources. The first write wins: an existing object is left as it is.
    async fn put_source(&self, source_id: Uuid, bytes: Bytes) -> Result<(), ServiceError>;
    async fn source_exists(&self, source_id: Uuid) -> Result<bool, ServiceError>;
    /// A presigned GET of the cached sources, valid for `ttl`.
    async fn presign_source(&self, source_id: Uuid, ttl: Duration) -> Result<String, ServiceError>;
    /// Archives the log bytes that start at `offset` of the whole log (one chunk object each).
    async fn append_log(&self, source_id: Uuid, offset: u64, chunk: Bytes) -> Result<(), ServiceError>;
    /// At most the last `max_bytes` of the archived log.
    async fn read_log_tail(&self, source_id: Uuid, max_bytes: u64) -> Result<LogTail, ServiceError>;
}

/// What the poller is told: a reference to a build, never its contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollMessage {
    pub source_id: Uuid,
}

#[async_trait]
pub trait PollQueue: Send + Sync {
    async fn enqueue(&self, message: &PollMessage, delay: Duration) -> Result<(), ServiceError>;
}

/// Envelope encryption of secrets at rest (a KMS data key per sealed value).
#[async_trait]
pub trait Sealer: Send + Sync {
    async fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, ServiceError>;
    async fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, ServiceError>;
}
