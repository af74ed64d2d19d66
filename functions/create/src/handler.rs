//! `POST /` (legacy) and `POST /{app_id}/{build_id}` (v2): accept a build.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use serde_json::json;
use shuttle_core::Shuttle;
use shuttle_http::{body_bytes, error_response, json_response, path_param};

/// One span per request, with the build it is about.
#[tracing::instrument(name = "request", skip_all, fields(function = "create", method = %request.method(), path = request.uri().path(), build = %shuttle_http::build_key(&request)))]
pub async fn handle(shuttle: &Shuttle, request: Request) -> Result<Response<Body>, Error> {
    if let Some(refusal) = shuttle_http::unauthorized(shuttle, &request) {
        return Ok(refusal);
    }
    let body = body_bytes(&request);
    let response = match (path_param(&request, "app_id"), path_param(&request, "build_id")) {
        (Some(app_id), Some(build_id)) => match shuttle.create_v2(app_id, build_id, body).await {
            Ok(outcome) => {
                tracing::info!(build = format_args!("{app_id}/{build_id}"), ?outcome, "build accepted");
                json_response(StatusCode::OK, &json!({"status": "OK"}))
            }
            Err(error) => error_response(&error),
        },
        _ => match shuttle.create_legacy(body).await {
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
    use shuttle_core::fakes::fake_shuttle;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

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

    const V2: &str = r#"{"source":{"url":"https://src.example/a.tgz"},"destination":{"url":"docker://r.example/o/a:1"}}"#;

    #[tokio::test]
    async fn v2_create_answers_ok() {
        let fake = fake_shuttle();
        let response = handle(&fake.shuttle, post(Some(("app", "1")), V2)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), &Body::Text(r#"{"status":"OK"}"#.into()));
    }

    #[tokio::test]
    async fn v2_create_with_a_different_body_is_409() {
        let fake = fake_shuttle();
        handle(&fake.shuttle, post(Some(("app", "1")), V2)).await.unwrap();
        let other = V2.replace("a.tgz", "b.tgz");
        assert_eq!(handle(&fake.shuttle, post(Some(("app", "1")), &other)).await.unwrap().status(), StatusCode::CONFLICT);
    }

    /// Everything logged while the guard lives, as the text subscriber writes it (spans included).
    fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || Lines(writer.clone())).finish();
        (lines, tracing::subscriber::set_default(subscriber))
    }

    #[tokio::test]
    async fn each_request_logs_in_a_span_naming_its_build() {
        let fake = fake_shuttle();
        let (lines, _guard) = capture_logs();
        handle(&fake.shuttle, post(Some(("app", "7")), V2)).await.unwrap();
        let logged = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        let accepted = logged.lines().find(|line| line.contains("build accepted")).unwrap_or_else(|| panic!("not logged:\n{logged}"));
        assert!(accepted.contains(r#"request{function="create" method=POST path="/" build=app/7}"#), "{accepted}");
    }

    #[tokio::test]
    async fn legacy_create_answers_lowercase_ok_or_its_400() {
        let fake = fake_shuttle();
        let response = handle(&fake.shuttle, post(None, "{}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.body(), &Body::Text(r#"{"status":"Bad Request - missing fields."}"#.into()));
    }
}
