//! One step of `bench/memory.sh`: the poller's resident memory while N builds are tracked at
//! once, their logs flowing to HTTP sinks.
//!
//! In this process: the API (the local gateway's routes, `local_gateway::serve`), one status
//! sink and one log sink (HTTP servers that count and discard what they get). As child
//! processes: the Jenkins stand-in (`jenkins-standin`, whose builds last: every simulated Docker
//! operation takes `--step-ms`) and the poller alone (`memory-poller`). The AWS emulator is the
//! caller's (`AWS_ENDPOINT_URL`).
//!
//! The step: fresh resources; the poller's idle RSS; N v2 builds submitted (a `docker://`
//! source, one status and one log webhook each); once every status sink has heard
//! `building: true`, text is appended to every running build's log in the stand-in (its
//! test-control `append`) at an even rate so that each log grows by `--log-bytes` over the
//! warm-up and the sampling; after the warm-up, `/proc/<poller>/status` is read every second.
//! Prints one line, `memory-result builds=… rss_kib=<median VmRSS> …`, and stops its children.
//!
//! `memory --builds N --log-bytes B --standin-bin PATH --poller-bin PATH [--warmup-s 25]
//! [--sample-s 30] [--deadline-s 600]`

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_sqs::types::QueueAttributeName;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jenkins_standin::StandInConfig;
use serde_json::{json, Value};
use shuttle_core::config::Env;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Creates and appends in flight at once.
const IN_FLIGHT: usize = 32;
/// How often text is appended to every running build's log.
const APPEND_EVERY: Duration = Duration::from_secs(1);
/// How long a simulated Docker operation of the stand-in takes: the builds outlast the step.
const STEP_MS: &str = "1800000";

struct Options {
    builds: usize,
    log_bytes: u64,
    standin_bin: String,
    poller_bin: String,
    warmup: Duration,
    sample: Duration,
    deadline: Duration,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        use lexopt::prelude::*;
        const FLAGS: [&str; 7] = ["builds", "log-bytes", "standin-bin", "poller-bin", "warmup-s", "sample-s", "deadline-s"];
        let mut given = BTreeMap::new();
        let mut parser = lexopt::Parser::from_env();
        while let Some(arg) = parser.next()? {
            match arg {
                Long(flag) if FLAGS.contains(&flag) => {
                    let flag = format!("--{flag}");
                    given.insert(flag, parser.value()?.string()?);
                }
                _ => bail!("{}; the flags are --{}", arg.unexpected(), FLAGS.join(", --")),
            }
        }
        let text = |flag: &str| given.get(flag).cloned().with_context(|| format!("{flag} is required"));
        let number = |flag: &str, default: u64| -> anyhow::Result<u64> {
            given.get(flag).map_or(Ok(default), |raw| raw.parse().with_context(|| format!("{flag} must be a whole number, got '{raw}'")))
        };
        let options = Self {
            builds: usize::try_from(number("--builds", 1)?)?,
            log_bytes: number("--log-bytes", 64 * 1024)?,
            standin_bin: text("--standin-bin")?,
            poller_bin: text("--poller-bin")?,
            warmup: Duration::from_secs(number("--warmup-s", 25)?),
            sample: Duration::from_secs(number("--sample-s", 30)?),
            deadline: Duration::from_secs(number("--deadline-s", 600)?),
        };
        if options.builds == 0 || options.sample.is_zero() {
            bail!("--builds and --sample-s must be at least 1");
        }
        Ok(options)
    }
}

/// A child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What the sinks heard: the metadata of every build whose status said `building: true`, and the
/// log bytes received (bodies are counted, then dropped).
#[derive(Default)]
struct Heard {
    building: Mutex<HashSet<String>>,
    log_bytes: AtomicU64,
}

/// An HTTP server answering 200 to everything: `/status…` bodies are read as status JSON, any
/// other body is counted as log.
async fn start_sinks(heard: Arc<Heard>) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let heard = heard.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let heard = heard.clone();
                    async move {
                        let is_status = request.uri().path().starts_with("/status");
                        let mut body = request.into_body();
                        let mut status_body = Vec::new();
                        while let Some(frame) = body.frame().await {
                            let Some(data) = frame?.into_data().ok() else { continue };
                            if is_status {
                                status_body.extend_from_slice(&data);
                            } else {
                                heard.log_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                            }
                        }
                        if let Ok(status) = serde_json::from_slice::<Value>(&status_body) {
                            if let (Some(id), Some(true)) = (status["id"].as_str(), status["building"].as_bool()) {
                                heard.building.lock().expect("not poisoned").insert(id.to_owned());
                            }
                        }
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(base)
}

/// Text of `len` bytes in lines, as a build writes.
fn log_text(len: usize, build: usize) -> Bytes {
    let line = format!("build {build}: step output, some bytes of a chatty build log ......................................\n");
    Bytes::from(line.repeat(len / line.len() + 1).into_bytes()[..len].to_vec())
}

#[tokio::main]
#[allow(clippy::print_stdout)] // the progress and the result line are this tool's output
async fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let started = Instant::now();
    let say = |what: String| println!("  [{:>5.1} s] {what}", started.elapsed().as_secs_f64());
    let sdk = shuttle_tests::sdk_config().await;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let resources =
        local_gateway::stack::create_resources(&sdk, &format!("mem{run}")).await.context("the resources in the AWS emulator")?;

    // The Jenkins stand-in, as a process: its logs live there, not in the poller.
    let standin = StandInConfig::default();
    let jenkins_url = format!("http://127.0.0.1:{}/", free_port()?);
    let _standin_process = Process(
        Command::new(&options.standin_bin)
            .args([
                "--listen",
                jenkins_url.trim_start_matches("http://").trim_end_matches('/'),
                "--step-ms",
                STEP_MS,
                "--docker",
                "simulated",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", options.standin_bin))?,
    );
    let client = shuttle_tests::http_client().timeout(Duration::from_secs(60)).build()?;
    let jenkins_ready = Instant::now();
    while client.get(format!("{jenkins_url}api/json")).basic_auth(&standin.user, Some(&standin.api_token)).send().await.is_err() {
        if jenkins_ready.elapsed() > Duration::from_secs(20) {
            bail!("the Jenkins stand-in did not answer within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The API in this process; the settings it and the poller share (SPEC §6).
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api_url = format!("http://{}", listener.local_addr()?);
    let token = format!("memory-{}", uuid::Uuid::new_v4().simple());
    let mut settings: Vec<(String, String)> =
        ["TABLE_NAME", "S3_BUCKET", "POLL_QUEUE_URL", "KMS_KEY_ID", "BUILD_SHUTTLE_HOST", "ALLOWED_PRIVATE_CIDRS"]
            .iter()
            .filter_map(|name| Some(((*name).to_owned(), resources.setting(name, &api_url)?)))
            .collect();
    settings.extend([
        ("POLL_DEAD_LETTER_QUEUE_URL".to_owned(), resources.queues.dead_letter_url.clone()),
        ("JENKINS_URL".to_owned(), jenkins_url.clone()),
        ("JENKINS_USER".to_owned(), standin.user.clone()),
        ("JENKINS_TOKEN".to_owned(), standin.api_token.clone()),
        ("SHUTTLE_API_TOKENS".to_owned(), token.clone()),
        ("SOURCES_SIGNING_KEY".to_owned(), format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())),
    ]);
    for name in ["POLL_INTERVAL", "LOG_WINDOW"] {
        if let Ok(value) = std::env::var(name) {
            settings.push((name.to_owned(), value));
        }
    }
    let lookup = |name: &str| settings.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let functions = local_gateway::Functions::wire(&sdk, &Env::from_lookup(lookup))?;
    tokio::spawn(local_gateway::serve(listener, functions));
    let heard = Arc::new(Heard::default());
    let sinks = start_sinks(heard.clone()).await?;

    // The poller, alone in its process; its idle RSS once it has settled.
    let poller_log = std::env::var("MEMORY_POLLER_LOG").unwrap_or_else(|_| "/dev/null".to_owned());
    let poller_process = Process(
        Command::new(&options.poller_bin)
            .envs(settings.iter().cloned())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&poller_log).with_context(|| format!("create {poller_log}"))?)
            .spawn()
            .with_context(|| format!("start {}", options.poller_bin))?,
    );
    let pid = poller_process.0.id();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_kib = proc_kib(pid, "VmRSS").context("the poller exited; see MEMORY_POLLER_LOG")?;
    say(format!("poller pid {pid} idle: {idle_kib} KiB"));

    // Every create, at most IN_FLIGHT at once, a 503 repeated as a controller would.
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut creates = JoinSet::new();
    for index in 0..options.builds {
        let body = json!({
            "webhooks": {"status": format!("{sinks}/status/{index}"), "logs": format!("{sinks}/logs/{index}")},
            "metadata": format!("mem/{run}/{index}"),
            "source": {"url": "docker://127.0.0.1:5999/org/base:1"},
            "destination": {"url": format!("docker://127.0.0.1:5999/org/mem-{index}:1")},
        });
        let request = client.post(format!("{api_url}/mem-{run}-{index}/1")).bearer_auth(&token).json(&body);
        let permit = permits.clone().acquire_owned();
        creates.spawn(async move {
            let _permit = permit.await;
            for _ in 0..10 {
                match request.try_clone().expect("a JSON body").send().await {
                    Ok(response) if response.status() == 200 => return true,
                    Ok(response) if response.status() == 503 => tokio::time::sleep(Duration::from_secs(1)).await,
                    _ => return false,
                }
            }
            false
        });
    }
    let accepted = creates.join_all().await.into_iter().filter(|ok| *ok).count();
    if accepted < options.builds {
        bail!("{} of {} creates were refused", options.builds - accepted, options.builds);
    }
    say(format!("{accepted} builds accepted"));

    // Until every build is running in the stand-in.
    let deadline = started + options.deadline;
    let mut reported = Instant::now();
    loop {
        let building = heard.building.lock().expect("not poisoned").len();
        if building == options.builds {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {building} of {} builds were building within {} s", options.builds, options.deadline.as_secs());
        }
        if reported.elapsed() > Duration::from_secs(10) {
            say(format!("{building} of {} building; poller {} KiB", options.builds, proc_kib(pid, "VmRSS").unwrap_or(0)));
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    say(format!("all {} building", options.builds));

    // The running builds (one per job, number 1), and their logs flowing from now on.
    let root: Value = client
        .get(format!("{jenkins_url}api/json?tree=jobs[name]"))
        .basic_auth(&standin.user, Some(&standin.api_token))
        .send()
        .await?
        .json()
        .await?;
    let jobs: Vec<String> =
        root["jobs"].as_array().into_iter().flatten().filter_map(|job| job["name"].as_str().map(str::to_owned)).collect();
    if jobs.len() != options.builds {
        bail!("the stand-in has {} jobs for {} builds", jobs.len(), options.builds);
    }
    let flow = options.warmup + options.sample;
    let rounds = (flow.as_secs_f64() / APPEND_EVERY.as_secs_f64()).ceil().max(1.0) as u64;
    let per_round = usize::try_from(options.log_bytes.div_ceil(rounds))?;
    let appended = Arc::new(AtomicU64::new(0));
    let appender = {
        let (client, jenkins_url, appended) = (client.clone(), jenkins_url.clone(), appended.clone());
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut ticks = tokio::time::interval(APPEND_EVERY);
            for _ in 0..rounds {
                ticks.tick().await;
                let mut round = JoinSet::new();
                for (index, job) in jobs.iter().enumerate() {
                    let request = client.post(format!("{jenkins_url}job/{job}/1/__standin/append")).body(log_text(per_round, index));
                    let (permit, appended) = (permits.clone().acquire_owned(), appended.clone());
                    round.spawn(async move {
                        let _permit = permit.await;
                        if request.send().await.is_ok_and(|r| r.status().is_success()) {
                            appended.fetch_add(per_round as u64, Ordering::Relaxed);
                        }
                    });
                }
                round.join_all().await;
            }
        })
    };
    say(format!("appending {per_round} bytes to each log every {} s; warm-up {} s", APPEND_EVERY.as_secs(), options.warmup.as_secs()));
    tokio::time::sleep(options.warmup).await;

    // With every build running, the poller holds those whose message is in flight (in a poll);
    // the others wait in the queue for their next poll and cost it nothing: counted too.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let in_a_poll = || async {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&resources.queues.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .ok()?;
        attributes.attributes()?.get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?.parse::<u64>().ok()
    };
    let relayed_before = heard.log_bytes.load(Ordering::Relaxed);
    let (mut samples, mut polled) = (Vec::new(), Vec::new());
    let sampling = Instant::now();
    while sampling.elapsed() < options.sample {
        samples.push(proc_kib(pid, "VmRSS").context("the poller exited during the sampling; see MEMORY_POLLER_LOG")?);
        polled.extend(in_a_poll().await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let in_poll = median(&mut polled);
    let relayed = heard.log_bytes.load(Ordering::Relaxed) - relayed_before;
    let hwm_kib = proc_kib(pid, "VmHWM").unwrap_or(0);
    let still_building = heard.building.lock().expect("not poisoned").len();
    let (min, max) = (samples.iter().min().copied().unwrap_or(0), samples.iter().max().copied().unwrap_or(0));
    let rss_kib = median(&mut samples);
    appender.abort();
    say(format!(
        "RSS median {rss_kib} KiB over {} samples (min {min}, max {max}); builds in a poll: median {in_poll}; log relayed while sampling {:.1} MiB ({:.0} KiB/s); appended per build {:.0} KiB",
        samples.len(),
        relayed as f64 / 1048576.0,
        relayed as f64 / 1024.0 / options.sample.as_secs_f64(),
        appended.load(Ordering::Relaxed) as f64 / 1024.0 / options.builds as f64,
    ));
    println!(
        "memory-result builds={} in_poll={in_poll} rss_kib={rss_kib} idle_kib={idle_kib} hwm_kib={hwm_kib} relayed_bytes={relayed} appended_per_build={} building={still_building}",
        options.builds,
        appended.load(Ordering::Relaxed) / options.builds as u64,
    );
    // The children are killed as their handles drop; the builds die with the stand-in.
    Ok(())
}
