//! The JSON of Jenkins' remote API (`…/api/json`), in the shapes Jenkins exports.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::job_config::ParameterKind;
use crate::state::{time_span, Build, Inner, ItemState, Job, QueueItem, Shared};

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
        "fullDisplayName": format!("{} #{}", build.job_name, build.number),
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
    let color =
        inner.job(&item.job_name).filter(|j| j.generation == item.job_generation).map(job_color).unwrap_or_else(|| "notbuilt".into());
    json!({"_class": item.job_kind.job_class(), "name": item.job_name, "url": shared.job_url(&item.job_name), "color": color})
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
            let running =
                inner.job(&item.job_name).filter(|j| j.generation == item.job_generation).and_then(|j| j.running_build().cloned());
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
                    "url": shared.build_url(&item.job_name, *number),
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
        "displayName": job.name,
        "displayNameOrNull": null,
        "fullDisplayName": job.name,
        "fullName": job.name,
        "name": job.name,
        "url": shared.job_url(&job.name),
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

/// `GET /api/json`: the root, with the jobs.
pub fn root_json(shared: &Shared, inner: &Inner) -> Value {
    let jobs: Vec<Value> = inner
        .jobs
        .values()
        .map(|job| json!({"_class": job.definition.kind.job_class(), "name": job.name, "url": shared.job_url(&job.name), "color": job_color(job)}))
        .collect();
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
/// items last; the stand-in has none, as every build gets an executor at once.)
pub fn queue_json(shared: &Shared, inner: &Inner) -> Value {
    let mut in_queue: Vec<&QueueItem> = inner.queue.values().filter(|item| item.is_in_queue()).collect();
    in_queue.sort_by_key(|item| match item.state {
        ItemState::Waiting => (0, item.buildable_at_ms, item.id),
        ItemState::Blocked { since_ms } => (1, since_ms, item.id),
        ItemState::Left { .. } => (2, 0, item.id),
    });
    let items: Vec<Value> = in_queue.into_iter().map(|item| queue_item_json(shared, inner, item)).collect();
    // Items of jobs the user may only discover (Item.DISCOVER without Item.READ): none here.
    json!({"_class": "hudson.model.Queue", "discoverableItems": [], "items": items})
}
