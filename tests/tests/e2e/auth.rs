//! Who may call the API (SPEC §7), end to end through the local gateway: tokens as Bearer or as
//! the Basic password, several at once for a rotation, open mode, and the signed, expiring
//! sources links the poller hands to Jenkins.

use base64::Engine;
use reqwest::Method;
use serde_json::json;
use shuttle_core::record::now_ms;
use shuttle_tests::{json_of, spawn_api, spawn_app_with, AppOptions, TestApp, TEST_TOKEN};
use url::Url;
use uuid::Uuid;

/// Every route but `/octhc`, with a body where one is needed.
fn routes(build_uuid: Uuid) -> Vec<(Method, String)> {
    [
        (Method::POST, "/".to_owned()),
        (Method::POST, "/my-app/1".to_owned()),
        (Method::DELETE, "/my-app/1".to_owned()),
        (Method::DELETE, "/my-app".to_owned()),
        (Method::GET, "/my-app/1/status".to_owned()),
        (Method::GET, "/my-app/1/logs".to_owned()),
        (Method::GET, format!("/{build_uuid}")),
        (Method::HEAD, format!("/{build_uuid}")),
    ]
    .into()
}

const V2: &str =
    r#"{"source":{"url":"docker://registry.example.com/org/base:1"},"destination":{"url":"docker://registry.example.com/org/my-app:1"}}"#;

/// A legacy build with inline sources, accepted: its sources are cached at once.
async fn legacy_build_with_sources(app: &TestApp) -> Uuid {
    let build_uuid = Uuid::new_v4();
    let body = json!({
        "sha": "abcdef1", "app": "myapp", "space": "default", "branch": "main", "repo": "https://github.com/org/repo", "org": "org",
        "build_uuid": build_uuid, "app_uuid": Uuid::new_v4(), "sources": "data:base64,aGVsbG8=", "build_options": "",
        "build_number": 1, "callback": "https://controller.example/builds/1", "callback_auth": "",
        "gm_registry_host": "registry.example", "gm_registry_repo": "org"
    });
    assert_eq!(json_of(app.post("/", body.to_string()).await).await.0, 200);
    build_uuid
}

#[tokio::test]
async fn every_route_but_the_health_check_needs_a_valid_token() {
    let app = spawn_api().await;
    let build_uuid = legacy_build_with_sources(&app).await;
    let basic =
        |user: &str, password: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
    let refused = [
        None,
        Some("Bearer not-the-token".to_owned()),
        Some(format!("Bearer {TEST_TOKEN}x")),
        Some(basic(TEST_TOKEN, "")),
        Some(format!("Token {TEST_TOKEN}")),
    ];
    for (method, path) in routes(build_uuid) {
        for authorization in &refused {
            let mut request = app.client.request(method.clone(), app.url(&path)).body(V2);
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {authorization:?}");
            let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(challenge.contains("Bearer") && challenge.contains("Basic"), "{challenge}");
            if method != Method::HEAD {
                let (_, body) = json_of(response).await;
                assert_eq!(body["status"], "Unauthorized", "{method} {path}");
            }
        }
    }
    let health = app.client.get(app.url("/octhc")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the health check is open");
    assert_eq!(json_of(app.get("/my-app/1/status").await).await.0, 404, "nothing was created by the refused requests");

    let with_basic = app.client.get(app.url("/my-app/1/status")).header("authorization", basic("controller", TEST_TOKEN)).send().await;
    assert_eq!(with_basic.unwrap().status(), 404, "the token as the Basic password is taken");
    let userinfo = Url::parse(&app.url("/my-app/1/status")).map(|mut url| {
        url.set_username("controller").unwrap();
        url.set_password(Some(TEST_TOKEN)).unwrap();
        url
    });
    let from_userinfo = app.client.get(userinfo.unwrap()).send().await.unwrap();
    assert_eq!(from_userinfo.status(), 404, "the token in BUILD_SHUTTLE_URL's userinfo is taken");
}

#[tokio::test]
async fn during_a_rotation_both_tokens_are_taken() {
    let tokens = "old-caller-token-0123456789,new-caller-token-0123456789";
    let app =
        spawn_app_with(AppOptions { settings: vec![("SHUTTLE_API_TOKENS", tokens.into())], poller: false, ..AppOptions::default() }).await;
    for token in tokens.split(',') {
        let response = app.client.post(app.url("/my-app/1")).bearer_auth(token).body(V2).send().await.unwrap();
        assert_eq!(response.status(), 200, "{token}");
    }
    let retired = app.client.get(app.url("/my-app/1/status")).bearer_auth(TEST_TOKEN).send().await.unwrap();
    assert_eq!(retired.status(), 401, "a token no longer listed is refused");
}

#[tokio::test]
async fn open_mode_takes_callers_that_send_nothing() {
    let settings = vec![("SHUTTLE_API_TOKENS", String::new()), ("SHUTTLE_OPEN_MODE", "true".into())];
    let app = spawn_app_with(AppOptions { settings, poller: false, ..AppOptions::default() }).await;
    let created = app.client.post(app.url("/my-app/1")).body(V2).send().await.unwrap();
    assert_eq!(created.status(), 200);
    let status = app.client.get(app.url("/my-app/1/status")).send().await.unwrap();
    assert_eq!(json_of(status).await.1["status"], "pending");
}

#[tokio::test]
async fn a_signed_sources_link_is_taken_without_a_token_until_it_expires() {
    let app = spawn_api().await;
    let build_uuid = legacy_build_with_sources(&app).await;
    let settings = &app.poller.policy;
    let signer = settings.sources_signer.get().await.unwrap();
    let link = |now_ms| {
        let signed = settings.sources_link_for_jenkins(signer.as_ref().as_ref(), build_uuid, now_ms);
        // The link names the shuttle's public host: the test asks the gateway it runs on.
        let signed = Url::parse(&signed).unwrap();
        format!("{}?{}", app.url(signed.path()), signed.query().unwrap())
    };

    let fresh = link(now_ms());
    let response = app.client.get(&fresh).send().await.unwrap();
    assert_eq!(response.status(), 302, "a signed link needs no token");
    let sources = shuttle_tests::get(response.headers()["location"].to_str().unwrap()).await.unwrap().bytes().await.unwrap();
    assert_eq!(sources.as_ref(), b"hello");
    assert_eq!(app.client.head(&fresh).send().await.unwrap().status(), 200);

    let lifetime = settings.queue_timeout + settings.build_timeout + shuttle_core::config::SOURCES_LINK_MARGIN;
    let expired = link(now_ms() - lifetime.as_millis() as u64 - 1_000);
    let (status, body) = json_of(app.client.get(&expired).send().await.unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("the sources link has expired")));

    let other_build = fresh.replace(&build_uuid.to_string(), &Uuid::new_v4().to_string());
    let (status, body) = json_of(app.client.get(&other_build).send().await.unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("the sources link's signature is not valid")));
    let later = fresh.replace("expires=", "expires=9");
    assert_eq!(app.client.get(&later).send().await.unwrap().status(), 401, "the expiry is signed");

    let with_token = app.request(Method::GET, &format!("/{build_uuid}?expires=1&signature=00")).send().await.unwrap();
    assert_eq!(with_token.status(), 302, "a token is enough whatever the link says");
}
