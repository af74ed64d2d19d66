//! What the fault tests (`tests/e2e/faults.rs`, `tests/faults_emulator.rs`) share: a build with
//! webhooks, and what its receivers and the stand-in should hold once it is over.

use std::collections::HashSet;
use std::time::Duration;

use crate::receiver::Receiver;
use crate::{archive, fresh_image, Answer, TestApp, TestServer};
use serde_json::{json, Value};

pub const ENOUGH: Duration = Duration::from_secs(60);
pub const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A source server whose `/src.tgz` holds `dockerfile`.
pub async fn sources(dockerfile: &str) -> TestServer {
    TestServer::files(vec![("/src.tgz", Answer::ok(&archive(dockerfile)))]).await
}

/// Creates `path` building `source`, reporting to `status` and `logs`.
pub async fn create(app: &TestApp, path: &str, source: &str, status: Vec<String>, logs: Vec<String>) {
    let body = json!({
        "webhooks": {"status": status, "logs": logs},
        "metadata": "ns/app",
        "source": {"url": source},
        "destination": {"url": fresh_image()},
    });
    let response = app.post(path, body.to_string()).await;
    assert_eq!(response.status(), 200, "create {path}: {}", response.text().await.unwrap_or_default());
}

pub fn status(status: &str, building: bool) -> Value {
    json!({"id": "ns/app", "type": "build system", "building": building, "status": status})
}

/// What a build that ran in Jenkins reports, ending with `end`.
pub fn ran_and(end: &str) -> Vec<Value> {
    vec![status("pending", false), status("queued", false), status("pending", true), status(end, false)]
}

/// The statuses whose whole request reached the receiver at `path`, in order, each terminal one
/// checked to carry a well-formed log digest, which is then left out (`log_digest` reads it).
pub fn statuses(receiver: &Receiver, path: &str) -> Vec<Value> {
    receiver.bodies(path).into_iter().map(without_log_digest).collect()
}

/// A v2 status body without its `log` digest: present exactly on a terminal status, as
/// `{"bytes": n, "sha256": "<64 lowercase hex>"}`.
pub fn without_log_digest(mut body: Value) -> Value {
    let terminal = !matches!(body["status"].as_str(), Some("pending" | "queued"));
    let digest = body.as_object_mut().and_then(|fields| fields.remove("log"));
    match (&digest, terminal) {
        (Some(log), true) => {
            assert!(log["bytes"].is_u64(), "{log}");
            let sha256 = log["sha256"].as_str().unwrap_or_default();
            assert!(sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{log}");
        }
        (None, false) => {}
        _ => panic!("a log digest belongs on a terminal status only: {body} {digest:?}"),
    }
    body
}

/// The log digest of the terminal status at `path`: its bytes and SHA-256.
pub fn log_digest(receiver: &Receiver, path: &str) -> (u64, String) {
    let bodies = receiver.bodies(path);
    let log = &bodies.last().expect("a status")["log"];
    (log["bytes"].as_u64().expect("bytes"), log["sha256"].as_str().expect("sha256").to_owned())
}

/// Waits until the receiver got a terminal status at `path`, then a little more: nothing is to
/// come after it.
pub async fn until_ended(receiver: &Receiver, path: &str) {
    receiver
        .until(ENOUGH, &format!("a terminal status at {path}"), |r| {
            r.bodies(path).iter().any(|s| !matches!(s["status"].as_str(), Some("pending" | "queued")))
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// The statuses at `path` with resends dropped: a request whose `webhook-id` came before (at
/// least once delivery, SPEC §4) must carry the same body as the first, and is left out.
pub fn distinct_statuses(receiver: &Receiver, path: &str) -> Vec<Value> {
    let mut first_by_id = std::collections::HashMap::new();
    let mut distinct = Vec::new();
    for request in receiver.requests(path).iter().filter(|r| r.complete) {
        let id = request.header("webhook-id").expect("a webhook-id (run with WEBHOOK_SIGNING_SECRET)").to_owned();
        match first_by_id.get(&id) {
            Some(first) => assert_eq!(&request.json(), first, "a resend of {id} differs from the first send"),
            None => {
                first_by_id.insert(id, request.json());
                distinct.push(without_log_digest(request.json()));
            }
        }
    }
    distinct
}

/// How many status requests at `path` were resends of an id sent before.
pub fn resends(receiver: &Receiver, path: &str) -> usize {
    let ids: Vec<String> = receiver.requests(path).iter().filter_map(|r| r.header("webhook-id").map(str::to_owned)).collect();
    ids.len() - ids.iter().collect::<HashSet<_>>().len()
}

/// `lines` lines of 100 bytes each, tagged with `tag` (4 characters).
pub fn numbered_lines(tag: &str, lines: usize) -> Vec<u8> {
    (0..lines).flat_map(|i| format!("{tag} {i:06} {}\n", "x".repeat(88)).into_bytes()).collect()
}

/// Appends `text` to build `number` of `job` while it runs.
pub async fn append(app: &TestApp, job: &str, number: u64, text: &[u8]) {
    for piece in text.chunks(1024 * 1024) {
        let url = format!("{}{number}/__standin/append", app.job_url(job));
        let response = app.client.post(url).body(piece.to_vec()).send().await.expect("append");
        assert_eq!(response.status(), 204, "the build must still be running while the test appends");
    }
}

/// Every `buildWithParameters` the stand-in took (not those a fault answered).
pub async fn triggers(app: &TestApp) -> usize {
    let requests = app.jenkins_requests().await;
    requests.iter().filter(|(method, path, status)| method == "POST" && path.ends_with("/buildWithParameters") && *status == 201).count()
}

/// How many Jenkins requests whose path holds `part` got no answer (a reset connection).
pub async fn unanswered(app: &TestApp, part: &str) -> usize {
    app.jenkins_requests().await.iter().filter(|(_, path, status)| path.contains(part) && *status == 0).count()
}

/// What a user checks once build `number` of `job` (at `path`) is over: it ended `end`, Jenkins
/// ran it once, the archive is the Jenkins log byte for byte, and the receiver got the exact log
/// at `/logs`.
pub async fn assert_log_exact(app: &TestApp, path: &str, job: &str, number: u64, receiver: &Receiver) -> Vec<u8> {
    let console = app.console_text(job, number).await;
    let archived = app.logs(path).await;
    assert!(archived == console, "the archive is the Jenkins log byte for byte:\n{archived}\n---- Jenkins ----\n{console}");
    let archived = archived.into_bytes();
    receiver.until(ENOUGH, "the whole log at the receiver", |r| r.log("/logs").len() >= archived.len()).await;
    assert!(receiver.log("/logs") == archived, "the receiver reassembles the log byte for byte");
    archived
}
