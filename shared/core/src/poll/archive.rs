//! The log archive: what Jenkins gives a read, written to S3 in bounded chunks.

use bytes::Bytes;
use uuid::Uuid;

use crate::error::ServiceError;
use crate::jenkins::SinkClosed;
use crate::ports::LogSink;
use crate::ports::{ChunkWrite, SourceStore};
use crate::relay::Relay;

/// The largest log archive chunk: large enough to keep S3 requests few, small enough to keep a
/// poller's memory per build bounded whatever the log size (a read larger than a chunk is
/// archived chunk by chunk).
pub const ARCHIVE_CHUNK_BYTES: usize = 1024 * 1024;

/// Writes log text to the archive in chunks of at most [`ARCHIVE_CHUNK_BYTES`], at the
/// archive's offsets, and hands each chunk written to the relay (which keeps a bounded part of
/// it): whatever one read of Jenkins yields, a build holds one chunk. A chunk already stored at
/// an offset (by an interrupted poll that read the same bytes) is kept, and only what lies past
/// it is written: no byte is archived twice.
pub(super) struct ArchiveSink<'a> {
    sources: &'a dyn SourceStore,
    relay: &'a Relay<'a>,
    source_id: Uuid,
    /// The archive's length so far.
    end: u64,
    /// Bytes still to come that an earlier chunk already holds.
    pub(super) skip: u64,
    buffer: Vec<u8>,
    /// Why the sink stopped taking text, for the poll to act on once Jenkins' read has ended.
    pub(super) failure: Option<ServiceError>,
}

impl<'a> ArchiveSink<'a> {
    pub(super) fn new(sources: &'a dyn SourceStore, relay: &'a Relay<'a>, source_id: Uuid, end: u64) -> Self {
        Self { sources, relay, source_id, end, skip: 0, buffer: Vec::new(), failure: None }
    }

    async fn flush(&mut self) -> Result<(), ServiceError> {
        let mut bytes = Bytes::from(std::mem::take(&mut self.buffer));
        let skipped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(bytes.len());
        let _ = bytes.split_to(skipped);
        self.skip -= skipped as u64;
        while !bytes.is_empty() {
            match self.sources.put_log_chunk(self.source_id, self.end, bytes.clone()).await? {
                ChunkWrite::Written => {
                    self.relay.add_log(self.end, bytes.clone());
                    self.end += bytes.len() as u64;
                    break;
                }
                ChunkWrite::Exists { len: 0 } => {
                    return Err(ServiceError::new("log archive", format!("an empty chunk is stored at offset {}", self.end)));
                }
                ChunkWrite::Exists { len } => {
                    self.end += len;
                    let covered = usize::try_from(len).unwrap_or(usize::MAX).min(bytes.len());
                    self.skip += len - covered as u64;
                    let _ = bytes.split_to(covered);
                }
            }
        }
        Ok(())
    }

    /// Writes what is buffered; the archive's new length.
    pub(super) async fn finish(&mut self) -> Result<u64, ServiceError> {
        self.flush().await?;
        Ok(self.end)
    }

    /// Buffers `chunk`, writing each whole archive chunk as it fills.
    pub(super) async fn append(&mut self, mut chunk: Bytes) -> Result<(), ServiceError> {
        while !chunk.is_empty() {
            let room = ARCHIVE_CHUNK_BYTES - self.buffer.len();
            self.buffer.extend_from_slice(&chunk.split_to(room.min(chunk.len())));
            if self.buffer.len() == ARCHIVE_CHUNK_BYTES {
                self.flush().await?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl LogSink for ArchiveSink<'_> {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkClosed> {
        self.append(chunk).await.map_err(|error| {
            self.failure = Some(error);
            SinkClosed
        })
    }
}
