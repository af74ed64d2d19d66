//! The AWS SDK's HTTP client: reqwest on the shuttle's one TLS configuration ([`crate::tls`]).
//!
//! The SDK's default client (hyper with rustls) loads the system's certificate store when a
//! service client is built — several hundred files, most of a function's cold start (issue 7) —
//! and would be a second HTTP and TLS stack in every function. This one is the connector the SDK
//! asks for, per timeout settings: each request is sent with reqwest, its body streamed both
//! ways, and a failure classified for the SDK's retries (timeouts, I/O, the rest).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use shuttle_core::error::ServiceError;

/// The SDK's HTTP client. Builds nothing until the SDK asks for a connector.
pub fn client() -> Result<SharedHttpClient, ServiceError> {
    // Fails here, at start, when SSL_CERT_FILE or SSL_CERT_DIR is unusable.
    crate::tls::client_config()?;
    Ok(SharedHttpClient::new(ReqwestClient::default()))
}

type Timeouts = (Option<Duration>, Option<Duration>);

/// One connector per timeout settings the SDK asks for (in practice one), kept for reuse.
#[derive(Debug, Default)]
struct ReqwestClient {
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

impl HttpClient for ReqwestClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, _components: &RuntimeComponents) -> SharedHttpConnector {
        let timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        connectors.entry(timeouts).or_insert_with(|| SharedHttpConnector::new(ReqwestConnector::new(timeouts))).clone()
    }
}

#[derive(Debug)]
struct ReqwestConnector {
    /// An error when the TLS configuration is unusable: every request fails with it.
    http: Result<reqwest::Client, Arc<str>>,
}

impl ReqwestConnector {
    fn new((connect, read): Timeouts) -> Self {
        let http = crate::tls::reqwest_builder().and_then(|mut builder| {
            if let Some(timeout) = connect {
                builder = builder.connect_timeout(timeout);
            }
            if let Some(timeout) = read {
                builder = builder.read_timeout(timeout);
            }
            builder.build().map_err(|e| ServiceError::new("http client", e))
        });
        Self { http: http.map_err(|e| e.to_string().into()) }
    }
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = self.http.clone();
        HttpConnectorFuture::new(async move {
            let http = http.map_err(|problem| ConnectorError::user(problem.to_string().into()))?;
            let request = request.try_into_http1x().map_err(|e| ConnectorError::user(e.into()))?;
            let (parts, body) = request.into_parts();
            let sent = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(reqwest::Body::wrap(body))
                .send()
                .await
                .map_err(classify)?;
            let response: http::Response<reqwest::Body> = sent.into();
            let response = response.map(SdkBody::from_body_1_x);
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// A reqwest failure as the SDK's retry strategy reads it: a timeout or an I/O failure is
/// transient (retried), a request that could not be built is the caller's.
fn classify(error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::timeout(error.into())
    } else if error.is_builder() {
        ConnectorError::user(error.into())
    } else if error.is_connect() {
        ConnectorError::io(error.into()).never_connected()
    } else {
        ConnectorError::io(error.into())
    }
}
