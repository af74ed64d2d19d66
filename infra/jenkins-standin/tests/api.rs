//! The REST surface of the stand-in against Jenkins' documented behaviour: auth and crumbs,
//! jobs, the queue, concurrency, cancel, delete, and the test-control faults.

mod common;

use std::time::{Duration, Instant};

use common::{spawn, spawn_with, unique};
use reqwest::StatusCode;
use serde_json::Value;

const IMAGE_BUILD: [(&str, &str); 2] =
    [("SOURCE_IMAGE", "registry.example.com/org/base:1"), ("DESTINATION_IMAGE", "registry.example.com/org/app:1")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_get_403_and_wrong_credentials_a_basic_challenge() {
    let jenkins = spawn().await;
    let anonymous = jenkins.http.get(jenkins.url("api/json")).send().await.expect("send");
    assert_eq!(anonymous.status(), StatusCode::FORBIDDEN);
    assert_eq!(anonymous.headers()["x-jenkins"], "2.479.3");
    assert_eq!(anonymous.headers()["x-you-are-authenticated-as"], "anonymous");
    assert!(anonymous.text().await.expect("text").contains("Authentication required"));

    let wrong = jenkins.http.get(jenkins.url("api/json")).basic_auth("admin", Some("not-the-token")).send().await.expect("send");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.headers()["www-authenticate"], "Basic realm=\"Jenkins\"");
    assert_eq!(wrong.headers()["x-jenkins"], "2.479.3");
    let other_user =
        jenkins.http.get(jenkins.url("api/json")).basic_auth("eve", Some(&jenkins.config.api_token)).send().await.expect("send");
    assert_eq!(other_user.status(), StatusCode::UNAUTHORIZED);

    let (status, root) = jenkins.json("api/json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(root["_class"], "hudson.model.Hudson");
    assert_eq!(root["url"], jenkins.stand_in.base_url());
    let unknown = jenkins.get("no/such/page").send().await.expect("send");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.headers()["x-jenkins"], "2.479.3");
}

fn session_cookie(response: &reqwest::Response) -> String {
    let cookie = response.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("pair").to_owned();
    assert!(cookie.starts_with("JSESSIONID."), "{cookie}");
    cookie
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_posts_need_the_crumb_of_their_session_and_token_posts_do_not() {
    let jenkins = spawn().await;
    let config = &jenkins.config;
    let issued =
        jenkins.http.get(jenkins.url("crumbIssuer/api/json")).basic_auth(&config.user, Some(&config.password)).send().await.expect("crumb");
    assert_eq!(issued.status(), StatusCode::OK);
    let cookie = session_cookie(&issued);
    let crumb: Value = issued.json().await.expect("json");
    assert_eq!(crumb["_class"], "hudson.security.csrf.DefaultCrumbIssuer");
    assert_eq!(crumb["crumbRequestField"], "Jenkins-Crumb");
    let crumb = crumb["crumb"].as_str().expect("crumb").to_owned();
    assert!(crumb.len() >= 32 && crumb.chars().all(|c| c.is_ascii_hexdigit()), "{crumb}");

    let create = |name: String| {
        jenkins
            .http
            .post(jenkins.url(&format!("createItem?name={name}")))
            .header("Content-Type", "application/xml")
            .body(common::job_config_xml(false))
    };
    // The session alone, without its crumb.
    let refused = create(unique("app")).header("Cookie", &cookie).send().await.expect("send");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.expect("text").contains("No valid crumb was included in the request"));
    // A crumb that is not the session's.
    let wrong = create(unique("app")).header("Cookie", &cookie).header("Jenkins-Crumb", "0123abcd").send().await.expect("send");
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    // The password without the session: a new session, whose crumb the client cannot know.
    let password_only =
        create(unique("app")).basic_auth(&config.user, Some(&config.password)).header("Jenkins-Crumb", &crumb).send().await.expect("send");
    assert_eq!(password_only.status(), StatusCode::FORBIDDEN);
    // The session with its crumb.
    let accepted = create(unique("app")).header("Cookie", &cookie).header("Jenkins-Crumb", &crumb).send().await.expect("send");
    assert_eq!(accepted.status(), StatusCode::OK);
    // The API token needs no crumb.
    let token = create(unique("app")).basic_auth(&config.user, Some(&config.api_token)).send().await.expect("send");
    assert_eq!(token.status(), StatusCode::OK);
    // Anonymous POSTs have no session, hence no valid crumb.
    let anonymous = create(unique("app")).send().await.expect("send");
    assert_eq!(anonymous.status(), StatusCode::FORBIDDEN);
    // A session authenticates GETs too.
    let by_session = jenkins.http.get(jenkins.url("api/json")).header("Cookie", &cookie).send().await.expect("send");
    assert_eq!(by_session.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_require_crumb_even_token_posts_need_a_crumb() {
    let jenkins = spawn_with(|config| config.require_crumb = true).await;
    let name = unique("app");
    let create =
        || jenkins.post(&format!("createItem?name={name}")).header("Content-Type", "application/xml").body(common::job_config_xml(false));
    let refused = create().send().await.expect("send");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.expect("text").contains("No valid crumb was included in the request"));

    let issued = jenkins.get("crumbIssuer/api/json").send().await.expect("crumb");
    let cookie = session_cookie(&issued);
    let crumb: Value = issued.json().await.expect("json");
    let accepted =
        create().header("Cookie", &cookie).header("Jenkins-Crumb", crumb["crumb"].as_str().expect("crumb")).send().await.expect("send");
    assert_eq!(accepted.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_item_answers_like_jenkins() {
    let jenkins = spawn().await;
    let name = unique("app");
    let (status, _) = jenkins.json(&format!("job/{name}/api/json")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    jenkins.create_job(&name, false).await;
    let again = jenkins
        .post(&format!("createItem?name={name}"))
        .header("Content-Type", "application/xml")
        .body(common::job_config_xml(false))
        .send()
        .await
        .expect("send");
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.text().await.expect("text").contains(&format!("A job already exists with the name ‘{name}’")));

    let no_type =
        jenkins.post(&format!("createItem?name={}", unique("app"))).body(common::job_config_xml(false)).send().await.expect("send");
    assert_eq!(no_type.status(), StatusCode::BAD_REQUEST);
    assert!(no_type.text().await.expect("text").contains("No Content-Type header set"));
    let text_xml = jenkins
        .post(&format!("createItem?name={}", unique("app")))
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(common::job_config_xml(false))
        .send()
        .await
        .expect("send");
    assert_eq!(text_xml.status(), StatusCode::OK);
    let unsafe_name = jenkins
        .post("createItem?name=a%2Fb")
        .header("Content-Type", "application/xml")
        .body(common::job_config_xml(false))
        .send()
        .await
        .expect("send");
    assert_eq!(unsafe_name.status(), StatusCode::BAD_REQUEST);
    let no_name = jenkins
        .post("createItem")
        .header("Content-Type", "application/xml")
        .body(common::job_config_xml(false))
        .send()
        .await
        .expect("send");
    assert_eq!(no_name.status(), StatusCode::BAD_REQUEST);
    let get = jenkins.get(&format!("createItem?name={}", unique("app"))).send().await.expect("send");
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);

    let (status, job) = jenkins.json(&format!("job/{name}/api/json?tree=whatever")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, job_default) = jenkins.json(&format!("job/{name}/api/json")).await;
    assert_eq!(job, serde_json::json!({"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob"}), "tree selects");
    let job = job_default;
    assert_eq!(job["_class"], "org.jenkinsci.plugins.workflow.job.WorkflowJob");
    assert_eq!(job["name"], name.as_str());
    assert_eq!(job["url"], jenkins.url(&format!("job/{name}/")));
    assert_eq!(job["nextBuildNumber"], 1);
    assert_eq!(job["inQueue"], false);
    assert_eq!(job["concurrentBuild"], false);
    assert!(job["lastBuild"].is_null() && job["queueItem"].is_null());
    assert_eq!(job["builds"], serde_json::json!([]));
    let config = jenkins.get(&format!("job/{name}/config.xml")).send().await.expect("send").text().await.expect("text");
    assert_eq!(config, common::job_config_xml(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_with_parameters_answers_201_with_the_queue_item_and_keeps_defined_parameters_only() {
    let jenkins = spawn_with(|config| config.queue_delay = Duration::from_secs(30)).await;
    let (first, second) = (unique("app"), unique("app"));
    jenkins.create_job(&first, false).await;
    jenkins.create_job(&second, false).await;

    let response = jenkins
        .post(&format!("job/{first}/buildWithParameters?BUILD_UUID=u-1&NOT_DEFINED=x&DESTINATION_IMAGE=r.example.com/a:1"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().expect("location").to_owned();
    assert!(response.bytes().await.expect("body").is_empty());
    let first_id: u64 =
        location.strip_prefix(&jenkins.url("queue/item/")).and_then(|rest| rest.strip_suffix('/')).expect(&location).parse().expect("id");
    // Queue ids go up globally, across jobs.
    let second_id = jenkins.trigger(&second, &[("BUILD_UUID", "u-2")]).await;
    let third_id = jenkins.trigger(&first, &[("BUILD_UUID", "u-3")]).await;
    assert!(first_id < second_id && second_id < third_id, "{first_id} {second_id} {third_id}");
    // An identical item still waiting is the same item, as in Jenkins.
    assert_eq!(jenkins.trigger(&first, &[("BUILD_UUID", "u-3")]).await, third_id);

    let (status, item) = jenkins.json(&format!("queue/item/{first_id}/api/json")).await;
    assert_eq!(status, StatusCode::OK);
    let parameters = &item["actions"][0]["parameters"];
    let names: Vec<&str> = parameters.as_array().expect("parameters").iter().map(|p| p["name"].as_str().expect("name")).collect();
    assert_eq!(
        names,
        [
            "BUILD_UUID",
            "SOURCES_URL",
            "SOURCE_IMAGE",
            "SOURCE_REGISTRY_USER",
            "SOURCE_REGISTRY_PASSWORD",
            "DESTINATION_IMAGE",
            "DESTINATION_LATEST",
            "REGISTRY_USER",
            "REGISTRY_PASSWORD",
            "BUILD_ARGS"
        ]
    );
    assert_eq!(parameters[0]["value"], "u-1");
    assert_eq!(parameters[6]["value"], "false", "the default");
    assert!(item["params"].as_str().expect("params").starts_with("\nBUILD_UUID=u-1\nSOURCES_URL=\n"));
    assert!(!item.to_string().contains("NOT_DEFINED"));

    let missing = jenkins.post("job/no-such-job/buildWithParameters").send().await.expect("send");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let (_, job) = jenkins.json(&format!("job/{first}/api/json")).await;
    assert_eq!(job["inQueue"], true);
    assert_eq!(job["queueItem"]["id"], first_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_item_waits_then_leaves_with_its_build_then_is_forgotten() {
    let jenkins = spawn_with(|config| config.queue_delay = Duration::from_millis(400)).await;
    let job = unique("app");
    jenkins.create_job(&job, false).await;
    let id = jenkins.trigger(&job, &IMAGE_BUILD).await;

    let (status, waiting) = jenkins.json(&format!("queue/item/{id}/api/json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(waiting["_class"], "hudson.model.Queue$WaitingItem");
    assert_eq!(waiting["id"], id);
    assert_eq!(waiting["blocked"], false);
    assert!(waiting["executable"].is_null());
    assert!(waiting["why"].as_str().expect("why").starts_with("In the quiet period. Expires in "), "{waiting}");
    assert_eq!(waiting["task"]["name"], job.as_str());
    assert_eq!(waiting["task"]["url"], jenkins.url(&format!("job/{job}/")));

    let number = jenkins.wait_started(id).await;
    assert_eq!(number, 1);
    let (_, left) = jenkins.json(&format!("queue/item/{id}/api/json")).await;
    assert_eq!(left["_class"], "hudson.model.Queue$LeftItem");
    assert_eq!(left["cancelled"], false);
    assert_eq!(left["executable"]["url"], jenkins.url(&format!("job/{job}/1/")));
    let build = jenkins.build(&job, 1).await;
    assert_eq!(build["queueId"], id);
    assert_eq!(build["_class"], "org.jenkinsci.plugins.workflow.job.WorkflowRun");

    // Forgotten a while after it left (1 s here, 5 minutes in Jenkins).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = jenkins.json(&format!("queue/item/{id}/api/json")).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(Instant::now() < deadline, "never forgotten");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = jenkins.json("queue/item/999999/api/json").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_concurrent_builds_runs_one_build_at_a_time() {
    let jenkins = spawn().await;
    let job = unique("app");
    jenkins.create_job(&job, false).await;
    let sources = common::serve_archive(common::tar_gz(&[("Dockerfile", "FROM alpine:3.20\nRUN sleep 1.5\nCMD [\"true\"]\n")])).await;
    let parameters =
        |uuid: &'static str| [("BUILD_UUID", uuid), ("SOURCES_URL", sources.as_str()), ("DESTINATION_IMAGE", "r.example.com/app:1")];
    let first = jenkins.trigger(&job, &parameters("first")).await;
    assert_eq!(jenkins.wait_started(first).await, 1);
    let second = jenkins.trigger(&job, &parameters("second")).await;

    // Blocked while #1 runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let blocked = loop {
        let (_, item) = jenkins.json(&format!("queue/item/{second}/api/json")).await;
        if item["_class"] == "hudson.model.Queue$BlockedItem" {
            break item;
        }
        assert!(item["executable"].is_null(), "started while #1 runs: {item}");
        assert!(Instant::now() < deadline, "never blocked: {item}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(blocked["blocked"], true);
    assert_eq!(blocked["why"], "Build #1 is already in progress (ETA: N/A)");
    assert!(jenkins.build(&job, 1).await["building"] == true);

    assert_eq!(jenkins.wait_started(second).await, 2);
    let first_build = jenkins.build(&job, 1).await;
    assert_eq!(first_build["building"], false, "#2 started before #1 ended");
    assert_eq!(first_build["result"], "SUCCESS");
    let second_build = jenkins.build(&job, 2).await;
    let first_end = first_build["timestamp"].as_u64().expect("ts") + first_build["duration"].as_u64().expect("duration");
    assert!(second_build["timestamp"].as_u64().expect("ts") >= first_end);
    assert_eq!(jenkins.wait_finished(&job, 2).await["result"], "SUCCESS");

    let (_, job_json) = jenkins.json(&format!("job/{job}/api/json")).await;
    assert_eq!(job_json["nextBuildNumber"], 3);
    let numbers: Vec<u64> = job_json["builds"].as_array().expect("builds").iter().map(|b| b["number"].as_u64().expect("n")).collect();
    assert_eq!(numbers, [2, 1], "newest first");
    assert_eq!(job_json["lastBuild"]["number"], 2);
    assert_eq!(job_json["lastBuild"]["url"], jenkins.url(&format!("job/{job}/2/")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_of_a_concurrent_job_run_side_by_side() {
    let jenkins = spawn().await;
    let job = unique("app");
    jenkins.create_job(&job, true).await;
    let sources = common::serve_archive(common::tar_gz(&[("Dockerfile", "FROM alpine:3.20\nRUN sleep 2\n")])).await;
    let parameters =
        |uuid: &'static str| [("BUILD_UUID", uuid), ("SOURCES_URL", sources.as_str()), ("DESTINATION_IMAGE", "r.example.com/app:1")];
    let first = jenkins.trigger(&job, &parameters("first")).await;
    let second = jenkins.trigger(&job, &parameters("second")).await;
    assert_eq!(jenkins.wait_started(first).await, 1);
    assert_eq!(jenkins.wait_started(second).await, 2);
    assert_eq!(jenkins.build(&job, 1).await["building"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_item_turns_a_waiting_item_into_a_cancelled_left_item() {
    let jenkins = spawn_with(|config| config.queue_delay = Duration::from_millis(600)).await;
    let job = unique("app");
    jenkins.create_job(&job, false).await;
    let id = jenkins.trigger(&job, &IMAGE_BUILD).await;
    let cancelled = jenkins.post(&format!("queue/cancelItem?id={id}")).send().await.expect("send");
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);

    let (_, item) = jenkins.json(&format!("queue/item/{id}/api/json")).await;
    assert_eq!(item["_class"], "hudson.model.Queue$LeftItem");
    assert_eq!(item["cancelled"], true);
    assert!(item["executable"].is_null());
    // Jenkins cannot cancel an item that left the queue, and does not know unknown ids.
    let again = jenkins.post(&format!("queue/cancelItem?id={id}")).send().await.expect("send");
    assert_eq!(again.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let unknown = jenkins.post("queue/cancelItem?id=987654").send().await.expect("send");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    tokio::time::sleep(Duration::from_millis(900)).await;
    let (_, job_json) = jenkins.json(&format!("job/{job}/api/json")).await;
    assert_eq!(job_json["builds"], serde_json::json!([]), "a cancelled item never runs");
    assert_eq!(job_json["nextBuildNumber"], 1);
    assert_eq!(job_json["inQueue"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_delete_aborts_the_running_build_and_removes_the_job() {
    let jenkins = spawn().await;
    let job = unique("app");
    jenkins.create_job(&job, false).await;
    let sources = common::serve_archive(common::tar_gz(&[("Dockerfile", "FROM alpine:3.20\nRUN sleep 30\n")])).await;
    let id = jenkins.trigger(&job, &[("SOURCES_URL", sources.as_str()), ("DESTINATION_IMAGE", "r.example.com/app:1")]).await;
    let number = jenkins.wait_started(id).await;
    jenkins.wait_log(&job, number, "RUN sleep 30").await;

    let started = Instant::now();
    let deleted = jenkins.post(&format!("job/{job}/doDelete")).send().await.expect("send");
    assert_eq!(deleted.status(), StatusCode::FOUND);
    assert_eq!(deleted.headers()["location"], jenkins.stand_in.base_url());
    assert!(started.elapsed() < Duration::from_secs(10), "the sleep was not interrupted");
    let (status, _) = jenkins.json(&format!("job/{job}/api/json")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = jenkins.json(&format!("job/{job}/{number}/api/json")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let again = jenkins.post(&format!("job/{job}/doDelete")).send().await.expect("send");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // A new job of the same name starts from build 1.
    jenkins.create_job(&job, false).await;
    let (_, job_json) = jenkins.json(&format!("job/{job}/api/json")).await;
    assert_eq!(job_json["nextBuildNumber"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_queries_find_a_build_by_its_parameter() {
    let jenkins = spawn().await;
    let job = unique("app");
    jenkins.create_job(&job, false).await;
    let uuid = unique("uuid");
    let id = jenkins
        .trigger(&job, &[("BUILD_UUID", uuid.as_str()), IMAGE_BUILD[0], IMAGE_BUILD[1], ("REGISTRY_PASSWORD", "pw-in-tree-query")])
        .await;
    let number = jenkins.wait_started(id).await;

    let (_, plain) = jenkins.json(&format!("job/{job}/api/json")).await;
    assert_eq!(
        plain["builds"][0],
        serde_json::json!({"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "number": number, "url": jenkins.url(&format!("job/{job}/{number}/"))})
    );
    let (status, tree) = jenkins.json(&format!("job/{job}/api/json?tree=builds[number,actions[parameters[name,value]]]")).await;
    assert_eq!(status, StatusCode::OK);
    let build = &tree["builds"][0];
    assert_eq!(build["number"], number);
    assert!(build.get("url").is_none());
    let parameters =
        build["actions"].as_array().expect("actions").iter().filter_map(|a| a["parameters"].as_array()).flatten().collect::<Vec<_>>();
    assert!(parameters.iter().any(|p| p["name"] == "BUILD_UUID" && p["value"] == uuid.as_str()), "{tree}");
    assert!(!tree.to_string().contains("pw-in-tree-query"));
    let (status, _) = jenkins.json(&format!("job/{job}/api/json?tree=builds[number")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_answer_errors_stall_and_close_the_next_requests() {
    let jenkins = spawn().await;
    let fault = |body: Value| jenkins.http.post(jenkins.url("__standin/faults")).json(&body).send();
    assert_eq!(fault(serde_json::json!({"status": 500, "count": 2})).await.expect("send").status(), StatusCode::NO_CONTENT);
    assert_eq!(jenkins.get("api/json").send().await.expect("send").status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(jenkins.get("api/json").send().await.expect("send").status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(jenkins.get("api/json").send().await.expect("send").status(), StatusCode::OK);

    fault(serde_json::json!({"stall_ms": 600})).await.expect("send");
    let started = Instant::now();
    assert_eq!(jenkins.get("api/json").send().await.expect("send").status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(600));
    let started = Instant::now();
    jenkins.get("api/json").send().await.expect("send");
    assert!(started.elapsed() < Duration::from_millis(600), "only one stalled");

    fault(serde_json::json!({"reset": true, "count": 1})).await.expect("send");
    assert!(jenkins.get("api/json").send().await.is_err(), "the connection is closed without an answer");
    assert_eq!(jenkins.get("api/json").send().await.expect("send").status(), StatusCode::OK);

    fault(serde_json::json!({"status": 503, "count": 5, "path_contains": "crumbIssuer"})).await.expect("send");
    assert_eq!(jenkins.get("api/json").send().await.expect("send").status(), StatusCode::OK);
    assert_eq!(jenkins.get("crumbIssuer/api/json").send().await.expect("send").status(), StatusCode::SERVICE_UNAVAILABLE);
    let cleared = jenkins.http.delete(jenkins.url("__standin/faults")).send().await.expect("send");
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert_eq!(jenkins.get("crumbIssuer/api/json").send().await.expect("send").status(), StatusCode::OK);

    assert_eq!(fault(serde_json::json!({"count": 2})).await.expect("send").status(), StatusCode::BAD_REQUEST);
    assert_eq!(fault(serde_json::json!({"status": 500, "colour": "red"})).await.expect("send").status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_log_shows_what_was_called_without_password_values() {
    let jenkins = spawn_with(|config| config.queue_delay = Duration::from_secs(30)).await;
    let job = unique("app");
    jenkins.create_job(&job, false).await;
    jenkins.post(&format!("job/{job}/buildWithParameters?BUILD_UUID=u-9&REGISTRY_PASSWORD=hunter2-in-query")).send().await.expect("send");
    let requests: Value = jenkins.http.get(jenkins.url("__standin/requests")).send().await.expect("send").json().await.expect("json");
    let requests = requests.as_array().expect("list");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0]["method"], "POST");
    assert_eq!(requests[0]["path"], "/createItem");
    assert_eq!(requests[0]["status"], 200);
    assert_eq!(requests[1]["path"], format!("/job/{job}/buildWithParameters"));
    assert_eq!(requests[1]["query"], "BUILD_UUID=u-9&REGISTRY_PASSWORD=****");
    assert_eq!(requests[1]["status"], 201);
    assert!(!Value::Array(requests.clone()).to_string().contains("hunter2"));
}
