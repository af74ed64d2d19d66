//! `GET /{build_uuid}` (302 to a freshly presigned link) and `HEAD /{build_uuid}`, for a caller
//! with a token or a signed link.

use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Error, Request, Response};
use shuttle_http::{empty_response, error_response, path_param};

use crate::App;

/// One span per request, with the build it is about.
#[tracing::instrument(name = "request", skip_all, fields(function = "sources", method = %request.method(), path = request.uri().path(), build = %shuttle_http::build_key(&request)))]
pub async fn handle(app: &App, request: Request) -> Result<Response<Body>, Error> {
    let build_uuid = path_param(&request, "build_uuid").unwrap_or_default();
    if let Some(refusal) = shuttle_http::unauthorized_for_sources(&app.access, &app.use_case.signer, &request, build_uuid).await {
        return Ok(refusal);
    }
    let response = if request.method() == Method::HEAD {
        match app.use_case.exists(build_uuid).await {
            Ok(true) => empty_response(StatusCode::OK),
            Ok(false) => empty_response(StatusCode::NOT_FOUND),
            Err(error) => error_response(&error).map(|_| Body::Empty),
        }
    } else {
        match app.use_case.link(build_uuid).await {
            Ok(link) => found(HeaderValue::try_from(link).expect("a presigned URL is a valid header value")),
            Err(error) => error_response(&error),
        }
    };
    Ok(response)
}

/// A 302 to `location`, not to be cached: the link in it expires.
pub fn found(location: HeaderValue) -> Response<Body> {
    let mut response = empty_response(StatusCode::FOUND);
    response.headers_mut().insert(header::LOCATION, location);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
