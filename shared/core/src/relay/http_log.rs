//! A log stream over HTTP: one chunked `POST`, held open while the log grows.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use tokio::sync::watch;

use crate::ports::SendError;

use super::logs::LogSent;
use super::outcome::Undelivered;
use super::{Relay, FRAME_BYTES};

/// `X-Build-Metadata` is the metadata percent-encoded: controls, non-ASCII and separators.
const HEADER_VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%').add(b',').add(b';').add(b'\\');

impl Relay<'_> {
    /// One chunked `POST` of the log from `from`, held open while the log grows, until the
    /// relay closes or the build's whole log is sent.
    pub(super) async fn stream_log(
        &self,
        index: usize,
        url: &str,
        from: u64,
        changes: &mut watch::Receiver<u64>,
    ) -> (u64, Result<LogSent, Undelivered>) {
        let metadata = self.lock().build.metadata.clone();
        let headers = vec![
            ("X-Build-Metadata".to_owned(), utf8_percent_encode(&metadata, HEADER_VALUE).to_string()),
            ("X-Log-Offset".to_owned(), from.to_string()),
        ];
        let stream = self.webhooks.http.stream(url, headers);
        let mut sent = from;
        let whole = loop {
            let text = match self.log_from(index, sent).await {
                Ok(text) => text,
                Err(problem) => return (from, Err(problem.into())),
            };
            if text.is_empty() {
                let (end, finished) = {
                    let shared = self.lock();
                    (shared.archived, shared.build.state.is_terminal())
                };
                if finished && sent >= end {
                    break true;
                }
                if !self.wait(changes, None).await {
                    break false;
                }
                continue;
            }
            for start in (0..text.len()).step_by(FRAME_BYTES) {
                let frame = text.slice(start..text.len().min(start + FRAME_BYTES));
                if stream.body.send(frame).await.is_err() {
                    // The request ended early: its answer says why.
                    let problem = match stream.answer.await {
                        Ok(Ok(answer)) => Ok(answer),
                        Ok(Err(problem)) => Err(problem),
                        Err(_) => Err(SendError::new("the stream ended without an answer".to_owned())),
                    };
                    return (from, Err(Undelivered::from_attempt(problem)));
                }
            }
            sent += text.len() as u64;
        };
        drop(stream.body);
        let answer = match stream.answer.await {
            Ok(answer) => answer,
            Err(_) => Err(SendError::new("the stream ended without an answer".to_owned())),
        };
        match answer {
            Ok(answer) if (200..300).contains(&answer.status) => (sent, Ok(if whole { LogSent::Finished } else { LogSent::Delivered })),
            other => (from, Err(Undelivered::from_attempt(other))),
        }
    }
}
