//! Sources and log archives in S3.
//!
//! - `sources/{source_id}`: a build's cached sources, written once (first writer wins).
//! - `logs/{source_id}/{offset:020}`: the log archive, one object per chunk, named by the
//!   chunk's byte offset in the whole log (S3 cannot append).

use std::time::Duration;

use crate::built::Built;
use async_trait::async_trait;
use aws_config::{Region, SdkConfig};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;
use shuttle_core::error::ServiceError;
use shuttle_core::ports::{ChunkWrite, LogTail, SourceStore};
use uuid::Uuid;

/// The S3 client, in `S3_LOCATION`'s region when that is set.
pub fn client(sdk: &SdkConfig, region: Option<String>) -> Client {
    let mut config = aws_sdk_s3::config::Builder::from(sdk);
    if let Some(region) = region {
        config = config.region(Region::new(region));
    }
    Client::from_conf(config.build())
}

pub struct S3SourceStore {
    client: Built<Client>,
    bucket: String,
}

fn fail(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::new("s3", error)
}

pub fn source_key(source_id: Uuid) -> String {
    format!("sources/{source_id}")
}

fn log_prefix(source_id: Uuid) -> String {
    format!("logs/{source_id}/")
}

impl S3SourceStore {
    pub fn new(client: impl Into<Built<Client>>, bucket: &str) -> Self {
        Self { client: client.into(), bucket: bucket.to_owned() }
    }

    /// Caches a build's sources from a file (a streamed download). The first write wins.
    pub async fn put_source_file(&self, source_id: Uuid, path: &std::path::Path) -> Result<(), ServiceError> {
        let body = ByteStream::from_path(path).await.map_err(fail)?;
        let result = self.client.put_object().bucket(&self.bucket).key(source_key(source_id)).if_none_match("*").body(body).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("PreconditionFailed") || e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(()),
            Err(e) => Err(fail(DisplayErrorContext(e))),
        }
    }

    /// Creates the bucket (tests and the local stack).
    pub async fn create_bucket(client: &Client, bucket: &str) -> Result<(), ServiceError> {
        client.create_bucket().bucket(bucket).send().await.map_err(|e| fail(DisplayErrorContext(e)))?;
        Ok(())
    }

    /// Writes `key` unless it exists. `Ok(false)` when it did.
    async fn put_once(&self, key: String, bytes: Bytes) -> Result<bool, ServiceError> {
        let result = self.client.put_object().bucket(&self.bucket).key(key).if_none_match("*").body(ByteStream::from(bytes)).send().await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("PreconditionFailed") || e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(false),
            Err(e) => Err(fail(DisplayErrorContext(e))),
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, ServiceError> {
        let object = self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(|e| fail(DisplayErrorContext(e)))?;
        Ok(object.body.collect().await.map_err(fail)?.into_bytes())
    }

    /// Every archived chunk of a log as (offset, length, key), in offset order.
    async fn log_chunks(&self, source_id: Uuid) -> Result<Vec<(u64, u64, String)>, ServiceError> {
        let prefix = log_prefix(source_id);
        let mut chunks = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| fail(DisplayErrorContext(e)))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let Some(offset) = key.strip_prefix(&prefix).and_then(|o| o.parse::<u64>().ok()) else { continue };
                let length = object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                chunks.push((offset, length, key.to_owned()));
            }
        }
        chunks.sort_by_key(|(offset, _, _)| *offset);
        Ok(chunks)
    }
}

#[async_trait]
impl SourceStore for S3SourceStore {
    async fn put_source(&self, source_id: Uuid, bytes: Bytes) -> Result<(), ServiceError> {
        self.put_once(source_key(source_id), bytes).await.map(|_| ())
    }

    async fn source_exists(&self, source_id: Uuid) -> Result<bool, ServiceError> {
        match self.client.head_object().bucket(&self.bucket).key(source_key(source_id)).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(e) => Err(fail(DisplayErrorContext(e))),
        }
    }

    async fn presign_source(&self, source_id: Uuid, ttl: Duration) -> Result<String, ServiceError> {
        let presigning = PresigningConfig::expires_in(ttl).map_err(fail)?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(source_key(source_id))
            .presigned(presigning)
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?;
        Ok(request.uri().to_owned())
    }

    async fn copy_source(&self, from: Uuid, to: Uuid) -> Result<bool, ServiceError> {
        if self.source_exists(to).await? {
            return Ok(true);
        }
        if !self.source_exists(from).await? {
            return Ok(false);
        }
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!("{}/{}", self.bucket, source_key(from)))
            .key(source_key(to))
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?;
        Ok(true)
    }

    async fn put_log_chunk(&self, source_id: Uuid, offset: u64, chunk: Bytes) -> Result<ChunkWrite, ServiceError> {
        let key = format!("{}{offset:020}", log_prefix(source_id));
        if self.put_once(key.clone(), chunk).await? {
            return Ok(ChunkWrite::Written);
        }
        let existing = self.client.head_object().bucket(&self.bucket).key(key).send().await.map_err(|e| fail(DisplayErrorContext(e)))?;
        let len = existing.content_length().and_then(|l| u64::try_from(l).ok()).unwrap_or(0);
        Ok(ChunkWrite::Exists { len })
    }

    async fn read_log_tail(&self, source_id: Uuid, max_bytes: u64) -> Result<LogTail, ServiceError> {
        let chunks = self.log_chunks(source_id).await?;
        let total_bytes = log_end(&chunks);
        let start = total_bytes.saturating_sub(max_bytes);
        let tail = self.read_chunks(source_id, &chunks, start, total_bytes).await?;
        Ok(LogTail { text: String::from_utf8_lossy(&tail).into_owned(), total_bytes, truncated: start > 0 })
    }

    async fn read_log_range(&self, source_id: Uuid, from: u64, max_bytes: u64) -> Result<Bytes, ServiceError> {
        let chunks = self.log_chunks(source_id).await?;
        let end = log_end(&chunks).min(from.saturating_add(max_bytes));
        if from >= end {
            return Ok(Bytes::new());
        }
        Ok(self.read_chunks(source_id, &chunks, from, end).await?.into())
    }
}

impl S3SourceStore {
    /// The archived log's bytes `[start, end)`, read from the chunks that hold them.
    async fn read_chunks(&self, source_id: Uuid, chunks: &[(u64, u64, String)], start: u64, end: u64) -> Result<Vec<u8>, ServiceError> {
        let mut text = Vec::with_capacity(usize::try_from(end.saturating_sub(start)).unwrap_or(0));
        for (offset, length, key) in chunks.iter().filter(|(offset, length, _)| offset + length > start && *offset < end) {
            let covered = start + text.len() as u64;
            if offset + length <= covered {
                continue;
            }
            if *offset > covered {
                return Err(fail(format!("log archive of {source_id} has a gap at byte {covered}")));
            }
            let bytes = self.get(key).await?;
            let skip = usize::try_from(covered - offset).unwrap_or(usize::MAX).min(bytes.len());
            let take = usize::try_from(end - offset).unwrap_or(usize::MAX).min(bytes.len());
            text.extend_from_slice(&bytes[skip..take]);
        }
        Ok(text)
    }
}

/// The length of the log the chunks `(offset, length, key)` hold.
fn log_end(chunks: &[(u64, u64, String)]) -> u64 {
    chunks.iter().map(|(offset, length, _)| offset + length).max().unwrap_or(0)
}
