//! An incoming HTTP request as the API Gateway v2 (HTTP API, payload 2.0) event a Lambda
//! receives, turned into a `lambda_http::Request` by lambda_http's own conversion.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::request::Parts;
use serde_json::{json, Map, Value};

use crate::routes::Matched;

/// The event JSON for `parts` + `body`, routed to `matched`.
pub fn api_gateway_v2_event(parts: &Parts, body: &[u8], matched: &Matched, request_id: &str) -> Value {
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let (body, is_base64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (Value::Null, false),
        Ok(text) => (Value::String(text.to_owned()), false),
        Err(_) => (Value::String(base64::engine::general_purpose::STANDARD.encode(body)), true),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let path = parts.uri.path();
    let route_key = matched.route.key();
    let host = parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": parts.uri.query().unwrap_or_default(),
        "headers": headers,
        "pathParameters": matched.parameters,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": format!("{:?}", parts.version),
                "sourceIp": "127.0.0.1",
                "userAgent": parts.headers.get(http::header::USER_AGENT).and_then(|h| h.to_str().ok()).unwrap_or_default(),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "timeEpoch": i64::try_from(now.as_millis()).unwrap_or(0),
        },
        "body": body,
        "isBase64Encoded": is_base64,
    })
}
