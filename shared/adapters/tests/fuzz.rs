//! Property-based fuzzing of the Jenkins `progressiveText` client (issue 6): `X-Text-Size` and
//! `X-More-Data` of any shape, bodies in any chunking, and the cursor a poller follows through a
//! growing log. The Jenkins side is a bare HTTP/1.1 server written here, so headers and chunk
//! boundaries are exactly what a case says. `PROPTEST_CASES` sets the run length.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use proptest::prelude::*;
use shuttle_adapters::jenkins::{JenkinsClient, JenkinsCredentials, JenkinsSettings};
use shuttle_core::config::Secret;
use shuttle_core::jenkins::{JenkinsError, SinkClosed};
use shuttle_core::ports::{Jenkins, LogSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use url::Url;

/// One answer of the fake Jenkins: its headers and its body, chunk by chunk.
#[derive(Clone, Debug, Default)]
struct Answer {
    headers: Vec<(&'static str, String)>,
    chunks: Vec<Vec<u8>>,
}

/// A log as Jenkins holds it: text, and console notes that `progressiveText` strips from the
/// body but counts in `X-Text-Size`.
#[derive(Clone, Debug, Default)]
struct JenkinsLog {
    pieces: Vec<Piece>,
    finished: bool,
}

impl JenkinsLog {
    fn size(&self) -> u64 {
        self.pieces.iter().map(|(bytes, _)| bytes.len() as u64).sum()
    }

    /// `progressiveText?start=S`: the text from `S` (the whole log when `S` is past the end).
    fn answer(&self, start: u64, chunk: usize) -> Answer {
        let start = if start > self.size() { 0 } else { start };
        let mut body = Vec::new();
        let mut offset = 0u64;
        for (bytes, note) in &self.pieces {
            let end = offset + bytes.len() as u64;
            if !note && end > start {
                body.extend_from_slice(&bytes[usize::try_from(start.saturating_sub(offset)).unwrap()..]);
            }
            offset = end;
        }
        let mut headers = vec![("X-Text-Size", self.size().to_string())];
        if !self.finished {
            headers.push(("X-More-Data", "true".to_owned()));
        }
        Answer { headers, chunks: body.chunks(chunk.max(1)).map(<[u8]>::to_vec).collect() }
    }

    fn text(&self) -> Vec<u8> {
        self.pieces.iter().filter(|(_, note)| !note).flat_map(|(bytes, _)| bytes.clone()).collect()
    }
}

/// What the server answers: a fixed answer, or a log.
enum Script {
    Fixed(Answer),
    Log(JenkinsLog, usize),
}

#[derive(Clone, Copy)]
enum Test {
    Answer,
    GrowingLog,
}

struct Server {
    script: Arc<Mutex<Script>>,
    client: JenkinsClient,
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap())
}

/// A fake Jenkins, started once per test (the tests run in parallel, each with its own script).
fn server(test: Test) -> &'static Server {
    static SERVERS: [OnceLock<Server>; 2] = [OnceLock::new(), OnceLock::new()];
    SERVERS[test as usize].get_or_init(|| {
        let listener = runtime().block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let script = Arc::new(Mutex::new(Script::Fixed(Answer::default())));
        let serving = script.clone();
        runtime().spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let script = serving.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let start: u64 =
                        head.split_once("start=").and_then(|(_, rest)| rest.split([' ', '&']).next()?.parse().ok()).unwrap_or(0);
                    let answer = match &*script.lock().unwrap() {
                        Script::Fixed(answer) => answer.clone(),
                        Script::Log(log, chunk) => log.answer(start, *chunk),
                    };
                    let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain;charset=UTF-8\r\n".to_vec();
                    for (name, value) in &answer.headers {
                        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                    }
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
                    if socket.write_all(&out).await.is_err() {
                        return;
                    }
                    for chunk in answer.chunks.iter().filter(|c| !c.is_empty()) {
                        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
                        frame.extend_from_slice(chunk);
                        frame.extend_from_slice(b"\r\n");
                        if socket.write_all(&frame).await.is_err() || socket.flush().await.is_err() {
                            return;
                        }
                    }
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        let client = JenkinsClient::new(JenkinsSettings {
            url: url.clone(),
            folder: vec!["fuzz".into()],
            credentials: JenkinsCredentials::Given { user: "fuzz".into(), token: Secret::from("fuzz-token") },
            timeout: Duration::from_secs(10),
            log_timeout: Duration::from_secs(10),
        })
        .unwrap();
        Server { script, client }
    })
}

#[derive(Default)]
struct Collected(Vec<u8>);

#[async_trait]
impl LogSink for Collected {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkClosed> {
        self.0.extend_from_slice(&chunk);
        Ok(())
    }
}

/// An `X-Text-Size` or `X-More-Data` value: numbers near `start`, and anything a header holds.
fn header_value(start: u64) -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.9,
        prop_oneof![
            4 => (0..start.saturating_mul(2).saturating_add(100)).prop_map(|n| n.to_string()),
            1 => Just(u64::MAX.to_string()),
            1 => Just("18446744073709551616".to_owned()),
            1 => prop_oneof![Just("true".to_owned()), Just("TRUE".to_owned()), Just("false".to_owned()), Just(String::new())],
            1 => (0..1000u64).prop_map(|n| format!("+{n}")),
            1 => (0..1000u64).prop_map(|n| format!("-{n}")),
            2 => "[!-~]([ -~]{0,10}[!-~])?",
        ],
    )
}

fn progressive_answer() -> impl Strategy<Value = (u64, Option<String>, Option<String>, Vec<Vec<u8>>)> {
    prop_oneof![Just(0u64), 0..10_000u64, Just(u64::MAX - 1)].prop_flat_map(|start| {
        (Just(start), header_value(start), header_value(start), prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..6))
    })
}

/// A piece of log text, and whether it is a console note.
type Piece = (Vec<u8>, bool);

/// A log written in pieces (some of them console notes), the reads between them, and the size
/// of the body's chunks.
fn growing_log() -> impl Strategy<Value = (Vec<Vec<Piece>>, usize)> {
    let piece = (prop::collection::vec(any::<u8>(), 1..200), prop::bool::weighted(0.2));
    (prop::collection::vec(prop::collection::vec(piece, 0..4), 1..8), 1usize..400)
}

proptest! {
    #[test]
    fn fuzz_progressive_text_answer((start, text_size, more_data, chunks) in progressive_answer()) {
        let server = server(Test::Answer);
        let mut headers = Vec::new();
        headers.extend(text_size.clone().map(|v| ("X-Text-Size", v)));
        headers.extend(more_data.clone().map(|v| ("X-More-Data", v)));
        *server.script.lock().unwrap() = Script::Fixed(Answer { headers, chunks: chunks.clone() });
        let mut sink = Collected::default();
        let read = runtime().block_on(server.client.read_log("app-job", 7, start, &mut sink));
        match text_size.as_deref().and_then(|v| v.trim().parse::<u64>().ok()) {
            None => prop_assert!(matches!(read, Err(JenkinsError::Unexpected(_))), "{:?} for X-Text-Size {:?}", read, text_size),
            Some(size) => {
                let window = read.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(window.start, start);
                prop_assert_eq!(window.more_data, more_data.as_deref().is_some_and(|v| v.trim().eq_ignore_ascii_case("true")));
                if size < start {
                    // The log from 0 (a start past the end): nothing new, the cursor stays.
                    prop_assert_eq!(window.next_start, start);
                    prop_assert!(sink.0.is_empty());
                } else {
                    prop_assert_eq!(window.next_start, size);
                    prop_assert_eq!(sink.0, chunks.concat());
                }
            }
        }
    }

    #[test]
    fn fuzz_progressive_text_cursor_follows_a_growing_log((writes, chunk) in growing_log()) {
        // The poller's loop: read from the cursor, archive what came, move the cursor to
        // `X-Text-Size`, until Jenkins says the log is complete. The archive is the log's text.
        let server = server(Test::GrowingLog);
        let mut jenkins = JenkinsLog::default();
        let (mut cursor, mut archive) = (0u64, Vec::new());
        let reads = writes.len();
        for (i, pieces) in writes.into_iter().enumerate() {
            jenkins.pieces.extend(pieces);
            jenkins.finished = i + 1 == reads;
            *server.script.lock().unwrap() = Script::Log(jenkins.clone(), chunk);
            let mut sink = Collected::default();
            let window = runtime().block_on(server.client.read_log("app-job", 7, cursor, &mut sink)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(window.start, cursor);
            prop_assert!(window.next_start >= cursor, "the cursor went back");
            prop_assert_eq!(window.more_data, !jenkins.finished);
            archive.extend_from_slice(&sink.0);
            cursor = window.next_start;
        }
        prop_assert_eq!(cursor, jenkins.size());
        prop_assert_eq!(archive, jenkins.text());
    }
}
