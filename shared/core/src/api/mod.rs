//! The API's use cases, one file each; each API function serves its own.
//!
//! - `create`: `POST /{app_id}/{build_id}` and legacy `POST /`;
//! - `stop`: `DELETE /{app_id}/{build_id}`, and the halt in Jenkins the poller repeats;
//! - `delete`: `DELETE /{app}`;
//! - `status` and `logs`: `GET …/status` and `GET …/logs`, and the cut of a long log;
//! - `sources`: `GET` and `HEAD /{build_uuid}`.

use crate::error::ShuttleError;
use crate::ids::{parse_legacy_job, path_segment, v2_source_id};
use crate::ports::BuildStore;
use crate::record::{ApiKind, BuildRecord};

pub mod create;
pub mod delete;
pub mod logs;
pub mod sources;
pub mod status;
pub mod stop;

pub use create::{Create, CreateOutcome, MAX_BODY_BYTES};
pub use delete::Delete;
pub use logs::{LogRange, LogRead, Logs, MAX_LOG_RESPONSE_BYTES};
pub use sources::SourceLinks;
pub use status::Status;
pub use stop::{halt_in_jenkins, Stop, StopOutcome};

/// How often a use case retries a conditional write that lost a race.
const MAX_WRITE_ATTEMPTS: usize = 5;

/// The build at `/{app_id}/{build_id}`: a v2 build, else a legacy `/{app}-{app_uuid}/{n}`.
async fn find(store: &dyn BuildStore, app_id: &str, build_id: &str) -> Result<BuildRecord, ShuttleError> {
    let app_id = path_segment("app_id", app_id)?;
    let build_id = path_segment("build_id", build_id)?;
    if let Some(record) = store.get(v2_source_id(app_id, build_id)).await? {
        if record.kind == ApiKind::V2 {
            return Ok(record);
        }
    }
    if let (Some(_), Ok(number)) = (parse_legacy_job(app_id), build_id.parse::<u64>()) {
        if let Some(record) = store.find_by_number(app_id, number).await? {
            return Ok(record);
        }
    }
    Err(ShuttleError::NotFound)
}

#[cfg(test)]
mod tests;
