//! The load driver behind `bench/load.sh` (bench/README.md, "Load"): submits N v2 builds at once to a
//! running local gateway, each with a status and a log webhook on receivers of this process,
//! waits until every build is terminal (`GET …/status`), then checks that every status receiver
//! got exactly its build's sequence and every log receiver exactly the archived log
//! (`GET …/logs`). Prints a summary; exits 1 when anything is missing, duplicated or wrong.
//!
//! `load --url http://127.0.0.1:3000 [--token T] [--builds 1000] [--deadline-s 480]`, or the
//! variables `LOAD_URL`, `LOAD_TOKEN`, `LOAD_BUILDS`, `LOAD_DEADLINE_S`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use shuttle_tests::receiver::{Received, Receiver};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Status and log reads in flight at once: the endpoints read moto, which the poller needs too.
const READS_IN_FLIGHT: usize = 16;
/// A build whose receiver has not heard its end yet is still asked this often.
const RECHECK_EVERY: Duration = Duration::from_secs(15);
/// Quiet time after every receiver has everything, so that a late duplicate is still seen.
const SETTLE: Duration = Duration::from_secs(3);
const ROUND: Duration = Duration::from_millis(250);

struct Options {
    url: String,
    token: Option<String>,
    builds: usize,
    deadline: Duration,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        use lexopt::prelude::*;
        let mut given = BTreeMap::new();
        let mut parser = lexopt::Parser::from_env();
        while let Some(arg) = parser.next()? {
            let key = match arg {
                Long("url") => "URL",
                Long("token") => "TOKEN",
                Long("builds") => "BUILDS",
                Long("deadline-s") => "DEADLINE_S",
                _ => bail!("{}; usage: load --url URL [--token T] [--builds N] [--deadline-s S]", arg.unexpected()),
            };
            given.insert(key, parser.value()?.string()?);
        }
        let lookup = |key: &str| given.get(key).cloned().or_else(|| std::env::var(format!("LOAD_{key}")).ok()).filter(|v| !v.is_empty());
        let number = |key: &str, default: u64| -> anyhow::Result<u64> {
            lookup(key).map_or(Ok(default), |raw| raw.parse().with_context(|| format!("{key} must be a whole number, got '{raw}'")))
        };
        let builds = usize::try_from(number("BUILDS", 1000)?)?;
        if builds == 0 {
            bail!("BUILDS must be at least 1");
        }
        Ok(Self {
            url: lookup("URL").context("the gateway's URL is required (--url or LOAD_URL)")?.trim_end_matches('/').to_owned(),
            token: lookup("TOKEN"),
            builds,
            deadline: Duration::from_secs(number("DEADLINE_S", 480)?),
        })
    }
}

/// One build of the run and what was learnt about it.
struct Build {
    /// `/{app_id}/{build_id}`
    path: String,
    metadata: String,
    /// The create's answer: its status code (0: no answer) and how long it took.
    created: Option<(u16, Duration)>,
    /// The last status body read, once it is terminal.
    terminal: Option<Value>,
    /// When the status endpoint was first seen terminal, from the start of the run.
    terminal_after: Option<Duration>,
    last_checked: Option<Instant>,
    /// `GET …/logs`, read once the build is terminal.
    archived: Option<Vec<u8>>,
}

impl Build {
    fn status_path(&self) -> String {
        format!("/status{}", self.path)
    }

    fn logs_path(&self) -> String {
        format!("/logs{}", self.path)
    }

    /// What the status receiver must get, in order (SPEC §2): each state once.
    fn expected_statuses(&self, end: &str) -> Vec<Value> {
        let body =
            |status: &str, building: bool| json!({"id": self.metadata, "type": "build system", "building": building, "status": status});
        vec![body("pending", false), body("queued", false), body("pending", true), body(end, false)]
    }
}

/// How often one create is repeated after a 503 before it counts as refused.
const CREATE_RETRIES: u32 = 5;

fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "timedout")
}

/// The API, with the caller's token.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Api {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The status body of `path` (`None`: no 200 answer).
    async fn status(&self, path: &str) -> Option<Value> {
        let response = self.request(reqwest::Method::GET, &format!("{path}/status")).send().await.ok()?;
        if response.status() != 200 {
            return None;
        }
        response.json().await.ok()
    }

    async fn logs(&self, path: &str) -> Option<Vec<u8>> {
        let response = self.request(reqwest::Method::GET, &format!("{path}/logs")).send().await.ok()?;
        if response.status() != 200 {
            return None;
        }
        response.bytes().await.ok().map(|b| b.to_vec())
    }
}

/// The statuses a receiver took at `path` (whole requests), as JSON (`Null` if not JSON).
fn statuses(receiver: &Receiver, path: &str) -> Vec<Value> {
    receiver.requests(path).iter().filter(|r| r.complete).map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null)).collect()
}

fn heard_end(receiver: &Receiver, path: &str) -> bool {
    statuses(receiver, path).iter().any(|s| s["status"].as_str().is_some_and(is_terminal))
}

/// The log as a receiver honouring `X-Log-Offset` reassembles it, and the bytes that were sent
/// more than once (at-least-once per range, SPEC §5). `Err`: a gap, a resent range that differs,
/// or a stream without an offset.
fn reassemble(streams: &[Received]) -> Result<(Vec<u8>, usize), String> {
    let mut by_offset = Vec::new();
    for stream in streams {
        let offset: usize =
            stream.header("x-log-offset").and_then(|v| v.parse().ok()).ok_or_else(|| "a stream without a valid X-Log-Offset".to_owned())?;
        by_offset.push((offset, &stream.body));
    }
    by_offset.sort_by_key(|(offset, _)| *offset);
    let (mut log, mut resent) = (Vec::new(), 0);
    for (offset, body) in by_offset {
        if offset > log.len() {
            return Err(format!("a gap: a stream starts at {offset}, past the {} bytes before it", log.len()));
        }
        let overlap = (log.len() - offset).min(body.len());
        if log[offset..offset + overlap] != body[..overlap] {
            return Err(format!("a resent range differs from the first sending at offset {offset}"));
        }
        resent += overlap;
        log.extend_from_slice(&body[overlap..]);
    }
    Ok((log, resent))
}

/// What the status receiver of one build got, against what it should have.
#[derive(Default)]
struct StatusCheck {
    lost: usize,
    duplicated: usize,
    unexpected: usize,
    out_of_order: bool,
}

impl StatusCheck {
    fn of(received: &[Value], expected: &[Value]) -> Self {
        let mut check = Self::default();
        let mut first_seen = Vec::new();
        for body in received {
            if !expected.contains(body) {
                check.unexpected += 1;
            } else if first_seen.contains(body) {
                check.duplicated += 1;
            } else {
                first_seen.push(body.clone());
            }
        }
        check.lost = expected.iter().filter(|e| !first_seen.contains(e)).count();
        let in_order: Vec<&Value> = expected.iter().filter(|e| first_seen.contains(e)).collect();
        check.out_of_order = first_seen.iter().collect::<Vec<_>>() != in_order;
        check
    }

    fn exact(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.unexpected == 0 && !self.out_of_order
    }
}

/// Runs `read` on every index with at most [`READS_IN_FLIGHT`] at once.
async fn read_all<T: Send + 'static, F>(indexes: Vec<usize>, read: impl Fn(usize) -> F) -> Vec<(usize, T)>
where
    F: std::future::Future<Output = T> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(READS_IN_FLIGHT));
    let mut reads = JoinSet::new();
    for index in indexes {
        let permit = permits.clone().acquire_owned();
        let read = read(index);
        reads.spawn(async move {
            let _permit = permit.await;
            (index, read.await)
        });
    }
    reads.join_all().await
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

#[tokio::main]
#[allow(clippy::print_stdout)] // the summary is this tool's output
async fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let client = shuttle_tests::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .context("an HTTP client")?;
    let api = Api { client, url: options.url.clone(), token: options.token.clone() };
    let health = api.request(reqwest::Method::GET, "/octhc").send().await.context("the gateway does not answer")?;
    if !health.status().is_success() {
        bail!("the gateway's /octhc answered {}", health.status());
    }
    let (status_receiver, log_receiver) = (Receiver::ok().await, Receiver::ok().await);
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut builds: Vec<Build> = (0..options.builds)
        .map(|i| Build {
            path: format!("/load-{run}-{i}/1"),
            metadata: format!("load/{run}/{i}"),
            created: None,
            terminal: None,
            terminal_after: None,
            last_checked: None,
            archived: None,
        })
        .collect();

    // Every create at once.
    println!("submitting {} builds to {}", options.builds, options.url);
    let started = Instant::now();
    let mut creates = JoinSet::new();
    for (index, build) in builds.iter().enumerate() {
        let body = json!({
            "webhooks": {"status": [status_receiver.url(&build.status_path())], "logs": [log_receiver.url(&build.logs_path())]},
            "metadata": build.metadata,
            "human_readable_info": format!("load build {index}"),
            "source": {"url": "docker://registry.example.com/org/base:1"},
            "destination": {"url": format!("docker://registry.example.com/org/load-{index}:1")},
        });
        let request = api.request(reqwest::Method::POST, &build.path).json(&body);
        creates.spawn(async move {
            let sent = Instant::now();
            // As a controller does: a 503 (a backing service overwhelmed) is repeated after its
            // Retry-After; a create is idempotent, so a repeat never makes a second build.
            let mut retries = 0;
            let code = loop {
                match request.try_clone().expect("a JSON body can be sent again").send().await {
                    Ok(response) if response.status() == 503 && retries < CREATE_RETRIES => {
                        let wait = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
                        retries += 1;
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                    }
                    Ok(response) => break response.status().as_u16(),
                    Err(_) => break 0,
                }
            };
            (index, code, sent.elapsed(), retries)
        });
    }
    let mut retried = 0;
    for (index, code, took, retries) in creates.join_all().await {
        builds[index].created = Some((code, took));
        retried += retries;
    }
    let submitted_after = started.elapsed();
    let accepted: Vec<usize> = (0..builds.len()).filter(|&i| builds[i].created.is_some_and(|(code, _)| code == 200)).collect();
    let mut latencies: Vec<Duration> = builds.iter().filter_map(|b| b.created.map(|(_, took)| took)).collect();
    latencies.sort();
    let percentile =
        |p: usize| latencies.get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1))).copied().unwrap_or_default();
    let mut refusals: BTreeMap<u16, usize> = BTreeMap::new();
    for build in &builds {
        if let Some((code, _)) = build.created.filter(|(code, _)| *code != 200) {
            *refusals.entry(code).or_default() += 1;
        }
    }
    println!(
        "  {} accepted in {} (create p50 {} ms, p99 {} ms, max {} ms){}",
        accepted.len(),
        seconds(submitted_after),
        percentile(50).as_millis(),
        percentile(99).as_millis(),
        latencies.last().copied().unwrap_or_default().as_millis(),
        if refusals.is_empty() { String::new() } else { format!("; refused (status: count, 0 = no answer): {refusals:?}") }
            + &if retried == 0 { String::new() } else { format!("; {retried} repeats after a 503") }
    );

    // Until every accepted build is terminal, asking first about those whose receiver heard the end.
    let deadline = started + options.deadline;
    let mut reported = Instant::now();
    loop {
        let due: Vec<usize> = accepted
            .iter()
            .copied()
            .filter(|&i| {
                let build = &builds[i];
                build.terminal.is_none()
                    && (heard_end(&status_receiver, &build.status_path())
                        || build.last_checked.is_none_or(|t| t.elapsed() >= RECHECK_EVERY))
            })
            .collect();
        let reads = read_all(due, |i| {
            let (api, path) = (api.clone(), builds[i].path.clone());
            async move { api.status(&path).await }
        })
        .await;
        for (i, status) in reads {
            let build = &mut builds[i];
            build.last_checked = Some(Instant::now());
            if let Some(status) = status.filter(|s| s["status"].as_str().is_some_and(is_terminal)) {
                build.terminal = Some(status);
                build.terminal_after = Some(started.elapsed());
            }
        }
        let done = accepted.iter().filter(|&&i| builds[i].terminal.is_some()).count();
        if done == accepted.len() || Instant::now() >= deadline {
            break;
        }
        if reported.elapsed() >= Duration::from_secs(10) {
            println!("  {done} of {} terminal after {}", accepted.len(), seconds(started.elapsed()));
            reported = Instant::now();
        }
        tokio::time::sleep(ROUND).await;
    }
    let terminal: Vec<usize> = accepted.iter().copied().filter(|&i| builds[i].terminal.is_some()).collect();
    let last_terminal = terminal.iter().filter_map(|&i| builds[i].terminal_after).max().unwrap_or_default();

    // The archived logs, then until every receiver has everything (or the deadline).
    for (i, log) in read_all(terminal.clone(), |i| {
        let (api, path) = (api.clone(), builds[i].path.clone());
        async move { api.logs(&path).await }
    })
    .await
    {
        builds[i].archived = log;
    }
    let delivered = |build: &Build| {
        let Some(end) = build.terminal.as_ref().and_then(|s| s["status"].as_str()) else { return true };
        let statuses_done = statuses(&status_receiver, &build.status_path()).contains(&build.expected_statuses(end)[3]);
        let log_done = build.archived.as_ref().is_none_or(|archived| {
            reassemble(&log_receiver.requests(&build.logs_path())).is_ok_and(|(log, _)| log.len() >= archived.len())
        });
        statuses_done && log_done
    };
    while Instant::now() < deadline && !terminal.iter().all(|&i| delivered(&builds[i])) {
        tokio::time::sleep(ROUND).await;
    }
    let delivered_after = started.elapsed();
    tokio::time::sleep(SETTLE).await;

    // A refused create (a 5xx) may still have stored its build: SPEC lets the client repeat it.
    let refused: Vec<usize> = (0..builds.len()).filter(|i| !accepted.contains(i)).collect();
    let refused_stored = read_all(refused.clone(), |i| {
        let (api, path) = (api.clone(), builds[i].path.clone());
        async move { api.status(&path).await.is_some() }
    })
    .await
    .into_iter()
    .filter(|(_, stored)| *stored)
    .count();

    // The checks.
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for &i in &accepted {
        let end = builds[i].terminal.as_ref().and_then(|s| s["status"].as_str()).unwrap_or("not terminal");
        *ends.entry(end.to_owned()).or_default() += 1;
    }
    let (mut status_exact, mut lost, mut duplicated, mut unexpected, mut out_of_order) = (0, 0, 0, 0, 0);
    let (mut log_exact, mut log_bytes, mut resent) = (0, 0, 0);
    let mut problems: Vec<String> = Vec::new();
    for &i in &accepted {
        let build = &builds[i];
        let end = build.terminal.as_ref().and_then(|s| s["status"].as_str()).unwrap_or("succeeded");
        let received = statuses(&status_receiver, &build.status_path());
        let check = StatusCheck::of(&received, &build.expected_statuses(end));
        (lost, duplicated, unexpected) = (lost + check.lost, duplicated + check.duplicated, unexpected + check.unexpected);
        out_of_order += usize::from(check.out_of_order);
        if check.exact() {
            status_exact += 1;
        } else {
            let got: Vec<String> =
                received.iter().map(|s| format!("{}{}", s["status"], if s["building"] == true { "+building" } else { "" })).collect();
            problems.push(format!("{}: statuses [{}]", build.path, got.join(", ")));
        }
        match (&build.archived, reassemble(&log_receiver.requests(&build.logs_path()))) {
            (None, _) => problems.push(format!("{}: no archived log to compare with", build.path)),
            (Some(_), Err(why)) => problems.push(format!("{}: log {why}", build.path)),
            (Some(archived), Ok((log, again))) if &log == archived => {
                log_exact += 1;
                log_bytes += log.len();
                resent += again;
            }
            (Some(archived), Ok((log, _))) => {
                problems.push(format!("{}: log of {} bytes received, {} archived, not equal", build.path, log.len(), archived.len()))
            }
        }
    }
    let all_terminal = terminal.len() == accepted.len();
    let all_succeeded = ends.get("succeeded") == Some(&accepted.len());
    let counts: Vec<String> = ends.iter().map(|(end, n)| format!("{end} {n}")).collect();
    let refused_note = if refused.is_empty() {
        String::new()
    } else {
        format!("; {} refused, {refused_stored} of them stored all the same", refused.len())
    };
    println!("builds submitted   {} ({} accepted{refused_note})", builds.len(), accepted.len());
    println!("all terminal       {} ({})", if all_terminal { "yes" } else { "NO" }, counts.join(", "));
    println!(
        "status receivers   {status_exact}/{} exactly pending, queued, pending+building, end (lost {lost}, duplicated {duplicated}, out of order {out_of_order}, unexpected {unexpected})",
        accepted.len()
    );
    println!("log receivers      {log_exact}/{} exactly the archived log ({log_bytes} bytes; {resent} bytes sent again, allowed: at least once per range)", accepted.len());
    println!("last terminal      {}", seconds(last_terminal));
    println!("receivers complete {}", seconds(delivered_after));
    println!(
        "builds/s           {:.1} (terminal builds / time from the first create until the last was terminal)",
        terminal.len() as f64 / last_terminal.as_secs_f64().max(0.001)
    );
    for problem in problems.iter().take(20) {
        println!("  {problem}");
    }
    if problems.len() > 20 {
        println!("  … and {} more", problems.len() - 20);
    }
    let mut failures = Vec::new();
    if accepted.len() < builds.len() {
        failures.push(format!("{} creates refused", builds.len() - accepted.len()));
    }
    if !all_terminal {
        failures.push(format!("{} builds not terminal", accepted.len() - terminal.len()));
    } else if !all_succeeded {
        failures.push("not every build succeeded".to_owned());
    }
    if !problems.is_empty() {
        failures.push(format!("{} receiver problems", problems.len()));
    }
    let passed = failures.is_empty();
    println!("result             {}", if passed { "PASS".to_owned() } else { format!("FAIL: {}", failures.join("; ")) });
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(status: &str, building: bool) -> Value {
        json!({"id": "m", "type": "build system", "building": building, "status": status})
    }

    fn expected() -> Vec<Value> {
        vec![body("pending", false), body("queued", false), body("pending", true), body("succeeded", false)]
    }

    #[test]
    fn a_duplicate_is_told_apart_from_a_loss() {
        assert!(StatusCheck::of(&expected(), &expected()).exact());
        let mut twice = expected();
        twice.insert(2, body("queued", false));
        let check = StatusCheck::of(&twice, &expected());
        assert_eq!((check.duplicated, check.lost, check.out_of_order), (1, 0, false));
        let check = StatusCheck::of(&expected()[1..], &expected());
        assert_eq!((check.duplicated, check.lost, check.out_of_order), (0, 1, false));
        let mut swapped = expected();
        swapped.swap(0, 1);
        assert!(StatusCheck::of(&swapped, &expected()).out_of_order);
        let check = StatusCheck::of(&[body("failed", false)], &expected());
        assert_eq!((check.unexpected, check.lost), (1, 4));
    }
}
