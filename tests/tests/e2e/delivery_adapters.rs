//! The webhook delivery adapters against real parts, and nothing else: `HttpWebhookClient`
//! against an HTTP server in the test process, written by hand so that each test sees the bytes
//! on the wire (chunks, headers, the request line); `RdKafkaClient` against rdkafka's mock
//! cluster, a Kafka-protocol broker inside the test process, read back with a real consumer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use local_gateway::stack::LOCAL_ALLOWED_PRIVATE_CIDRS;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use shuttle_adapters::{HttpWebhookClient, RdKafkaClient};
use shuttle_core::netguard::{AllowedBrokers, AllowedNetworks};
use shuttle_core::ports::{Answer, KafkaClient, KafkaMessage, LogStream, SendError, WebhookClient};
use shuttle_tests::kafka::Kafka;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The receivers' timeout in these tests: short, so that waiting it out is quick.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Longer than anything these tests wait for: a test that hits it shows a client waiting for
/// what it should not have waited for.
const PATIENCE: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// HTTP

/// What the local run allows: loopback, where these receivers and the mock cluster are.
fn loopback() -> AllowedNetworks {
    LOCAL_ALLOWED_PRIVATE_CIDRS.parse().expect("the local run's CIDRs")
}

fn client() -> HttpWebhookClient {
    HttpWebhookClient::with_timeout(TIMEOUT, loopback()).expect("an HTTP client")
}

fn basic(user_and_password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_and_password))
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

/// What the receiver does with each request.
#[derive(Clone)]
enum Reply {
    /// Reads the whole request, then answers `status` with `headers` and closes.
    Status(&'static str, Vec<(&'static str, String)>),
    /// Reads the whole request, then never answers.
    Silent,
    /// Reads the head and the first chunk of the body, then closes the connection.
    HangUp,
    /// Reads the head, then neither reads nor answers.
    Stall,
    /// Reads the head, answers `status` at once, then reads on without closing.
    Early(&'static str),
}

/// A request as the receiver read it off the wire.
#[derive(Clone, Debug, Default)]
struct Received {
    /// The request line and the headers, as sent.
    head: String,
    request_line: String,
    headers: Vec<(String, String)>,
    /// The body's chunks, in order, when it came chunked.
    chunks: Option<Vec<Vec<u8>>>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

/// A webhook receiver on `127.0.0.1:0`, one request per connection.
struct Receiver {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let base = format!("http://{}", listener.local_addr().expect("a bound address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (reply, log) = (reply.clone(), log.clone());
                tokio::spawn(async move { receive(Wire { stream, buf: Vec::new() }, reply, &log).await });
            }
        });
        Self { base, received }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn url_with_userinfo(&self, userinfo: &str, path: &str) -> String {
        self.url(path).replacen("http://", &format!("http://{userinfo}@"), 1)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("the request log").clone()
    }

    /// The one request received, once it has been read.
    async fn only_request(&self) -> Received {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let received = self.received();
            if !received.is_empty() {
                assert_eq!(received.len(), 1, "one request: {received:?}");
                return received[0].clone();
            }
            assert!(Instant::now() < deadline, "no request arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(mut wire: Wire, reply: Reply, log: &Mutex<Vec<Received>>) -> std::io::Result<()> {
    let Some(mut request) = wire.head().await? else { return Ok(()) };
    match reply {
        Reply::Stall => {
            log.lock().expect("the request log").push(request);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Reply::Early(status) => {
            log.lock().expect("the request log").push(request);
            wire.stream.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await?;
            while wire.fill().await? {
                wire.buf.clear();
            }
        }
        Reply::HangUp => {
            let chunk = wire.chunk().await?;
            request.chunks = Some(chunk.into_iter().collect());
            log.lock().expect("the request log").push(request);
            // Dropping the connection with the body half read.
        }
        Reply::Silent => {
            wire.body(&mut request).await?;
            log.lock().expect("the request log").push(request);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Reply::Status(status, headers) => {
            wire.body(&mut request).await?;
            log.lock().expect("the request log").push(request);
            let headers: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
            let answer = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n");
            wire.stream.write_all(answer.as_bytes()).await?;
            wire.stream.shutdown().await?;
        }
    }
    Ok(())
}

/// The receiving end of a connection, with what was read but not used yet.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    /// Reads more; `false` at the end of the stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        let mut block = [0u8; 16 * 1024];
        let n = self.stream.read(&mut block).await?;
        self.buf.extend_from_slice(&block[..n]);
        Ok(n > 0)
    }

    async fn until(&mut self, delimiter: &[u8]) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(at) = self.buf.windows(delimiter.len()).position(|w| w == delimiter) {
                return Ok(self.buf.drain(..at + delimiter.len()).collect());
            }
            if !self.fill().await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// The request line and headers; `None` when the client hung up first.
    async fn head(&mut self) -> std::io::Result<Option<Received>> {
        let head = match self.until(b"\r\n\r\n").await {
            Ok(head) => String::from_utf8(head).expect("a text head"),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut lines = head.trim_end().split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers =
            lines.filter_map(|line| line.split_once(':')).map(|(name, value)| (name.to_owned(), value.trim().to_owned())).collect();
        Ok(Some(Received { head, request_line, headers, ..Received::default() }))
    }

    /// One chunk of a chunked body: `None` for the last (empty) one.
    async fn chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let line = String::from_utf8(self.until(b"\r\n").await?).expect("a chunk size line");
        let size = line.trim_end().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16).expect("a hexadecimal chunk size");
        if size == 0 {
            assert_eq!(self.until(b"\r\n").await?, b"\r\n", "no trailers after the last chunk");
            return Ok(None);
        }
        let data = self.exact(size).await?;
        assert_eq!(self.exact(2).await?, b"\r\n", "a chunk ends with CRLF");
        Ok(Some(data))
    }

    /// The body, by `Content-Length` or chunk by chunk.
    async fn body(&mut self, request: &mut Received) -> std::io::Result<()> {
        if request.header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
            let mut chunks = Vec::new();
            while let Some(chunk) = self.chunk().await? {
                request.body.extend_from_slice(&chunk);
                chunks.push(chunk);
            }
            request.chunks = Some(chunks);
        } else {
            let length = request.header("content-length").map_or(0, |l| l.parse().expect("a numeric Content-Length"));
            request.body = self.exact(length).await?;
        }
        Ok(())
    }
}

/// The answer to a JSON `POST`, failing the test if the client waits past its timeout.
async fn post(client: &HttpWebhookClient, url: &str, headers: Vec<(String, String)>, body: Bytes) -> Result<Answer, SendError> {
    tokio::time::timeout(PATIENCE, client.post_json(url, headers, body)).await.expect("the client gives up in time")
}

/// The answer of a log stream, failing the test if it does not come.
async fn answered(answer: oneshot::Receiver<Result<Answer, SendError>>) -> Result<Answer, SendError> {
    tokio::time::timeout(PATIENCE, answer).await.expect("an answer in time").expect("the stream's task answers")
}

fn assert_no_credentials(error: &SendError, secrets: &[&str]) {
    for secret in secrets {
        assert!(!error.message.contains(secret), "the error shows '{secret}': {}", error.message);
    }
}

#[tokio::test]
async fn post_json_sends_the_userinfo_as_basic_auth_and_never_in_the_request() {
    let receiver = Receiver::start(Reply::Status("200 OK", vec![])).await;
    let body = Bytes::from_static(br#"{"status":"succeeded"}"#);
    let url = receiver.url_with_userinfo("b%40t:s3cr%3At", "/hooks/status?app=a1");

    let answer = post(&client(), &url, headers(&[("X-Build-Metadata", "app%3Da1")]), body.clone()).await;

    assert_eq!(answer, Ok(Answer { status: 200, retry_after: None }));
    let request = receiver.only_request().await;
    assert_eq!(request.request_line, "POST /hooks/status?app=a1 HTTP/1.1");
    assert_eq!(request.all("authorization"), vec![basic("b@t:s3cr:t")], "percent-decoded user and password");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-build-metadata"), Some("app%3Da1"));
    assert_eq!(request.body, body);
    for userinfo in ["b%40t", "s3cr", "b@t"] {
        assert!(!request.head.contains(userinfo), "the request shows '{userinfo}':\n{}", request.head);
    }
}

#[tokio::test]
async fn a_lone_token_is_the_user_with_an_empty_password() {
    let receiver = Receiver::start(Reply::Status("204 No Content", vec![])).await;

    let answer = post(&client(), &receiver.url_with_userinfo("tok3n", "/status"), vec![], Bytes::from_static(b"{}")).await;

    assert_eq!(answer, Ok(Answer { status: 204, retry_after: None }));
    let request = receiver.only_request().await;
    assert_eq!(request.all("authorization"), vec![basic("tok3n:")]);
    assert!(!request.head.contains("tok3n"), "{}", request.head);
}

#[tokio::test]
async fn an_authorization_header_given_wins_over_the_userinfo() {
    let receiver = Receiver::start(Reply::Status("200 OK", vec![])).await;
    let url = receiver.url_with_userinfo("user:s3cret", "/status");

    let answer = post(&client(), &url, headers(&[("Authorization", "Bearer abc.def")]), Bytes::from_static(b"{}")).await;

    assert_eq!(answer.map(|a| a.status), Ok(200));
    let request = receiver.only_request().await;
    assert_eq!(request.all("authorization"), vec!["Bearer abc.def"]);
    assert!(!request.head.contains("s3cret") && !request.head.contains("user@"), "{}", request.head);
}

#[tokio::test]
async fn a_redirect_is_the_answer_and_is_not_followed() {
    let receiver = Receiver::start(Reply::Status("302 Found", vec![])).await;
    let redirecting =
        Receiver::start(Reply::Status("302 Found", vec![("Location", receiver.url_with_userinfo("x:y", "/elsewhere"))])).await;

    let answer = post(&client(), &redirecting.url_with_userinfo("user:s3cret", "/status"), vec![], Bytes::from_static(b"{}")).await;

    assert_eq!(answer, Ok(Answer { status: 302, retry_after: None }));
    redirecting.only_request().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(redirecting.received().len(), 1, "the Location is not requested again");
    assert!(receiver.received().is_empty(), "the Location is not requested: {:?}", receiver.received());
}

#[tokio::test]
async fn retry_after_is_reported_as_sent() {
    for (status, retry_after) in [("503 Service Unavailable", "120"), ("429 Too Many Requests", "Wed, 21 Oct 2026 07:28:00 GMT")] {
        let receiver = Receiver::start(Reply::Status(status, vec![("Retry-After", retry_after.to_owned())])).await;

        let answer = post(&client(), &receiver.url("/status"), vec![], Bytes::from_static(b"{}")).await;

        let code = status[..3].parse().expect("a status code");
        assert_eq!(answer, Ok(Answer { status: code, retry_after: Some(retry_after.to_owned()) }));
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_a_send_error_within_the_timeout() {
    let receiver = Receiver::start(Reply::Silent).await;
    let started = Instant::now();

    let answer = post(&client(), &receiver.url_with_userinfo("user:s3cret", "/status"), vec![], Bytes::from_static(b"{}")).await;

    let elapsed = started.elapsed();
    let error = answer.expect_err("no answer is a send error");
    assert!(elapsed >= TIMEOUT && elapsed < TIMEOUT * 3, "gave up after {elapsed:?}, the timeout is {TIMEOUT:?}");
    assert_eq!(receiver.only_request().await.body, b"{}", "the request was sent whole");
    assert_no_credentials(&error, &["s3cret"]);
}

#[tokio::test]
async fn an_unreachable_receiver_is_a_send_error_without_credentials() {
    // Nothing listens on port 1.
    let error = post(&client(), "http://user:s3cret@127.0.0.1:1/status", vec![], Bytes::from_static(b"{}"))
        .await
        .expect_err("a refused connection is a send error");

    assert_no_credentials(&error, &["s3cret"]);
}

#[tokio::test]
async fn a_log_stream_arrives_chunked_in_order_and_byte_exact() {
    let receiver = Receiver::start(Reply::Status("200 OK", vec![])).await;
    let frames: Vec<Bytes> = vec![
        Bytes::from_static(b"Started by remote host\n"),
        Bytes::from("Step 1/3 : FROM alpine — ünïcödé ✓\r\n".as_bytes().to_vec()),
        // What would end a chunked body if it were not framed as one chunk.
        Bytes::from_static(b"0\r\n\r\n"),
        Bytes::from(vec![b'x'; 200 * 1024]),
        Bytes::from_static(b"Finished: SUCCESS\n"),
    ];
    let stream = client()
        .stream(&receiver.url_with_userinfo("tok3n", "/logs"), headers(&[("X-Build-Metadata", "app%3Da1"), ("X-Log-Offset", "1024")]));

    for (i, frame) in frames.iter().enumerate() {
        stream.body.send(frame.clone()).await.expect("the stream takes the frame");
        if i == 1 {
            // Idle for longer than the answer timeout: a stream has no whole-request timeout.
            tokio::time::sleep(TIMEOUT + Duration::from_millis(500)).await;
        }
    }
    let LogStream { body, answer } = stream;
    drop(body);
    let answer = answered(answer).await;

    assert_eq!(answer, Ok(Answer { status: 200, retry_after: None }));
    let request = receiver.only_request().await;
    assert_eq!(request.request_line, "POST /logs HTTP/1.1");
    assert_eq!(request.header("transfer-encoding"), Some("chunked"));
    assert_eq!(request.header("content-length"), None);
    assert_eq!(request.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(request.header("x-build-metadata"), Some("app%3Da1"));
    assert_eq!(request.header("x-log-offset"), Some("1024"));
    assert_eq!(request.all("authorization"), vec![basic("tok3n:")]);
    assert!(!request.head.contains("tok3n"), "{}", request.head);
    assert_eq!(request.body, frames.concat(), "the body is the frames, in order, byte for byte");
    assert_eq!(request.chunks, Some(frames.iter().map(|f| f.to_vec()).collect()), "one chunk per frame");
}

#[tokio::test]
async fn a_stream_cut_by_the_receiver_is_a_send_error_and_the_writer_sees_it() {
    let receiver = Receiver::start(Reply::HangUp).await;
    let stream = client().stream(&receiver.url("/logs"), vec![]);
    stream.body.send(Bytes::from_static(b"line 1\n")).await.expect("the stream takes the first frame");
    assert_eq!(receiver.only_request().await.chunks, Some(vec![b"line 1\n".to_vec()]));

    // The writer is still writing: the answer comes from the broken connection, not a deadline.
    let LogStream { body, answer } = stream;
    let answer = answered(answer).await;

    assert!(!matches!(answer, Ok(Answer { status: 200..=299, .. })), "a cut stream is not delivered: {answer:?}");
    assert!(body.send(Bytes::from_static(b"line 2\n")).await.is_err(), "the writer sees that the stream is over");
}

#[tokio::test]
async fn an_early_answer_ends_the_stream_and_the_writer_sees_it() {
    let receiver = Receiver::start(Reply::Early("401 Unauthorized")).await;
    let stream = client().stream(&receiver.url("/logs"), vec![]);
    stream.body.send(Bytes::from_static(b"line 1\n")).await.expect("the stream takes the first frame");

    // The writer is still writing, and the receiver still reading.
    let LogStream { body, answer } = stream;
    let answer = answered(answer).await;

    assert_eq!(answer, Ok(Answer { status: 401, retry_after: None }));
    assert!(body.send(Bytes::from_static(b"line 2\n")).await.is_err(), "the writer sees that the stream is over");
}

#[tokio::test]
async fn a_stream_unanswered_after_its_body_ends_is_a_send_error_within_the_timeout() {
    let receiver = Receiver::start(Reply::Silent).await;
    let stream = client().stream(&receiver.url_with_userinfo("user:s3cret", "/logs"), vec![]);
    stream.body.send(Bytes::from_static(b"line 1\n")).await.expect("the stream takes the frame");

    let LogStream { body, answer } = stream;
    drop(body);
    let ended = Instant::now();
    let answer = answered(answer).await;

    let elapsed = ended.elapsed();
    let error = answer.expect_err("no answer is a send error");
    assert!(elapsed >= TIMEOUT && elapsed < TIMEOUT * 3, "gave up after {elapsed:?}, the timeout is {TIMEOUT:?}");
    assert_eq!(receiver.only_request().await.body, b"line 1\n", "the body was sent whole");
    assert_no_credentials(&error, &["s3cret"]);
}

#[tokio::test]
async fn a_receiver_that_stops_reading_cannot_hold_the_answer_back() {
    let receiver = Receiver::start(Reply::Stall).await;
    let stream = client().stream(&receiver.url("/logs"), vec![]);
    receiver.only_request().await;

    // Fill the stream until it takes nothing more for a while: the socket buffers are full.
    let frame = Bytes::from(vec![b'x'; 256 * 1024]);
    let (mut sent, mut full_since) = (0usize, None::<Instant>);
    while full_since.is_none_or(|since| since.elapsed() < Duration::from_millis(500)) {
        match stream.body.try_send(frame.clone()) {
            Ok(()) => {
                sent += frame.len();
                full_since = None;
                assert!(sent < 512 * 1024 * 1024, "the stream kept taking frames the receiver does not read");
            }
            Err(_) => {
                full_since.get_or_insert_with(Instant::now);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    let LogStream { body, answer } = stream;
    drop(body);
    let ended = Instant::now();
    let answer = answered(answer).await;

    let elapsed = ended.elapsed();
    assert!(answer.is_err(), "no answer is a send error: {answer:?}");
    assert!(elapsed >= TIMEOUT && elapsed < TIMEOUT * 3, "gave up after {elapsed:?}, the timeout is {TIMEOUT:?}");
}

#[tokio::test]
async fn a_stream_to_a_bad_url_fails_at_once_and_closes_its_body() {
    let stream = client().stream("ftp://user:s3cret@example.com/logs", vec![]);
    let LogStream { body, answer } = stream;

    let error = answered(answer).await.expect_err("not an http URL");

    assert_no_credentials(&error, &["s3cret"]);
    assert!(body.send(Bytes::from_static(b"line\n")).await.is_err(), "the writer sees that the stream is over");
}

// The SSRF guard (SPEC §7).

fn client_allowing(cidrs: &str) -> HttpWebhookClient {
    HttpWebhookClient::with_timeout(TIMEOUT, cidrs.parse().expect("CIDRs")).expect("an HTTP client")
}

#[tokio::test]
async fn a_webhook_to_a_refused_address_is_not_sent_and_the_failure_is_final() {
    let receiver = Receiver::start(Reply::Status("200 OK", vec![])).await;
    let client = client_allowing("10.0.0.0/8");
    let url = receiver.url_with_userinfo("token:canarypw", "/status");

    let error = post(&client, &url, vec![], Bytes::from_static(b"{}")).await.expect_err("refused");

    assert!(error.refused, "a refusal is final: {error:?}");
    let shown = receiver.url_with_userinfo("token:***", "/status");
    assert_eq!(error.message, format!("{shown} is refused: 127.0.0.1 is loopback"));
    let LogStream { body, answer } = client.stream(&url, vec![]);
    let error = answered(answer).await.expect_err("refused");
    assert!(error.refused && error.message.contains("127.0.0.1 is loopback"), "{error:?}");
    assert!(
        body.send(Bytes::from_static(
            b"line
"
        ))
        .await
        .is_err(),
        "the writer sees that the stream is over"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(receiver.received().is_empty(), "nothing reached the receiver");

    let allowed = client_allowing("127.0.0.1/32");
    assert_eq!(post(&allowed, &url, vec![], Bytes::from_static(b"{}")).await.map(|a| a.status), Ok(200), "allowed, it is sent");
}

#[tokio::test]
async fn a_webhook_name_resolving_only_to_refused_addresses_is_refused_at_connection() {
    let receiver = Receiver::start(Reply::Status("200 OK", vec![])).await;
    let url = receiver.url("/status").replacen("127.0.0.1", "localhost", 1);

    // Some loopback address is allowed, so `localhost` is not refused by name: its addresses are.
    let error = post(&client_allowing("127.0.0.2/32"), &url, vec![], Bytes::from_static(b"{}")).await.expect_err("refused");

    assert!(error.refused, "{error:?}");
    assert!(error.message.starts_with(&format!("{url} is refused: localhost resolves only to refused addresses (loopback")), "{error:?}");
    assert!(!error.message.contains("127.0.0.1"), "the address is not shown: {error:?}");
    assert!(receiver.received().is_empty(), "nothing reached the receiver");
}

// ---------------------------------------------------------------------------------------------
// Kafka

/// A message as a consumer read it back.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    key: String,
    payload: Vec<u8>,
    headers: Vec<(String, String)>,
}

fn log_lines(count: usize) -> Vec<KafkaMessage> {
    (0..count)
        .map(|i| KafkaMessage {
            key: format!("app-1/build-{}", i % 3).into(),
            payload: Bytes::from(format!("line {i}: ünïcödé\n")),
            // The first message has no headers at all.
            headers: if i == 0 { vec![] } else { headers(&[("X-Log-Offset", &(i * 100).to_string()), ("X-Build-Metadata", "app%3Da1")]) },
        })
        .collect()
}

fn expected(messages: &[KafkaMessage]) -> Vec<Read> {
    messages.iter().map(|m| Read { key: m.key.to_string(), payload: m.payload.to_vec(), headers: m.headers.clone() }).collect()
}

/// The first `count` messages of partition 0 of `topic`, from its beginning.
async fn read_back(bootstrap: &str, topic: &str, count: usize) -> Vec<Read> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "delivery-adapters-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition_offset(topic, 0, Offset::Beginning).expect("partition 0");
    consumer.assign(&partitions).expect("assign partition 0");
    let mut read = Vec::new();
    while read.len() < count {
        let message = tokio::time::timeout(PATIENCE, consumer.recv()).await.expect("the messages arrive in time").expect("a message");
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), String::from_utf8(h.value.unwrap_or_default().to_vec()).expect("a text value")))
                    .collect()
            })
            .unwrap_or_default();
        let text = |bytes: Option<&[u8]>| String::from_utf8(bytes.unwrap_or_default().to_vec()).expect("text");
        read.push(Read { key: text(message.key()), payload: message.payload().unwrap_or_default().to_vec(), headers });
    }
    read
}

async fn produce(client: &RdKafkaClient, brokers: &[String], topic: &str, messages: Vec<KafkaMessage>) -> Result<(), (usize, SendError)> {
    tokio::time::timeout(PATIENCE, client.produce(brokers, topic, messages)).await.expect("the delivery reports come in time")
}

#[tokio::test]
async fn kafka_messages_arrive_in_order_with_their_keys_and_headers() {
    let cluster = MockCluster::new(3).expect("a mock Kafka cluster");
    cluster.create_topic("buildlogs", 1, 3).expect("the topic");
    let brokers: Vec<String> = cluster.bootstrap_servers().split(',').map(str::to_owned).collect();
    let client = RdKafkaClient::new(loopback());
    let (first, second) = (log_lines(60), log_lines(5));

    // Twice through the same producer, kept between calls.
    assert_eq!(produce(&client, &brokers, "buildlogs", first.clone()).await, Ok(()));
    assert_eq!(produce(&client, &brokers, "buildlogs", second.clone()).await, Ok(()));

    let read = read_back(&cluster.bootstrap_servers(), "buildlogs", first.len() + second.len()).await;
    assert_eq!(read, expected(&[first, second].concat()));
}

#[tokio::test]
async fn failover_delivers_through_any_reachable_broker() {
    let cluster = MockCluster::new(1).expect("a mock Kafka cluster");
    cluster.create_topic("buildlogs", 1, 1).expect("the topic");
    // Nothing listens on port 1.
    let brokers = vec!["127.0.0.1:1".to_owned(), cluster.bootstrap_servers()];
    let messages = log_lines(10);

    let result = produce(&RdKafkaClient::new(loopback()), &brokers, "buildlogs", messages.clone()).await;

    assert_eq!(result, Ok(()));
    assert_eq!(read_back(&cluster.bootstrap_servers(), "buildlogs", messages.len()).await, expected(&messages));
}

#[tokio::test]
async fn an_unreachable_topic_delivers_nothing_within_the_message_timeout() {
    let message_timeout = Duration::from_secs(2);
    let client = RdKafkaClient::with_message_timeout(message_timeout, loopback());
    let started = Instant::now();

    // Nothing listens on port 1.
    let result = produce(&client, &["127.0.0.1:1".to_owned()], "buildlogs", log_lines(3)).await;

    let elapsed = started.elapsed();
    let (delivered, error) = result.expect_err("nothing can be delivered");
    assert_eq!(delivered, 0, "{error}");
    assert!(elapsed >= message_timeout && elapsed < message_timeout * 3, "gave up after {elapsed:?}");
}

#[tokio::test]
async fn kafka_brokers_on_refused_addresses_get_nothing_and_the_failure_is_final() {
    let cluster = MockCluster::new(1).expect("a mock Kafka cluster");
    cluster.create_topic("buildlogs", 1, 1).expect("the topic");
    let brokers = vec!["8.8.8.8:9092".to_owned(), cluster.bootstrap_servers()];

    let (delivered, error) =
        produce(&RdKafkaClient::new(AllowedNetworks::none()), &brokers, "buildlogs", log_lines(3)).await.expect_err("refused");

    assert_eq!(delivered, 0);
    assert!(error.refused, "a refusal is final: {error:?}");
    assert!(error.message.starts_with("the Kafka broker ") && error.message.contains("loopback"), "{error:?}");
    let cluster_only = vec![cluster.bootstrap_servers()];
    assert_eq!(produce(&RdKafkaClient::new(loopback()), &cluster_only, "buildlogs", log_lines(3)).await, Ok(()), "allowed, it is sent");
}

/// Issue 20: `KAFKA_ALLOWED_BROKERS` holds for the brokers a target names and for those the
/// cluster advertises, which librdkafka would otherwise dial unchecked.
#[tokio::test]
async fn kafka_allowed_brokers_holds_for_the_bootstrap_and_the_advertised_brokers() {
    let kafka = Kafka::start_advertising(Some("localhost"));
    kafka.create_topic("buildlogs").await;
    let port = kafka.bootstrap().rsplit_once(':').map(|(_, port)| port.to_owned()).unwrap();
    let bootstrap = vec![format!("127.0.0.1:{port}")];
    let client = |allowed: &str| RdKafkaClient::new(loopback()).with_allowed_brokers(allowed.parse::<AllowedBrokers>().unwrap());

    let (delivered, error) = produce(&client("10.1.2.3:9092"), &bootstrap, "buildlogs", log_lines(3)).await.expect_err("not listed");
    assert!(delivered == 0 && error.refused, "final: {error:?}");
    assert_eq!(error.message, format!("the Kafka broker 127.0.0.1:{port} is not in KAFKA_ALLOWED_BROKERS"));

    let (delivered, error) =
        produce(&client(&format!("127.0.0.1:{port}")), &bootstrap, "buildlogs", log_lines(3)).await.expect_err("advertised elsewhere");
    assert!(delivered == 0 && error.refused, "final: {error:?}");
    assert!(error.message.contains(&format!("advertises the broker localhost:{port}")), "{error:?}");

    let both = format!("127.0.0.1:{port}, LOCALHOST:{port}");
    assert_eq!(produce(&client(&both), &bootstrap, "buildlogs", log_lines(3)).await, Ok(()), "every broker listed: sent");
    // Messages of a refused send would come first in the topic.
    let received = kafka.messages("buildlogs", 3, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 3, "the three lines of the one allowed send, none of the refused ones");
}

/// Throughput of the Kafka client against the mock cluster: 100,000 lines of 100 bytes in
/// batches of 10,000, as the relay sends them. Prints lines/s; run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn kafka_lines_per_second() {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic("bench", 1, 1).expect("a topic");
    let client = RdKafkaClient::new(loopback());
    let brokers = vec![cluster.bootstrap_servers()];
    let line = Bytes::from(vec![b'x'; 99]);
    let started = Instant::now();
    for batch in 0..10 {
        let messages = (0..10_000)
            .map(|i| KafkaMessage {
                key: "meta".into(),
                payload: line.clone(),
                headers: vec![("log-offset".into(), (batch * 10_000 + i).to_string())],
            })
            .collect();
        client.produce(&brokers, "bench", messages).await.expect("delivered");
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("kafka: 100000 lines in {elapsed:.2} s = {:.0} lines/s", 100_000.0 / elapsed);
}
