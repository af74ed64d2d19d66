//! The use cases of the API functions. Each function calls one of these.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use crate::config::Settings;
use crate::error::{ServiceError, ShuttleError, StoreError, ValidationError};
use crate::ids::{parse_legacy_job, parse_uuid, path_segment, v2_source_id};
use crate::jenkins::Jenkins;
use crate::ports::{BuildStore, LogTail, PollMessage, PollQueue, Sealer, SourceStore};
use crate::record::{now_ms, ApiKind, BuildRecord, Progress};
use crate::redact::redact;
use crate::request::{parse_legacy, parse_v2, Api, BuildSpec, LegacyContext};
use crate::source::{rebuild_source_id, Source};
use crate::state::{BuildState, StopIntent};

/// The largest request body a synchronous Lambda invocation takes (6 MB for the whole
/// event), less room for the event's envelope and headers.
pub const MAX_BODY_BYTES: usize = 6_000_000;

/// The logs endpoints serve at most this much of the end of a log.
pub const MAX_LOG_RESPONSE_BYTES: u64 = 5 * 1024 * 1024;

/// How often a use case retries a conditional write that lost a race.
const MAX_WRITE_ATTEMPTS: usize = 5;

/// The ports and settings every use case works with; built once per cold start.
#[derive(Clone)]
pub struct Shuttle {
    pub store: Arc<dyn BuildStore>,
    pub sources: Arc<dyn SourceStore>,
    pub queue: Arc<dyn PollQueue>,
    pub sealer: Arc<dyn Sealer>,
    pub jenkins: Arc<dyn Jenkins>,
    pub settings: Arc<Settings>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The same build was created before; nothing new happened.
    AlreadyExists,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// The stop is recorded (and, once the build is in Jenkins, handed to it).
    Stopping,
    /// The build had already finished.
    AlreadyFinished,
}

impl Shuttle {
    /// `POST /{app_id}/{build_id}`.
    pub async fn create_v2(&self, app_id: &str, build_id: &str, body: &[u8]) -> Result<CreateOutcome, ShuttleError> {
        let app_id = path_segment("app_id", app_id)?;
        let build_id = path_segment("build_id", build_id)?;
        check_size(body)?;
        let mut spec = parse_v2(app_id, build_id, body)?;
        recognise_rebuild(&mut spec, &self.settings.shuttle_host);
        // SPEC §7: a host known to be refused is a 400 now, not a failed build later.
        if let Some(refused) = spec.refused_hosts(&self.settings.allowed_private).into_iter().next() {
            return Err(ValidationError::from(refused).into());
        }
        let source_id = v2_source_id(app_id, build_id);
        let build_key = format!("{app_id}/{build_id}");
        if let Some(existing) = self.store.get(source_id).await? {
            return self.same_v2_build(&existing, &spec, &build_key).await;
        }
        let record = self.new_record(source_id, ApiKind::V2, build_key.clone(), app_id.to_owned(), None, &spec).await?;
        if !self.store.insert(&record).await? {
            let existing = self.store.get(source_id).await?.ok_or(ShuttleError::Contended)?;
            return self.same_v2_build(&existing, &spec, &build_key).await;
        }
        self.queue.enqueue(&PollMessage { source_id, round: 0 }, Duration::ZERO).await?;
        Ok(CreateOutcome::Created)
    }

    /// A repeated v2 create is idempotent only with the same request.
    async fn same_v2_build(&self, existing: &BuildRecord, spec: &BuildSpec, build_key: &str) -> Result<CreateOutcome, ShuttleError> {
        let stored: Option<BuildSpec> = match existing.kind {
            ApiKind::V2 => serde_json::from_slice(&self.sealer.open(&existing.sealed_spec).await?).ok(),
            ApiKind::Legacy => None,
        };
        match stored {
            Some(stored) if stored == *spec => Ok(CreateOutcome::AlreadyExists),
            _ => Err(ShuttleError::Conflict(build_key.to_owned())),
        }
    }

    /// Legacy `POST /`. A repeated `build_uuid` changes nothing: the first build stands.
    pub async fn create_legacy(&self, body: &[u8]) -> Result<CreateOutcome, ShuttleError> {
        check_size(body)?;
        let create = parse_legacy(body, &LegacyContext { shuttle_host: &self.settings.shuttle_host })?;
        let Api::Legacy(legacy) = &create.spec.api else { unreachable!("parse_legacy builds a legacy spec") };
        let source_id = legacy.build_uuid;
        if self.store.get(source_id).await?.is_some() {
            return Ok(CreateOutcome::AlreadyExists);
        }
        if let Some(bytes) = create.inline_source {
            self.sources.put_source(source_id, Bytes::from(bytes)).await?;
        }
        let record =
            self.new_record(source_id, ApiKind::Legacy, source_id.to_string(), legacy.job(), legacy.build_number, &create.spec).await?;
        if !self.store.insert(&record).await? {
            return Ok(CreateOutcome::AlreadyExists);
        }
        self.queue.enqueue(&PollMessage { source_id, round: 0 }, Duration::ZERO).await?;
        Ok(CreateOutcome::Created)
    }

    async fn new_record(
        &self,
        source_id: Uuid,
        kind: ApiKind,
        build_key: String,
        app_key: String,
        number: Option<u64>,
        spec: &BuildSpec,
    ) -> Result<BuildRecord, ShuttleError> {
        let plaintext = serde_json::to_vec(spec).expect("a build spec always serialises");
        let sealed_spec = Bytes::from(self.sealer.seal(&plaintext).await?);
        let now = now_ms();
        Ok(BuildRecord {
            source_id,
            kind,
            build_key,
            app_key,
            number,
            metadata: spec.metadata.clone(),
            human_readable_info: redact(&spec.human_readable_info),
            state: BuildState::Accepted,
            stop: None,
            failure: None,
            created_at_ms: now,
            updated_at_ms: now,
            version: 0,
            sealed_spec,
            progress: Progress { polled_at_ms: now, deliveries: spec.deliveries(&self.settings.kafka_topic), ..Progress::default() },
        })
    }

    /// The build at `/{app_id}/{build_id}`: a v2 build, else a legacy `/{app}-{app_uuid}/{n}`.
    pub async fn find(&self, app_id: &str, build_id: &str) -> Result<BuildRecord, ShuttleError> {
        let app_id = path_segment("app_id", app_id)?;
        let build_id = path_segment("build_id", build_id)?;
        if let Some(record) = self.store.get(v2_source_id(app_id, build_id)).await? {
            if record.kind == ApiKind::V2 {
                return Ok(record);
            }
        }
        if let (Some(_), Ok(number)) = (parse_legacy_job(app_id), build_id.parse::<u64>()) {
            if let Some(record) = self.store.find_by_number(app_id, number).await? {
                return Ok(record);
            }
        }
        Err(ShuttleError::NotFound)
    }

    /// `DELETE /{app_id}/{build_id}`: the kind of the build found, and what the stop did.
    pub async fn stop(&self, app_id: &str, build_id: &str) -> Result<(ApiKind, StopOutcome), ShuttleError> {
        let record = self.find(app_id, build_id).await?;
        let kind = record.kind;
        Ok((kind, self.request_stop(record).await?))
    }

    /// Records the stop with a conditional write, then hands it to Jenkins. A build that has
    /// not reached Jenkins ends here and will never be triggered; one being triggered right now
    /// is stopped by its poller, which reads the recorded intent after the trigger.
    async fn request_stop(&self, mut record: BuildRecord) -> Result<StopOutcome, ShuttleError> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            if record.state.is_terminal() {
                return Ok(StopOutcome::AlreadyFinished);
            }
            if record.stop == Some(StopIntent::Stop) {
                return Ok(StopOutcome::Stopping);
            }
            // A lost race reads the build again, so the record read is the one written.
            record.stop = Some(StopIntent::Stop);
            record.updated_at_ms = now_ms();
            if record.state == BuildState::Accepted {
                record.move_to(BuildState::Stopped);
                record.failure = Some("stopped before the build reached Jenkins".to_owned());
            }
            match self.store.update(&record).await {
                Ok(stored) => {
                    if !stored.state.is_terminal() {
                        self.halt_in_jenkins(&stored).await;
                    }
                    return Ok(StopOutcome::Stopping);
                }
                Err(StoreError::Conflict) => {
                    record = self.store.get(record.source_id).await?.ok_or(ShuttleError::NotFound)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ShuttleError::Contended)
    }

    /// `DELETE /{app}`: stops every unfinished build of the app, then deletes its Jenkins job
    /// (a job already gone is fine). The pollers end the stopped builds as `stopped`.
    pub async fn delete_app(&self, app: &str) -> Result<(), ShuttleError> {
        let app = path_segment("app", app)?;
        let builds = self.store.list_by_app(app).await?;
        // Never a job the shuttle did not create (SPEC §3): an app without builds is unknown.
        if builds.is_empty() {
            return Err(ShuttleError::NotFound);
        }
        for record in builds {
            if !record.state.is_terminal() {
                self.request_stop(record).await?;
            }
        }
        self.jenkins.delete_job(app).await.map_err(|e| ShuttleError::Unavailable(ServiceError::new("jenkins", e)))
    }

    /// `GET /{app_id}/{build_id}/logs`: the build and the end of its archived log.
    pub async fn logs(&self, app_id: &str, build_id: &str) -> Result<(BuildRecord, LogTail), ShuttleError> {
        let record = self.find(app_id, build_id).await?;
        let tail = self.sources.read_log_tail(record.source_id, MAX_LOG_RESPONSE_BYTES).await?;
        Ok((record, tail))
    }

    /// `GET /{build_uuid}`: a freshly presigned link to the cached sources.
    pub async fn sources_link(&self, build_uuid: &str) -> Result<String, ShuttleError> {
        let source_id = parse_uuid(build_uuid).ok_or(ShuttleError::NotFound)?;
        if !self.sources.source_exists(source_id).await? {
            return Err(ShuttleError::NotFound);
        }
        Ok(self.sources.presign_source(source_id, self.settings.sources_link_ttl).await?)
    }

    /// `HEAD /{build_uuid}`: whether the sources are cached.
    pub async fn sources_exist(&self, build_uuid: &str) -> Result<bool, ShuttleError> {
        match parse_uuid(build_uuid) {
            Some(source_id) => Ok(self.sources.source_exists(source_id).await?),
            None => Ok(false),
        }
    }

    /// Ends what Jenkins runs for `record` — cancels its queue item or stops its build — as far
    /// as it is known. Failures are logged: the poller acts on the recorded intent again.
    pub async fn halt_in_jenkins(&self, record: &BuildRecord) {
        let result = match (record.progress.jenkins_number, record.progress.queue_item) {
            (Some(number), _) => self.jenkins.stop_build(&record.app_key, number).await,
            (None, Some(queue_id)) => self.jenkins.cancel_queue_item(queue_id).await,
            (None, None) => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(build = %record.source_id, %error, "could not stop the build in Jenkins; the poller will try again");
        }
    }
}

/// A v2 source that is the shuttle's own sources link is a rebuild, as in the legacy API: the
/// sources are copied within S3, not downloaded through the API (which asks for a token).
fn recognise_rebuild(spec: &mut BuildSpec, shuttle_host: &url::Url) {
    if let Source::Http { url } = &spec.source {
        if let Some(source_id) = url::Url::parse(url).ok().and_then(|url| rebuild_source_id(&url, shuttle_host)) {
            spec.source = Source::Rebuild { source_id };
        }
    }
}

fn check_size(body: &[u8]) -> Result<(), ShuttleError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ShuttleError::TooLarge { size: body.len(), limit: MAX_BODY_BYTES });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
