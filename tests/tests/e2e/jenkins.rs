//! The Jenkins client against the Jenkins stand-in (`infra/jenkins-standin`), with the real job
//! template and source-preparation script. Archive sources are served from a presigned S3 link
//! of the local AWS emulator, the way a build receives them.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use jenkins_standin::{StandIn, StandInConfig};
use shuttle_adapters::jenkins::{job_config, parse_folder, JenkinsClient, JenkinsCredentials, JenkinsSettings, JOB_MARKER};
use shuttle_adapters::S3SourceStore;
use shuttle_core::config::Secret;
use shuttle_core::jenkins::{parameters, JenkinsError, JenkinsResult, QueueItem, SinkClosed};
use shuttle_core::ports::SourceStore;
use shuttle_core::ports::{Jenkins, LogSink};
use shuttle_tests::{archive, jenkins_folder, registry, Stack, JENKINS_FOLDER};
use tokio::net::TcpListener;
use uuid::Uuid;

/// A stand-in with the shuttle's folder made by its administrator.
async fn standin(config: StandInConfig) -> StandIn {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jenkins = jenkins_standin::start(config, listener).await.unwrap();
    jenkins_folder::create_folder(&jenkins, JENKINS_FOLDER).await.unwrap();
    jenkins
}

fn fast() -> StandInConfig {
    StandInConfig {
        queue_delay: Duration::from_millis(100),
        abort_delay: Duration::from_millis(200),
        step_time: Duration::from_millis(10),
        docker_hub_mirror: Some(registry()),
        ..StandInConfig::default()
    }
}

fn client(jenkins: &StandIn, token: &str, timeout: Duration) -> JenkinsClient {
    client_as(jenkins, &jenkins.config().user, token, timeout)
}

fn client_as(jenkins: &StandIn, user: &str, token: &str, timeout: Duration) -> JenkinsClient {
    JenkinsClient::new(JenkinsSettings {
        url: jenkins.base_url().parse().unwrap(),
        folder: parse_folder(JENKINS_FOLDER).unwrap(),
        credentials: JenkinsCredentials::Given { user: user.to_owned(), token: Secret::from(token) },
        timeout,
        log_timeout: Duration::from_secs(10),
    })
    .unwrap()
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn image_build(build_uuid: &str) -> Vec<(String, String)> {
    params(&[
        (parameters::BUILD_UUID, build_uuid),
        (parameters::SOURCE_IMAGE, &format!("{}/base/busybox:1", registry())),
        (parameters::DESTINATION_IMAGE, &format!("{}/org/{}:1.1", registry(), Uuid::new_v4().simple())),
        (parameters::REGISTRY_PASSWORD, "canary-registry-password"),
    ])
}

/// An archive build: a tar.gz with `dockerfile` uploaded to S3, passed as a presigned link.
async fn archive_build(stack: &Stack, build_uuid: &str, dockerfile: &str) -> Vec<(String, String)> {
    let bytes = archive(dockerfile);
    let sources = S3SourceStore::new(stack.s3.clone(), &stack.resources.s3_bucket);
    let source_id = Uuid::new_v4();
    sources.put_source(source_id, Bytes::from(bytes)).await.unwrap();
    let link = sources.presign_source(source_id, Duration::from_secs(600)).await.unwrap();
    params(&[
        (parameters::BUILD_UUID, build_uuid),
        (parameters::SOURCES_URL, &link),
        (parameters::DESTINATION_IMAGE, &format!("{}/org/{}:1.2", registry(), Uuid::new_v4().simple())),
        (parameters::BUILD_ARGS, r#"{"NPM_TOKEN":"canary-arg-value"}"#),
    ])
}

async fn wait_started(jenkins: &dyn Jenkins, queue_id: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match jenkins.queue_item(queue_id).await.unwrap() {
            QueueItem::Started { number } => return number,
            QueueItem::Waiting { .. } => {}
            other => panic!("queue item {queue_id} did not start: {other:?}"),
        }
        assert!(Instant::now() < deadline, "queue item {queue_id} still waiting");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_result(jenkins: &dyn Jenkins, job: &str, number: u64) -> JenkinsResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(result) = jenkins.build_status(job, number).await.unwrap().result {
            return result;
        }
        assert!(Instant::now() < deadline, "build {job} #{number} never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Default)]
struct Collect(Vec<u8>);

#[async_trait]
impl LogSink for Collect {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkClosed> {
        self.0.extend_from_slice(&chunk);
        Ok(())
    }
}

/// Tails the log by following `X-Text-Size` until Jenkins says there is no more.
async fn tail_log(jenkins: &dyn Jenkins, job: &str, number: u64) -> (Vec<u8>, usize) {
    let (mut sink, mut cursor, mut reads) = (Collect::default(), 0, 0);
    loop {
        let window = jenkins.read_log(job, number, cursor, &mut sink).await.unwrap();
        assert_eq!(window.start, cursor);
        cursor = window.next_start;
        reads += 1;
        // Jenkins counts the console notes it strips from plain text in `X-Text-Size`.
        assert!(sink.0.len() as u64 <= cursor, "the cursor counts at least what was received");
        if !window.more_data {
            return (sink.0, reads);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn console_text(jenkins: &StandIn, job: &str, number: u64) -> String {
    let config = jenkins.config();
    shuttle_tests::http_client()
        .build()
        .unwrap()
        .get(format!("{}job/{JENKINS_FOLDER}/job/{job}/{number}/consoleText", jenkins.base_url()))
        .basic_auth(&config.user, Some(&config.api_token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_job_is_created_once_from_the_template_and_deleted() {
    let jenkins = standin(fast()).await;
    let client = client(&jenkins, &jenkins.config().api_token, Duration::from_secs(5));
    client.ensure_job("myapp-1").await.unwrap();
    client.ensure_job("myapp-1").await.unwrap();
    let job_url = format!("{}job/{JENKINS_FOLDER}/job/myapp-1/api/json", jenkins.base_url());
    let http = shuttle_tests::http_client().build().unwrap();
    let config = jenkins.config();
    let get = || http.get(&job_url).basic_auth(&config.user, Some(&config.api_token)).send();
    assert_eq!(get().await.unwrap().status().as_u16(), 200);
    client.delete_job("myapp-1").await.unwrap();
    assert_eq!(get().await.unwrap().status().as_u16(), 404);
    client.delete_job("myapp-1").await.expect("a job already gone is fine");
}

#[tokio::test]
async fn an_image_build_runs_and_its_log_streams_exactly_once() {
    let jenkins = standin(fast()).await;
    let client = client(&jenkins, &jenkins.config().api_token, Duration::from_secs(5));
    client.ensure_job("app-a").await.unwrap();
    let build_uuid = Uuid::new_v4().to_string();
    let queue_id = client.trigger("app-a", &image_build(&build_uuid)).await.unwrap();
    let number = wait_started(&client, queue_id).await;
    assert_eq!(number, 1);
    let (log, reads) = tail_log(&client, "app-a", number).await;
    let log = String::from_utf8(log).unwrap();
    assert_eq!(log, console_text(&jenkins, "app-a", number).await, "the concatenated windows are the whole log");
    assert!(reads > 1, "the log was read while it grew");
    assert!(log.trim_end().ends_with("Finished: SUCCESS"), "{log}");
    assert!(!log.contains("canary"), "no password parameter in the log");
    assert_eq!(wait_result(&client, "app-a", number).await, JenkinsResult::Success);
}

#[tokio::test]
async fn a_forgotten_queue_item_is_found_again_by_build_uuid() {
    let jenkins = standin(StandInConfig { forget_left_items_after: Duration::from_millis(200), ..fast() }).await;
    let client = client(&jenkins, &jenkins.config().api_token, Duration::from_secs(5));
    client.ensure_job("app-b").await.unwrap();
    let build_uuid = Uuid::new_v4().to_string();
    let queue_id = client.trigger("app-b", &image_build(&build_uuid)).await.unwrap();
    let number = wait_started(&client, queue_id).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(client.queue_item(queue_id).await.unwrap(), QueueItem::Forgotten);
    assert_eq!(client.find_build("app-b", &build_uuid).await.unwrap(), Some(number));
    assert_eq!(client.find_build("app-b", &Uuid::new_v4().to_string()).await.unwrap(), None);
}

#[tokio::test]
async fn the_crumb_is_fetched_when_jenkins_asks_for_one() {
    let jenkins = standin(StandInConfig { require_crumb: true, ..fast() }).await;
    let client = client(&jenkins, &jenkins.config().api_token, Duration::from_secs(5));
    client.ensure_job("app-c").await.unwrap();
    let queue_id = client.trigger("app-c", &image_build(&Uuid::new_v4().to_string())).await.unwrap();
    wait_started(&client, queue_id).await;
}

#[tokio::test]
async fn an_archive_without_from_fails_and_a_stopped_build_is_aborted() {
    let stack = Stack::new().await;
    let jenkins = standin(fast()).await;
    let client = client(&jenkins, &jenkins.config().api_token, Duration::from_secs(5));
    client.ensure_job("app-d").await.unwrap();

    let broken = archive_build(&stack, &Uuid::new_v4().to_string(), "RUN echo no base image\n").await;
    let number = wait_started(&client, client.trigger("app-d", &broken).await.unwrap()).await;
    assert_eq!(wait_result(&client, "app-d", number).await, JenkinsResult::Failure);
    let log = console_text(&jenkins, "app-d", number).await;
    assert!(log.contains("Dockerfile has no FROM instruction"), "{log}");
    assert!(!log.contains("X-Amz-Signature"), "the signed link is not logged: {log}");

    let long = archive_build(&stack, &Uuid::new_v4().to_string(), "FROM busybox:1\nARG NPM_TOKEN\nRUN sleep 30\n").await;
    let number = wait_started(&client, client.trigger("app-d", &long).await.unwrap()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client.build_status("app-d", number).await.unwrap().result, None, "still running");
    client.stop_build("app-d", number).await.unwrap();
    assert_eq!(wait_result(&client, "app-d", number).await, JenkinsResult::Aborted);
    let log = console_text(&jenkins, "app-d", number).await;
    assert!(log.trim_end().ends_with("Finished: ABORTED") && !log.contains("canary-arg-value"), "{log}");
}

#[tokio::test]
async fn a_waiting_item_is_cancelled_and_a_started_one_needs_no_cancel() {
    let stack = Stack::new().await;
    let jenkins = standin(fast()).await;
    let client = client(&jenkins, &jenkins.config().api_token, Duration::from_secs(5));
    client.ensure_job("app-e").await.unwrap();
    let running = archive_build(&stack, &Uuid::new_v4().to_string(), "FROM busybox:1\nRUN sleep 30\n").await;
    let first = client.trigger("app-e", &running).await.unwrap();
    let number = wait_started(&client, first).await;
    let second = client.trigger("app-e", &image_build(&Uuid::new_v4().to_string())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(client.queue_item(second).await.unwrap(), QueueItem::Waiting { .. }), "concurrent builds are disabled");

    client.cancel_queue_item(second).await.unwrap();
    assert_eq!(client.queue_item(second).await.unwrap(), QueueItem::Cancelled);
    client.cancel_queue_item(first).await.expect("an item that already started has nothing to cancel");
    client.stop_build("app-e", number).await.unwrap();
    assert_eq!(wait_result(&client, "app-e", number).await, JenkinsResult::Aborted);
}

#[tokio::test]
async fn server_errors_and_stalls_are_transient_and_show_no_credentials() {
    let jenkins = standin(fast()).await;
    let token = jenkins.config().api_token.clone();
    let client = client(&jenkins, &token, Duration::from_millis(500));
    client.ensure_job("app-f").await.unwrap();
    let http = shuttle_tests::http_client().build().unwrap();
    let fault = |body: &'static str| http.post(format!("{}__standin/faults", jenkins.base_url())).body(body).send();

    fault(r#"{"status": 500, "count": 1}"#).await.unwrap();
    let error = client.build_status("app-f", 1).await.unwrap_err();
    assert!(matches!(error, JenkinsError::Unavailable(_)) && error.is_transient(), "{error}");

    fault(r#"{"stall_ms": 2000, "count": 1}"#).await.unwrap();
    let error = client.ensure_job("app-f").await.unwrap_err();
    assert!(matches!(error, JenkinsError::Unavailable(ref m) if m.contains("timed out")), "{error}");

    fault(r#"{"reset": true, "count": 1}"#).await.unwrap();
    assert!(client.ensure_job("app-f").await.unwrap_err().is_transient());
    client.ensure_job("app-f").await.expect("answers again once the faults are spent");

    let wrong = self::client(&jenkins, "not-the-token", Duration::from_secs(2));
    let error = wrong.ensure_job("app-f").await.unwrap_err();
    assert!(matches!(error, JenkinsError::Rejected(_)), "{error}");
    for message in [error.to_string(), format!("{error:?}")] {
        assert!(!message.contains(&token) && !message.contains("not-the-token"), "{message}");
    }
}

#[tokio::test]
async fn a_build_waiting_in_the_queue_is_found_by_build_uuid_until_it_starts() {
    let stack = Stack::new().await;
    let jenkins = standin(fast()).await;
    let client = client(&jenkins, &jenkins.config().api_token, Duration::from_secs(5));
    client.ensure_job("app-g").await.unwrap();
    let first_uuid = Uuid::new_v4().to_string();
    let running = archive_build(&stack, &first_uuid, "FROM busybox:1\nRUN sleep 30\n").await;
    let first = wait_started(&client, client.trigger("app-g", &running).await.unwrap()).await;

    let build_uuid = Uuid::new_v4().to_string();
    let queue_id = client.trigger("app-g", &image_build(&build_uuid)).await.unwrap();
    assert_eq!(client.find_queued("app-g", &build_uuid).await.unwrap(), Some(queue_id), "in its quiet period");
    // Concurrent builds are disabled: once its quiet period is over, it waits for #1.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.queue_item(queue_id).await.unwrap() {
            QueueItem::Waiting { why: Some(why) } if why.contains("already in progress") => break,
            QueueItem::Waiting { .. } => {}
            other => panic!("queue item {queue_id} left the queue while #{first} runs: {other:?}"),
        }
        assert!(Instant::now() < deadline, "queue item {queue_id} never blocked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(client.find_queued("app-g", &build_uuid).await.unwrap(), Some(queue_id), "blocked by #{first}");
    assert_eq!(client.find_queued("app-g", "other-uuid").await.unwrap(), None);
    assert_eq!(client.find_queued("other-job", &build_uuid).await.unwrap(), None);
    assert_eq!(client.find_queued("app-g", &first_uuid).await.unwrap(), None, "a started build is no longer queued");
    assert_eq!(client.find_build("app-g", &build_uuid).await.unwrap(), None);

    client.stop_build("app-g", first).await.unwrap();
    let number = wait_started(&client, queue_id).await;
    assert_eq!(number, first + 1);
    assert_eq!(client.find_queued("app-g", &build_uuid).await.unwrap(), None);
    assert_eq!(client.find_build("app-g", &build_uuid).await.unwrap(), Some(number));
    assert_eq!(wait_result(&client, "app-g", first).await, JenkinsResult::Aborted);
    assert_eq!(wait_result(&client, "app-g", number).await, JenkinsResult::Success);
}

/// Issue 20: the shuttle's Jenkins user has job rights in its folder only, and even there
/// triggers and deletes only the jobs it made (their description starts with its marker).
#[tokio::test]
async fn only_jobs_the_shuttle_made_in_its_folder_are_used_or_deleted_and_it_can_reach_no_other() {
    let jenkins = standin(jenkins_folder::least_privilege(fast(), JENKINS_FOLDER)).await;
    let (admin, admin_token) = (jenkins.config().user.clone(), jenkins.config().api_token.clone());
    let http = shuttle_tests::http_client().build().unwrap();
    let as_user = |method: reqwest::Method, path: String, user: &str, token: &str| {
        http.request(method, format!("{}{path}", jenkins.base_url()))
            .basic_auth(user, Some(token))
            .header("Content-Type", "application/xml")
    };
    // The administrator's jobs: one at the root, one in the folder without the marker.
    let foreign = job_config().replace(JOB_MARKER, "");
    for (parent, name) in [("", "deploy-prod"), (format!("job/{JENKINS_FOLDER}/").as_str(), "foreign")] {
        let created = as_user(reqwest::Method::POST, format!("{parent}createItem?name={name}"), &admin, &admin_token)
            .body(foreign.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 200, "{name}");
    }
    let status_of = |path: String| {
        let request = as_user(reqwest::Method::GET, path, &admin, &admin_token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let shuttle = client_as(&jenkins, jenkins_folder::SHUTTLE_USER, jenkins_folder::SHUTTLE_TOKEN, Duration::from_secs(5));

    // In the folder, a job it did not make is neither used nor deleted.
    assert!(matches!(shuttle.ensure_job("foreign").await, Err(JenkinsError::NotOurs(_))));
    assert!(matches!(shuttle.delete_job("foreign").await, Err(JenkinsError::NotOurs(_))));
    assert_eq!(status_of(format!("job/{JENKINS_FOLDER}/job/foreign/api/json")).await, 200, "left alone");
    assert_eq!(status_of(format!("job/{JENKINS_FOLDER}/job/foreign/1/api/json")).await, 404, "never built");

    // A job of the same name outside the folder is not the app's: the app's own is made in the folder.
    shuttle.ensure_job("deploy-prod").await.unwrap();
    let queue_id = shuttle.trigger("deploy-prod", &image_build(&Uuid::new_v4().to_string())).await.unwrap();
    wait_started(&shuttle, queue_id).await;
    shuttle.delete_job("deploy-prod").await.unwrap();
    assert_eq!(status_of(format!("job/{JENKINS_FOLDER}/job/deploy-prod/api/json")).await, 404, "its own job deleted");
    assert_eq!(status_of("job/deploy-prod/api/json".to_owned()).await, 200, "the root job untouched");
    assert_eq!(status_of("job/deploy-prod/1/api/json".to_owned()).await, 404, "and never built");

    // Nor could it: outside its folder its user sees no job (Jenkins answers 404 for an item the
    // user may not read) and may create none.
    let user = (jenkins_folder::SHUTTLE_USER, jenkins_folder::SHUTTLE_TOKEN);
    for path in ["job/deploy-prod/build", "job/deploy-prod/doDelete"] {
        let answer = as_user(reqwest::Method::POST, path.to_owned(), user.0, user.1).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{path}");
    }
    let answer = as_user(reqwest::Method::POST, "createItem?name=x".to_owned(), user.0, user.1).body(foreign.clone()).send().await.unwrap();
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.unwrap().contains("is missing the Job/Create permission"));
}

/// Issue 20: the shuttle's Jenkins credentials are read from Secrets Manager at run time
/// (`JENKINS_SECRET_ID`), never from the environment; a token rotated there is used by a running
/// client, without a restart or a deploy.
#[tokio::test]
async fn a_jenkins_token_rotated_in_secrets_manager_is_used_without_a_restart() {
    let stack = Stack::new().await;
    let jenkins = standin(jenkins_folder::least_privilege(fast(), JENKINS_FOLDER)).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&stack.sdk);
    let name = format!("jenkins-{}", Uuid::new_v4().simple());
    let value = |token: &str| serde_json::json!({"user": jenkins_folder::SHUTTLE_USER, "token": token}).to_string();
    secrets.create_secret().name(&name).secret_string(value("a-token-jenkins-revoked")).send().await.unwrap();
    let client = JenkinsClient::new(JenkinsSettings {
        url: jenkins.base_url().parse().unwrap(),
        folder: parse_folder(JENKINS_FOLDER).unwrap(),
        credentials: JenkinsCredentials::Managed(shuttle_adapters::wiring::managed_secret(&stack.sdk, &name)),
        timeout: Duration::from_secs(5),
        log_timeout: Duration::from_secs(5),
    })
    .unwrap();

    let refused = client.ensure_job("app").await.expect_err("the old token");
    assert!(matches!(refused, JenkinsError::Rejected(_)), "{refused}");
    assert!(!refused.to_string().contains("a-token-jenkins-revoked"), "{refused}");

    // The rotation: the new token in Secrets Manager, the same client.
    secrets.put_secret_value().secret_id(&name).secret_string(value(jenkins_folder::SHUTTLE_TOKEN)).send().await.unwrap();
    client.ensure_job("app").await.expect("the rotated token, read again once Jenkins refused the old one");
    assert!(client.find_build("app", "none").await.unwrap().is_none(), "and used from the cache after");
}
