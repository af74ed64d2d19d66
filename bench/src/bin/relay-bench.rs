//! Log relay throughput and line latency (issue 7), each against a baseline measured in the same
//! run of this same binary; the table shows medians over the runs. Run by `bench/relay.sh`, which
//! starts the AWS emulator and builds this with `--profile bench`; see its header for what each
//! figure holds.
//!
//! `relay-bench [--runs 3] [--mb 10] [--probes 50] [--poll-ms 1000] [--throughput-poll-ms 100]`
//!
//! Everything but the AWS emulator runs in this process, as in the end-to-end tests: the local
//! gateway and its poller (`spawn_app_with`), the Jenkins stand-in, the HTTP sink ([`Receiver`])
//! and the Kafka broker ([`Kafka`], a Tansu broker process).
//!
//! Per run:
//! - HTTP: a raw loopback TCP copy of the log's bytes (connect done, first write → last byte
//!   read), then the same bytes appended at once to a running stand-in build whose only log
//!   target is the sink (first append → the log's last byte at the sink). Also the archive
//!   alone: the same bytes written to the log archive in the poller's chunks, one after the
//!   other, through the shuttle's S3 adapter, which is as fast as a relay that sends only what
//!   the archive holds can go.
//! - Kafka: a bare `FutureProducer` (the adapter's settings) sending the log's lines, then the same
//!   bytes appended to a running build whose only log target is `kafka://` on the same broker;
//!   both timed from the first send / append to librdkafka reporting the last line delivered (the
//!   poller's Kafka client is the shuttle's adapter wrapped in [`TimedKafka`], which notes that).
//! - Latency: probe lines appended at random times to a running build of an app polling every
//!   `--poll-ms`; each probe's time from its append to its arrival at the sink.

// The bench's output is its table.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use async_trait::async_trait;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;
use shuttle_bench::{median, table};
use shuttle_core::poll::ARCHIVE_CHUNK_BYTES;
use shuttle_core::ports::{KafkaClient, KafkaMessage, SendError};
use shuttle_tests::kafka::Kafka;
use shuttle_tests::receiver::{Received, Receiver};
use shuttle_tests::{archive, spawn_app_with, Answer, AppOptions, TestApp, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Issue 7's floors and bounds.
const THROUGHPUT_GOAL: f64 = 0.5;
const P50_MARGIN: Duration = Duration::from_millis(50);
const P99_MARGIN: Duration = Duration::from_millis(250);
/// The longest any one measurement may take before the bench gives up.
const LIMIT: Duration = Duration::from_secs(300);
/// What every build's metadata (and so every Kafka key) is.
const METADATA: &str = "bench/relay";
/// Builds run this long in the stand-in: far longer than a measurement; each is stopped after it.
const DOCKERFILE: &str = "FROM alpine:3\nRUN sleep 900\n";
/// Each line of the big log is 100 bytes.
const LINE_BYTES: usize = 100;

struct Options {
    runs: usize,
    lines: usize,
    probes: usize,
    poll: Duration,
    throughput_poll: Duration,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let (mut runs, mut mb, mut probes, mut poll_ms, mut throughput_poll_ms) = (3_u64, 10_u64, 50_u64, 1000_u64, 100_u64);
        use lexopt::prelude::*;
        let usage = "usage: relay-bench [--runs N] [--mb M] [--probes P] [--poll-ms I] [--throughput-poll-ms I]";
        let mut parser = lexopt::Parser::from_env();
        while let Some(arg) = parser.next()? {
            let flag = match arg {
                Long(flag) => flag.to_owned(),
                _ => bail!("{}; {usage}", arg.unexpected()),
            };
            let target = match flag.as_str() {
                "runs" => &mut runs,
                "mb" => &mut mb,
                "probes" => &mut probes,
                "poll-ms" => &mut poll_ms,
                "throughput-poll-ms" => &mut throughput_poll_ms,
                _ => bail!("invalid option '--{flag}'; {usage}"),
            };
            let raw = parser.value()?.string()?;
            *target = raw.parse().with_context(|| format!("--{flag} must be a whole number, got '{raw}'"))?;
        }
        ensure!(runs > 0 && mb > 0 && probes > 0 && poll_ms > 0 && throughput_poll_ms > 0, "every setting must be at least 1");
        Ok(Self {
            runs: usize::try_from(runs)?,
            lines: usize::try_from(mb * 1_000_000)? / LINE_BYTES,
            probes: usize::try_from(probes)?,
            poll: Duration::from_millis(poll_ms),
            throughput_poll: Duration::from_millis(throughput_poll_ms),
        })
    }
}

/// `lines` lines of [`LINE_BYTES`] each: `line 000042 xxx…\n`.
fn numbered_lines(lines: usize) -> Vec<u8> {
    (0..lines).flat_map(|i| format!("line {i:06} {}\n", "x".repeat(LINE_BYTES - 13)).into_bytes()).collect()
}

/// The start of the last line of [`numbered_lines`]`(lines)`.
fn last_line(lines: usize) -> Vec<u8> {
    format!("line {:06} ", lines - 1).into_bytes()
}

/// An app on its own resources, with a quick schedule and the given poll interval and window;
/// its poller started now or (`poller: false`) by the caller.
async fn app(poll: Duration, window: &str, poller: bool) -> TestApp {
    let settings = vec![("POLL_INTERVAL", format!("{}ms", poll.as_millis())), ("LOG_WINDOW", window.to_owned())];
    // Docker simulated: the bench measures the relay, not buildah.
    let defaults = AppOptions::default();
    let jenkins = jenkins_standin::StandInConfig { docker: jenkins_standin::DockerMode::Simulated, ..defaults.jenkins.clone() };
    spawn_app_with(AppOptions { settings, poller, jenkins, ..defaults }).await
}

/// Creates the v2 build `/{app_id}/1` (Jenkins job `app_id`, build 1) logging to `logs`, and
/// waits until it runs in the stand-in.
async fn start_build(app: &TestApp, sources: &TestServer, app_id: &str, logs: Vec<String>) -> anyhow::Result<()> {
    let body = json!({
        "webhooks": {"logs": logs},
        "metadata": METADATA,
        "source": {"url": sources.url("/src.tgz")},
        "destination": {"url": "docker://registry.example/org/app:1"},
    });
    let path = format!("/{app_id}/1");
    let response = app.post(&path, body.to_string()).await;
    ensure!(response.status() == 200, "create {path}: {} {}", response.status(), response.text().await.unwrap_or_default());
    let deadline = Instant::now() + LIMIT;
    loop {
        let status: serde_json::Value = app.get(&format!("{path}/status")).await.json().await.unwrap_or_default();
        if status["building"] == true {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{path} not running in the stand-in within {LIMIT:?}: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the build `/{app_id}/1`: nothing of it is polled during the next measurements.
async fn stop_build(app: &TestApp, app_id: &str) -> anyhow::Result<()> {
    let response = app.delete(&format!("/{app_id}/1")).await;
    ensure!(response.status() == 200, "stop /{app_id}/1: {}", response.status());
    Ok(())
}

/// Appends `text` to build 1 of `job` in the stand-in, in pieces of at most 1 MiB (as the tests).
async fn append(app: &TestApp, job: &str, text: &[u8]) -> anyhow::Result<()> {
    let url = format!("{}job/{job}/1/__standin/append", app.jenkins.base_url());
    for piece in text.chunks(1024 * 1024) {
        let response = app.client.post(&url).body(piece.to_vec()).send().await.context("append to the stand-in")?;
        ensure!(response.status() == 204, "append to {job}/1: {} (the build must still run)", response.status());
    }
    Ok(())
}

/// When the byte that ends the first occurrence of `needle` arrived at the sink, over every
/// stream to `path` (a range sent twice counts at its first arrival).
fn arrival(streams: &[Received], needle: &[u8], extra: usize) -> Option<Instant> {
    streams
        .iter()
        .filter_map(|stream| {
            let end = stream.body.windows(needle.len()).rposition(|w| w == needle)? + needle.len() + extra;
            stream.frames.iter().find(|(_, len)| *len >= end).map(|(at, _)| *at)
        })
        .min()
}

/// The log offset the sink has reached at `path`: the furthest end of any stream.
fn reached(receiver: &Receiver, path: &str) -> u64 {
    let streams = receiver.requests(path);
    let end = |s: &Received| s.header("x-log-offset").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + s.body.len() as u64;
    streams.iter().map(end).max().unwrap_or(0)
}

/// How long a raw loopback TCP copy of `text` takes: from the first write (connected) to the
/// last byte read on the other socket.
async fn tcp_copy(text: &[u8]) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address: SocketAddr = listener.local_addr()?;
    let expected = text.len();
    let reader = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut buffer = vec![0_u8; 64 * 1024];
        let mut read = 0;
        while read < expected {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            read += n;
        }
        Ok::<_, std::io::Error>((read, Instant::now()))
    });
    let mut writer = TcpStream::connect(address).await?;
    let started = Instant::now();
    writer.write_all(text).await?;
    let (read, done) = reader.await??;
    ensure!(read == expected, "the TCP copy read {read} of {expected} bytes");
    Ok(done.duration_since(started))
}

/// How long writing `text` to the log archive takes, in the poller's chunks one after the other,
/// through the shuttle's own S3 adapter (to a build id of its own).
async fn archive_alone(app: &TestApp, text: &[u8]) -> anyhow::Result<Duration> {
    let source_id = uuid::Uuid::new_v4();
    let started = Instant::now();
    for (index, chunk) in text.chunks(ARCHIVE_CHUNK_BYTES).enumerate() {
        let offset = (index * ARCHIVE_CHUNK_BYTES) as u64;
        app.poller.sources.put_log_chunk(source_id, offset, bytes::Bytes::copy_from_slice(chunk)).await?;
    }
    Ok(started.elapsed())
}

/// The HTTP relay, timed: the append alone, append → first byte of the log at the sink, and
/// append → its last byte.
struct HttpRelay {
    append: Duration,
    first: Duration,
    last: Duration,
}

async fn http_relay(app: &TestApp, sources: &TestServer, app_id: &str, text: &[u8], lines: usize) -> anyhow::Result<HttpRelay> {
    let receiver = Receiver::ok().await;
    start_build(app, sources, app_id, vec![receiver.url("/logs")]).await?;
    let before = app.console_text(app_id, 1).await.len() as u64;
    // What the pipeline printed so far is at the sink before the clock starts.
    wait_for(LIMIT, "the pipeline's own lines at the sink", || reached(&receiver, "/logs") >= before).await?;
    let started = Instant::now();
    append(app, app_id, text).await?;
    let appended = started.elapsed();
    let end = before + text.len() as u64;
    wait_for(LIMIT, "the whole log at the sink", || reached(&receiver, "/logs") >= end).await?;
    let streams = receiver.requests("/logs");
    let first = arrival(&streams, b"line 000000 ", 0).context("the first line at the sink")?;
    let last = arrival(&streams, &last_line(lines), LINE_BYTES - 12).context("the last line at the sink")?;
    stop_build(app, app_id).await?;
    Ok(HttpRelay { append: appended, first: first.duration_since(started), last: last.duration_since(started) })
}

/// Polls `done` every 200 ms (the sink records arrival times itself) until it holds.
async fn wait_for(limit: Duration, what: &str, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        ensure!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// A producer with the settings of the shuttle's Kafka adapter (`shared/adapters/src/kafka.rs`:
/// idempotent, 5 ms linger, 10 s message timeout, 5 s connection setup), librdkafka's defaults
/// otherwise.
fn bare_producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "10000")
        .set("linger.ms", "5")
        .set("socket.connection.setup.timeout.ms", "5000")
        .create()?)
}

/// The baseline: every line of `text` sent by the bare producer as the relay sends it (key the
/// metadata, payload the line without `\n`, a `log-offset` header), all enqueued at once in order
/// (waiting on the oldest delivery when the queue is full) and every delivery awaited, as the
/// adapter's `produce_in_order`. Returns the time to the last delivery report.
async fn kafka_bare(producer: &FutureProducer, kafka: &Kafka, topic: &str, text: &[u8]) -> anyhow::Result<Duration> {
    kafka.create_topic(topic).await;
    let started = Instant::now();
    let mut pending: std::collections::VecDeque<DeliveryFuture> = std::collections::VecDeque::new();
    let mut offset = 0_usize;
    for line in text.split_inclusive(|b| *b == b'\n') {
        let header = offset.to_string();
        offset += line.len();
        let payload = line.strip_suffix(b"\n").unwrap_or(line);
        let mut record = FutureRecord::to(topic)
            .key(METADATA)
            .payload(payload)
            .headers(OwnedHeaders::new_with_capacity(1).insert(Header { key: "log-offset", value: Some(header.as_str()) }));
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    let oldest = pending.pop_front().context("the queue is full of nothing of ours")?;
                    oldest.await.context("the producer went away")?.map_err(|(e, _)| e)?;
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }
    for delivery in pending {
        delivery.await.context("the producer went away")?.map_err(|(e, _)| e)?;
    }
    Ok(started.elapsed())
}

/// Ours: the same bytes appended to a running build whose one log target is the topic; the time
/// from the first append to the adapter's call holding the last line returning delivered.
async fn kafka_relay(
    app: &TestApp,
    timed: &TimedKafka,
    sources: &TestServer,
    kafka: &Kafka,
    app_id: &str,
    text: &[u8],
    lines: usize,
) -> anyhow::Result<Duration> {
    let topic = format!("{app_id}-logs");
    kafka.create_topic(&topic).await;
    *timed.delivered.lock().expect("not poisoned") = (0, None);
    start_build(app, sources, app_id, vec![format!("kafka://{}/{topic}", kafka.bootstrap())]).await?;
    let before = app.console_text(app_id, 1).await.bytes().filter(|b| *b == b'\n').count();
    // What the pipeline printed so far is delivered before the clock starts.
    wait_for(LIMIT, "the pipeline's own lines delivered", || timed.delivered().0 >= before).await?;
    let started = Instant::now();
    append(app, app_id, text).await?;
    wait_for(LIMIT, "the last line delivered", || timed.delivered().1.is_some()).await?;
    let (count, delivered) = timed.delivered();
    ensure!(count >= before + lines, "{count} lines delivered, {} expected", before + lines);
    stop_build(app, app_id).await?;
    Ok(delivered.context("the last line delivered")?.duration_since(started))
}

/// The poller's Kafka client, timed: the shuttle's own adapter (`RdKafkaClient`) underneath,
/// unchanged. It counts the lines reported delivered, and notes when a call holding the marked
/// line returned delivered: when librdkafka reported every message of that call delivered to
/// the broker (the relay's calls for one target follow each other, in order).
struct TimedKafka {
    adapter: Arc<dyn KafkaClient>,
    marker: Vec<u8>,
    delivered: Mutex<(usize, Option<Instant>)>,
}

impl TimedKafka {
    fn delivered(&self) -> (usize, Option<Instant>) {
        *self.delivered.lock().expect("not poisoned")
    }
}

#[async_trait]
impl KafkaClient for TimedKafka {
    async fn produce(&self, brokers: &[String], topic: &str, messages: Vec<KafkaMessage>) -> Result<(), (usize, SendError)> {
        let (count, marked) = (messages.len(), messages.iter().any(|m| m.payload.starts_with(&self.marker)));
        let result = self.adapter.produce(brokers, topic, messages).await;
        let mut delivered = self.delivered.lock().expect("not poisoned");
        match &result {
            Ok(()) => {
                delivered.0 += count;
                if marked {
                    delivered.1.get_or_insert_with(Instant::now);
                }
            }
            Err((some, _)) => delivered.0 += some,
        }
        result
    }
}

/// A number in [0, 1) from the system's random source.
fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1_u64 << 53) as f64
}

/// `probes` lines appended at random times (gaps uniform in 0.25–1.25 poll intervals, so the
/// appends fall at every phase of the poll) to a running build; each one's time from its append
/// to its last byte at the sink.
async fn latencies(app: &TestApp, sources: &TestServer, app_id: &str, probes: usize, poll: Duration) -> anyhow::Result<Vec<Duration>> {
    let receiver = Receiver::ok().await;
    start_build(app, sources, app_id, vec![receiver.url("/logs")]).await?;
    let before = app.console_text(app_id, 1).await.len() as u64;
    wait_for(LIMIT, "the pipeline's own lines at the sink", || reached(&receiver, "/logs") >= before).await?;
    let mut appended = Vec::with_capacity(probes);
    // The times come from a thread of their own, so that they do not follow the runtime's
    // timers, which the poller's reads use too: each probe is timed from when it was due.
    let (due_tx, mut due) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for _ in 0..probes {
            std::thread::sleep(poll.mul_f64(0.25 + random_unit()));
            if due_tx.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    for i in 0..probes {
        let at = due.recv().await.context("the probe clock ended early")?;
        let line = format!("latency probe {app_id} {i:04}\n");
        appended.push((line.clone(), at));
        append(app, app_id, line.as_bytes()).await?;
    }
    let (last, _) = appended.last().context("at least one probe")?;
    let needle = last.trim_end().as_bytes().to_vec();
    wait_for(LIMIT, "the last probe at the sink", || arrival(&receiver.requests("/logs"), &needle, 0).is_some()).await?;
    let streams = receiver.requests("/logs");
    let mut times = Vec::with_capacity(probes);
    for (line, at) in &appended {
        let arrived = arrival(&streams, line.trim_end().as_bytes(), 0).with_context(|| format!("{} at the sink", line.trim_end()))?;
        times.push(arrived.duration_since(*at));
    }
    stop_build(app, app_id).await?;
    Ok(times)
}

/// The nearest-rank percentile `p` (0–100) of `values`.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn yes_no(met: bool) -> String {
    if met { "yes" } else { "no" }.to_owned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let options = Options::parse()?;
    let text = numbered_lines(options.lines);
    let mb = text.len() as f64 / 1e6;
    let sources = TestServer::files(vec![("/src.tgz", Answer::ok(&archive(DOCKERFILE)))]).await;
    // Throughput: a short poll interval (the wait for the next read is then small beside the
    // relay) and the longest window (a big log relayed within one poll).
    // Its poller's Kafka client is the adapter timed (see `TimedKafka`); the poller starts after.
    let mut throughput_app = app(options.throughput_poll, "60s", false).await;
    let timed = Arc::new(TimedKafka {
        adapter: throughput_app.poller.webhooks.kafka.clone(),
        marker: last_line(options.lines),
        delivered: Mutex::new((0, None)),
    });
    Arc::get_mut(&mut throughput_app.poller).context("the poller is not shared before it starts")?.webhooks.kafka = timed.clone();
    throughput_app.start_poller();
    // Latency: the given poll interval and the default window (20 s, so window hand-overs happen).
    let latency_app = app(options.poll, "20s", true).await;
    let kafka = Kafka::start();
    let producer = bare_producer(&kafka.bootstrap())?;
    eprintln!(
        "relay bench: {} runs; {mb:.0} MB log ({} lines); throughput POLL_INTERVAL {} ms, LOG_WINDOW 60s; latency POLL_INTERVAL {} ms, LOG_WINDOW 20s, {} probes per run",
        options.runs,
        options.lines,
        options.throughput_poll.as_millis(),
        options.poll.as_millis(),
        options.probes
    );

    let (mut tcp, mut http, mut http_ratio, mut http_parts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut archive, mut archive_ratio) = (Vec::new(), Vec::new());
    let (mut bare, mut ours_kafka, mut kafka_ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut p50s, mut p99s, mut all_probes) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..options.runs {
        let copy = tcp_copy(&text).await?;
        let relay = http_relay(&throughput_app, &sources, &format!("http{run}"), &text, options.lines).await?;
        let (copy_rate, relay_rate) = (mb / copy.as_secs_f64(), mb / relay.last.as_secs_f64());
        eprintln!(
            "run {run}: TCP copy {:.1} ms ({copy_rate:.0} MB/s); HTTP relay {:.2} s ({relay_rate:.2} MB/s): append {:.2} s, first byte at {:.2} s",
            ms(copy),
            relay.last.as_secs_f64(),
            relay.append.as_secs_f64(),
            relay.first.as_secs_f64()
        );
        let archived = archive_alone(&throughput_app, &text).await?;
        let archive_rate = mb / archived.as_secs_f64();
        eprintln!("run {run}: the archive alone {:.2} s ({archive_rate:.0} MB/s)", archived.as_secs_f64());
        archive.push(archive_rate);
        archive_ratio.push(archive_rate / copy_rate);
        tcp.push(copy_rate);
        http.push(relay_rate);
        http_ratio.push(relay_rate / copy_rate);
        http_parts.push(relay);

        let acked = kafka_bare(&producer, &kafka, &format!("bare{run}"), &text).await?;
        let delivered = kafka_relay(&throughput_app, &timed, &sources, &kafka, &format!("kafka{run}"), &text, options.lines).await?;
        let lines = options.lines as f64;
        eprintln!(
            "run {run}: bare producer {:.2} s to the last delivery report ({:.0} lines/s); Kafka relay {:.2} s ({:.0} lines/s)",
            acked.as_secs_f64(),
            lines / acked.as_secs_f64(),
            delivered.as_secs_f64(),
            lines / delivered.as_secs_f64(),
        );
        bare.push(lines / acked.as_secs_f64());
        ours_kafka.push(lines / delivered.as_secs_f64());
        kafka_ratio.push(acked.as_secs_f64() / delivered.as_secs_f64());

        let probes: Vec<f64> =
            latencies(&latency_app, &sources, &format!("lat{run}"), options.probes, options.poll).await?.into_iter().map(ms).collect();
        let (p50, p99) = (percentile(&probes, 50.0), percentile(&probes, 99.0));
        eprintln!(
            "run {run}: latency over {} probes: p50 {p50:.0} ms, p99 {p99:.0} ms (min {:.0}, max {:.0})",
            probes.len(),
            percentile(&probes, 0.0),
            percentile(&probes, 100.0)
        );
        p50s.push(p50);
        p99s.push(p99);
        all_probes.extend(probes);
    }

    let p50_bound = ms(options.poll / 2 + P50_MARGIN);
    let p99_bound = ms(options.poll + P99_MARGIN);
    let (http_r, kafka_r, p50, p99) = (median(&http_ratio), median(&kafka_ratio), median(&p50s), median(&p99s));
    let rows = vec![
        vec![
            format!("HTTP relay, {mb:.0} MB (bytes/s)"),
            format!("raw loopback TCP copy: {:.0} MB/s", median(&tcp)),
            format!("{:.2} MB/s", median(&http)),
            format!("{http_r:.4}"),
            format!("≥ {THROUGHPUT_GOAL}"),
            yes_no(http_r >= THROUGHPUT_GOAL),
        ],
        vec![
            format!("the archive alone, {mb:.0} MB: the most an archive-first relay reaches"),
            format!("raw loopback TCP copy: {:.0} MB/s", median(&tcp)),
            format!("{:.2} MB/s", median(&archive)),
            format!("{:.4}", median(&archive_ratio)),
            "–".to_owned(),
            "–".to_owned(),
        ],
        vec![
            format!("Kafka relay, {} lines (lines/s)", options.lines),
            format!("bare FutureProducer: {:.0} lines/s", median(&bare)),
            format!("{:.0} lines/s", median(&ours_kafka)),
            format!("{kafka_r:.3}"),
            format!("≥ {THROUGHPUT_GOAL}"),
            yes_no(kafka_r >= THROUGHPUT_GOAL),
        ],
        vec![
            "line latency p50 → HTTP sink".to_owned(),
            format!("bound: poll/2 + 50 ms = {p50_bound:.0} ms"),
            format!("{p50:.0} ms"),
            format!("{:.2}", p50 / p50_bound),
            "≤ 1".to_owned(),
            yes_no(p50 <= p50_bound),
        ],
        vec![
            "line latency p99 → HTTP sink".to_owned(),
            format!("bound: poll + 250 ms = {p99_bound:.0} ms"),
            format!("{p99:.0} ms"),
            format!("{:.2}", p99 / p99_bound),
            "≤ 1".to_owned(),
            yes_no(p99 <= p99_bound),
        ],
    ];
    println!(
        "relay: {} runs; throughput with POLL_INTERVAL {} ms; latency with POLL_INTERVAL {} ms, {} probes per run",
        options.runs,
        options.throughput_poll.as_millis(),
        options.poll.as_millis(),
        options.probes
    );
    print!("{}", table(&["measure", "baseline (same run)", "ours", "ratio", "goal", "met"], &rows));
    println!("each figure: the median over the runs; a throughput ratio is ours / the baseline of the same run; a latency ratio is the measured percentile / its bound");
    let seconds = |pick: fn(&HttpRelay) -> Duration| median(&http_parts.iter().map(|p| pick(p).as_secs_f64()).collect::<Vec<_>>());
    let (append_s, first_s, last_s) = (seconds(|p| p.append), seconds(|p| p.first), seconds(|p| p.last));
    println!(
        "HTTP relay, where the time goes (medians): append to the stand-in {append_s:.2} s; append → first byte at the sink {first_s:.2} s (poll wait, Jenkins read, S3 archive, DynamoDB save); first → last byte {:.2} s ({:.2} MB/s while streaming)",
        last_s - first_s,
        mb / (last_s - first_s)
    );
    println!(
        "latency, all {} probes pooled: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        all_probes.len(),
        percentile(&all_probes, 50.0),
        percentile(&all_probes, 99.0),
        percentile(&all_probes, 100.0)
    );
    let all_met = http_r >= THROUGHPUT_GOAL && kafka_r >= THROUGHPUT_GOAL && p50 <= p50_bound && p99 <= p99_bound;
    println!("{}", if all_met { "every goal met" } else { "some goals not met" });
    Ok(())
}
