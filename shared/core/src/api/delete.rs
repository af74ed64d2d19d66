//! `DELETE /{app}`: every unfinished build of the app stopped, then its Jenkins job deleted.

use crate::error::{ServiceError, ShuttleError};
use crate::ids::path_segment;
use crate::jenkins::JenkinsError;

use super::Stop;

/// The delete function's use case: the stop's ports, used for a whole app.
#[derive(Clone)]
pub struct Delete {
    pub stop: Stop,
}

impl Delete {
    /// Stops every unfinished build of the app, then deletes its Jenkins job (a job already
    /// gone is fine). The pollers end the stopped builds as `stopped`.
    pub async fn app(&self, app: &str) -> Result<(), ShuttleError> {
        let app = path_segment("app", app)?;
        let builds = self.stop.store.list_by_app(app).await?;
        // Never a job the shuttle did not create (SPEC §3): an app without builds is unknown.
        if builds.is_empty() {
            return Err(ShuttleError::NotFound);
        }
        for record in builds {
            if !record.state.is_terminal() {
                self.stop.record(record).await?;
            }
        }
        match self.stop.jenkins.delete_job(app).await {
            Ok(()) => Ok(()),
            // Someone else's job of that name in the shuttle's folder: the app's builds are
            // stopped, and the job is left alone.
            Err(error @ JenkinsError::NotOurs(_)) => {
                tracing::warn!(app, %error, "the app's builds are stopped; its Jenkins job is not the shuttle's and is not deleted");
                Ok(())
            }
            Err(error) => Err(ShuttleError::Unavailable(ServiceError::new("jenkins", error))),
        }
    }
}
