//! The in-memory Jenkins: items (jobs and folders), the queue, builds with their logs, web
//! sessions, and the queue maintenance that moves items from waiting to running.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;

use crate::config::StandInConfig;
use crate::console;
use crate::item_path::{ItemKey, ItemPath};
use crate::job_config::{JobDefinition, JobKind, ParameterValue};

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildResult {
    Success,
    Unstable,
    Failure,
    NotBuilt,
    Aborted,
}

impl BuildResult {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildResult::Success => "SUCCESS",
            BuildResult::Unstable => "UNSTABLE",
            BuildResult::Failure => "FAILURE",
            BuildResult::NotBuilt => "NOT_BUILT",
            BuildResult::Aborted => "ABORTED",
        }
    }

    /// The ball colour of a job whose last build ended so.
    pub fn color(self) -> &'static str {
        match self {
            BuildResult::Success => "blue",
            BuildResult::Unstable => "yellow",
            BuildResult::Failure => "red",
            BuildResult::NotBuilt => "notbuilt",
            BuildResult::Aborted => "aborted",
        }
    }
}

/// A build, shared by the job that lists it and the task that runs it.
pub struct Build {
    pub job: ItemPath,
    pub job_kind: JobKind,
    pub number: u64,
    pub queue_id: u64,
    pub url: String,
    pub parameters: Vec<ParameterValue>,
    pub cause_user: String,
    pub timestamp_ms: u64,
    pub started: Instant,
    /// The job's estimate when this build started, in ms; -1 when unknown.
    pub estimated_duration_ms: i64,
    /// The job's pipeline script when it was triggered (a pipeline job's `config.xml`).
    pub script: Option<String>,
    /// Secret values that never reach the log: password parameters (and the values of BUILD_ARGS).
    masks: Vec<String>,
    progress: Mutex<Progress>,
    /// Set to true to interrupt the running step.
    pub abort: watch::Sender<bool>,
}

#[derive(Debug)]
pub struct Progress {
    /// The raw log: text with console notes (see [`console`]).
    pub log: Vec<u8>,
    pub building: bool,
    pub result: Option<BuildResult>,
    pub duration_ms: u64,
    /// When the first stop came.
    pub stopped_at: Option<Instant>,
}

impl Build {
    pub fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.iter().find(|p| p.name == name).map(|p| p.value.as_str())
    }

    /// Appends one line, with every secret value masked as Jenkins masks password parameters.
    pub fn log_line(&self, line: &str) {
        self.log_noted_line(line, &[], "");
    }

    /// Appends one line with a console note (see [`console`]) between `before` and `after`, just
    /// before the text it annotates; secret values masked in both.
    pub fn log_noted_line(&self, before: &str, note: &[u8], after: &str) {
        let mut line = self.masked(before).into_bytes();
        line.extend_from_slice(note);
        line.extend_from_slice(self.masked(after).as_bytes());
        line.push(b'\n');
        let mut progress = self.progress();
        if progress.building {
            progress.log.extend_from_slice(&line);
        }
    }

    fn masked(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.masks {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "****");
            }
        }
        text
    }

    /// Appends raw bytes (the test-control `append`); false when the build is over.
    pub fn append_raw(&self, bytes: &[u8]) -> bool {
        let mut progress = self.progress();
        if progress.building {
            progress.log.extend_from_slice(bytes);
        }
        progress.building
    }

    /// The log from the raw offset `start` (from 0 when `start` is beyond the end, as Jenkins
    /// does) with its console notes removed, the raw end offset (notes counted: the next
    /// `start`), and whether more may come. As `AnnotatedLargeText.writeLogTo`: the body is
    /// shorter than `end - start` when notes were in the range.
    pub fn log_from(&self, start: u64) -> (Bytes, u64, bool) {
        let progress = self.progress();
        let length = progress.log.len() as u64;
        let start = if start > length { 0 } else { start };
        (Bytes::from(console::strip_notes(&progress.log[start as usize..])), length, progress.building)
    }

    /// The raw log, console notes included, as Jenkins stores it (`log` of the build directory).
    pub fn raw_log(&self) -> Vec<u8> {
        self.progress().log.clone()
    }

    pub fn is_building(&self) -> bool {
        self.progress().building
    }

    /// Records a stop: the running step is interrupted at once, the build becomes ABORTED after
    /// the abort delay. False when the build was already over.
    pub fn request_stop(&self, user: &str) -> bool {
        let mut progress = self.progress();
        if !progress.building {
            return false;
        }
        // `CauseOfInterruption.UserInterruption`: the user name is a hyperlink.
        let line = [b"Aborted by ".as_slice(), &console::hyperlink(&format!("/user/{user}"), user), user.as_bytes(), b"\n"].concat();
        progress.log.extend_from_slice(&line);
        progress.stopped_at.get_or_insert_with(Instant::now);
        drop(progress);
        self.abort.send_replace(true);
        true
    }

    /// Ends the build with its result: the last line is `Finished: <RESULT>`.
    pub fn finish(&self, result: BuildResult) {
        let mut progress = self.progress();
        if !progress.building {
            return;
        }
        progress.log.extend_from_slice(format!("Finished: {}\n", result.as_str()).as_bytes());
        progress.result = Some(result);
        progress.duration_ms = self.started.elapsed().as_millis() as u64;
        progress.building = false;
    }
}

pub struct Job {
    pub path: ItemPath,
    /// Tells a job from an earlier item of the same name that was deleted.
    pub generation: u64,
    pub config_xml: String,
    pub definition: JobDefinition,
    pub next_build_number: u64,
    pub builds: BTreeMap<u64, Arc<Build>>,
    /// `doDelete` is waiting for the running builds to end: nothing new starts.
    pub deleting: bool,
}

impl Job {
    /// Newest first.
    pub fn builds_newest_first(&self) -> impl Iterator<Item = &Arc<Build>> {
        self.builds.values().rev()
    }

    pub fn last_build(&self) -> Option<&Arc<Build>> {
        self.builds.values().next_back()
    }

    pub fn running_build(&self) -> Option<&Arc<Build>> {
        self.builds_newest_first().find(|b| b.is_building())
    }

    /// Jenkins' estimate: the mean duration of the last (up to 3) successful builds, else of
    /// the last completed ones; -1 without any.
    pub fn estimated_duration_ms(&self) -> i64 {
        let completed: Vec<(BuildResult, u64)> = self
            .builds_newest_first()
            .filter_map(|b| {
                let progress = b.progress();
                progress.result.filter(|_| !progress.building).map(|r| (r, progress.duration_ms))
            })
            .take(6)
            .collect();
        let good: Vec<u64> =
            completed.iter().filter(|(r, _)| matches!(r, BuildResult::Success | BuildResult::Unstable)).map(|(_, d)| *d).take(3).collect();
        let candidates: Vec<u64> = if good.is_empty() { completed.iter().map(|(_, d)| *d).take(3).collect() } else { good };
        if candidates.is_empty() {
            -1
        } else {
            (candidates.iter().sum::<u64>() / candidates.len() as u64) as i64
        }
    }
}

/// A folder of the CloudBees Folders plugin (`com.cloudbees.hudson.plugins.folder.Folder`).
pub struct Folder {
    pub path: ItemPath,
    /// Tells a folder from an earlier item of the same name that was deleted.
    pub generation: u64,
    pub config_xml: String,
    pub description: Option<String>,
}

/// What the root and every folder hold.
pub enum Item {
    Job(Job),
    Folder(Folder),
}

impl Item {
    pub fn path(&self) -> &ItemPath {
        match self {
            Item::Job(job) => &job.path,
            Item::Folder(folder) => &folder.path,
        }
    }

    pub fn generation(&self) -> u64 {
        match self {
            Item::Job(job) => job.generation,
            Item::Folder(folder) => folder.generation,
        }
    }

    pub fn config_xml(&self) -> &str {
        match self {
            Item::Job(job) => &job.config_xml,
            Item::Folder(folder) => &folder.config_xml,
        }
    }

    /// The Java class of the item, as `_class` in JSON.
    pub fn class(&self) -> &'static str {
        match self {
            Item::Job(job) => job.definition.kind.job_class(),
            Item::Folder(_) => FOLDER_CLASS,
        }
    }

    /// The names of the folder whose ACL applies to this item: a job's folder, a folder itself.
    pub fn acl_owner(&self) -> &[String] {
        match self {
            Item::Job(job) => job.path.folder_names(),
            Item::Folder(folder) => folder.path.names(),
        }
    }
}

/// The class of a folder, and the root element of its `config.xml`.
pub const FOLDER_CLASS: &str = "com.cloudbees.hudson.plugins.folder.Folder";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemState {
    /// In the quiet period.
    Waiting,
    /// Waiting for a running build of the same job (concurrent builds disabled).
    Blocked { since_ms: u64 },
    /// Started as build `Some(number)`, or cancelled (`None`).
    Left { at: Instant, build: Option<u64> },
}

#[derive(Clone, Debug)]
pub struct QueueItem {
    pub id: u64,
    pub job: ItemPath,
    pub job_generation: u64,
    pub job_kind: JobKind,
    pub parameters: Vec<ParameterValue>,
    pub cause_user: String,
    pub in_queue_since_ms: u64,
    pub buildable_at: Instant,
    pub buildable_at_ms: u64,
    pub state: ItemState,
}

impl QueueItem {
    pub fn is_in_queue(&self) -> bool {
        !matches!(self.state, ItemState::Left { .. })
    }

    /// Leaves the queue as cancelled; false when it had left already.
    pub fn cancel(&mut self) -> bool {
        if !self.is_in_queue() {
            return false;
        }
        self.state = ItemState::Left { at: Instant::now(), build: None };
        true
    }
}

pub struct Session {
    pub user: String,
    pub crumb: String,
}

/// One injected failure of the test-control surface, for the next `remaining` matching requests.
#[derive(Clone, Debug)]
pub struct Fault {
    pub status: Option<u16>,
    pub stall: Option<Duration>,
    pub reset: bool,
    pub remaining: u32,
    pub path_contains: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The query, with the values of password parameters replaced by `****`.
    pub query: Option<String>,
    /// None while unanswered, or when the connection was closed by a fault.
    pub status: Option<u16>,
}

#[derive(Default)]
pub struct Inner {
    /// Every item at every depth, by [`ItemPath::key`]: a folder comes just before what it holds.
    pub items: BTreeMap<ItemKey, Item>,
    pub queue: BTreeMap<u64, QueueItem>,
    pub next_queue_id: u64,
    pub next_item_generation: u64,
    pub sessions: HashMap<String, Session>,
    pub faults: VecDeque<Fault>,
    pub requests: Vec<RecordedRequest>,
}

impl Inner {
    pub fn item(&self, path: &ItemPath) -> Option<&Item> {
        self.items.get(&path.key())
    }

    pub fn job(&self, path: &ItemPath) -> Option<&Job> {
        match self.item(path) {
            Some(Item::Job(job)) => Some(job),
            _ => None,
        }
    }

    pub fn job_mut(&mut self, path: &ItemPath) -> Option<&mut Job> {
        match self.items.get_mut(&path.key()) {
            Some(Item::Job(job)) => Some(job),
            _ => None,
        }
    }

    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.items.values().filter_map(|item| match item {
            Item::Job(job) => Some(job),
            Item::Folder(_) => None,
        })
    }

    /// The item and everything inside it, at any depth (the item first).
    pub fn subtree(&self, path: &ItemPath) -> impl Iterator<Item = &Item> {
        let key = path.key();
        self.items.range(key.clone()..).take_while(move |(k, _)| k.starts_with(&key)).map(|(_, item)| item)
    }

    /// The items directly in this folder (or at the root), in Jenkins' order: by name, ignoring case.
    pub fn children<'a>(&'a self, group: &ItemPath) -> impl Iterator<Item = &'a Item> + 'a {
        let depth = group.names().len() + 1;
        self.subtree(group).filter(move |item| item.path().names().len() == depth)
    }

    /// A new item's generation.
    pub fn next_generation(&mut self) -> u64 {
        let generation = self.next_item_generation;
        self.next_item_generation += 1;
        generation
    }

    /// The item of this id, unless it left the queue longer ago than Jenkins remembers.
    pub fn queue_item(&self, id: u64, forget_after: Duration) -> Option<&QueueItem> {
        self.queue.get(&id).filter(|item| !is_forgotten(item, forget_after))
    }

    pub fn queue_item_mut(&mut self, id: u64, forget_after: Duration) -> Option<&mut QueueItem> {
        self.queue.get_mut(&id).filter(|item| !is_forgotten(item, forget_after))
    }

    /// The first item of the job still in the queue, blocked ones first as in Jenkins.
    pub fn queued_item_of(&self, job: &Job) -> Option<&QueueItem> {
        let of_job = |item: &&QueueItem| item.job == job.path && item.job_generation == job.generation;
        let mut items = self.queue.values().filter(of_job).filter(|i| i.is_in_queue());
        let first = items.clone().next();
        items.find(|i| matches!(i.state, ItemState::Blocked { .. })).or(first)
    }

    /// Takes one use of the first fault that matches this path.
    pub fn take_fault(&mut self, path: &str) -> Option<Fault> {
        let index = self.faults.iter().position(|f| f.path_contains.as_deref().is_none_or(|part| path.contains(part)))?;
        let fault = &mut self.faults[index];
        fault.remaining -= 1;
        let taken = fault.clone();
        if fault.remaining == 0 {
            self.faults.remove(index);
        }
        Some(taken)
    }

    /// Names of every password parameter of every job: their values are kept out of the request log.
    pub fn password_parameter_names(&self) -> Vec<String> {
        self.jobs()
            .flat_map(|job| job.definition.parameters.iter())
            .filter(|p| p.kind == crate::job_config::ParameterKind::Password)
            .map(|p| p.name.clone())
            .collect()
    }
}

fn is_forgotten(item: &QueueItem, forget_after: Duration) -> bool {
    matches!(item.state, ItemState::Left { at, .. } if at.elapsed() >= forget_after)
}

pub struct Shared {
    pub config: StandInConfig,
    /// The root URL, with a trailing `/`.
    pub base: String,
    /// `JSESSIONID.<8 hex>`, as Jenkins names its session cookie.
    pub cookie_name: String,
    /// `X-Jenkins-Session`.
    pub instance_id: String,
    inner: Mutex<Inner>,
    pub wake_scheduler: Notify,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Shared {
    pub fn new(config: StandInConfig, base: String) -> Self {
        let instance = uuid::Uuid::new_v4().simple().to_string();
        Self {
            config,
            base,
            cookie_name: format!("JSESSIONID.{}", &instance[..8]),
            instance_id: instance[8..16].to_owned(),
            inner: Mutex::new(Inner { next_queue_id: 1, next_item_generation: 1, ..Inner::default() }),
            wake_scheduler: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The absolute URL of an item: `<base>job/team-a/job/app/`.
    pub fn item_url(&self, path: &ItemPath) -> String {
        path.url(&self.base)
    }

    pub fn build_url(&self, job: &ItemPath, number: u64) -> String {
        format!("{}{number}/", self.item_url(job))
    }

    pub fn track(&self, task: AbortHandle) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    pub fn abort_all_tasks(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        for task in tasks {
            task.abort();
        }
    }

    /// Jenkins' `Queue.maintain`: forgets old left items, moves items whose quiet period is
    /// over to blocked or to a new build. Returns the builds to run and when to look again.
    pub fn maintain(&self) -> (Vec<Arc<Build>>, Option<Instant>) {
        let forget_after = self.config.forget_left_items_after;
        let now = Instant::now();
        let mut inner = self.lock();
        inner.queue.retain(|_, item| !is_forgotten(item, forget_after));
        let mut next_wake: Option<Instant> = None;
        let mut wake_at = |at: Instant| next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
        let mut started = Vec::new();
        let ids: Vec<u64> = inner.queue.keys().copied().collect();
        for id in ids {
            let Inner { queue, items, .. } = &mut *inner;
            let Some(item) = queue.get_mut(&id) else { continue };
            match item.state {
                ItemState::Left { at, .. } => {
                    wake_at(at + forget_after);
                    continue;
                }
                ItemState::Waiting if item.buildable_at > now => {
                    wake_at(item.buildable_at);
                    continue;
                }
                ItemState::Waiting | ItemState::Blocked { .. } => {}
            }
            let job = match items.get_mut(&item.job.key()) {
                Some(Item::Job(job)) if job.generation == item.job_generation => job,
                _ => {
                    item.cancel(); // the job is gone
                    continue;
                }
            };
            if job.deleting {
                continue;
            }
            if !job.definition.concurrent && job.running_build().is_some() {
                if item.state == ItemState::Waiting {
                    item.state = ItemState::Blocked { since_ms: now_ms() };
                }
                continue;
            }
            let number = job.next_build_number;
            job.next_build_number += 1;
            let build = Arc::new(new_build(self, job, item, number));
            job.builds.insert(number, build.clone());
            item.state = ItemState::Left { at: now, build: Some(number) };
            wake_at(now + forget_after);
            started.push(build);
        }
        (started, next_wake)
    }
}

fn new_build(shared: &Shared, job: &Job, item: &QueueItem, number: u64) -> Build {
    let mut masks: Vec<String> = item.parameters.iter().filter(|p| p.is_secret() && !p.value.is_empty()).map(|p| p.value.clone()).collect();
    if let Some(build_args) = item.parameters.iter().find(|p| p.name == "BUILD_ARGS") {
        if let Ok(serde_json::Value::Object(args)) = serde_json::from_str(&build_args.value) {
            for value in args.values() {
                let value = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                // Very short values would garble the log; Jenkins masks whole parameters only.
                if value.chars().count() >= 3 {
                    masks.push(value);
                }
            }
        }
    }
    masks.sort_by_key(|m| std::cmp::Reverse(m.len()));
    Build {
        job: job.path.clone(),
        job_kind: job.definition.kind,
        number,
        queue_id: item.id,
        url: shared.build_url(&job.path, number),
        parameters: item.parameters.clone(),
        cause_user: item.cause_user.clone(),
        timestamp_ms: now_ms(),
        started: Instant::now(),
        estimated_duration_ms: job.estimated_duration_ms(),
        script: job.definition.script.clone(),
        masks,
        progress: Mutex::new(Progress { log: Vec::new(), building: true, result: None, duration_ms: 0, stopped_at: None }),
        abort: watch::channel(false).0,
    }
}

/// Jenkins' `Util.getTimeSpanString`: `4.9 sec`, `12 sec`, `1 min 2 sec`, `15 min`, `1 hr 5 min`.
pub fn time_span(ms: u64) -> String {
    const SECOND: u64 = 1000;
    const MINUTE: u64 = 60 * SECOND;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    let two = |big: u64, big_label: String, small_label: String| if big < 10 { format!("{big_label} {small_label}") } else { big_label };
    let days = ms / DAY;
    let hours = ms % DAY / HOUR;
    let minutes = ms % HOUR / MINUTE;
    let seconds = ms % MINUTE / SECOND;
    let millis = ms % SECOND;
    let day_label = |n: u64| format!("{n} {}", if n == 1 { "day" } else { "days" });
    if days > 0 {
        two(days, day_label(days), format!("{hours} hr"))
    } else if hours > 0 {
        two(hours, format!("{hours} hr"), format!("{minutes} min"))
    } else if minutes > 0 {
        two(minutes, format!("{minutes} min"), format!("{seconds} sec"))
    } else if seconds >= 10 {
        format!("{seconds} sec")
    } else if seconds >= 1 {
        format!("{} sec", trim_number(seconds as f64 + (millis / 100) as f64 / 10.0))
    } else if millis >= 100 {
        format!("{} sec", trim_number((millis / 10) as f64 / 100.0))
    } else {
        format!("{millis} ms")
    }
}

fn trim_number(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_spans_read_like_jenkins() {
        assert_eq!(time_span(4_930), "4.9 sec");
        assert_eq!(time_span(5_000), "5 sec");
        assert_eq!(time_span(250), "0.25 sec");
        assert_eq!(time_span(42), "42 ms");
        assert_eq!(time_span(12_400), "12 sec");
        assert_eq!(time_span(62_000), "1 min 2 sec");
        assert_eq!(time_span(15 * 60_000 + 3_000), "15 min");
        assert_eq!(time_span(3_600_000 + 5 * 60_000), "1 hr 5 min");
        assert_eq!(time_span(2 * 86_400_000), "2 days 0 hr");
    }
}
