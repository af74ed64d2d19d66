//! `DELETE /{app}`: stop the app's unfinished builds, then delete its Jenkins job.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use serde_json::json;
use shuttle_http::{error_response, json_response, path_param};

use crate::App;

/// One span per request, with the build it is about.
#[tracing::instrument(name = "request", skip_all, fields(function = "delete", method = %request.method(), path = request.uri().path(), build = %shuttle_http::build_key(&request)))]
pub async fn handle(app: &App, request: Request) -> Result<Response<Body>, Error> {
    if let Some(refusal) = shuttle_http::unauthorized(&app.access, &request).await {
        return Ok(refusal);
    }
    let name = path_param(&request, "app").unwrap_or_default();
    let response = match app.use_case.app(name).await {
        Ok(()) => json_response(StatusCode::OK, &json!({"status": "ok"})),
        Err(error) => error_response(&error),
    };
    Ok(response)
}
