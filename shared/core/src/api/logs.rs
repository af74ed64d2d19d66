//! `GET /{app_id}/{build_id}/logs`: the build and the end of its archived log.

use std::sync::Arc;

use crate::error::ShuttleError;
use crate::ports::{BuildStore, LogTail, SourceStore};
use crate::record::BuildRecord;

/// The logs endpoints serve at most this much of the end of a log.
pub const MAX_LOG_RESPONSE_BYTES: u64 = 5 * 1024 * 1024;

/// The status function's logs use case.
#[derive(Clone)]
pub struct Logs {
    pub store: Arc<dyn BuildStore>,
    /// Where the log is archived.
    pub sources: Arc<dyn SourceStore>,
}

impl Logs {
    /// The build, and its log cut to the last [`MAX_LOG_RESPONSE_BYTES`].
    pub async fn tail(&self, app_id: &str, build_id: &str) -> Result<(BuildRecord, LogTail), ShuttleError> {
        let record = super::find(self.store.as_ref(), app_id, build_id).await?;
        let tail = self.sources.read_log_tail(record.source_id, MAX_LOG_RESPONSE_BYTES).await?;
        Ok((record, tail))
    }
}
