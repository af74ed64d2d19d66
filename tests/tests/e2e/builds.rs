//! Builds end to end: through the local gateway, the poller on the queue and the schedule, the
//! AWS emulator and the Jenkins stand-in, whose builds run the real source-preparation script.

use std::time::Duration;

use base64::Engine;
use serde_json::json;
use shuttle_core::ports::PollMessage;
use shuttle_tests::{archive, fresh_image, image, json_of, registry, spawn_app, spawn_app_with, Answer, AppOptions, TestApp, TestServer};

const DOCKERFILE: &str = "FROM busybox:1\nRUN echo hello\n";
const ENOUGH: Duration = Duration::from_secs(60);

fn v2_body(source: &str) -> String {
    json!({"source": {"url": source}, "destination": {"url": fresh_image()}, "metadata": "ns/app"}).to_string()
}

async fn create(app: &TestApp, path: &str, source: &str) {
    let response = app.post(path, v2_body(source)).await;
    assert_eq!(response.status(), 200, "create {path}: {}", response.text().await.unwrap_or_default());
}

fn legacy_body(build_uuid: &str, sources: &str) -> String {
    json!({
        "app": "myapp", "space": "default", "app_uuid": APP_UUID, "build_uuid": build_uuid, "build_number": 7,
        "sources": sources, "gm_registry_host": registry(), "gm_registry_repo": "org",
    })
    .to_string()
}

const APP_UUID: &str = "7d1f3b5c-2a4e-4c6d-8e0f-1a2b3c4d5e6f";
const LEGACY_JOB: &str = "myapp-7d1f3b5c-2a4e-4c6d-8e0f-1a2b3c4d5e6f";

/// A source server with one archive, at `/src.tgz`, holding `dockerfile`.
async fn serve_sources(dockerfile: &str) -> TestServer {
    TestServer::files(vec![("/src.tgz", Answer::ok(&archive(dockerfile)))]).await
}

/// Every buildWithParameters the stand-in took (not those a fault answered).
async fn triggers(app: &TestApp) -> usize {
    let requests = app.jenkins_requests().await;
    requests.iter().filter(|(method, path, status)| method == "POST" && path.ends_with("/buildWithParameters") && *status == 201).count()
}

/// Waits until Jenkins runs build `number` of `job`.
async fn wait_running(app: &TestApp, path: &str) {
    app.status_until(path, ENOUGH, |status| status["building"] == true).await;
}

#[tokio::test]
async fn an_archive_build_succeeds_and_its_whole_log_is_archived_once() {
    let app = spawn_app().await;
    let files = serve_sources(DOCKERFILE).await;
    create(&app, "/app/1", &files.url("/src.tgz")).await;
    let status = app.finished("/app/1", ENOUGH).await;
    assert_eq!((status["status"].as_str(), status["building"].as_bool()), (Some("succeeded"), Some(false)), "{status}");
    let console = app.console_text("app", 1).await;
    assert!(console.ends_with("Finished: SUCCESS\n"), "{console}");
    assert_eq!(app.logs("/app/1").await, console, "the archive holds the Jenkins log byte for byte");
    assert_eq!(triggers(&app).await, 1);
}

#[tokio::test]
async fn a_dockerfile_without_from_fails_the_build() {
    let app = spawn_app().await;
    let files = serve_sources("RUN echo no base image\n").await;
    create(&app, "/app/1", &files.url("/src.tgz")).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "failed");
    let log = app.logs("/app/1").await;
    assert!(log.contains("FROM") && log.ends_with("Finished: FAILURE\n"), "{log}");
}

#[tokio::test]
async fn an_image_source_is_retagged() {
    let app = spawn_app().await;
    create(&app, "/app/1", &image("base/busybox:1").replacen("docker://", "docker://user:canary-registry-pw@", 1)).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    let log = app.logs("/app/1").await;
    assert!(log.contains(&format!("docker pull {}/base/busybox:1\n", registry())), "{log}");
    assert!(!log.contains("canary-registry-pw"), "the registry password is never in the log");
}

#[tokio::test]
async fn inline_sources_in_both_data_uri_forms_build() {
    let app = spawn_app().await;
    let encoded = base64::engine::general_purpose::STANDARD.encode(archive(DOCKERFILE));
    let forms = [format!("data:base64,{encoded}"), format!("data:application/gzip;base64,{encoded}")];
    let uuids = ["0b9e8c2a-6c84-4a3f-9a55-6d6a4c1b2e10", "0b9e8c2a-6c84-4a3f-9a55-6d6a4c1b2e11"];
    for (uuid, sources) in uuids.iter().zip(&forms) {
        let (code, body) = json_of(app.post("/", legacy_body(uuid, sources)).await).await;
        assert_eq!((code, body), (200, json!({"status": "ok"})));
        let status = app.legacy_finished(&format!("/{LEGACY_JOB}/7"), ENOUGH).await;
        assert_eq!(status, json!({"id": 7, "building": false, "status": "succeeded", "type": "jenkins"}), "{sources:.40}");
    }
    assert_eq!(triggers(&app).await, 2);
}

#[tokio::test]
async fn an_http_source_behind_redirects_is_followed() {
    let app = spawn_app().await;
    let files = TestServer::files(vec![
        ("/a", Answer::redirect("302 Found", "/b")),
        ("/b", Answer::redirect("302 Found", "/c")),
        ("/c", Answer::redirect("302 Found", "/src.tgz")),
        ("/src.tgz", Answer::ok(&archive(DOCKERFILE))),
    ])
    .await;
    create(&app, "/app/1", &files.url("/a")).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
}

#[tokio::test]
async fn a_missing_source_fails_the_build_with_the_reason_in_its_log() {
    let app = spawn_app().await;
    let files = TestServer::files(vec![]).await;
    let url = files.url("/missing.tgz").replace("http://", "http://user:canary-source-pw@");
    create(&app, "/app/1", &url).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "failed");
    let log = app.logs("/app/1").await;
    assert!(log.contains("404") && log.contains("user:***@"), "{log}");
    assert!(!log.contains("canary-source-pw"));
    assert_eq!(triggers(&app).await, 0, "never reached Jenkins");
}

#[tokio::test]
async fn a_build_stopped_while_queued_is_cancelled_and_stopped() {
    let app = spawn_app().await;
    let files = serve_sources("FROM busybox:1\nRUN sleep 30\n").await;
    create(&app, "/app/1", &files.url("/src.tgz")).await;
    wait_running(&app, "/app/1").await;
    // Concurrent builds of one job are disabled: the second waits in Jenkins' queue.
    create(&app, "/app/2", &files.url("/src.tgz")).await;
    app.status_until("/app/2", ENOUGH, |status| status["status"] == "queued").await;
    let (code, body) = json_of(app.delete("/app/2").await).await;
    assert_eq!((code, body), (200, json!({"status": "OK"})));
    assert_eq!(app.finished("/app/2", ENOUGH).await["status"], "failed", "a stopped v2 build reports failed");
    let record = app.find("app", "2").await.unwrap();
    assert_eq!(record.state.to_string(), "stopped");
    assert!(app.jenkins_requests().await.iter().any(|(m, p, _)| m == "POST" && p.ends_with("/queue/cancelItem")));
}

#[tokio::test]
async fn a_build_stopped_while_running_is_aborted_and_stopped() {
    let app = spawn_app().await;
    let files = serve_sources("FROM busybox:1\nRUN sleep 30\n").await;
    create(&app, "/app/1", &files.url("/src.tgz")).await;
    wait_running(&app, "/app/1").await;
    let (code, _) = json_of(app.delete("/app/1").await).await;
    assert_eq!(code, 200);
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "failed");
    assert_eq!(app.find("app", "1").await.unwrap().state.to_string(), "stopped");
    let log = app.logs("/app/1").await;
    assert!(log.ends_with("Finished: ABORTED\n"), "{log}");
    let (code, body) = json_of(app.delete("/app/1").await).await;
    assert_eq!((code, body), (422, json!({"status": "The build is not running"})));
}

#[tokio::test]
async fn a_build_running_past_the_build_timeout_is_timed_out() {
    let options = AppOptions { settings: vec![("BUILD_TIMEOUT", "2s".into())], ..AppOptions::default() };
    let app = spawn_app_with(options).await;
    let files = serve_sources("FROM busybox:1\nRUN sleep 30\n").await;
    create(&app, "/app/1", &files.url("/src.tgz")).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "timedout");
    assert!(app.logs("/app/1").await.ends_with("Finished: ABORTED\n"));
}

#[tokio::test]
async fn deleting_an_app_stops_its_running_build_and_deletes_the_job() {
    let app = spawn_app().await;
    let files = serve_sources("FROM busybox:1\nRUN sleep 30\n").await;
    create(&app, "/app/1", &files.url("/src.tgz")).await;
    wait_running(&app, "/app/1").await;
    let (code, body) = json_of(app.delete("/app").await).await;
    assert_eq!((code, body), (200, json!({"status": "ok"})));
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "failed");
    assert_eq!(app.find("app", "1").await.unwrap().state.to_string(), "stopped");
    assert!(app
        .jenkins_requests()
        .await
        .iter()
        .any(|(m, p, _)| m == "POST" && p == &format!("/job/{}/job/app/doDelete", shuttle_tests::JENKINS_FOLDER)));
    let (code, _) = json_of(app.delete("/app").await).await;
    assert_eq!(code, 200, "a job already gone is fine");
}

#[tokio::test]
async fn a_rebuild_copies_the_old_builds_sources() {
    let app = spawn_app().await;
    let files = serve_sources(DOCKERFILE).await;
    create(&app, "/app/1", &files.url("/src.tgz")).await;
    let first = app.finished("/app/1", ENOUGH).await;
    assert_eq!(first["status"], "succeeded");
    let rebuild = format!("{}/{}", app.address, first["source_id"].as_str().unwrap());
    create(&app, "/app/2", &rebuild).await;
    let second = app.finished("/app/2", ENOUGH).await;
    assert_eq!(second["status"], "succeeded", "{}", app.logs("/app/2").await);
    let keys = app.stack.object_keys().await;
    assert_eq!(keys.iter().filter(|k| k.starts_with("sources/")).count(), 2, "{keys:?}");
}

#[tokio::test]
async fn duplicated_messages_and_racing_pollers_give_one_build_and_one_copy_of_the_log() {
    let app = spawn_app_with(AppOptions { poller: false, ..AppOptions::default() }).await;
    let files = serve_sources("FROM busybox:1\nRUN sleep 2\nRUN echo done\n").await;
    create(&app, "/app/1", &files.url("/src.tgz")).await;
    let record = app.find("app", "1").await.unwrap();
    let message = PollMessage { source_id: record.source_id, round: 0 };
    // SQS delivers the first message three times; and two pollers race on the build directly.
    for _ in 0..2 {
        app.poller.queue.enqueue(&message, Duration::ZERO).await.unwrap();
    }
    let (a, b) = tokio::join!(app.poller.poll(&message), app.poller.poll(&message));
    assert!(a.is_ok() && b.is_ok());
    app.start_poller();
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    assert_eq!(triggers(&app).await, 1, "triggered once");
    assert_eq!(app.logs("/app/1").await, app.console_text("app", 1).await, "every log byte archived once");
}

#[tokio::test]
async fn a_build_whose_poll_message_is_lost_is_redriven_by_the_schedule() {
    let app = spawn_app_with(AppOptions { poller: false, ..AppOptions::default() }).await;
    let files = serve_sources(DOCKERFILE).await;
    create(&app, "/app/1", &files.url("/src.tgz")).await;
    app.stack.sqs.purge_queue().queue_url(&app.stack.resources.queues.queue_url).send().await.unwrap();
    assert!(app.stack.queued().await.is_empty(), "the message is lost");
    app.start_poller();
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
}

#[tokio::test]
async fn jenkins_answering_500_then_stalling_still_ends_the_build_right() {
    let app = spawn_app().await;
    app.jenkins_fault(json!({"status": 500, "count": 6})).await;
    app.jenkins_fault(json!({"stall_ms": 12_000, "count": 2})).await;
    let files = serve_sources(DOCKERFILE).await;
    create(&app, "/app/1", &files.url("/src.tgz")).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    assert_eq!(triggers(&app).await, 1);
    assert_eq!(app.logs("/app/1").await, app.console_text("app", 1).await);
}

/// Issue 21: `GET …/logs?start=N` answers as Jenkins' `progressiveText`: a client that reads from
/// `X-Text-Size` while `X-More-Data` says so, from the build's start to its end, holds the
/// whole log, as Jenkins' own `consoleText` has it.
#[tokio::test]
async fn a_v2_log_read_from_x_text_size_while_x_more_data_is_the_whole_jenkins_log() {
    let app = spawn_app().await;
    let files = serve_sources("FROM busybox:1\nRUN for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done\n").await;
    create(&app, "/app/1", &files.url("/src.tgz")).await;
    let (mut log, mut start, mut reads) = (Vec::new(), 0_u64, 0);
    let deadline = std::time::Instant::now() + ENOUGH;
    loop {
        assert!(std::time::Instant::now() < deadline, "the log did not end within {ENOUGH:?}");
        let response = app.get(&format!("/app/1/logs?start={start}")).await;
        assert_eq!(response.status(), 200);
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let (next, more) = (header("X-Text-Size").expect("X-Text-Size").parse::<u64>().unwrap(), header("X-More-Data"));
        let body = response.bytes().await.unwrap();
        assert_eq!(next, start + body.len() as u64, "X-Text-Size is where the next read starts");
        log.extend_from_slice(&body);
        (start, reads) = (next, reads + 1);
        if more.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(reads > 1, "read while the build ran");
    assert_eq!(String::from_utf8(log).unwrap(), app.console_text("app", 1).await, "the whole Jenkins log, byte for byte");
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");

    // A start past the end: 416 with the size; a start that is no byte count: 400 naming it.
    let past = app.get(&format!("/app/1/logs?start={}", start + 1)).await;
    assert_eq!(past.status(), 416);
    assert_eq!(past.headers()["X-Text-Size"], start.to_string().as_str());
    for bad in ["-1", "abc", "1.5", ""] {
        let (code, body) = json_of(app.get(&format!("/app/1/logs?start={bad}")).await).await;
        assert_eq!((code, body["field"].as_str()), (400, Some("start")), "start={bad}: {body}");
    }
}

/// Issue 21: a v2 build shows why it waits while Jenkins keeps it queued (the second build of an
/// app waits for the first: concurrent builds are off), and when it was queued, started and
/// finished, with the seconds spent in the queue and building.
#[tokio::test]
async fn a_waiting_build_shows_jenkins_reason_and_every_build_its_times() {
    let app = spawn_app().await;
    // Long enough for a few polls of the waiting build (a queued build is polled each second
    // or so: its next poll waits in SQS, in whole seconds).
    let files = serve_sources("FROM busybox:1\nRUN sleep 6\n").await;
    create(&app, "/app/1", &files.url("/src.tgz")).await;
    wait_running(&app, "/app/1").await;
    create(&app, "/app/2", &files.url("/src.tgz")).await;
    // Jenkins' reasons in turn: its quiet period, then the build before it.
    let in_progress = |status: &serde_json::Value| status["why"].as_str().is_some_and(|why| why.contains("is already in progress"));
    let waiting = app.status_until("/app/2", ENOUGH, in_progress).await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    assert!(waiting["queued_at"].is_string() && waiting["started_at"].is_null() && waiting["queue_seconds"].is_null(), "{waiting}");

    let done = app.finished("/app/2", ENOUGH).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["why"].is_null(), "no reason once it left the queue: {done}");
    let time = |field: &str| humantime::parse_rfc3339(done[field].as_str().unwrap_or_else(|| panic!("{field}: {done}"))).unwrap();
    assert!(time("queued_at") <= time("started_at") && time("started_at") <= time("finished_at"), "{done}");
    let (queued, built) = (done["queue_seconds"].as_f64().unwrap(), done["build_seconds"].as_f64().unwrap());
    assert!(queued >= 1.0, "it waited for the first build: {done}");
    // Both ends are when a poll saw them (each a poll interval late at most): about the 6 s it slept.
    assert!(built > 4.0 && built < ENOUGH.as_secs_f64(), "{done}");
}
