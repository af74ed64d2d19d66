//! `POST /` (legacy) and `POST /{app_id}/{build_id}` (v2): accept a build.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use serde_json::json;
use shuttle_http::{body_bytes, error_response, json_response, path_param};

use crate::App;

/// One span per request, with the build it is about.
#[tracing::instrument(name = "request", skip_all, fields(function = "create", method = %request.method(), path = request.uri().path(), build = %shuttle_http::build_key(&request)))]
pub async fn handle(app: &App, request: Request) -> Result<Response<Body>, Error> {
    if let Some(refusal) = shuttle_http::unauthorized(&app.access, &request).await {
        return Ok(refusal);
    }
    let body = body_bytes(&request);
    let response = match (path_param(&request, "app_id"), path_param(&request, "build_id")) {
        (Some(app_id), Some(build_id)) => match app.use_case.v2(app_id, build_id, body).await {
            Ok(outcome) => {
                tracing::info!(build = format_args!("{app_id}/{build_id}"), ?outcome, "build accepted");
                json_response(StatusCode::OK, &json!({"status": "OK"}))
            }
            Err(error) => error_response(&error),
        },
        _ => match app.use_case.legacy(body).await {
            Ok(outcome) => {
                tracing::info!(?outcome, "legacy build accepted");
                json_response(StatusCode::OK, &json!({"status": "ok"}))
            }
            Err(error) => error_response(&error),
        },
    };
    Ok(response)
}

#[cfg(test)]
mod tests {
    use lambda_http::RequestExt;
    use shuttle_core::access::Access;
    use shuttle_core::fakes::{capture_logs, fakes, Fakes};
    use std::collections::HashMap;

    use super::*;

    fn post(path: Option<(&str, &str)>, body: &str) -> Request {
        let request = lambda_http::http::Request::builder().method("POST").uri("/").body(Body::Text(body.to_owned())).unwrap();
        match path {
            Some((app_id, build_id)) => request.with_path_parameters(HashMap::from([
                ("app_id".to_owned(), app_id.to_owned()),
                ("build_id".to_owned(), build_id.to_owned()),
            ])),
            None => request,
        }
    }

    /// The create function on in-memory ports, open to every caller.
    fn app(fake: &Fakes) -> App {
        App { access: shuttle_core::secrets::Keyed::given(Access::Open), use_case: fake.create() }
    }

    const V2: &str = r#"{"source":{"url":"https://src.example/a.tgz"},"destination":{"url":"docker://r.example/o/a:1"}}"#;

    #[tokio::test]
    async fn v2_create_answers_ok() {
        let fake = fakes();
        let response = handle(&app(&fake), post(Some(("app", "1")), V2)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), &Body::Text(r#"{"status":"OK"}"#.into()));
    }

    #[tokio::test]
    async fn v2_create_with_a_different_body_is_409() {
        let fake = fakes();
        handle(&app(&fake), post(Some(("app", "1")), V2)).await.unwrap();
        let other = V2.replace("a.tgz", "b.tgz");
        assert_eq!(handle(&app(&fake), post(Some(("app", "1")), &other)).await.unwrap().status(), StatusCode::CONFLICT);
    }

    #[tokio::test]
    async fn each_request_logs_in_a_span_naming_its_build() {
        let fake = fakes();
        let logs = capture_logs();
        handle(&app(&fake), post(Some(("app", "7")), V2)).await.unwrap();
        let logged = logs.text();
        let accepted = logged.lines().find(|line| line.contains("build accepted")).unwrap_or_else(|| panic!("not logged:\n{logged}"));
        assert!(accepted.contains(r#"request{function="create" method=POST path="/" build=app/7}"#), "{accepted}");
    }

    #[tokio::test]
    async fn legacy_create_answers_lowercase_ok_or_its_400() {
        let fake = fakes();
        let response = handle(&app(&fake), post(None, "{}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.body(), &Body::Text(r#"{"status":"Bad Request - missing fields."}"#.into()));
    }
}
