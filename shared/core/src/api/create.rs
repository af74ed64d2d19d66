//! `POST /{app_id}/{build_id}` and legacy `POST /`: a build stored and its first poll queued.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use crate::config::CreatePolicy;
use crate::error::{ShuttleError, ValidationError};
use crate::ids::{parse_legacy_job, path_segment, v2_source_id};
use crate::ports::{BuildStore, OpenError, PollMessage, PollQueue, Sealer, SourceStore};
use crate::record::{now_ms, ApiKind, BuildRecord, Progress};
use crate::redact::redact;
use crate::request::{parse_legacy, parse_v2, Api, BuildSpec, LegacyContext};
use crate::source::{rebuild_source_id, Source};
use crate::state::BuildState;

/// The largest request body a synchronous Lambda invocation takes (6 MB for the whole
/// event), less room for the event's envelope and headers.
pub const MAX_BODY_BYTES: usize = 6_000_000;

/// The create function's use case.
#[derive(Clone)]
pub struct Create {
    pub store: Arc<dyn BuildStore>,
    /// Where a legacy create's inline (`data:`) sources are put.
    pub sources: Arc<dyn SourceStore>,
    pub queue: Arc<dyn PollQueue>,
    pub sealer: Arc<dyn Sealer>,
    pub policy: CreatePolicy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The same build was created before; nothing new happened.
    AlreadyExists,
}

impl Create {
    /// `POST /{app_id}/{build_id}`.
    pub async fn v2(&self, app_id: &str, build_id: &str, body: &[u8]) -> Result<CreateOutcome, ShuttleError> {
        let app_id = path_segment("app_id", app_id)?;
        let build_id = path_segment("build_id", build_id)?;
        if parse_legacy_job(app_id).is_some() {
            // `/{app}-{app_uuid}/{n}` is a legacy build's path: the two APIs never share one.
            let problem = "has the form {name}-{uuid} of a legacy job, whose paths belong to the legacy API";
            return Err(ValidationError::new("app_id", problem).into());
        }
        check_size(body)?;
        let mut spec = parse_v2(app_id, build_id, body)?;
        recognise_rebuild(&mut spec, &self.policy.shuttle_host);
        // SPEC §7: a host known to be refused is a 400 now, not a failed build later.
        if let Some(refused) = spec.refused_hosts(&self.policy.allowed_private).into_iter().next() {
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
            ApiKind::V2 => match self.sealer.open(&existing.sealed_spec, existing.source_id).await {
                Ok(plaintext) => serde_json::from_slice(&plaintext).ok(),
                // A stored spec that never opens is no request this one can repeat.
                Err(OpenError::Refused(_)) => None,
                Err(OpenError::Unavailable(error)) => return Err(error.into()),
            },
            ApiKind::Legacy => None,
        };
        match stored {
            Some(stored) if stored == *spec => Ok(CreateOutcome::AlreadyExists),
            _ => Err(ShuttleError::Conflict(build_key.to_owned())),
        }
    }

    /// Legacy `POST /`. A repeated `build_uuid` changes nothing: the first build stands.
    pub async fn legacy(&self, body: &[u8]) -> Result<CreateOutcome, ShuttleError> {
        check_size(body)?;
        let create = parse_legacy(body, &LegacyContext { shuttle_host: &self.policy.shuttle_host })?;
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
        let sealed_spec = Bytes::from(self.sealer.seal(&plaintext, source_id).await?);
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
            progress: Progress { polled_at_ms: now, deliveries: spec.deliveries(&self.policy.kafka_topic), ..Progress::default() },
        })
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
        return Err(ShuttleError::TooLarge { what: "request body", size: body.len(), limit: MAX_BODY_BYTES });
    }
    Ok(())
}
