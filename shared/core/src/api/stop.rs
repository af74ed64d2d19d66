//! `DELETE /{app_id}/{build_id}`: the stop recorded, then handed to Jenkins.

use std::sync::Arc;

use crate::error::{ShuttleError, StoreError};
use crate::ports::BuildStore;
use crate::ports::Jenkins;
use crate::record::{now_ms, ApiKind, BuildRecord};
use crate::state::{BuildState, StopIntent};

use super::MAX_WRITE_ATTEMPTS;

/// The stop function's use case (and the delete function's, for each build of the app).
#[derive(Clone)]
pub struct Stop {
    pub store: Arc<dyn BuildStore>,
    pub jenkins: Arc<dyn Jenkins>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// The stop is recorded (and, once the build is in Jenkins, handed to it).
    Stopping,
    /// The build had already finished.
    AlreadyFinished,
}

impl Stop {
    /// `DELETE /{app_id}/{build_id}`: the kind of the build found, and what the stop did.
    pub async fn build(&self, app_id: &str, build_id: &str) -> Result<(ApiKind, StopOutcome), ShuttleError> {
        let record = super::find(self.store.as_ref(), app_id, build_id).await?;
        let kind = record.kind;
        Ok((kind, self.record(record).await?))
    }

    /// Records the stop with a conditional write, then hands it to Jenkins. A build that has
    /// not reached Jenkins ends here and will never be triggered; one being triggered right now
    /// is stopped by its poller, which reads the recorded intent after the trigger.
    pub(crate) async fn record(&self, mut record: BuildRecord) -> Result<StopOutcome, ShuttleError> {
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
                        halt_in_jenkins(self.jenkins.as_ref(), &stored).await;
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
}

/// Ends what Jenkins runs for `record` — cancels its queue item or stops its build — as far as
/// it is known. Failures are logged: the poller acts on the recorded intent again.
pub async fn halt_in_jenkins(jenkins: &dyn Jenkins, record: &BuildRecord) {
    let result = match (record.progress.jenkins_number, record.progress.queue_item) {
        (Some(number), _) => jenkins.stop_build(&record.app_key, number).await,
        (None, Some(queue_id)) => jenkins.cancel_queue_item(queue_id).await,
        (None, None) => Ok(()),
    };
    if let Err(error) = result {
        tracing::warn!(build = %record.source_id, %error, "could not stop the build in Jenkins; the poller will try again");
    }
}
