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
//!   requests with 403, not 401). More users: [`StandInConfig::users`].
//! - Folders (CloudBees Folders plugin): an item is a job or a folder
//!   (`com.cloudbees.hudson.plugins.folder.Folder`), addressed `/job/F/job/N/…` at any depth;
//!   every route below works the same under a folder, `job/N` standing for that path. Names are
//!   unique within their folder, ignoring case (`/job/APP/` finds `app`), as Jenkins' item maps.
//!   `fullName` is `F/N`, `fullDisplayName` `F » N` (a build's `F » N #1`), URLs
//!   `<base>job/F/job/N/`. `GET /job/F/api/json` is the folder (`jobs`: the items directly in
//!   it, `{_class, name, url}` and a job's `color`; `primaryView` "All"); `/api/json` lists the
//!   top-level items only. An unknown name, or `job/X` below a job, is 404.
//! - Permissions (see [`authorization`]), when [`StandInConfig::authorization`] is set, checked
//!   where Jenkins checks them: Overall/Read for every page; Job/Read on each item of the path
//!   (without it 404, or, with Job/Discover, 403 "Please login to access job N" at the root and
//!   "Please log in to access N" in a folder); Job/Create on the folder (the root) for
//!   `createItem`; Job/Configure for `config.xml` (GET too: Job/ExtendedRead is disabled by
//!   default in Jenkins); Job/Build for `build` and `buildWithParameters` (before the POST-only
//!   405); Job/Delete for `doDelete`; Job/Cancel for `stop`. A refusal is 403 "alice is missing
//!   the Job/Build permission" with `X-You-Are-Authenticated-As`, `X-Required-Permission` and
//!   `X-Permission-Implied-By` headers. Lists (`jobs`, the queue's `items`) show what the user
//!   may read; the queue's `discoverableItems` the items of jobs they may only discover.
//! - `POST /createItem?name=N` or `POST /job/F/createItem?name=N` (the `config.xml` of a job or a
//!   folder, `Content-Type: application/xml` or `text/xml`) → 200; existing name → 400 "A job
//!   already exists with the name ‘N’" (an existing item the user cannot see: 400 without a
//!   message); no Content-Type → 400; unsafe name → 400; unreadable config.xml → 500; unknown
//!   folder → 404. `GET|POST /job/N/config.xml` (a config.xml of another item class → 500
//!   "Expecting class … but got class … instead").
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
//!   `/queue/api/json` is `hudson.model.Queue`: `discoverableItems` (see permissions) and `items`,
//!   the items still in the queue (not the left ones), each as its own page shows it, waiting
//!   items first (by the end of their quiet period), then blocked ones, as `Queue.getItems()`.
//! - `POST /queue/cancelItem?id=N` → 204 for an item in the queue; 404 "Provided id (N) not
//!   found" for an unknown or forgotten id (Jenkins ≥ 2.4xx) or an item of a job the user cannot
//!   read; 422 "Item for id (N) is not cancellable" without Job/Cancel; 500 "Could not cancel run
//!   for id N" for an item that already left the queue (Jenkins cannot cancel a LeftItem).
//! - Builds: `GET /job/N/<b>/api/json` (`<b>` a number or `lastBuild`, `lastCompletedBuild`, …),
//!   `logText/progressiveText?start=S` (`X-Text-Size`, `X-More-Data: true` while running, a start
//!   beyond the end restarts at 0, chunked body), `consoleText`, `POST …/stop` → 302 (ABORTED
//!   after [`StandInConfig::abort_delay`]). `POST /job/N/doDelete` aborts the running builds,
//!   waits for them (≤ 15 s), removes the job → 302 to the folder holding it (or the root); a
//!   folder's `doDelete` does so for every job inside it and removes it with all it holds.
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
//! Views (a folder's "All" view is exported, not served), display names, moving and renaming
//! items, other item types (multibranch, organization folders), folder grants read from a
//! folder's own `config.xml` (its `AuthorizationMatrixProperty`: the stand-in takes grants from
//! [`StandInConfig::authorization`] only), per-job grants, matrix-auth's non-inheriting
//! strategies, groups other than `authenticated`, grants to `anonymous` (anonymous requests are
//! refused before any route), nodes and executor limits (every build gets an executor at
//! once), the XML and Python APIs, `depth=`, `delay=` and the `token=` trigger, copying jobs,
//! file and multipart parameters, Groovy (the stand-in reads the shapes of the shuttle's pipeline script,
//! see [`script`], and does the `Check` stage's Groovy itself; with simulated Docker it runs the
//! pipeline of `infra/jenkins/README.md`), build discarders, persistence across restarts.
//! `logText/progressiveHtml` and `X-ConsoleAnnotator`: the console notes are framed and sized as
//! Jenkins' but hold random bytes, nothing renders them. While a build runs, Jenkins' `LargeText`
//! serves only up to the last line end (and at most 10,000 lines at a time); the stand-in serves
//! everything written, a line cut short by the test-control `append` included.
//!
//! # Test control (not Jenkins)
//! See [`control`]: `/__standin/faults`, `/__standin/requests`, `/job/N/<b>/__standin/append`
//! (`/job/F/job/N/<b>/__standin/append` in a folder).

pub mod api;
pub mod authorization;
pub mod config;
pub mod console;
pub mod control;
pub mod dockerfile;
pub mod item_path;
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

pub use config::{default_prepare_script, Account, Authorization, DockerMode, Permission, StandInConfig, JENKINS_VERSION};

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
