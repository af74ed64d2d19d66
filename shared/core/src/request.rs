//! The two create request shapes, parsed into one [`BuildSpec`] (parse, don't validate).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;
use uuid::Uuid;

use crate::error::{LegacyRejection, ValidationError};
use crate::ids::{legacy_job_name, parse_uuid};
use crate::netguard::{known_bad, AllowedNetworks, Host, HostRefusal};
use crate::redact::redact;
use crate::source::{decode_data_uri, rebuild_source_id, DockerImage, RegistryCredentials, Source};
use crate::webhook::WebhookTarget;

/// The bounds of a v2 create's fields (SPEC §2, §7): each over-long field is a `400` naming it,
/// so that no build is too large to store (a DynamoDB item holds 400 KB: at these bounds a
/// build's item stays under ≈230 KB) nor to send (`metadata` is every Kafka key and an
/// `X-Build-Metadata` header), and one poll never dials hundreds of targets.
pub mod limits {
    /// `metadata`, `human_readable_info`: bytes of UTF-8.
    pub const TEXT_BYTES: usize = 4 * 1024;
    /// `source.url`, `destination.url`: a presigned link with a session token fits.
    pub const SOURCE_URL_BYTES: usize = 8 * 1024;
    /// Each webhook target.
    pub const TARGET_BYTES: usize = 4 * 1024;
    /// Targets in `webhooks.status`, and in `webhooks.logs`.
    pub const TARGETS: usize = 16;
    /// Build arguments.
    pub const ARGUMENTS: usize = 256;
    pub const ARGUMENT_NAME_CHARS: usize = 128;
    pub const ARGUMENT_VALUE_BYTES: usize = 16 * 1024;
    /// Every argument's name and value together.
    pub const ARGUMENTS_BYTES: usize = 64 * 1024;

    /// A legacy create's text fields. Its job `{app}-{app_uuid}` is a path segment (≤ 128).
    pub const LEGACY_FIELDS: [(&str, usize); 17] = [
        ("app", 128 - 37),
        ("space", TEXT_BYTES),
        ("app_uuid", 36),
        ("sha", TEXT_BYTES),
        ("branch", TEXT_BYTES),
        ("repo", TEXT_BYTES),
        ("org", TEXT_BYTES),
        ("callback", TARGET_BYTES),
        ("callback_auth", TARGET_BYTES),
        ("kafka_hosts", TARGET_BYTES),
        ("gm_registry_host", SOURCE_URL_BYTES),
        ("gm_registry_repo", SOURCE_URL_BYTES),
        ("sources", SOURCE_URL_BYTES),
        ("docker_registry", SOURCE_URL_BYTES),
        ("docker_login", TARGET_BYTES),
        ("docker_password", TARGET_BYTES),
        ("build_options", ARGUMENTS_BYTES),
    ];

    /// A legacy field's bound, if it has one. `sources` as a `data:` URI is bounded by the body
    /// alone: its bytes go to S3, not into the build.
    pub fn legacy_field(field: &str, value: &str) -> Option<usize> {
        if field == "sources" && value.starts_with("data:") {
            return None;
        }
        LEGACY_FIELDS.iter().find(|(name, _)| *name == field).map(|(_, limit)| *limit)
    }
}

/// `value` cut to at most `limit` bytes, on a character boundary.
fn cut_to(mut value: String, limit: usize) -> String {
    if value.len() > limit {
        let end = (0..=limit).rev().find(|i| value.is_char_boundary(*i)).unwrap_or(0);
        value.truncate(end);
    }
    value
}

/// A `400` naming `field` when `value` is longer than `limit` bytes.
fn at_most(field: &str, value: &str, limit: usize) -> Result<(), ValidationError> {
    match value.len() > limit {
        true => Err(ValidationError::new(field, format!("is {} bytes; at most {limit} are taken", value.len()))),
        false => Ok(()),
    }
}

/// Everything the shuttle needs to run a build, from either API. Sealed (encrypted) at rest:
/// it holds credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSpec {
    pub api: Api,
    pub source: Source,
    /// Build arguments from the request (merged over `EXTRA_BUILD_ARGS` when the build runs).
    pub arguments: BTreeMap<String, String>,
    pub metadata: String,
    pub human_readable_info: String,
    pub status_targets: Vec<WebhookTarget>,
    pub log_targets: Vec<WebhookTarget>,
    /// Legacy only: the request was accepted but the build must fail with this reason.
    pub rejection: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "api", rename_all = "snake_case")]
pub enum Api {
    V2 { app_id: String, build_id: String, destination: DockerImage },
    Legacy(LegacyBuild),
}

/// What only the legacy API carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyBuild {
    pub app: String,
    pub space: String,
    pub app_uuid: String,
    pub build_uuid: Uuid,
    pub build_number: Option<u64>,
    pub sha: Option<String>,
    pub branch: Option<String>,
    pub repo: Option<String>,
    pub org: Option<String>,
    pub callback: Option<String>,
    pub callback_auth: Option<String>,
    pub kafka_hosts: Vec<String>,
    pub registry_host: String,
    pub registry_repo: String,
    pub registry_credentials: Option<RegistryCredentials>,
}

impl LegacyBuild {
    /// The Jenkins job: `{app}-{app_uuid}`.
    pub fn job(&self) -> String {
        legacy_job_name(&self.app, &self.app_uuid)
    }

    /// The registry of `gm_registry_host` (`host[:port]`), without a path after it.
    pub fn registry(&self) -> &str {
        self.registry_host.split('/').next().unwrap_or_default()
    }
}

/// A host of a build's user-supplied URLs that the SSRF guard refuses before any lookup
/// (SPEC §7): an address in a refused range, or a `localhost` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedHost {
    /// Where it came from: the v2 field (`webhooks.status[1]`, `source.url`, …) or the legacy
    /// one (`callback`, `kafka_hosts`, `sources`, `gm_registry_host`).
    pub field: String,
    /// The URL or host, redacted.
    pub shown: String,
    pub refusal: HostRefusal,
}

impl std::fmt::Display for RefusedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} is refused: {}", self.field, self.shown, self.refusal)
    }
}

impl From<RefusedHost> for ValidationError {
    fn from(refused: RefusedHost) -> Self {
        ValidationError::new(refused.field, format!("{} is refused: {}", refused.shown, refused.refusal))
    }
}

impl BuildSpec {
    /// The docker registries (`host[:port]`) Jenkins will pull from or push to.
    pub fn registries(&self) -> Vec<&str> {
        let mut registries = Vec::new();
        if let Source::Docker { image } = &self.source {
            registries.push(image.registry.as_str());
        }
        match &self.api {
            Api::V2 { destination, .. } => registries.push(destination.registry.as_str()),
            Api::Legacy(legacy) => registries.push(legacy.registry()),
        }
        registries
    }

    /// The hosts of the build's webhooks, callback, Kafka brokers, sources and registries that
    /// are known to be refused without a lookup, under `allowed`. Names are judged when they are
    /// resolved: by the adapters as they connect, and for registries at the build's first poll.
    pub fn refused_hosts(&self, allowed: &AllowedNetworks) -> Vec<RefusedHost> {
        let mut refused = Vec::new();
        let mut check = |field: &str, shown: &str, host: Option<Host>| {
            if let Some(refusal) = host.and_then(|host| known_bad(&host, allowed)) {
                refused.push(RefusedHost { field: field.to_owned(), shown: redact(shown), refusal });
            }
        };
        let url_host = |raw: &str| Url::parse(raw).ok().as_ref().and_then(Host::of_url);
        for (name, targets) in [("status", &self.status_targets), ("logs", &self.log_targets)] {
            for (i, target) in targets.iter().enumerate() {
                let field = if targets.len() == 1 { format!("webhooks.{name}") } else { format!("webhooks.{name}[{i}]") };
                match target {
                    WebhookTarget::Http { url } => check(&field, url, url_host(url)),
                    WebhookTarget::Kafka { brokers, .. } => brokers.iter().for_each(|broker| check(&field, broker, Host::parse(broker))),
                }
            }
        }
        let source_field = if matches!(self.api, Api::V2 { .. }) { "source.url" } else { "sources" };
        match &self.source {
            Source::Http { url } => check(source_field, url, url_host(url)),
            Source::Docker { image } => check(source_field, &image.registry, Host::parse(&image.registry)),
            Source::Inline { .. } | Source::Rebuild { .. } | Source::Invalid { .. } => {}
        }
        match &self.api {
            Api::V2 { destination, .. } => check("destination.url", &destination.registry, Host::parse(&destination.registry)),
            Api::Legacy(legacy) => {
                if let Some(callback) = &legacy.callback {
                    check("callback", callback, url_host(callback));
                }
                check("gm_registry_host", legacy.registry(), Host::parse(legacy.registry()));
                legacy.kafka_hosts.iter().for_each(|broker| check("kafka_hosts", broker, Host::parse(broker)));
            }
        }
        refused
    }
}

/// A parsed v2 create.
pub fn parse_v2(app_id: &str, build_id: &str, body: &[u8]) -> Result<BuildSpec, ValidationError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ValidationError::new("body", format!("malformed JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(ValidationError::new("body", "must be a JSON object"));
    };
    let webhooks = match body.get("webhooks") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(ValidationError::new("webhooks", "must be an object with 'status' and 'logs'")),
    };
    let status_targets = targets(&webhooks, "status")?;
    let log_targets = targets(&webhooks, "logs")?;
    let metadata = optional_string(&body, "metadata")?.unwrap_or_default();
    at_most("metadata", &metadata, limits::TEXT_BYTES)?;
    let human_readable_info = optional_string(&body, "human_readable_info")?.unwrap_or_default();
    at_most("human_readable_info", &human_readable_info, limits::TEXT_BYTES)?;
    let arguments = arguments(&body)?;

    let source_url = nested_url(&body, "source", &["url"])?;
    at_most("source.url", &source_url, limits::SOURCE_URL_BYTES)?;
    let source = match Url::parse(&source_url) {
        Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(ValidationError::new("source.url", "has no host"));
            }
            Source::Http { url: url.to_string() }
        }
        Ok(url) if url.scheme() == "docker" => {
            let image = DockerImage::parse_url(&source_url).map_err(|e| ValidationError::new("source.url", e.to_string()))?;
            maskable(&image, "source.url")?;
            Source::Docker { image }
        }
        Ok(url) => {
            let scheme = url.scheme();
            return Err(ValidationError::new("source.url", format!("scheme '{scheme}' is not supported; use http, https or docker")));
        }
        Err(_) => return Err(ValidationError::new("source.url", "is not a URL")),
    };

    let destination_url = nested_url(&body, "destination", &["url", "image"])?;
    at_most("destination.url", &destination_url, limits::SOURCE_URL_BYTES)?;
    if !destination_url.trim_start().to_ascii_lowercase().starts_with("docker://") {
        return Err(ValidationError::new("destination.url", "must be a docker:// image"));
    }
    let destination = DockerImage::parse_url(&destination_url).map_err(|e| ValidationError::new("destination.url", e.to_string()))?;
    maskable(&destination, "destination.url")?;

    Ok(BuildSpec {
        api: Api::V2 { app_id: app_id.to_owned(), build_id: build_id.to_owned(), destination },
        source,
        arguments,
        metadata,
        human_readable_info,
        status_targets,
        log_targets,
        rejection: None,
    })
}

/// A `400` naming `field` when the image's registry password is too short to be masked.
fn maskable(image: &DockerImage, field: &'static str) -> Result<(), ValidationError> {
    match &image.credentials {
        Some(credentials) => credentials.check_maskable().map_err(|reason| ValidationError::new(field, reason)),
        None => Ok(()),
    }
}

fn targets(webhooks: &Map<String, Value>, name: &str) -> Result<Vec<WebhookTarget>, ValidationError> {
    let field = format!("webhooks.{name}");
    let raw: Vec<&str> = match webhooks.get(name) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| item.as_str().ok_or_else(|| ValidationError::new(format!("{field}[{i}]"), "must be a string")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ValidationError::new(field, "must be a string or an array of strings")),
    };
    if raw.len() > limits::TARGETS {
        return Err(ValidationError::new(field, format!("has {} targets; at most {} are taken", raw.len(), limits::TARGETS)));
    }
    let many = raw.len() > 1 || matches!(webhooks.get(name), Some(Value::Array(_)));
    raw.into_iter()
        .enumerate()
        .map(|(i, target)| {
            let at = if many { format!("{field}[{i}]") } else { field.clone() };
            at_most(&at, target, limits::TARGET_BYTES)?;
            WebhookTarget::parse(target).map_err(|e| ValidationError::new(at, e.to_string()))
        })
        .collect()
}

fn optional_string(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ValidationError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ValidationError::new(field, "must be a string")),
    }
}

fn nested_url(body: &Map<String, Value>, object: &str, keys: &[&str]) -> Result<String, ValidationError> {
    let field = format!("{object}.{}", keys[0]);
    let Some(value) = body.get(object).filter(|v| !v.is_null()) else {
        return Err(ValidationError::new(field, "is required"));
    };
    let Value::Object(map) = value else {
        return Err(ValidationError::new(object, format!("must be an object with '{}'", keys[0])));
    };
    match keys.iter().find_map(|k| map.get(*k).filter(|v| !v.is_null())) {
        None => Err(ValidationError::new(field, "is required")),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(Value::String(_)) => Err(ValidationError::new(field, "is empty")),
        Some(_) => Err(ValidationError::new(field, "must be a string")),
    }
}

/// Whether `value` can be sent as an HTTP header's value (RFC 9110 §5.5, as the HTTP client
/// takes it): visible ASCII, spaces and tabs; never a line break or another control character.
pub fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// A build argument name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_argument_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn arguments(body: &Map<String, Value>) -> Result<BTreeMap<String, String>, ValidationError> {
    let map = match body.get("arguments") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ValidationError::new("arguments", "must be an object of string values")),
    };
    if map.len() > limits::ARGUMENTS {
        return Err(ValidationError::new("arguments", format!("has {} arguments; at most {} are taken", map.len(), limits::ARGUMENTS)));
    }
    let mut total = 0;
    map.iter()
        .map(|(name, value)| {
            if name.chars().count() > limits::ARGUMENT_NAME_CHARS {
                let problem = format!("an argument's name is longer than {} characters", limits::ARGUMENT_NAME_CHARS);
                return Err(ValidationError::new("arguments", problem));
            }
            if !is_argument_name(name) {
                return Err(ValidationError::new(format!("arguments.{name}"), "is not a valid name ([A-Za-z_][A-Za-z0-9_]*)"));
            }
            let Value::String(value) = value else {
                return Err(ValidationError::new(format!("arguments.{name}"), "must be a string"));
            };
            at_most(&format!("arguments.{name}"), value, limits::ARGUMENT_VALUE_BYTES)?;
            total += name.len() + value.len();
            if total > limits::ARGUMENTS_BYTES {
                let problem = format!("names and values come to more than {} bytes", limits::ARGUMENTS_BYTES);
                return Err(ValidationError::new("arguments", problem));
            }
            Ok((name.clone(), value.clone()))
        })
        .collect()
}

/// What the legacy create needs from the settings.
pub struct LegacyContext<'a> {
    pub shuttle_host: &'a Url,
}

/// A legacy create: the build, and the inline sources to store if it carried a `data:` URI.
#[derive(Debug)]
pub struct LegacyCreate {
    pub spec: BuildSpec,
    pub inline_source: Option<Vec<u8>>,
}

/// Parses the legacy `POST /` body. Only two inputs are refused (SPEC §3); anything else wrong
/// is accepted and recorded as the build's `rejection`, so the build fails with that reason.
pub fn parse_legacy(body: &[u8], context: &LegacyContext<'_>) -> Result<LegacyCreate, LegacyRejection> {
    let body = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => return Err(LegacyRejection::MissingFields),
    };
    let given = |field: &str| -> Option<String> {
        match body.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    };
    let required = ["app", "space", "app_uuid", "build_uuid", "gm_registry_host", "gm_registry_repo"];
    if required.iter().any(|f| given(f).is_none()) || (given("sources").is_none() && given("docker_registry").is_none()) {
        return Err(LegacyRejection::MissingFields);
    }
    let build_uuid = parse_uuid(&given("build_uuid").unwrap_or_default()).ok_or(LegacyRejection::InvalidBuildUuid)?;

    // An over-long field fails the build with the reason (a legacy request is refused only for
    // its two 400s), and is kept cut to its bound, so that the build can be stored and told.
    let mut problems = Vec::new();
    for (field, _) in limits::LEGACY_FIELDS {
        let Some(value) = given(field) else { continue };
        if let Some(limit) = limits::legacy_field(field, &value).filter(|limit| value.len() > *limit) {
            problems.push(format!("{field} is {} bytes; at most {limit} are taken", value.len()));
        }
    }
    let text = |field: &str| -> Option<String> {
        given(field).map(|value| match limits::legacy_field(field, &value) {
            Some(limit) => cut_to(value, limit),
            None => value,
        })
    };
    let (app, space, app_uuid) = (text("app").unwrap_or_default(), text("space").unwrap_or_default(), text("app_uuid").unwrap_or_default());

    if !app.chars().all(|c| c.is_ascii_alphanumeric()) {
        problems.push(format!("app '{app}' must be letters and digits only"));
    }
    if parse_uuid(&app_uuid).is_none() {
        problems.push("app_uuid is not a UUID".to_owned());
    }
    let build_number = match body.get("build_number") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(Value::String(s)) if s.trim().parse::<u64>().is_ok() => s.trim().parse().ok(),
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(_) => {
            problems.push("build_number must be a whole number".to_owned());
            None
        }
    };

    let docker_override = match (text("docker_login"), text("docker_password")) {
        (None, None) => None,
        (login, password) => Some(RegistryCredentials { username: login.unwrap_or_default(), password: password.unwrap_or_default() }),
    };
    let mut inline_source = None;
    let source = match (text("sources"), text("docker_registry")) {
        (Some(sources), _) => match legacy_source(&sources, context, docker_override.clone()) {
            Ok((source, inline)) => {
                inline_source = inline;
                source
            }
            Err(reason) => {
                problems.push(reason.clone());
                Source::Invalid { reason }
            }
        },
        (None, Some(reference)) => match DockerImage::parse_reference(&reference) {
            Ok(mut image) => {
                image.credentials = docker_override.clone();
                Source::Docker { image }
            }
            Err(e) => {
                let reason = format!("docker_registry: {e}");
                problems.push(reason.clone());
                Source::Invalid { reason }
            }
        },
        (None, None) => unreachable!("checked as a required field above"),
    };

    let registry_credentials = match legacy_registry_auth(body.get("gm_registry_auth")) {
        Ok(credentials) => credentials,
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    if let Some(Err(reason)) = registry_credentials.as_ref().map(RegistryCredentials::check_maskable) {
        problems.push(format!("gm_registry_auth: {reason}"));
    }
    if let Source::Docker { image: DockerImage { credentials: Some(credentials), .. } } = &source {
        if let Err(reason) = credentials.check_maskable() {
            problems.push(format!("sources: {reason}"));
        }
    }

    let arguments = match body.get("build_args") {
        Some(Value::Object(args)) if args.len() > limits::ARGUMENTS => {
            problems.push(format!("build_args has {} arguments; at most {} are taken", args.len(), limits::ARGUMENTS));
            BTreeMap::new()
        }
        Some(Value::Object(args)) => args
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (sanitise_argument_name(k), value)
            })
            .filter(|(name, _)| !name.is_empty())
            .collect(),
        Some(Value::Null) | None => arguments_from_build_options(&text("build_options").unwrap_or_default()),
        Some(_) => {
            problems.push("build_args must be an object".to_owned());
            BTreeMap::new()
        }
    };
    let over_bound = |(name, value): (&String, &String)| {
        name.chars().count() > limits::ARGUMENT_NAME_CHARS || value.len() > limits::ARGUMENT_VALUE_BYTES
    };
    let all_bytes: usize = arguments.iter().map(|(name, value)| name.len() + value.len()).sum();
    let arguments = if arguments.iter().any(over_bound) || all_bytes > limits::ARGUMENTS_BYTES {
        problems.push(format!(
            "build_args: an argument is over its bound (a name {} characters, a value {} bytes, {} bytes in all)",
            limits::ARGUMENT_NAME_CHARS,
            limits::ARGUMENT_VALUE_BYTES,
            limits::ARGUMENTS_BYTES
        ));
        BTreeMap::new()
    } else {
        arguments
    };

    let callback = text("callback");
    if let Some(url) = &callback {
        if !Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            problems.push(format!("callback '{}' is not an http(s) URL", crate::redact::redact(url)));
        }
    }
    let mut registry_host = text("gm_registry_host").unwrap_or_default();
    let authority_end = registry_host.find('/').unwrap_or(registry_host.len());
    if let Some(userinfo_end) = registry_host[..authority_end].rfind('@') {
        // Never echoed, nor kept where the build's log would show it: the image names do.
        problems.push("gm_registry_host holds credentials before an @: give them in gm_registry_auth".to_owned());
        registry_host.replace_range(..=userinfo_end, "");
    }
    let callback_auth = text("callback_auth");
    if callback_auth.as_deref().is_some_and(|auth| !is_header_value(auth)) {
        // Never echoed: it is a credential. The callback cannot carry it, so it is not sent.
        problems.push(
            "callback_auth is not a valid HTTP header value (it holds a line break or a control character): the callback cannot be sent"
                .to_owned(),
        );
    }
    let mut kafka_hosts: Vec<String> =
        text("kafka_hosts").map(|h| h.split(',').map(|b| b.trim().to_owned()).filter(|b| !b.is_empty()).collect()).unwrap_or_default();
    if kafka_hosts.len() > limits::TARGETS {
        problems.push(format!("kafka_hosts has {} brokers; at most {} are taken", kafka_hosts.len(), limits::TARGETS));
        kafka_hosts.truncate(limits::TARGETS);
    }

    let legacy = LegacyBuild {
        build_uuid,
        build_number,
        sha: text("sha"),
        branch: text("branch"),
        repo: text("repo"),
        org: text("org"),
        callback,
        callback_auth,
        kafka_hosts,
        registry_host,
        registry_repo: text("gm_registry_repo").unwrap_or_default(),
        registry_credentials,
        app: app.clone(),
        space: space.clone(),
        app_uuid,
    };
    let human_readable_info = match (&legacy.repo, &legacy.sha) {
        (Some(repo), Some(sha)) => format!("{app}-{space} - {repo} sha #{sha}"),
        _ => format!("{app}-{space}"),
    };
    Ok(LegacyCreate {
        spec: BuildSpec {
            api: Api::Legacy(legacy),
            source,
            arguments,
            metadata: format!("{app}-{space}"),
            human_readable_info,
            status_targets: Vec::new(),
            log_targets: Vec::new(),
            rejection: (!problems.is_empty()).then(|| problems.join("; ")),
        },
        inline_source,
    })
}

type LegacySource = (Source, Option<Vec<u8>>);

fn legacy_source(sources: &str, context: &LegacyContext<'_>, credentials: Option<RegistryCredentials>) -> Result<LegacySource, String> {
    if sources.starts_with("data:") {
        let bytes = decode_data_uri(sources).map_err(|e| format!("sources: {e}"))?;
        return Ok((Source::Inline { bytes: bytes.len() as u64 }, Some(bytes)));
    }
    let url = Url::parse(sources).map_err(|_| format!("sources '{}' is not a URL", crate::redact::redact(sources)))?;
    match url.scheme() {
        "http" | "https" => match rebuild_source_id(&url, context.shuttle_host) {
            Some(source_id) => Ok((Source::Rebuild { source_id }, None)),
            None => Ok((Source::Http { url: url.to_string() }, None)),
        },
        "docker" => {
            let mut image = DockerImage::parse_url(sources).map_err(|e| format!("sources: {e}"))?;
            if credentials.is_some() {
                image.credentials = credentials;
            }
            Ok((Source::Docker { image }, None))
        }
        other => Err(format!("sources: scheme '{other}' is not supported; use http, https, data: or docker")),
    }
}

/// Legacy build argument names are sanitised to `[A-Za-z0-9_]` by removing every other
/// character, as the shipped gen 2 did (`@#$JLKS][w]e[232` → `JLKSwe232`), so apps keep the
/// `ARG` names they had; a name left empty is dropped by the caller.
pub fn sanitise_argument_name(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// `gm_registry_auth`: `{username, password}` (or that object as a JSON string) logs in for the
/// push; absent, `null`, `{}` or empty strings mean no login, as gen 2 did (SPEC §3).
fn legacy_registry_auth(auth: Option<&Value>) -> Result<Option<RegistryCredentials>, String> {
    const SHAPE: &str = "gm_registry_auth must be {\"username\": \"…\", \"password\": \"…\"}";
    let parsed;
    let auth = match auth {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(None),
        Some(Value::String(text)) => {
            parsed = serde_json::from_str::<Value>(text).map_err(|_| SHAPE.to_owned())?;
            &parsed
        }
        Some(other) => other,
    };
    let Value::Object(fields) = auth else { return Err(SHAPE.to_owned()) };
    let field = |name: &str| match fields.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(value)) => Ok(value.as_str()),
        Some(_) => Err(SHAPE.to_owned()),
    };
    match (field("username")?, field("password")?) {
        ("", "") => Ok(None),
        ("", _) | (_, "") => Err("gm_registry_auth needs both a username and a password (or neither, for no login)".to_owned()),
        (username, password) => Ok(Some(RegistryCredentials { username: username.to_owned(), password: password.to_owned() })),
    }
}

/// The Jenkins-era `build_options`: Dockerfile lines `ARG K="v"` (or `ARG K=v`) become arguments.
pub fn arguments_from_build_options(build_options: &str) -> BTreeMap<String, String> {
    build_options
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let (keyword, rest) = line.split_once(char::is_whitespace)?;
            if !keyword.eq_ignore_ascii_case("ARG") {
                return None;
            }
            let (name, value) = rest.trim().split_once('=')?;
            let name = sanitise_argument_name(name.trim());
            (!name.is_empty()).then(|| (name, unquote(value.trim())))
        })
        .collect()
}

fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"') else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
