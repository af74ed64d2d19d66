//! In-memory ports for handler and use-case unit tests (feature `fakes`). The contract tests in
//! `tests/` run the real adapters against the local AWS emulator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use url::Url;
use uuid::Uuid;

use crate::config::Settings;
use crate::error::{ServiceError, StoreError};
use crate::ports::{BuildStore, LogTail, PollMessage, PollQueue, Sealer, SourceStore};
use crate::record::BuildRecord;
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
        Ok(builds.values().filter(|b| b.app_key == app_key && b.number == Some(number)).max_by_key(|b| b.created_at_ms).cloned())
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

    async fn append_log(&self, source_id: Uuid, offset: u64, chunk: Bytes) -> Result<(), ServiceError> {
        self.logs.lock().unwrap().entry(source_id).or_default().push((offset, chunk));
        Ok(())
    }

    async fn read_log_tail(&self, source_id: Uuid, max_bytes: u64) -> Result<LogTail, ServiceError> {
        let logs = self.logs.lock().unwrap();
        let whole: Vec<u8> = logs.get(&source_id).into_iter().flatten().flat_map(|(_, c)| c.iter().copied()).collect();
        let total_bytes = whole.len() as u64;
        let start = whole.len().saturating_sub(usize::try_from(max_bytes).unwrap_or(usize::MAX));
        Ok(LogTail { text: String::from_utf8_lossy(&whole[start..]).into_owned(), total_bytes, truncated: start > 0 })
    }
}

#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<(PollMessage, Duration)>>,
}

#[async_trait]
impl PollQueue for MemoryQueue {
    async fn enqueue(&self, message: &PollMessage, delay: Duration) -> Result<(), ServiceError> {
        self.sent.lock().unwrap().push((message.clone(), delay));
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
        build_timeout: Duration::from_secs(1200),
        queue_timeout: Duration::from_secs(1800),
        sources_link_ttl: Duration::from_secs(900),
    }
}

pub fn fake_shuttle() -> FakeShuttle {
    let (store, sources, queue) = (Arc::new(MemoryStore::default()), Arc::new(MemorySources::default()), Arc::new(MemoryQueue::default()));
    let shuttle = Shuttle {
        store: store.clone(),
        sources: sources.clone(),
        queue: queue.clone(),
        sealer: Arc::new(ReversingSealer),
        settings: Arc::new(test_settings()),
    };
    FakeShuttle { shuttle, store, sources, queue }
}
