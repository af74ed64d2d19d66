//! Folders (CloudBees Folders plugin): creating them and the jobs in them, builds with the
//! folder in their URLs and names, one job name in two folders, deleting a folder with what it
//! holds, and 404 where Jenkins finds nothing.

mod common;

use std::time::{Duration, Instant};

use common::{spawn, unique};
use reqwest::StatusCode;
use serde_json::{json, Value};

const FOLDER_CLASS: &str = "com.cloudbees.hudson.plugins.folder.Folder";
const JOB_CLASS: &str = "org.jenkinsci.plugins.workflow.job.WorkflowJob";
const IMAGE_BUILD: [(&str, &str); 2] =
    [("SOURCE_IMAGE", "registry.example.com/org/base:1"), ("DESTINATION_IMAGE", "registry.example.com/org/app:1")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_holds_jobs_and_folders_and_the_root_lists_only_the_folder() {
    let jenkins = spawn().await;
    let team = unique("team");
    jenkins.create_folder(&team).await;
    let (status, folder) = jenkins.json(&format!("job/{team}/api/json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(folder["_class"], FOLDER_CLASS);
    assert_eq!((&folder["name"], &folder["fullName"], &folder["description"]), (&json!(team), &json!(team), &json!("a team")));
    assert_eq!(folder["url"], jenkins.url(&format!("job/{team}/")));
    assert_eq!(folder["jobs"], json!([]));
    assert_eq!(
        folder["primaryView"],
        json!({"_class": "hudson.model.AllView", "name": "All", "url": jenkins.url(&format!("job/{team}/"))})
    );

    jenkins.create_job(&format!("{team}/app"), false).await;
    jenkins.create_folder(&format!("{team}/sub")).await;
    let deep = format!("{team}/sub/app");
    jenkins.create_job(&deep, false).await;

    let (_, folder) = jenkins.json(&format!("job/{team}/api/json")).await;
    assert_eq!(
        folder["jobs"],
        json!([
            {"_class": JOB_CLASS, "name": "app", "url": jenkins.url(&format!("job/{team}/job/app/")), "color": "notbuilt"},
            {"_class": FOLDER_CLASS, "name": "sub", "url": jenkins.url(&format!("job/{team}/job/sub/"))},
        ])
    );
    let (_, root) = jenkins.json("api/json").await;
    assert_eq!(
        root["jobs"],
        json!([{"_class": FOLDER_CLASS, "name": team, "url": jenkins.url(&format!("job/{team}/"))}]),
        "top-level only"
    );

    let (status, job) = jenkins.json(&format!("job/{team}/job/sub/job/app/api/json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&job["_class"], &job["name"], &job["displayName"]), (&json!(JOB_CLASS), &json!("app"), &json!("app")));
    assert_eq!(job["fullName"], deep.as_str());
    assert_eq!(job["fullDisplayName"], format!("{team} » sub » app"));
    assert_eq!(job["url"], jenkins.url(&format!("job/{team}/job/sub/job/app/")));
    let config = jenkins.get(&format!("job/{team}/job/sub/job/app/config.xml")).send().await.expect("send").text().await.expect("text");
    assert_eq!(config, common::job_config_xml(false));
    let config = jenkins.get(&format!("job/{team}/config.xml")).send().await.expect("send").text().await.expect("text");
    assert_eq!(config, common::folder_config_xml("a team"));

    // A folder's config.xml stays a folder's (AbstractItem.updateByXml).
    let renamed = jenkins.post(&format!("job/{team}/config.xml")).body(common::folder_config_xml("team A")).send().await.expect("send");
    assert_eq!(renamed.status(), StatusCode::OK);
    assert_eq!(jenkins.json(&format!("job/{team}/api/json")).await.1["description"], "team A");
    let as_job = jenkins.post(&format!("job/{team}/config.xml")).body(common::job_config_xml(false)).send().await.expect("send");
    assert_eq!(as_job.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(as_job.text().await.expect("text").contains(&format!("Expecting class {FOLDER_CLASS} but got class {JOB_CLASS} instead")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_in_a_folder_has_the_folder_in_its_urls_and_names() {
    let jenkins = spawn().await;
    let team = unique("team");
    jenkins.create_folder(&team).await;
    let app = format!("{team}/app");
    jenkins.create_job(&app, false).await;
    let job_url = jenkins.url(&format!("job/{team}/job/app/"));

    let id = jenkins.trigger(&app, &IMAGE_BUILD).await;
    let (status, waiting) = jenkins.json(&format!("queue/item/{id}/api/json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&waiting["task"]["name"], &waiting["task"]["url"]), (&json!("app"), &json!(job_url)));
    assert_eq!(jenkins.wait_started(id).await, 1);
    let (_, left) = jenkins.json(&format!("queue/item/{id}/api/json")).await;
    assert_eq!(left["executable"]["url"], format!("{job_url}1/"));

    let build = jenkins.wait_finished(&app, 1).await;
    assert_eq!(build["result"], "SUCCESS");
    assert_eq!(build["url"], format!("{job_url}1/"));
    assert_eq!(build["fullDisplayName"], format!("{team} » app #1"));
    let log = jenkins.console(&app, 1).await;
    assert!(log.contains(&format!("Running on Jenkins in /var/jenkins_home/workspace/{team}/app\n")), "{log}");
    let (_, job) = jenkins.json(&format!("job/{team}/job/app/api/json")).await;
    assert_eq!(job["lastBuild"]["url"], format!("{job_url}1/"));
    assert_eq!(jenkins.json(&format!("job/{team}/job/app/lastSuccessfulBuild/api/json")).await.1["number"], 1);
    let progressive = jenkins.get(&format!("job/{team}/job/app/1/logText/progressiveText?start=0")).send().await.expect("send");
    assert_eq!(progressive.status(), StatusCode::OK);
    assert!(progressive.headers()["x-text-size"].to_str().expect("size").parse::<usize>().expect("number") > 0);
    assert_eq!(progressive.text().await.expect("text"), log);

    // Stopped through the folder's URL.
    let sources = common::serve_archive(common::tar_gz(&[("Dockerfile", "FROM alpine:3.20\nRUN sleep 30\n")])).await;
    let id = jenkins.trigger(&app, &[("SOURCES_URL", sources.as_str()), ("DESTINATION_IMAGE", "r.example.com/app:2")]).await;
    let number = jenkins.wait_started(id).await;
    jenkins.wait_log(&app, number, "RUN sleep 30").await;
    let stopped = jenkins.post(&format!("job/{team}/job/app/{number}/stop")).send().await.expect("send");
    assert_eq!(stopped.status(), StatusCode::FOUND);
    assert_eq!(stopped.headers()["location"], format!("{job_url}{number}/").as_str());
    assert_eq!(jenkins.wait_finished(&app, number).await["result"], "ABORTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_name_lives_in_two_folders_and_at_the_root() {
    let jenkins = spawn().await;
    let (first, second) = (unique("team-a"), unique("team-b"));
    for folder in [&first, &second] {
        jenkins.create_folder(folder).await;
        jenkins.create_job(&format!("{folder}/app"), false).await;
    }
    jenkins.create_job("app", false).await;
    for (job, uuid) in [(format!("{first}/app"), "u-1"), (format!("{second}/app"), "u-2"), ("app".to_owned(), "u-3")] {
        let id = jenkins.trigger(&job, &[("BUILD_UUID", uuid), IMAGE_BUILD[0], IMAGE_BUILD[1]]).await;
        assert_eq!(jenkins.wait_started(id).await, 1, "{job} counts its own builds");
        let build = jenkins.build(&job, 1).await;
        assert_eq!(build["actions"][0]["parameters"][0]["value"], uuid, "{job}");
    }
    assert_eq!(jenkins.json(&format!("job/{second}/job/app/api/json")).await.1["fullName"], format!("{second}/app"));

    // Names are unique within a folder, ignoring case, as Jenkins' item maps.
    let again = jenkins
        .post(&format!("job/{first}/createItem?name=APP"))
        .header("Content-Type", "application/xml")
        .body(common::job_config_xml(false))
        .send()
        .await
        .expect("send");
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.text().await.expect("text").contains("A job already exists with the name ‘APP’"));
    let (status, found) = jenkins.json(&format!("job/{}/job/App/api/json", first.to_uppercase())).await;
    assert_eq!((status, &found["name"], &found["fullName"]), (StatusCode::OK, &json!("app"), &json!(format!("{first}/app"))));

    // Deleting one leaves the others; Jenkins redirects to the folder that held it.
    let deleted = jenkins.post(&format!("job/{first}/job/app/doDelete")).send().await.expect("send");
    assert_eq!(deleted.status(), StatusCode::FOUND);
    assert_eq!(deleted.headers()["location"], jenkins.url(&format!("job/{first}/")).as_str());
    assert_eq!(jenkins.json(&format!("job/{first}/job/app/api/json")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(jenkins.json(&format!("job/{second}/job/app/api/json")).await.0, StatusCode::OK);
    assert_eq!(jenkins.json("job/app/1/api/json").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_folder_deletes_what_it_holds() {
    let jenkins = spawn().await;
    let team = unique("team");
    jenkins.create_folder(&team).await;
    let app = format!("{team}/app");
    jenkins.create_job(&app, false).await;
    jenkins.create_folder(&format!("{team}/sub")).await;
    jenkins.create_job(&format!("{team}/sub/app"), false).await;
    let sources = common::serve_archive(common::tar_gz(&[("Dockerfile", "FROM alpine:3.20\nRUN sleep 30\n")])).await;
    let long = |uuid: &'static str| [("BUILD_UUID", uuid), ("SOURCES_URL", sources.as_str()), ("DESTINATION_IMAGE", "r.example.com/app:1")];
    let id = jenkins.trigger(&app, &long("first")).await;
    let number = jenkins.wait_started(id).await;
    jenkins.wait_log(&app, number, "RUN sleep 30").await;
    let blocked = jenkins.trigger(&app, &long("second")).await;

    let started = Instant::now();
    let deleted = jenkins.post(&format!("job/{team}/doDelete")).send().await.expect("send");
    assert_eq!(deleted.status(), StatusCode::FOUND);
    assert_eq!(deleted.headers()["location"], jenkins.stand_in.base_url());
    assert!(started.elapsed() < Duration::from_secs(10), "the running build was not interrupted");
    for gone in [
        format!("job/{team}"),
        format!("job/{team}/job/app"),
        format!("job/{team}/job/app/{number}"),
        format!("job/{team}/job/sub/job/app"),
    ] {
        assert_eq!(jenkins.json(&format!("{gone}/api/json")).await.0, StatusCode::NOT_FOUND, "{gone}");
    }
    let (_, item) = jenkins.json(&format!("queue/item/{blocked}/api/json")).await;
    assert_eq!((&item["_class"], &item["cancelled"]), (&json!("hudson.model.Queue$LeftItem"), &json!(true)), "{item}");
    assert_eq!(jenkins.json("api/json").await.1["jobs"], json!([]));

    // A new folder of the same name starts empty, its new job from build 1.
    jenkins.create_folder(&team).await;
    assert_eq!(jenkins.json(&format!("job/{team}/api/json")).await.1["jobs"], json!([]));
    jenkins.create_job(&app, false).await;
    assert_eq!(jenkins.json(&format!("job/{team}/job/app/api/json")).await.1["nextBuildNumber"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_folders_and_paths_through_jobs_are_not_found() {
    let jenkins = spawn().await;
    let team = unique("team");
    jenkins.create_folder(&team).await;
    jenkins.create_job(&format!("{team}/app"), false).await;
    jenkins.create_job("solo", false).await;
    jenkins.create_job("app", false).await;
    for missing in [
        "job/nope/api/json".to_owned(),
        "job/nope/job/app/api/json".to_owned(),
        format!("job/{team}/job/nope/api/json"),
        format!("job/{team}/job/solo/api/json"),
        "job/solo/job/app/api/json".to_owned(),
        format!("job/{team}/lastBuild/api/json"),
        format!("job/{team}/job"),
    ] {
        let response = jenkins.get(&missing).send().await.expect("send");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
    }
    for missing in
        ["job/nope/createItem?name=x".to_owned(), format!("job/{team}/build"), format!("job/{team}/job/app/job/x/createItem?name=y")]
    {
        let response = jenkins.post(&missing).header("Content-Type", "application/xml").body(common::job_config_xml(false)).send().await;
        assert_eq!(response.expect("send").status(), StatusCode::NOT_FOUND, "POST {missing}");
    }
    for post_only in ["createItem?name=x", "doDelete"] {
        let response = jenkins.get(&format!("job/{team}/{post_only}")).send().await.expect("send");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "GET {post_only}");
    }
    let (_, folder) = jenkins.json(&format!("job/{team}/api/json")).await;
    assert_eq!(folder["jobs"].as_array().map(Vec::len), Some(1), "nothing was created: {folder}");
    assert_eq!(jenkins.json("api/json").await.1["jobs"].as_array().map(Vec::len), Some(3));
    let unreadable = jenkins
        .post(&format!("job/{team}/createItem?name=broken"))
        .header("Content-Type", "application/xml")
        .body("<matrix-project/>")
        .send()
        .await
        .expect("send");
    assert_eq!(unreadable.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let value: Value = jenkins.json(&format!("job/{team}/api/json")).await.1;
    assert_eq!(value["jobs"].as_array().map(Vec::len), Some(1));
}
