//! Property-based fuzzing of everything in the domain that parses outside input (issue 6): the
//! two create bodies, webhook targets, poll messages, `data:` URIs and redaction.
//!
//! Each property runs `PROPTEST_CASES` cases (proptest's default, 256, when unset): a short run
//! in `make test`, a long one with `bench/fuzz.sh`. Inputs are both arbitrary bytes and JSON
//! built near the real schemas (the field names, with values of every type), so most cases get
//! past the JSON parser. URLs carry a canary password in their userinfo; no error message and
//! no redacted text may show it.

use std::collections::BTreeMap;

use base64::Engine;
use proptest::prelude::*;
use serde_json::{Map, Value};
use shuttle_core::ids::parse_uuid;
use shuttle_core::ports::PollMessage;
use shuttle_core::redact::redact;
use shuttle_core::request::{is_argument_name, parse_legacy, parse_v2, Api, BuildSpec, LegacyContext};
use shuttle_core::source::{decode_data_uri, DataUriError, DockerImage, Source};
use shuttle_core::webhook::WebhookTarget;
use url::Url;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// A distinctive secret: what must never be shown. Every generated password contains one.
fn canary() -> impl Strategy<Value = String> {
    "[A-Z0-9]{8}".prop_map(|tail| format!("CANARY{tail}"))
}

/// A password around a canary, with the characters a URL's userinfo may hold literally
/// (RFC 3986 unreserved and sub-delims) or percent-encoded.
fn password() -> impl Strategy<Value = (String, String)> {
    let around = "([A-Za-z0-9._~!$&'()*+,;=\\[\\]|^{}`-]|%[0-9A-F]{2}){0,3}";
    (around, canary(), around).prop_map(|(before, canary, after)| (format!("{before}{canary}{after}"), canary))
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,6}){0,2}",
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| format!("10.0.{a}.{b}")),
        Just("[::1]".to_owned()),
        Just("localhost".to_owned()),
    ]
}

/// `[:port]`, sometimes out of range or empty.
fn port() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (1u32..=65535).prop_map(|p| format!(":{p}")),
        1 => Just(String::new()),
        1 => prop_oneof![Just(":".to_owned()), (65536u32..1_000_000).prop_map(|p| format!(":{p}"))],
    ]
}

/// A URL of `scheme` whose userinfo holds a canary password (or a canary token alone).
/// Yields the URL and the canary.
fn secret_url(scheme: impl Strategy<Value = String>, path: impl Strategy<Value = String>) -> impl Strategy<Value = (String, String)> {
    (scheme, "[a-z]{1,8}", password(), any::<bool>(), host(), port(), path).prop_map(
        |(scheme, user, (password, canary), token, host, port, path)| {
            let userinfo = if token { password } else { format!("{user}:{password}") };
            (format!("{scheme}://{userinfo}@{host}{port}{path}"), canary)
        },
    )
}

fn http_scheme() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just("https".to_owned()), 3 => Just("http".to_owned()), 1 => Just("HTTPS".to_owned()), 1 => "[a-z]{1,6}"]
}

fn url_path() -> impl Strategy<Value = String> {
    prop_oneof!["(/[A-Za-z0-9._~-]{0,10}){0,3}", "/[^\\s]{0,20}", "(\\?[a-z]=[a-z0-9]{0,4})?(#[a-z]{0,4})?"]
}

/// `/repo[:tag]` paths of an image, mostly valid.
fn image_path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "/[a-z0-9]{1,8}(/[a-z0-9._-]{1,8}){0,2}(:[A-Za-z0-9._-]{1,12})?",
        1 => "/[^\\s]{0,16}",
    ]
}

fn secret_http_url() -> impl Strategy<Value = (String, String)> {
    secret_url(http_scheme(), url_path())
}

fn secret_docker_url() -> impl Strategy<Value = (String, String)> {
    secret_url(prop_oneof![4 => Just("docker".to_owned()), 1 => Just("DOCKER".to_owned())], image_path())
}

fn secret_kafka_url(topic: impl Strategy<Value = String>) -> impl Strategy<Value = (String, String)> {
    secret_url(Just("kafka".to_owned()), topic.prop_map(|t| format!("/{t}")))
}

fn kafka_topic() -> impl Strategy<Value = String> {
    prop_oneof![8 => "[A-Za-z0-9._-]{1,20}", 1 => "[^\\s,)]{0,10}"]
}

/// `failover(kafka://…, …)`: members on one topic (or, now and then, not), sometimes broken.
fn secret_failover() -> impl Strategy<Value = (String, String)> {
    (kafka_topic(), kafka_topic(), prop::collection::vec((secret_kafka_url(Just(String::new())), any::<bool>()), 1..4), any::<u8>())
        .prop_map(|(topic, other_topic, members, shape)| {
            let canary = members[0].0 .1.clone();
            let list: Vec<String> = members
                .iter()
                .map(|((url, _), same)| format!("{url}{}", if *same || shape % 8 != 0 { &topic } else { &other_topic }))
                .collect();
            let separator = if shape % 2 == 0 { ", " } else { "," };
            let close = if shape % 16 == 0 { "" } else { ")" };
            (format!("failover({}{close}", list.join(separator)), canary)
        })
}

/// Any webhook target text, with the canary it holds (all of them hold one).
fn secret_target() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        3 => secret_http_url(),
        2 => secret_kafka_url(kafka_topic()),
        2 => secret_failover(),
        1 => secret_docker_url(),
    ]
}

/// Any JSON value: every type, nested, long strings, unicode.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[a-z0-9 :/@.-]{0,20}".prop_map(Value::String),
        (0usize..20_000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}|.{0,4}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON value for a field that holds a URL: the URL (with a canary) most of the time.
fn url_value(url: impl Strategy<Value = (String, String)>) -> impl Strategy<Value = Hiding> {
    prop_oneof![
        9 => url.prop_map(|(url, canary)| (Value::String(url), vec![canary])),
        1 => any_json().prop_map(|v| (v, Vec::new())),
    ]
}

/// `webhooks.status` / `webhooks.logs`: a target, a list of them, or anything.
fn targets_value() -> impl Strategy<Value = Hiding> {
    prop_oneof![
        3 => secret_target().prop_map(|(t, c)| (Value::String(t), vec![c])),
        3 => prop::collection::vec(secret_target(), 0..3).prop_map(|ts| {
            let canaries = ts.iter().map(|(_, c)| c.clone()).collect();
            (Value::Array(ts.into_iter().map(|(t, _)| Value::String(t)).collect()), canaries)
        }),
        1 => any_json().prop_map(|v| (v, Vec::new())),
    ]
}

/// A JSON value and the canaries it holds.
type Hiding = (Value, Vec<String>);
/// A field of a body: its name, and its value when present.
type Field = (&'static str, Option<Hiding>);

fn object(fields: Vec<Field>) -> Hiding {
    let mut map = Map::new();
    let mut canaries = Vec::new();
    for (name, value) in fields {
        if let Some((value, mut hidden)) = value {
            map.insert(name.to_owned(), value);
            canaries.append(&mut hidden);
        }
    }
    (Value::Object(map), canaries)
}

fn field(name: &'static str, present: f64, value: impl Strategy<Value = Hiding> + 'static) -> BoxedStrategy<Field> {
    prop::option::weighted(present, value).prop_map(move |v| (name, v)).boxed()
}

fn plain(value: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = Hiding> {
    value.prop_map(|v| (v, Vec::new()))
}

fn text_or_anything(text: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Hiding> {
    prop_oneof![12 => plain(text.prop_map(Value::String)), 1 => plain(any_json())].boxed()
}

/// A v2 create body near the schema of SPEC §2, and the canaries it holds.
fn v2_body() -> impl Strategy<Value = Hiding> {
    let webhooks = prop_oneof![
        9 => vec![field("status", 0.7, targets_value()), field("logs", 0.7, targets_value())].prop_map(object),
        1 => plain(any_json()),
    ];
    let arguments = prop_oneof![
        9 => prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,8}|.{0,6}", prop_oneof![3 => any::<String>().prop_map(Value::String), 1 => any_json()], 0..5)
            .prop_map(|m| (Value::Object(m.into_iter().collect()), Vec::new())),
        1 => plain(any_json()),
    ];
    let source = prop_oneof![
        9 => vec![field("url", 0.97, url_value(prop_oneof![secret_http_url(), secret_docker_url()]))].prop_map(object),
        1 => plain(any_json()),
    ];
    let destination = prop_oneof![
        9 => vec![field("url", 0.7, url_value(secret_docker_url())), field("image", 0.7, url_value(secret_docker_url()))].prop_map(object),
        1 => plain(any_json()),
    ];
    vec![
        field("webhooks", 0.7, webhooks),
        field("metadata", 0.7, text_or_anything(any::<String>())),
        field("human_readable_info", 0.7, text_or_anything(any::<String>())),
        field("arguments", 0.7, arguments),
        field("source", 0.97, source),
        field("destination", 0.97, destination),
        field("unknown", 0.7, plain(any_json())),
    ]
    .prop_map(object)
}

fn uuid_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
        1 => any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string().to_uppercase()),
        1 => any::<u128>().prop_map(|n| Uuid::from_u128(n).simple().to_string()),
        1 => "[0-9a-f-]{30,40}|.{0,40}",
    ]
}

const SHUTTLE_HOST: &str = "https://shuttle.example.com";

/// A legacy `POST /` body near the fields of SPEC §3, and the canaries it holds.
fn legacy_body() -> impl Strategy<Value = Hiding> {
    let data_uri = prop_oneof![
        any::<Vec<u8>>().prop_map(|b| format!("data:base64,{}", base64::engine::general_purpose::STANDARD.encode(b))),
        any::<Vec<u8>>().prop_map(|b| format!("data:application/zip;base64,{}", base64::engine::general_purpose::STANDARD.encode(b))),
        "data:[^,]{0,10}(,.{0,20})?",
    ];
    let sources = prop_oneof![
        3 => secret_http_url().prop_map(|(u, c)| (Value::String(u), vec![c])),
        2 => secret_docker_url().prop_map(|(u, c)| (Value::String(u), vec![c])),
        2 => plain(data_uri.prop_map(Value::String)),
        1 => plain(any::<u128>().prop_map(|n| Value::String(format!("{SHUTTLE_HOST}/{}", Uuid::from_u128(n))))),
        1 => plain(any_json()),
    ];
    let build_number = prop_oneof![
        plain(any::<u64>().prop_map(Value::from)),
        plain(any::<u64>().prop_map(|n| Value::String(format!(" {n} ")))),
        plain(any_json()),
    ];
    let build_args = prop_oneof![
        9 => plain(prop::collection::btree_map(".{0,8}", any_json(), 0..5).prop_map(|m| Value::Object(m.into_iter().collect()))),
        1 => plain(any_json()),
    ];
    let build_options = "((ARG|arg|RUN) [A-Za-z_ -]{0,6}=(\"[^\"]{0,6}\\\\\"?\"|[a-z]{0,4})?\n){0,4}";
    let registry_auth = prop_oneof![
        2 => (".{0,8}", password()).prop_map(|(u, (p, c))| (serde_json::json!({"username": u, "password": p}), vec![c])),
        1 => (".{0,8}", password()).prop_map(|(u, (p, c))| (Value::String(serde_json::json!({"username": u, "password": p}).to_string()), vec![c])),
        1 => plain(any_json()),
    ];
    vec![
        field("app", 0.97, text_or_anything("[a-z0-9]{1,10}|[a-z-]{1,10}")),
        field("space", 0.97, text_or_anything("[a-z0-9-]{1,10}")),
        field("app_uuid", 0.97, text_or_anything(uuid_text())),
        field("build_uuid", 0.97, text_or_anything(uuid_text())),
        field("gm_registry_host", 0.97, text_or_anything("[a-z.]{1,12}(:[0-9]{2,5})?")),
        field("gm_registry_repo", 0.97, text_or_anything("[a-z]{1,10}")),
        field("gm_registry_auth", 0.7, registry_auth),
        field("sources", 0.97, sources),
        field("docker_registry", 0.7, text_or_anything("[a-z.]{1,10}/[a-z/]{1,10}(:[a-z0-9.]{1,5})?|.{0,12}")),
        field("docker_login", 0.7, text_or_anything("[a-z]{0,8}")),
        field("docker_password", 0.7, password().prop_map(|(p, c)| (Value::String(p), vec![c]))),
        field("build_number", 0.7, build_number),
        field("build_args", 0.7, build_args),
        field("build_options", 0.7, text_or_anything(build_options)),
        field("callback", 0.7, url_value(secret_http_url())),
        field("callback_auth", 0.7, text_or_anything(".{0,20}")),
        field("kafka_hosts", 0.7, text_or_anything("([a-z0-9.]{0,8}(:[0-9]{1,5})?, ?){0,3}")),
        field("sha", 0.7, text_or_anything("[0-9a-f]{7,40}")),
        field("repo", 0.7, text_or_anything("https://[a-z.]{1,10}/[a-z/]{1,10}")),
        field("branch", 0.7, text_or_anything(".{0,10}")),
        field("org", 0.7, text_or_anything(".{0,10}")),
    ]
    .prop_map(object)
}

/// Serialised JSON with a few bytes changed, truncated or both: the parser's edges.
fn mutated(json: impl Strategy<Value = Hiding>) -> impl Strategy<Value = Vec<u8>> {
    (json, prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4), prop::option::of(any::<prop::sample::Index>()))
        .prop_map(|((value, _), edits, cut)| {
            let mut bytes = serde_json::to_vec(&value).expect("a JSON value serialises");
            for (at, byte) in edits {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        })
}

// ---------------------------------------------------------------------------------------------
// Invariants of a parsed request
// ---------------------------------------------------------------------------------------------

fn assert_no_canary(text: &str, canaries: &[String]) -> Result<(), TestCaseError> {
    for canary in canaries {
        prop_assert!(!text.contains(canary.as_str()), "{canary} is shown in: {text}");
    }
    Ok(())
}

fn assert_valid_image(image: &DockerImage) -> Result<(), TestCaseError> {
    prop_assert!(!image.registry.is_empty() && !image.registry.contains(['@', '/']), "registry {:?}", image.registry);
    let repository_ok = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/'))
            && !s.starts_with('/')
            && !s.ends_with('/')
            && !s.contains("//")
    };
    prop_assert!(repository_ok(&image.repository), "repository {:?}", image.repository);
    prop_assert!(
        (1..=128).contains(&image.tag.len()) && image.tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
        "tag {:?}",
        image.tag
    );
    Ok(())
}

fn assert_valid_http_url(url: &str) -> Result<(), TestCaseError> {
    let parsed = Url::parse(url).map_err(|e| TestCaseError::fail(format!("{url:?} does not parse: {e}")))?;
    prop_assert!(matches!(parsed.scheme(), "http" | "https"), "{url}");
    prop_assert!(parsed.host_str().is_some_and(|h| !h.is_empty()), "{url} has no host");
    Ok(())
}

fn assert_valid_target(target: &WebhookTarget) -> Result<(), TestCaseError> {
    match target {
        WebhookTarget::Http { url } => assert_valid_http_url(url)?,
        WebhookTarget::Kafka { brokers, topic } => {
            prop_assert!(!brokers.is_empty());
            for broker in brokers {
                let (host, port) = broker.rsplit_once(':').ok_or_else(|| TestCaseError::fail(format!("broker {broker:?} has no port")))?;
                prop_assert!(!host.is_empty() && port.parse::<u16>().is_ok(), "broker {broker:?}");
                prop_assert!(!broker.contains('@'), "broker {broker:?} keeps credentials");
            }
            prop_assert!(
                (1..=249).contains(&topic.len()) && topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
                "topic {topic:?}"
            );
        }
    }
    // What was parsed once parses again to the same target (it is stored and re-read).
    prop_assert_eq!(&WebhookTarget::parse(&target.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?, target);
    Ok(())
}

fn assert_round_trips(spec: &BuildSpec) -> Result<(), TestCaseError> {
    let stored = serde_json::to_vec(spec).expect("a spec serialises");
    let read: BuildSpec =
        serde_json::from_slice(&stored).map_err(|e| TestCaseError::fail(format!("a stored spec does not read back: {e}")))?;
    prop_assert_eq!(&read, spec);
    Ok(())
}

fn check_v2(app_id: &str, build_id: &str, body: &[u8], canaries: &[String]) -> Result<(), TestCaseError> {
    let spec = match parse_v2(app_id, build_id, body) {
        Ok(spec) => spec,
        Err(error) => {
            prop_assert!(!error.field.is_empty());
            return assert_no_canary(&error.to_string(), canaries);
        }
    };
    let Api::V2 { app_id: parsed_app, build_id: parsed_build, destination } = &spec.api else {
        return Err(TestCaseError::fail("a v2 create parsed as legacy"));
    };
    prop_assert_eq!((parsed_app.as_str(), parsed_build.as_str()), (app_id, build_id));
    assert_valid_image(destination)?;
    match &spec.source {
        Source::Http { url } => assert_valid_http_url(url)?,
        Source::Docker { image } => assert_valid_image(image)?,
        other => return Err(TestCaseError::fail(format!("a v2 source is never {other:?}"))),
    }
    for target in spec.status_targets.iter().chain(&spec.log_targets) {
        assert_valid_target(target)?;
        assert_no_canary(&target.redacted(), canaries)?;
    }
    prop_assert!(spec.arguments.keys().all(|k| is_argument_name(k)), "{:?}", spec.arguments);
    prop_assert_eq!(&spec.rejection, &None);
    let again = parse_v2(app_id, build_id, body).ok();
    prop_assert_eq!(again.as_ref(), Some(&spec), "the same body parses the same");
    assert_round_trips(&spec)
}

fn check_legacy(body: &[u8], canaries: &[String]) -> Result<(), TestCaseError> {
    let shuttle_host = Url::parse(SHUTTLE_HOST).unwrap();
    let Ok(create) = parse_legacy(body, &LegacyContext { shuttle_host: &shuttle_host }) else {
        // The two refusals are fixed texts: nothing to check but that there was no panic.
        return Ok(());
    };
    let spec = &create.spec;
    let Api::Legacy(legacy) = &spec.api else {
        return Err(TestCaseError::fail("a legacy create parsed as v2"));
    };
    let json: Value = serde_json::from_slice(body).expect("accepted, so JSON");
    let given_uuid = json["build_uuid"].as_str().map(str::trim).unwrap_or_default();
    prop_assert_eq!(Some(legacy.build_uuid), parse_uuid(given_uuid), "build_uuid {:?}", given_uuid);
    prop_assert_eq!(&spec.metadata, &format!("{}-{}", legacy.app, legacy.space));
    prop_assert!(spec.arguments.keys().all(|k| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')), "{:?}", spec.arguments);
    prop_assert!(legacy.kafka_hosts.iter().all(|h| !h.is_empty() && h.trim() == h && !h.contains(',')), "{:?}", legacy.kafka_hosts);
    match (&spec.source, &create.inline_source) {
        (Source::Inline { bytes }, Some(inline)) => prop_assert!(*bytes == inline.len() as u64 && !inline.is_empty()),
        (Source::Inline { .. }, None) => return Err(TestCaseError::fail("inline sources without their bytes")),
        (_, Some(_)) => return Err(TestCaseError::fail("bytes without inline sources")),
        (Source::Invalid { reason }, None) => {
            prop_assert!(spec.rejection.is_some(), "an invalid source must fail the build");
            assert_no_canary(reason, canaries)?;
        }
        (Source::Docker { image }, None) => assert_valid_image(image)?,
        (Source::Http { url }, None) => assert_valid_http_url(url)?,
        (Source::Rebuild { .. }, None) => {}
    }
    match &spec.rejection {
        Some(reason) => assert_no_canary(reason, canaries)?,
        None => {
            prop_assert!(legacy.app.chars().all(|c| c.is_ascii_alphanumeric()), "app {:?}", legacy.app);
            prop_assert!(parse_uuid(&legacy.app_uuid).is_some(), "app_uuid {:?}", legacy.app_uuid);
            if let Some(callback) = &legacy.callback {
                assert_valid_http_url(callback)?;
            }
        }
    }
    assert_round_trips(spec)
}

fn app_and_build() -> impl Strategy<Value = (String, String)> {
    ("[A-Za-z0-9._-]{1,20}", "[A-Za-z0-9._-]{1,20}")
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn fuzz_v2_body_bytes((app_id, build_id) in app_and_build(), body in prop_oneof![any::<Vec<u8>>(), mutated(v2_body())]) {
        check_v2(&app_id, &build_id, &body, &[])?;
    }

    #[test]
    fn fuzz_v2_body_json((app_id, build_id) in app_and_build(), (body, canaries) in v2_body()) {
        check_v2(&app_id, &build_id, body.to_string().as_bytes(), &canaries)?;
    }

    #[test]
    fn fuzz_legacy_body_bytes(body in prop_oneof![any::<Vec<u8>>(), mutated(legacy_body())]) {
        check_legacy(&body, &[])?;
    }

    #[test]
    fn fuzz_legacy_body_json((body, canaries) in legacy_body()) {
        check_legacy(body.to_string().as_bytes(), &canaries)?;
    }

    #[test]
    fn fuzz_webhook_target_text(raw in prop_oneof![any::<String>(), "(failover\\()?(kafka|https?)://[^\\s]{0,30}\\)?"]) {
        if let Ok(target) = WebhookTarget::parse(&raw) {
            assert_valid_target(&target)?;
        }
    }

    #[test]
    fn fuzz_webhook_target_hides_its_secret((raw, canary) in secret_target(), pad in "[ \t\n]{0,2}") {
        let canaries = [canary];
        match WebhookTarget::parse(&format!("{pad}{raw}{pad}")) {
            Ok(target) => {
                assert_valid_target(&target)?;
                assert_no_canary(&target.redacted(), &canaries)?;
            }
            Err(error) => assert_no_canary(&error.to_string(), &canaries)?,
        }
    }

    #[test]
    fn fuzz_poll_message_text(body in prop_oneof![any::<String>(), any_json().prop_map(|v| v.to_string())]) {
        if let Ok(message) = serde_json::from_str::<PollMessage>(&body) {
            prop_assert_eq!(serde_json::from_str::<PollMessage>(&serde_json::to_string(&message).unwrap()).unwrap(), message);
        }
    }

    #[test]
    fn fuzz_poll_message_round_trips(id in any::<u128>(), round in any::<u64>()) {
        let message = PollMessage { source_id: Uuid::from_u128(id), round };
        let body = serde_json::to_string(&message).unwrap();
        prop_assert_eq!(serde_json::from_str::<PollMessage>(&body).unwrap(), message.clone());
        // A message of a poller that did not yet know rounds is the first round.
        let first = serde_json::json!({"source_id": message.source_id}).to_string();
        prop_assert_eq!(serde_json::from_str::<PollMessage>(&first).unwrap(), PollMessage { round: 0, source_id: message.source_id });
    }

    #[test]
    fn fuzz_data_uri_text(uri in prop_oneof![any::<String>(), "data:[a-z/;=0-9]{0,20}(base64)?,[A-Za-z0-9+/=% \n]{0,40}"]) {
        if let Ok(bytes) = decode_data_uri(&uri) {
            prop_assert!(!bytes.is_empty());
        }
    }

    #[test]
    fn fuzz_data_uri_base64_round_trips(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        media_type in prop_oneof![Just(String::new()), Just("application/zip;".to_owned()), "[a-z]{1,8}/[a-z0-9.+-]{1,12}(;[a-z]{1,6}=[a-z0-9]{1,6})?;"],
        padded in any::<bool>(),
        line in prop_oneof![Just(usize::MAX), 1usize..100],
        percent in any::<bool>(),
    ) {
        let engine = if padded { base64::engine::general_purpose::STANDARD } else { base64::engine::general_purpose::STANDARD_NO_PAD };
        let mut payload = engine.encode(&bytes);
        if line != usize::MAX {
            // Line breaks, as MIME encoders put them.
            payload = payload.as_bytes().chunks(line).map(|l| std::str::from_utf8(l).unwrap()).collect::<Vec<_>>().join("\r\n");
        }
        if percent {
            payload = payload.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
        }
        let uri = format!("data:{media_type}base64,{payload}");
        if bytes.is_empty() {
            prop_assert_eq!(decode_data_uri(&uri), Err(DataUriError::Empty));
        } else {
            prop_assert_eq!(decode_data_uri(&uri), Ok(bytes), "{}", uri);
        }
    }

    #[test]
    fn fuzz_data_uri_percent_round_trips(
        bytes in prop::collection::vec(any::<u8>(), 1..1024),
        media_type in prop_oneof![Just(String::new()), "[a-z]{1,8}/[a-z0-9.+-]{1,12}(;charset=[a-z0-9-]{1,8})?"],
    ) {
        let payload = percent_encoding::percent_encode(&bytes, percent_encoding::NON_ALPHANUMERIC).to_string();
        prop_assert_eq!(decode_data_uri(&format!("data:{media_type},{payload}")), Ok(bytes));
    }

    #[test]
    fn fuzz_redact_text(text in prop_oneof![any::<String>(), "([a-z]{0,3}://|[a-z:/@,)' ]){0,12}"]) {
        let redacted = redact(&text);
        prop_assert_eq!(redact(&redacted), redacted.clone(), "redaction is idempotent");
        if !text.contains("://") {
            prop_assert_eq!(redacted, text, "text without a URL is unchanged");
        }
    }

    #[test]
    fn fuzz_redact_hides_secrets_in_free_text(
        before in prop_oneof![any::<String>(), "[a-z:/ ,(]{0,10}"],
        (url, canary) in prop_oneof![secret_target(), secret_http_url()],
        after in prop_oneof![any::<String>(), "[a-z:/@ ,)]{0,10}"],
        quote in prop_oneof![Just(""), Just("\""), Just("'"), Just("<"), Just("(")],
    ) {
        let text = format!("{before}{quote}{url}{after}");
        let redacted = redact(&text);
        assert_no_canary(&redacted, &[canary])?;
        prop_assert_eq!(redact(&redacted), redacted.clone(), "redaction is idempotent");
    }
}

#[test]
fn every_generated_target_holds_its_canary() {
    // The leak properties above are only as good as their inputs: every generated secret URL
    // must carry the canary (so a property that fails to redact it does fail).
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let targets = secret_target();
    let mut parsed = BTreeMap::<&str, usize>::new();
    for _ in 0..500 {
        let (raw, canary) = targets.new_tree(&mut runner).unwrap().current();
        assert!(raw.contains(&canary), "{raw} {canary}");
        let kind = match WebhookTarget::parse(&raw) {
            Ok(WebhookTarget::Http { .. }) => "http",
            Ok(WebhookTarget::Kafka { brokers, .. }) if brokers.len() > 1 => "failover",
            Ok(WebhookTarget::Kafka { .. }) => "kafka",
            Err(_) => "refused",
        };
        *parsed.entry(kind).or_default() += 1;
    }
    // Every shape is reached, valid and not: the generators are near the real syntax.
    for kind in ["http", "kafka", "failover", "refused"] {
        assert!(parsed.get(kind).copied().unwrap_or_default() > 10, "{parsed:?}");
    }
}

#[test]
fn generated_bodies_are_often_accepted() {
    // A body generator that the parser always refuses tests only the refusals.
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let shuttle_host = Url::parse(SHUTTLE_HOST).unwrap();
    let (v2, legacy) = (v2_body(), legacy_body());
    let (mut v2_ok, mut legacy_ok, mut legacy_clean) = (0, 0, 0);
    for _ in 0..500 {
        let (body, _) = v2.new_tree(&mut runner).unwrap().current();
        v2_ok += usize::from(parse_v2("app", "1", body.to_string().as_bytes()).is_ok());
        let (body, _) = legacy.new_tree(&mut runner).unwrap().current();
        if let Ok(create) = parse_legacy(body.to_string().as_bytes(), &LegacyContext { shuttle_host: &shuttle_host }) {
            legacy_ok += 1;
            legacy_clean += usize::from(create.spec.rejection.is_none());
        }
    }
    assert!(v2_ok > 25 && legacy_ok > 50 && legacy_clean > 10, "accepted of 500: v2 {v2_ok}, legacy {legacy_ok} ({legacy_clean} clean)");
}
