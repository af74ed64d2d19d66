//! `GET /octhc`, `GET /{app_id}/{build_id}/status` and `GET /{app_id}/{build_id}/logs`.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::RequestExt;
use lambda_http::{Body, Error, Request, Response};
use serde::Serialize;
use serde_json::json;
use shuttle_core::api::{LogRange, LogRead};
use shuttle_core::error::{ShuttleError, ValidationError};
use shuttle_core::ports::LogTail;
use shuttle_core::record::{ApiKind, BuildRecord, Rfc3339Ms, Timings};
use shuttle_core::relay::StatusBody;
use shuttle_http::{error_response, json_response, path_param, text_response};
use uuid::Uuid;

use crate::App;

/// One span per request, with the build it is about.
#[tracing::instrument(name = "request", skip_all, fields(function = "status", method = %request.method(), path = request.uri().path(), build = %shuttle_http::build_key(&request)))]
pub async fn handle(app: &App, request: Request) -> Result<Response<Body>, Error> {
    let path = request.uri().path();
    if path == "/octhc" {
        return Ok(text_response(StatusCode::OK, "overall_status=good".to_owned()));
    }
    if let Some(refusal) = shuttle_http::unauthorized(&app.access, &request).await {
        return Ok(refusal);
    }
    let app_id = path_param(&request, "app_id").unwrap_or_default();
    let build_id = path_param(&request, "build_id").unwrap_or_default();
    let response = if path.ends_with("/logs") {
        let read = match log_start(&request) {
            Ok(start) => app.use_case.logs.read(app_id, build_id, start).await,
            Err(error) => Err(error),
        };
        match read {
            Ok(LogRead::Tail(record, tail)) => logs_response(&record, &tail),
            Ok(LogRead::Range(_, range)) => range_response(range),
            Err(error) => error_response(&error),
        }
    } else {
        match app.use_case.status.find(app_id, build_id).await {
            Ok(record) => status_response(&record),
            Err(error) => error_response(&error),
        }
    };
    Ok(response)
}

/// The v2 endpoint's answer: the status webhook's body, and the fields only the endpoint shows.
#[derive(Serialize)]
struct V2Status<'a> {
    #[serde(flatten)]
    body: StatusBody<'a>,
    human_readable_info: &'a str,
    source_id: Uuid,
    created_at: Rfc3339Ms,
    updated_at: Rfc3339Ms,
    #[serde(flatten)]
    timings: Timings<'a>,
}

/// The status endpoint's answer for `record` (public for the handler bench's least status).
pub fn status_response(record: &BuildRecord) -> Response<Body> {
    match record.kind {
        ApiKind::V2 => json_response(
            StatusCode::OK,
            &V2Status {
                body: record.endpoint_status_body(),
                human_readable_info: &record.human_readable_info,
                source_id: record.source_id,
                created_at: Rfc3339Ms(record.created_at_ms),
                updated_at: Rfc3339Ms(record.updated_at_ms),
                timings: record.timings(),
            },
        ),
        ApiKind::Legacy => json_response(StatusCode::OK, &record.endpoint_status_body()),
    }
}

/// The log as the API shows it: the end of it when it is long, after a line saying so.
fn shown_log(tail: &LogTail) -> String {
    if !tail.truncated {
        return tail.text.clone();
    }
    // Start at a line boundary so the first line shown is whole.
    let text = match tail.text.find('\n') {
        Some(newline) if newline < 64 * 1024 => &tail.text[newline + 1..],
        _ => tail.text.as_str(),
    };
    format!("[earlier output cut: showing the last {} of {} bytes; the whole log is archived]\n{text}", text.len(), tail.total_bytes)
}

/// `?start=N`: a whole number of bytes; anything else is a 400 naming `start`.
fn log_start(request: &Request) -> Result<Option<u64>, ShuttleError> {
    let Some(raw) = request.query_string_parameters_ref().and_then(|query| query.first("start")) else { return Ok(None) };
    raw.trim().parse::<u64>().map(Some).map_err(|_| {
        ShuttleError::Invalid(ValidationError::new("start", "must be a whole number of bytes from the log's start, 0 or more"))
    })
}

/// The log from `start`, as Jenkins' `progressiveText` answers: the bytes as archived, where
/// the next read starts (`X-Text-Size`) and, while more may come, `X-More-Data: true`.
fn range_response(range: LogRange) -> Response<Body> {
    let mut response = Response::new(Body::Binary(range.bytes.to_vec()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert("X-Text-Size", HeaderValue::from(range.next_start));
    if range.more_data {
        headers.insert("X-More-Data", HeaderValue::from_static("true"));
    }
    response
}

fn logs_response(record: &BuildRecord, tail: &LogTail) -> Response<Body> {
    match record.kind {
        ApiKind::V2 => text_response(StatusCode::OK, shown_log(tail)),
        ApiKind::Legacy => json_response(StatusCode::OK, &json!({"output": shown_log(tail)})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_log_says_so_and_starts_on_a_whole_line() {
        let tail = LogTail { text: "art of a line\nline 2\nline 3\n".into(), total_bytes: 10_000, truncated: true };
        let shown = shown_log(&tail);
        assert!(shown.starts_with("[earlier output cut: showing the last 14 of 10000 bytes"), "{shown}");
        assert!(shown.ends_with("]\nline 2\nline 3\n"), "{shown}");
    }

    #[test]
    fn a_whole_log_is_shown_as_it_is() {
        let tail = LogTail { text: "one\ntwo\n".into(), total_bytes: 8, truncated: false };
        assert_eq!(shown_log(&tail), "one\ntwo\n");
    }
}
