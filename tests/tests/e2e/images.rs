//! Real images, end to end through the gateway: the Jenkins stand-in runs the pipeline of
//! `infra/jenkins/config.xml` with `docker` the shim over buildah, and every image lands in a real
//! registry (`SHUTTLE_TEST_REGISTRY`, or one of the test's own with credentials), checked through
//! the registry's API: tags, and files read out of the pushed layers.

use std::time::Duration;

use jenkins_standin::registry::Registry;
use serde_json::{json, Value};
use shuttle_tests::{
    archive, fresh_image, http_client, image, registry, registry_tags, spawn_app, spawn_app_with, Answer, AppOptions, TestApp, TestServer,
};
use uuid::Uuid;

const ENOUGH: Duration = Duration::from_secs(90);

async fn sources(dockerfile: &str) -> TestServer {
    TestServer::files(vec![("/src.tgz", Answer::ok(&archive(dockerfile)))]).await
}

async fn create(app: &TestApp, path: &str, body: Value) {
    let response = app.post(path, body.to_string()).await;
    assert_eq!(response.status(), 200, "create {path}: {}", response.text().await.unwrap_or_default());
}

/// A legacy build's log: `GET …/logs` answers `{"output": "<log>"}`.
async fn legacy_log(app: &TestApp, path: &str) -> String {
    let body: Value = serde_json::from_str(&app.logs(path).await).expect("a JSON log");
    body["output"].as_str().expect("an output").to_owned()
}

/// The file `path` of an image in a registry, read from its layers (the last layer that has it).
async fn file_in_image(registry: &str, repository: &str, tag: &str, path: &str) -> Option<String> {
    let http = http_client().build().expect("a client");
    let manifest: Value = http
        .get(format!("http://{registry}/v2/{repository}/manifests/{tag}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
        .send()
        .await
        .expect("the registry answers")
        .json()
        .await
        .expect("a JSON manifest");
    let layers = manifest["layers"].as_array().unwrap_or_else(|| panic!("no layers in {manifest}"));
    let mut found = None;
    for layer in layers {
        let digest = layer["digest"].as_str().expect("a layer digest");
        let blob = http
            .get(format!("http://{registry}/v2/{repository}/blobs/{digest}"))
            .send()
            .await
            .expect("a blob")
            .bytes()
            .await
            .expect("bytes");
        let file = std::env::temp_dir().join(format!("layer-{}.tar.gz", Uuid::new_v4()));
        std::fs::write(&file, &blob).expect("write the layer");
        for name in [path.trim_start_matches('/').to_owned(), format!("./{}", path.trim_start_matches('/'))] {
            let output = std::process::Command::new("tar").arg("-xzOf").arg(&file).arg(&name).output().expect("run tar");
            if output.status.success() {
                found = Some(String::from_utf8_lossy(&output.stdout).into_owned());
            }
        }
        let _ = std::fs::remove_file(&file);
    }
    found
}

#[tokio::test]
async fn build_arguments_are_the_setting_merged_with_the_request_in_the_run_step_and_the_image() {
    let settings = vec![("EXTRA_BUILD_ARGS", r#"{"SHARED":"from-setting","ONLY_SETTING":"setting-only"}"#.to_owned())];
    let app = spawn_app_with(AppOptions { settings, ..AppOptions::default() }).await;
    // The log masks build argument values (Jenkins masks password parameters); their upper case shows.
    let files = sources(
        "FROM busybox:1\n\
         RUN echo \"SHARED=$SHARED ONLY_SETTING=$ONLY_SETTING ONLY_REQUEST=$ONLY_REQUEST\" | tr a-z A-Z\n\
         RUN printf '%s\\n' \"SHARED=$SHARED\" \"ONLY_SETTING=$ONLY_SETTING\" \"ONLY_REQUEST=$ONLY_REQUEST\" > /build-args\n",
    )
    .await;
    let repository = format!("args/{}", Uuid::new_v4().simple());
    create(
        &app,
        "/args/1",
        json!({
            "source": {"url": files.url("/src.tgz")},
            "destination": {"url": image(&format!("{repository}:1"))},
            "arguments": {"SHARED": "from-request", "ONLY_REQUEST": "request-only"},
        }),
    )
    .await;
    let status = app.finished("/args/1", ENOUGH).await;
    let log = app.logs("/args/1").await;
    assert_eq!(status["status"], "succeeded", "{log}");
    assert!(log.contains("SHARED=FROM-REQUEST ONLY_SETTING=SETTING-ONLY ONLY_REQUEST=REQUEST-ONLY\n"), "{log}");
    assert!(!log.contains("simulated"), "{log}");
    assert_eq!(registry_tags(&registry(), &repository, None).await, ["1"]);
    let in_image = file_in_image(&registry(), &repository, "1", "build-args").await.expect("/build-args in the pushed image");
    assert_eq!(in_image, "SHARED=from-request\nONLY_SETTING=setting-only\nONLY_REQUEST=request-only\n");
}

#[tokio::test]
async fn a_legacy_build_lands_as_its_numbered_tag_and_latest_and_its_argument_names_are_sanitised() {
    for (prefix, settings) in [("1", vec![]), ("0", vec![("IMAGE_TAG_PREFIX", "0".to_owned())])] {
        let app = spawn_app_with(AppOptions { settings, ..AppOptions::default() }).await;
        let files = sources("FROM busybox:1\nRUN echo \"JLKSwe232=[$JLKSwe232]\" | tr a-z A-Z\n").await;
        let app_uuid = Uuid::new_v4();
        let repo = format!("legacy{}", Uuid::new_v4().simple());
        let body = json!({
            "app": "myapp", "space": "default", "app_uuid": app_uuid, "build_uuid": Uuid::new_v4(), "build_number": 12,
            "sources": files.url("/src.tgz"), "gm_registry_host": registry(), "gm_registry_repo": repo,
            "build_args": {"@#$JLKS][w]e[232": "kept-value"},
        });
        assert_eq!(app.post("/", body.to_string()).await.status(), 200);
        let path = format!("/myapp-{app_uuid}/12");
        assert_eq!(app.legacy_finished(&path, ENOUGH).await["status"], "succeeded", "{}", legacy_log(&app, &path).await);
        let log = legacy_log(&app, &path).await;
        assert!(log.contains("JLKSWE232=[KEPT-VALUE]\n"), "the sanitised name reached the RUN step: {log}");
        let tags = registry_tags(&registry(), &format!("{repo}/myapp-{app_uuid}"), None).await;
        assert_eq!(tags, [format!("{prefix}.12"), "latest".to_owned()], "IMAGE_TAG_PREFIX={prefix}");
    }
}

#[tokio::test]
async fn an_image_source_is_pulled_retagged_and_pushed() {
    let app = spawn_app().await;
    let repository = format!("copies/{}", Uuid::new_v4().simple());
    create(&app, "/copy/1", json!({"source": {"url": image("base/busybox:1")}, "destination": {"url": image(&format!("{repository}:2"))}}))
        .await;
    let status = app.finished("/copy/1", ENOUGH).await;
    let log = app.logs("/copy/1").await;
    assert_eq!(status["status"], "succeeded", "{log}");
    assert!(log.contains(&format!("docker pull {}/base/busybox:1\n", registry())), "{log}");
    assert!(log.contains("Writing manifest to image destination"), "real push output: {log}");
    assert_eq!(registry_tags(&registry(), &repository, None).await, ["2"]);
    let busybox = file_in_image(&registry(), &repository, "2", "bin/busybox").await.expect("the copy holds busybox");
    assert!(!busybox.is_empty());
}

#[tokio::test]
async fn a_registry_with_credentials_takes_the_right_ones_refuses_wrong_ones_and_never_shows_them() {
    const PASSWORD: &str = "push-pw-5e1f93ac";
    const WRONG: &str = "wrong-pw-77c2d0be";
    let private = Registry::start(Some(("pusher", PASSWORD))).expect("a registry with credentials");
    let app = spawn_app().await;
    let files = sources("FROM busybox:1\nRUN echo built\n").await;
    let destination = |password: &str, tag: &str| format!("docker://pusher:{password}@{}/team/app:{tag}", private.address());
    create(&app, "/private/1", json!({"source": {"url": files.url("/src.tgz")}, "destination": {"url": destination(PASSWORD, "1")}})).await;
    create(&app, "/private/2", json!({"source": {"url": files.url("/src.tgz")}, "destination": {"url": destination(WRONG, "2")}})).await;
    // The legacy form: gm_registry_auth logs in for the push.
    let app_uuid = Uuid::new_v4();
    let legacy = json!({
        "app": "legacy", "space": "default", "app_uuid": app_uuid, "build_uuid": Uuid::new_v4(), "build_number": 3,
        "sources": files.url("/src.tgz"), "gm_registry_host": private.address(), "gm_registry_repo": "team",
        "gm_registry_auth": {"username": "pusher", "password": PASSWORD},
    });
    assert_eq!(app.post("/", legacy.to_string()).await.status(), 200);

    let right = app.finished("/private/1", ENOUGH).await;
    assert_eq!(right["status"], "succeeded", "{}", app.logs("/private/1").await);
    let wrong = app.finished("/private/2", ENOUGH).await;
    assert_eq!(wrong["status"], "failed");
    let wrong_log = app.logs("/private/2").await;
    assert!(wrong_log.contains("invalid username/password"), "a clear line: {wrong_log}");
    let legacy_path = format!("/legacy-{app_uuid}/3");
    assert_eq!(app.legacy_finished(&legacy_path, ENOUGH).await["status"], "succeeded", "{}", legacy_log(&app, &legacy_path).await);
    let credentials = Some(("pusher", PASSWORD));
    assert_eq!(registry_tags(private.address(), "team/app", credentials).await, ["1"], "the wrong password pushed nothing");
    // The credentials of a docker:// source log in for the pull.
    let pulled = format!("docker://pusher:{PASSWORD}@{}/team/app:1", private.address());
    create(&app, "/private/3", json!({"source": {"url": pulled}, "destination": {"url": fresh_image()}})).await;
    assert_eq!(app.finished("/private/3", ENOUGH).await["status"], "succeeded", "{}", app.logs("/private/3").await);
    assert_eq!(registry_tags(private.address(), &format!("team/legacy-{app_uuid}"), credentials).await, ["1.3", "latest"]);

    let mut seen = vec![app.logs("/private/1").await, wrong_log, app.logs("/private/3").await, legacy_log(&app, &legacy_path).await];
    for path in ["/private/1", "/private/2", "/private/3", legacy_path.as_str()] {
        seen.push(app.get(&format!("{path}/status")).await.text().await.expect("a body"));
    }
    seen.push(format!("{:?}", app.stack.items().await));
    for text in &seen {
        assert!(!text.contains(PASSWORD) && !text.contains(WRONG), "a registry password shows: {text}");
    }
}

#[tokio::test]
async fn a_failing_run_step_fails_the_build_with_its_real_output() {
    let app = spawn_app().await;
    let files = sources("FROM busybox:1\nRUN echo checking the build && false\n").await;
    let repository = format!("failing/{}", Uuid::new_v4().simple());
    create(&app, "/fail/1", json!({"source": {"url": files.url("/src.tgz")}, "destination": {"url": image(&format!("{repository}:1"))}}))
        .await;
    assert_eq!(app.finished("/fail/1", ENOUGH).await["status"], "failed");
    let log = app.logs("/fail/1").await;
    for line in [
        "checking the build\n",
        "building at STEP \"RUN echo checking the build && false\": exit status 1",
        "ERROR: script returned exit code 1\n",
    ] {
        assert!(log.contains(line), "{line:?} missing from:\n{log}");
    }
    assert!(log.ends_with("Finished: FAILURE\n"), "{log}");
    assert!(registry_tags(&registry(), &repository, None).await.is_empty(), "nothing pushed");
}
