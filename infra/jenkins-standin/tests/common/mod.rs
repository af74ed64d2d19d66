//! The harness of the stand-in's tests: a stand-in per test on 127.0.0.1:0 with short delays,
//! a reqwest client, the job template of `infra/jenkins/README.md`, a folder's `config.xml`, and
//! a tiny HTTP server that serves source archives made with the `tar` command. Jobs are named by
//! their full name (`team-a/app` for `app` in the folder `team-a`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jenkins_standin::{Account, StandIn, StandInConfig};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const PASSWORD_PARAMETERS: [&str; 3] = ["SOURCE_REGISTRY_PASSWORD", "REGISTRY_PASSWORD", "BUILD_ARGS"];

/// The job of the README: the shuttle's parameters, concurrent builds disabled.
pub fn job_config_xml(concurrent: bool) -> String {
    let string = |name: &str, default: &str| {
        format!("<hudson.model.StringParameterDefinition><name>{name}</name><description/><defaultValue>{default}</defaultValue><trim>false</trim></hudson.model.StringParameterDefinition>")
    };
    let password = |name: &str| {
        format!("<hudson.model.PasswordParameterDefinition><name>{name}</name><description/><defaultValue></defaultValue></hudson.model.PasswordParameterDefinition>")
    };
    let parameters = [
        string("BUILD_UUID", ""),
        string("SOURCES_URL", ""),
        string("SOURCE_IMAGE", ""),
        string("SOURCE_REGISTRY_USER", ""),
        password("SOURCE_REGISTRY_PASSWORD"),
        string("DESTINATION_IMAGE", ""),
        string("DESTINATION_LATEST", "false"),
        string("REGISTRY_USER", ""),
        password("REGISTRY_PASSWORD"),
        password("BUILD_ARGS"),
    ]
    .concat();
    let serial = if concurrent { "" } else { "<org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty/>" };
    format!(
        "<?xml version='1.1' encoding='UTF-8'?>\n<flow-definition plugin=\"workflow-job\">\n  <description>an app</description>\n  <keepDependencies>false</keepDependencies>\n  <properties>{serial}<hudson.model.ParametersDefinitionProperty><parameterDefinitions>{parameters}</parameterDefinitions></hudson.model.ParametersDefinitionProperty></properties>\n  <definition class=\"org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition\"><script>node {{ }}</script><sandbox>true</sandbox></definition>\n  <triggers/>\n  <disabled>false</disabled>\n</flow-definition>\n"
    )
}

/// A folder's `config.xml` as Jenkins writes it (CloudBees Folders plugin).
pub fn folder_config_xml(description: &str) -> String {
    format!(
        "<?xml version='1.1' encoding='UTF-8'?>\n<com.cloudbees.hudson.plugins.folder.Folder plugin=\"cloudbees-folder@6.955.v81e2a_35c08d3\">\n  <description>{description}</description>\n  <properties/>\n  <folderViews class=\"com.cloudbees.hudson.plugins.folder.views.DefaultFolderViewHolder\">\n    <views>\n      <hudson.model.AllView>\n        <owner class=\"com.cloudbees.hudson.plugins.folder.Folder\" reference=\"../../../..\"/>\n        <name>All</name>\n        <filterExecutors>false</filterExecutors>\n        <filterQueue>false</filterQueue>\n        <properties class=\"hudson.model.View$PropertyList\"/>\n      </hudson.model.AllView>\n    </views>\n    <tabBar class=\"hudson.views.DefaultViewsTabBar\"/>\n  </folderViews>\n  <healthMetrics/>\n  <icon class=\"com.cloudbees.hudson.plugins.folder.icons.StockFolderIcon\"/>\n</com.cloudbees.hudson.plugins.folder.Folder>\n"
    )
}

/// `team-a/app` → `job/team-a/job/app`: the URL path of an item from its full name.
pub fn job_path(full_name: &str) -> String {
    full_name.split('/').map(|name| format!("job/{name}")).collect::<Vec<_>>().join("/")
}

/// Where `createItem` is for an item of this full name: `job/team-a/createItem?name=app`.
fn create_item_path(full_name: &str) -> String {
    match full_name.rsplit_once('/') {
        Some((folder, name)) => format!("{}/createItem?name={name}", job_path(folder)),
        None => format!("createItem?name={full_name}"),
    }
}

/// The script the builds run: the real one, unless `JENKINS_STANDIN_PREPARE_SCRIPT` says otherwise.
pub fn prepare_script() -> PathBuf {
    std::env::var_os("JENKINS_STANDIN_PREPARE_SCRIPT").map(PathBuf::from).unwrap_or_else(jenkins_standin::default_prepare_script)
}

pub fn test_config() -> StandInConfig {
    StandInConfig {
        queue_delay: Duration::from_millis(100),
        abort_delay: Duration::from_millis(400),
        forget_left_items_after: Duration::from_secs(1),
        step_time: Duration::from_millis(5),
        prepare_script: prepare_script(),
        // The API and the simulation are tested with simulated Docker; tests/real_builds.rs
        // builds for real.
        docker: jenkins_standin::DockerMode::Simulated,
        ..StandInConfig::default()
    }
}

pub struct Harness {
    pub stand_in: StandIn,
    pub http: reqwest::Client,
    pub config: StandInConfig,
}

pub async fn spawn() -> Harness {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(change: impl FnOnce(&mut StandInConfig)) -> Harness {
    let mut config = test_config();
    change(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stand_in = jenkins_standin::start(config.clone(), listener).await.expect("start");
    // reqwest has no default cryptography in this workspace (`rustls-no-provider`).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    Harness { stand_in, http, config }
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.stand_in.base_url(), path.trim_start_matches('/'))
    }

    /// With HTTP Basic and the API token.
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path)).basic_auth(&self.config.user, Some(&self.config.api_token))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(self.url(path)).basic_auth(&self.config.user, Some(&self.config.api_token))
    }

    /// As another user, with its API token.
    pub fn get_as(&self, account: &Account, path: &str) -> RequestBuilder {
        self.http.get(self.url(path)).basic_auth(&account.name, Some(&account.api_token))
    }

    pub fn post_as(&self, account: &Account, path: &str) -> RequestBuilder {
        self.http.post(self.url(path)).basic_auth(&account.name, Some(&account.api_token))
    }

    /// `createItem` of a job or a folder by its full name, as `account`; the answer.
    pub fn create_as(&self, account: &Account, full_name: &str, config_xml: String) -> RequestBuilder {
        self.post_as(account, &create_item_path(full_name)).header("Content-Type", "application/xml").body(config_xml)
    }

    pub async fn create_folder(&self, full_name: &str) {
        let response = self
            .post(&create_item_path(full_name))
            .header("Content-Type", "application/xml")
            .body(folder_config_xml("a team"))
            .send()
            .await
            .expect("createItem");
        assert_eq!(response.status(), StatusCode::OK, "createItem of the folder {full_name}");
    }

    pub async fn json(&self, path: &str) -> (StatusCode, Value) {
        let response = self.get(path).send().await.expect("send");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn create_job(&self, name: &str, concurrent: bool) {
        self.create_job_from(name, job_config_xml(concurrent)).await;
    }

    pub async fn create_job_from(&self, name: &str, config_xml: String) {
        let response =
            self.post(&create_item_path(name)).header("Content-Type", "application/xml").body(config_xml).send().await.expect("createItem");
        assert_eq!(response.status(), StatusCode::OK, "createItem {name}");
    }

    /// Triggers a build with form parameters (as the shuttle does); returns the queue id.
    pub async fn trigger(&self, job: &str, parameters: &[(&str, &str)]) -> u64 {
        let form = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(parameters).finish();
        let response = self
            .post(&format!("{}/buildWithParameters", job_path(job)))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("trigger");
        assert_eq!(response.status(), StatusCode::CREATED, "buildWithParameters {job}");
        let location = response.headers()["location"].to_str().expect("location").to_owned();
        let id = location.trim_end_matches('/').rsplit('/').next().expect("id").parse().expect("numeric id");
        assert_eq!(location, self.url(&format!("queue/item/{id}/")));
        id
    }

    /// `buildWithParameters` with form parameters, as `account`; the answer as it comes.
    pub async fn trigger_as(&self, account: &Account, job: &str, parameters: &[(&str, &str)]) -> reqwest::Response {
        let form = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(parameters).finish();
        self.post_as(account, &format!("{}/buildWithParameters", job_path(job)))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("trigger")
    }

    /// Waits until the queue item started a build; returns its number.
    pub async fn wait_started(&self, queue_id: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, item) = self.json(&format!("queue/item/{queue_id}/api/json")).await;
            assert_eq!(status, StatusCode::OK, "queue item {queue_id}: {item}");
            if let Some(number) = item["executable"]["number"].as_u64() {
                return number;
            }
            assert!(Instant::now() < deadline, "queue item {queue_id} never started: {item}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn build(&self, job: &str, number: u64) -> Value {
        let (status, build) = self.json(&format!("{}/{number}/api/json", job_path(job))).await;
        assert_eq!(status, StatusCode::OK, "build {job} #{number}");
        build
    }

    /// Waits until the build is over; returns its JSON.
    pub async fn wait_finished(&self, job: &str, number: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let build = self.build(job, number).await;
            if build["building"] == false {
                return build;
            }
            assert!(Instant::now() < deadline, "build {job} #{number} never finished: {}", self.console(job, number).await);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn console(&self, job: &str, number: u64) -> String {
        self.get(&format!("{}/{number}/consoleText", job_path(job))).send().await.expect("consoleText").text().await.expect("text")
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, job: &str, number: u64, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.console(job, number).await;
            if log.contains(needle) {
                return;
            }
            assert!(Instant::now() < deadline, "{needle:?} never appeared in the log:\n{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// A `tar.gz` of one top-level folder holding these files, made with the `tar` command.
pub fn tar_gz(files: &[(&str, &str)]) -> Vec<u8> {
    let dir = std::env::temp_dir().join(unique("standin-test-sources"));
    let folder = dir.join("app-1.0");
    for (path, content) in files {
        let file = folder.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, content).expect("write");
    }
    let archive = dir.join("sources.tar.gz");
    let status = std::process::Command::new("tar").arg("-czf").arg(&archive).arg("-C").arg(&dir).arg("app-1.0").status().expect("tar");
    assert!(status.success());
    let bytes = std::fs::read(&archive).expect("archive");
    std::fs::remove_dir_all(&dir).expect("cleanup");
    bytes
}

/// Serves `bytes` at `/sources/<anything>?X-Amz-Signature=…` and 404 elsewhere; returns the
/// URL of the archive (with a signature in its query, as the shuttle's links have).
pub async fn serve_archive(bytes: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let target = head.split(' ').nth(1).unwrap_or("/");
                let (status, body) = if target.starts_with("/sources/") { ("200 OK", bytes) } else { ("404 Not Found", b"no".to_vec()) };
                let mut response = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
                response.extend_from_slice(&body);
                let _ = stream.write_all(&response).await;
            });
        }
    });
    format!("{base}/sources/app.tar.gz?X-Amz-Signature=sig-must-not-show")
}
