//! The SSRF guard end to end (SPEC §7): through the local gateway, the poller and the Jenkins
//! stand-in. A host known to be refused is a v2 `400` naming the field; a legacy build naming one,
//! or a v2 build whose host only resolution shows to be refused, fails with the reason in its log.

use std::time::Duration;

use serde_json::json;
use shuttle_tests::{archive, fresh_image, json_of, spawn_app, spawn_app_with, Answer, AppOptions, TestApp, TestServer};

const ENOUGH: Duration = Duration::from_secs(60);
const APP_UUID: &str = "7d1f3b5c-2a4e-4c6d-8e0f-1a2b3c4d5e6f";
const LEGACY_JOB: &str = "myapp-7d1f3b5c-2a4e-4c6d-8e0f-1a2b3c4d5e6f";

fn v2_body(source: &str, webhooks: serde_json::Value) -> String {
    json!({
        "source": {"url": source}, "destination": {"url": fresh_image()},
        "metadata": "ns/app", "webhooks": webhooks,
    })
    .to_string()
}

/// The answer to a v2 create: its status, the field named, and the error.
async fn create(app: &TestApp, path: &str, body: String) -> (u16, String, String) {
    let (code, body) = json_of(app.post(path, body).await).await;
    let text = |key: &str| body[key].as_str().unwrap_or_default().to_owned();
    (code, text("field"), text("error"))
}

/// Every buildWithParameters Jenkins was sent.
async fn triggers(app: &TestApp) -> usize {
    app.jenkins_requests().await.iter().filter(|(method, path, _)| method == "POST" && path.ends_with("/buildWithParameters")).count()
}

#[tokio::test]
async fn a_v2_create_naming_the_metadata_service_is_a_400_naming_the_field() {
    // The tests' app allows loopback, as the local run does: never link-local.
    let app = spawn_app().await;
    let webhooks = json!({"status": ["https://hooks.example/status", "http://169.254.169.254/latest/meta-data/"]});

    let (code, field, error) = create(&app, "/app/1", v2_body("https://src.example/a.tgz", webhooks)).await;

    assert_eq!((code, field.as_str()), (400, "webhooks.status[1]"), "{error}");
    assert!(error.ends_with("is refused: 169.254.169.254 is link-local (instance metadata)"), "{error}");

    let (code, field, error) = create(&app, "/app/2", v2_body("http://0xA9FEA9FE/a.tgz", json!(null))).await;

    assert_eq!((code, field.as_str()), (400, "source.url"), "{error}");
    assert!(error.contains("169.254.169.254 is link-local"), "{error}");
    app.stack.assert_nothing_written("refused creates").await;
}

#[tokio::test]
async fn a_legacy_build_whose_callback_is_refused_fails_with_the_reason_in_its_log() {
    let app = spawn_app().await;
    let body = json!({
        "app": "myapp", "space": "default", "app_uuid": APP_UUID, "build_uuid": "0b9e8c2a-6c84-4a3f-9a55-6d6a4c1b2e10",
        "build_number": 7, "sources": "docker://registry.example/org/base:3", "gm_registry_host": "registry.example",
        "gm_registry_repo": "org", "callback": "http://token:canary-callback-pw@[::ffff:169.254.169.254]/cb",
    });

    let (code, answer) = json_of(app.post("/", body.to_string()).await).await;

    assert_eq!((code, answer), (200, json!({"status": "ok"})), "legacy gets no 400 for it");
    let status = app.legacy_finished(&format!("/{LEGACY_JOB}/7"), ENOUGH).await;
    assert_eq!(status["status"], "failed", "{status}");
    // The legacy logs endpoint answers `{"output": "<log>"}`.
    let logs: serde_json::Value = serde_json::from_str(&app.logs(&format!("/{LEGACY_JOB}/7")).await).expect("JSON");
    assert_eq!(
        logs["output"],
        "[build shuttle] callback http://token:***@[::ffff:169.254.169.254]/cb is refused: \
         ::ffff:169.254.169.254 is link-local (instance metadata)\n"
    );
    assert_eq!(triggers(&app).await, 0, "never reached Jenkins");
}

#[tokio::test]
async fn a_v2_build_whose_source_only_resolves_to_a_refused_address_fails_with_the_reason_in_its_log() {
    // Loopback is refused but for one address the source server is not on, so `localhost` is not
    // refused by name at create: only its resolution to 127.0.0.1 shows it.
    let options = AppOptions { settings: vec![("ALLOWED_PRIVATE_CIDRS", "127.0.0.2/32".to_owned())], ..AppOptions::default() };
    let app = spawn_app_with(options).await;
    let files = TestServer::files(vec![("/src.tgz", Answer::ok(&archive("FROM busybox:1\n")))]).await;
    let source = files.url("/src.tgz").replacen("127.0.0.1", "localhost", 1);

    // The test registry is on loopback too: a destination the build never reaches.
    let body = json!({"source": {"url": source}, "destination": {"url": "docker://registry.example/org/app:1"}}).to_string();
    let (code, _, error) = create(&app, "/app/1", body).await;

    assert_eq!(code, 200, "{error}");
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "failed");
    let log = app.logs("/app/1").await;
    let expected = format!(
        "[build shuttle] the sources could not be cached: the sources at {source} are refused: \
         localhost resolves only to refused addresses (loopback)"
    );
    assert!(log.starts_with(&expected), "{log}");
    assert!(files.paths().is_empty(), "the source server was never asked");
    assert_eq!(triggers(&app).await, 0, "never reached Jenkins");
}
