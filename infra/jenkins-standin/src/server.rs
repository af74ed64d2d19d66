//! The HTTP/1.1 server: every connection, the injected faults, the request log, and the
//! headers every Jenkins answer carries.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, ApiRequest};
use crate::config::JENKINS_VERSION;
use crate::control;
use crate::respond::{self, Reply};
use crate::state::{RecordedRequest, Shared};

/// The largest request body accepted (a `config.xml`, a form).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Returned to hyper to close the connection without an answer.
#[derive(Debug)]
pub struct CloseConnection;

impl fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection closed without an answer")
    }
}

impl std::error::Error for CloseConnection {}

pub async fn serve(shared: Arc<Shared>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(shared.clone(), request));
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended");
                    }
                }
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        });
    }
}

/// The path split into percent-decoded segments, empty ones dropped.
fn segments(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty()).map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()).collect()
}

/// The query for the request log, with the values of password parameters hidden.
fn masked_query(query: Option<&str>, secret_names: &[String]) -> Option<String> {
    let query = query?;
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            let hidden = secret_names.iter().any(|name| *name == k) || k.eq_ignore_ascii_case("token");
            (k.into_owned(), if hidden { "****".to_owned() } else { v.into_owned() })
        })
        .collect();
    Some(url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish())
}

fn with_jenkins_headers(shared: &Shared, mut reply: Reply) -> Reply {
    let headers = reply.headers_mut();
    headers.insert("X-Jenkins", HeaderValue::from_static(JENKINS_VERSION));
    if let Ok(session) = HeaderValue::from_str(&shared.instance_id) {
        headers.insert("X-Jenkins-Session", session);
    }
    headers.insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
    reply
}

async fn read_body(body: Incoming) -> Result<Bytes, CloseConnection> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => {
            tracing::debug!(%error, "request body unreadable");
            Err(CloseConnection)
        }
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Reply, CloseConnection> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let uri = path.clone();
    let segments = segments(&path);
    if control::is_control(&segments) {
        let body = read_body(body).await?;
        return Ok(with_jenkins_headers(&shared, control::handle(&shared, &parts.method, &segments, body, &uri)));
    }
    let (index, fault) = {
        let mut inner = shared.lock();
        let query = masked_query(parts.uri.query(), &inner.password_parameter_names());
        inner.requests.push(RecordedRequest { method: parts.method.to_string(), path: path.clone(), query, status: None });
        let index = inner.requests.len() - 1;
        (index, inner.take_fault(&path))
    };
    let record = |status: u16| {
        if let Some(entry) = shared.lock().requests.get_mut(index) {
            entry.status = Some(status);
        }
    };
    tracing::debug!(method = %parts.method, %path, "request");
    if let Some(fault) = fault {
        if let Some(stall) = fault.stall {
            tokio::time::sleep(stall).await;
        }
        if fault.reset {
            return Err(CloseConnection);
        }
        if let Some(status) = fault.status {
            let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
            record(status.as_u16());
            let reply = respond::error_page(status, &uri, status.canonical_reason().unwrap_or("Injected fault"));
            return Ok(with_jenkins_headers(&shared, reply));
        }
    }
    let body = read_body(body).await?;
    let query: Vec<(String, String)> =
        parts.uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let mut method = parts.method;
    if method == http::Method::HEAD {
        method = http::Method::GET; // hyper sends no body for HEAD
    }
    let request = ApiRequest { method, uri, headers: parts.headers, segments, query, body };
    let reply = api::handle(&shared, request).await;
    record(reply.status().as_u16());
    Ok(with_jenkins_headers(&shared, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_decoded_one_by_one() {
        assert_eq!(segments("/job/a%2Fb/api/json/"), ["job", "a/b", "api", "json"]);
        assert_eq!(segments("//queue//item/3"), ["queue", "item", "3"]);
        assert!(segments("/").is_empty());
    }

    #[test]
    fn password_values_stay_out_of_the_request_log() {
        let names = vec!["REGISTRY_PASSWORD".to_owned()];
        assert_eq!(
            masked_query(Some("BUILD_UUID=u1&REGISTRY_PASSWORD=hunter2&token=t"), &names).as_deref(),
            Some("BUILD_UUID=u1&REGISTRY_PASSWORD=****&token=****")
        );
        assert_eq!(masked_query(None, &names), None);
    }
}
