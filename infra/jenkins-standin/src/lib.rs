//! A stand-in of Jenkins' REST API, written from Jenkins' documented behaviour (see
//! `shared/LOCAL-STACK.md`, "Jenkins"), for the shuttle's local runs and tests. No Jenkins can be
//! installed here; this one keeps a real queue, real builds with growing logs, and runs the real
//! `infra/jenkins/prepare-sources.sh`. Builds run the job's pipeline with real Docker (a shim
//! over buildah) or, without buildah, simulated Docker (see [`pipeline`]).
//!
//! # The Jenkins surface
//! - Every answer carries `X-Jenkins: 2.479.3`; every URL in JSON is absolute with a trailing
//!   `/` (except a queue item's own `url`, which Jenkins exports relative: `queue/item/7/`).
//! - Auth: HTTP Basic `user:api-token` needs no crumb. Basic with the password opens a web
//!   session (`JSESSIONID.<hex>` cookie); `GET /crumbIssuer/api/json` gives the session's crumb
//!   (and opens a session when the request has none). A POST that is not authenticated by the
//!   API token must carry the session's crumb (`Jenkins-Crumb` header or parameter), else 403
//!   "No valid crumb was included in the request"; with [`StandInConfig::require_crumb`] even
//!   API-token POSTs need it. Wrong credentials → 401 with `WWW-Authenticate: Basic
//!   realm="Jenkins"`; no credentials → 403 "Authentication required" (Jenkins answers anonymous
//!   requests with 403, not 401).
//! - `POST /createItem?name=N` (`config.xml`, `Content-Type: application/xml` or `text/xml`) →
//!   200; existing name → 400 "A job already exists with the name ‘N’"; no Content-Type → 400;
//!   unsafe name → 400; unreadable config.xml → 500. `GET|POST /job/N/config.xml`.
//! - `GET /job/N/api/json` (404 when missing), `…?tree=…` honoured (`tree` selects properties as
//!   in Jenkins; with a tree, builds carry all their properties, so
//!   `tree=builds[number,actions[parameters[name,value]]]` finds a build by a parameter).
//! - `POST /job/N/buildWithParameters` (query or form parameters) → 201 +
//!   `Location: <base>/queue/item/<id>/`. Undefined parameters are dropped, missing ones take
//!   their defaults. An identical item still in the queue is reused (Jenkins merges them).
//!   `POST /job/N/build` for a job without parameters.
//! - Queue: `GET /queue/api/json`, `GET /queue/item/<id>/api/json`: `Queue$WaitingItem` (quiet
//!   period = [`StandInConfig::queue_delay`]), `Queue$BlockedItem` ("Build #3 is already in
//!   progress (ETA: …)") while a build of a job without concurrent builds runs, then
//!   `Queue$LeftItem` with `executable` or `cancelled: true`; forgotten (404)
//!   [`StandInConfig::forget_left_items_after`] after leaving. Queue ids are global.
//!   `/queue/api/json` is `hudson.model.Queue`: `discoverableItems` (always empty) and `items`,
//!   the items still in the queue (not the left ones), each as its own page shows it, waiting
//!   items first (by the end of their quiet period), then blocked ones, as `Queue.getItems()`.
//! - `POST /queue/cancelItem?id=N` → 204 for an item in the queue; 404 "Provided id (N) not
//!   found" for an unknown or forgotten id (Jenkins ≥ 2.4xx); 500 "Could not cancel run for id N"
//!   for an item that already left the queue (Jenkins cannot cancel a LeftItem).
//! - Builds: `GET /job/N/<b>/api/json` (`<b>` a number or `lastBuild`, `lastCompletedBuild`, …),
//!   `logText/progressiveText?start=S` (`X-Text-Size`, `X-More-Data: true` while running, a start
//!   beyond the end restarts at 0, chunked body), `consoleText`, `POST …/stop` → 302 (ABORTED
//!   after [`StandInConfig::abort_delay`]). `POST /job/N/doDelete` aborts the running builds,
//!   waits for them (≤ 15 s), removes the job → 302 to the root.
//! - Console notes (see [`console`]): the raw log holds Jenkins' hidden annotations
//!   (`ESC[8mha:` + base64 + `ESC[0m`) where Jenkins writes them: before the user in `Started by
//!   user …` and `Aborted by …`, before the node in `Running on …`, at the start of every
//!   `[Pipeline] …` line. `progressiveText` serves the raw bytes from `start` with the notes
//!   removed (`PlainTextConsoleOutputStream`) while `X-Text-Size` is the raw offset reached, notes
//!   counted, so the body is shorter than `X-Text-Size - start` when notes were in the range;
//!   `consoleText` is the whole log without notes. A `start` inside a note serves the note's end
//!   as it is, as Jenkins does (offsets from `X-Text-Size` never fall inside one).
//! - Also `GET /api/json`; anything else → 404; GET on a POST-only action → 405.
//!
//! # Not imitated
//! Folders, views, nodes and executor limits (every build gets an executor at once), the XML
//! and Python APIs, `depth=`, `delay=` and the `token=` trigger, copying jobs, file and
//! multipart parameters, Groovy (the stand-in reads the shapes of the shuttle's pipeline script,
//! see [`script`], and does the `Check` stage's Groovy itself; with simulated Docker it runs the
//! pipeline of `infra/jenkins/README.md`), build discarders, persistence across restarts.
//! `logText/progressiveHtml` and `X-ConsoleAnnotator`: the console notes are framed and sized as
//! Jenkins' but hold random bytes, nothing renders them. While a build runs, Jenkins' `LargeText`
//! serves only up to the last line end (and at most 10,000 lines at a time); the stand-in serves
//! everything written, a line cut short by the test-control `append` included.
//!
//! # Test control (not Jenkins)
//! See [`control`]: `/__standin/faults`, `/__standin/requests`, `/job/N/<b>/__standin/append`.

pub mod api;
pub mod config;
pub mod console;
pub mod control;
pub mod dockerfile;
pub mod job_config;
pub mod pipeline;
pub mod registry;
pub mod render;
pub mod respond;
pub mod script;
pub mod server;
pub mod state;
pub mod tree;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{default_prepare_script, DockerMode, StandInConfig, JENKINS_VERSION};

use state::Shared;

/// A running stand-in. Dropping it stops everything; [`StandIn::shutdown`] also waits.
pub struct StandIn {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    scheduler: Option<JoinHandle<()>>,
}

/// Starts a stand-in on `listener` (bind `127.0.0.1:0` for a test).
pub async fn start(config: StandInConfig, listener: TcpListener) -> std::io::Result<StandIn> {
    let local_addr = listener.local_addr()?;
    let mut base = config.public_url.clone().unwrap_or_else(|| format!("http://{local_addr}/"));
    if !base.ends_with('/') {
        base.push('/');
    }
    let shared = Arc::new(Shared::new(config, base));
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(server::serve(shared.clone(), listener, stopped.clone()));
    let scheduler = tokio::spawn(run_queue(shared.clone(), stopped));
    Ok(StandIn { shared, local_addr, stop, server: Some(server), scheduler: Some(scheduler) })
}

/// Maintains the queue whenever something changed, and when a quiet period or a left item's
/// memory runs out.
async fn run_queue(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        let (started, next_wake) = shared.maintain();
        for build in started {
            let task = tokio::spawn(pipeline::run(shared.clone(), build));
            shared.track(task.abort_handle());
        }
        let wake = next_wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(60)).max(Instant::now());
        tokio::select! {
            _ = shared.wake_scheduler.notified() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

impl StandIn {
    /// The root URL, with a trailing `/`: `http://127.0.0.1:41234/`.
    pub fn base_url(&self) -> &str {
        &self.shared.base
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn config(&self) -> &StandInConfig {
        &self.shared.config
    }

    /// Stops serving and aborts the running builds (their scripts are killed, their
    /// directories removed).
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        self.shared.abort_all_tasks();
        for task in [self.server.take(), self.scheduler.take()].into_iter().flatten() {
            let _ = task.await;
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.shared.abort_all_tasks();
        for task in [self.server.take(), self.scheduler.take()].into_iter().flatten() {
            task.abort();
        }
    }
}
