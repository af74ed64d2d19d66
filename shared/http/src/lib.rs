//! HTTP glue shared by the API functions: request extraction, the token check, and the one
//! place where an error becomes a status code. (Their wiring is `shuttle_adapters::wiring`.)

use base64::Engine;
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::json;
use shuttle_core::access::{Access, LinkError, LinkSigner};
use shuttle_core::error::ShuttleError;
use shuttle_core::ids::parse_uuid;
use shuttle_core::secrets::Keyed;

/// Logs as JSON in Lambda (`AWS_LAMBDA_LOG_FORMAT=JSON`), as text elsewhere.
pub fn init_tracing() {
    lambda_http::tracing::init_default_subscriber();
}

/// An API function as wired at start: who may call it (`SHUTTLE_API_TOKENS` or open mode),
/// and the use cases it serves.
pub struct Function<U> {
    /// Given at start, or read at run time (`ACCESS_SECRET_ID`).
    pub access: Keyed<Access>,
    pub use_case: U,
}

/// The 401 to answer when the caller shows no valid token (SPEC §7), or the 503 when the tokens
/// could not be read; `None` lets it in. Every route but `/octhc` asks this first.
pub async fn unauthorized(access: &Keyed<Access>, request: &Request) -> Option<Response<Body>> {
    let access = match access.get().await {
        Ok(access) => access,
        Err(error) => return Some(error_response(&ShuttleError::Unavailable(error))),
    };
    let token = presented_token(request);
    if access.admits(token.as_deref()) {
        return None;
    }
    Some(refusal(if token.is_some() { "the token is not valid" } else { "a token is required" }))
}

/// Like [`unauthorized`] for `GET`/`HEAD /{build_uuid}`, which also take a valid signed link
/// (`?expires=…&signature=…`, handed to Jenkins by the poller).
pub async fn unauthorized_for_sources(
    access: &Keyed<Access>,
    signer: &Keyed<Option<LinkSigner>>,
    request: &Request,
    build_uuid: &str,
) -> Option<Response<Body>> {
    let query = request.query_string_parameters_ref();
    let param = |name: &str| query.and_then(|q| q.first(name));
    // The key is read only for a signed link.
    let signer = match (param("expires"), param("signature")) {
        (Some(_), Some(_)) => match signer.get().await {
            Ok(signer) => Some(signer),
            Err(error) => return Some(error_response(&ShuttleError::Unavailable(error))),
        },
        _ => None,
    };
    let signer = signer.as_ref().and_then(|signer| signer.as_ref().as_ref());
    // Only a link with both parameters is checked: the id is parsed and the clock read for it alone.
    let link = match (signer, param("expires"), param("signature")) {
        (Some(signer), expires @ Some(_), signature @ Some(_)) => match parse_uuid(build_uuid) {
            Some(source_id) => signer.check(source_id, expires, signature, shuttle_core::record::now_ms()),
            None => Err(LinkError::Unsigned),
        },
        _ => Err(LinkError::Unsigned),
    };
    match link {
        Ok(()) => None,
        // Without a signature, a token decides; a bad or expired one is named, token or not.
        Err(LinkError::Unsigned) => unauthorized(access, request).await,
        Err(problem) => unauthorized(access, request).await.map(|_| refusal(&problem.to_string())),
    }
}

/// The caller's token: `Authorization: Bearer <token>`, or the password of HTTP Basic auth
/// (so it can ride in the userinfo of the controller's `BUILD_SHUTTLE_URL`).
fn presented_token(request: &Request) -> Option<String> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).ok()?;
        let (_user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

fn refusal(reason: &str) -> Response<Body> {
    tracing::info!(status = 401, error = reason, "request refused");
    let mut response = json_response(StatusCode::UNAUTHORIZED, &json!({"status": "Unauthorized", "error": reason}));
    let challenge = r#"Bearer realm="build shuttle", Basic realm="build shuttle""#;
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(challenge));
    response
}

/// The build a request is about, as its path names it: `{app_id}/{build_id}`, the build uuid or
/// the app (empty for a legacy create, whose body names it). Each request's span carries it.
pub fn build_key(request: &Request) -> String {
    match (path_param(request, "app_id"), path_param(request, "build_id")) {
        (Some(app_id), Some(build_id)) => format!("{app_id}/{build_id}"),
        _ => path_param(request, "build_uuid").or_else(|| path_param(request, "app")).unwrap_or_default().to_owned(),
    }
}

/// A path parameter of the matched route (the gateway decodes them).
pub fn path_param<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.path_parameters_ref().and_then(|params| params.first(name))
}

/// The request body as bytes (API Gateway hands text or base64-decoded binary).
pub fn body_bytes(request: &Request) -> &[u8] {
    match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    }
}

pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    let text = serde_json::to_string(body).expect("the answers' bodies have string keys only");
    typed_response(status, "application/json", Body::Text(text))
}

pub fn text_response(status: StatusCode, text: String) -> Response<Body> {
    typed_response(status, "text/plain; charset=utf-8", Body::Text(text))
}

pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}

fn typed_response(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response
}

/// The status code and body of every error, decided here and nowhere else. A 5xx body never
/// carries internals; the cause is logged once, here, redacted.
pub fn error_response(error: &ShuttleError) -> Response<Body> {
    let (status, body) = match error {
        ShuttleError::Invalid(e) => (StatusCode::BAD_REQUEST, json!({"status": "Bad Request", "field": e.field, "error": e.to_string()})),
        ShuttleError::LegacyBadRequest(rejection) => (StatusCode::BAD_REQUEST, json!({"status": rejection.to_string()})),
        ShuttleError::TooLarge { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, json!({"status": "Payload Too Large", "error": error.to_string()}))
        }
        ShuttleError::NotFound => (StatusCode::NOT_FOUND, json!({"status": "Not Found"})),
        ShuttleError::Conflict(_) => (StatusCode::CONFLICT, json!({"status": "Conflict", "error": error.to_string()})),
        ShuttleError::NotRunning => (StatusCode::UNPROCESSABLE_ENTITY, json!({"status": "The build is not running"})),
        ShuttleError::LogRangeNotSatisfiable { size } => {
            let mut response = json_response(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &json!({"status": "Range Not Satisfiable", "field": "start", "error": error.to_string()}),
            );
            response.headers_mut().insert("X-Text-Size", header::HeaderValue::from(*size));
            return response;
        }
        ShuttleError::Contended | ShuttleError::Unavailable(_) => {
            tracing::error!(error = %shuttle_core::error::with_causes(error), "request failed");
            let mut response =
                json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "Service Unavailable", "error": "try again shortly"}));
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return response;
        }
    };
    if status.is_client_error() {
        tracing::info!(status = status.as_u16(), error = %error, "request refused");
    }
    json_response(status, &body)
}

#[cfg(test)]
mod tests {
    use shuttle_core::error::{LegacyRejection, ServiceError};
    use shuttle_core::ValidationError;

    use super::*;

    fn body_of(response: &Response<Body>) -> serde_json::Value {
        match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap(),
            other => panic!("not a text body: {other:?}"),
        }
    }

    #[test]
    fn each_error_has_its_status_and_body() {
        let cases = [
            (
                ShuttleError::Invalid(ValidationError::new("source.url", "is required")),
                400,
                json!({"status": "Bad Request", "field": "source.url", "error": "source.url: is required"}),
            ),
            (ShuttleError::LegacyBadRequest(LegacyRejection::MissingFields), 400, json!({"status": "Bad Request - missing fields."})),
            (
                ShuttleError::LegacyBadRequest(LegacyRejection::InvalidBuildUuid),
                400,
                json!({"status": "Bad Request - build uuid is invalid."}),
            ),
            (ShuttleError::NotFound, 404, json!({"status": "Not Found"})),
            (ShuttleError::NotRunning, 422, json!({"status": "The build is not running"})),
        ];
        for (error, status, body) in cases {
            let response = error_response(&error);
            assert_eq!(response.status().as_u16(), status, "{error}");
            assert_eq!(body_of(&response), body);
        }
        assert_eq!(
            error_response(&ShuttleError::TooLarge { what: "request body", size: 7, limit: 6 }).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(error_response(&ShuttleError::Conflict("a/1".into())).status(), StatusCode::CONFLICT);
    }

    #[test]
    fn a_backing_failure_shows_no_internals() {
        let error = ShuttleError::Unavailable(ServiceError::new("dynamodb", "table builds-secret-name not found at https://u:p@internal"));
        let response = error_response(&error);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_of(&response).to_string();
        assert!(!body.contains("builds-secret-name") && !body.contains("internal"), "{body}");
    }
}
