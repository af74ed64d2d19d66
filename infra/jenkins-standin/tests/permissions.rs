//! Folder-scoped permissions (matrix-auth's project matrix with folder grants): a user allowed
//! in its folder and refused, as Jenkins refuses, elsewhere; items a user may not see are 404.

mod common;

use common::{spawn_with, Harness};
use jenkins_standin::{Account, Authorization};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

const IMAGE_BUILD: [(&str, &str); 2] =
    [("SOURCE_IMAGE", "registry.example.com/org/base:1"), ("DESTINATION_IMAGE", "registry.example.com/org/app:1")];

/// Everything inside `team-a`; may look into `team-b`; nothing in `team-c` nor at the root.
fn alice() -> Account {
    Account::new("alice", "a11ce0000000000000000000000000000a", "alice-password")
}

/// Signed in, no grant at all.
fn bob() -> Account {
    Account::new("bob", "b0b00000000000000000000000000000b0", "bob-password")
}

/// May only discover `team-a`.
fn carol() -> Account {
    Account::new("carol", "ca7010000000000000000000000000ca70", "carol-password")
}

/// May read and build in `team-a`, nothing more.
fn dave() -> Account {
    Account::new("dave", "da7e0000000000000000000000000000da", "dave-password")
}

const MATRIX: &str = "admin:Overall/Administer;
    alice:Overall/Read; alice@team-a:Job/Read,Job/Create,Job/Configure,Job/Build,Job/Cancel,Job/Delete; alice@team-b:Job/Read;
    carol:Overall/Read; carol@team-a:Job/Discover;
    dave:Overall/Read; dave@team-a:Job/Read,Job/Build";

/// A stand-in with the matrix, and, made by the admin: the folders `team-a`, `team-b`, `team-c`,
/// the jobs `team-a/admins-app`, `team-b/app`, `team-c/app` and `root-app`. Queue items wait 3 s
/// before they start, so that tests see them in the queue.
async fn teams() -> Harness {
    let jenkins = spawn_with(|config| {
        config.queue_delay = std::time::Duration::from_secs(3);
        config.users = vec![alice(), bob(), carol(), dave()];
        config.authorization = Some(MATRIX.parse::<Authorization>().expect("a valid matrix"));
    })
    .await;
    for folder in ["team-a", "team-b", "team-c"] {
        jenkins.create_folder(folder).await;
    }
    for job in ["team-a/admins-app", "team-b/app", "team-c/app", "root-app"] {
        jenkins.create_job(job, false).await;
    }
    jenkins
}

/// Asserts Jenkins' refusal for a missing permission: 403, the message, the diagnosis headers.
async fn assert_missing(response: Response, user: &str, title: &str, id: &str) {
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{}", response.url());
    let headers = response.headers().clone();
    assert_eq!(headers["x-you-are-authenticated-as"], user);
    assert_eq!(headers["x-required-permission"], id);
    let implied: Vec<&str> = headers.get_all("x-permission-implied-by").iter().map(|v| v.to_str().expect("ascii")).collect();
    assert_eq!(implied.last(), Some(&"hudson.model.Hudson.Administer"), "{implied:?}");
    let body = response.text().await.expect("text");
    assert!(body.contains(&format!("{user} is missing the {title} permission")), "{body}");
}

async fn status_and_json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, serde_json::from_str(&response.text().await.expect("text")).unwrap_or(Value::Null))
}

fn queue_id(response: &Response) -> u64 {
    let location = response.headers()["location"].to_str().expect("location");
    location.trim_end_matches('/').rsplit('/').next().and_then(|id| id.parse().ok()).expect(location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_scoped_user_manages_the_jobs_of_its_folder() {
    let jenkins = teams().await;
    let alice = alice();
    let created = jenkins.create_as(&alice, "team-a/app", common::job_config_xml(false)).send().await.expect("send");
    assert_eq!(created.status(), StatusCode::OK);
    let configured =
        jenkins.post_as(&alice, "job/team-a/job/app/config.xml").body(common::job_config_xml(true)).send().await.expect("send");
    assert_eq!(configured.status(), StatusCode::OK);
    let config = jenkins.get_as(&alice, "job/team-a/job/app/config.xml").send().await.expect("send");
    assert_eq!(config.status(), StatusCode::OK);
    assert_eq!(config.text().await.expect("text"), common::job_config_xml(true));

    // A build that runs until stopped, its log and its queue item.
    let sources = common::serve_archive(common::tar_gz(&[("Dockerfile", "FROM alpine:3.20\nRUN sleep 30\n")])).await;
    let triggered =
        jenkins.trigger_as(&alice, "team-a/app", &[("SOURCES_URL", sources.as_str()), ("DESTINATION_IMAGE", "r.example.com/app:1")]).await;
    assert_eq!(triggered.status(), StatusCode::CREATED);
    let id = queue_id(&triggered);
    let (status, item) = status_and_json(jenkins.get_as(&alice, &format!("queue/item/{id}/api/json")).send().await.expect("send")).await;
    assert_eq!((status, &item["task"]["url"]), (StatusCode::OK, &json!(jenkins.url("job/team-a/job/app/"))));
    let (_, queue) = status_and_json(jenkins.get_as(&alice, "queue/api/json").send().await.expect("send")).await;
    assert_eq!(queue["items"][0]["id"], id, "{queue}");
    let number = jenkins.wait_started(id).await;
    jenkins.wait_log("team-a/app", number, "RUN sleep 30").await;
    let (status, build) =
        status_and_json(jenkins.get_as(&alice, &format!("job/team-a/job/app/{number}/api/json")).send().await.expect("send")).await;
    assert_eq!((status, &build["actions"][1]["causes"][0]["userId"]), (StatusCode::OK, &json!("alice")));
    let log = jenkins.get_as(&alice, &format!("job/team-a/job/app/{number}/logText/progressiveText?start=0")).send().await.expect("send");
    assert_eq!(log.status(), StatusCode::OK);
    assert!(log.text().await.expect("text").starts_with("Started by user alice\n"));

    // A second one, cancelled in its quiet period.
    let second = jenkins.post_as(&alice, "job/team-a/job/app/buildWithParameters?BUILD_UUID=second").send().await.expect("send");
    let cancelled = jenkins.post_as(&alice, &format!("queue/cancelItem?id={}", queue_id(&second))).send().await.expect("send");
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
    let stopped = jenkins.post_as(&alice, &format!("job/team-a/job/app/{number}/stop")).send().await.expect("send");
    assert_eq!(stopped.status(), StatusCode::FOUND);
    assert_eq!(jenkins.wait_finished("team-a/app", number).await["result"], "ABORTED");

    // Job/Create holds in the folders inside too.
    let sub = jenkins.create_as(&alice, "team-a/sub", common::folder_config_xml("alice's")).send().await.expect("send");
    assert_eq!(sub.status(), StatusCode::OK);
    let deep = jenkins.create_as(&alice, "team-a/sub/app", common::job_config_xml(false)).send().await.expect("send");
    assert_eq!(deep.status(), StatusCode::OK);

    let deleted = jenkins.post_as(&alice, "job/team-a/job/app/doDelete").send().await.expect("send");
    assert_eq!(deleted.status(), StatusCode::FOUND);
    assert_eq!(deleted.headers()["location"], jenkins.url("job/team-a/").as_str());
    assert_eq!(jenkins.json("job/team-a/job/app/api/json").await.0, StatusCode::NOT_FOUND);

    // The root lists what alice may read: her folder and the one she may look into.
    let (_, root) = status_and_json(jenkins.get_as(&alice, "api/json").send().await.expect("send")).await;
    let names: Vec<&str> = root["jobs"].as_array().expect("jobs").iter().map(|j| j["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["team-a", "team-b"]);
    let (_, everything) = jenkins.json("api/json").await;
    assert_eq!(everything["jobs"].as_array().map(Vec::len), Some(4), "the admin sees all: {everything}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_scoped_user_is_refused_at_the_root_and_in_other_folders() {
    let jenkins = teams().await;
    let alice = alice();
    let at_root = jenkins.create_as(&alice, "alices-app", common::job_config_xml(false)).send().await.expect("send");
    assert_missing(at_root, "alice", "Job/Create", "hudson.model.Item.Create").await;
    let implied = jenkins.create_as(&alice, "alices-app", common::job_config_xml(false)).send().await.expect("send");
    let chain: Vec<String> =
        implied.headers().get_all("x-permission-implied-by").iter().map(|v| v.to_str().expect("ascii").to_owned()).collect();
    assert_eq!(
        chain,
        ["hudson.security.Permission.GenericCreate", "hudson.security.Permission.GenericWrite", "hudson.model.Hudson.Administer"]
    );

    // team-b: alice may look, not touch.
    let (status, app) = status_and_json(jenkins.get_as(&alice, "job/team-b/job/app/api/json").send().await.expect("send")).await;
    assert_eq!((status, &app["fullName"]), (StatusCode::OK, &json!("team-b/app")));
    let create = jenkins.create_as(&alice, "team-b/alices-app", common::job_config_xml(false)).send().await.expect("send");
    assert_missing(create, "alice", "Job/Create", "hudson.model.Item.Create").await;
    let build = jenkins.post_as(&alice, "job/team-b/job/app/buildWithParameters?BUILD_UUID=x").send().await.expect("send");
    assert_missing(build, "alice", "Job/Build", "hudson.model.Item.Build").await;
    let read_config = jenkins.get_as(&alice, "job/team-b/job/app/config.xml").send().await.expect("send");
    assert_missing(read_config, "alice", "Job/Configure", "hudson.model.Item.Configure").await;
    let configure = jenkins.post_as(&alice, "job/team-b/job/app/config.xml").body(common::job_config_xml(true)).send().await.expect("send");
    assert_missing(configure, "alice", "Job/Configure", "hudson.model.Item.Configure").await;
    let delete = jenkins.post_as(&alice, "job/team-b/job/app/doDelete").send().await.expect("send");
    assert_missing(delete, "alice", "Job/Delete", "hudson.model.Item.Delete").await;
    let delete_folder = jenkins.post_as(&alice, "job/team-b/doDelete").send().await.expect("send");
    assert_missing(delete_folder, "alice", "Job/Delete", "hudson.model.Item.Delete").await;
    assert_eq!(jenkins.json("job/team-b/job/app/api/json").await.0, StatusCode::OK, "still there");

    // team-c and root-app: alice cannot see them, so they are not found.
    for hidden in ["job/team-c/api/json", "job/team-c/job/app/api/json", "job/root-app/api/json", "job/root-app/config.xml"] {
        let response = jenkins.get_as(&alice, hidden).send().await.expect("send");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{hidden}");
    }
    for hidden in ["job/team-c/createItem?name=x", "job/team-c/job/app/build", "job/root-app/doDelete"] {
        let response = jenkins.post_as(&alice, hidden).header("Content-Type", "application/xml").send().await.expect("send");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "POST {hidden}");
    }

    // Nor are their queue items.
    let id = jenkins.trigger("team-c/app", &IMAGE_BUILD).await;
    let item = jenkins.get_as(&alice, &format!("queue/item/{id}/api/json")).send().await.expect("send");
    assert_eq!(item.status(), StatusCode::NOT_FOUND);
    let (_, queue) = status_and_json(jenkins.get_as(&alice, "queue/api/json").send().await.expect("send")).await;
    assert_eq!(queue["items"], json!([]), "{queue}");
    let cancel = jenkins.post_as(&alice, &format!("queue/cancelItem?id={id}")).send().await.expect("send");
    assert_eq!(cancel.status(), StatusCode::NOT_FOUND);
    assert!(cancel.text().await.expect("text").contains(&format!("Provided id ({id}) not found")));

    // Without Overall/Read, nothing at all.
    let bob = jenkins.get_as(&bob(), "api/json").send().await.expect("send");
    assert_missing(bob, "bob", "Overall/Read", "hudson.model.Hudson.Read").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_read_but_not_act_is_refused_each_action() {
    let jenkins = teams().await;
    let dave = dave();
    let sources = common::serve_archive(common::tar_gz(&[("Dockerfile", "FROM alpine:3.20\nRUN sleep 30\n")])).await;
    let triggered = jenkins
        .trigger_as(&dave, "team-a/admins-app", &[("SOURCES_URL", sources.as_str()), ("DESTINATION_IMAGE", "r.example.com/app:1")])
        .await;
    assert_eq!(triggered.status(), StatusCode::CREATED, "Job/Build is granted");
    let number = jenkins.wait_started(queue_id(&triggered)).await;
    jenkins.wait_log("team-a/admins-app", number, "RUN sleep 30").await;
    let stop = jenkins.post_as(&dave, &format!("job/team-a/job/admins-app/{number}/stop")).send().await.expect("send");
    assert_missing(stop, "dave", "Job/Cancel", "hudson.model.Item.Cancel").await;
    assert_eq!(jenkins.build("team-a/admins-app", number).await["building"], true, "not stopped");

    let waiting = jenkins.post_as(&dave, "job/team-a/job/admins-app/buildWithParameters?BUILD_UUID=next").send().await.expect("send");
    let id = queue_id(&waiting);
    let cancel = jenkins.post_as(&dave, &format!("queue/cancelItem?id={id}")).send().await.expect("send");
    assert_eq!(cancel.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(cancel.text().await.expect("text").contains(&format!("Item for id ({id}) is not cancellable")));
    let create = jenkins.create_as(&dave, "team-a/daves-app", common::job_config_xml(false)).send().await.expect("send");
    assert_missing(create, "dave", "Job/Create", "hudson.model.Item.Create").await;
    // Job/Build is checked before the POST-only answer.
    let get_build = jenkins.get_as(&dave, "job/team-b/job/app/build").send().await.expect("send");
    assert_eq!(get_build.status(), StatusCode::NOT_FOUND, "team-b is not dave's to see");
    let get_build = jenkins.get_as(&alice(), "job/team-b/job/app/buildWithParameters").send().await.expect("send");
    assert_missing(get_build, "alice", "Job/Build", "hudson.model.Item.Build").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_a_user_may_only_discover_is_forbidden_not_hidden() {
    let jenkins = teams().await;
    let carol = carol();
    let folder = jenkins.get_as(&carol, "job/team-a/api/json").send().await.expect("send");
    assert_eq!(folder.status(), StatusCode::FORBIDDEN);
    assert!(folder.headers().get("x-required-permission").is_none(), "a plain AccessDeniedException");
    assert!(folder.text().await.expect("text").contains("Please login to access job team-a"));
    assert_eq!(jenkins.get_as(&carol, "job/team-b/api/json").send().await.expect("send").status(), StatusCode::NOT_FOUND);
    let (_, root) = status_and_json(jenkins.get_as(&carol, "api/json").send().await.expect("send")).await;
    assert_eq!(root["jobs"], json!([]), "discoverable is not listed");

    let id = jenkins.trigger("team-a/admins-app", &IMAGE_BUILD).await;
    let item = jenkins.get_as(&carol, &format!("queue/item/{id}/api/json")).send().await.expect("send");
    assert_eq!(item.status(), StatusCode::FORBIDDEN);
    assert!(item.text().await.expect("text").contains("Please log in to access job/team-a/job/admins-app/"));
    let (_, queue) = status_and_json(jenkins.get_as(&carol, "queue/api/json").send().await.expect("send")).await;
    assert_eq!(queue["items"], json!([]));
    assert_eq!(
        queue["discoverableItems"],
        json!([{"_class": "hudson.model.Queue$StubItem", "task": {"_class": "hudson.model.Queue$StubTask", "name": "admins-app"}}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_matrix_every_user_may_do_everything() {
    let jenkins = spawn_with(|config| config.users = vec![alice()]).await;
    let alice = alice();
    for (item, config_xml) in
        [("team", common::folder_config_xml("x")), ("team/app", common::job_config_xml(false)), ("app", common::job_config_xml(false))]
    {
        let created = jenkins.create_as(&alice, item, config_xml).send().await.expect("send");
        assert_eq!(created.status(), StatusCode::OK, "{item}");
    }
    let wrong = jenkins.http.get(jenkins.url("api/json")).basic_auth("alice", Some(&jenkins.config.api_token)).send().await.expect("send");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "alice signs in with her own token");
    let by_password = jenkins.http.get(jenkins.url("api/json")).basic_auth("alice", Some("alice-password")).send().await.expect("send");
    assert_eq!(by_password.status(), StatusCode::OK);
}
