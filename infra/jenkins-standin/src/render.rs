//! The JSON of Jenkins' remote API (`…/api/json`), in the shapes Jenkins exports.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::authorization::Permission;
use crate::item_path::ItemPath;
use crate::job_config::ParameterKind;
use crate::state::{time_span, Build, Folder, Inner, Item, ItemState, Job, QueueItem, Shared, FOLDER_CLASS};

/// A build as listed in a job (`{number, url}`), or in full when `detailed` (for `tree=`).
pub fn build_ref(build: &Build, detailed: bool) -> Value {
    if detailed {
        build_json(build, None)
    } else {
        json!({"_class": build.job_kind.run_class(), "number": build.number, "url": build.url})
    }
}

fn parameters_action(parameters: &[crate::job_config::ParameterValue]) -> Value {
    json!({
        "_class": "hudson.model.ParametersAction",
        "parameters": parameters.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
    })
}

fn cause_action(user: &str) -> Value {
    json!({
        "_class": "hudson.model.CauseAction",
        "causes": [{
            "_class": "hudson.model.Cause$UserIdCause",
            "shortDescription": format!("Started by user {user}"),
            "userId": user,
            "userName": user,
        }],
    })
}

/// `GET /job/N/<b>/api/json`. `job` gives the neighbours (`previousBuild`, `nextBuild`).
pub fn build_json(build: &Build, job: Option<&Job>) -> Value {
    let progress = build.progress();
    let neighbour = |number: Option<&Arc<Build>>| number.map(|b| build_ref(b, false)).unwrap_or(Value::Null);
    let (previous, next) = match job {
        Some(job) => (
            neighbour(job.builds.range(..build.number).next_back().map(|(_, b)| b)),
            neighbour(job.builds.range(build.number + 1..).next().map(|(_, b)| b)),
        ),
        None => (Value::Null, Value::Null),
    };
    json!({
        "_class": build.job_kind.run_class(),
        "actions": [
            parameters_action(&build.parameters),
            cause_action(&build.cause_user),
            {"_class": "org.jenkinsci.plugins.workflow.libs.LibrariesAction"},
            {},
            {"_class": "org.jenkinsci.plugins.workflow.job.views.FlowGraphAction"},
            {},
        ],
        "artifacts": [],
        "building": progress.building,
        "description": null,
        "displayName": format!("#{}", build.number),
        "duration": if progress.building { 0 } else { progress.duration_ms },
        "estimatedDuration": build.estimated_duration_ms,
        "executor": null,
        "fullDisplayName": format!("{} #{}", build.job.full_display_name(), build.number),
        "id": build.number.to_string(),
        "keepLog": false,
        "number": build.number,
        "queueId": build.queue_id,
        "result": progress.result.map(|r| r.as_str()),
        "timestamp": build.timestamp_ms,
        "url": build.url,
        "changeSets": [],
        "culprits": [],
        "inProgress": progress.building,
        "nextBuild": next,
        "previousBuild": previous,
    })
}

fn job_color(job: &Job) -> String {
    let Some(last) = job.last_build() else { return "notbuilt".to_owned() };
    let completed = job.builds_newest_first().find_map(|b| {
        let progress = b.progress();
        progress.result.filter(|_| !progress.building)
    });
    let base = completed.map_or("notbuilt", |r| r.color());
    if last.is_building() {
        format!("{base}_anime")
    } else {
        base.to_owned()
    }
}

/// The `task` of a queue item: the job, in short.
fn task_json(shared: &Shared, inner: &Inner, item: &QueueItem) -> Value {
    let color = inner.job(&item.job).filter(|j| j.generation == item.job_generation).map(job_color).unwrap_or_else(|| "notbuilt".into());
    json!({"_class": item.job_kind.job_class(), "name": item.job.name(), "url": shared.item_url(&item.job), "color": color})
}

/// Why an item is still in the queue, in Jenkins' words.
fn why(inner: &Inner, item: &QueueItem) -> Value {
    match item.state {
        ItemState::Waiting => {
            let left = item.buildable_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                json!("Finished waiting")
            } else {
                json!(format!("In the quiet period. Expires in {}", time_span(left.as_millis() as u64)))
            }
        }
        ItemState::Blocked { .. } => {
            let running = inner.job(&item.job).filter(|j| j.generation == item.job_generation).and_then(|j| j.running_build().cloned());
            match running {
                Some(build) => {
                    let eta = match build.estimated_duration_ms {
                        d if d < 0 => "N/A".to_owned(),
                        d => match (d as u64).checked_sub(build.started.elapsed().as_millis() as u64) {
                            Some(left) if left > 0 => time_span(left),
                            _ => "N/A".to_owned(),
                        },
                    };
                    json!(format!("Build #{} is already in progress (ETA: {eta})", build.number))
                }
                None => json!("Waiting for next available executor"),
            }
        }
        ItemState::Left { .. } => Value::Null,
    }
}

/// `GET /queue/item/<id>/api/json`: `Queue$WaitingItem`, `Queue$BlockedItem` or `Queue$LeftItem`.
pub fn queue_item_json(shared: &Shared, inner: &Inner, item: &QueueItem) -> Value {
    let params: String = item.parameters.iter().map(|p| format!("\n{}", p.short_description())).collect();
    let mut value = json!({
        "actions": [parameters_action(&item.parameters), cause_action(&item.cause_user)],
        "blocked": matches!(item.state, ItemState::Blocked { .. }),
        "buildable": false,
        "id": item.id,
        "inQueueSince": item.in_queue_since_ms,
        "params": params,
        "stuck": false,
        "task": task_json(shared, inner, item),
        "url": format!("queue/item/{}/", item.id),
        "why": why(inner, item),
    });
    match &item.state {
        ItemState::Waiting => {
            value["_class"] = json!("hudson.model.Queue$WaitingItem");
            value["timestamp"] = json!(item.buildable_at_ms);
        }
        ItemState::Blocked { since_ms } => {
            value["_class"] = json!("hudson.model.Queue$BlockedItem");
            value["buildableStartMilliseconds"] = json!(since_ms);
        }
        ItemState::Left { build, .. } => {
            value["_class"] = json!("hudson.model.Queue$LeftItem");
            value["cancelled"] = json!(build.is_none());
            value["executable"] = match build {
                Some(number) => json!({
                    "_class": item.job_kind.run_class(),
                    "number": number,
                    "url": shared.build_url(&item.job, *number),
                }),
                None => Value::Null,
            };
        }
    }
    value
}

/// `GET /job/N/api/json`. With `detailed` (a `tree=` query), builds are given in full so that
/// the tree can pick any of their properties.
pub fn job_json(shared: &Shared, inner: &Inner, job: &Job, detailed: bool) -> Value {
    let builds: Vec<&Arc<Build>> = job.builds_newest_first().collect();
    let pick = |filter: &dyn Fn(&Build) -> bool| -> Value {
        builds.iter().find(|b| filter(b)).map(|b| build_ref(b, detailed)).unwrap_or(Value::Null)
    };
    let result_is = |wanted: &[crate::state::BuildResult]| {
        let wanted = wanted.to_vec();
        move |b: &Build| {
            let progress = b.progress();
            !progress.building && progress.result.is_some_and(|r| wanted.contains(&r))
        }
    };
    use crate::state::BuildResult as R;
    let queue_item = inner.queued_item_of(job).map(|item| queue_item_json(shared, inner, item)).unwrap_or(Value::Null);
    let definitions: Vec<Value> = job
        .definition
        .parameters
        .iter()
        .map(|d| {
            let mut definition = json!({
                "_class": d.class(),
                "defaultParameterValue": d.default_value().to_json(),
                "description": d.description,
                "name": d.name,
                "type": d.class().rsplit('.').next().unwrap_or_default(),
            });
            if let ParameterKind::Choice(choices) = &d.kind {
                definition["choices"] = json!(choices);
            }
            definition
        })
        .collect();
    let mut property = Vec::new();
    if job.definition.kind == crate::job_config::JobKind::Pipeline && !job.definition.concurrent {
        property.push(json!({"_class": "org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty"}));
    }
    if !definitions.is_empty() {
        property.push(json!({"_class": "hudson.model.ParametersDefinitionProperty", "parameterDefinitions": definitions}));
    }
    let mut value = json!({
        "_class": job.definition.kind.job_class(),
        "actions": [{}, {}, {"_class": "org.jenkinsci.plugins.displayurlapi.actions.JobDisplayAction"}],
        "description": job.definition.description,
        "displayName": job.path.name(),
        "displayNameOrNull": null,
        "fullDisplayName": job.path.full_display_name(),
        "fullName": job.path.full_name(),
        "name": job.path.name(),
        "url": shared.item_url(&job.path),
        "buildable": true,
        "builds": builds.iter().take(100).map(|b| build_ref(b, detailed)).collect::<Vec<_>>(),
        "color": job_color(job),
        "firstBuild": builds.last().map(|b| build_ref(b, detailed)).unwrap_or(Value::Null),
        "healthReport": [],
        "inQueue": inner.queued_item_of(job).is_some(),
        "keepDependencies": false,
        "lastBuild": pick(&|_| true),
        "lastCompletedBuild": pick(&|b| !b.is_building()),
        "lastFailedBuild": pick(&result_is(&[R::Failure])),
        "lastStableBuild": pick(&result_is(&[R::Success])),
        "lastSuccessfulBuild": pick(&result_is(&[R::Success, R::Unstable])),
        "lastUnstableBuild": pick(&result_is(&[R::Unstable])),
        "lastUnsuccessfulBuild": pick(&result_is(&[R::Unstable, R::Failure, R::Aborted, R::NotBuilt])),
        "nextBuildNumber": job.next_build_number,
        "property": property,
        "queueItem": queue_item,
        "concurrentBuild": job.definition.concurrent,
        "resumeBlocked": false,
    });
    if detailed {
        // Exported only on request in Jenkins (`tree=allBuilds[…]`).
        value["allBuilds"] = json!(builds.iter().map(|b| build_ref(b, true)).collect::<Vec<_>>());
    }
    value
}

/// An item as listed in the root's or a folder's `jobs`: a folder has no colour.
fn item_ref(shared: &Shared, item: &Item) -> Value {
    let mut value = json!({"_class": item.class(), "name": item.path().name(), "url": shared.item_url(item.path())});
    if let Item::Job(job) = item {
        value["color"] = json!(job_color(job));
    }
    value
}

/// The items directly in this folder (or at the root) that `user` may read (Job/Read), as
/// Jenkins' `getItems()`.
fn readable_children(shared: &Shared, inner: &Inner, group: &ItemPath, user: &str) -> Vec<Value> {
    inner
        .children(group)
        .filter(|item| shared.config.allows(user, item.acl_owner(), Permission::JobRead))
        .map(|item| item_ref(shared, item))
        .collect()
}

/// `GET /job/F/api/json`: a folder of the CloudBees Folders plugin, with the items in it.
pub fn folder_json(shared: &Shared, inner: &Inner, folder: &Folder, user: &str) -> Value {
    let url = shared.item_url(&folder.path);
    let all_view = json!({"_class": "hudson.model.AllView", "name": "All", "url": url});
    json!({
        "_class": FOLDER_CLASS,
        "actions": [{}, {}, {"_class": "com.cloudbees.plugins.credentials.ViewCredentialsAction"}],
        "description": folder.description,
        "displayName": folder.path.name(),
        "displayNameOrNull": null,
        "fullDisplayName": folder.path.full_display_name(),
        "fullName": folder.path.full_name(),
        "name": folder.path.name(),
        "url": url,
        "healthReport": [],
        "jobs": readable_children(shared, inner, &folder.path, user),
        "primaryView": all_view,
        "views": [all_view],
    })
}

/// `GET /api/json`: the root, with the top-level items `user` may read.
pub fn root_json(shared: &Shared, inner: &Inner, user: &str) -> Value {
    let jobs = readable_children(shared, inner, &ItemPath::root(), user);
    json!({
        "_class": "hudson.model.Hudson",
        "assignedLabels": [{"name": "built-in"}],
        "mode": "NORMAL",
        "nodeDescription": "the Jenkins controller's built-in node",
        "nodeName": "",
        "numExecutors": 2,
        "description": null,
        "jobs": jobs,
        "overallLoad": {},
        "primaryView": {"_class": "hudson.model.AllView", "name": "all", "url": shared.base},
        "quietDownReason": null,
        "quietingDown": false,
        "slaveAgentPort": -1,
        "unlabeledLoad": {"_class": "jenkins.model.UnlabeledLoadStatistics"},
        "url": shared.base,
        "useCrumbs": true,
        "useSecurity": true,
        "views": [{"_class": "hudson.model.AllView", "name": "all", "url": shared.base}],
    })
}

/// `GET /queue/api/json`: `hudson.model.Queue` with the items still in the queue (left and
/// cancelled items are not listed), each as `/queue/item/<id>/api/json` shows it, in the order of
/// Jenkins' `Queue.getItems()`: the waiting items by the end of their quiet period (then by id),
/// then the blocked ones in the order they were blocked. (Jenkins lists buildable and pending
/// items last; the stand-in has none, as every build gets an executor at once.) Only the items of
/// jobs `user` may read are listed; those of jobs they may only discover are
/// `discoverableItems`, with the job's name alone.
pub fn queue_json(shared: &Shared, inner: &Inner, user: &str) -> Value {
    let may = |item: &QueueItem, permission| shared.config.allows(user, item.job.folder_names(), permission);
    let mut in_queue: Vec<&QueueItem> = inner.queue.values().filter(|item| item.is_in_queue()).collect();
    in_queue.sort_by_key(|item| match item.state {
        ItemState::Waiting => (0, item.buildable_at_ms, item.id),
        ItemState::Blocked { since_ms } => (1, since_ms, item.id),
        ItemState::Left { .. } => (2, 0, item.id),
    });
    let items: Vec<Value> =
        in_queue.iter().filter(|item| may(item, Permission::JobRead)).map(|item| queue_item_json(shared, inner, item)).collect();
    let discoverable: Vec<Value> = in_queue
        .iter()
        .filter(|item| !may(item, Permission::JobRead) && may(item, Permission::JobDiscover))
        .map(|item| {
            json!({"_class": "hudson.model.Queue$StubItem", "task": {"_class": "hudson.model.Queue$StubTask", "name": item.job.name()}})
        })
        .collect();
    json!({"_class": "hudson.model.Queue", "discoverableItems": discoverable, "items": items})
}
