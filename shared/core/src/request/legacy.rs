//! The legacy create (`POST /`, SPEC §3): refused only for its two `400`s; anything else wrong
//! is accepted and recorded as the build's `rejection`, so the build fails with that reason.

use std::collections::BTreeMap;

use serde_json::Value;
use url::Url;

use super::limits::{self, cut_to};
use super::{is_header_value, Api, BuildSpec, LegacyBuild};
use crate::error::LegacyRejection;
use crate::ids::parse_uuid;
use crate::source::{decode_data_uri, rebuild_source_id, DockerImage, RegistryCredentials, Source};

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
