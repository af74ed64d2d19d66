//! Jenkins' REST endpoints: authentication and CSRF crumbs first, then the routes, each checking
//! the permissions Jenkins checks (see [`crate::authorization`]), items found through their
//! folders (`/job/team-a/job/app/…`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;

use crate::authorization::Permission;
use crate::item_path::{check_good_name, ItemKey, ItemPath};
use crate::job_config::{self, ItemDefinition, ParameterValue};
use crate::render;
use crate::respond::{self, Reply};
use crate::state::{now_ms, BuildResult, Folder, Inner, Item, ItemState, Job, QueueItem, Session, Shared, FOLDER_CLASS};
use crate::tree;

/// A request as the routes see it: the path split into decoded segments.
pub struct ApiRequest {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
}

impl ApiRequest {
    fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The form fields of an `application/x-www-form-urlencoded` body.
    fn form(&self) -> Vec<(String, String)> {
        let is_form = self.header(CONTENT_TYPE).is_some_and(|t| t.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        if is_form {
            url::form_urlencoded::parse(&self.body).into_owned().collect()
        } else {
            Vec::new()
        }
    }

    /// Request parameters as a servlet sees them: the query first, then the form body.
    fn parameters(&self) -> Vec<(String, String)> {
        let mut all = self.query.clone();
        all.extend(self.form());
        all
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    ApiToken,
    Password,
    Session,
    Anonymous,
}

struct Auth {
    user: Option<String>,
    via: Via,
    /// The session of the request's cookie, when it is valid for this user.
    session: Option<String>,
    /// A session opened by this request: its cookie goes out with the answer.
    new_session: Option<String>,
}

fn cookie_session(shared: &Shared, headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == shared.cookie_name)
        .map(|(_, value)| value.to_owned())
}

fn open_session(shared: &Shared, user: &str) -> String {
    let id = format!("node0{}.node0", uuid::Uuid::new_v4().simple());
    let crumb = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    shared.lock().sessions.insert(id.clone(), Session { user: user.to_owned(), crumb });
    id
}

/// HTTP Basic with the API token or the password, else the session cookie, else anonymous.
fn authenticate(shared: &Shared, request: &ApiRequest) -> Result<Auth, Box<Reply>> {
    let config = &shared.config;
    let session = cookie_session(shared, &request.headers);
    let session_user = session.as_ref().and_then(|id| shared.lock().sessions.get(id).map(|s| s.user.clone()));
    if let Some(header) = request.header(AUTHORIZATION) {
        let credentials = header
            .strip_prefix("Basic ")
            .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok())
            .and_then(|decoded| String::from_utf8(decoded).ok());
        let Some(credentials) = credentials else {
            return Err(Box::new(respond::unauthorized(&request.uri, "")));
        };
        let (user, secret) = credentials.split_once(':').unwrap_or((&credentials, ""));
        let via = match config.accounts().find(|(name, _, _)| *name == user) {
            Some((_, token, _)) if secret == token => Some(Via::ApiToken),
            Some((_, _, password)) if secret == password => Some(Via::Password),
            _ => None,
        };
        let Some(via) = via else {
            return Err(Box::new(respond::unauthorized(&request.uri, user)));
        };
        let session = session.filter(|_| session_user.as_deref() == Some(user));
        // Signing in with a password opens a web session; an API token does not.
        let new_session = (via == Via::Password && session.is_none()).then(|| open_session(shared, user));
        return Ok(Auth { user: Some(user.to_owned()), via, session, new_session });
    }
    match session_user {
        Some(user) => Ok(Auth { user: Some(user), via: Via::Session, session, new_session: None }),
        None => Ok(Auth { user: None, via: Via::Anonymous, session: None, new_session: None }),
    }
}

/// The crumb of the request's session must come with the POST, as a header or a parameter.
fn crumb_is_valid(shared: &Shared, request: &ApiRequest, auth: &Auth) -> bool {
    let offered = request
        .header("Jenkins-Crumb")
        .map(str::to_owned)
        .or_else(|| request.parameters().into_iter().find(|(k, _)| k == "Jenkins-Crumb").map(|(_, v)| v));
    let (Some(offered), Some(session)) = (offered, auth.session.as_ref()) else { return false };
    shared.lock().sessions.get(session).is_some_and(|s| s.crumb == offered && auth.user.as_deref() == Some(s.user.as_str()))
}

pub async fn handle(shared: &Arc<Shared>, request: ApiRequest) -> Reply {
    let auth = match authenticate(shared, &request) {
        Ok(auth) => auth,
        Err(reply) => return *reply,
    };
    let crumb_exempt = auth.via == Via::ApiToken && !shared.config.require_crumb;
    let mut reply = if request.method == Method::POST && !crumb_exempt && !crumb_is_valid(shared, &request, &auth) {
        respond::error_page(StatusCode::FORBIDDEN, &request.uri, "No valid crumb was included in the request")
    } else if auth.user.is_none() {
        respond::authentication_required(&request.uri)
    } else {
        route(shared, &request, &auth).await
    };
    if let Some(session) = auth.new_session {
        if let Ok(cookie) = HeaderValue::from_str(&format!("{}={session}; Path=/; HttpOnly", shared.cookie_name)) {
            reply.headers_mut().append(SET_COOKIE, cookie);
        }
    }
    reply
}

/// `tree=` applied to a JSON answer; a malformed tree is a 400.
fn api_json(request: &ApiRequest, value: impl FnOnce(bool) -> Value) -> Reply {
    match request.query_param("tree").map(tree::parse) {
        None => respond::json(&value(false)),
        Some(Ok(spec)) => respond::json(&tree::prune(&value(true), &spec)),
        Some(Err(why)) => respond::error_page(StatusCode::BAD_REQUEST, &request.uri, &why),
    }
}

async fn route(shared: &Arc<Shared>, request: &ApiRequest, auth: &Auth) -> Reply {
    let user = auth.user.as_deref().unwrap_or("anonymous");
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let post = request.method == Method::POST;
    let uri = request.uri.as_str();
    // `Jenkins.getTarget()`: every page of Jenkins needs Overall/Read.
    if let Some(denied) = refusal(shared, user, &[], Permission::OverallRead) {
        return denied;
    }
    match segments.as_slice() {
        [] => respond::html("<html><head><title>Dashboard [Jenkins]</title></head><body>Jenkins stand-in</body></html>\n".to_owned()),
        ["api", "json"] => api_json(request, |_| render::root_json(shared, &shared.lock(), user)),
        ["crumbIssuer", "api", "json"] => crumb(shared, request, auth),
        ["createItem"] if post => create_item(shared, request, &ItemPath::root(), user),
        ["queue", "api", "json"] => api_json(request, |_| render::queue_json(shared, &shared.lock(), user)),
        ["queue", "cancelItem"] if post => cancel_item(shared, request, user),
        ["queue", "item", id, rest @ ..] => queue_item(shared, request, id, rest, user),
        ["job", ..] => match resolve(shared, request, &segments, user) {
            Ok((target, rest)) if target.folder => folder_route(shared, request, &target, rest, user).await,
            Ok((target, rest)) => job_route(shared, request, &target, rest, user).await,
            Err(reply) => *reply,
        },
        ["createItem"] | ["queue", "cancelItem"] => respond::requires_post(uri),
        _ => respond::not_found(uri),
    }
}

/// Jenkins' `checkPermission`: the refusal, 403 "alice is missing the Job/Build permission", when
/// the ACL of `owner` (the names of a job's folder, or of a folder; empty: the root) does not give
/// the permission.
fn refusal(shared: &Shared, user: &str, owner: &[String], permission: Permission) -> Option<Reply> {
    if shared.config.allows(user, owner, permission) {
        return None;
    }
    tracing::debug!(user, permission = %permission, owner = %owner.join("/"), "access denied");
    Some(respond::missing_permission(user, permission))
}

/// An item a `/job/A/job/B/…` path leads to.
struct Target {
    path: ItemPath,
    folder: bool,
}

impl Target {
    /// The names of the folder whose ACL applies to the item: a job's folder, a folder itself.
    fn acl_owner(&self) -> &[String] {
        if self.folder {
            self.path.names()
        } else {
            self.path.folder_names()
        }
    }
}

/// Walks the `job/<name>` segments down from the root as Stapler does (`getJob(name)` of the
/// root, then of each folder): an unknown name is 404; an item the user may not read is 404 too,
/// so as not to reveal it, unless the user may discover it: then 403 "Please login to access job
/// N" (the root's `Jenkins.getItem`) or "Please log in to access N" (a folder's). A job ends the
/// walk: `job/N/job/X` asks the job for a build `job`, which is not found. Returns the item
/// and the segments after it.
fn resolve<'s>(shared: &Shared, request: &ApiRequest, segments: &'s [&'s str], user: &str) -> Result<(Target, &'s [&'s str]), Box<Reply>> {
    let uri = request.uri.as_str();
    let inner = shared.lock();
    let mut found: Option<Target> = None;
    let mut rest = segments;
    while let ["job", name, after @ ..] = rest {
        let group = match &found {
            None => ItemPath::root(),
            Some(target) if target.folder => target.path.clone(),
            Some(_) => break,
        };
        let Some(item) = inner.item(&group.child(name)) else { return Err(Box::new(respond::not_found(uri))) };
        if !shared.config.allows(user, item.acl_owner(), Permission::JobRead) {
            if !shared.config.allows(user, item.acl_owner(), Permission::JobDiscover) {
                return Err(Box::new(respond::not_found(uri)));
            }
            let message =
                if group.is_root() { format!("Please login to access job {name}") } else { format!("Please log in to access {name}") };
            return Err(Box::new(respond::access_denied(&message)));
        }
        found = Some(Target { path: item.path().clone(), folder: matches!(item, Item::Folder(_)) });
        rest = after;
    }
    match found {
        Some(target) => Ok((target, rest)),
        None => Err(Box::new(respond::not_found(uri))),
    }
}

fn crumb(shared: &Shared, request: &ApiRequest, auth: &Auth) -> Reply {
    let user = auth.user.clone().unwrap_or_default();
    let (session, opened) = match auth.session.clone().or_else(|| auth.new_session.clone()) {
        Some(session) => (session, false),
        None => (open_session(shared, &user), true),
    };
    let crumb = shared.lock().sessions.get(&session).map(|s| s.crumb.clone()).unwrap_or_default();
    let mut reply = api_json(
        request,
        |_| serde_json::json!({"_class": "hudson.security.csrf.DefaultCrumbIssuer", "crumb": crumb, "crumbRequestField": "Jenkins-Crumb"}),
    );
    if opened {
        if let Ok(cookie) = HeaderValue::from_str(&format!("{}={session}; Path=/; HttpOnly", shared.cookie_name)) {
            reply.headers_mut().append(SET_COOKIE, cookie);
        }
    }
    reply
}

/// `POST /createItem?name=N` (or `/job/F/createItem?name=N` in a folder) with the `config.xml`
/// of a job or a folder, as Jenkins' `ItemGroupMixIn.createTopLevelItem`: Job/Create on the
/// folder (the root) first; then the name; an item of that name the user cannot see is "already
/// there" without a word (Jenkins' `Items.verifyItemDoesNotAlreadyExist`).
fn create_item(shared: &Shared, request: &ApiRequest, parent: &ItemPath, user: &str) -> Reply {
    let uri = request.uri.as_str();
    if let Some(denied) = refusal(shared, user, parent.names(), Permission::JobCreate) {
        return denied;
    }
    let fail = |message: &str| respond::error_page(StatusCode::BAD_REQUEST, uri, message);
    let content_type = request.header(CONTENT_TYPE).map(str::to_ascii_lowercase);
    let mode = request.parameters().into_iter().find(|(k, _)| k == "mode").map(|(_, v)| v);
    if content_type.is_none() && mode.as_deref() != Some("copy") {
        return fail("No Content-Type header set");
    }
    let Some(name) = request.parameters().into_iter().find(|(k, _)| k == "name").map(|(_, v)| v) else {
        return fail("Query parameter 'name' is required");
    };
    if let Err(why) = check_good_name(&name) {
        return fail(&why);
    }
    let name = name.trim().to_owned();
    let path = parent.child(&name);
    // `parent.getItem(name)`: found when the user may read it; forbidden when they may only
    // discover it; else as good as absent, until the XML is stored.
    let hidden_existing = match shared.lock().item(&path) {
        None => false,
        Some(existing) if shared.config.allows(user, existing.acl_owner(), Permission::JobRead) => {
            return fail(&format!("A job already exists with the name ‘{name}’"));
        }
        Some(existing) if shared.config.allows(user, existing.acl_owner(), Permission::JobDiscover) => {
            let message =
                if parent.is_root() { format!("Please login to access job {name}") } else { format!("Please log in to access {name}") };
            return respond::access_denied(&message);
        }
        Some(_) => true,
    };
    if mode.as_deref() == Some("copy") {
        return fail("The stand-in does not copy items: post a config.xml");
    }
    let is_xml = content_type.as_deref().is_some_and(|t| t.starts_with("application/xml") || t.starts_with("text/xml"));
    if !is_xml {
        return fail("No mode given");
    }
    if hidden_existing {
        return fail("");
    }
    let config_xml = String::from_utf8_lossy(&request.body).into_owned();
    let definition = match job_config::parse_item(&config_xml) {
        Ok(definition) => definition,
        Err(why) => {
            return respond::error_page(StatusCode::INTERNAL_SERVER_ERROR, uri, &format!("java.io.IOException: Unable to read: {why}"))
        }
    };
    let mut inner = shared.lock();
    if !parent.is_root() && !matches!(inner.item(parent), Some(Item::Folder(_))) {
        return respond::not_found(uri); // the folder was deleted meanwhile
    }
    if inner.item(&path).is_some() {
        return fail(&format!("A job already exists with the name ‘{name}’"));
    }
    let generation = inner.next_generation();
    let item = match definition {
        ItemDefinition::Job(definition) => Item::Job(Job {
            path: path.clone(),
            generation,
            config_xml,
            definition,
            next_build_number: 1,
            builds: Default::default(),
            deleting: false,
        }),
        ItemDefinition::Folder(folder) => {
            Item::Folder(Folder { path: path.clone(), generation, config_xml, description: folder.description })
        }
    };
    tracing::debug!(item = %path, class = item.class(), "created");
    inner.items.insert(path.key(), item);
    respond::empty(StatusCode::OK)
}

fn queue_id_parameter(request: &ApiRequest) -> Option<u64> {
    request.parameters().into_iter().find(|(k, _)| k == "id").and_then(|(_, v)| v.parse().ok())
}

/// `POST /queue/cancelItem?id=N`: 204 when cancelled; 404 for an unknown (or forgotten) id, or
/// one whose job the user may not read; 422 without Job/Cancel; 500 for an item that already
/// left the queue (Jenkins cannot cancel those).
fn cancel_item(shared: &Shared, request: &ApiRequest, user: &str) -> Reply {
    let Some(id) = queue_id_parameter(request) else {
        return respond::error_page(StatusCode::NOT_FOUND, &request.uri, "Provided id (0) not found");
    };
    let not_found = || respond::error_page(StatusCode::NOT_FOUND, &request.uri, &format!("Provided id ({id}) not found"));
    let forget_after = shared.config.forget_left_items_after;
    let mut inner = shared.lock();
    let Some(item) = inner.queue_item_mut(id, forget_after) else { return not_found() };
    if !shared.config.allows(user, item.job.folder_names(), Permission::JobRead) {
        return not_found();
    }
    if !shared.config.allows(user, item.job.folder_names(), Permission::JobCancel) {
        return respond::error_page(StatusCode::UNPROCESSABLE_ENTITY, &request.uri, &format!("Item for id ({id}) is not cancellable"));
    }
    let cancelled = item.cancel();
    drop(inner);
    if cancelled {
        shared.wake_scheduler.notify_one();
        respond::empty(StatusCode::NO_CONTENT)
    } else {
        respond::error_page(StatusCode::INTERNAL_SERVER_ERROR, &request.uri, &format!("Could not cancel run for id {id}"))
    }
}

/// `/queue/item/<id>/…`. Its `api/json` needs Job/Read on the item's job; without Job/Discover
/// the item is not found, with Discover only 403 (Jenkins' `Queue.Item.getApi`).
fn queue_item(shared: &Shared, request: &ApiRequest, id: &str, rest: &[&str], user: &str) -> Reply {
    let uri = request.uri.as_str();
    let Ok(id) = id.parse::<u64>() else { return respond::not_found(uri) };
    let inner = shared.lock();
    let Some(item) = inner.queue_item(id, shared.config.forget_left_items_after) else { return respond::not_found(uri) };
    match rest {
        [] => respond::text(
            StatusCode::OK,
            format!("Queue item exists. For details check, for example, {uri}api/json?tree=cancelled,executable[url]"),
        ),
        ["api", "json"] if !shared.config.allows(user, item.job.folder_names(), Permission::JobDiscover) => respond::not_found(uri),
        ["api", "json"] if !shared.config.allows(user, item.job.folder_names(), Permission::JobRead) => {
            respond::access_denied(&format!("Please log in to access {}", item.job.relative_url()))
        }
        ["api", "json"] => api_json(request, |_| render::queue_item_json(shared, &inner, item)),
        _ => respond::not_found(uri),
    }
}

/// A build number or a permalink (`lastBuild`, …) of the job.
fn resolve_build(job: &Job, reference: &str) -> Option<u64> {
    if let Ok(number) = reference.parse::<u64>() {
        return job.builds.contains_key(&number).then_some(number);
    }
    let finished_with = |b: &crate::state::Build, wanted: &[BuildResult]| {
        let progress = b.progress();
        !progress.building && progress.result.is_some_and(|r| wanted.contains(&r))
    };
    let mut builds = job.builds_newest_first();
    let found = match reference {
        "lastBuild" => builds.next(),
        "firstBuild" => job.builds.values().next(),
        "lastCompletedBuild" => builds.find(|b| !b.is_building()),
        "lastSuccessfulBuild" => builds.find(|b| finished_with(b, &[BuildResult::Success, BuildResult::Unstable])),
        "lastStableBuild" => builds.find(|b| finished_with(b, &[BuildResult::Success])),
        "lastFailedBuild" => builds.find(|b| finished_with(b, &[BuildResult::Failure])),
        "lastUnsuccessfulBuild" => builds.find(|b| !b.is_building() && !finished_with(b, &[BuildResult::Success])),
        _ => None,
    };
    found.map(|b| b.number)
}

/// An item's HTML page: its full display name as title and body.
fn item_page(path: &ItemPath) -> Reply {
    let name = respond::escape_html(&path.full_display_name());
    respond::html(format!("<html><head><title>{name} [Jenkins]</title></head><body>{name}</body></html>\n"))
}

/// `/job/F/…` of a folder: its page, `api/json`, `createItem`, `config.xml`, `doDelete`.
async fn folder_route(shared: &Arc<Shared>, request: &ApiRequest, target: &Target, rest: &[&str], user: &str) -> Reply {
    let uri = request.uri.as_str();
    let path = &target.path;
    let post = request.method == Method::POST;
    match rest {
        [] => item_page(path),
        ["api", "json"] => {
            let inner = shared.lock();
            match inner.item(path) {
                Some(Item::Folder(folder)) => api_json(request, |_| render::folder_json(shared, &inner, folder, user)),
                _ => respond::not_found(uri),
            }
        }
        ["createItem"] if post => create_item(shared, request, path, user),
        ["config.xml"] if post => update_config(shared, request, target, user),
        ["config.xml"] => read_config(shared, request, target, user),
        ["doDelete"] if post => delete_item(shared, request, target, user).await,
        ["createItem"] | ["doDelete"] => respond::requires_post(uri),
        _ => respond::not_found(uri),
    }
}

/// `/job/…/N/…` of a job: its page, `api/json`, triggers, `config.xml`, `doDelete`, builds.
async fn job_route(shared: &Arc<Shared>, request: &ApiRequest, target: &Target, rest: &[&str], user: &str) -> Reply {
    let uri = request.uri.as_str();
    let path = &target.path;
    let post = request.method == Method::POST;
    match rest {
        [] => item_page(path),
        ["api", "json"] => {
            let inner = shared.lock();
            match inner.job(path) {
                Some(job) => api_json(request, |detailed| render::job_json(shared, &inner, job, detailed)),
                None => respond::not_found(uri),
            }
        }
        // `BuildAuthorizationToken.checkPermission`: Job/Build first, then POST.
        ["buildWithParameters" | "build"] if !shared.config.allows(user, target.acl_owner(), Permission::JobBuild) => {
            respond::missing_permission(user, Permission::JobBuild)
        }
        ["buildWithParameters"] if post => build_with_parameters(shared, request, path, user),
        ["build"] if post => build_without_parameters(shared, request, path, user),
        ["doDelete"] if post => delete_item(shared, request, target, user).await,
        ["config.xml"] if post => update_config(shared, request, target, user),
        ["config.xml"] => read_config(shared, request, target, user),
        ["buildWithParameters"] | ["build"] | ["doDelete"] => respond::requires_post(uri),
        [reference, build_rest @ ..] => build_route(shared, request, target, reference, build_rest, user),
    }
}

/// The values a new build gets: defined parameters only, defaults for the missing ones.
fn parameter_values(job: &Job, submitted: &[(String, String)]) -> Result<Vec<ParameterValue>, String> {
    job.definition
        .parameters
        .iter()
        .map(|definition| {
            let values: Vec<&str> = submitted.iter().filter(|(k, _)| *k == definition.name).map(|(_, v)| v.as_str()).collect();
            match values.as_slice() {
                [] => Ok(definition.default_value()),
                [value] => definition.submitted_value(value),
                more => Err(format!("Illegal number of parameter values for {}: {}", definition.name, more.len())),
            }
        })
        .collect()
}

/// Queues a build, or answers the item of an identical one still waiting (Jenkins merges them).
fn schedule(shared: &Shared, path: &ItemPath, parameters: Vec<ParameterValue>, user: &str) -> Option<u64> {
    let mut inner = shared.lock();
    let job = inner.job(path)?;
    let (job_path, generation, kind) = (job.path.clone(), job.generation, job.definition.kind);
    let existing = inner
        .queue
        .values()
        .find(|item| item.job == job_path && item.job_generation == generation && item.is_in_queue() && item.parameters == parameters)
        .map(|item| item.id);
    if let Some(id) = existing {
        return Some(id);
    }
    let id = inner.next_queue_id;
    inner.next_queue_id += 1;
    let delay = shared.config.queue_delay;
    inner.queue.insert(
        id,
        QueueItem {
            id,
            job: job_path,
            job_generation: generation,
            job_kind: kind,
            parameters,
            cause_user: user.to_owned(),
            in_queue_since_ms: now_ms(),
            buildable_at: Instant::now() + delay,
            buildable_at_ms: now_ms() + delay.as_millis() as u64,
            state: ItemState::Waiting,
        },
    );
    drop(inner);
    shared.wake_scheduler.notify_one();
    Some(id)
}

fn queued(shared: &Shared, request: &ApiRequest, id: Option<u64>) -> Reply {
    match id {
        Some(id) => respond::redirect(StatusCode::CREATED, &format!("{}queue/item/{id}/", shared.base)),
        None => respond::not_found(&request.uri),
    }
}

/// `POST /job/N/buildWithParameters?P=V…` (or a form body): 201 with the queue item.
fn build_with_parameters(shared: &Shared, request: &ApiRequest, path: &ItemPath, user: &str) -> Reply {
    let parameters = {
        let inner = shared.lock();
        let Some(job) = inner.job(path) else { return respond::not_found(&request.uri) };
        if job.definition.parameters.is_empty() {
            return respond::error_page(
                StatusCode::BAD_REQUEST,
                &request.uri,
                &format!("java.io.IOException: {} is not parameterized", path.full_name()),
            );
        }
        match parameter_values(job, &request.parameters()) {
            Ok(parameters) => parameters,
            Err(why) => {
                return respond::error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &request.uri,
                    &format!("java.lang.IllegalArgumentException: {why}"),
                )
            }
        }
    };
    queued(shared, request, schedule(shared, path, parameters, user))
}

/// `POST /job/N/build`: for a job without parameters.
fn build_without_parameters(shared: &Shared, request: &ApiRequest, path: &ItemPath, user: &str) -> Reply {
    let parameterized = shared.lock().job(path).is_some_and(|job| !job.definition.parameters.is_empty());
    if parameterized {
        return respond::error_page(StatusCode::BAD_REQUEST, &request.uri, "This page expects a form submission but had only {}");
    }
    queued(shared, request, schedule(shared, path, Vec::new(), user))
}

/// `GET …/config.xml`: Job/ExtendedRead, which Jenkins disables by default, so Job/Configure.
fn read_config(shared: &Shared, request: &ApiRequest, target: &Target, user: &str) -> Reply {
    if let Some(denied) = refusal(shared, user, target.acl_owner(), Permission::JobConfigure) {
        return denied;
    }
    match shared.lock().item(&target.path) {
        Some(item) => respond::xml(item.config_xml().to_owned()),
        None => respond::not_found(&request.uri),
    }
}

/// `POST …/config.xml`: Job/Configure; the new `config.xml` must be of the same class
/// (`AbstractItem.updateByXml`).
fn update_config(shared: &Shared, request: &ApiRequest, target: &Target, user: &str) -> Reply {
    if let Some(denied) = refusal(shared, user, target.acl_owner(), Permission::JobConfigure) {
        return denied;
    }
    let unreadable =
        |why: String| respond::error_page(StatusCode::INTERNAL_SERVER_ERROR, &request.uri, &format!("java.io.IOException: {why}"));
    let config_xml = String::from_utf8_lossy(&request.body).into_owned();
    let definition = match job_config::parse_item(&config_xml) {
        Ok(definition) => definition,
        Err(why) => return unreadable(format!("Unable to read: {why}")),
    };
    let mut inner = shared.lock();
    let Some(item) = inner.items.get_mut(&target.path.key()) else { return respond::not_found(&request.uri) };
    let class = item.class();
    match (item, definition) {
        (Item::Job(job), ItemDefinition::Job(definition)) if definition.kind == job.definition.kind => {
            job.config_xml = config_xml;
            job.definition = definition;
        }
        (Item::Folder(folder), ItemDefinition::Folder(definition)) => {
            folder.config_xml = config_xml;
            folder.description = definition.description;
        }
        (_, definition) => {
            let got = match definition {
                ItemDefinition::Job(job) => job.kind.job_class(),
                ItemDefinition::Folder(_) => FOLDER_CLASS,
            };
            return unreadable(format!("Expecting class {class} but got class {got} instead"));
        }
    }
    drop(inner);
    shared.wake_scheduler.notify_one();
    respond::empty(StatusCode::OK)
}

/// `POST …/doDelete` of a job or a folder (Job/Delete): cancels the queue items of every job it
/// holds, aborts their running builds and waits (up to 15 s, as Jenkins) for them to end, then
/// removes the item and, for a folder, everything in it (Jenkins deletes the children as the
/// system, whatever the user may do to them). 302 to the folder holding it (or the root).
async fn delete_item(shared: &Arc<Shared>, request: &ApiRequest, target: &Target, user: &str) -> Reply {
    if let Some(denied) = refusal(shared, user, target.acl_owner(), Permission::JobDelete) {
        return denied;
    }
    let path = &target.path;
    let (generation, mut jobs, running) = {
        let mut inner = shared.lock();
        let Some(generation) = inner.item(path).map(Item::generation) else { return respond::not_found(&request.uri) };
        let keys: Vec<ItemKey> = inner.subtree(path).map(|item| item.path().key()).collect();
        let mut jobs: Vec<(ItemPath, u64)> = Vec::new();
        let mut running = Vec::new();
        for key in &keys {
            if let Some(Item::Job(job)) = inner.items.get_mut(key) {
                job.deleting = true;
                jobs.push((job.path.clone(), job.generation));
                running.extend(job.builds.values().filter(|b| b.is_building()).cloned());
            }
        }
        cancel_items_of(&mut inner, &jobs);
        (generation, jobs, running)
    };
    for build in &running {
        build.request_stop(user);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while running.iter().any(|b| b.is_building()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let still_running = running.iter().filter(|b| b.is_building()).count();
    let mut inner = shared.lock();
    if still_running > 0 {
        for (job_path, generation) in &jobs {
            if let Some(job) = inner.job_mut(job_path).filter(|job| job.generation == *generation) {
                job.deleting = false;
            }
        }
        // `AbstractItem.FailureToStopBuilds`.
        let builds = if still_running == 1 { "1 build".to_owned() } else { format!("{still_running} builds") };
        let message = format!("Failed to interrupt and stop {builds} of {}", path.full_display_name());
        return respond::error_page(StatusCode::BAD_REQUEST, &request.uri, &message);
    }
    // What the item holds now, including what was created in it meanwhile.
    if inner.item(path).is_some_and(|item| item.generation() == generation) {
        let keys: Vec<ItemKey> = inner.subtree(path).map(|item| item.path().key()).collect();
        for key in keys {
            if let Some(Item::Job(job)) = inner.items.remove(&key) {
                jobs.push((job.path, job.generation));
            }
        }
    }
    cancel_items_of(&mut inner, &jobs);
    drop(inner);
    shared.wake_scheduler.notify_one();
    tracing::debug!(item = %path, jobs = jobs.len(), "deleted");
    respond::redirect(StatusCode::FOUND, &shared.item_url(&path.parent()))
}

/// Cancels the queue items of these jobs (by path and generation).
fn cancel_items_of(inner: &mut Inner, jobs: &[(ItemPath, u64)]) {
    for item in inner.queue.values_mut() {
        if jobs.iter().any(|(path, generation)| item.job == *path && item.job_generation == *generation) {
            item.cancel();
        }
    }
}

fn build_route(shared: &Shared, request: &ApiRequest, target: &Target, reference: &str, rest: &[&str], user: &str) -> Reply {
    let uri = request.uri.as_str();
    let path = &target.path;
    let build = {
        let inner = shared.lock();
        let Some(job) = inner.job(path) else { return respond::not_found(uri) };
        let Some(number) = resolve_build(job, reference) else { return respond::not_found(uri) };
        job.builds[&number].clone()
    };
    let post = request.method == Method::POST;
    match rest {
        [] => {
            let name = respond::escape_html(&path.full_display_name());
            respond::html(format!("<html><head><title>{name} #{} [Jenkins]</title></head><body></body></html>\n", build.number))
        }
        ["api", "json"] => {
            let inner = shared.lock();
            api_json(request, |_| render::build_json(&build, inner.job(path)))
        }
        ["logText", "progressiveText"] => {
            let start = match request.query_param("start").map(str::parse::<i64>) {
                None => 0,
                Some(Ok(start)) => start.max(0) as u64,
                Some(Err(_)) => {
                    return respond::error_page(StatusCode::INTERNAL_SERVER_ERROR, uri, "java.lang.NumberFormatException: For input string")
                }
            };
            let (text, size, more) = build.log_from(start);
            let mut reply = respond::streamed_text(text);
            reply.headers_mut().insert("X-Text-Size", HeaderValue::from(size));
            if more {
                reply.headers_mut().insert("X-More-Data", HeaderValue::from_static("true"));
            }
            reply
        }
        ["consoleText"] => respond::streamed_text(build.log_from(0).0),
        // `Executor.doStopBuild` (POST only): the job's Job/Cancel.
        ["stop"] if post => match refusal(shared, user, target.acl_owner(), Permission::JobCancel) {
            Some(denied) => denied,
            None => {
                build.request_stop(user);
                respond::redirect(StatusCode::FOUND, &build.url)
            }
        },
        ["stop"] => respond::requires_post(uri),
        _ => respond::not_found(uri),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StandInConfig;
    use http_body_util::BodyExt;
    use serde_json::json;

    const PIPELINE_XML: &str = "<?xml version='1.1' encoding='UTF-8'?>\n<flow-definition plugin=\"workflow-job\"><properties>\
        <org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty/>\
        <hudson.model.ParametersDefinitionProperty><parameterDefinitions>\
        <hudson.model.StringParameterDefinition><name>BUILD_UUID</name><defaultValue></defaultValue></hudson.model.StringParameterDefinition>\
        <hudson.model.PasswordParameterDefinition><name>REGISTRY_PASSWORD</name><defaultValue></defaultValue></hudson.model.PasswordParameterDefinition>\
        </parameterDefinitions></hudson.model.ParametersDefinitionProperty></properties></flow-definition>";

    /// A stand-in without its scheduler: the tests move the queue on with [`Shared::maintain`].
    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(
            StandInConfig { queue_delay: Duration::from_secs(60), ..StandInConfig::default() },
            "http://jenkins.test/".into(),
        ))
    }

    enum As {
        Token,
        Wrong,
        Anonymous,
    }

    fn request(shared: &Shared, method: Method, target: &str, who: As, body: &str) -> ApiRequest {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers = HeaderMap::new();
        let credentials = match who {
            As::Token => Some(format!("{}:{}", shared.config.user, shared.config.api_token)),
            As::Wrong => Some(format!("{}:not-the-token", shared.config.user)),
            As::Anonymous => None,
        };
        if let Some(credentials) = credentials {
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Basic {encoded}")).expect("header"));
        }
        if body.starts_with("<?xml") {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        }
        ApiRequest {
            method,
            uri: format!("/{path}"),
            headers,
            segments: path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            query: url::form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
            body: Bytes::from(body.to_owned()),
        }
    }

    async fn call(shared: &Arc<Shared>, method: Method, target: &str, who: As, body: &str) -> (StatusCode, String) {
        let reply = handle(shared, request(shared, method, target, who, body)).await;
        let status = reply.status();
        let body = reply.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8(body.to_vec()).expect("utf-8"))
    }

    async fn get_json(shared: &Arc<Shared>, target: &str) -> Value {
        let (status, body) = call(shared, Method::GET, target, As::Token, "").await;
        assert_eq!(status, StatusCode::OK, "{target}: {body}");
        serde_json::from_str(&body).expect("json")
    }

    async fn trigger(shared: &Arc<Shared>, job: &str, query: &str) -> u64 {
        let reply = handle(shared, request(shared, Method::POST, &format!("job/{job}/buildWithParameters?{query}"), As::Token, "")).await;
        assert_eq!(reply.status(), StatusCode::CREATED);
        let location = reply.headers()["location"].to_str().expect("location");
        location.strip_prefix("http://jenkins.test/queue/item/").and_then(|id| id.strip_suffix('/')).expect(location).parse().expect("id")
    }

    /// Ends the quiet period of an item and lets the queue move.
    fn quiet_period_over(shared: &Shared, id: u64) -> Vec<Arc<crate::state::Build>> {
        shared.lock().queue.get_mut(&id).expect("item").buildable_at = Instant::now();
        shared.maintain().0
    }

    fn ids(queue: &Value) -> Vec<u64> {
        queue["items"].as_array().expect("items").iter().map(|item| item["id"].as_u64().expect("id")).collect()
    }

    #[tokio::test]
    async fn the_queue_lists_the_waiting_and_blocked_items_as_their_own_pages_show_them() {
        let shared = shared();
        for job in ["app", "other"] {
            let (status, body) = call(&shared, Method::POST, &format!("createItem?name={job}"), As::Token, PIPELINE_XML).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let empty = get_json(&shared, "queue/api/json").await;
        assert_eq!(empty, json!({"_class": "hudson.model.Queue", "discoverableItems": [], "items": []}));

        let first = trigger(&shared, "app", "BUILD_UUID=u1").await;
        let started = quiet_period_over(&shared, first);
        assert_eq!(started.len(), 1, "#1 runs (and keeps running: no pipeline here)");
        let blocked = trigger(&shared, "app", "BUILD_UUID=u2&REGISTRY_PASSWORD=hunter2").await;
        assert!(quiet_period_over(&shared, blocked).is_empty(), "concurrent builds are disabled");
        let waiting = trigger(&shared, "other", "BUILD_UUID=u3").await;
        let cancelled = trigger(&shared, "app", "BUILD_UUID=u4").await;
        let (status, _) = call(&shared, Method::POST, &format!("queue/cancelItem?id={cancelled}"), As::Token, "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        let queue = get_json(&shared, "queue/api/json").await;
        assert_eq!(queue["_class"], "hudson.model.Queue");
        assert_eq!(queue["discoverableItems"], json!([]));
        // Jenkins' Queue.getItems(): waiting items first, then blocked ones; left ones not at all.
        assert_eq!(ids(&queue), [waiting, blocked]);
        let text = queue.to_string();
        assert!(!text.contains("hunter2"), "a password parameter shows no value: {text}");

        let listed = &queue["items"][1];
        assert_eq!(listed, &get_json(&shared, &format!("queue/item/{blocked}/api/json")).await);
        assert_eq!(listed["_class"], "hudson.model.Queue$BlockedItem");
        assert_eq!((&listed["blocked"], &listed["buildable"], &listed["stuck"]), (&json!(true), &json!(false), &json!(false)));
        assert_eq!(listed["url"], format!("queue/item/{blocked}/"));
        assert_eq!(listed["why"], "Build #1 is already in progress (ETA: N/A)");
        assert!(listed["buildableStartMilliseconds"].as_u64().is_some() && listed["inQueueSince"].as_u64().is_some(), "{listed}");
        assert_eq!(listed["params"], "\nBUILD_UUID=u2\nREGISTRY_PASSWORD=****");
        assert_eq!(
            listed["actions"][0],
            json!({"_class": "hudson.model.ParametersAction", "parameters": [
                {"_class": "hudson.model.StringParameterValue", "name": "BUILD_UUID", "value": "u2"},
                {"_class": "hudson.model.PasswordParameterValue", "name": "REGISTRY_PASSWORD"}]})
        );
        assert_eq!(listed["actions"][1]["_class"], "hudson.model.CauseAction");
        assert_eq!(
            listed["task"],
            json!({"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "name": "app", "url": "http://jenkins.test/job/app/", "color": "notbuilt_anime"})
        );

        let listed = &queue["items"][0];
        assert_eq!(listed["_class"], "hudson.model.Queue$WaitingItem");
        assert_eq!((&listed["blocked"], &listed["buildable"]), (&json!(false), &json!(false)));
        assert!(listed["timestamp"].as_u64().is_some() && listed.get("buildableStartMilliseconds").is_none(), "{listed}");
        assert!(listed["why"].as_str().is_some_and(|why| why.starts_with("In the quiet period. Expires in ")), "{listed}");
        let mut own_page = get_json(&shared, &format!("queue/item/{waiting}/api/json")).await;
        own_page["why"] = listed["why"].clone(); // the time left may have changed meanwhile
        assert_eq!(listed, &own_page);

        // The tree the shuttle asks with: only what it names, and `_class`, as Jenkins writes it.
        let tree = get_json(&shared, "queue/api/json?tree=items[id,task[name],actions[parameters[name,value]]]").await;
        let parameters = |uuid: &str| {
            json!({"_class": "hudson.model.ParametersAction", "parameters": [
                {"_class": "hudson.model.StringParameterValue", "name": "BUILD_UUID", "value": uuid},
                {"_class": "hudson.model.PasswordParameterValue", "name": "REGISTRY_PASSWORD"}]})
        };
        let task = |name: &str| json!({"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "name": name});
        assert_eq!(
            tree,
            json!({"_class": "hudson.model.Queue", "items": [
                {"_class": "hudson.model.Queue$WaitingItem", "id": waiting, "task": task("other"),
                 "actions": [parameters("u3"), {"_class": "hudson.model.CauseAction"}]},
                {"_class": "hudson.model.Queue$BlockedItem", "id": blocked, "task": task("app"),
                 "actions": [parameters("u2"), {"_class": "hudson.model.CauseAction"}]}]})
        );
        assert_eq!(
            get_json(&shared, "queue/api/json?tree=items[id]{1,}").await["items"],
            json!([{"_class": "hudson.model.Queue$BlockedItem", "id": blocked}])
        );

        // Once #1 ends, the blocked item leaves the queue as #2.
        started[0].finish(BuildResult::Success);
        let next = shared.maintain().0;
        assert_eq!(next.iter().map(|b| (b.number, b.queue_id)).collect::<Vec<_>>(), [(2, blocked)]);
        assert_eq!(ids(&get_json(&shared, "queue/api/json").await), [waiting]);
        let (status, _) = call(&shared, Method::POST, &format!("queue/cancelItem?id={waiting}"), As::Token, "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(get_json(&shared, "queue/api/json").await["items"], json!([]));
    }

    #[tokio::test]
    async fn the_queue_needs_credentials_and_a_well_formed_tree() {
        let shared = shared();
        let (status, body) = call(&shared, Method::GET, "queue/api/json", As::Anonymous, "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("Authentication required"), "{body}");
        assert_eq!(call(&shared, Method::GET, "queue/api/json", As::Wrong, "").await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(&shared, Method::GET, "queue/api/json?tree=items[id", As::Token, "").await.0, StatusCode::BAD_REQUEST);
    }

    /// A `progressiveText` read: the body, `X-Text-Size`, `X-More-Data`.
    async fn progressive(shared: &Arc<Shared>, job: &str, start: u64) -> (Vec<u8>, u64, bool) {
        let target = format!("job/{job}/1/logText/progressiveText?start={start}");
        let reply = handle(shared, request(shared, Method::GET, &target, As::Token, "")).await;
        assert_eq!(reply.status(), StatusCode::OK);
        let size = reply.headers()["x-text-size"].to_str().expect("size").parse().expect("number");
        let more = reply.headers().contains_key("x-more-data");
        (reply.into_body().collect().await.expect("body").to_bytes().to_vec(), size, more)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    #[tokio::test]
    async fn logs_are_served_without_their_console_notes_at_raw_offsets() {
        use crate::console;
        let shared = shared();
        let (status, body) = call(&shared, Method::POST, "createItem?name=app", As::Token, PIPELINE_XML).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let id = trigger(&shared, "app", "BUILD_UUID=u1").await;
        let build = quiet_period_over(&shared, id).pop().expect("#1 runs (no pipeline here: the test writes the log)");
        build.log_noted_line("Started by user ", &console::hyperlink("/user/admin", "admin"), "admin");
        build.log_noted_line("", &console::new_node(), "[Pipeline] Start of Pipeline");

        let (first, first_end, more) = progressive(&shared, "app", 0).await;
        assert_eq!(String::from_utf8_lossy(&first), "Started by user admin\n[Pipeline] Start of Pipeline\n");
        assert_eq!(first_end, build.raw_log().len() as u64, "X-Text-Size is the raw offset, notes counted");
        assert!(first_end > first.len() as u64 + 400, "two notes: {first_end}");
        assert!(more);

        // Reading on from X-Text-Size: only what came since, without its notes.
        build.log_line("plain text");
        build.log_noted_line("", &console::new_node(), "[Pipeline] sh");
        let (second, second_end, _) = progressive(&shared, "app", first_end).await;
        assert_eq!(String::from_utf8_lossy(&second), "plain text\n[Pipeline] sh\n");
        assert_eq!(second_end, build.raw_log().len() as u64);
        build.request_stop("admin");
        build.finish(BuildResult::Aborted);
        let (third, third_end, more) = progressive(&shared, "app", second_end).await;
        assert_eq!(String::from_utf8_lossy(&third), "Aborted by admin\nFinished: ABORTED\n");
        assert!(!more);

        let raw = build.raw_log();
        assert_eq!(third_end, raw.len() as u64);
        let (status, console_text) = call(&shared, Method::GET, "job/app/1/consoleText", As::Token, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(console_text.as_bytes(), [first, second, third].concat(), "the reads make consoleText");
        let (whole, whole_end, _) = progressive(&shared, "app", 0).await;
        assert_eq!(whole, console_text.as_bytes());
        assert_eq!(whole_end, raw.len() as u64);
        assert!(contains(&raw, console::PREAMBLE).is_some() && contains(console_text.as_bytes(), b"\x1b[8m").is_none());
        // At the end: nothing; beyond the raw end: from 0 again.
        assert_eq!(progressive(&shared, "app", whole_end).await, (Vec::new(), whole_end, false));
        assert_eq!(progressive(&shared, "app", whole_end + 1).await.0, console_text.as_bytes());

        // A start inside a note: what is left of it is served as it is.
        let at = contains(&raw, console::PREAMBLE).expect("a note");
        let note_end = at + contains(&raw[at..], console::POSTAMBLE).expect("its end") + console::POSTAMBLE.len();
        let (cut, cut_end, _) = progressive(&shared, "app", at as u64 + 3).await;
        assert_eq!(cut, [&raw[at + 3..note_end], &console_text.as_bytes()["Started by user ".len()..]].concat());
        assert!(cut.starts_with(b"mha:////4"), "{}", String::from_utf8_lossy(&cut));
        assert_eq!(cut_end, raw.len() as u64);
    }
}
