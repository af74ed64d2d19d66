//! Log lines to Kafka: whole lines (a long one in pieces), in the v2 or the legacy envelope.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::ports::KafkaMessage;

use super::logs::LogSent;
use super::outcome::Undelivered;
use super::{Relay, READ_BYTES};

/// The most log bytes one Kafka log message carries: a longer line goes in pieces
/// ([`complete_lines`]). Well under the 1,000,000 bytes a producer and a broker take by default
/// even in the legacy envelope, whose JSON escapes can make a byte six (`\u0000`), and under
/// [`READ_BYTES`], so every read of the log either holds a whole line or fills a piece: a
/// Kafka target never waits on a line that no read can complete.
pub(super) const KAFKA_LINE_MAX_BYTES: usize = 128 * 1024;

/// The most lines one produce call takes: a read of 1 MiB of short lines goes in several calls,
/// so that a call's messages (and their delivery reports) stay bounded.
pub(super) const KAFKA_LINES_PER_CALL: usize = 2_000;

const _: () = assert!((KAFKA_LINE_MAX_BYTES as u64) < READ_BYTES && 6 * KAFKA_LINE_MAX_BYTES + 1024 < 1_000_000);

impl Relay<'_> {
    /// The complete lines from `from` (the last one too, once the build's log is whole), one
    /// message each and a line too long for one in pieces ([`complete_lines`]), their delivery
    /// reports awaited. `legacy`: the key of SPEC §3's envelope.
    pub(super) async fn produce_lines(
        &self,
        index: usize,
        brokers: &[String],
        topic: &str,
        legacy: Option<&String>,
        from: u64,
    ) -> (u64, Result<LogSent, Undelivered>) {
        let text = match self.log_from(index, from).await {
            Ok(text) => text,
            Err(problem) => return (from, Err(problem.into())),
        };
        let (end, finished, metadata, number) = {
            let shared = self.lock();
            let build = &shared.build;
            (shared.archived, build.state.is_terminal(), build.metadata.clone(), build.number)
        };
        let mut whole = finished && from + text.len() as u64 >= end;
        let (mut lines, mut offset) = complete_lines(&text, from, whole, KAFKA_LINE_MAX_BYTES);
        if lines.len() > KAFKA_LINES_PER_CALL {
            // The rest goes in the next call: a call's messages stay few, whatever a read held.
            lines.truncate(KAFKA_LINES_PER_CALL);
            offset = lines.last().map_or(from, |(at, line)| at + line.len() as u64);
            whole = false;
        }
        let key: Arc<str> = legacy.map_or(metadata.as_str(), String::as_str).into();
        let mut messages: Vec<KafkaMessage> = lines
            .iter()
            .map(|(offset, line)| match legacy {
                // The archive's bytes, shared, not copied.
                None => KafkaMessage {
                    key: Arc::clone(&key),
                    payload: text.slice_ref(line.strip_suffix(b"\n").unwrap_or(line)),
                    headers: vec![("log-offset".to_owned(), offset.to_string())],
                },
                Some(_) => legacy_message(&key, number, line),
            })
            .collect();
        if whole && legacy.is_some() {
            messages.push(legacy_message(&key, number, b"Build finished"));
        }
        if messages.is_empty() {
            return (from, Ok(if whole { LogSent::Finished } else { LogSent::Waiting }));
        }
        let ends: Vec<u64> = lines.iter().map(|(offset, line)| offset + line.len() as u64).collect();
        tracing::debug!(from, lines = messages.len(), "producing log lines");
        match self.webhooks.kafka.produce(brokers, topic, messages).await {
            Ok(()) if whole => (offset, Ok(LogSent::Finished)),
            Ok(()) => (offset, Ok(LogSent::Delivered)),
            Err((delivered, problem)) => {
                (delivered.checked_sub(1).and_then(|i| ends.get(i).copied()).unwrap_or(from).max(from), Err(problem.into()))
            }
        }
    }
}

/// The messages of `text` (log bytes from offset `from`), each with its offset: its complete
/// lines, and the last one too when `whole` (the build's log is complete). A line longer than
/// `max_bytes` ([`KAFKA_LINE_MAX_BYTES`]; its newline not counted) goes in pieces of at most
/// that many bytes, the newline with the last piece: a line with no newline within a read would
/// otherwise be held back for good, and a broker refuses a message past its size limit. Each
/// piece has its own offset, so a consumer tells the pieces of a line by offsets that follow on
/// with no newline between. Also the offset reached: a partial last line of at most `max_bytes`
/// is held back until it is complete.
///
/// Where a line is cut depends only on the line, not on how its bytes arrived, so a retry sends
/// the same messages.
pub(super) fn complete_lines(text: &[u8], from: u64, whole: bool, max_bytes: usize) -> (Vec<(u64, &[u8])>, u64) {
    let max_bytes = max_bytes.max(1);
    let mut lines = Vec::new();
    let mut offset = from;
    let mut rest = text;
    while !rest.is_empty() {
        // The limit and the newline that may end the line there.
        let window = &rest[..rest.len().min(max_bytes + 1)];
        let length = match window.iter().position(|b| *b == b'\n') {
            Some(newline) => newline + 1,
            None if window.len() > max_bytes => without_cut_char(&window[..max_bytes]),
            None if whole => rest.len(),
            None => break,
        };
        let (line, after) = rest.split_at(length);
        lines.push((offset, line));
        offset += length as u64;
        rest = after;
    }
    (lines, offset)
}

/// The length of `piece` without the UTF-8 character its end cuts in two, if any, so that the
/// pieces of a long line split no character (the legacy envelope would make each half U+FFFD).
/// All of `piece` when its end cuts no character, when that character is all it holds, or when
/// the text is not UTF-8 before its end.
fn without_cut_char(piece: &[u8]) -> usize {
    match std::str::from_utf8(piece) {
        // `error_len() == None`: the text ends inside a character that is valid so far.
        Err(cut) if cut.error_len().is_none() && cut.valid_up_to() > 0 => cut.valid_up_to(),
        _ => piece.len(),
    }
}

/// SPEC §3: `{"metadata":"{app}-{space}","build":n,"job":"n","message":"<line>"}`.
pub(super) fn legacy_message(key: &Arc<str>, number: Option<u64>, line: &[u8]) -> KafkaMessage {
    #[derive(Serialize)]
    struct Envelope<'a> {
        metadata: &'a str,
        build: Option<u64>,
        job: String,
        message: String,
    }
    // The line's end, `\n` or `\r\n`; a piece of a longer line keeps a `\r` it ends in.
    let line = line.strip_suffix(b"\n").map_or(line, |line| line.strip_suffix(b"\r").unwrap_or(line));
    let envelope = Envelope {
        metadata: key,
        build: number,
        job: number.map(|n| n.to_string()).unwrap_or_default(),
        message: String::from_utf8_lossy(line).into_owned(),
    };
    KafkaMessage {
        key: Arc::clone(key),
        payload: Bytes::from(serde_json::to_vec(&envelope).expect("the envelope serialises")),
        headers: Vec::new(),
    }
}
