//! Handler cost (issue 7): requests/s of each API handler through lambda_http's own adapter,
//! against an empty handler fed the very same events in the same run.
//!
//! One request is what the Lambda runtime does with an invocation, minus the Runtime API's HTTP:
//! the API Gateway HTTP API (payload 2.0) event's bytes are deserialised into lambda_http's
//! `LambdaRequest`, handed to `lambda_http::Adapter` (the service `lambda_http::run` wraps the
//! handler in: `LambdaRequest` → `Request`, handler, `IntoResponse` → the API Gateway response)
//! and the response is serialised to JSON. The stores are `shuttle_core::fakes` in memory, in
//! open mode (the auth check runs and admits); log lines are formatted as JSON into a sink.
//!
//! Each run also times a handler that does no work and answers a copy of the measured handler's
//! first answer: its ratio is the most any handler giving that answer can reach, since the
//! adapter turns a body and headers into the response event however they were made.
//!
//! `cargo bench -p shuttle-bench --bench handlers`; `BENCH_REQUESTS` (per pass, default 20000)
//! and `BENCH_RUNS` (default 7, after one warm-up run) change the size; `BENCH_HANDLERS` (words
//! of the labels, comma-separated, e.g. `create,status`) runs only the handlers it names.

// A bench's output is its table.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use lambda_http::request::LambdaRequest;
use lambda_http::{service_fn, Adapter, Body, Context, Error, IntoResponse, LambdaEvent, Request, Response, Service};
use serde_json::{json, Map, Value};
use shuttle_bench::{median, table};
use shuttle_core::fakes::{fake_shuttle, FakeShuttle};
use shuttle_core::ports::SourceStore;
use shuttle_core::Shuttle;

const V2_BODY: &str = r#"{"metadata":"my-namespace","source":{"url":"https://sources.example/org/my-app.tgz"},"destination":{"url":"docker://registry.example.com/org/my-app:1"}}"#;

/// The handlers measured: what each request does, the API function's goal, and its answer.
#[derive(Clone, Copy, PartialEq)]
enum Case {
    /// `POST /{app_id}/{build_id}`, a new build id every request: a real create.
    CreateNew,
    /// The same `POST` again and again: the idempotent repeat (compared, not stored).
    CreateRepeat,
    /// `GET /{app_id}/{build_id}/status` of a pending v2 build.
    Status,
    /// `DELETE /{app_id}/{build_id}` of a pending v2 build, a different one every request.
    Stop,
    /// `GET /{build_uuid}` of cached sources: a 302 to a presigned link.
    Sources,
}

const CASES: [Case; 5] = [Case::CreateNew, Case::CreateRepeat, Case::Status, Case::Stop, Case::Sources];

impl Case {
    fn label(self) -> &'static str {
        match self {
            Case::CreateNew => "create (v2, new build)",
            Case::CreateRepeat => "create (v2, idempotent repeat)",
            Case::Status => "status (v2)",
            Case::Stop => "stop (v2, pending build)",
            Case::Sources => "sources (GET, cached)",
        }
    }

    /// Issue 7's floor for the ratio against the empty handler; `None`: shown, not a goal.
    fn goal(self) -> Option<f64> {
        match self {
            Case::CreateNew => Some(0.7),
            Case::CreateRepeat => None,
            Case::Status | Case::Stop | Case::Sources => Some(0.8),
        }
    }

    fn expected_status(self) -> u64 {
        if self == Case::Sources {
            302
        } else {
            200
        }
    }

    /// A fresh in-memory shuttle holding what the `requests` events of this case need, and the events.
    async fn prepare(self, requests: usize) -> (FakeShuttle, Vec<Vec<u8>>) {
        let fake = fake_shuttle();
        let shuttle = &fake.shuttle;
        let events = match self {
            Case::CreateNew => {
                (0..requests).map(|i| v2_event("POST", "/{app_id}/{build_id}", "my-app", &i.to_string(), "", Some(V2_BODY))).collect()
            }
            Case::CreateRepeat => {
                shuttle.create_v2("my-app", "1", V2_BODY.as_bytes()).await.expect("the first create");
                (0..requests).map(|_| v2_event("POST", "/{app_id}/{build_id}", "my-app", "1", "", Some(V2_BODY))).collect()
            }
            Case::Status | Case::Stop => {
                let (route, suffix, method) = if self == Case::Status {
                    ("/{app_id}/{build_id}/status", "/status", "GET")
                } else {
                    ("/{app_id}/{build_id}", "", "DELETE")
                };
                let mut events = Vec::with_capacity(requests);
                for i in 0..requests {
                    let build_id = i.to_string();
                    shuttle.create_v2("my-app", &build_id, V2_BODY.as_bytes()).await.expect("a build to look at");
                    events.push(v2_event(method, route, "my-app", &build_id, suffix, None));
                }
                events
            }
            Case::Sources => {
                let mut events = Vec::with_capacity(requests);
                for i in 0..requests {
                    let build_uuid = format!("00000000-0000-4000-8000-{i:012}");
                    fake.sources.put_source(build_uuid.parse().expect("a UUID"), b"sources".to_vec().into()).await.expect("cached");
                    events.push(event("GET", "/{build_uuid}", &format!("/{build_uuid}"), json!({"build_uuid": build_uuid}), None));
                }
                events
            }
        };
        (fake, events)
    }
}

/// A v2 route's event: `{method} /my-app/{build_id}{suffix}`.
fn v2_event(method: &str, route: &str, app_id: &str, build_id: &str, suffix: &str, body: Option<&str>) -> Vec<u8> {
    event(method, route, &format!("/{app_id}/{build_id}{suffix}"), json!({"app_id": app_id, "build_id": build_id}), body)
}

/// The API Gateway HTTP API (payload 2.0) event for one request, shaped as the local gateway
/// builds it (`infra/local-gateway/src/event.rs`) and as API Gateway sends it.
fn event(method: &str, route: &str, path: &str, path_parameters: Value, body: Option<&str>) -> Vec<u8> {
    let route_key = format!("{method} {route}");
    let mut headers = Map::new();
    for (name, value) in [("host", "shuttle.example"), ("user-agent", "curl/8.5.0"), ("accept", "*/*"), ("x-forwarded-proto", "https")] {
        headers.insert(name.into(), value.into());
    }
    if let Some(body) = body {
        headers.insert("content-type".into(), "application/json".into());
        headers.insert("content-length".into(), body.len().to_string().into());
    }
    let event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "pathParameters": path_parameters,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "bench",
            "domainName": "shuttle.example",
            "domainPrefix": "shuttle",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "curl/8.5.0"},
            "requestId": "bench-request",
            "routeKey": route_key,
            "stage": "$default",
            "timeEpoch": 1_764_000_000_000_i64,
        },
        "body": body,
        "isBase64Encoded": false,
    });
    serde_json::to_vec(&event).expect("an event serialises")
}

/// Sends every event through `handler` as the runtime would; requests/s and each answer's status code.
async fn pass<'a, R, S>(handler: S, events: &[Vec<u8>]) -> (f64, Vec<u64>)
where
    S: Service<Request, Response = R, Error = Error>,
    S::Future: Send + 'a,
    R: IntoResponse,
{
    let mut adapter = Adapter::from(handler);
    let mut answers = Vec::with_capacity(events.len());
    let start = Instant::now();
    for event in events {
        let payload: LambdaRequest = serde_json::from_slice(event).expect("an API Gateway v2 event");
        std::future::poll_fn(|cx| adapter.poll_ready(cx)).await.expect("the handler is ready");
        let response = adapter.call(LambdaEvent::new(payload, Context::default())).await.expect("the handler answers");
        answers.push(serde_json::to_vec(&response).expect("the response serialises"));
    }
    let per_second = events.len() as f64 / start.elapsed().as_secs_f64();
    // Read back outside the timed loop.
    let statuses = answers
        .iter()
        .map(|answer| serde_json::from_slice::<Value>(answer).expect("JSON")["statusCode"].as_u64().expect("a status code"))
        .collect();
    (per_second, statuses)
}

async fn empty(_request: Request) -> Result<Response<Body>, Error> {
    Ok(Response::new(Body::Empty))
}

/// One run of `case`, in requests/s on the same events: (empty handler, a handler answering
/// the case's own answer from a copy, the case's handler). `empty_first` says whether the empty
/// handler goes before or after the case's handler (the runs alternate, so neither always has
/// the warmer caches).
async fn run(case: Case, requests: usize, empty_first: bool) -> (f64, f64, f64) {
    let answer = first_answer(case).await;
    let (fake, events) = case.prepare(requests).await;
    let mut empty_rate = None;
    if empty_first {
        empty_rate = Some(empty_pass(&events).await);
    }
    let (rate, statuses) = pass(service_fn(|request| handle(case, &fake.shuttle, request)), &events).await;
    let unexpected = statuses.iter().filter(|status| **status != case.expected_status()).count();
    assert_eq!(unexpected, 0, "{}: {unexpected} of {requests} answers were not {}", case.label(), case.expected_status());
    if case == Case::CreateNew {
        assert_eq!(fake.store.builds.lock().unwrap().len(), requests, "every create stored a new build");
    }
    let empty_rate = match empty_rate {
        Some(rate) => rate,
        None => empty_pass(&events).await,
    };
    let (answer_rate, _) = pass(service_fn(|_request: Request| std::future::ready(Ok::<_, Error>(copy(&answer)))), &events).await;
    (empty_rate, answer_rate, rate)
}

/// The API function's handler that `case` measures.
async fn handle(case: Case, shuttle: &Shuttle, request: Request) -> Result<Response<Body>, Error> {
    match case {
        Case::CreateNew | Case::CreateRepeat => create::handler::handle(shuttle, request).await,
        Case::Status => status::handler::handle(shuttle, request).await,
        Case::Stop => stop::handler::handle(shuttle, request).await,
        Case::Sources => sources::handler::handle(shuttle, request).await,
    }
}

/// The case's handler's answer to its first event, on a shuttle of its own.
async fn first_answer(case: Case) -> Response<Body> {
    let (fake, events) = case.prepare(1).await;
    let payload: LambdaRequest = serde_json::from_slice(&events[0]).expect("an API Gateway v2 event");
    handle(case, &fake.shuttle, Request::from(payload)).await.expect("the handler answers")
}

/// A copy of `answer`, made as a handler makes its own: a new body and header map.
fn copy(answer: &Response<Body>) -> Response<Body> {
    let mut response = Response::new(answer.body().clone());
    *response.status_mut() = answer.status();
    *response.headers_mut() = answer.headers().clone();
    response
}

async fn empty_pass(events: &[Vec<u8>]) -> f64 {
    let (rate, statuses) = pass(service_fn(empty), events).await;
    assert!(statuses.iter().all(|status| *status == 200), "the empty handler answers 200");
    rate
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

fn main() {
    let requests = env_number("BENCH_REQUESTS", 20_000);
    let runs = env_number("BENCH_RUNS", 7);
    // What `AWS_LAMBDA_LOG_FORMAT=JSON` gives in Lambda (INFO and up, JSON lines), into a sink.
    tracing_subscriber::fmt().json().with_max_level(tracing_subscriber::filter::LevelFilter::INFO).with_writer(std::io::sink).init();
    // One thread, as a Lambda instance serves one invocation at a time.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a Tokio runtime");

    println!("handler cost: {runs} runs (after a warm-up) of {requests} requests per handler and per empty handler");
    let mut rows = Vec::new();
    let mut all_met = true;
    let only = std::env::var("BENCH_HANDLERS").unwrap_or_default();
    let chosen = |case: &Case| only.is_empty() || only.split(',').any(|word| case.label().split(' ').next() == Some(word.trim()));
    for case in CASES.into_iter().filter(chosen) {
        runtime.block_on(run(case, requests.min(1000), true));
        let (mut empty_rates, mut rates, mut ratios, mut answer_ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for index in 0..runs {
            let (empty_rate, answer_rate, rate) = runtime.block_on(run(case, requests, index % 2 == 0));
            empty_rates.push(empty_rate);
            rates.push(rate);
            ratios.push(rate / empty_rate);
            answer_ratios.push(answer_rate / empty_rate);
        }
        let ratio = median(&ratios);
        let met = case.goal().map(|goal| ratio >= goal);
        all_met &= met.unwrap_or(true);
        rows.push(vec![
            case.label().to_owned(),
            format!("{:.0}", median(&rates)),
            format!("{:.0}", median(&empty_rates)),
            format!(
                "{ratio:.2} ({:.2}–{:.2})",
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(0.0, f64::max)
            ),
            format!("{:.2}", median(&answer_ratios)),
            case.goal().map_or("–".to_owned(), |goal| format!("≥ {goal}")),
            met.map_or("–".to_owned(), |met| if met { "yes" } else { "no" }.to_owned()),
        ]);
    }
    let header = ["handler", "requests/s", "empty handler, same events", "ratio (min–max)", "same answer, no work", "goal", "met"];
    print!("{}", table(&header, &rows));
    println!("requests/s: median of the runs; ratio: median of each run's handler / empty handler");
    println!("same answer, no work: a handler answering a copy of the handler's first answer / empty handler (what the answer alone costs the adapter)");
    println!("{}", if all_met { "every goal met" } else { "some goals not met" });
}
