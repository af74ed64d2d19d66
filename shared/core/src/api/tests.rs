use serde_json::json;

use std::time::Duration;

use uuid::Uuid;

use super::*;
use crate::fakes::fakes;
use crate::ids::v2_source_id;
use crate::ports::{PollMessage, Sealer};
use crate::request::BuildSpec;
use crate::source::Source;
use crate::state::{BuildState, StopIntent};

const BUILD_UUID: &str = "0b9e8c2a-6c84-4a3f-9a55-6d6a4c1b2e10";
const APP_UUID: &str = "7d1f3b5c-2a4e-4c6d-8e0f-1a2b3c4d5e6f";

fn v2_body() -> Vec<u8> {
    json!({
        "webhooks": {"status": "https://token@hooks.example/status"},
        "metadata": "ns",
        "source": {"url": "https://user:pw@src.example/a.tgz"},
        "destination": {"url": "docker://registry.example/org/app:1"}
    })
    .to_string()
    .into_bytes()
}

fn legacy_body(extra: serde_json::Value) -> Vec<u8> {
    let mut body = json!({
        "app": "myapp", "space": "default", "app_uuid": APP_UUID, "build_uuid": BUILD_UUID, "build_number": 3,
        "sources": "data:base64,UEsDBA==", "gm_registry_host": "registry.example", "gm_registry_repo": "org",
        "callback": "https://controller.example/cb", "callback_auth": "Basic c2VjcmV0"
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body.to_string().into_bytes()
}

#[tokio::test]
async fn create_stores_one_build_and_enqueues_one_reference() {
    let fake = fakes();
    assert_eq!(fake.create().v2("app", "1", &v2_body()).await.unwrap(), CreateOutcome::Created);
    let builds = fake.store.builds.lock().unwrap().clone();
    assert_eq!(builds.len(), 1);
    let record = builds.values().next().unwrap();
    assert_eq!(record.state, BuildState::Accepted);
    assert_eq!(record.source_id, v2_source_id("app", "1"));
    let sent = fake.queue.sent.lock().unwrap().clone();
    assert_eq!(sent, vec![(PollMessage { source_id: record.source_id, round: 0 }, Duration::ZERO)]);
    let sealed = String::from_utf8_lossy(&record.sealed_spec);
    assert!(!sealed.contains("user:pw") && !sealed.contains("token@"), "the spec is sealed");
}

#[tokio::test]
async fn repeating_a_create_is_idempotent() {
    let fake = fakes();
    fake.create().v2("app", "1", &v2_body()).await.unwrap();
    assert_eq!(fake.create().v2("app", "1", &v2_body()).await.unwrap(), CreateOutcome::AlreadyExists);
    assert_eq!(fake.store.builds.lock().unwrap().len(), 1);
    assert_eq!(fake.queue.sent.lock().unwrap().len(), 1, "no second build is queued");
}

#[tokio::test]
async fn same_ids_with_a_different_body_conflict() {
    let fake = fakes();
    fake.create().v2("app", "1", &v2_body()).await.unwrap();
    let other = String::from_utf8(v2_body()).unwrap().replace("\"ns\"", "\"other\"");
    let err = fake.create().v2("app", "1", other.as_bytes()).await.unwrap_err();
    assert!(matches!(err, ShuttleError::Conflict(ref key) if key == "app/1"), "{err:?}");
}

#[tokio::test]
async fn a_rejected_create_writes_nothing() {
    let fake = fakes();
    assert!(fake.create().v2("app", "1", b"{").await.is_err());
    assert!(fake.create().v2("bad id", "1", &v2_body()).await.is_err());
    assert!(fake.create().legacy(b"{}").await.is_err());
    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    assert!(matches!(fake.create().v2("app", "1", &huge).await, Err(ShuttleError::TooLarge { .. })));
    assert!(fake.store.builds.lock().unwrap().is_empty());
    assert!(fake.queue.sent.lock().unwrap().is_empty());
    assert!(fake.sources.objects.lock().unwrap().is_empty());
}

/// SPEC §2: `/{app}-{app_uuid}/{n}` is a legacy build's path, so v2 refuses such an `app_id`:
/// a v2 build there would shadow the legacy build of that job and number.
#[tokio::test]
async fn a_v2_app_id_of_the_legacy_job_form_is_a_400_naming_it() {
    let fake = fakes();
    let app_id = format!("myapp-{APP_UUID}");
    let Err(ShuttleError::Invalid(invalid)) = fake.create().v2(&app_id, "3", &v2_body()).await else { panic!("expected a 400") };
    assert_eq!(invalid.field, "app_id");
    assert!(fake.store.builds.lock().unwrap().is_empty());
    // Names that only look alike are v2 names.
    for app_id in [APP_UUID.to_owned(), format!("-{APP_UUID}"), format!("myapp-{}", &APP_UUID[..35]), "my-app-1".to_owned()] {
        fake.create().v2(&app_id, "3", &v2_body()).await.unwrap_or_else(|e| panic!("{app_id}: {e:?}"));
    }
}

#[tokio::test]
async fn legacy_create_caches_inline_sources_and_the_first_build_stands() {
    let fake = fakes();
    assert_eq!(fake.create().legacy(&legacy_body(json!({}))).await.unwrap(), CreateOutcome::Created);
    let source_id: Uuid = BUILD_UUID.parse().unwrap();
    assert_eq!(fake.sources.objects.lock().unwrap().get(&source_id).map(|b| b.to_vec()), Some(b"PK\x03\x04".to_vec()));
    let again = legacy_body(json!({"sources": "data:base64,b3RoZXI=", "app": "other"}));
    assert_eq!(fake.create().legacy(&again).await.unwrap(), CreateOutcome::AlreadyExists);
    assert_eq!(fake.sources.objects.lock().unwrap().get(&source_id).map(|b| b.to_vec()), Some(b"PK\x03\x04".to_vec()));
    assert_eq!(fake.store.builds.lock().unwrap()[&source_id].app_key, format!("myapp-{APP_UUID}"));
}

#[tokio::test]
async fn legacy_builds_are_found_by_job_and_number() {
    let fake = fakes();
    fake.create().legacy(&legacy_body(json!({}))).await.unwrap();
    let found = fake.status().find(&format!("myapp-{APP_UUID}"), "3").await.unwrap();
    assert_eq!(found.build_key, BUILD_UUID);
    assert!(matches!(fake.status().find(&format!("myapp-{APP_UUID}"), "4").await, Err(ShuttleError::NotFound)));
}

#[tokio::test]
async fn stop_before_jenkins_ends_the_build() {
    let fake = fakes();
    fake.create().v2("app", "1", &v2_body()).await.unwrap();
    assert_eq!(fake.stop().build("app", "1").await.unwrap(), (ApiKind::V2, StopOutcome::Stopping));
    let record = fake.status().find("app", "1").await.unwrap();
    assert_eq!((record.state, record.stop), (BuildState::Stopped, Some(StopIntent::Stop)));
    assert_eq!(fake.stop().build("app", "1").await.unwrap(), (ApiKind::V2, StopOutcome::AlreadyFinished));
}

#[tokio::test]
async fn stop_of_a_build_in_jenkins_records_the_intent_then_stops_it_there() {
    let fake = fakes();
    fake.create().v2("app", "1", &v2_body()).await.unwrap();
    fake.create().v2("app", "2", &v2_body()).await.unwrap();
    for (build, state, queue_item, number) in [("1", BuildState::Building, Some(7), Some(3)), ("2", BuildState::Queued, Some(8), None)] {
        let id = v2_source_id("app", build);
        let mut record = fake.store.builds.lock().unwrap()[&id].clone();
        record.state = state;
        (record.progress.queue_item, record.progress.jenkins_number) = (queue_item, number);
        fake.store.builds.lock().unwrap().insert(id, record);
        assert_eq!(fake.stop().build("app", build).await.unwrap().1, StopOutcome::Stopping);
        let record = fake.status().find("app", build).await.unwrap();
        assert_eq!((record.state, record.stop), (state, Some(StopIntent::Stop)), "the poller ends it when Jenkins has");
    }
    assert_eq!(*fake.jenkins.calls.lock().unwrap(), ["stop_build app 3", "cancel_queue_item 8"]);
}

#[tokio::test]
async fn stop_of_an_unknown_build_is_not_found() {
    let fake = fakes();
    assert!(matches!(fake.stop().build("app", "9").await, Err(ShuttleError::NotFound)));
}

#[tokio::test]
async fn delete_app_stops_every_unfinished_build() {
    let fake = fakes();
    fake.create().v2("app", "1", &v2_body()).await.unwrap();
    fake.create().v2("app", "2", &v2_body()).await.unwrap();
    fake.create().v2("other", "1", &v2_body()).await.unwrap();
    fake.delete().app("app").await.unwrap();
    assert_eq!(fake.status().find("app", "1").await.unwrap().state, BuildState::Stopped);
    assert_eq!(fake.status().find("app", "2").await.unwrap().state, BuildState::Stopped);
    assert_eq!(fake.status().find("other", "1").await.unwrap().state, BuildState::Accepted);
    assert_eq!(*fake.jenkins.calls.lock().unwrap(), ["delete_job app"], "the job goes after its builds");
}

#[tokio::test]
async fn deleting_an_app_without_builds_is_not_found_and_touches_no_job() {
    let fake = fakes();
    fake.create().v2("app", "1", &v2_body()).await.unwrap();
    assert!(matches!(fake.delete().app("deploy-prod").await, Err(ShuttleError::NotFound)));
    assert!(fake.jenkins.calls.lock().unwrap().is_empty(), "a job the shuttle did not create is never deleted");
}

#[tokio::test]
async fn sources_links_match_uuids_only() {
    let fake = fakes();
    fake.create().legacy(&legacy_body(json!({}))).await.unwrap();
    assert!(fake.source_links().link(BUILD_UUID).await.unwrap().contains(BUILD_UUID));
    assert!(fake.source_links().exists(BUILD_UUID).await.unwrap());
    assert!(matches!(fake.source_links().link("octhc").await, Err(ShuttleError::NotFound)));
    assert!(!fake.source_links().exists(&Uuid::new_v4().to_string()).await.unwrap());
}

#[tokio::test]
async fn a_v2_source_on_the_shuttles_own_host_is_a_rebuild() {
    let fake = fakes();
    let old = Uuid::new_v4();
    for (build, url) in
        [("1", format!("https://shuttle.example/{old}")), ("2", format!("https://shuttle.example/{old}?expires=1&signature=00"))]
    {
        let body = json!({"source": {"url": url}, "destination": {"url": "docker://registry.example/org/app:1"}}).to_string();
        fake.create().v2("app", build, body.as_bytes()).await.unwrap();
        let record = fake.store.builds.lock().unwrap()[&v2_source_id("app", build)].clone();
        let spec: BuildSpec =
            serde_json::from_slice(&crate::fakes::ReversingSealer.open(&record.sealed_spec, record.source_id).await.unwrap()).unwrap();
        assert_eq!(spec.source, Source::Rebuild { source_id: old }, "{url}");
    }
}

/// A v2 body whose `field` (a JSON pointer's last steps: `webhooks/status`, `source/url`, …) is `value`.
fn v2_body_with(pointer: &str, value: serde_json::Value) -> Vec<u8> {
    let mut body: serde_json::Value = serde_json::from_slice(&v2_body()).unwrap();
    *body.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer} in the body")) = value;
    body.to_string().into_bytes()
}

#[tokio::test]
async fn a_v2_create_naming_a_refused_host_is_a_400_naming_the_field() {
    let fake = fakes();
    for (pointer, value, field, reason) in [
        ("/webhooks/status", json!("http://169.254.169.254/x"), "webhooks.status", "169.254.169.254 is link-local (instance metadata)"),
        (
            "/webhooks/status",
            json!(["https://hooks.example/ok", "https://u:canarypw@0xA9FEA9FE/x"]),
            "webhooks.status[1]",
            "169.254.169.254 is link-local",
        ),
        (
            "/webhooks/status",
            json!("failover(kafka://k.example:9092/t, kafka://10.0.0.1:9092/t)"),
            "webhooks.status",
            "10.0.0.1 is private",
        ),
        ("/source/url", json!("http://0xA9FEA9FE/a.tgz"), "source.url", "169.254.169.254 is link-local"),
        ("/source/url", json!("http://localhost:8080/a.tgz"), "source.url", "localhost names the loopback host"),
        ("/source/url", json!("docker://127.1/org/base:1"), "source.url", "127.0.0.1 is loopback"),
        ("/destination/url", json!("docker://[::ffff:10.0.0.1]:5000/org/app:1"), "destination.url", "is private"),
    ] {
        let err = fake.create().v2("app", "1", &v2_body_with(pointer, value.clone())).await.unwrap_err();
        let ShuttleError::Invalid(invalid) = err else { panic!("{value}: expected a 400, got {err:?}") };
        assert_eq!(invalid.field, field, "{value}");
        assert!(invalid.message.contains("is refused: ") && invalid.message.contains(reason), "{value}: {}", invalid.message);
        assert!(!invalid.message.contains("canarypw"), "{}", invalid.message);
    }
    assert!(fake.store.builds.lock().unwrap().is_empty(), "nothing was stored");
    assert!(fake.queue.sent.lock().unwrap().is_empty(), "nothing was queued");
}

#[tokio::test]
async fn allowed_private_cidrs_open_private_hosts_but_never_the_metadata_service() {
    let fake = fakes();
    let mut create = fake.create();
    create.policy.allowed_private = "10.0.0.0/8,127.0.0.0/8,169.254.0.0/16".parse().unwrap();
    let private = v2_body_with("/webhooks/status", json!("kafka://10.0.0.1:9092/buildlogs"));
    assert_eq!(create.v2("app", "1", &private).await.unwrap(), CreateOutcome::Created);
    let loopback = v2_body_with("/source/url", json!("http://localhost:8080/a.tgz"));
    assert_eq!(create.v2("app", "2", &loopback).await.unwrap(), CreateOutcome::Created);
    let metadata = v2_body_with("/webhooks/status", json!("http://169.254.169.254/latest/meta-data/"));
    assert!(matches!(create.v2("app", "3", &metadata).await, Err(ShuttleError::Invalid(_))));
}

#[tokio::test]
async fn a_legacy_create_is_never_refused_for_a_refused_host() {
    let fake = fakes();
    let body = legacy_body(json!({"callback": "http://169.254.169.254/cb", "kafka_hosts": "10.0.0.1:9092"}));
    assert_eq!(fake.create().legacy(&body).await.unwrap(), CreateOutcome::Created, "the poller fails the build");
}

/// Archives `log` for the build `id`, saved with it, in `state`.
async fn archived(fake: &crate::fakes::Fakes, id: Uuid, log: &'static [u8], state: BuildState) {
    use crate::ports::{BuildStore, SourceStore};
    fake.sources.put_log_chunk(id, 0, bytes::Bytes::from_static(log)).await.unwrap();
    let mut record = fake.store.get(id).await.unwrap().unwrap();
    record.progress.archive_len = log.len() as u64;
    record.state = state;
    fake.store.builds.lock().unwrap().insert(id, record);
}

#[tokio::test]
async fn a_v2_log_is_read_from_any_byte_as_jenkins_progressive_text_answers() {
    let fake = fakes();
    fake.create().v2("app", "1", &v2_body()).await.unwrap();
    let id = v2_source_id("app", "1");
    archived(&fake, id, b"line 1\nline 2\n", BuildState::Building).await;
    let logs = fake.logs();
    let range = |start| {
        let logs = logs.clone();
        async move {
            match logs.read("app", "1", Some(start)).await {
                Ok(LogRead::Range(_, range)) => Ok(range),
                Ok(other) => panic!("not a range: {other:?}"),
                Err(error) => Err(error),
            }
        }
    };
    let read = range(0).await.unwrap();
    assert_eq!((read.bytes.as_ref(), read.next_start, read.more_data), (&b"line 1\nline 2\n"[..], 14, true), "running: more may come");
    let read = range(7).await.unwrap();
    assert_eq!((read.bytes.as_ref(), read.next_start), (&b"line 2\n"[..], 14));
    let read = range(14).await.unwrap();
    assert_eq!((read.bytes.len(), read.next_start, read.more_data), (0, 14, true), "at the end of a running build's log");
    assert!(matches!(range(15).await, Err(ShuttleError::LogRangeNotSatisfiable { size: 14 })));

    archived(&fake, id, b"line 1\nline 2\n", BuildState::Succeeded).await;
    let read = range(7).await.unwrap();
    assert_eq!((read.next_start, read.more_data), (14, false), "finished and read to its end: no more");
}

#[tokio::test]
async fn a_legacy_log_read_ignores_start_as_the_legacy_api_always_did() {
    let fake = fakes();
    fake.create().legacy(&legacy_body(json!({}))).await.unwrap();
    let id: Uuid = BUILD_UUID.parse().unwrap();
    archived(&fake, id, b"output\n", BuildState::Succeeded).await;
    let read = fake.logs().read(&format!("myapp-{APP_UUID}"), "3", Some(99)).await.unwrap();
    assert!(matches!(read, LogRead::Tail(_, ref tail) if tail.text == "output\n"), "{read:?}");
}
