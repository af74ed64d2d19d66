use serde_json::json;

use super::*;
use crate::error::LegacyRejection;

fn v2(body: serde_json::Value) -> Result<BuildSpec, ValidationError> {
    parse_v2("app", "1", body.to_string().as_bytes())
}

fn valid_v2() -> serde_json::Value {
    json!({
        "webhooks": {"status": "https://token@example.com/hooks/status", "logs": ["https://user:pass@example.com/logs", "kafka://10.0.0.1:9092/buildlogs"]},
        "metadata": "deployment-namespace",
        "human_readable_info": "Build #3",
        "arguments": {"X": "Y"},
        "source": {"url": "https://example.com/src.tgz"},
        "destination": {"url": "docker://user:pass@example.com/org/repo:tag"}
    })
}

fn field_of(result: Result<BuildSpec, ValidationError>) -> String {
    result.expect_err("expected a 400").field
}

#[test]
fn a_complete_v2_request_parses() {
    let spec = v2(valid_v2()).unwrap();
    assert_eq!(spec.status_targets.len(), 1);
    assert_eq!(spec.log_targets.len(), 2);
    assert_eq!(spec.arguments.get("X").map(String::as_str), Some("Y"));
    assert_eq!(spec.source, Source::Http { url: "https://example.com/src.tgz".into() });
    let Api::V2 { destination, .. } = &spec.api else { panic!("v2") };
    assert_eq!(destination.reference(), "example.com/org/repo:tag");
}

#[test]
fn webhooks_are_optional_and_take_a_string_or_an_array() {
    let mut body = valid_v2();
    body.as_object_mut().unwrap().remove("webhooks");
    assert!(v2(body).unwrap().status_targets.is_empty());
    let mut body = valid_v2();
    body["webhooks"] = json!({"status": [], "logs": "https://h.example/l"});
    let spec = v2(body).unwrap();
    assert!(spec.status_targets.is_empty());
    assert_eq!(spec.log_targets.len(), 1);
}

#[test]
fn destination_image_is_an_alias_of_url() {
    let mut body = valid_v2();
    body["destination"] = json!({"image": "docker://example.com/org/repo:tag"});
    assert!(v2(body).is_ok());
}

#[test]
fn missing_source_or_destination_names_the_field() {
    for (remove, field) in [("source", "source.url"), ("destination", "destination.url")] {
        let mut body = valid_v2();
        body.as_object_mut().unwrap().remove(remove);
        assert_eq!(field_of(v2(body)), field);
    }
    let mut body = valid_v2();
    body["source"] = json!({});
    assert_eq!(field_of(v2(body)), "source.url");
}

#[test]
fn unknown_source_scheme_is_a_400() {
    let mut body = valid_v2();
    body["source"]["url"] = json!("ftp://example.com/src.tgz");
    let err = v2(body).unwrap_err();
    assert_eq!(err.field, "source.url");
    assert!(err.message.contains("ftp"), "{err}");
}

#[test]
fn destination_must_be_docker() {
    let mut body = valid_v2();
    body["destination"]["url"] = json!("https://example.com/org/repo:tag");
    assert_eq!(field_of(v2(body)), "destination.url");
    let mut body = valid_v2();
    body["destination"]["url"] = json!("docker://");
    assert_eq!(field_of(v2(body)), "destination.url");
}

#[test]
fn non_string_argument_is_a_400_naming_it() {
    let mut body = valid_v2();
    body["arguments"] = json!({"GOOD": "x", "COUNT": 3});
    assert_eq!(field_of(v2(body)), "arguments.COUNT");
}

#[test]
fn badly_named_argument_is_a_400_naming_it() {
    for name in ["1ABC", "A-B", "", "A B", "É"] {
        let mut body = valid_v2();
        body["arguments"] = json!({ name: "x" });
        assert_eq!(field_of(v2(body)), format!("arguments.{name}"));
    }
    let mut body = valid_v2();
    body["arguments"] = json!(["X=Y"]);
    assert_eq!(field_of(v2(body)), "arguments");
}

#[test]
fn bad_webhook_targets_are_400s_naming_the_field() {
    let mut body = valid_v2();
    body["webhooks"]["status"] = json!("ftp://example.com/x");
    assert_eq!(field_of(v2(body)), "webhooks.status");
    let mut body = valid_v2();
    body["webhooks"]["logs"] = json!(["https://ok.example/l", "failover(kafka://a:9092/t"]);
    let err = v2(body).unwrap_err();
    assert_eq!(err.field, "webhooks.logs[1]");
    assert!(err.message.contains("failover"), "{err}");
    let mut body = valid_v2();
    body["webhooks"]["logs"] = json!([42]);
    assert_eq!(field_of(v2(body)), "webhooks.logs[0]");
    let mut body = valid_v2();
    body["webhooks"] = json!("https://x.example");
    assert_eq!(field_of(v2(body)), "webhooks");
}

#[test]
fn metadata_and_info_must_be_strings() {
    let mut body = valid_v2();
    body["metadata"] = json!({"a": 1});
    assert_eq!(field_of(v2(body)), "metadata");
    let mut body = valid_v2();
    body["human_readable_info"] = json!(3);
    assert_eq!(field_of(v2(body)), "human_readable_info");
}

#[test]
fn metadata_of_odd_characters_round_trips() {
    let odd = "ns/é\u{1F680}\"quoted\"\\back\nline\t\u{0}end ?&=%";
    let mut body = valid_v2();
    body["metadata"] = json!(odd);
    let spec = v2(body).unwrap();
    assert_eq!(spec.metadata, odd);
    let stored = serde_json::to_vec(&spec).unwrap();
    let restored: BuildSpec = serde_json::from_slice(&stored).unwrap();
    assert_eq!(restored.metadata, odd);
}

#[test]
fn malformed_json_names_the_problem() {
    let err = parse_v2("app", "1", b"{\"source\": ").unwrap_err();
    assert_eq!(err.field, "body");
    assert!(err.message.contains("malformed JSON") && err.message.contains("line 1"), "{err}");
    assert_eq!(parse_v2("app", "1", b"[1,2]").unwrap_err().field, "body");
}

// ---- legacy ----

const BUILD_UUID: &str = "0b9e8c2a-6c84-4a3f-9a55-6d6a4c1b2e10";
const APP_UUID: &str = "7d1f3b5c-2a4e-4c6d-8e0f-1a2b3c4d5e6f";

fn legacy_body() -> serde_json::Value {
    json!({
        "sha": "abcdef1", "app": "myapp", "space": "default", "branch": "main", "repo": "https://github.com/org/repo",
        "org": "org", "build_uuid": BUILD_UUID, "app_uuid": APP_UUID, "sources": "https://src.example/a.tgz",
        "build_options": "", "callback": "https://controller.example/builds/1", "callback_auth": "Basic abc",
        "kafka_hosts": "k1:9092,k2:9092", "gm_registry_host": "registry.example", "gm_registry_repo": "org"
    })
}

fn shuttle_host() -> Url {
    Url::parse("https://shuttle.example").unwrap()
}

fn legacy(body: serde_json::Value) -> Result<LegacyCreate, LegacyRejection> {
    parse_legacy(body.to_string().as_bytes(), &LegacyContext { shuttle_host: &shuttle_host() })
}

#[test]
fn a_complete_legacy_request_parses() {
    let create = legacy(legacy_body()).unwrap();
    let spec = create.spec;
    assert_eq!(spec.rejection, None);
    assert_eq!(spec.metadata, "myapp-default");
    let Api::Legacy(build) = &spec.api else { panic!("legacy") };
    assert_eq!(build.job(), format!("myapp-{APP_UUID}"));
    assert_eq!(build.kafka_hosts, vec!["k1:9092".to_owned(), "k2:9092".to_owned()]);
    assert_eq!(build.callback_auth.as_deref(), Some("Basic abc"));
    assert!(create.inline_source.is_none());
}

#[test]
fn each_missing_required_legacy_field_gives_the_exact_400() {
    for field in ["app", "space", "app_uuid", "build_uuid", "gm_registry_host", "gm_registry_repo"] {
        for missing in [None, Some(json!(null)), Some(json!(""))] {
            let mut body = legacy_body();
            match &missing {
                None => {
                    body.as_object_mut().unwrap().remove(field);
                }
                Some(value) => body[field] = value.clone(),
            }
            let err = legacy(body).unwrap_err();
            assert_eq!(err, LegacyRejection::MissingFields, "{field} = {missing:?}");
            assert_eq!(err.to_string(), "Bad Request - missing fields.");
        }
    }
}

#[test]
fn sources_or_docker_registry_is_required() {
    let mut body = legacy_body();
    body.as_object_mut().unwrap().remove("sources");
    assert_eq!(legacy(body.clone()).unwrap_err(), LegacyRejection::MissingFields);
    body["docker_registry"] = json!("registry.example/org/image:1");
    let spec = legacy(body).unwrap().spec;
    assert!(matches!(spec.source, Source::Docker { .. }));
}

#[test]
fn a_body_that_is_not_an_object_is_missing_fields() {
    for body in [&b"not json"[..], b"[]", b"\"x\"", b""] {
        let result = parse_legacy(body, &LegacyContext { shuttle_host: &shuttle_host() });
        assert_eq!(result.unwrap_err(), LegacyRejection::MissingFields);
    }
}

#[test]
fn a_bad_build_uuid_gives_the_other_400() {
    for bad in ["not-a-uuid", &format!("{BUILD_UUID}0"), &format!(" x{BUILD_UUID}")] {
        let mut body = legacy_body();
        body["build_uuid"] = json!(bad);
        let err = legacy(body).unwrap_err();
        assert_eq!(err, LegacyRejection::InvalidBuildUuid, "{bad}");
        assert_eq!(err.to_string(), "Bad Request - build uuid is invalid.");
    }
}

#[test]
fn anything_else_wrong_is_accepted_and_fails_later() {
    for (field, value, reason) in [
        ("sources", json!("ftp://src.example/a.tgz"), "scheme 'ftp'"),
        ("sources", json!("data:base64,@@@"), "not valid base64"),
        ("app_uuid", json!("nope"), "app_uuid is not a UUID"),
        ("build_number", json!("abc"), "build_number"),
        ("gm_registry_auth", json!(5), "gm_registry_auth"),
    ] {
        let mut body = legacy_body();
        body[field] = value;
        let spec = legacy(body).expect("accepted").spec;
        let rejection = spec.rejection.expect("a reason to fail the build");
        assert!(rejection.contains(reason), "{field}: {rejection}");
    }
}

#[test]
fn data_sources_in_both_forms_are_decoded() {
    for uri in ["data:base64,UEsDBA==", "data:application/zip;base64,UEsDBA=="] {
        let mut body = legacy_body();
        body["sources"] = json!(uri);
        let create = legacy(body).unwrap();
        assert_eq!(create.inline_source.as_deref(), Some(&b"PK\x03\x04"[..]));
        assert_eq!(create.spec.source, Source::Inline { bytes: 4 });
    }
}

#[test]
fn the_shuttles_own_sources_link_is_a_rebuild() {
    let old = uuid::Uuid::new_v4();
    let mut body = legacy_body();
    body["sources"] = json!(format!("https://shuttle.example/{old}"));
    assert_eq!(legacy(body).unwrap().spec.source, Source::Rebuild { source_id: old });
}

#[test]
fn docker_login_overrides_url_credentials() {
    let mut body = legacy_body();
    body["sources"] = json!("docker://old:creds@registry.example/org/img:2");
    body["docker_login"] = json!("bot");
    body["docker_password"] = json!("pw");
    let Source::Docker { image } = legacy(body).unwrap().spec.source else { panic!("docker") };
    assert_eq!(image.credentials, Some(RegistryCredentials { username: "bot".into(), password: "pw".into() }));
}

#[test]
fn build_number_as_number_or_string() {
    for value in [json!(7), json!("7")] {
        let mut body = legacy_body();
        body["build_number"] = value;
        let Api::Legacy(build) = legacy(body).unwrap().spec.api else { panic!() };
        assert_eq!(build.build_number, Some(7));
    }
}

#[test]
fn build_args_keys_are_sanitised_by_removing_what_is_outside_the_name_characters() {
    let mut body = legacy_body();
    body["build_args"] = json!({"@#$JLKS][w]e[232": "kept", "NODE_ENV": "production", "n": 1, "-#-": "dropped"});
    let args = legacy(body).unwrap().spec.arguments;
    assert_eq!(args.get("JLKSwe232").map(String::as_str), Some("kept"), "as the shipped gen 2 sanitised");
    assert_eq!(args.get("NODE_ENV").map(String::as_str), Some("production"));
    assert_eq!(args.get("n").map(String::as_str), Some("1"));
    assert_eq!(args.len(), 3, "a name left empty is dropped: {args:?}");
}

#[test]
fn an_empty_gm_registry_auth_means_no_login_and_the_build_goes_on() {
    for empty in [json!(null), json!({}), json!(""), json!("{}"), json!({"username": "", "password": ""}), json!({"username": null})] {
        let mut body = legacy_body();
        body["gm_registry_auth"] = empty.clone();
        let spec = legacy(body).expect("accepted").spec;
        assert_eq!(spec.rejection, None, "{empty}");
        let Api::Legacy(build) = spec.api else { panic!() };
        assert_eq!(build.registry_credentials, None, "{empty}");
    }
    for half in [json!({"username": "bot"}), json!({"username": "", "password": "pw-1234"})] {
        let mut body = legacy_body();
        body["gm_registry_auth"] = half.clone();
        let rejection = legacy(body).expect("accepted").spec.rejection.expect("a reason to fail the build");
        assert!(rejection.contains("both a username and a password"), "{half}: {rejection}");
    }
    let mut body = legacy_body();
    body["gm_registry_auth"] = json!(r#"{"username": "bot", "password": "pw-1234"}"#);
    let Api::Legacy(build) = legacy(body).expect("accepted").spec.api else { panic!() };
    assert_eq!(build.registry_credentials.map(|c| c.username), Some("bot".to_owned()));
}

#[test]
fn build_options_arg_lines_become_arguments() {
    let options = "ARG NODE_ENV=\"production\"\nARG GREETING=\"say \\\"hi\\\"\"\r\narg lower=plain\nRUN echo no\nARG EMPTY=\"\"\nARG NOVALUE\n  ARG SPACED = \"x y\"";
    let args = arguments_from_build_options(options);
    assert_eq!(args.get("NODE_ENV").map(String::as_str), Some("production"));
    assert_eq!(args.get("GREETING").map(String::as_str), Some("say \"hi\""));
    assert_eq!(args.get("lower").map(String::as_str), Some("plain"));
    assert_eq!(args.get("EMPTY").map(String::as_str), Some(""));
    assert_eq!(args.get("SPACED").map(String::as_str), Some("x y"));
    assert!(!args.contains_key("NOVALUE"));
    assert_eq!(args.len(), 5);
}

#[test]
fn build_options_are_used_only_without_build_args() {
    let mut body = legacy_body();
    body["build_options"] = json!("ARG FROM_OPTIONS=\"1\"");
    assert!(legacy(body.clone()).unwrap().spec.arguments.contains_key("FROM_OPTIONS"));
    body["build_args"] = json!({"FROM_ARGS": "1"});
    let args = legacy(body).unwrap().spec.arguments;
    assert!(args.contains_key("FROM_ARGS") && !args.contains_key("FROM_OPTIONS"));
}

#[test]
fn unknown_legacy_fields_are_ignored() {
    let mut body = legacy_body();
    body["something_new"] = json!({"x": 1});
    assert_eq!(legacy(body).unwrap().spec.rejection, None);
}

#[test]
fn a_registry_password_too_short_to_mask_is_refused_naming_where_it_is() {
    for (field, url) in
        [("source.url", "docker://bot:p@registry.example/org/base:1"), ("destination.url", "docker://bot:pw1@registry.example/org/app:1")]
    {
        let mut body = valid_v2();
        body[field.split('.').next().unwrap()] = json!({"url": url});
        let error = v2(body).unwrap_err();
        assert_eq!(error.field, field);
        assert!(error.message.contains("fewer than 4") && !error.message.contains("pw1"), "{}", error.message);
    }
    let mut body = valid_v2();
    body["destination"] = json!({"url": "docker://bot:pass@registry.example/org/app:1"});
    assert!(v2(body).is_ok(), "four characters are masked safely enough");

    for (field, value) in [("gm_registry_auth", json!({"username": "bot", "password": "p"})), ("docker_password", json!("p"))] {
        let mut body = legacy_body();
        body[field] = value;
        if field == "docker_password" {
            body["sources"] = json!("docker://registry.example/org/base:1");
            body["docker_login"] = json!("bot");
        }
        let rejection = legacy(body).expect("accepted, then failed").spec.rejection.expect("a reason to fail the build");
        assert!(rejection.contains("fewer than 4"), "{field}: {rejection}");
    }
}

/// `valid_v2()` with `pointer` set to `value`.
fn v2_with(pointer: &str, value: serde_json::Value) -> Result<BuildSpec, ValidationError> {
    let mut body = valid_v2();
    *body.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer}")) = value;
    v2(body)
}

#[test]
fn each_field_is_bounded_and_an_over_long_one_is_a_400_naming_it() {
    let text = |bytes: usize| json!("é".repeat(bytes / 2));
    for (pointer, field, limit) in
        [("/metadata", "metadata", limits::TEXT_BYTES), ("/human_readable_info", "human_readable_info", limits::TEXT_BYTES)]
    {
        assert!(v2_with(pointer, text(limit)).is_ok(), "{field} at its limit");
        let error = v2_with(pointer, text(limit + 2)).expect_err(field);
        assert_eq!(
            (error.field.as_str(), error.message.as_str()),
            (field, format!("is {} bytes; at most {limit} are taken", limit + 2).as_str())
        );
    }
    let url = |path_bytes: usize| format!("https://example.com/{}", "a".repeat(path_bytes - "https://example.com/".len()));
    assert!(v2_with("/source/url", json!(url(limits::SOURCE_URL_BYTES))).is_ok());
    assert_eq!(field_of(v2_with("/source/url", json!(url(limits::SOURCE_URL_BYTES + 1)))), "source.url");
    let image = |bytes: usize| format!("docker://example.com/{}:1", "a".repeat(bytes - "docker://example.com/:1".len()));
    assert!(v2_with("/destination/url", json!(image(limits::SOURCE_URL_BYTES))).is_ok());
    assert_eq!(field_of(v2_with("/destination/url", json!(image(limits::SOURCE_URL_BYTES + 1)))), "destination.url");
    assert!(v2_with("/webhooks/status", json!(url(limits::TARGET_BYTES))).is_ok());
    assert_eq!(field_of(v2_with("/webhooks/status", json!(url(limits::TARGET_BYTES + 1)))), "webhooks.status");
    let targets = |n: usize| json!(vec!["https://example.com/hook"; n]);
    assert_eq!(v2_with("/webhooks/logs", targets(limits::TARGETS)).unwrap().log_targets.len(), limits::TARGETS);
    let error = v2_with("/webhooks/logs", targets(limits::TARGETS + 1)).expect_err("17 targets");
    assert_eq!((error.field.as_str(), error.message.as_str()), ("webhooks.logs", "has 17 targets; at most 16 are taken"));
    let long_target = json!(["https://example.com/hook", url(limits::TARGET_BYTES + 1)]);
    assert_eq!(field_of(v2_with("/webhooks/status", long_target)), "webhooks.status[1]");
}

#[test]
fn arguments_are_bounded_in_number_name_value_and_all_together() {
    let arguments = |n: usize, value: &str| serde_json::Value::Object((0..n).map(|i| (format!("A{i}"), json!(value))).collect());
    assert_eq!(v2_with("/arguments", arguments(limits::ARGUMENTS, "v")).unwrap().arguments.len(), limits::ARGUMENTS);
    let error = v2_with("/arguments", arguments(limits::ARGUMENTS + 1, "v")).expect_err("257 arguments");
    assert_eq!((error.field.as_str(), error.message.as_str()), ("arguments", "has 257 arguments; at most 256 are taken"));
    let name = |chars: usize| "N".repeat(chars);
    assert!(v2_with("/arguments", json!({ name(limits::ARGUMENT_NAME_CHARS): "v" })).is_ok());
    let error = v2_with("/arguments", json!({ name(limits::ARGUMENT_NAME_CHARS + 1): "v" })).expect_err("a long name");
    assert_eq!(error.field, "arguments");
    assert!(!error.message.contains("NNNN"), "the over-long name is not echoed: {}", error.message);
    let value = |bytes: usize| json!("v".repeat(bytes));
    assert!(v2_with("/arguments", json!({ "V": value(limits::ARGUMENT_VALUE_BYTES) })).is_ok());
    assert_eq!(field_of(v2_with("/arguments", json!({ "V": value(limits::ARGUMENT_VALUE_BYTES + 1) }))), "arguments.V");
    // Four values of 16 KiB come to just over 64 KiB with their names.
    let error = v2_with("/arguments", arguments(4, &"v".repeat(limits::ARGUMENT_VALUE_BYTES))).expect_err("over 64 KiB in all");
    assert_eq!((error.field.as_str(), error.message.as_str()), ("arguments", "names and values come to more than 65536 bytes"));
    assert!(v2_with("/arguments", arguments(4, &"v".repeat(limits::ARGUMENT_VALUE_BYTES - 2))).is_ok());
}

/// SPEC §3, issue 20: a `callback_auth` no request can carry fails the build with the reason
/// (never echoing the credential), and the callback is not tried at all: it could only be
/// retried in vain for two hours.
#[test]
fn a_callback_auth_that_cannot_be_a_header_fails_the_build_and_is_never_sent() {
    for auth in ["Basic abc\r\nX-Injected: 1", "Basic a\nb", "Basic \u{0}abc", "Basic é"] {
        let mut body = legacy_body();
        body["callback_auth"] = json!(auth);
        let spec = legacy(body).expect("accepted").spec;
        let rejection = spec.rejection.clone().expect("a reason to fail the build");
        assert!(rejection.contains("callback_auth is not a valid HTTP header value"), "{auth:?}: {rejection}");
        assert!(!rejection.contains("abc") && !rejection.contains("Basic"), "the credential is not echoed: {rejection}");
        assert!(spec.status_targets().is_empty(), "{auth:?}: no callback to send");
    }
    let spec = legacy(legacy_body()).unwrap().spec;
    assert_eq!(spec.status_targets().len(), 1, "a valid callback_auth (with its space) is sent");
    assert!(is_header_value("Bearer a.b-c_d~e+f/g= \t!"));
}

/// SPEC §3, issue 20: a legacy request is refused only for its two 400s, so an over-long field
/// is accepted and fails the build with the reason; what is kept of it is cut to its bound, so
/// the build can be stored (a DynamoDB item holds 400 KB, an index key 2 KB) and told.
#[test]
fn an_over_long_legacy_field_fails_the_build_and_is_kept_cut_to_its_bound() {
    for (field, limit) in limits::LEGACY_FIELDS {
        let mut body = legacy_body();
        body[field] = json!("a".repeat(limit));
        let at_limit = legacy(body).expect("accepted").spec.rejection.unwrap_or_default();
        assert!(!at_limit.contains(&format!("at most {limit} are taken")), "{field} at its bound is taken: {at_limit}");
        let mut body = legacy_body();
        body[field] = json!("é".repeat(limit));
        let spec = legacy(body).expect("accepted").spec;
        let rejection = spec.rejection.clone().expect("a reason to fail the build");
        assert!(rejection.contains(&format!("{field} is {} bytes; at most {limit} are taken", 2 * limit)), "{field}: {rejection}");
        let stored = serde_json::to_vec(&spec).unwrap().len();
        assert!(stored < 40 * 1024, "{field}: what is kept is cut to its bound ({stored} bytes)");
    }
    let mut body = legacy_body();
    body["app"] = json!("a".repeat(5_000));
    let spec = legacy(body).unwrap().spec;
    let Api::Legacy(build) = &spec.api else { panic!("legacy") };
    assert!(crate::ids::path_segment("job", &build.job()).is_ok(), "the job is still a path: {}", build.job().len());
    assert!(spec.metadata.len() <= 128 + limits::TEXT_BYTES);
}

#[test]
fn legacy_build_args_over_their_bounds_fail_the_build_and_are_not_kept() {
    let mut body = legacy_body();
    body["build_args"] = serde_json::Value::Object((0..300).map(|i| (format!("A{i}"), json!("v"))).collect());
    let spec = legacy(body).expect("accepted").spec;
    assert!(spec.rejection.unwrap().contains("build_args has 300 arguments; at most 256 are taken"));
    assert!(spec.arguments.is_empty());
    let mut body = legacy_body();
    body["build_args"] = json!({"BIG": "v".repeat(limits::ARGUMENT_VALUE_BYTES + 1), "SMALL": "1"});
    let spec = legacy(body).expect("accepted").spec;
    assert!(spec.rejection.unwrap().contains("build_args: an argument is over its bound"));
    assert!(spec.arguments.is_empty());
    let mut body = legacy_body();
    body["kafka_hosts"] = json!(vec!["k:9092"; 17].join(","));
    let spec = legacy(body).expect("accepted").spec;
    assert!(spec.rejection.unwrap().contains("kafka_hosts has 17 brokers; at most 16 are taken"));
    let Api::Legacy(build) = &spec.api else { panic!("legacy") };
    assert_eq!(build.kafka_hosts.len(), 16);
}

/// Issue 20: credentials given where no URL is expected (no scheme before them) are never
/// echoed into the reason a build fails with, which its log, Kafka and the status show.
#[test]
fn credentials_without_a_scheme_are_never_echoed() {
    let mut body = legacy_body();
    body["gm_registry_host"] = json!("bot:CANARYpw@registry.example");
    let spec = legacy(body).expect("accepted").spec;
    let rejection = spec.rejection.clone().expect("a reason to fail the build");
    assert!(rejection.contains("gm_registry_host holds credentials"), "{rejection}");
    let Api::Legacy(build) = &spec.api else { panic!("legacy") };
    assert_eq!(build.registry_host, "registry.example", "kept without them: image names show it");
    let mut body = legacy_body();
    body.as_object_mut().unwrap().remove("sources");
    body["docker_registry"] = json!("u:CANARYpw@h/x:1");
    let rejection = legacy(body).expect("accepted").spec.rejection.expect("a reason to fail the build");
    assert!(rejection.contains("u:***@h/x:1") && !rejection.contains("CANARY"), "{rejection}");
}
