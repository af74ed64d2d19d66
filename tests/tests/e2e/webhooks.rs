//! Webhook delivery end to end (SPEC §2, §3, §5): builds run through the local gateway, the
//! poller, the AWS emulator and the Jenkins stand-in, and report to real HTTP receivers and a
//! real Kafka-protocol broker (librdkafka's mock cluster) started by the test.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shuttle_core::delivery::SigningSecret;
use shuttle_tests::faults::{statuses, without_log_digest};
use shuttle_tests::kafka::Kafka;
use shuttle_tests::receiver::{Receiver, Reply};
use shuttle_tests::{archive, fresh_image, image, registry, spawn_app, spawn_app_with, Answer, AppOptions, TestApp, TestServer};
use tokio::net::TcpListener;

const ENOUGH: Duration = Duration::from_secs(60);
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A source server whose `/src.tgz` holds `dockerfile`.
async fn sources(dockerfile: &str) -> TestServer {
    TestServer::files(vec![("/src.tgz", Answer::ok(&archive(dockerfile)))]).await
}

async fn create(app: &TestApp, path: &str, source: &str, status: Vec<String>, logs: Vec<String>) {
    let body = json!({
        "webhooks": {"status": status, "logs": logs},
        "metadata": "ns/app one",
        "source": {"url": source},
        "destination": {"url": fresh_image()},
    });
    let response = app.post(path, body.to_string()).await;
    assert_eq!(response.status(), 200, "create {path}: {}", response.text().await.unwrap_or_default());
}

fn status(status: &str, building: bool) -> Value {
    json!({"id": "ns/app one", "type": "build system", "building": building, "status": status})
}

/// What a build that ran in Jenkins reports, ending with `end`.
fn ran_and(end: &str) -> Vec<Value> {
    vec![status("pending", false), status("queued", false), status("pending", true), status(end, false)]
}

/// The statuses `receiver` acknowledged at `path`, in order.
fn acknowledged(receiver: &Receiver, path: &str) -> Vec<Value> {
    receiver
        .requests(path)
        .iter()
        .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
        .map(|r| without_log_digest(r.json()))
        .collect()
}

/// Waits until `receiver` acknowledged a terminal status at `path`.
async fn until_ended(receiver: &Receiver, path: &str) {
    receiver
        .until(ENOUGH, &format!("a terminal status at {path}"), |r| {
            acknowledged(r, path).iter().any(|s| !matches!(s["status"].as_str(), Some("pending" | "queued")))
        })
        .await;
}

/// The whole archived log of a v2 build (the logs endpoint serves only its last 5 MB).
async fn whole_archive(app: &TestApp, app_id: &str, build_id: &str) -> Vec<u8> {
    let record = app.find(app_id, build_id).await.expect("the build");
    app.poller.sources.read_log_range(record.source_id, 0, u64::MAX).await.expect("the archive").to_vec()
}

/// `lines` lines of 100 bytes each.
fn numbered_lines(lines: usize) -> Vec<u8> {
    (0..lines).flat_map(|i| format!("line {i:06} {}\n", "x".repeat(87)).into_bytes()).collect()
}

/// Appends `text` to build `number` of `job` while it runs, in pieces of at most 1 MiB.
async fn append(app: &TestApp, job: &str, number: u64, text: &[u8]) {
    for piece in text.chunks(1024 * 1024) {
        let url = format!("{}{number}/__standin/append", app.job_url(job));
        let response = app.client.post(url).body(piece.to_vec()).send().await.expect("append");
        assert_eq!(response.status(), 204, "the build must still be running while the test appends");
    }
}

/// A TCP listener that accepts connections and never answers.
async fn black_hole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("http://{address}/hole")
}

/// The v2 log lines of a Kafka topic, reassembled (each message is one line, without its `\n`).
fn kafka_log(messages: &[shuttle_tests::kafka::Message]) -> Vec<u8> {
    messages.iter().flat_map(|m| [m.payload.as_slice(), b"\n"].concat()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ten_megabyte_log_arrives_byte_exact_at_two_receivers_and_at_kafka() {
    let app = spawn_app().await;
    let (one, two) = (Receiver::ok().await, Receiver::ok().await);
    let kafka = Kafka::start();
    kafka.create_topic("logs").await;
    let consumer = kafka.follow("logs");
    let files = sources("FROM busybox:1\nRUN sleep 4\n").await;
    let targets = vec![one.url("/logs"), two.url("/logs"), format!("kafka://{}/logs", kafka.bootstrap())];
    create(&app, "/app/1", &files.url("/src.tgz"), vec![], targets).await;
    app.status_until("/app/1", ENOUGH, |s| s["building"] == true).await;
    let text = numbered_lines(100_000);
    assert_eq!(text.len(), 10_000_000);
    let appended = Instant::now();
    append(&app, "app", 1, &text).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    let archived = whole_archive(&app, "app", "1").await;
    assert!(archived == app.console_text("app", 1).await.into_bytes(), "the archive is the Jenkins log");
    let lines = archived.iter().filter(|b| **b == b'\n').count();
    assert!(archived.len() > 10_000_000 && lines > 100_000, "{} bytes, {lines} lines", archived.len());
    for receiver in [&one, &two] {
        receiver.until(ENOUGH, "the whole log over HTTP", |r| r.log("/logs").len() >= archived.len()).await;
        assert!(receiver.log("/logs") == archived, "the HTTP receiver has the log byte for byte");
        for stream in receiver.requests("/logs") {
            assert_eq!(stream.header("x-build-metadata"), Some("ns/app%20one"));
            assert_eq!(stream.header("content-type"), Some("text/plain; charset=utf-8"));
            assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
        }
    }
    let messages = consumer.until(ENOUGH, move |m| m.len() >= lines).await;
    assert!(kafka_log(&messages) == archived, "the Kafka lines are the log, in order");
    assert!(messages.iter().all(|m| m.key == "ns/app one"));
    let last = one.requests("/logs").iter().flat_map(|r| r.frames.last().map(|f| f.0)).max().expect("frames");
    eprintln!(
        "10 MB log: {} streams to one receiver; appended to last byte at the receiver in {:.2} s",
        one.requests("/logs").len(),
        last.duration_since(appended).as_secs_f64()
    );
}

/// Issue 21: a v2 build's terminal status (webhook and endpoint) carries its log's length and
/// SHA-256, and they are those of the log each receiver reassembled: the HTTP one, and the
/// Kafka consumer.
#[tokio::test]
async fn the_terminal_status_carries_the_digest_of_the_log_every_receiver_holds() {
    let app = spawn_app().await;
    let receiver = Receiver::ok().await;
    let kafka = Kafka::start();
    kafka.create_topic("logs").await;
    let consumer = kafka.follow("logs");
    let files = sources("FROM busybox:1\nRUN echo one && echo two\n").await;
    let logs = vec![receiver.url("/logs"), format!("kafka://{}/logs", kafka.bootstrap())];
    create(&app, "/app/1", &files.url("/src.tgz"), vec![receiver.url("/status")], logs).await;
    let ended = app.finished("/app/1", ENOUGH).await;
    assert_eq!(ended["status"], "succeeded", "{ended}");
    until_ended(&receiver, "/status").await;
    let sha256 = |bytes: &[u8]| -> String {
        use sha2::Digest;
        sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
    };
    let (bytes, digest) = shuttle_tests::faults::log_digest(&receiver, "/status");
    let archived = whole_archive(&app, "app", "1").await;
    assert_eq!((bytes, digest.as_str()), (archived.len() as u64, sha256(&archived).as_str()), "the digest is the archive's");
    receiver.until(ENOUGH, "the whole log over HTTP", |r| r.log("/logs").len() >= archived.len()).await;
    assert_eq!(sha256(&receiver.log("/logs")), digest, "the HTTP receiver's log");
    let lines = archived.iter().filter(|b| **b == b'\n').count();
    let messages = consumer.until(ENOUGH, move |m| m.len() >= lines).await;
    assert_eq!(sha256(&kafka_log(&messages)), digest, "the Kafka consumer's log");
    assert_eq!(ended["log"], json!({"bytes": bytes, "sha256": digest}), "the status endpoint says the same");
}

#[tokio::test]
async fn a_receiver_that_drops_the_connection_mid_stream_still_ends_with_the_exact_log() {
    let app = spawn_app().await;
    let receiver = Receiver::start(|_, n| if n == 0 { Reply::DropAfter(50_000) } else { Reply::Status(200) }).await;
    let files = sources("FROM busybox:1\nRUN sleep 3\n").await;
    create(&app, "/app/1", &files.url("/src.tgz"), vec![], vec![receiver.url("/logs")]).await;
    app.status_until("/app/1", ENOUGH, |s| s["building"] == true).await;
    append(&app, "app", 1, &numbered_lines(3_000)).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    let archived = app.logs("/app/1").await.into_bytes();
    receiver.until(ENOUGH, "the whole log", |r| r.log("/logs").len() >= archived.len()).await;
    let streams = receiver.requests("/logs");
    assert!(!streams[0].complete && streams[0].answered.is_none(), "the first stream was broken off");
    assert!(receiver.log("/logs") == archived, "resent from the acknowledged offset, the log is exact");
}

#[tokio::test]
async fn status_sequences_are_exact_and_in_order() {
    // Long enough for a real build of `RUN echo fine` while the other tests build too (4 s was
    // not, once), short of the 30 s `RUN sleep` that must time out.
    let options = AppOptions { settings: vec![("BUILD_TIMEOUT", "12s".into())], ..AppOptions::default() };
    let app = spawn_app_with(options).await;
    let receiver = Receiver::ok().await;
    let passing = sources("FROM busybox:1\nRUN echo fine\n").await;
    let failing = sources("FROM busybox:1\nRUN false\n").await;
    let slow = sources("FROM busybox:1\nRUN sleep 30\n").await;
    create(&app, "/ok/1", &passing.url("/src.tgz"), vec![receiver.url("/ok")], vec![]).await;
    create(&app, "/bad/1", &failing.url("/src.tgz"), vec![receiver.url("/bad")], vec![]).await;
    create(&app, "/stop/1", &slow.url("/src.tgz"), vec![receiver.url("/stop")], vec![]).await;
    create(&app, "/late/1", &slow.url("/src.tgz"), vec![receiver.url("/late")], vec![]).await;
    app.status_until("/stop/1", ENOUGH, |s| s["building"] == true).await;
    assert_eq!(app.delete("/stop/1").await.status(), 200);
    for path in ["/ok", "/bad", "/stop", "/late"] {
        until_ended(&receiver, path).await;
    }
    // Nothing more comes once the end is told.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(statuses(&receiver, "/ok"), ran_and("succeeded"));
    assert_eq!(statuses(&receiver, "/bad"), ran_and("failed"));
    assert_eq!(statuses(&receiver, "/stop"), ran_and("failed"), "a stopped build ends as failed");
    assert_eq!(statuses(&receiver, "/late"), ran_and("timedout"));
    for request in receiver.requests("/ok") {
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("webhook-signature"), None, "no signing secret, no signature");
    }
}

#[tokio::test]
async fn legacy_callbacks_and_kafka_logs_are_exactly_what_the_controller_reads() {
    let kafka = Kafka::start();
    kafka.create_topic("alamobuildlogs").await;
    let app = spawn_app().await;
    let receiver = Receiver::controller().await;
    let build = |uuid: &str, number: Option<u64>| {
        let mut body = json!({
            "app": "myapp", "space": "default", "app_uuid": "7d1f3b5c-2a4e-4c6d-8e0f-1a2b3c4d5e6f", "build_uuid": uuid,
            "sources": image("base/busybox:1"), "gm_registry_host": registry(), "gm_registry_repo": "org",
            "callback": receiver.url(&format!("/cb/{uuid}")), "callback_auth": "Basic dXNlcjpwYXNz, opaque",
            "kafka_hosts": kafka.bootstrap(),
        });
        if let Some(number) = number {
            body["build_number"] = json!(number);
        }
        body.to_string()
    };
    let (numbered, unnumbered) = ("0b6a3d4e-5f60-4718-9a2b-3c4d5e6f7a8b", "1c7b4e5f-6071-4829-8b3c-4d5e6f7a8b9c");
    assert_eq!(app.post("/", build(numbered, Some(41))).await.status(), 200);
    assert_eq!(app.legacy_finished("/myapp-7d1f3b5c-2a4e-4c6d-8e0f-1a2b3c4d5e6f/41", ENOUGH).await["status"], "succeeded");
    assert_eq!(app.post("/", build(unnumbered, None)).await.status(), 200);
    for uuid in [numbered, unnumbered] {
        let path = format!("/cb/{uuid}");
        receiver.until(ENOUGH, "two callbacks", |r| r.bodies(&path).len() >= 2).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let callbacks = receiver.requests(&format!("/cb/{numbered}"));
    assert_eq!(
        callbacks.iter().map(|r| r.json()).collect::<Vec<_>>(),
        vec![
            json!({"id": 41, "type": "jenkins", "building": false, "status": "pending"}),
            json!({"id": 41, "type": "jenkins", "building": false, "status": "succeeded"}),
        ],
        "one pending as soon as n is known, one terminal"
    );
    for uuid in [numbered, unnumbered] {
        assert!(receiver.all_acknowledged(&format!("/cb/{uuid}")), "the controller stored every callback");
    }
    for callback in &callbacks {
        assert_eq!(callback.header("authorization"), Some("Basic dXNlcjpwYXNz, opaque"), "callback_auth verbatim");
        assert_eq!(callback.header("content-type"), Some("application/json"));
    }
    // Without build_number, n is Jenkins' number (the job's second build), known once it runs.
    let bodies = receiver.bodies(&format!("/cb/{unnumbered}"));
    assert_eq!(
        bodies,
        vec![
            json!({"id": 2, "type": "jenkins", "building": true, "status": "pending"}),
            json!({"id": 2, "type": "jenkins", "building": false, "status": "succeeded"}),
        ]
    );
    let log: Value = serde_json::from_str(&app.logs("/myapp-7d1f3b5c-2a4e-4c6d-8e0f-1a2b3c4d5e6f/41").await).expect("JSON");
    let lines: Vec<&str> = log["output"].as_str().expect("the log").lines().collect();
    let of_41 = |messages: &[shuttle_tests::kafka::Message]| -> Vec<Value> {
        let values =
            messages.iter().filter(|m| m.key == "myapp-default").map(|m| serde_json::from_slice::<Value>(&m.payload).expect("JSON"));
        values.filter(|v| v["build"] == 41).collect()
    };
    let messages =
        kafka.messages_until("alamobuildlogs", ENOUGH, move |m| of_41(m).last().is_some_and(|v| v["message"] == "Build finished")).await;
    let first_build = of_41(&messages);
    let mut expected: Vec<Value> =
        lines.iter().map(|line| json!({"metadata": "myapp-default", "build": 41, "job": "41", "message": line})).collect();
    expected.push(json!({"metadata": "myapp-default", "build": 41, "job": "41", "message": "Build finished"}));
    assert_eq!(first_build, expected);
    let raw = messages.iter().map(|m| String::from_utf8_lossy(&m.payload)).find(|raw| raw.contains(r#""build":41"#)).expect("one of 41");
    assert!(raw.starts_with(r#"{"metadata":"myapp-default","build":41,"job":"41","message":"#), "field order as SPEC §3: {raw}");
}

/// A legacy create body reporting to `callback`, from `sources`, numbered `number` if given.
fn legacy_build(uuid: &str, sources: &str, callback: &str, number: Option<u64>) -> String {
    let mut body = json!({
        "app": "ctl", "space": "default", "app_uuid": "6c0d2e4f-8a1b-4c3d-9e5f-7a8b9c0d1e2f", "build_uuid": uuid,
        "sources": sources, "gm_registry_host": registry(), "gm_registry_repo": "org", "callback": callback,
    });
    if let Some(number) = number {
        body["build_number"] = json!(number);
    }
    body.to_string()
}

/// Issue 20: a `callback_auth` that no request can carry is accepted, the build fails with the
/// reason in its log (where the controller's user reads it), and the callback is never tried:
/// each attempt could only fail, for the two hours of a legacy callback's retries.
#[tokio::test]
async fn a_callback_auth_no_request_can_carry_fails_the_build_and_is_never_tried() {
    let app = spawn_app().await;
    let controller = Receiver::controller().await;
    let uuid = "1a2b3c4d-0000-4000-8000-000000000011";
    let mut body: Value = serde_json::from_str(&legacy_build(uuid, "data:base64,UEsDBA==", &controller.url("/cb"), Some(4))).unwrap();
    body["callback_auth"] = json!("Basic c2VjcmV0\r\nX-Injected: 1");
    assert_eq!(app.post("/", body.to_string()).await.status(), 200, "accepted, as every legacy request with its fields");
    let job = "/ctl-6c0d2e4f-8a1b-4c3d-9e5f-7a8b9c0d1e2f/4";
    assert_eq!(app.legacy_finished(job, ENOUGH).await["status"], "failed");
    let log: Value = serde_json::from_str(&app.logs(job).await).expect("JSON");
    let output = log["output"].as_str().unwrap_or_default();
    assert!(output.contains("callback_auth is not a valid HTTP header value"), "the reason is in the log: {log}");
    assert!(!output.contains("c2VjcmV0"), "the credential is not echoed: {log}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(controller.requests("/cb").is_empty(), "the callback is never tried");
    let record = app.find("ctl-6c0d2e4f-8a1b-4c3d-9e5f-7a8b9c0d1e2f", "4").await.expect("the build");
    assert!(!record.needs_polling(), "no delivery is left to retry: {:?}", record.progress.deliveries);
}

#[tokio::test]
async fn every_legacy_ending_reaches_the_controller_as_pending_then_a_status_it_stores() {
    let options = AppOptions { settings: vec![("BUILD_TIMEOUT", "4s".into())], ..AppOptions::default() };
    let app = spawn_app_with(options).await;
    let controller = Receiver::controller().await;
    let slow = sources("FROM busybox:1\nRUN sleep 30\n").await;
    let job = "/ctl-6c0d2e4f-8a1b-4c3d-9e5f-7a8b9c0d1e2f";
    let (stopped, timed_out, broken, unnumbered) = (
        "1a2b3c4d-0000-4000-8000-000000000001",
        "1a2b3c4d-0000-4000-8000-000000000002",
        "1a2b3c4d-0000-4000-8000-000000000003",
        "1a2b3c4d-0000-4000-8000-000000000004",
    );
    let callback = |uuid: &str| controller.url(&format!("/cb/{uuid}"));
    assert_eq!(app.post("/", legacy_build(stopped, &slow.url("/src.tgz"), &callback(stopped), Some(7))).await.status(), 200);
    app.status_until(&format!("{job}/7"), ENOUGH, |s| s["building"] == true).await;
    assert_eq!(app.delete(&format!("{job}/7")).await.status(), 200);
    assert_eq!(app.post("/", legacy_build(timed_out, &slow.url("/src.tgz"), &callback(timed_out), Some(8))).await.status(), 200);
    // Bad base64 is accepted, then failed through the callback (SPEC §3).
    assert_eq!(app.post("/", legacy_build(broken, "data:base64,@@@", &callback(broken), Some(9))).await.status(), 200);
    assert_eq!(app.post("/", legacy_build(unnumbered, "data:base64,@@@", &callback(unnumbered), None)).await.status(), 200);
    for uuid in [stopped, timed_out, broken, unnumbered] {
        let path = format!("/cb/{uuid}");
        controller.until(ENOUGH, &format!("the end of {uuid} at the controller"), |c| c.bodies(&path).len() >= 2).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let told = |uuid: &str| controller.bodies(&format!("/cb/{uuid}"));
    let callback_of = |id: u64, building: bool, status: &str| json!({"id": id, "type": "jenkins", "building": building, "status": status});
    assert_eq!(told(stopped), vec![callback_of(7, false, "pending"), callback_of(7, false, "failed")], "a stopped build is failed");
    assert_eq!(told(timed_out), vec![callback_of(8, false, "pending"), callback_of(8, false, "failed")], "a timed-out build is failed");
    assert_eq!(
        told(broken),
        vec![callback_of(9, false, "pending"), callback_of(9, false, "failed")],
        "pending first, also when it fails at once"
    );
    assert_eq!(told(unnumbered), vec![callback_of(0, false, "pending"), callback_of(0, false, "failed")], "no number yet: id 0");
    for uuid in [stopped, timed_out, broken, unnumbered] {
        assert!(controller.all_acknowledged(&format!("/cb/{uuid}")), "the controller stored every callback of {uuid}");
    }
    // The status endpoint keeps `stopped`; the unnumbered build is build 0, log and all.
    assert_eq!(app.legacy_finished(&format!("{job}/7"), ENOUGH).await["status"], "stopped");
    assert_eq!(app.legacy_finished(&format!("{job}/8"), ENOUGH).await["status"], "failed");
    assert_eq!(app.legacy_finished(&format!("{job}/0"), ENOUGH).await, callback_of(0, false, "failed"));
    let log: Value = serde_json::from_str(&app.logs(&format!("{job}/0")).await).expect("JSON");
    assert!(log["output"].as_str().is_some_and(|text| text.contains("base64")), "the failure is in build 0's log: {log}");
}

#[tokio::test]
async fn the_controller_check_refuses_what_the_controller_cannot_store() {
    use shuttle_tests::receiver::controller_check;
    assert!(controller_check(br#"{"id": 6, "type": "jenkins", "building": false, "status": "failed"}"#).is_ok());
    assert!(controller_check(br#"{"id": 6, "type": "jenkins", "building": false, "status": "stopped"}"#).is_err());
    assert!(controller_check(br#"{"id": 6, "type": "jenkins", "building": false, "status": "timedout"}"#).is_err());
    assert!(controller_check(br#"{"id": null, "type": "jenkins", "building": false, "status": "failed"}"#).is_err());
    assert!(controller_check(br#"{"id": "6", "type": "jenkins", "building": false, "status": "failed"}"#).is_err());
}

#[tokio::test]
async fn a_receiver_answering_500_twice_gets_the_status_again_with_the_same_id_and_a_valid_signature() {
    let options = AppOptions { settings: vec![("WEBHOOK_SIGNING_SECRET", SIGNING_SECRET.into())], ..AppOptions::default() };
    let app = spawn_app_with(options).await;
    let receiver = Receiver::start(|_, n| Reply::Status(if n < 2 { 500 } else { 200 })).await;
    create(&app, "/app/1", &image("base/busybox:1"), vec![receiver.url("/status")], vec![]).await;
    until_ended(&receiver, "/status").await;
    let requests = receiver.requests("/status");
    let secret = SigningSecret::parse(SIGNING_SECRET).unwrap();
    for request in &requests {
        let (id, timestamp) = (request.header("webhook-id").expect("an id"), request.header("webhook-timestamp").expect("a timestamp"));
        let expected = secret.sign(id, timestamp.parse().expect("seconds"), &request.body);
        assert_eq!(request.header("webhook-signature"), Some(expected.as_str()), "a valid signature");
    }
    let ids: Vec<&str> = requests.iter().map(|r| r.header("webhook-id").unwrap()).collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2], "retries keep the webhook-id");
    assert_eq!(requests[2].json(), status("pending", false));
    assert_eq!(acknowledged(&receiver, "/status"), ran_and("succeeded"), "each status acknowledged once, in order");
    let mut distinct = ids.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "nothing acknowledged is sent again: {ids:?}");
}

#[tokio::test]
async fn a_receiver_answering_403_or_redirecting_is_not_retried_nor_followed() {
    let app = spawn_app().await;
    let receiver = Receiver::start(|path, _| match path {
        "/forbidden" => Reply::Status(403),
        _ => Reply::Redirect(302, "/elsewhere".to_owned()),
    })
    .await;
    let targets = vec![receiver.url("/forbidden"), receiver.url("/moved")];
    create(&app, "/app/1", &image("base/busybox:1"), targets, vec![]).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded", "a failing target never fails the build");
    receiver.until(ENOUGH, "every status tried", |r| r.bodies("/forbidden").len() >= 4 && r.bodies("/moved").len() >= 4).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(statuses(&receiver, "/forbidden"), ran_and("succeeded"), "each status once: a 403 is final");
    assert_eq!(statuses(&receiver, "/moved"), ran_and("succeeded"), "each status once: a 302 is final");
    assert!(receiver.requests("/elsewhere").is_empty(), "the redirect is not followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_whose_first_broker_is_dead_still_delivers_every_line() {
    let kafka = Kafka::start();
    kafka.create_topic("logs").await;
    let app = spawn_app().await;
    let target = format!("failover(kafka://127.0.0.1:1/logs, kafka://{}/logs)", kafka.bootstrap());
    create(&app, "/app/1", &image("base/busybox:1"), vec![], vec![target]).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    let archived = app.logs("/app/1").await.into_bytes();
    let lines = archived.iter().filter(|b| **b == b'\n').count();
    let messages = kafka.messages("logs", lines, ENOUGH).await;
    assert!(kafka_log(&messages) == archived, "every line, in order: {}", String::from_utf8_lossy(&kafka_log(&messages)));
    let offsets: Vec<String> = messages.iter().map(|m| m.header("log-offset").unwrap_or_default()).collect();
    assert_eq!(offsets[0], "0");
}

#[tokio::test]
async fn a_dead_target_never_holds_back_a_live_one() {
    let app = spawn_app().await;
    let live = Receiver::ok().await;
    let dead = black_hole().await;
    let files = sources("FROM busybox:1\nRUN sleep 6\n").await;
    create(&app, "/app/1", &files.url("/src.tgz"), vec![dead.clone(), live.url("/status")], vec![dead, live.url("/logs")]).await;
    app.status_until("/app/1", ENOUGH, |s| s["building"] == true).await;
    live.until(Duration::from_secs(2), "building told while the build runs", |r| acknowledged(r, "/status").len() >= 3).await;
    append(&app, "app", 1, b"a line the live receiver gets at once\n").await;
    live.until(Duration::from_secs(3), "the line while the build runs", |r| {
        String::from_utf8_lossy(&r.log("/logs")).contains("a line the live receiver gets at once")
    })
    .await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded", "a dead target never fails the build");
    let ended = Instant::now();
    let archived = app.logs("/app/1").await.into_bytes();
    live.until(Duration::from_secs(3), "the end and the whole log soon after the build ends", |r| {
        acknowledged(r, "/status").len() == 4 && r.log("/logs") == archived
    })
    .await;
    assert_eq!(acknowledged(&live, "/status"), ran_and("succeeded"));
    eprintln!("live target complete {:.2} s after the build ended", ended.elapsed().as_secs_f64());
}

/// Measures, with the default poll interval and window: the time from a line appearing in the
/// stand-in to its arrival at an HTTP receiver and at a Kafka consumer, and the relay's
/// throughput to one HTTP receiver and to Kafka for a 10 MB log. Prints; asserts nothing.
/// `bash infra/local/test.sh --test webhooks -- --ignored --nocapture measure_`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, not a check"]
async fn measure_line_latency_and_relay_throughput() {
    let settings = vec![("POLL_INTERVAL", "2s".to_owned()), ("LOG_WINDOW", "20s".to_owned())];
    let app = spawn_app_with(AppOptions { settings, ..AppOptions::default() }).await;
    let receiver = Receiver::ok().await;
    let kafka = Kafka::start();
    kafka.create_topic("logs").await;
    let consumer = kafka.follow("logs");
    let files = sources("FROM busybox:1\nRUN sleep 25\n").await;
    create(&app, "/app/1", &files.url("/src.tgz"), vec![], vec![receiver.url("/logs"), format!("kafka://{}/logs", kafka.bootstrap())])
        .await;
    app.status_until("/app/1", ENOUGH, |s| s["building"] == true).await;
    let mut appended = Vec::new();
    for i in 0..20 {
        let line = format!("latency probe {i:02}\n");
        appended.push((line.clone(), Instant::now()));
        append(&app, "app", 1, line.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(370)).await;
    }
    let big = numbered_lines(100_000);
    let big_at = Instant::now();
    append(&app, "app", 1, &big).await;
    eprintln!("10 MB appended to the stand-in in {:.2} s", big_at.elapsed().as_secs_f64());
    assert_eq!(app.finished("/app/1", Duration::from_secs(120)).await["status"], "succeeded");
    let archived = whole_archive(&app, "app", "1").await;
    receiver.until(ENOUGH, "the whole log", |r| r.log("/logs").len() >= archived.len()).await;
    let lines = archived.iter().filter(|b| **b == b'\n').count();
    let messages = consumer.until(ENOUGH, move |m| m.len() >= lines).await;
    let streams = receiver.requests("/logs");
    let mut http = Vec::new();
    let mut by_kafka = Vec::new();
    for (line, at) in &appended {
        let text = line.trim_end();
        let arrival = streams.iter().find_map(|s| {
            let found = s.body.windows(text.len()).position(|w| w == text.as_bytes()).map(|p| p + text.len());
            found.and_then(|end| s.frames.iter().find(|(_, len)| *len >= end).map(|(t, _)| *t))
        });
        http.push(arrival.expect("the probe arrived").duration_since(*at).as_secs_f64());
        let message = messages.iter().find(|m| m.payload == text.as_bytes()).expect("the probe on Kafka");
        by_kafka.push(message.read_at.duration_since(*at).as_secs_f64());
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!("median {:.2} s, max {:.2} s", v[v.len() / 2], v[v.len() - 1])
    };
    eprintln!("line latency (stand-in → receiver), 20 probes, POLL_INTERVAL 2s: HTTP {}; Kafka {}", stats(&mut http), stats(&mut by_kafka));
    // When the burst's last line arrived (the log goes on after it: the build's own end).
    let last_line = b"line 099999 ";
    let last_http = streams
        .iter()
        .find_map(|s| {
            let end = s.body.windows(last_line.len()).position(|w| w == last_line)? + 100;
            s.frames.iter().find(|(_, len)| *len >= end).map(|(t, _)| *t)
        })
        .expect("the burst's last line over HTTP");
    let last_kafka = messages.iter().find(|m| m.payload.starts_with(last_line)).expect("the burst's last line on Kafka").read_at;
    let mb = big.len() as f64 / 1e6;
    eprintln!(
        "10 MB (100,000 lines) appended at once → last line at the HTTP receiver after {:.2} s ({:.1} MB/s), on Kafka after {:.2} s ({:.0} lines/s), the wait for the next read included",
        last_http.duration_since(big_at).as_secs_f64(),
        mb / last_http.duration_since(big_at).as_secs_f64(),
        last_kafka.duration_since(big_at).as_secs_f64(),
        100_000.0 / last_kafka.duration_since(big_at).as_secs_f64(),
    );
}
