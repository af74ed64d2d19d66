//! No credential leaks (SPEC §7), end to end: every URL the builds are given carries a canary
//! credential, the API token is a canary, and the builds run to their end through the local
//! gateway, the poller, the AWS emulator, the Jenkins stand-in and real receivers. Then
//! everything the shuttle wrote or said is searched for every canary (and for the base64 of
//! each `user:password`, as a Basic header would carry it): every log line of the process, every
//! answer body, every DynamoDB item (the KMS-sealed spec aside), every SQS message, every S3
//! log archive, every status webhook body and header but the `Authorization` meant for the
//! receiver, and every Jenkins console log.
//!
//! The test is alone in its binary: it installs the process's log subscriber.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use shuttle_tests::receiver::Receiver;
use shuttle_tests::{archive, fresh_image, image, registry, spawn_app_with, Answer, AppOptions, TestApp, TestServer};
use uuid::Uuid;

const ENOUGH: Duration = Duration::from_secs(60);
const API_TOKEN: &str = "CANARYapiTOKEN0123456789";

/// A credential that must never show: `user:password` in a URL, or a header value.
struct Canary {
    user: &'static str,
    password: &'static str,
}

const SOURCE: Canary = Canary { user: "src", password: "CANARYsourcePW" };
const MISSING_SOURCE: Canary = Canary { user: "src", password: "CANARYmissingPW" };
const STATUS_HOOK: Canary = Canary { user: "hook", password: "CANARYstatusPW" };
const LOG_HOOK: Canary = Canary { user: "logs", password: "CANARYlogsPW" };
const PUSH: Canary = Canary { user: "push", password: "CANARYpushPW" };
const PULL: Canary = Canary { user: "pull", password: "CANARYpullPW" };
const LEGACY_SOURCE: Canary = Canary { user: "lsrc", password: "CANARYlegacySourcePW" };
const CALLBACK: Canary = Canary { user: "cb", password: "CANARYcallbackPW" };
const LEGACY_REGISTRY: Canary = Canary { user: "reg", password: "CANARYregistryPW" };
const REFUSED: Canary = Canary { user: "bad", password: "CANARYrefusedPW" };
/// Credentials given without a scheme, where no URL is expected (issue 20).
const SCHEMELESS_REGISTRY: Canary = Canary { user: "bot", password: "CANARYschemelessRegistryPW" };
const SCHEMELESS_IMAGE: Canary = Canary { user: "img", password: "CANARYschemelessImagePW" };
const CALLBACK_AUTH: &str = "Bearer CANARYcallbackAuth";

const CANARIES: [&Canary; 12] = [
    &SOURCE,
    &MISSING_SOURCE,
    &STATUS_HOOK,
    &LOG_HOOK,
    &PUSH,
    &PULL,
    &LEGACY_SOURCE,
    &CALLBACK,
    &LEGACY_REGISTRY,
    &REFUSED,
    &SCHEMELESS_REGISTRY,
    &SCHEMELESS_IMAGE,
];

impl Canary {
    fn userinfo(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }

    /// The texts that must not show: the password, and the Basic header's base64.
    fn forms(&self) -> [String; 2] {
        [self.password.to_owned(), base64::engine::general_purpose::STANDARD.encode(self.userinfo())]
    }
}

/// Everything the process logs, at every level, in memory.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("the log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// All that was seen, by where it was seen.
#[derive(Default)]
struct Corpus(Vec<(String, String)>);

impl Corpus {
    fn add(&mut self, place: impl Into<String>, text: impl Into<String>) {
        self.0.push((place.into(), text.into()));
    }

    /// Every `(place, canary form)` found.
    fn leaks(&self) -> Vec<(String, String)> {
        let mut forms: Vec<String> = CANARIES.iter().flat_map(|c| c.forms()).collect();
        forms.extend([API_TOKEN.to_owned(), CALLBACK_AUTH.trim_start_matches("Bearer ").to_owned()]);
        let mut found = BTreeSet::new();
        for (place, text) in &self.0 {
            for form in forms.iter().filter(|form| text.contains(form.as_str())) {
                found.insert((place.clone(), form.clone()));
            }
        }
        found.into_iter().collect()
    }

    fn bytes(&self) -> usize {
        self.0.iter().map(|(_, text)| text.len()).sum()
    }
}

async fn call(app: &TestApp, corpus: &mut Corpus, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app.request(method.clone(), path);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("a request to the API");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    corpus.add(format!("answer to {method} {path} ({status})"), text.clone());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn no_canary_credential_shows_anywhere() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug,shuttle_core=trace,shuttle_adapters=trace,shuttle_http=trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let settings = vec![("SHUTTLE_API_TOKENS", API_TOKEN.to_owned())];
    let app = spawn_app_with(AppOptions { settings, poller: false, ..AppOptions::default() }).await;
    let files = TestServer::files(vec![("/src.tgz", Answer::ok(&archive("FROM busybox:1\nRUN echo built\n")))]).await;
    let receiver = Receiver::controller_at("/callback").await;
    let at = |canary: &Canary, path: &str| receiver.url(path).replacen("http://", &format!("http://{}@", canary.userinfo()), 1);
    let mut corpus = Corpus::default();

    let v2 = |source: String| {
        json!({
            "webhooks": {"status": [at(&STATUS_HOOK, "/status")], "logs": [at(&LOG_HOOK, "/logs")]},
            "metadata": "ns",
            "source": {"url": source},
            "destination": {"url": fresh_image().replacen("docker://", &format!("docker://{}@", PUSH.userinfo()), 1)},
        })
    };
    let builds = [
        ("/app/http", v2(files.url_with_userinfo(&SOURCE.userinfo(), "/src.tgz"))),
        ("/app/docker", v2(image("base/busybox:1").replacen("docker://", &format!("docker://{}@", PULL.userinfo()), 1))),
        ("/app/missing", v2(files.url_with_userinfo(&MISSING_SOURCE.userinfo(), "/gone.tgz"))),
    ];
    for (path, body) in &builds {
        assert_eq!(call(&app, &mut corpus, Method::POST, path, Some(body.clone())).await.0, 200, "create {path}");
    }
    let app_uuid = Uuid::new_v4();
    let legacy = json!({
        "app": "myapp", "space": "default", "app_uuid": app_uuid, "build_uuid": Uuid::new_v4(), "build_number": 1,
        "sources": files.url_with_userinfo(&LEGACY_SOURCE.userinfo(), "/src.tgz"),
        "callback": at(&CALLBACK, "/callback"), "callback_auth": CALLBACK_AUTH,
        "gm_registry_host": registry(), "gm_registry_repo": "org",
        "gm_registry_auth": {"username": LEGACY_REGISTRY.user, "password": LEGACY_REGISTRY.password},
    });
    assert_eq!(call(&app, &mut corpus, Method::POST, "/", Some(legacy)).await.0, 200, "create the legacy build");
    // Credentials without a scheme: accepted, then failed with a reason that does not echo them.
    let (registry_app, image_app) = (Uuid::new_v4(), Uuid::new_v4());
    let schemeless = [
        json!({
            "app": "myapp", "space": "default", "app_uuid": registry_app, "build_uuid": Uuid::new_v4(), "build_number": 1,
            "sources": files.url("/src.tgz"), "gm_registry_host": format!("{}@{}", SCHEMELESS_REGISTRY.userinfo(), registry()),
            "gm_registry_repo": "org",
        }),
        json!({
            "app": "myapp", "space": "default", "app_uuid": image_app, "build_uuid": Uuid::new_v4(), "build_number": 1,
            "docker_registry": format!("{}@{}/base/busybox:1", SCHEMELESS_IMAGE.userinfo(), registry()),
            "gm_registry_host": registry(), "gm_registry_repo": "org",
        }),
    ];
    for body in schemeless {
        assert_eq!(call(&app, &mut corpus, Method::POST, "/", Some(body)).await.0, 200, "create a legacy build");
    }
    let refused = json!({"source": {"url": format!("ftp://{}@src.example/a.tgz", REFUSED.userinfo())}, "destination": {"url": "docker://r.example/o/a:1"}});
    assert_eq!(call(&app, &mut corpus, Method::POST, "/app/refused", Some(refused)).await.0, 400);
    let wrong_token = app.client.get(app.url("/app/http/status")).bearer_auth(SOURCE.password).send().await.unwrap();
    assert_eq!(wrong_token.status(), 401);
    corpus.add("answer to a wrong token", wrong_token.text().await.unwrap());

    for body in app.stack.queued().await {
        corpus.add("SQS message (as created)", body);
    }
    app.start_poller();
    let job = format!("myapp-{app_uuid}");
    let mut finished = Vec::new();
    let (registry_job, image_job) = (format!("/myapp-{registry_app}/1"), format!("/myapp-{image_app}/1"));
    for path in ["/app/http", "/app/docker", "/app/missing", &format!("/{job}/1"), &registry_job, &image_job] {
        let status = app.status_until(path, ENOUGH, |s| !matches!(s["status"].as_str(), Some("pending" | "queued"))).await;
        finished.push((path.to_owned(), status["status"].as_str().unwrap_or_default().to_owned()));
        corpus.add(format!("status of {path}"), status.to_string());
        corpus.add(format!("logs of {path}"), app.logs(path).await);
    }
    let expected = [("/app/http", "succeeded"), ("/app/docker", "succeeded"), ("/app/missing", "failed")];
    for (path, state) in expected {
        assert!(finished.contains(&(path.to_owned(), state.to_owned())), "{path} should be {state}: {finished:?}");
    }
    receiver
        .until(ENOUGH, "every build's last status", |r| {
            r.bodies("/status")
                .iter()
                .filter(|b| b["building"] == false && !matches!(b["status"].as_str(), Some("pending" | "queued")))
                .count()
                == 3
        })
        .await;
    receiver.until(ENOUGH, "the legacy callback's last status", |r| r.bodies("/callback").iter().any(|b| b["status"] != "pending")).await;

    // The canaries were live: each went where it belongs.
    let basic = |canary: &Canary| format!("Basic {}", canary.forms()[1]);
    assert!(
        files.seen().iter().any(|seen| seen.authorization.as_deref() == Some(&basic(&SOURCE))),
        "the source server got its credentials"
    );
    assert!(receiver.requests("/status").iter().all(|r| r.header("authorization") == Some(&basic(&STATUS_HOOK))));
    assert!(receiver.requests("/logs").iter().all(|r| r.header("authorization") == Some(&basic(&LOG_HOOK))));
    assert!(receiver.requests("/callback").iter().all(|r| r.header("authorization") == Some(CALLBACK_AUTH)));
    assert!(receiver.all_acknowledged("/callback"), "the controller stored every callback");

    for path in ["/status", "/logs", "/callback"] {
        for request in receiver.requests(path) {
            let headers: Vec<String> =
                request.headers.iter().filter(|(name, _)| *name != "authorization").map(|(n, v)| format!("{n}: {v:?}")).collect();
            corpus.add(format!("webhook {path} headers"), headers.join("\n"));
            corpus.add(format!("webhook {path} body"), String::from_utf8_lossy(&request.body));
        }
    }
    for item in app.stack.items().await {
        let mut item = item;
        item.remove("spec"); // the KMS-sealed spec: ciphertext
        corpus.add("DynamoDB item", format!("{item:?}"));
    }
    for body in app.stack.queued().await {
        corpus.add("SQS message (at the end)", body);
    }
    for key in app.stack.object_keys().await.into_iter().filter(|key| key.starts_with("logs/")) {
        let object = app.stack.s3.get_object().bucket(&app.stack.resources.s3_bucket).key(&key).send().await.expect("a log chunk");
        let bytes = object.body.collect().await.expect("its bytes").into_bytes();
        corpus.add(format!("S3 {key}"), String::from_utf8_lossy(&bytes));
    }
    for (job, path) in [("app", "/app/http"), ("app", "/app/docker"), (job.as_str(), &format!("/{job}/1") as &str)] {
        let (app_id, build_id) = path[1..].split_once('/').expect("/{app}/{build}");
        let record = app.find(app_id, build_id).await.expect("the build");
        let number = record.progress.jenkins_number.unwrap_or_else(|| panic!("{path} ran in Jenkins"));
        corpus.add(format!("Jenkins console of {job} #{number}"), app.console_text(job, number).await);
    }
    let captured = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(captured.contains("build accepted") && captured.lines().count() > 100, "the logs were captured");
    corpus.add("process logs", captured);

    let leaks = corpus.leaks();
    eprintln!("searched {} places, {} bytes, for {} canaries: {} found", corpus.0.len(), corpus.bytes(), CANARIES.len() + 2, leaks.len());
    assert!(leaks.is_empty(), "canaries found: {leaks:#?}");
}
