//! `DELETE /{app}`: stop the app's unfinished builds, then delete its Jenkins job.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use serde_json::json;
use shuttle_core::Shuttle;
use shuttle_http::{error_response, json_response, path_param};

/// One span per request, with the build it is about.
#[tracing::instrument(name = "request", skip_all, fields(function = "delete", method = %request.method(), path = request.uri().path(), build = %shuttle_http::build_key(&request)))]
pub async fn handle(shuttle: &Shuttle, request: Request) -> Result<Response<Body>, Error> {
    if let Some(refusal) = shuttle_http::unauthorized(shuttle, &request) {
        return Ok(refusal);
    }
    let app = path_param(&request, "app").unwrap_or_default();
    let response = match shuttle.delete_app(app).await {
        Ok(()) => json_response(StatusCode::OK, &json!({"status": "ok"})),
        Err(error) => error_response(&error),
    };
    Ok(response)
}
