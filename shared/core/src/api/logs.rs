//! `GET /{app_id}/{build_id}/logs`: the build and the end of its archived log, or (v2,
//! `?start=N`) the log from byte `N` as Jenkins' `progressiveText` answers it.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::ShuttleError;
use crate::ports::{BuildStore, LogTail, SourceStore};
use crate::record::{ApiKind, BuildRecord};

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
    /// `GET …/logs`: with `start`, a v2 build's log from that byte ([`Logs::range`]); else,
    /// and for a legacy build whatever is asked (its API has no `start`), the tail.
    pub async fn read(&self, app_id: &str, build_id: &str, start: Option<u64>) -> Result<LogRead, ShuttleError> {
        let record = super::find(self.store.as_ref(), app_id, build_id).await?;
        match start {
            Some(start) if record.kind == ApiKind::V2 => {
                let range = self.range(&record, start).await?;
                Ok(LogRead::Range(record, range))
            }
            _ => {
                let tail = self.sources.read_log_tail(record.source_id, MAX_LOG_RESPONSE_BYTES).await?;
                Ok(LogRead::Tail(record, tail))
            }
        }
    }

    /// The log from byte `start`, at most [`MAX_LOG_RESPONSE_BYTES`] of it: what is archived
    /// and saved with the build (the size a resumed read counts from). A `start` past that size
    /// is [`ShuttleError::LogRangeNotSatisfiable`].
    async fn range(&self, record: &BuildRecord, start: u64) -> Result<LogRange, ShuttleError> {
        let size = record.progress.archive_len;
        if start > size {
            return Err(ShuttleError::LogRangeNotSatisfiable { size });
        }
        let wanted = (size - start).min(MAX_LOG_RESPONSE_BYTES);
        let mut bytes = if wanted == 0 { Bytes::new() } else { self.sources.read_log_range(record.source_id, start, wanted).await? };
        // Chunks an interrupted poll wrote past the saved size wait for the next save.
        bytes.truncate(usize::try_from(wanted).unwrap_or(usize::MAX));
        let next_start = start + bytes.len() as u64;
        let more_data = next_start < size || !record.state.is_terminal();
        Ok(LogRange { bytes, next_start, more_data })
    }
}

/// What `GET …/logs` answers.
#[derive(Clone, Debug)]
pub enum LogRead {
    Tail(BuildRecord, LogTail),
    Range(BuildRecord, LogRange),
}

/// A part of a log, as Jenkins' `progressiveText` answers: the bytes, where the next read
/// starts (`X-Text-Size`), and whether more may come (`X-More-Data`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRange {
    pub bytes: Bytes,
    pub next_start: u64,
    pub more_data: bool,
}
