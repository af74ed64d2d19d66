//! Real builds: the pipeline of `infra/jenkins/config.xml` run step by step, `docker` the shim
//! over buildah, images pushed to a real registry (`docker-registry`) and read back through its
//! API. Needs buildah, docker-registry, busybox-static and htpasswd (`.ci/run` installs them).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{spawn_with, unique, Harness};
use jenkins_standin::registry::Registry;
use jenkins_standin::DockerMode;
use serde_json::Value;

/// The job the shuttle creates: the repository's config.xml with prepare-sources.sh in it.
fn shuttle_job_xml() -> String {
    let template = include_str!("../../jenkins/config.xml");
    let script = std::fs::read(common::prepare_script()).expect("prepare-sources.sh");
    template.replace("@@PREPARE_SOURCES_SH_BASE64@@", &base64::engine::general_purpose::STANDARD.encode(script))
}

/// The shared registry of these tests: base images seeded, read as the Docker Hub mirror.
fn base_registry(store: &std::path::Path) -> Registry {
    let registry = Registry::start(None).expect("registry");
    registry.seed_base_images(store).expect("seed");
    registry
}

fn store() -> PathBuf {
    jenkins_standin::config::default_buildah_root()
}

async fn real_stand_in(mirror: &Registry) -> Harness {
    let mirror = mirror.address().to_owned();
    spawn_with(|config| {
        config.docker = DockerMode::Buildah;
        config.docker_hub_mirror = Some(mirror);
        config.buildah_root = store();
    })
    .await
}

async fn tags(jenkins: &Harness, registry: &str, repository: &str, credentials: Option<(&str, &str)>) -> Vec<String> {
    let mut request = jenkins.http.get(format!("http://{registry}/v2/{repository}/tags/list"));
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("registry");
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert!(response.status().is_success(), "tags/list: {}", response.status());
    let body: Value = response.json().await.expect("json");
    let mut tags: Vec<String> = body["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect();
    tags.sort();
    tags
}

async fn run_build(jenkins: &Harness, parameters: &[(&str, &str)]) -> (String, u64, Value, String) {
    let job = unique("app");
    jenkins.create_job_from(&job, shuttle_job_xml()).await;
    let id = jenkins.trigger(&job, parameters).await;
    let number = jenkins.wait_started(id).await;
    let build = jenkins.wait_finished(&job, number).await;
    let console = jenkins.console(&job, number).await;
    (job, number, build, console)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_build_runs_the_pipeline_builds_with_its_arguments_and_pushes_both_tags() {
    let registry = base_registry(&store());
    let jenkins = real_stand_in(&registry).await;
    let dockerfile = "FROM busybox:1\nARG GREETING\nARG EMPTY\nRUN echo \"greeting=$GREETING empty=[$EMPTY]\" | tr a-z A-Z\nRUN echo \"$GREETING\" > /greeting\n";
    let sources = common::serve_archive(common::tar_gz(&[("Dockerfile", dockerfile)])).await;
    let destination = format!("{}/org/app:1.@BUILD_NUMBER@", registry.address());
    let (_, number, build, console) = run_build(
        &jenkins,
        &[
            ("BUILD_UUID", "uuid-real-1"),
            ("SOURCES_URL", sources.as_str()),
            ("DESTINATION_IMAGE", destination.as_str()),
            ("DESTINATION_LATEST", "true"),
            ("BUILD_ARGS", r#"{"GREETING":"hello-there","EMPTY":""}"#),
        ],
    )
    .await;
    assert_eq!(build["result"], "SUCCESS", "{console}");
    for line in [
        &format!("Build uuid-real-1: sources -> {destination}\n"),
        "Stage \"Pull\" skipped due to when conditional\n",
        ": FROM busybox:1\n",
        // The value reached the RUN step (the log masks it, but not its upper case).
        "GREETING=HELLO-THERE EMPTY=[]\n",
        &format!("docker push {}/org/app:1.{number}\n", registry.address()),
        &format!("docker push {}/org/app:latest\n", registry.address()),
    ] {
        assert!(console.contains(line), "{line:?} missing from:\n{console}");
    }
    assert!(!console.contains("hello-there"), "a build argument's value is masked:\n{console}");
    assert!(!console.contains("simulated"), "{console}");
    assert_eq!(tags(&jenkins, registry.address(), "org/app", None).await, [format!("1.{number}"), "latest".to_owned()]);
    // The clean-up removed both from the agent's store (the numbered name too).
    let kept = stored_images();
    for name in [format!("{}/org/app:1.{number}", registry.address()), format!("{}/org/app:latest", registry.address())] {
        assert!(!kept.contains(&name), "{name} left in the store: {kept:?}");
    }
}

/// The names of the images in the stand-in's store.
fn stored_images() -> Vec<String> {
    let root = store();
    let output = std::process::Command::new("buildah")
        .arg("--root")
        .arg(root.join("storage"))
        .arg("--runroot")
        .arg(root.join("run"))
        .args(["--storage-driver", "vfs", "images", "--format", "{{.Name}}:{{.Tag}}"])
        .output()
        .expect("buildah images");
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_step_fails_the_build_with_its_real_output() {
    let registry = base_registry(&store());
    let jenkins = real_stand_in(&registry).await;
    let sources = common::serve_archive(common::tar_gz(&[("Dockerfile", "FROM busybox:1\nRUN echo about to fail && exit 3\n")])).await;
    let destination = format!("{}/org/failing:1", registry.address());
    let (_, _, build, console) =
        run_build(&jenkins, &[("BUILD_UUID", "u"), ("SOURCES_URL", sources.as_str()), ("DESTINATION_IMAGE", destination.as_str())]).await;
    assert_eq!(build["result"], "FAILURE");
    for line in
        ["about to fail\n", "exit status 3", "Stage \"Push\" skipped due to earlier failure(s)\n", "ERROR: script returned exit code"]
    {
        assert!(console.contains(line), "{line:?} missing from:\n{console}");
    }
    assert!(console.ends_with("Finished: FAILURE\n"), "{console}");
    assert!(tags(&jenkins, registry.address(), "org/failing", None).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_source_is_pulled_retagged_and_pushed_with_credentials_and_wrong_ones_fail() {
    let base = base_registry(&store());
    let private = Registry::start(Some(("pusher", "push-secret-81f2"))).expect("registry with auth");
    let jenkins = real_stand_in(&base).await;
    let source = format!("{}/base/busybox:1", base.address());
    let destination = format!("{}/team/copy:3", private.address());
    let good = [
        ("BUILD_UUID", "u"),
        ("SOURCE_IMAGE", source.as_str()),
        ("DESTINATION_IMAGE", destination.as_str()),
        ("REGISTRY_USER", "pusher"),
        ("REGISTRY_PASSWORD", "push-secret-81f2"),
    ];
    let (_, _, build, console) = run_build(&jenkins, &good).await;
    assert_eq!(build["result"], "SUCCESS", "{console}");
    assert!(console.contains("Login Succeeded"), "{console}");
    assert!(console.contains(&format!("docker pull {source}\n")), "{console}");
    assert!(!console.contains("push-secret-81f2"), "{console}");
    assert_eq!(tags(&jenkins, private.address(), "team/copy", Some(("pusher", "push-secret-81f2"))).await, ["3"]);

    let mut wrong = good;
    wrong[4] = ("REGISTRY_PASSWORD", "not-the-secret-55");
    let wrong_destination = format!("{}/team/copy:4", private.address());
    wrong[2] = ("DESTINATION_IMAGE", wrong_destination.as_str());
    let (_, _, build, console) = run_build(&jenkins, &wrong).await;
    assert_eq!(build["result"], "FAILURE", "{console}");
    assert!(console.contains("invalid username/password"), "{console}");
    assert!(!console.contains("not-the-secret-55"), "{console}");
    assert_eq!(tags(&jenkins, private.address(), "team/copy", Some(("pusher", "push-secret-81f2"))).await, ["3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_stage_refuses_a_reserved_build_argument_before_any_step_runs() {
    let registry = base_registry(&store());
    let jenkins = real_stand_in(&registry).await;
    let sources = common::serve_archive(common::tar_gz(&[("Dockerfile", "FROM busybox:1\n")])).await;
    let destination = format!("{}/org/reserved:1", registry.address());
    let parameters =
        [("SOURCES_URL", sources.as_str()), ("DESTINATION_IMAGE", destination.as_str()), ("BUILD_ARGS", r#"{"PATH":"/evil"}"#)];
    let (_, _, build, console) = run_build(&jenkins, &parameters).await;
    assert_eq!(build["result"], "FAILURE", "{console}");
    for line in ["Stage \"Prepare\" skipped due to earlier failure(s)\n", "ERROR: build argument name 'PATH' is reserved\n"] {
        assert!(console.contains(line), "{line:?} missing from:\n{console}");
    }
    assert!(!console.contains("[prepare]"), "no step ran: {console}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_interrupts_a_real_run_step() {
    let registry = base_registry(&store());
    let jenkins = real_stand_in(&registry).await;
    let sources = common::serve_archive(common::tar_gz(&[("Dockerfile", "FROM busybox:1\nRUN sleep 30\n")])).await;
    let destination = format!("{}/org/slow:1", registry.address());
    let job = unique("app");
    jenkins.create_job_from(&job, shuttle_job_xml()).await;
    let id = jenkins.trigger(&job, &[("SOURCES_URL", sources.as_str()), ("DESTINATION_IMAGE", destination.as_str())]).await;
    let number = jenkins.wait_started(id).await;
    jenkins.wait_log(&job, number, "RUN sleep 30").await;
    let stopped = Instant::now();
    jenkins.post(&format!("job/{job}/{number}/stop")).send().await.expect("stop");
    let build = jenkins.wait_finished(&job, number).await;
    assert_eq!(build["result"], "ABORTED");
    assert!(stopped.elapsed() < Duration::from_secs(10), "the RUN step was not interrupted: {:?}", stopped.elapsed());
    assert!(tags(&jenkins, registry.address(), "org/slow", None).await.is_empty());
}
