//! The two create request shapes, parsed into one [`BuildSpec`] (parse, don't validate): the v2
//! create here, the legacy one in `legacy`, the bounds of their fields in `limits`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;
use uuid::Uuid;

use crate::error::ValidationError;
use crate::ids::legacy_job_name;
use crate::netguard::{known_bad, AllowedNetworks, Host, HostRefusal};
use crate::redact::redact;
use crate::source::{DockerImage, RegistryCredentials, Source};
use crate::webhook::WebhookTarget;

mod legacy;
pub mod limits;

pub use legacy::{arguments_from_build_options, parse_legacy, sanitise_argument_name, LegacyContext, LegacyCreate};
use limits::at_most;

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

#[cfg(test)]
mod tests;
