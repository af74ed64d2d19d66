//! What the shuttle knows of Jenkins: queue items, build results and their meaning, the job
//! parameters of `infra/jenkins/config.xml`, and its errors. The port the Jenkins client
//! implements is [`crate::ports::Jenkins`].

use crate::state::{BuildState, StopIntent};

/// Where a triggered build is, as its queue item tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueItem {
    /// Still waiting (for an executor, or behind a running build of the same job).
    Waiting { why: Option<String> },
    /// Left the queue and started as build `number`.
    Started { number: u64 },
    /// Left the queue without starting.
    Cancelled,
    /// Jenkins no longer knows the item (it forgets left items after a few minutes): the build
    /// must be found by its `BUILD_UUID` parameter.
    Forgotten,
}

/// A build's `result` in Jenkins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JenkinsResult {
    Success,
    Unstable,
    Failure,
    NotBuilt,
    Aborted,
    Other(String),
}

impl JenkinsResult {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "SUCCESS" => Self::Success,
            "UNSTABLE" => Self::Unstable,
            "FAILURE" => Self::Failure,
            "NOT_BUILT" => Self::NotBuilt,
            "ABORTED" => Self::Aborted,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The terminal state of a finished build (SPEC §4): an `ABORTED` build ended by our own
    /// stop is `Stopped`, by our timeout `TimedOut`, and otherwise `Failed`.
    pub fn terminal_state(&self, intent: Option<StopIntent>) -> BuildState {
        match (self, intent) {
            (Self::Success, _) => BuildState::Succeeded,
            (Self::Aborted, Some(StopIntent::Stop)) => BuildState::Stopped,
            (Self::Aborted, Some(StopIntent::Timeout)) => BuildState::TimedOut,
            _ => BuildState::Failed,
        }
    }
}

/// A build's state in Jenkins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildStatus {
    pub building: bool,
    /// `None` while running.
    pub result: Option<JenkinsResult>,
}

/// What one `progressiveText` read covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogWindow {
    /// The offset the read asked for.
    pub start: u64,
    /// Jenkins' `X-Text-Size`: where the next read starts. Moves only once the whole response
    /// was handed to the sink.
    pub next_start: u64,
    /// Jenkins' `X-More-Data`: the build is still writing its log.
    pub more_data: bool,
}

/// A [`LogSink`] stopped taking text: the read ends with [`JenkinsError::SinkClosed`], and why
/// it stopped is the sink's to tell its owner (the Jenkins client never carries its errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the log's reader stopped taking text")]
pub struct SinkClosed;

/// A Jenkins call that did not give the answer needed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JenkinsError {
    /// The job or build does not exist.
    #[error("jenkins: not found: {0}")]
    NotFound(String),
    /// Connection errors, timeouts, 5xx: worth trying again later.
    #[error("jenkins unavailable: {0}")]
    Unavailable(String),
    /// Jenkins refused the shuttle's credentials or their permissions (401, 403).
    #[error("jenkins refused the request: {0}")]
    Rejected(String),
    /// A job of that name is in the shuttle's folder, but the shuttle did not create it (it lacks
    /// the shuttle's marker): it is never triggered, changed or deleted.
    #[error("jenkins: the job {0} was not created by the build shuttle; it is left alone")]
    NotOurs(String),
    /// An answer that does not fit Jenkins' documented API.
    #[error("unexpected answer from jenkins: {0}")]
    Unexpected(String),
    /// The log sink stopped taking text while the log streamed in ([`SinkClosed`]).
    #[error("the log read was ended by its reader")]
    SinkClosed(#[from] SinkClosed),
}

impl JenkinsError {
    /// Connection trouble, timeouts, 5xx: the same call may well work later.
    pub const fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The job parameters of `infra/jenkins/config.xml` (see `infra/jenkins/README.md`).
pub mod parameters {
    pub const BUILD_UUID: &str = "BUILD_UUID";
    pub const SOURCES_URL: &str = "SOURCES_URL";
    pub const SOURCE_IMAGE: &str = "SOURCE_IMAGE";
    pub const SOURCE_REGISTRY_USER: &str = "SOURCE_REGISTRY_USER";
    pub const SOURCE_REGISTRY_PASSWORD: &str = "SOURCE_REGISTRY_PASSWORD";
    pub const DESTINATION_IMAGE: &str = "DESTINATION_IMAGE";
    pub const DESTINATION_LATEST: &str = "DESTINATION_LATEST";
    pub const REGISTRY_USER: &str = "REGISTRY_USER";
    pub const REGISTRY_PASSWORD: &str = "REGISTRY_PASSWORD";
    pub const BUILD_ARGS: &str = "BUILD_ARGS";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_map_to_states_by_the_recorded_intent() {
        assert_eq!(JenkinsResult::parse("SUCCESS").terminal_state(None), BuildState::Succeeded);
        assert_eq!(JenkinsResult::parse("SUCCESS").terminal_state(Some(StopIntent::Stop)), BuildState::Succeeded);
        assert_eq!(JenkinsResult::parse("ABORTED").terminal_state(Some(StopIntent::Stop)), BuildState::Stopped);
        assert_eq!(JenkinsResult::parse("ABORTED").terminal_state(Some(StopIntent::Timeout)), BuildState::TimedOut);
        assert_eq!(JenkinsResult::parse("ABORTED").terminal_state(None), BuildState::Failed, "aborted by someone else");
        for failed in ["FAILURE", "UNSTABLE", "NOT_BUILT", "SOMETHING_NEW"] {
            assert_eq!(JenkinsResult::parse(failed).terminal_state(None), BuildState::Failed, "{failed}");
        }
    }
}
