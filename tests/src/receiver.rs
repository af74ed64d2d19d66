//! A webhook receiver for the tests: a real HTTP server that keeps every request it gets (head,
//! body, what it answered, when each part of the body arrived) and answers as the test scripts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    /// A redirect to this location.
    Redirect(u16, String),
    /// Reads this many body bytes, then drops the connection without an answer.
    DropAfter(usize),
    /// Reads the whole body, waits this long, then answers this status.
    Delay(Duration, u16),
    /// Closes the connection at once: no body read, no answer.
    Reset,
}

/// One request as the receiver got it.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// When each body frame arrived, with the body's length after it.
    pub frames: Vec<(Instant, usize)>,
    /// What it answered (`None`: the connection was dropped).
    pub answered: Option<u16>,
    /// Whether the whole body arrived.
    pub complete: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("a JSON body: {e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

type Script = dyn Fn(&str, usize) -> Reply + Send + Sync;
/// Judges a whole body sent to a path as its real consumer would: `Err` is answered `500`.
type Check = dyn Fn(&str, &[u8]) -> Result<(), String> + Send + Sync;

/// What the app controller stores a legacy callback's `status` in: a Postgres enum.
pub const CONTROLLER_STATUSES: [&str; 5] = ["queued", "pending", "failed", "succeeded", "unknown"];

/// The app controller's check of a legacy callback: it writes `status` into its enum column
/// and `id` into a number column, and answers `500` when either does not fit.
pub fn controller_check(body: &[u8]) -> Result<(), String> {
    let callback: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let status = callback["status"].as_str().unwrap_or_default();
    if !CONTROLLER_STATUSES.contains(&status) {
        return Err(format!("invalid input value for enum build_status: {}", callback["status"]));
    }
    if !callback["id"].is_u64() {
        return Err(format!("the build id {} is not a number", callback["id"]));
    }
    Ok(())
}

/// A receiver on `127.0.0.1:0`.
pub struct Receiver {
    pub base: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Answers 200 to everything.
    pub async fn ok() -> Self {
        Self::start(|_, _| Reply::Status(200)).await
    }

    /// Answers `script(path, n)` to the `n`-th request (from 0) to `path`.
    pub async fn start(script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        Self::on(listener, script)
    }

    /// The app controller's callback endpoint: `200` to a callback it can store, `500` to one
    /// whose `status` is outside its enum or whose `id` is not a number ([`controller_check`]).
    pub async fn controller() -> Self {
        Self::controller_at("/").await
    }

    /// `200` to everything, and the app controller's answers ([`Receiver::controller`]) under
    /// `prefix`: one receiver for a test's v2 webhooks and its legacy callbacks.
    pub async fn controller_at(prefix: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let check = move |path: &str, body: &[u8]| if path.starts_with(prefix) { controller_check(body) } else { Ok(()) };
        Self::serve(listener, Arc::new(|_: &str, _| Reply::Status(200)), Some(Arc::new(check)))
    }

    /// As [`Receiver::start`], on a listener of the caller's (a port that was down until now).
    pub fn on(listener: TcpListener, script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::serve(listener, Arc::new(script), None)
    }

    fn serve(listener: TcpListener, script: Arc<Script>, check: Option<Arc<Check>>) -> Self {
        let base = format!("http://{}", listener.local_addr().expect("a bound address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let counts = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, counts, script, check) = (log.clone(), counts.clone(), script.clone(), check.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (log, counts, script, check) = (log.clone(), counts.clone(), script.clone(), check.clone());
                        async move { receive(request, &log, &counts, script.as_ref(), check.as_deref()).await }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { base, received }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every request to `path` so far, in arrival order (those still arriving too).
    pub fn requests(&self, path: &str) -> Vec<Received> {
        self.received.lock().expect("the receiver's log").iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Whether every request to `path` was answered with a 2xx (and there was one at least).
    pub fn all_acknowledged(&self, path: &str) -> bool {
        let requests = self.requests(path);
        !requests.is_empty() && requests.iter().all(|r| r.answered.is_some_and(|status| (200..300).contains(&status)))
    }

    /// The JSON bodies posted to `path` (whole requests only).
    pub fn bodies(&self, path: &str) -> Vec<serde_json::Value> {
        self.requests(path).iter().filter(|r| r.complete).map(Received::json).collect()
    }

    /// The log as a receiver that honours `X-Log-Offset` has it: every stream's bytes written
    /// at its offset (broken ones too). Panics if a stream leaves a gap or disagrees with what
    /// an earlier one said about the same bytes.
    pub fn log(&self, path: &str) -> Vec<u8> {
        let mut log = Vec::new();
        for stream in self.requests(path) {
            let offset: usize = stream.header("x-log-offset").and_then(|v| v.parse().ok()).expect("every stream has an X-Log-Offset");
            assert!(offset <= log.len(), "a stream starts at {offset}, past the {} bytes received so far", log.len());
            let overlap = (log.len() - offset).min(stream.body.len());
            assert_eq!(&log[offset..offset + overlap], &stream.body[..overlap], "a resent range differs at offset {offset}");
            log.extend_from_slice(&stream.body[overlap..]);
        }
        log
    }

    /// Waits until `done(self)` holds; panics with `what` after `limit`.
    pub async fn until(&self, limit: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    request: Request<Incoming>,
    log: &Mutex<Vec<Received>>,
    counts: &Mutex<HashMap<String, usize>>,
    script: &Script,
    check: Option<&Check>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let path = request.uri().path().to_owned();
    let n = {
        let mut counts = counts.lock().expect("the counts");
        let count = counts.entry(path.clone()).or_default();
        *count += 1;
        *count - 1
    };
    let reply = script(&path, n);
    let (parts, mut body) = request.into_parts();
    // Kept from the start and updated frame by frame: a test sees a stream while it is open.
    let index = {
        let mut log = log.lock().expect("the receiver's log");
        log.push(Received { path, headers: parts.headers, body: Vec::new(), frames: Vec::new(), answered: None, complete: false });
        log.len() - 1
    };
    let update = |change: &dyn Fn(&mut Received)| change(&mut log.lock().expect("the receiver's log")[index]);
    if matches!(reply, Reply::Reset) {
        return Err(std::io::Error::other("the test receiver resets the connection"));
    }
    let drop_after = match reply {
        Reply::DropAfter(bytes) => Some(bytes),
        _ => None,
    };
    let mut received = 0;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    received += data.len();
                    update(&|r| {
                        r.body.extend_from_slice(data);
                        r.frames.push((Instant::now(), r.body.len()));
                    });
                }
                if drop_after.is_some_and(|limit| received >= limit) {
                    return Err(std::io::Error::other("the test receiver drops the connection"));
                }
            }
            // The sender broke the body off.
            Some(Err(_)) => return Err(std::io::Error::other("the body broke off")),
            None => break,
        }
    }
    if let Reply::Delay(delay, _) = reply {
        tokio::time::sleep(delay).await;
    }
    let judged = check.map(|check| {
        let log = log.lock().expect("the receiver's log");
        check(&log[index].path, &log[index].body)
    });
    if let Some(Err(problem)) = judged {
        update(&|r| {
            r.complete = true;
            r.answered = Some(500);
        });
        return Ok(Response::builder().status(500).body(Full::new(Bytes::from(problem))).expect("a valid response"));
    }
    let response = match reply {
        Reply::Status(status) | Reply::Delay(_, status) => Response::builder().status(status).body(Full::new(Bytes::new())),
        Reply::Redirect(status, location) => Response::builder().status(status).header("Location", location).body(Full::new(Bytes::new())),
        Reply::DropAfter(_) | Reply::Reset => Response::builder().status(StatusCode::OK).body(Full::new(Bytes::new())),
    };
    let status = response.as_ref().map_or(500, |r| r.status().as_u16());
    update(&|r| {
        r.complete = true;
        r.answered = Some(status);
    });
    Ok(response.expect("a valid response"))
}
