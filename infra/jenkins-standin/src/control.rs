//! The test-control surface. NOT part of Jenkins: everything here lives under `/__standin/`
//! (or `/job/N/<b>/__standin/…`, `/job/F/job/N/<b>/__standin/…` in a folder), needs no
//! credentials, is never faulted and never recorded.
//!
//! - `POST /__standin/faults` with `{"status": 500, "count": 3}`: the next 3 Jenkins requests
//!   answer 500. `{"stall_ms": 3000, "count": 2}`: the next 2 wait that long first (then answer
//!   normally, or with `status`). `{"reset": true, "count": 2}`: the next 2 connections are
//!   closed without an answer. `count` defaults to 1; `"path_contains": "progressiveText"` limits
//!   a fault to matching paths. Faults queue up in the order they were posted.
//! - `GET /__standin/faults`: the faults still pending. `DELETE /__standin/faults`: clears them.
//! - `GET /__standin/requests`: every Jenkins request seen, oldest first, as
//!   `{"method", "path", "query", "status"}` (values of password parameters in the query are
//!   `****`). `DELETE /__standin/requests` clears the list.
//! - `POST /job/N/<b>/__standin/append` (`/job/F/job/N/<b>/__standin/append` in a folder) with a
//!   text body: appends exactly those bytes (no console note is added) to the log of a running
//!   build (204; 409 when the build is over; 404 when there is no such build).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;

use crate::item_path::ItemPath;
use crate::respond::{self, Reply};
use crate::state::{Fault, Shared};

/// Whether a path (as decoded segments) belongs to the test-control surface.
pub fn is_control(segments: &[String]) -> bool {
    matches!(segments.first(), Some(first) if first == "__standin") || build_control(segments).is_some()
}

/// `job/A/job/B/<b>/__standin/<rest…>`: the job, the build reference and the rest.
fn build_control(segments: &[String]) -> Option<(ItemPath, &str, Vec<&str>)> {
    let mut job = ItemPath::root();
    let mut rest = segments;
    while let [marker, name, after @ ..] = rest {
        if marker != "job" {
            break;
        }
        job = job.child(name);
        rest = after;
    }
    match rest {
        [number, marker, control @ ..] if !job.is_root() && marker == "__standin" => {
            Some((job, number.as_str(), control.iter().map(String::as_str).collect()))
        }
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultSpec {
    status: Option<u16>,
    stall_ms: Option<u64>,
    #[serde(default)]
    reset: bool,
    count: Option<u32>,
    path_contains: Option<String>,
}

fn bad_request(message: &str) -> Reply {
    respond::text(StatusCode::BAD_REQUEST, format!("{message}\n"))
}

fn add_fault(shared: &Shared, body: &Bytes) -> Reply {
    let spec: FaultSpec = match serde_json::from_slice(body) {
        Ok(spec) => spec,
        Err(e) => return bad_request(&format!("a fault is a JSON object {{status, stall_ms, reset, count, path_contains}}: {e}")),
    };
    if spec.status.is_none() && spec.stall_ms.is_none() && !spec.reset {
        return bad_request("a fault needs status, stall_ms or reset");
    }
    if spec.status.is_some_and(|s| !(100..=599).contains(&s)) {
        return bad_request("status must be an HTTP status code");
    }
    if spec.reset && spec.status.is_some() {
        return bad_request("a reset connection has no status");
    }
    let count = spec.count.unwrap_or(1);
    if count == 0 {
        return bad_request("count must be at least 1");
    }
    shared.lock().faults.push_back(Fault {
        status: spec.status,
        stall: spec.stall_ms.map(Duration::from_millis),
        reset: spec.reset,
        remaining: count,
        path_contains: spec.path_contains,
    });
    respond::empty(StatusCode::NO_CONTENT)
}

fn faults_json(shared: &Shared) -> Reply {
    let faults: Vec<serde_json::Value> = shared
        .lock()
        .faults
        .iter()
        .map(|f| {
            serde_json::json!({
                "status": f.status, "stall_ms": f.stall.map(|d| d.as_millis() as u64), "reset": f.reset,
                "count": f.remaining, "path_contains": f.path_contains,
            })
        })
        .collect();
    respond::json(&serde_json::Value::Array(faults))
}

pub fn handle(shared: &Shared, method: &Method, segments: &[String], body: Bytes, uri: &str) -> Reply {
    if let Some((job, number, control)) = build_control(segments) {
        return match (method, control.as_slice()) {
            (&Method::POST, ["append"]) => append(shared, &job, number, &body, uri),
            _ => usage(),
        };
    }
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["__standin", "faults"]) => add_fault(shared, &body),
        (&Method::GET, ["__standin", "faults"]) => faults_json(shared),
        (&Method::DELETE, ["__standin", "faults"]) => {
            shared.lock().faults.clear();
            respond::empty(StatusCode::NO_CONTENT)
        }
        (&Method::GET, ["__standin", "requests"]) => {
            let requests = serde_json::to_value(&shared.lock().requests).unwrap_or_default();
            respond::json(&requests)
        }
        (&Method::DELETE, ["__standin", "requests"]) => {
            shared.lock().requests.clear();
            respond::empty(StatusCode::NO_CONTENT)
        }
        _ => usage(),
    }
}

fn usage() -> Reply {
    respond::text(
        StatusCode::NOT_FOUND,
        "test-control endpoints (not Jenkins): POST|GET|DELETE /__standin/faults, GET|DELETE /__standin/requests, POST /job/N/<b>/__standin/append\n",
    )
}

/// Appends the body to the log of a running build of `job`.
fn append(shared: &Shared, job: &ItemPath, number: &str, body: &Bytes, uri: &str) -> Reply {
    let build = number.parse::<u64>().ok().and_then(|n| shared.lock().job(job).and_then(|job| job.builds.get(&n).cloned()));
    match build {
        None => respond::not_found(uri),
        Some(build) if build.append_raw(body) => respond::empty(StatusCode::NO_CONTENT),
        Some(_) => respond::text(StatusCode::CONFLICT, "the build is over\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(path: &str) -> Vec<String> {
        path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    #[test]
    fn appends_to_builds_at_any_depth_are_control_calls() {
        assert!(is_control(&segments("__standin/faults")));
        let nested = segments("job/team-a/job/app/3/__standin/append");
        let (job, number, rest) = build_control(&nested).expect("control");
        assert_eq!((job.full_name().as_str(), number, rest.as_slice()), ("team-a/app", "3", ["append"].as_slice()));
        assert!(is_control(&segments("job/app/3/__standin/append")));
        assert!(!is_control(&segments("job/app/3/consoleText")));
        assert!(!is_control(&segments("job/team-a/job/app/api/json")));
        assert!(!is_control(&segments("3/__standin/append")));
    }
}
