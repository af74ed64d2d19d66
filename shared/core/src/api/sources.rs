//! `GET /{build_uuid}` (a freshly presigned link) and `HEAD /{build_uuid}`.

use std::sync::Arc;
use std::time::Duration;

use crate::access::LinkSigner;
use crate::error::ShuttleError;
use crate::ids::parse_uuid;
use crate::ports::SourceStore;
use crate::secrets::Keyed;

/// The sources function's use case.
#[derive(Clone)]
pub struct SourceLinks {
    pub sources: Arc<dyn SourceStore>,
    /// `SOURCES_LINK_TTL`: how long a presigned link stays valid.
    pub ttl: Duration,
    /// Checks the signed links the poller hands to Jenkins; `None` in open mode without a key.
    pub signer: Keyed<Option<LinkSigner>>,
}

impl SourceLinks {
    /// `GET /{build_uuid}`: a freshly presigned link to the cached sources.
    pub async fn link(&self, build_uuid: &str) -> Result<String, ShuttleError> {
        let source_id = parse_uuid(build_uuid).ok_or(ShuttleError::NotFound)?;
        if !self.sources.source_exists(source_id).await? {
            return Err(ShuttleError::NotFound);
        }
        Ok(self.sources.presign_source(source_id, self.ttl).await?)
    }

    /// `HEAD /{build_uuid}`: whether the sources are cached.
    pub async fn exists(&self, build_uuid: &str) -> Result<bool, ShuttleError> {
        match parse_uuid(build_uuid) {
            Some(source_id) => Ok(self.sources.source_exists(source_id).await?),
            None => Ok(false),
        }
    }
}
