//! `GET /{app_id}/{build_id}/status`: the build as stored.

use std::sync::Arc;

use crate::error::ShuttleError;
use crate::ports::BuildStore;
use crate::record::BuildRecord;

/// The status function's status use case.
#[derive(Clone)]
pub struct Status {
    pub store: Arc<dyn BuildStore>,
}

impl Status {
    /// The build at `/{app_id}/{build_id}`: a v2 build, else a legacy `/{app}-{app_uuid}/{n}`.
    pub async fn find(&self, app_id: &str, build_id: &str) -> Result<BuildRecord, ShuttleError> {
        super::find(self.store.as_ref(), app_id, build_id).await
    }
}
