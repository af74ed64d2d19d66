//! `DELETE /{app_id}/{build_id}`: stop a build (v2 and legacy `/{app}-{app_uuid}/{n}`).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use serde_json::json;
use shuttle_core::api::StopOutcome;
use shuttle_core::record::ApiKind;
use shuttle_core::ShuttleError;
use shuttle_http::{error_response, json_response, path_param};

use crate::App;

/// One span per request, with the build it is about.
#[tracing::instrument(name = "request", skip_all, fields(function = "stop", method = %request.method(), path = request.uri().path(), build = %shuttle_http::build_key(&request)))]
pub async fn handle(app: &App, request: Request) -> Result<Response<Body>, Error> {
    if let Some(refusal) = shuttle_http::unauthorized(&app.access, &request).await {
        return Ok(refusal);
    }
    let app_id = path_param(&request, "app_id").unwrap_or_default();
    let build_id = path_param(&request, "build_id").unwrap_or_default();
    let response = match app.use_case.build(app_id, build_id).await {
        Ok((ApiKind::V2, StopOutcome::Stopping)) => json_response(StatusCode::OK, &json!({"status": "OK"})),
        Ok((ApiKind::V2, StopOutcome::AlreadyFinished)) => error_response(&ShuttleError::NotRunning),
        Ok((ApiKind::Legacy, _)) => json_response(StatusCode::OK, &json!({"status": "ok"})),
        Err(error) => error_response(&error),
    };
    Ok(response)
}
