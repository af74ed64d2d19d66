//! The HTTP server: one process, every route, the Lambda handlers themselves.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::Body;
use serde_json::json;
use shuttle_core::api::MAX_BODY_BYTES;
use shuttle_core::ShuttleError;
use tokio::net::TcpListener;

use crate::event::api_gateway_v2_event;
use crate::functions::Functions;
use crate::invocation::within;
use crate::routes::{match_route, Function};

/// API Gateway's payload limit for an HTTP API (10 MB, its documented quota): it reads a body
/// up to this; the function's own limit ([`MAX_BODY_BYTES`], Lambda's 6 MB event) is smaller.
const GATEWAY_PAYLOAD_LIMIT: usize = 10 * 1024 * 1024;

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, functions: Functions) -> std::io::Result<()> {
    let functions = Arc::new(functions);
    let counter = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, peer) = listener.accept().await?;
        let (functions, counter) = (functions.clone(), counter.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (functions, counter) = (functions.clone(), counter.clone());
                async move { Ok::<_, Infallible>(handle(&functions, request, peer, counter.fetch_add(1, Ordering::Relaxed)).await) }
            });
            if let Err(error) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%error, "connection closed");
            }
        });
    }
}

async fn handle(functions: &Functions, request: Request<Incoming>, peer: SocketAddr, sequence: u64) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = route(functions, request, sequence).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, %peer, "request");
    response
}

async fn route(functions: &Functions, request: Request<Incoming>, sequence: u64) -> Response<Full<Bytes>> {
    let Some(matched) = match_route(request.method(), request.uri().path()) else {
        return json(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
    };
    // Like API Gateway, the body is read up to its own payload limit before it is judged: a
    // client still sending when the answer comes would see a reset, not the 413.
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if let Some(size) = declared.filter(|size| *size > GATEWAY_PAYLOAD_LIMIT) {
        return too_large(size);
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, GATEWAY_PAYLOAD_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return too_large(GATEWAY_PAYLOAD_LIMIT + 1),
        Err(_) => return json(StatusCode::BAD_REQUEST, json!({"message": "Bad Request"})),
    };
    if body.len() > MAX_BODY_BYTES {
        return too_large(body.len());
    }
    let request_id = format!("local-{sequence:016x}");
    let event = api_gateway_v2_event(&parts, &body, &matched, &request_id);
    let lambda_request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(request) => request,
        Err(error) => {
            tracing::error!(%error, "could not build the API Gateway event");
            return json(StatusCode::INTERNAL_SERVER_ERROR, json!({"message": "Internal Server Error"}));
        }
    };
    let function = matched.route.function;
    let result = within(function.binary_name(), async {
        match function {
            Function::Create => create::handler::handle(&functions.create, lambda_request).await,
            Function::Stop => stop::handler::handle(&functions.stop, lambda_request).await,
            Function::Delete => delete::handler::handle(&functions.delete, lambda_request).await,
            Function::Status => status::handler::handle(&functions.status, lambda_request).await,
            Function::Sources => sources::handler::handle(&functions.sources, lambda_request).await,
        }
    })
    .await;
    match result {
        Ok(response) => to_hyper(response),
        // What API Gateway answers when the function itself fails.
        Err(error) => {
            tracing::error!(%error, function = ?matched.route.function, "handler failed");
            json(StatusCode::INTERNAL_SERVER_ERROR, json!({"message": "Internal Server Error"}))
        }
    }
}

fn to_hyper(response: Response<Body>) -> Response<Full<Bytes>> {
    response.map(|body| match body {
        Body::Text(text) => Full::new(Bytes::from(text)),
        Body::Binary(bytes) => Full::new(Bytes::from(bytes)),
        _ => Full::new(Bytes::new()),
    })
}

/// The same 413 the handlers give, for bodies too large to hand to a Lambda at all.
fn too_large(size: usize) -> Response<Full<Bytes>> {
    let mut response =
        to_hyper(shuttle_http::error_response(&ShuttleError::TooLarge { what: "request body", size, limit: MAX_BODY_BYTES }));
    response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a static status and header always build")
}
