//! The harness of the integration and end-to-end tests: real local services, a fresh set of
//! randomly named resources per test, and the local gateway on a random port.

pub mod aws_calls;
pub mod faults;
pub mod kafka;
pub mod receiver;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use jenkins_standin::{StandIn, StandInConfig};
pub use local_gateway::jenkins_folder::{self, LOCAL_JENKINS_FOLDER as JENKINS_FOLDER};
use local_gateway::poller::{run_poller, PollerTriggers};
use local_gateway::stack::{create_resources, Resources};
use shuttle_core::api::{Create, Status};
use shuttle_core::config::Env;
use shuttle_core::poll::Poller;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The SDK configuration for the local AWS emulator that `make test` starts.
pub async fn sdk_config() -> SdkConfig {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "these tests run against the local AWS emulator: run them with `make test`, which starts it and sets AWS_ENDPOINT_URL"
    );
    shuttle_adapters::load_sdk_config().await.expect("the SDK configuration")
}

/// A name no other test uses: lowercase, short enough for an S3 bucket.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A table, bucket, queue (with dead-letter queue) and KMS key of this test's own.
pub struct Stack {
    pub sdk: SdkConfig,
    pub resources: Resources,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub kms: aws_sdk_kms::Client,
}

impl Stack {
    pub async fn new() -> Self {
        let sdk = sdk_config().await;
        let resources = create_resources(&sdk, &unique_name("t")).await.expect("create the test's resources in the AWS emulator");
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            s3: shuttle_adapters::s3::client(&sdk, None),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            kms: aws_sdk_kms::Client::new(&sdk),
            resources,
            sdk,
        }
    }

    /// The settings of these resources, as a function reads them.
    pub fn env(&self, shuttle_host: &str) -> Env<'_> {
        let shuttle_host = shuttle_host.to_owned();
        // No Jenkins behind these settings: tests of the API alone never reach it.
        Env::from_lookup(move |name| match name {
            "JENKINS_URL" => Some("http://jenkins.invalid".to_owned()),
            _ => access_setting(name).or_else(|| self.resources.setting(name, &shuttle_host)),
        })
    }

    /// The create function's use case on these resources, wired by its composition root.
    pub fn create(&self, shuttle_host: &str) -> Create {
        shuttle_adapters::wiring::create(&self.sdk, &self.env(shuttle_host)).expect("the create function's clients")
    }

    /// The status function's read of a build on these resources.
    pub fn status(&self) -> Status {
        let (status, _) =
            shuttle_adapters::wiring::status(&self.sdk, &self.env("https://shuttle.example")).expect("the status function's clients");
        status
    }

    /// Every item of the table, as stored.
    pub async fn items(&self) -> Vec<HashMap<String, AttributeValue>> {
        let output = self.dynamodb.scan().table_name(&self.resources.table_name).send().await.expect("scan the table");
        output.items().to_vec()
    }

    /// The bodies of the messages waiting in the poll queue (received, then made visible again).
    pub async fn queued(&self) -> Vec<String> {
        let (mut bodies, mut receipts) = (Vec::new(), Vec::new());
        loop {
            let output = self
                .sqs
                .receive_message()
                .queue_url(&self.resources.queues.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive from the poll queue");
            if output.messages().is_empty() {
                break;
            }
            for message in output.messages() {
                bodies.push(message.body().unwrap_or_default().to_owned());
                receipts.push(message.receipt_handle().unwrap_or_default().to_owned());
            }
        }
        for receipt in receipts {
            self.sqs
                .change_message_visibility()
                .queue_url(&self.resources.queues.queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .expect("make the message visible again");
        }
        bodies
    }

    /// Every object key in the bucket.
    pub async fn object_keys(&self) -> Vec<String> {
        let output = self.s3.list_objects_v2().bucket(&self.resources.s3_bucket).send().await.expect("list the bucket");
        output.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
    }

    /// Whether nothing at all was written: no build, no message, no object.
    pub async fn assert_nothing_written(&self, context: &str) {
        assert!(self.items().await.is_empty(), "{context}: a build was stored");
        assert!(self.queued().await.is_empty(), "{context}: a message was queued");
        assert!(self.object_keys().await.is_empty(), "{context}: an object was written");
    }
}

/// How a test's app is started.
pub struct AppOptions {
    /// The Jenkins stand-in's timings (fast by default).
    pub jenkins: StandInConfig,
    /// Settings (SPEC §6) over the test defaults.
    pub settings: Vec<(&'static str, String)>,
    /// Whether the poller runs from the start (else [`TestApp::start_poller`]).
    pub poller: bool,
    /// How often the schedule re-drives stale builds.
    pub schedule_every: Duration,
}

/// The image registry of `make test` (`SHUTTLE_TEST_REGISTRY`, `127.0.0.1:PORT`, started by
/// `infra/local/test.sh`): no credentials, seeded with `base/busybox:1` and `library/busybox:1`,
/// and the Docker Hub mirror of the test apps' builds, so that `FROM busybox:1` works.
pub fn registry() -> String {
    match std::env::var("SHUTTLE_TEST_REGISTRY") {
        Ok(address) if !address.is_empty() => address,
        _ => panic!("SHUTTLE_TEST_REGISTRY is not set: run the tests with `make test` (it starts the image registry)"),
    }
}

/// `docker://<test registry>/<path>`: an image of the test registry, e.g. `image("org/app:1")`
/// (`base/busybox:1` exists from the start).
pub fn image(path: &str) -> String {
    format!("docker://{}/{path}", registry())
}

/// A destination of its own in the test registry, `docker://<registry>/test/<uuid>:1`: builds
/// that run at once share one image store (as builds on one Docker host do), where one build's
/// clean-up (`docker image rm`) would remove the image another is about to push to the same name.
pub fn fresh_image() -> String {
    image(&format!("test/{}:1", uuid::Uuid::new_v4().simple()))
}

/// The tags of `repository` in a registry, through its API (`GET /v2/<repository>/tags/list`),
/// sorted; none when the registry does not know the repository.
pub async fn registry_tags(registry: &str, repository: &str, credentials: Option<(&str, &str)>) -> Vec<String> {
    let mut request = http_client().build().expect("a client").get(format!("http://{registry}/v2/{repository}/tags/list"));
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("the registry answers");
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert!(response.status().is_success(), "GET /v2/{repository}/tags/list: {}", response.status());
    let body: serde_json::Value = response.json().await.expect("a JSON tag list");
    let mut tags: Vec<String> = body["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect();
    tags.sort();
    tags
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            jenkins: StandInConfig {
                queue_delay: Duration::from_millis(200),
                abort_delay: Duration::from_millis(300),
                step_time: Duration::from_millis(20),
                // Real builds (buildah), reading Docker Hub through the test registry.
                docker_hub_mirror: std::env::var("SHUTTLE_TEST_REGISTRY").ok(),
                ..StandInConfig::default()
            },
            settings: Vec::new(),
            poller: true,
            schedule_every: Duration::from_secs(1),
        }
    }
}

/// The token every test caller sends (`SHUTTLE_API_TOKENS` of the test apps).
pub const TEST_TOKEN: &str = "test-caller-token-0123456789";

/// Who may call a test app, and the key of its sources links: as in production, tokens.
const ACCESS_SETTINGS: [(&str, &str); 2] =
    [("SHUTTLE_API_TOKENS", TEST_TOKEN), ("SOURCES_SIGNING_KEY", "test-sources-signing-key-0123456789abcdef")];

/// The settings a test app runs with unless the test says otherwise: a quick poller.
const TEST_SETTINGS: [(&str, &str); 4] =
    [("POLL_INTERVAL", "200ms"), ("LOG_WINDOW", "3s"), ("POLL_STALE_AFTER", "4s"), ("QUEUE_TIMEOUT", "2m")];

fn access_setting(name: &str) -> Option<String> {
    ACCESS_SETTINGS.iter().find(|(n, _)| *n == name).map(|(_, value)| (*value).to_owned())
}

/// The local gateway on a random port, over this test's own resources and Jenkins stand-in,
/// with the poller fed by the queue and the schedule as in `make run`.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The token [`TestApp::request`] sends: the first of the app's `SHUTTLE_API_TOKENS`.
    pub token: Option<String>,
    pub stack: Stack,
    pub jenkins: StandIn,
    pub poller: Arc<Poller>,
    schedule_every: Duration,
    poller_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// The API alone: no poller takes messages off the queue, so a test sees what the API wrote.
pub async fn spawn_api() -> TestApp {
    spawn_app_with(AppOptions { poller: false, ..AppOptions::default() }).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let stack = Stack::new().await;
    let jenkins_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
    // Set up as a deployer sets up Jenkins: the shuttle's user has job rights in its folder only.
    let jenkins_config = jenkins_folder::least_privilege(options.jenkins, JENKINS_FOLDER);
    let jenkins = jenkins_standin::start(jenkins_config, jenkins_listener).await.expect("start the Jenkins stand-in");
    jenkins_folder::create_folder(&jenkins, JENKINS_FOLDER).await.expect("the Jenkins folder");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
    let address = format!("http://{}", listener.local_addr().expect("a bound address"));
    let jenkins_url = jenkins.base_url().to_owned();
    let (user, token) = (jenkins_folder::SHUTTLE_USER.to_owned(), jenkins_folder::SHUTTLE_TOKEN.to_owned());
    let lookup = |name: &str| -> Option<String> {
        if let Some((_, value)) = options.settings.iter().find(|(n, _)| *n == name) {
            return Some(value.clone());
        }
        if let Some((_, value)) = TEST_SETTINGS.iter().find(|(n, _)| *n == name) {
            return Some((*value).to_owned());
        }
        match name {
            "JENKINS_URL" => Some(jenkins_url.clone()),
            "JENKINS_FOLDER" => Some(JENKINS_FOLDER.to_owned()),
            "JENKINS_USER" => Some(user.clone()),
            "JENKINS_TOKEN" => Some(token.clone()),
            "POLL_DEAD_LETTER_QUEUE_URL" => Some(stack.resources.queues.dead_letter_url.clone()),
            _ => access_setting(name).or_else(|| stack.resources.setting(name, &address)),
        }
    };
    let token = lookup("SHUTTLE_API_TOKENS").and_then(|tokens| tokens.split(',').next().map(|t| t.trim().to_owned()));
    let env = Env::from_lookup(lookup);
    // The functions' AWS requests are recorded for the IAM check when make test asks for it.
    let functions_sdk = match (aws_calls::CallLog::from_env(&stack.resources), stack.sdk.http_client()) {
        (Some(calls), Some(http)) => stack.sdk.to_builder().http_client(calls.recording(http)).build(),
        _ => stack.sdk.clone(),
    };
    // Each function wired by its own composition root, as in Lambda.
    let functions = local_gateway::Functions::wire(&functions_sdk, &env).expect("the API functions' clients");
    let poller = Arc::new(shuttle_adapters::wiring::poller(&functions_sdk, &env).expect("the poller's clients"));
    drop(env);
    tokio::spawn(local_gateway::serve(listener, functions));
    let client = http_client().redirect(reqwest::redirect::Policy::none()).build().expect("an HTTP client");
    let app = TestApp {
        address,
        client,
        token: token.filter(|t| !t.is_empty()),
        stack,
        jenkins,
        poller,
        schedule_every: options.schedule_every,
        poller_task: Mutex::new(None),
    };
    if options.poller {
        app.start_poller();
    }
    app
}

impl TestApp {
    /// The build at `/{app_id}/{build_id}`, as the status function reads it.
    pub async fn find(&self, app_id: &str, build_id: &str) -> Result<shuttle_core::record::BuildRecord, shuttle_core::ShuttleError> {
        Status { store: self.poller.store.clone() }.find(app_id, build_id).await
    }

    /// Starts the poller's triggers: the SQS event source mapping and the schedule.
    pub fn start_poller(&self) {
        let triggers = PollerTriggers { schedule_every: Some(self.schedule_every), ..PollerTriggers::default() };
        let task =
            tokio::spawn(run_poller(self.poller.clone(), self.stack.sqs.clone(), self.stack.resources.queues.queue_url.clone(), triggers));
        if let Some(previous) = self.poller_task.lock().expect("not poisoned").replace(task) {
            previous.abort();
        }
    }

    /// The v2 status of `/{app}/{build}` once it has finished (or panics after `limit`).
    pub async fn finished(&self, path: &str, limit: Duration) -> serde_json::Value {
        self.status_until(path, limit, |status| !matches!(status["status"].as_str(), Some("pending" | "queued"))).await
    }

    /// The legacy status of `/{job}/{n}` once it has finished.
    pub async fn legacy_finished(&self, path: &str, limit: Duration) -> serde_json::Value {
        self.status_until(path, limit, |status| status["status"].as_str() != Some("pending")).await
    }

    /// Reads `{path}/status` until `done` holds.
    pub async fn status_until(&self, path: &str, limit: Duration, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let (code, status) = json_of(self.get(&format!("{path}/status")).await).await;
            if code == 200 && done(&status) {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "{path} did not get there within {limit:?}: last {code} {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The archived log, as `GET {path}/logs` serves it.
    pub async fn logs(&self, path: &str) -> String {
        let response = self.get(&format!("{path}/logs")).await;
        assert_eq!(response.status(), 200, "logs of {path}");
        response.text().await.expect("a body")
    }

    /// The URL of the app's Jenkins job, in the shuttle's folder.
    pub fn job_url(&self, job: &str) -> String {
        format!("{}job/{JENKINS_FOLDER}/job/{job}/", self.jenkins.base_url())
    }

    /// The whole console log of a Jenkins build, as the stand-in holds it.
    pub async fn console_text(&self, job: &str, number: u64) -> String {
        let config = self.jenkins.config();
        let url = format!("{}{number}/consoleText", self.job_url(job));
        let response = self.client.get(url).basic_auth(&config.user, Some(&config.api_token)).send().await.expect("GET consoleText");
        assert_eq!(response.status(), 200);
        response.text().await.expect("a body")
    }

    /// The Jenkins requests the stand-in saw, as `(method, path, status)`.
    pub async fn jenkins_requests(&self) -> Vec<(String, String, u64)> {
        let url = format!("{}__standin/requests", self.jenkins.base_url());
        let requests: serde_json::Value = self.client.get(url).send().await.expect("GET requests").json().await.expect("JSON");
        requests
            .as_array()
            .expect("a list")
            .iter()
            .map(|r| {
                let text = |field: &str| r[field].as_str().unwrap_or_default().to_owned();
                (text("method"), text("path"), r["status"].as_u64().unwrap_or(0))
            })
            .collect()
    }

    /// Queues faults in the stand-in (see its `control.rs`).
    pub async fn jenkins_fault(&self, fault: serde_json::Value) {
        let url = format!("{}__standin/faults", self.jenkins.base_url());
        let response = self.client.post(url).json(&fault).send().await.expect("POST faults");
        assert!(response.status().is_success(), "fault refused: {}", response.status());
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A request to the API with the app's token (none in open mode).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.request(reqwest::Method::POST, path).header("content-type", "application/json").body(body).send().await.expect("POST")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path).send().await.expect("GET")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::DELETE, path).send().await.expect("DELETE")
    }

    pub async fn head(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::HEAD, path).send().await.expect("HEAD")
    }
}

/// Status and JSON body of a response.
pub async fn json_of(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON (status {status}): {text}"));
    (status, body)
}

/// A `tar.gz` of one folder holding `Dockerfile`, as a controller would send.
pub fn archive(dockerfile: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("shuttle-src-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("app")).expect("a temporary folder");
    std::fs::write(dir.join("app/Dockerfile"), dockerfile).expect("write the Dockerfile");
    let archive = dir.join("src.tar.gz");
    let status = std::process::Command::new("tar").arg("-czf").arg(&archive).arg("-C").arg(&dir).arg("app").status().expect("run tar");
    assert!(status.success(), "tar failed");
    let bytes = std::fs::read(&archive).expect("read the archive");
    std::fs::remove_dir_all(&dir).expect("remove the temporary folder");
    bytes
}

// The test servers write their HTTP/1.1 answers by hand, so a test can send what a
// well-behaved server would not: a body that never ends, a `Content-Length` nothing follows.

/// One request, as a test server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
}

/// What a test server answers.
#[derive(Clone)]
pub enum Answer {
    /// A whole response with a `Content-Length`.
    Full { status: &'static str, location: Option<String>, body: Vec<u8> },
    /// `200` announcing `Content-Length: n`, then nothing while the connection stays open.
    Announced(u64),
    /// `200` without a `Content-Length`, then a body that never ends.
    Endless,
}

impl Answer {
    pub fn ok(body: &[u8]) -> Self {
        Answer::Full { status: "200 OK", location: None, body: body.to_vec() }
    }

    pub fn status(status: &'static str) -> Self {
        Answer::Full { status, location: None, body: b"nothing here".to_vec() }
    }

    pub fn redirect(status: &'static str, location: impl Into<String>) -> Self {
        Answer::Full { status, location: Some(location.into()), body: Vec::new() }
    }
}

/// An HTTP server on `127.0.0.1:0` that answers every request with `answer(base, path)` and
/// remembers what it was asked.
pub struct TestServer {
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    /// A server of fixed answers by path; `404 Not Found` for any other path.
    pub async fn files(routes: Vec<(&str, Answer)>) -> Self {
        let routes: HashMap<String, Answer> = routes.into_iter().map(|(path, answer)| (path.to_owned(), answer)).collect();
        Self::start(move |_, path| routes.get(path).cloned().unwrap_or_else(|| Answer::status("404 Not Found"))).await
    }

    pub async fn start(answer: impl Fn(&str, &str) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let base = format!("http://{}", listener.local_addr().expect("a bound address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (answer, origin, log) = (Arc::new(answer), base.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answer, origin, log) = (answer.clone(), origin.clone(), log.clone());
                // A broken connection only ends that request, never the server.
                tokio::spawn(async move { serve(stream, |path| answer(&origin, path), &log).await });
            }
        });
        Self { base, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The URL of `path` with `userinfo@` in front of the host.
    pub fn url_with_userinfo(&self, userinfo: &str, path: &str) -> String {
        self.url(path).replacen("http://", &format!("http://{userinfo}@"), 1)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("the request log").clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.path).collect()
    }
}

async fn serve(mut stream: tokio::net::TcpStream, answer: impl Fn(&str) -> Answer, log: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    let Some(seen) = read_request(&mut stream).await? else { return Ok(()) };
    let reply = answer(&seen.path);
    log.lock().expect("the request log").push(seen);
    match reply {
        Answer::Full { status, location, body } => {
            let location = location.map(|l| format!("Location: {l}\r\n")).unwrap_or_default();
            let head = format!("HTTP/1.1 {status}\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
        }
        Answer::Announced(length) => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Answer::Endless => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").await?;
            let block = vec![b'x'; 64 * 1024];
            // Ends when the client hangs up.
            loop {
                stream.write_all(&block).await?;
            }
        }
    }
    stream.shutdown().await
}

/// The path and `Authorization` of a GET (no body), `None` when the client hung up first.
async fn read_request(stream: &mut tokio::net::TcpStream) -> std::io::Result<Option<Seen>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let path = lines.next().and_then(|line| line.split(' ').nth(1)).unwrap_or("/").to_owned();
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim().to_owned());
    Ok(Some(Seen { path, authorization }))
}

/// A reqwest client builder for the tests, on the shuttle's TLS stack (reqwest has no default
/// cryptography in this workspace: `shuttle_adapters::tls`).
pub fn http_client() -> reqwest::ClientBuilder {
    shuttle_adapters::tls::reqwest_builder().expect("the TLS configuration")
}

/// `GET url`, as `reqwest::get` would.
pub async fn get(url: &str) -> reqwest::Result<reqwest::Response> {
    http_client().build()?.get(url).send().await
}
