//! The Jenkins REST API through reqwest.
//!
//! Auth is HTTP Basic with an API token, which needs no crumb; when a server asks for one
//! anyway (403 "No valid crumb"), the client fetches `crumbIssuer/api/json` once, keeps the
//! crumb with its session cookie, and retries. Every call has a timeout. Error messages never
//! carry credentials: the base URL holds none, and every message is redacted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use shuttle_core::config::{ConfigError, Env, ExposeSecret, Secret};
use shuttle_core::jenkins::{parameters, BuildStatus, JenkinsError, JenkinsResult, LogWindow, QueueItem};
use shuttle_core::ports::{Jenkins, LogSink};
use shuttle_core::redact::redact;
use shuttle_core::secrets::SecretSource;
use url::Url;

use crate::built::Built;
use crate::secrets::ManagedSecret;

/// The job template, with the source-preparation script it writes into the workspace.
const JOB_TEMPLATE: &str = include_str!("../../../infra/jenkins/config.xml");
const PREPARE_SOURCES_SH: &str = include_str!("../../../infra/jenkins/prepare-sources.sh");
const SCRIPT_PLACEHOLDER: &str = "@@PREPARE_SOURCES_SH_BASE64@@";

/// What stays unescaped in a job name used as one path segment.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// What the description of every job the shuttle creates starts with: a job of its folder
/// without it is someone else's, never triggered, changed or deleted.
pub const JOB_MARKER: &str = "[build-shuttle-managed]";

/// The `config.xml` every app's job is created from.
pub fn job_config() -> String {
    JOB_TEMPLATE.replace(SCRIPT_PLACEHOLDER, &base64::engine::general_purpose::STANDARD.encode(PREPARE_SOURCES_SH))
}

#[derive(Clone, Debug)]
pub struct JenkinsSettings {
    /// `JENKINS_URL`, without credentials.
    pub url: Url,
    /// `JENKINS_FOLDER`: the folder (`a` or `a/b`) the shuttle's jobs live in, made by the
    /// deployer; the shuttle's user needs job rights in it only.
    pub folder: Vec<String>,
    pub credentials: JenkinsCredentials,
    /// Limit of one JSON call.
    pub timeout: Duration,
    /// Limit of one `progressiveText` read.
    pub log_timeout: Duration,
}

impl JenkinsSettings {
    /// `JENKINS_URL` (required, without credentials), `JENKINS_FOLDER` (required), and
    /// `JENKINS_SECRET_ID` (read at run time) or else `JENKINS_USER` and `JENKINS_TOKEN`.
    pub fn from_env(env: &Env<'_>, secrets: impl FnOnce(&str) -> Arc<ManagedSecret>) -> Result<Self, ConfigError> {
        let url = env.http_url("JENKINS_URL", "https://jenkins.example.com")?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::Malformed {
                name: "JENKINS_URL",
                reason: "must not carry credentials: set JENKINS_USER and JENKINS_TOKEN".into(),
            });
        }
        let folder =
            parse_folder(&env.required("JENKINS_FOLDER")?).map_err(|reason| ConfigError::Malformed { name: "JENKINS_FOLDER", reason })?;
        let credentials = match env.optional("JENKINS_SECRET_ID") {
            Some(id) => JenkinsCredentials::Managed(secrets(&id)),
            None => JenkinsCredentials::Given {
                user: env.optional("JENKINS_USER").unwrap_or_default(),
                token: Secret::from(env.optional("JENKINS_TOKEN").unwrap_or_default()),
            },
        };
        Ok(Self { url, folder, credentials, timeout: Duration::from_secs(10), log_timeout: Duration::from_secs(30) })
    }
}

/// Who the shuttle signs in to Jenkins as.
#[derive(Clone)]
pub enum JenkinsCredentials {
    /// `JENKINS_USER` and `JENKINS_TOKEN` (`make run`, the tests, a Jenkins of one's own).
    Given { user: String, token: Secret },
    /// `JENKINS_SECRET_ID`: a Secrets Manager secret `{"user": "…", "token": "…"}`, read at run
    /// time and again after its TTL, or at once after Jenkins refused it (a rotation).
    Managed(Arc<ManagedSecret>),
}

impl std::fmt::Debug for JenkinsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Given { user, .. } => f.debug_struct("Given").field("user", user).field("token", &"****").finish(),
            Self::Managed(_) => f.write_str("Managed"),
        }
    }
}

impl JenkinsCredentials {
    /// The user and token to send now.
    async fn current(&self) -> Result<(String, Secret), JenkinsError> {
        match self {
            Self::Given { user, token } => Ok((user.clone(), token.clone())),
            Self::Managed(secret) => {
                let value = secret.current().await.map_err(|e| JenkinsError::Unavailable(e.to_string()))?;
                #[derive(serde::Deserialize)]
                struct Stored {
                    user: String,
                    token: String,
                }
                // Its text is never shown: it is the credential.
                let stored: Stored = serde_json::from_str(value.expose_secret()).map_err(|_| {
                    JenkinsError::Rejected("the JENKINS_SECRET_ID secret is not {\"user\": \"…\", \"token\": \"…\"}".to_owned())
                })?;
                Ok((stored.user, Secret::from(stored.token)))
            }
        }
    }

    /// Jenkins refused them: a managed secret is read again by the next call.
    async fn refused(&self) {
        if let Self::Managed(secret) = self {
            secret.expire().await;
        }
    }
}

/// A folder's full name, `a/b`, as its names: each a name Jenkins takes (`checkGoodName`).
pub fn parse_folder(full_name: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = full_name.trim().trim_matches('/').split('/').map(|name| name.trim().to_owned()).collect();
    for name in &names {
        if name.is_empty() || name == "." || name == ".." {
            return Err(format!("'{full_name}' is not a folder's full name (a or a/b)"));
        }
        if let Some(c) = name.chars().find(|c| c.is_control() || "?*\\%!@#$^&|<>[]:;".contains(*c)) {
            return Err(format!("'{full_name}': Jenkins refuses '{}' in a name", c.escape_debug()));
        }
    }
    Ok(names)
}

#[derive(Clone, Debug)]
struct Crumb {
    field: String,
    value: String,
    cookie: Option<String>,
}

/// The HTTP client for Jenkins: redirects are answers, not followed.
fn http_client() -> Result<reqwest::Client, String> {
    crate::tls::reqwest_builder()
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

pub struct JenkinsClient {
    http: Built<Result<reqwest::Client, String>>,
    settings: JenkinsSettings,
    crumb: Mutex<Option<Crumb>>,
}

impl JenkinsClient {
    /// A client with its HTTP client built.
    pub fn new(settings: JenkinsSettings) -> Result<Self, JenkinsError> {
        let client = Self::with_http(Built::from(http_client()), settings);
        client.http()?;
        Ok(client)
    }

    /// A client whose HTTP client is built when it first calls Jenkins (a function that
    /// rarely does).
    pub fn on_first_use(settings: JenkinsSettings) -> Self {
        Self::with_http(Built::on_first_use(http_client), settings)
    }

    fn with_http(http: Built<Result<reqwest::Client, String>>, settings: JenkinsSettings) -> Self {
        let mut url = settings.url.clone();
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Self { http, settings: JenkinsSettings { url, ..settings }, crumb: Mutex::new(None) }
    }

    fn http(&self) -> Result<&reqwest::Client, JenkinsError> {
        self.http.as_ref().map_err(|e| JenkinsError::Unexpected(e.clone()))
    }

    fn url(&self, path: &str) -> Url {
        self.settings.url.join(path.trim_start_matches('/')).expect("paths built here are valid")
    }

    /// The folder's path, `job/a/job/b/`.
    fn folder_path(&self) -> String {
        self.settings.folder.iter().map(|name| format!("job/{}/", percent_encoding::utf8_percent_encode(name, PATH_SEGMENT))).collect()
    }

    /// The path of the app's job in the folder.
    fn job_path(&self, job: &str) -> String {
        format!("{}job/{}/", self.folder_path(), percent_encoding::utf8_percent_encode(job, PATH_SEGMENT))
    }

    /// Whether the job exists (`None`: it does not) and carries the shuttle's marker.
    async fn ours(&self, job: &str) -> Result<Option<bool>, JenkinsError> {
        match self.get_json(&format!("{}api/json?tree=description", self.job_path(job)), "job").await {
            Ok(json) => Ok(Some(json["description"].as_str().is_some_and(|d| d.trim_start().starts_with(JOB_MARKER)))),
            Err(JenkinsError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends a request with auth (and the crumb, once one was needed); retries once with a
    /// fresh crumb when Jenkins asks for one.
    async fn send(
        &self,
        method: Method,
        url: Url,
        timeout: Duration,
        body: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, JenkinsError> {
        let http = self.http()?;
        let (user, token) = self.settings.credentials.current().await?;
        let attempt = |crumb: Option<Crumb>| {
            let mut request = http.request(method.clone(), url.clone()).basic_auth(&user, Some(token.expose_secret())).timeout(timeout);
            if let Some(crumb) = crumb.filter(|_| method != Method::GET) {
                request = request.header(crumb.field.as_str(), crumb.value.as_str());
                if let Some(cookie) = crumb.cookie {
                    request = request.header(COOKIE, cookie);
                }
            }
            body(request).send()
        };
        let cached = self.crumb.lock().expect("crumb lock").clone();
        let response = attempt(cached).await.map_err(transport_error)?;
        if response.status() == StatusCode::UNAUTHORIZED {
            self.settings.credentials.refused().await;
        }
        if response.status() != StatusCode::FORBIDDEN || method == Method::GET {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        if !text.contains("No valid crumb") {
            self.settings.credentials.refused().await;
            return Err(JenkinsError::Rejected(format!("403 for {} {}", method, url.path())));
        }
        let crumb = self.fetch_crumb(&user, &token).await?;
        *self.crumb.lock().expect("crumb lock") = Some(crumb.clone());
        attempt(Some(crumb)).await.map_err(transport_error)
    }

    async fn fetch_crumb(&self, user: &str, token: &Secret) -> Result<Crumb, JenkinsError> {
        let response = self
            .http()?
            .get(self.url("crumbIssuer/api/json"))
            .basic_auth(user, Some(token.expose_secret()))
            .timeout(self.settings.timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let response = check(response, "crumbIssuer")?;
        let cookie = session_cookie(response.headers());
        let json: Value = response.json().await.map_err(|e| JenkinsError::Unexpected(format!("crumb: {e}")))?;
        let field = json["crumbRequestField"].as_str().unwrap_or("Jenkins-Crumb").to_owned();
        let value = json["crumb"].as_str().ok_or_else(|| JenkinsError::Unexpected("crumb answer without a crumb".into()))?.to_owned();
        Ok(Crumb { field, value, cookie })
    }

    async fn get_json(&self, path: &str, what: &str) -> Result<Value, JenkinsError> {
        let response = self.send(Method::GET, self.url(path), self.settings.timeout, |r| r).await?;
        let response = check(response, what)?;
        response.json().await.map_err(|e| JenkinsError::Unexpected(format!("{what}: {}", redact(&e.to_string()))))
    }

    /// A POST whose 2xx or 3xx answer means done.
    async fn post(&self, url: Url, what: &str) -> Result<(), JenkinsError> {
        let response = self.send(Method::POST, url, self.settings.timeout, |r| r).await?;
        check(response, what).map(|_| ())
    }
}

fn transport_error(error: reqwest::Error) -> JenkinsError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    JenkinsError::Unavailable(redact(&format!("{kind}: {}", error.without_url())))
}

/// Maps an answer's status: 2xx and 3xx pass, the rest become errors.
fn check(response: Response, what: &str) -> Result<Response, JenkinsError> {
    let status = response.status();
    match status.as_u16() {
        200..=399 => Ok(response),
        404 => Err(JenkinsError::NotFound(what.to_owned())),
        401 | 403 => Err(JenkinsError::Rejected(format!("{status} for {what}: check JENKINS_USER and JENKINS_TOKEN"))),
        429 | 500..=599 => Err(JenkinsError::Unavailable(format!("{status} for {what}"))),
        _ => Err(JenkinsError::Unexpected(format!("{status} for {what}"))),
    }
}

/// Whether `actions` (of a build or a queue item) carry the parameter `BUILD_UUID=build_uuid`.
fn has_build_uuid(actions: &Value, build_uuid: &str) -> bool {
    let parameters = actions.as_array().into_iter().flatten().filter_map(|a| a["parameters"].as_array()).flatten();
    parameters.into_iter().any(|p| p["name"].as_str() == Some(parameters::BUILD_UUID) && p["value"].as_str() == Some(build_uuid))
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let cookies: Vec<&str> =
        headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).filter_map(|v| v.split(';').next()).collect();
    (!cookies.is_empty()).then(|| cookies.join("; "))
}

/// `…/queue/item/123/` → 123.
fn queue_id(location: &str) -> Option<u64> {
    let path = location.trim_end_matches('/');
    let (rest, id) = path.rsplit_once('/')?;
    rest.ends_with("/queue/item").then(|| id.parse().ok()).flatten()
}

#[async_trait]
impl Jenkins for JenkinsClient {
    async fn ensure_job(&self, job: &str) -> Result<(), JenkinsError> {
        match self.ours(job).await? {
            Some(true) => return Ok(()),
            Some(false) => return Err(JenkinsError::NotOurs(format!("{}/{job}", self.settings.folder.join("/")))),
            None => {}
        }
        let mut url = self.url(&format!("{}createItem", self.folder_path()));
        url.query_pairs_mut().append_pair("name", job);
        // Built when a job is created, not at every start: the script is ≈11 KB to encode.
        let config = job_config();
        let response =
            self.send(Method::POST, url, self.settings.timeout, |r| r.header(CONTENT_TYPE, "application/xml").body(config.clone())).await?;
        if response.status() == StatusCode::BAD_REQUEST {
            let text = response.text().await.unwrap_or_default();
            // Created meanwhile, by a concurrent poll or by someone else: look again.
            return if text.contains("already exists") {
                match self.ours(job).await? {
                    Some(true) => Ok(()),
                    _ => Err(JenkinsError::NotOurs(format!("{}/{job}", self.settings.folder.join("/")))),
                }
            } else {
                Err(JenkinsError::Unexpected(format!("createItem: {}", redact(&text))))
            };
        }
        match check(response, "createItem") {
            Ok(_) => Ok(()),
            Err(JenkinsError::NotFound(_)) => Err(JenkinsError::NotFound(format!(
                "the folder {} (JENKINS_FOLDER): the deployer creates it and gives JENKINS_USER job rights in it",
                self.settings.folder.join("/")
            ))),
            Err(e) => Err(e),
        }
    }

    async fn trigger(&self, job: &str, parameters: &[(String, String)]) -> Result<u64, JenkinsError> {
        let url = self.url(&format!("{}buildWithParameters", self.job_path(job)));
        // Parameters go in the form body, not the URL: they include secrets.
        let form = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(parameters).finish();
        let response = self
            .send(Method::POST, url, self.settings.timeout, |r| {
                r.header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(form.clone())
            })
            .await?;
        let response = check(response, "buildWithParameters")?;
        let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        queue_id(location)
            .ok_or_else(|| JenkinsError::Unexpected(format!("buildWithParameters answered without a queue item ({})", response.status())))
    }

    async fn queue_item(&self, queue_id: u64) -> Result<QueueItem, JenkinsError> {
        let json = match self.get_json(&format!("queue/item/{queue_id}/api/json"), "queue item").await {
            Ok(json) => json,
            Err(JenkinsError::NotFound(_)) => return Ok(QueueItem::Forgotten),
            Err(e) => return Err(e),
        };
        if json["cancelled"].as_bool() == Some(true) {
            return Ok(QueueItem::Cancelled);
        }
        match json["executable"]["number"].as_u64() {
            Some(number) => Ok(QueueItem::Started { number }),
            // A left item neither cancelled nor with its build yet: an executor is taking it.
            None => Ok(QueueItem::Waiting { why: json["why"].as_str().map(str::to_owned) }),
        }
    }

    async fn find_build(&self, job: &str, build_uuid: &str) -> Result<Option<u64>, JenkinsError> {
        let path = format!("{}api/json?tree=builds[number,actions[parameters[name,value]]]", self.job_path(job));
        let json = self.get_json(&path, "job builds").await?;
        let builds = json["builds"].as_array().cloned().unwrap_or_default();
        Ok(builds.iter().find_map(|build| has_build_uuid(&build["actions"], build_uuid).then(|| build["number"].as_u64()).flatten()))
    }

    async fn find_queued(&self, job: &str, build_uuid: &str) -> Result<Option<u64>, JenkinsError> {
        let json = self.get_json("queue/api/json?tree=items[id,task[url],actions[parameters[name,value]]]", "queue").await?;
        let items = json["items"].as_array().cloned().unwrap_or_default();
        // The job in the folder, not one of its name elsewhere: its URL ends with its path.
        let path = format!("/{}", self.job_path(job));
        Ok(items.iter().find_map(|item| {
            let same_job = item["task"]["url"].as_str().is_some_and(|url| url.ends_with(&path));
            let same_build = has_build_uuid(&item["actions"], build_uuid);
            (same_job && same_build).then(|| item["id"].as_u64()).flatten()
        }))
    }

    async fn build_status(&self, job: &str, number: u64) -> Result<BuildStatus, JenkinsError> {
        let json = self.get_json(&format!("{}{number}/api/json", self.job_path(job)), "build").await?;
        Ok(BuildStatus { building: json["building"].as_bool().unwrap_or(false), result: json["result"].as_str().map(JenkinsResult::parse) })
    }

    async fn read_log(&self, job: &str, number: u64, start: u64, sink: &mut dyn LogSink) -> Result<LogWindow, JenkinsError> {
        let mut url = self.url(&format!("{}{number}/logText/progressiveText", self.job_path(job)));
        url.query_pairs_mut().append_pair("start", &start.to_string());
        let response = self.send(Method::GET, url, self.settings.log_timeout, |r| r).await?;
        let mut response = check(response, "progressiveText")?;
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text_size: u64 = header("X-Text-Size")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| JenkinsError::Unexpected("progressiveText without X-Text-Size".into()))?;
        let more_data = header("X-More-Data").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if text_size < start {
            // Jenkins answers a start beyond the end with the log from 0: nothing new for us.
            return Ok(LogWindow { start, next_start: start, more_data });
        }
        // The body may be shorter than `X-Text-Size - start`: Jenkins strips console notes
        // (hyperlinks, pipeline markers) from plain text but counts them in the size. A body
        // cut off in transit is an error from the transport itself.
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            sink.write(chunk).await?;
        }
        Ok(LogWindow { start, next_start: text_size, more_data })
    }

    async fn stop_build(&self, job: &str, number: u64) -> Result<(), JenkinsError> {
        self.post(self.url(&format!("{}{number}/stop", self.job_path(job))), "stop").await
    }

    async fn cancel_queue_item(&self, queue_id: u64) -> Result<(), JenkinsError> {
        let mut url = self.url("queue/cancelItem");
        url.query_pairs_mut().append_pair("id", &queue_id.to_string());
        match self.post(url, "cancelItem").await {
            Err(JenkinsError::NotFound(_)) => Ok(()),
            // Jenkins answers 500 ("Could not cancel run") for an item that already left the
            // queue: then there is nothing to cancel, and the build is stopped by its number.
            Err(error @ JenkinsError::Unavailable(_)) => match self.queue_item(queue_id).await {
                Ok(QueueItem::Waiting { .. }) | Err(_) => Err(error),
                Ok(_) => Ok(()),
            },
            other => other,
        }
    }

    async fn delete_job(&self, job: &str) -> Result<(), JenkinsError> {
        match self.ours(job).await? {
            None => return Ok(()),
            Some(false) => return Err(JenkinsError::NotOurs(format!("{}/{job}", self.settings.folder.join("/")))),
            Some(true) => {}
        }
        match self.post(self.url(&format!("{}doDelete", self.job_path(job))), "doDelete").await {
            Err(JenkinsError::NotFound(_)) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_come_from_the_location() {
        assert_eq!(queue_id("http://jenkins.example/queue/item/42/"), Some(42));
        assert_eq!(queue_id("https://j.example/ci/queue/item/7"), Some(7));
        assert_eq!(queue_id("http://jenkins.example/job/x/"), None);
        assert_eq!(queue_id(""), None);
    }

    fn client_in(folder: &str) -> JenkinsClient {
        let settings = JenkinsSettings {
            url: "https://jenkins.example/ci".parse().unwrap(),
            folder: parse_folder(folder).unwrap(),
            credentials: JenkinsCredentials::Given { user: "shuttle".into(), token: Secret::from("t") },
            timeout: Duration::from_secs(1),
            log_timeout: Duration::from_secs(1),
        };
        JenkinsClient::on_first_use(settings)
    }

    #[test]
    fn jobs_live_in_the_folder_and_a_job_name_is_one_path_segment() {
        assert_eq!(client_in("build-shuttle").job_path("myapp-0b9e8c2a"), "job/build-shuttle/job/myapp-0b9e8c2a/");
        assert_eq!(client_in("platform/build shuttle").job_path("a/b c"), "job/platform/job/build%20shuttle/job/a%2Fb%20c/");
        assert_eq!(client_in("/platform/shuttle/").folder_path(), "job/platform/job/shuttle/");
    }

    #[test]
    fn a_folder_name_jenkins_would_refuse_is_refused_at_start() {
        for bad in ["", "/", "a//b", "a/../b", "a:b", "team#1"] {
            assert!(parse_folder(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_job_config_carries_the_script() {
        let config = job_config();
        assert!(!config.contains(SCRIPT_PLACEHOLDER));
        assert!(config.contains(&base64::engine::general_purpose::STANDARD.encode(PREPARE_SOURCES_SH)));
    }
}
