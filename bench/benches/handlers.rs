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
//! The rows named "least …" are not the shuttle's handlers but where their goals lie: each is the
//! least that any handler of that route must do, written here, on the same events and stores
//! (what each leaves out is in its doc). A goal above a least handler's ratio cannot be met.
//!
//! Each handler is timed with its own future, as its API function runs it (see `with_handler!`).
//!
//! `cargo bench -p shuttle-bench --bench handlers`; `BENCH_REQUESTS` (per pass, default 20000)
//! and `BENCH_RUNS` (default 7, after one warm-up run) change the size; `BENCH_HANDLERS` (words
//! of the labels, comma-separated, e.g. `create,status`) runs only the handlers it names.

// A bench's output is its table.
#![allow(clippy::print_stdout)]

use std::borrow::Cow;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::request::LambdaRequest;
use lambda_http::{service_fn, Adapter, Body, Context, Error, IntoResponse, LambdaEvent, Request, Response, Service};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shuttle_bench::{median, table};
use shuttle_core::access::Access;
use shuttle_core::api::CreateOutcome;
use shuttle_core::fakes::{fakes, Fakes, MemoryStore};
use shuttle_core::ids::{parse_uuid, v2_source_id};
use shuttle_core::ports::{PollMessage, SourceStore};
use shuttle_core::record::{now_ms, ApiKind, BuildRecord, Progress};
use shuttle_core::secrets::Keyed;
use shuttle_core::state::{BuildState, StopIntent};
use shuttle_http::{body_bytes, json_response, path_param};
use url::Url;

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
    /// Where create's goal lies: the create events, answered by [`least_create`].
    LeastCreate,
    /// The create events, answered with create's log line and answer and nothing else.
    CreateLogLine,
    /// Where status's goal lies: the status events, answered by [`least_status`].
    LeastStatus,
    /// Where stop's goal lies: the stop events, answered by [`least_stop`].
    LeastStop,
    /// Where sources' goal lies: the sources events, answered by [`least_sources`].
    LeastSources,
}

const CASES: [Case; 10] = [
    Case::CreateNew,
    Case::CreateRepeat,
    Case::Status,
    Case::Stop,
    Case::Sources,
    Case::LeastCreate,
    Case::CreateLogLine,
    Case::LeastStatus,
    Case::LeastStop,
    Case::LeastSources,
];

impl Case {
    fn label(self) -> &'static str {
        match self {
            Case::CreateNew => "create (v2, new build)",
            Case::CreateRepeat => "create (v2, idempotent repeat)",
            Case::Status => "status (v2)",
            Case::Stop => "stop (v2, pending build)",
            Case::Sources => "sources (GET, cached)",
            Case::LeastCreate => "least create (parse, id, store, queue; no log line)",
            Case::CreateLogLine => "log line of create, and its answer, alone",
            Case::LeastStatus => "least status (id, lookup without a copy, answer)",
            Case::LeastStop => "least stop (id, write in place, answer)",
            Case::LeastSources => "least sources (id, lookup, link, 302)",
        }
    }

    /// Issue 7's floor for the ratio against the empty handler; `None`: shown, not a goal.
    fn goal(self) -> Option<f64> {
        match self {
            Case::CreateNew => Some(0.7),
            Case::CreateRepeat | Case::LeastCreate | Case::CreateLogLine | Case::LeastStatus | Case::LeastStop | Case::LeastSources => None,
            Case::Status | Case::Stop | Case::Sources => Some(0.8),
        }
    }

    fn expected_status(self) -> u64 {
        if matches!(self, Case::Sources | Case::LeastSources) {
            302
        } else {
            200
        }
    }

    /// A fresh in-memory shuttle holding what the `requests` events of this case need, and the events.
    async fn prepare(self, requests: usize) -> (Fakes, Vec<Vec<u8>>) {
        let fake = fakes();
        let create = fake.create();
        let events = match self {
            Case::CreateNew | Case::LeastCreate | Case::CreateLogLine => {
                (0..requests).map(|i| v2_event("POST", "/{app_id}/{build_id}", "my-app", &i.to_string(), "", Some(V2_BODY))).collect()
            }
            Case::CreateRepeat => {
                create.v2("my-app", "1", V2_BODY.as_bytes()).await.expect("the first create");
                (0..requests).map(|_| v2_event("POST", "/{app_id}/{build_id}", "my-app", "1", "", Some(V2_BODY))).collect()
            }
            Case::Status | Case::Stop | Case::LeastStatus | Case::LeastStop => {
                let (route, suffix, method) = if matches!(self, Case::Status | Case::LeastStatus) {
                    ("/{app_id}/{build_id}/status", "/status", "GET")
                } else {
                    ("/{app_id}/{build_id}", "", "DELETE")
                };
                let mut events = Vec::with_capacity(requests);
                for i in 0..requests {
                    let build_id = i.to_string();
                    create.v2("my-app", &build_id, V2_BODY.as_bytes()).await.expect("a build to look at");
                    events.push(v2_event(method, route, "my-app", &build_id, suffix, None));
                }
                events
            }
            Case::Sources | Case::LeastSources => {
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

/// The API functions the bench measures, on in-memory ports, open to every caller.
struct Apps {
    create: create::App,
    status: status::App,
    stop: stop::App,
    sources: sources::App,
}

impl Apps {
    fn on(fake: &Fakes) -> Self {
        Self {
            create: create::App { access: Keyed::given(Access::Open), use_case: fake.create() },
            status: status::App {
                access: Keyed::given(Access::Open),
                use_case: status::Reads { status: fake.status(), logs: fake.logs() },
            },
            stop: stop::App { access: Keyed::given(Access::Open), use_case: fake.stop() },
            sources: sources::App { access: Keyed::given(Access::Open), use_case: fake.source_links() },
        }
    }
}

/// Evaluates `$body` with `$handler` bound to the handler that `case` measures, a closure from a
/// `Request` to the handler's future. Each case gets a closure of its own type, so the future
/// timed is that handler's own, as its API function runs it, not one sized for every case.
macro_rules! with_handler {
    ($case:expr, $fake:expr, |$handler:ident| $body:expr) => {{
        let fake: &Fakes = $fake;
        let apps = Apps::on(fake);
        match $case {
            Case::CreateNew | Case::CreateRepeat => {
                let $handler = |request: Request| create::handler::handle(&apps.create, request);
                $body
            }
            Case::Status => {
                let $handler = |request: Request| status::handler::handle(&apps.status, request);
                $body
            }
            Case::Stop => {
                let $handler = |request: Request| stop::handler::handle(&apps.stop, request);
                $body
            }
            Case::Sources => {
                let $handler = |request: Request| sources::handler::handle(&apps.sources, request);
                $body
            }
            Case::LeastCreate => {
                let $handler = |request: Request| least_create(&apps.create.use_case, request);
                $body
            }
            Case::CreateLogLine => {
                let $handler = |request: Request| std::future::ready(create_log_line(&request));
                $body
            }
            Case::LeastStatus => {
                let $handler = |request: Request| std::future::ready(least_status(&fake.store, &request));
                $body
            }
            Case::LeastStop => {
                let $handler = |request: Request| std::future::ready(least_stop(&fake.store, &request));
                $body
            }
            Case::LeastSources => {
                let $handler = |request: Request| least_sources(fake, request);
                $body
            }
        }
    }};
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
    let (rate, statuses) = with_handler!(case, &fake, |handler| pass(service_fn(handler), &events).await);
    let unexpected = statuses.iter().filter(|status| **status != case.expected_status()).count();
    assert_eq!(unexpected, 0, "{}: {unexpected} of {requests} answers were not {}", case.label(), case.expected_status());
    if matches!(case, Case::CreateNew | Case::LeastCreate) {
        assert_eq!(fake.store.builds.lock().unwrap().len(), requests, "every create stored a new build");
    }
    let empty_rate = match empty_rate {
        Some(rate) => rate,
        None => empty_pass(&events).await,
    };
    let (answer_rate, _) = pass(service_fn(|_request: Request| std::future::ready(Ok::<_, Error>(copy(&answer)))), &events).await;
    (empty_rate, answer_rate, rate)
}

/// The least that any `POST /{app_id}/{build_id}` must do, written for this bench: the body
/// parsed into borrowed fields, both its URLs parsed, the build's id derived, a record stored
/// and a poll queued, and create's answer. It leaves out what the create handler does besides:
/// the checks of every field, the SSRF check, the rebuild check, sealing the spec (the record
/// holds the body as it came) and the log line. Its ratio is an upper bound for create's.
async fn least_create(shuttle: &shuttle_core::api::Create, request: Request) -> Result<Response<Body>, Error> {
    #[derive(Deserialize)]
    struct Create<'a> {
        #[serde(borrow)]
        source: Location<'a>,
        #[serde(borrow)]
        destination: Location<'a>,
        #[serde(borrow, default)]
        metadata: Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct Location<'a> {
        #[serde(borrow)]
        url: Cow<'a, str>,
    }

    let (app_id, build_id) = v2_path(&request)?;
    let body = body_bytes(&request);
    let create: Create<'_> = serde_json::from_slice(body)?;
    Url::parse(&create.source.url)?;
    Url::parse(&create.destination.url)?;
    let source_id = v2_source_id(app_id, build_id);
    let now = now_ms();
    let record = BuildRecord {
        source_id,
        kind: ApiKind::V2,
        build_key: format!("{app_id}/{build_id}"),
        app_key: app_id.to_owned(),
        number: None,
        metadata: create.metadata.into_owned(),
        human_readable_info: String::new(),
        state: BuildState::Accepted,
        stop: None,
        failure: None,
        created_at_ms: now,
        updated_at_ms: now,
        version: 0,
        sealed_spec: Bytes::copy_from_slice(body),
        progress: Progress { polled_at_ms: now, ..Progress::default() },
    };
    if !shuttle.store.insert(&record).await? {
        return Err("a new build id every request".into());
    }
    shuttle.queue.enqueue(&PollMessage { source_id, round: 0 }, Duration::ZERO).await?;
    Ok(v2_ok())
}

/// The least that any `GET /{app_id}/{build_id}/status` of a stored v2 build must do, written
/// for this bench: the build's id derived, the build looked up in the in-memory store and
/// answered from there, with the status handler's own answer, without copying the record out.
/// The status handler does this through the store's port, which hands out a copy, after the auth
/// check and the path's checks, which this leaves out. Its ratio is an upper bound for status's.
fn least_status(store: &MemoryStore, request: &Request) -> Result<Response<Body>, Error> {
    let (app_id, build_id) = v2_path(request)?;
    let builds = store.builds.lock().map_err(|_| "the store's lock")?;
    let record = builds.get(&v2_source_id(app_id, build_id)).ok_or("a stored build")?;
    Ok(status::handler::status_response(record))
}

/// The least that any `DELETE /{app_id}/{build_id}` of a pending v2 build must do, written for
/// this bench: the build's id derived, and the stop recorded as the stop handler records it, but
/// in place in the in-memory store (no copy read, none written), and stop's answer. It leaves
/// out the auth check, the path's checks and the store's port. Its ratio is an upper bound for stop's.
fn least_stop(store: &MemoryStore, request: &Request) -> Result<Response<Body>, Error> {
    let (app_id, build_id) = v2_path(request)?;
    let mut builds = store.builds.lock().map_err(|_| "the store's lock")?;
    let record = builds.get_mut(&v2_source_id(app_id, build_id)).ok_or("a stored build")?;
    if record.state != BuildState::Accepted || record.stop.is_some() {
        return Err("a pending build, not yet stopped".into());
    }
    record.stop = Some(StopIntent::Stop);
    record.updated_at_ms = now_ms();
    record.move_to(BuildState::Stopped);
    record.failure = Some("stopped before the build reached Jenkins".to_owned());
    record.version += 1;
    Ok(v2_ok())
}

/// The least that any `GET /{build_uuid}` of cached sources must do, written for this bench: the
/// id parsed, the sources looked up and a link made through the same ports as the sources
/// handler, and its 302. It leaves out the auth check. Its ratio is an upper bound for sources'.
async fn least_sources(fake: &Fakes, request: Request) -> Result<Response<Body>, Error> {
    let source_id = path_param(&request, "build_uuid").and_then(parse_uuid).ok_or("a build's UUID")?;
    if !fake.sources.source_exists(source_id).await? {
        return Err("cached sources".into());
    }
    let link = fake.sources.presign_source(source_id, fake.source_links().ttl).await?;
    Ok(sources::handler::found(HeaderValue::try_from(link)?))
}

/// A v2 route's `app_id` and `build_id`.
fn v2_path(request: &Request) -> Result<(&str, &str), Error> {
    match (path_param(request, "app_id"), path_param(request, "build_id")) {
        (Some(app_id), Some(build_id)) => Ok((app_id, build_id)),
        _ => Err("a v2 route's path parameters".into()),
    }
}

/// The answer of a v2 create or stop that went through.
fn v2_ok() -> Response<Body> {
    json_response(StatusCode::OK, &json!({"status": "OK"}))
}

/// The create handler's log line for a new v2 build, and its answer.
fn create_log_line(request: &Request) -> Result<Response<Body>, Error> {
    let (app_id, build_id) = v2_path(request)?;
    tracing::info!(build = format_args!("{app_id}/{build_id}"), outcome = ?CreateOutcome::Created, "build accepted");
    Ok(v2_ok())
}

/// The case's handler's answer to its first event, on a shuttle of its own.
async fn first_answer(case: Case) -> Response<Body> {
    let (fake, events) = case.prepare(1).await;
    let payload: LambdaRequest = serde_json::from_slice(&events[0]).expect("an API Gateway v2 event");
    let request = Request::from(payload);
    with_handler!(case, &fake, |handler| handler(request).await.expect("the handler answers"))
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
