//! End to end over real HTTP through the local gateway: every route with its success and
//! error answers, as the app controller and other callers see them.

use base64::Engine;
use serde_json::{json, Value};
use shuttle_core::api::MAX_BODY_BYTES;
use shuttle_core::ids::v2_source_id;
use shuttle_tests::faults::ENOUGH;
use shuttle_tests::{json_of, spawn_api, spawn_app, TestApp};
use uuid::Uuid;

fn v2_body() -> Value {
    json!({
        "webhooks": {"status": "https://token@hooks.example/status", "logs": ["https://user:pass@hooks.example/logs", "kafka://kafka.example:9092/buildlogs"]},
        "metadata": "deployment-namespace",
        "human_readable_info": "Build #3 - https://example.com/repo.git sha #abcdef134",
        "arguments": {"X": "Y"},
        "source": {"url": "https://example.com/src.tgz"},
        "destination": {"url": "docker://user:pass@registry.example.com/org/repo:tag"}
    })
}

struct Legacy {
    app_uuid: Uuid,
    build_uuid: Uuid,
}

impl Legacy {
    fn new() -> Self {
        Self { app_uuid: Uuid::new_v4(), build_uuid: Uuid::new_v4() }
    }

    fn job(&self) -> String {
        format!("myapp-{}", self.app_uuid)
    }

    fn body(&self, number: u64, sources: &str) -> Value {
        json!({
            "sha": "abcdef1", "app": "myapp", "space": "default", "branch": "main", "repo": "https://github.com/org/repo", "org": "org",
            "build_uuid": self.build_uuid, "app_uuid": self.app_uuid, "sources": sources, "build_options": "", "build_number": number,
            "callback": "https://controller.example/builds/1", "callback_auth": "Basic c2VjcmV0",
            "gm_registry_host": "registry.example", "gm_registry_repo": "org"
        })
    }
}

async fn post_json(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    json_of(app.post(path, body.to_string()).await).await
}

#[tokio::test]
async fn health_check_answers_good() {
    let app = spawn_api().await;
    let response = app.get("/octhc").await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "overall_status=good");
}

#[tokio::test]
async fn v2_create_stores_one_build_queues_it_and_shows_it() {
    let app = spawn_api().await;
    assert_eq!(post_json(&app, "/my-app/1", &v2_body()).await, (200, json!({"status": "OK"})));

    let items = app.stack.items().await;
    assert_eq!(items.len(), 1);
    let source_id = v2_source_id("my-app", "1");
    let queued: Vec<serde_json::Value> = app.stack.queued().await.iter().map(|body| serde_json::from_str(body).unwrap()).collect();
    assert_eq!(queued, vec![json!({"source_id": source_id, "round": 0})], "a reference to the build, nothing else");

    let (status, body) = json_of(app.get("/my-app/1/status").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], "deployment-namespace");
    assert_eq!(body["type"], "build system");
    assert_eq!(body["building"], false);
    assert_eq!(body["status"], "pending");
    assert_eq!(body["source_id"], source_id.to_string());
    assert_eq!(body["human_readable_info"], "Build #3 - https://example.com/repo.git sha #abcdef134");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));

    let logs = app.get("/my-app/1/logs").await;
    assert_eq!(logs.status().as_u16(), 200);
    assert!(logs.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(logs.text().await.unwrap(), "", "nothing has run yet");
}

#[tokio::test]
async fn v2_create_repeated_is_idempotent_and_a_different_body_conflicts() {
    let app = spawn_api().await;
    assert_eq!(post_json(&app, "/my-app/1", &v2_body()).await.0, 200);
    assert_eq!(post_json(&app, "/my-app/1", &v2_body()).await, (200, json!({"status": "OK"})));
    assert_eq!(app.stack.items().await.len(), 1, "no second build");
    assert_eq!(app.stack.queued().await.len(), 1, "no second message");

    let mut different = v2_body();
    different["arguments"]["X"] = json!("Z");
    let (status, body) = post_json(&app, "/my-app/1", &different).await;
    assert_eq!(status, 409);
    assert_eq!(body["status"], "Conflict");
    assert_eq!(app.stack.items().await.len(), 1);
    assert_eq!(app.stack.queued().await.len(), 1);
}

#[tokio::test]
async fn v2_bad_requests_name_the_field_and_write_nothing() {
    let app = spawn_api().await;
    /// A path, a change to the valid body, and the field the 400 must name.
    type Case = (&'static str, Box<dyn Fn(&mut Value)>, &'static str);
    let cases: Vec<Case> = vec![
        ("/my-app/1", Box::new(|b| b["source"]["url"] = json!("ftp://example.com/src.tgz")), "source.url"),
        ("/my-app/1", Box::new(|b| b["destination"]["url"] = json!("https://registry.example.com/org/repo:tag")), "destination.url"),
        ("/my-app/1", Box::new(|b| b["arguments"] = json!({"X": 1})), "arguments.X"),
        ("/my-app/1", Box::new(|b| b["arguments"] = json!({"BAD-NAME": "1"})), "arguments.BAD-NAME"),
        ("/my-app/1", Box::new(|b| b["webhooks"]["status"] = json!("ftp://hooks.example/s")), "webhooks.status"),
        ("/my-app/1", Box::new(|b| b["webhooks"]["logs"] = json!(["failover(kafka://a:9092/t"])), "webhooks.logs[0]"),
        ("/my-app/1", Box::new(|b| b["metadata"] = json!(42)), "metadata"),
        ("/my-app/1", Box::new(|b| drop(b.as_object_mut().unwrap().remove("source"))), "source.url"),
        ("/my-app/1", Box::new(|b| drop(b.as_object_mut().unwrap().remove("destination"))), "destination.url"),
        ("/my%20app/1", Box::new(|_| {}), "app_id"),
        ("/my-app/1%2F2", Box::new(|_| {}), "build_id"),
    ];
    for (path, change, field) in cases {
        let mut body = v2_body();
        change(&mut body);
        let (status, answer) = post_json(&app, path, &body).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(answer["status"], "Bad Request");
        assert_eq!(answer["field"], field, "{answer}");
        assert!(!answer["error"].as_str().unwrap().contains("pass"), "no credentials in errors: {answer}");
        app.stack.assert_nothing_written(field).await;
    }
}

/// SPEC §2: every field is bounded, an over-long one is a `400` naming it (never a `503` from a
/// store that cannot take the item), and an `app_id` of the legacy job form is refused.
#[tokio::test]
async fn over_long_v2_fields_and_a_legacy_form_app_id_are_400s_naming_them() {
    let app = spawn_api().await;
    type Case = (String, Box<dyn Fn(&mut Value)>, &'static str);
    let legacy_job = format!("/myapp-{}/3", uuid::Uuid::new_v4());
    let cases: Vec<Case> = vec![
        ("/my-app/1".into(), Box::new(|b| b["metadata"] = json!("m".repeat(4097))), "metadata"),
        ("/my-app/1".into(), Box::new(|b| b["human_readable_info"] = json!("i".repeat(300_000))), "human_readable_info"),
        ("/my-app/1".into(), Box::new(|b| b["webhooks"]["status"] = json!(vec!["https://hooks.example/s"; 17])), "webhooks.status"),
        (
            "/my-app/1".into(),
            Box::new(|b| b["arguments"] = Value::Object((0..257).map(|i| (format!("A{i}"), json!("v"))).collect())),
            "arguments",
        ),
        ("/my-app/1".into(), Box::new(|b| b["arguments"] = json!({"BIG": "v".repeat(16_385)})), "arguments.BIG"),
        ("/my-app/1".into(), Box::new(|b| b["source"]["url"] = json!(format!("https://src.example/{}", "a".repeat(9_000)))), "source.url"),
        (legacy_job, Box::new(|_| {}), "app_id"),
    ];
    for (path, change, field) in cases {
        let mut body = v2_body();
        change(&mut body);
        let (status, answer) = post_json(&app, &path, &body).await;
        assert_eq!((status, answer["field"].as_str()), (400, Some(field)), "{field}: {answer}");
        app.stack.assert_nothing_written(field).await;
    }
}

#[tokio::test]
async fn malformed_json_is_a_400_naming_the_problem() {
    let app = spawn_api().await;
    let (status, body) = json_of(app.post("/my-app/1", "{\"source\": {\"url\": ").await).await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "body");
    assert!(body["error"].as_str().unwrap().contains("malformed JSON"), "{body}");
    let (status, body) = json_of(app.post("/my-app/1", "[]").await).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("body")));
    app.stack.assert_nothing_written("malformed JSON").await;
}

#[tokio::test]
async fn v2_stop_answers_by_the_builds_state() {
    let app = spawn_api().await;
    post_json(&app, "/my-app/1", &v2_body()).await;
    assert_eq!(json_of(app.delete("/my-app/1").await).await, (200, json!({"status": "OK"})));
    assert_eq!(json_of(app.delete("/my-app/1").await).await, (422, json!({"status": "The build is not running"})));
    assert_eq!(json_of(app.delete("/my-app/2").await).await.0, 404);
    let (_, status) = json_of(app.get("/my-app/1/status").await).await;
    assert_eq!((status["status"].as_str(), status["building"].as_bool()), (Some("failed"), Some(false)));
}

#[tokio::test]
async fn metadata_of_odd_characters_round_trips() {
    let app = spawn_api().await;
    let odd = "ns/é🚀 \"quoted\" \\ line\nbreak %20 &?=#";
    let mut body = v2_body();
    body["metadata"] = json!(odd);
    assert_eq!(post_json(&app, "/my-app/7", &body).await.0, 200);
    let (_, status) = json_of(app.get("/my-app/7/status").await).await;
    assert_eq!(status["id"], odd);
}

#[tokio::test]
async fn legacy_missing_fields_and_bad_uuid_are_the_only_400s() {
    let app = spawn_api().await;
    let legacy = Legacy::new();
    for field in ["app", "space", "app_uuid", "build_uuid", "gm_registry_host", "gm_registry_repo", "sources"] {
        let mut body = legacy.body(1, "https://src.example/a.tgz");
        body.as_object_mut().unwrap().remove(field);
        assert_eq!(post_json(&app, "/", &body).await, (400, json!({"status": "Bad Request - missing fields."})), "{field}");
    }
    let mut body = legacy.body(1, "https://src.example/a.tgz");
    body["build_uuid"] = json!("1234");
    assert_eq!(post_json(&app, "/", &body).await, (400, json!({"status": "Bad Request - build uuid is invalid."})));
    let response = app.post("/", "this is not json").await;
    assert_eq!(json_of(response).await, (400, json!({"status": "Bad Request - missing fields."})));
    app.stack.assert_nothing_written("legacy 400s").await;

    let mut odd = legacy.body(1, "gopher://src.example/a.tgz");
    odd["build_args"] = json!("not an object");
    assert_eq!(post_json(&app, "/", &odd).await, (200, json!({"status": "ok"})), "anything else is accepted, to fail later");
    assert_eq!(app.stack.items().await.len(), 1);
}

/// Issue 20: a legacy field too long to store (a 500 KB `space`: over DynamoDB's 400 KB item)
/// is accepted, as every legacy request with its fields (SPEC §3), and the build fails with the
/// reason in its log: never a `503` for ever, which a legacy controller would wait on.
#[tokio::test]
async fn an_over_long_legacy_field_is_accepted_and_the_build_fails_with_the_reason() {
    let app = spawn_app().await;
    let legacy = Legacy::new();
    let mut body = legacy.body(2, "data:base64,UEsDBA==");
    body["space"] = json!("s".repeat(500_000));
    assert_eq!(post_json(&app, "/", &body).await, (200, json!({"status": "ok"})));
    let job = format!("/{}/2", legacy.job());
    assert_eq!(app.legacy_finished(&job, ENOUGH).await["status"], "failed");
    let log: Value = serde_json::from_str(&app.logs(&job).await).expect("JSON");
    let output = log["output"].as_str().unwrap_or_default();
    assert!(
        output.contains("space is 500000 bytes; at most 4096 are taken"),
        "the reason is in the log: {}",
        &output[..output.len().min(500)]
    );
}

#[tokio::test]
async fn legacy_build_with_inline_sources_is_served_back() {
    let app = spawn_api().await;
    let legacy = Legacy::new();
    let archive = b"PK\x03\x04 pretend zip".to_vec();
    let uri = format!("data:application/zip;base64,{}", base64::engine::general_purpose::STANDARD.encode(&archive));
    assert_eq!(post_json(&app, "/", &legacy.body(5, &uri)).await, (200, json!({"status": "ok"})));

    let path = format!("/{}", legacy.build_uuid);
    assert_eq!(app.head(&path).await.status().as_u16(), 200);
    let redirect = app.get(&path).await;
    assert_eq!(redirect.status().as_u16(), 302);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature=") && location.contains("X-Amz-Expires="), "{location}");
    assert_eq!(shuttle_tests::get(&location).await.unwrap().bytes().await.unwrap().to_vec(), archive);

    let again = legacy.body(6, "data:base64,b3RoZXI=");
    assert_eq!(post_json(&app, "/", &again).await, (200, json!({"status": "ok"})), "a repeated build_uuid is answered ok");
    assert_eq!(shuttle_tests::get(&location).await.unwrap().bytes().await.unwrap().to_vec(), archive, "the first build stands");
    assert_eq!(app.stack.items().await.len(), 1);
    assert_eq!(app.stack.queued().await.len(), 1);
}

#[tokio::test]
async fn sources_routes_match_uuids_only_and_answer_truthfully() {
    let app = spawn_api().await;
    let unknown = format!("/{}", Uuid::new_v4());
    assert_eq!(app.head(&unknown).await.status().as_u16(), 404);
    assert_eq!(json_of(app.get(&unknown).await).await, (404, json!({"status": "Not Found"})));
    assert_eq!(json_of(app.get("/not-a-uuid").await).await.0, 404);
    assert_eq!(app.head("/not-a-uuid").await.status().as_u16(), 404);
    let response = app.get("/octhc").await;
    assert_eq!(response.text().await.unwrap(), "overall_status=good", "/octhc wins over /{{build_uuid}}");
}

#[tokio::test]
async fn legacy_status_logs_and_stop_by_job_and_number() {
    let app = spawn_api().await;
    let first = Legacy::new();
    let repeat = Legacy { app_uuid: first.app_uuid, build_uuid: Uuid::new_v4() };
    post_json(&app, "/", &first.body(4, "https://src.example/a.tgz")).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    post_json(&app, "/", &repeat.body(4, "https://src.example/b.tgz")).await;

    let status_path = format!("/{}/4/status", first.job());
    assert_eq!(
        json_of(app.get(&status_path).await).await,
        (200, json!({"id": 4, "building": false, "status": "pending", "type": "jenkins"}))
    );
    assert_eq!(json_of(app.get(&format!("/{}/4/logs", first.job())).await).await, (200, json!({"output": ""})));
    assert_eq!(json_of(app.get(&format!("/{}/5/status", first.job())).await).await.0, 404);

    assert_eq!(json_of(app.delete(&format!("/{}/4", first.job())).await).await, (200, json!({"status": "ok"})));
    assert_eq!(json_of(app.get(&status_path).await).await.1["status"], "stopped");
    let items = app.stack.items().await;
    let stopped: Vec<_> = items.iter().filter(|i| i["state"].as_s().unwrap() == "stopped").collect();
    assert_eq!(stopped.len(), 1, "only the newest build numbered 4 is stopped");
    assert_eq!(stopped[0]["source_id"].as_s().unwrap(), &repeat.build_uuid.to_string());

    assert_eq!(json_of(app.delete(&format!("/{}/4", first.job())).await).await, (200, json!({"status": "ok"})), "finished: still ok");
    assert_eq!(json_of(app.delete(&format!("/{}/9", first.job())).await).await.0, 404);
}

#[tokio::test]
async fn delete_job_stops_every_unfinished_build_of_the_app() {
    let app = spawn_api().await;
    let first = Legacy::new();
    let second = Legacy { app_uuid: first.app_uuid, build_uuid: Uuid::new_v4() };
    let other_app = Legacy::new();
    post_json(&app, "/", &first.body(1, "https://src.example/a.tgz")).await;
    post_json(&app, "/", &second.body(2, "https://src.example/a.tgz")).await;
    post_json(&app, "/", &other_app.body(1, "https://src.example/a.tgz")).await;

    assert_eq!(json_of(app.delete(&format!("/{}", first.job())).await).await, (200, json!({"status": "ok"})));
    for n in [1, 2] {
        assert_eq!(json_of(app.get(&format!("/{}/{n}/status", first.job())).await).await.1["status"], "stopped");
    }
    assert_eq!(json_of(app.get(&format!("/{}/1/status", other_app.job())).await).await.1["status"], "pending");
    // The first app's job was never made (no poller here): looked up, found gone, and that is
    // ok. An app the shuttle has no build of is unknown, and Jenkins is not asked anything.
    let unknown = format!("/deploy-{}", Uuid::new_v4());
    assert_eq!(json_of(app.delete(&unknown).await).await.0, 404);
    let asked: Vec<_> = app.jenkins_requests().await.into_iter().filter(|(_, path, _)| path.contains("/job/")).collect();
    assert!(!asked.is_empty() && asked.iter().all(|(_, path, _)| path.contains(&format!("/job/{}/", first.job()))), "{asked:?}");
    assert!(asked.iter().all(|(_, path, _)| !path.ends_with("/doDelete")), "nothing to delete: {asked:?}");
}

#[tokio::test]
async fn unknown_routes_are_404_with_a_json_body() {
    let app = spawn_api().await;
    for (method, path) in [("GET", "/"), ("PUT", "/my-app/1"), ("GET", "/a/b/c/d"), ("GET", "/a/1/other"), ("PATCH", "/octhc")] {
        let response = app.request(method.parse().unwrap(), path).send().await.unwrap();
        assert_eq!(json_of(response).await, (404, json!({"message": "Not Found"})), "{method} {path}");
    }
}

#[tokio::test]
async fn a_5_mib_inline_source_is_accepted() {
    let app = spawn_api().await;
    let legacy = Legacy::new();
    let prefix = "data:application/zip;base64,";
    // A data: URI of 5 MiB: the largest inline source a 6 MB Lambda request carries comfortably.
    let decoded_len = (5 * 1024 * 1024 - prefix.len()) / 4 * 3;
    let archive: Vec<u8> = (0..decoded_len).map(|i| (i * 31 % 251) as u8).collect();
    let uri = format!("{prefix}{}", base64::engine::general_purpose::STANDARD.encode(&archive));
    assert!(uri.len() <= 5 * 1024 * 1024 && uri.len() > 5 * 1024 * 1024 - 8);
    assert_eq!(post_json(&app, "/", &legacy.body(1, &uri)).await, (200, json!({"status": "ok"})));
    let location = app.get(&format!("/{}", legacy.build_uuid)).await.headers()["location"].to_str().unwrap().to_owned();
    let stored = shuttle_tests::get(&location).await.unwrap().bytes().await.unwrap();
    assert!(stored.as_ref() == archive.as_slice(), "the stored sources are the decoded bytes");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_writes_nothing() {
    let app = spawn_api().await;
    let legacy = Legacy::new();
    let padding = "A".repeat(MAX_BODY_BYTES);
    let (status, body) = post_json(&app, "/", &legacy.body(1, &format!("data:base64,{padding}"))).await;
    assert_eq!(status, 413);
    assert_eq!(body["status"], "Payload Too Large");
    assert!(body["error"].as_str().unwrap().contains(&MAX_BODY_BYTES.to_string()), "{body}");
    let (status, _) = post_json(&app, "/my-app/1", &json!({"padding": padding})).await;
    assert_eq!(status, 413);
    app.stack.assert_nothing_written("413").await;
}

/// A client that writes its whole body before it reads the answer (as most HTTP clients do)
/// reads the 413: the gateway reads the body first, as API Gateway reads up to its 10 MB.
#[tokio::test]
async fn a_client_that_sends_its_whole_body_first_reads_the_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_api().await;
    let address = app.url("").trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect to the gateway");
    let size = MAX_BODY_BYTES + 1;
    let head = format!("POST /my-app/1 HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("the request head");
    let piece = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < size {
        let n = piece.len().min(size - sent);
        stream.write_all(&piece[..n]).await.expect("the whole body is taken before the answer");
        sent += n;
        if sent % (1024 * 1024) < piece.len() {
            // Time for an early answer to arrive, as on a slower link.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    app.stack.assert_nothing_written("413").await;
}

#[tokio::test]
async fn bad_path_segments_are_400s_on_every_build_route() {
    let app = spawn_api().await;
    for (method, path, field) in [
        ("GET", "/my%20app/1/status", "app_id"),
        ("GET", "/my-app/b%21d/logs", "build_id"),
        ("DELETE", "/my-app/b%40d", "build_id"),
        ("DELETE", "/my%24app", "app"),
    ] {
        let response = app.request(method.parse().unwrap(), path).send().await.unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!((status, body["field"].as_str()), (400, Some(field)), "{method} {path}: {body}");
    }
}
